"""Runs a run's Launchpad program as local processes, watches every node, and says how the run ended.

Launchpad's own local launcher cannot see how its nodes end: a node killed by a signal (kill -9, the OOM
killer) left the others waiting forever, and the launcher reported success whatever happened. This
supervisor starts each node's process itself (its own process group, stopped with it if the supervisor
dies), so it knows within a poll interval when a node dies and how. Then it restarts the node (a learner or
evaluator, up to `max_restarts` times) or stops the whole program. Each node's output goes to the terminal
and to `<workdir>/logs/nodes/<node>.log`.

How a run ends (`Outcome.exit_code`):
  0    finished: the learner reached num_steps;
  1    a node died (which, how, and the step of the last checkpoint are named), or the learner diverged (the step
       and the non-finite metric are named; the latest checkpoint holds finite values);
  130  interrupted (Ctrl-C): the learner checkpointed the step it had reached;
  143  stopped by SIGTERM from outside, likewise.
Rerunning the same command resumes from the last checkpoint in every case (after a divergence, with a changed
agent config).
"""

import ctypes
import dataclasses
import os
import signal
import subprocess
import threading
import time
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from launch import checkpointing
from launch import failures
from launch import launchpad_local
from launch import program as program_lib
from launch import terminal as terminal_lib
from launch.run_config import RunConfig

RESTARTABLE_GROUPS = ("learner", "evaluator")
# CPU budgets: on a machine the learner shares with them, the evaluators run at a lower priority (their rounds
# are asynchronous; the learner's steps are the run's critical path) with one XLA thread each (a batch-1 policy
# gains nothing from more, and idle Eigen threads spin on the learner's cores).
GROUP_NICENESS = {"evaluator": 10}
GROUP_ENV = {"evaluator": {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}}
# Seconds a node has to stop after SIGTERM before it is killed (Launchpad's nodes give themselves 10).
STOP_GRACE_S = 20.0
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None)  # Loaded here: the child between fork and exec should only make the call.


@dataclasses.dataclass
class Outcome:
  exit_code: int
  message: str


@dataclasses.dataclass
class _Node:
  title: str  # Launchpad's "<group>/<index>", e.g. "learner/0".
  command: List[str]
  env: Dict[str, str]
  log_path: str
  process: Optional[subprocess.Popen] = None
  pump: Optional[threading.Thread] = None
  restarts: int = 0
  done: bool = False  # Exited with status 0 (the dataset loader when it has filled Reverb).

  @property
  def group(self) -> str:
    return self.title.split("/")[0]


def _die_with_parent():
  """In a node's process before exec: SIGTERM when the supervisor dies, however it dies."""
  _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _node_preexec(niceness: int):
  def preexec():
    _die_with_parent()
    if niceness:
      os.nice(niceness)

  return preexec


def _log_tail(node: _Node, lines: int = 15) -> str:
  """The last lines of a node's log (the terminal hides library output), to show with its death."""
  node.pump.join(timeout=5.0)  # Its last words, once the pipe is drained.
  with open(node.log_path, errors="replace") as f:
    tail = f.read().splitlines()[-lines:]
  return f"\nThe last lines of {node.log_path}:\n  " + "\n  ".join(tail) if tail else ""


def newly_failed(units: Sequence[Any]) -> Iterator[Tuple[Any, int]]:
  """(unit, exit status) of each unit (a node or a SLURM step: `.process`, `.done`) whose process has exited with a
  nonzero status and is not done; a unit whose process exited with 0 is marked done on the way."""
  for unit in units:
    returncode = unit.process.poll()
    if returncode is None or unit.done:
      continue
    if returncode == 0:
      unit.done = True
      continue
    yield unit, returncode


def describe_exit(returncode: int) -> str:
  if returncode < 0:
    name = signal.Signals(-returncode).name
    hint = " (kill -9 or the out-of-memory killer)" if -returncode == signal.SIGKILL else ""
    return f"was killed by {name}{hint}"
  return f"exited with code {returncode}"


def death_outcome(config: RunConfig, death: str, log_tail: str = "") -> Outcome:
  """How a run ended whose node died (`death` says which and how): the divergence if the learner diverged, else
  the step it can resume from and the node's recorded error (`log_tail` when it recorded none)."""
  step = checkpointing.for_run(config.workdir).latest_step()
  divergence = failures.read_divergence(config.workdir)
  if divergence is not None:
    return Outcome(1, failures.describe_divergence(divergence, config.num_steps))
  recorded = failures.read_failures(config.workdir)
  details = (
    f"\nThe node's error (also in {failures.failure_path(config.workdir)}):\n{recorded}" if recorded else log_tail
  )
  return Outcome(
    1,
    f"{death}, so the run stopped at its last checkpoint, learner step {step} of {config.num_steps}. Rerun the same "
    f"command to resume from step {step}.{details}",
  )


class Supervisor:
  """Starts, watches, restarts and stops the nodes of one run (`run()` blocks until the run ends)."""

  def __init__(self, config: RunConfig, max_restarts: int = 0, poll_s: float = 0.2, verbose: bool = False):
    if max_restarts < 0:
      raise ValueError(f"max_restarts must be >= 0, got {max_restarts}.")
    self._config = config
    self._max_restarts = max_restarts
    self._poll_s = poll_s
    self._stop_reason: Optional[str] = None  # "interrupt" (SIGINT) or "sigterm" (a node's lp.stop(), or a user).
    self._print_lock = threading.Lock()
    self._terminal = terminal_lib.Terminal(verbose)
    self._nodes: List[_Node] = []
    self._dead: Optional[_Node] = None  # The node whose death stopped the run.

  def _on_signal(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self._stop_reason == "interrupt":
      self._kill_all()  # A second Ctrl-C: stop waiting for the nodes.
      os._exit(130)  # pylint: disable=protected-access
    self._stop_reason = self._stop_reason or ("interrupt" if signum == signal.SIGINT else "sigterm")

  def _start(self, node: _Node) -> None:
    log = open(node.log_path, "a")  # pylint: disable=consider-using-with
    with warnings.catch_warnings():
      # JAX warns about any fork; this child only calls prctl before it execs the node's interpreter.
      warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
      node.process = subprocess.Popen(
        node.command,
        env=node.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_node_preexec(GROUP_NICENESS.get(node.group, 0)),
      )

    def pump(process=node.process):
      with log:
        for raw in process.stdout:
          line = raw.decode("utf-8", "replace")
          log.write(line)
          log.flush()
          with self._print_lock:
            shown = self._terminal.render(node.title, line)
            if shown is not None:
              print(shown, flush=True)

    node.pump = threading.Thread(target=pump, daemon=True)
    node.pump.start()

  def _signal_group(self, node: _Node, sig: int) -> None:
    try:
      os.killpg(node.process.pid, sig)
    except ProcessLookupError:
      pass

  def _kill_all(self) -> None:
    for node in self._nodes:
      if node.process is not None:
        self._signal_group(node, signal.SIGKILL)

  def _stop_all(self) -> None:
    """SIGTERM, learners first (they checkpoint the step they reached while Reverb can still serve them)."""
    for groups in (("learner",), None):
      nodes = [n for n in self._nodes if groups is None or n.group in groups]
      for node in nodes:
        self._signal_group(node, signal.SIGTERM)
      deadline = time.time() + STOP_GRACE_S
      for node in nodes:
        try:
          node.process.wait(max(deadline - time.time(), 0.0))
        except subprocess.TimeoutExpired:
          self._print(f"{node.title} did not stop within {STOP_GRACE_S:.0f} s of SIGTERM: killing it")
    for node in self._nodes:
      self._signal_group(node, signal.SIGKILL)  # Also whatever a node left behind in its process group.
      node.process.wait()
      node.pump.join(timeout=5.0)

  def _print(self, message: str) -> None:
    with self._print_lock:
      print(f"[supervisor] {message}", flush=True)

  def _watch(self) -> Optional[str]:
    """Polls the nodes until the program is asked to stop (None) or a node dies for good (its description)."""
    while self._stop_reason is None:
      time.sleep(self._poll_s)
      for node, returncode in newly_failed(self._nodes):
        death = f"{node.title} {describe_exit(returncode)}"
        # A diverged learner would diverge again from the same checkpoint: it is never restarted.
        diverged = node.group == "learner" and failures.read_divergence(self._config.workdir) is not None
        if node.group not in RESTARTABLE_GROUPS or node.restarts >= self._max_restarts or diverged:
          self._dead = node
          return death
        node.restarts += 1
        self._print(
          f"{death}; restarting it from the last checkpoint (step "
          f"{checkpointing.for_run(self._config.workdir).latest_step()}), restart {node.restarts} "
          f"of {self._max_restarts}"
        )
        self._start(node)
      if all(node.done for node in self._nodes):
        return "every node exited before the learner finished"
    return None

  def run(self) -> Outcome:
    config = self._config
    failures.clear_failures(config.workdir)
    program = program_lib.make_program(config)
    # Only the learner may use an accelerator; the other processes stay on the CPU.
    cpu_only = launchpad_local.process_resources({"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""})
    resources = {group: cpu_only for group in program.groups if group != "learner"}
    log_dir = os.path.join(config.workdir, "logs", "nodes")
    os.makedirs(log_dir, exist_ok=True)
    for command in launchpad_local.node_commands(program, resources):
      env = {**os.environ, **command.env, "PYTHONUNBUFFERED": "1", "LAEO_NODE": command.title}
      for key, flags in GROUP_ENV.get(command.title.split("/")[0], {}).items():
        env[key] = f"{env.get(key, '')} {flags}".strip()  # After the user's own flags: these win.
      self._nodes.append(
        _Node(command.title, command.command, env, os.path.join(log_dir, command.title.replace("/", "_") + ".log"))
      )
    previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
      for node in self._nodes:
        self._start(node)
      death = self._watch()
      if death is None and self._stop_reason == "interrupt":
        self._print("interrupted: stopping every node (the learner checkpoints the step it reached)")
      self._stop_all()
    finally:
      for s, handler in previous.items():
        signal.signal(s, handler)
    return self._outcome(death)

  def _outcome(self, death: Optional[str]) -> Outcome:
    config = self._config
    step = checkpointing.for_run(config.workdir).latest_step()
    resume = f"Rerun the same command to resume from step {step}."
    if death is not None:
      return death_outcome(config, death, _log_tail(self._dead) if self._dead else "")
    if self._stop_reason == "interrupt":
      return Outcome(130, f"Interrupted at learner step {step} of {config.num_steps} (checkpointed). {resume}")
    if step >= config.num_steps:
      restarts = sum(n.restarts for n in self._nodes)
      note = f" ({restarts} node restart{'s' * (restarts != 1)})" if restarts else ""
      return Outcome(
        0,
        f"Run finished{note}: {config.num_steps} learner steps. Logs: {config.workdir}/logs, "
        f"TensorBoard: {config.workdir}/tb, checkpoints: {config.workdir}/checkpoints",
      )
    return Outcome(143, f"Stopped by SIGTERM at learner step {step} of {config.num_steps} (checkpointed). {resume}")
