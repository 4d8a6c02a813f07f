"""Runs inside a SLURM allocation made by launch/slurm.py: starts the run's roles, watches them, says how it ended.

The batch script of launch/slurm.py execs this on the first replay node. It starts one job step per role with
srun (replay shards on the replay component's nodes, the learner on its own component, the evaluators on theirs
or on the replay nodes), each running launch/distributed.py with a rendezvous directory of this attempt: the
roles serve on free ports and find each other there. Each task writes
`<workdir>/logs/nodes/<role>_<index>_<node>.log`.

How the job ends (its exit code, also in `<workdir>/slurm/job_<id>/outcome.json`), as launch/local.py's:
  0    finished: the learner reached num_steps;
  1    a role died (which, on which nodes, how, the step of the last checkpoint, and its recorded error);
  143  stopped by SIGTERM (scancel, a preemption, a requeue): the learner checkpointed the step it reached.
Roles are stopped with SIGUSR1 to their srun (passed on to the tasks; the learner checkpoints, the replay nodes
serve until it has), the learner's first.
Near the time limit (SIGUSR1, `--signal` in the batch script) the job stops its roles the same way and requeues
itself; a requeued job (also after a preemption) resumes from the last checkpoint.
"""

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import List, Optional

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from launch import checkpointing  # noqa: E402
from launch import failures  # noqa: E402
from launch import job_outcome  # noqa: E402
from launch import run_config as run_config_lib  # noqa: E402
from launch import supervisor  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("run_config", None, "run_config.json of the run.")
flags.DEFINE_integer("evaluator_group", 0, "Heterogeneous-job component of the evaluators (0: the replay nodes).")
flags.DEFINE_float("poll_s", 2.0, "Seconds between looks at the roles' job steps.")
flags.DEFINE_float("stop_grace_s", 25.0, "Seconds the learner has to checkpoint after SIGTERM before the others stop.")

REPLAY_GROUP, LEARNER_GROUP = 0, 1
# As on one machine (launch/supervisor.py): only the learner may use an accelerator; an evaluator's batch-1 policy
# gains nothing from more than one XLA thread.
CPU_ONLY = {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
ROLE_ENV = {"replay": CPU_ONLY, "evaluator": {**CPU_ONLY, "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}}


@dataclasses.dataclass
class _Step:
  role: str
  group: int
  srun: List[str]
  process: Optional[subprocess.Popen] = None
  done: bool = False

  @property
  def nodes(self) -> str:
    return os.environ.get(f"SLURM_JOB_NODELIST_HET_GROUP_{self.group}", "?")


def _steps(config: run_config_lib.RunConfig, rendezvous: str) -> List[_Step]:
  log_dir = os.path.join(config.workdir, "logs", "nodes")
  os.makedirs(log_dir, exist_ok=True)
  run_config = run_config_lib.run_config_path(config.workdir)

  def step(role, group, ntasks, args, label, placement=()):
    # The task's own shell names its log after the SLURM node it runs on (srun's %N is the host name).
    command = (
      f"exec {shlex.quote(sys.executable)} {shlex.quote(os.path.join(_ROOT, 'launch', 'distributed.py'))} "
      f"--role={role} --run_config={shlex.quote(run_config)} --rendezvous_dir={shlex.quote(rendezvous)} {args} "
      f'>> {shlex.quote(log_dir)}/{label}_"$SLURMD_NODENAME".log 2>&1'
    )
    srun = [
      "srun",
      f"--het-group={group}",
      f"--ntasks={ntasks}",
      *placement,
      "--overlap",  # Evaluators may share the replay nodes' CPUs with the replay step.
      "--kill-on-bad-exit=1",  # A task that dies ends its step at once, so this driver sees it.
      f"--job-name={role}",
      "bash",
      "-c",
      command,
    ]
    return _Step(role, group, srun)

  k = config.num_replay_shards
  steps = [
    step("replay", REPLAY_GROUP, k, "--shard_index=$SLURM_PROCID", "replay_${SLURM_PROCID}", ["--ntasks-per-node=1"]),
    step("learner", LEARNER_GROUP, 1, "", "learner_0"),
  ]
  if config.num_evaluators:
    nodes = int(os.environ.get(f"SLURM_JOB_NUM_NODES_HET_GROUP_{FLAGS.evaluator_group}", config.num_evaluators))
    steps.append(
      step(
        "evaluator",
        FLAGS.evaluator_group,
        config.num_evaluators,
        "--evaluator_id=$SLURM_PROCID",
        "evaluator_${SLURM_PROCID}",
        [f"--nodes={min(nodes, config.num_evaluators)}", "--distribution=cyclic"],
      )
    )
  return steps


class Driver:
  """Starts the role steps, watches them, stops them (the learner first, so that it checkpoints), and says how the
  run ended."""

  def __init__(self, config: run_config_lib.RunConfig, job_id: str, attempt: int):
    self._config = config
    self._job_id = job_id
    self._attempt = attempt
    self._stop_reason: Optional[str] = None  # "sigterm", or "time" (SIGUSR1: the time limit is near).
    rendezvous = os.path.join(job_outcome.job_dir(config.workdir, job_id), f"attempt_{attempt}")
    os.makedirs(rendezvous, exist_ok=True)
    self._steps = _steps(config, rendezvous)

  def _on_signal(self, signum, frame):
    del frame
    self._stop_reason = self._stop_reason or ("time" if signum == signal.SIGUSR1 else "sigterm")

  def _print(self, message: str) -> None:
    print(f"[slurm_job {self._job_id}, attempt {self._attempt}] {message}", flush=True)

  def _watch(self) -> Optional[str]:
    while self._stop_reason is None:
      time.sleep(FLAGS.poll_s)
      for s, code in supervisor.newly_failed(self._steps):
        if self._job_is_ending():
          break  # scancel, a requeue or a preemption signals the steps before this script.
        how = supervisor.describe_exit(-(code - 128) if code > 128 else code)
        return f"the {s.role} step (nodes {s.nodes}) {how}"
      if all(s.done for s in self._steps):
        return None
    return None

  def _log_tails(self, death: str, lines: int = 15) -> str:
    """The last lines of the logs of the role that died, to show with its death."""
    role = next(s.role for s in self._steps if death.startswith(f"the {s.role} step"))
    log_dir = os.path.join(self._config.workdir, "logs", "nodes")
    tails = []
    for name in sorted(n for n in os.listdir(log_dir) if n.startswith(f"{role}_")):
      with open(os.path.join(log_dir, name), errors="replace") as f:
        tail = f.read().splitlines()[-lines:]
      tails.append(f"\nThe last lines of {os.path.join(log_dir, name)}:\n  " + "\n  ".join(tail))
    return "".join(tails)

  def _job_is_ending(self) -> bool:
    """Whether SLURM is ending this job (its state is no longer RUNNING); then records a stop by SIGTERM."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", self._job_id], capture_output=True, text=True, check=False)
    ending = proc.returncode == 0 and "JobState=RUNNING" not in proc.stdout.splitlines()[0]
    if ending:
      self._stop_reason = self._stop_reason or "sigterm"
    return ending

  def _stop_all(self) -> None:
    """Stops the learner's step first (it checkpoints the step it reached), then the others: SIGUSR1, which srun
    passes on to its tasks (on SIGTERM srun kills them); SIGTERM to a step still running after the grace."""
    for roles in (("learner",), None):
      chosen = [s for s in self._steps if roles is None or s.role in roles]
      for s in chosen:
        if s.process.poll() is None:
          s.process.send_signal(signal.SIGUSR1)
      deadline = time.time() + FLAGS.stop_grace_s
      for s in chosen:
        try:
          s.process.wait(max(deadline - time.time(), 0.0))
        except subprocess.TimeoutExpired:
          self._print(f"the {s.role} step did not stop within {FLAGS.stop_grace_s:.0f} s: ending it")
          s.process.terminate()  # srun ends its step's tasks.
          try:
            s.process.wait(60)
          except subprocess.TimeoutExpired:
            s.process.kill()
            s.process.wait()

  def run(self) -> supervisor.Outcome:
    config = self._config
    failures.clear_failures(config.workdir)
    checkpoints = checkpointing.for_run(config.workdir)
    if checkpoints.latest_step() >= config.num_steps:
      return supervisor.Outcome(0, f"Run finished: {config.num_steps} learner steps (already, before this attempt).")
    signal.signal(signal.SIGTERM, self._on_signal)
    signal.signal(signal.SIGUSR1, self._on_signal)
    for s in self._steps:
      env = {**os.environ, **ROLE_ENV.get(s.role, {}), "PYTHONUNBUFFERED": "1"}
      if "XLA_FLAGS" in ROLE_ENV.get(s.role, {}):  # After the user's own flags: these win.
        env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {ROLE_ENV[s.role]['XLA_FLAGS']}".strip()
      s.process = subprocess.Popen(s.srun, env=env, stdin=subprocess.DEVNULL)
    self._print(f"started {', '.join(f'{s.role} on {s.nodes}' for s in self._steps)}; logs in {config.workdir}/logs")
    death = self._watch()
    if death is not None or self._stop_reason is not None:
      self._print(f"stopping every role ({death or self._stop_reason}); the learner checkpoints first")
    self._stop_all()
    step = checkpoints.latest_step()
    if death is not None and step < config.num_steps:
      return supervisor.death_outcome(config, death, self._log_tails(death))
    if step >= config.num_steps:
      return supervisor.Outcome(
        0,
        f"Run finished: {config.num_steps} learner steps. Logs: {config.workdir}/logs, TensorBoard: "
        f"{config.workdir}/tb, checkpoints: {config.workdir}/checkpoints",
      )
    if self._stop_reason == "time":
      subprocess.run(["scontrol", "requeue", self._job_id], check=False)
      return supervisor.Outcome(
        143, f"Near the time limit at learner step {step} of {config.num_steps} (checkpointed): requeued, to resume."
      )
    return supervisor.Outcome(
      143,
      f"Stopped by SIGTERM (scancel, a preemption or a requeue) at learner step {step} of {config.num_steps} "
      "(checkpointed). A requeued job resumes by itself; after scancel, submit the same command again to resume.",
    )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  job_id = os.environ.get("SLURM_JOB_ID")
  if not job_id or not FLAGS.run_config:
    raise app.UsageError("launch/slurm_job.py runs inside the job launch/slurm.py submits (needs --run_config).")
  attempt = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
  config = run_config_lib.load_run_config(FLAGS.run_config)
  outcome = Driver(config, job_id, attempt).run()
  job_outcome.write_outcome(config.workdir, job_id, attempt, outcome.exit_code, outcome.message)
  print(("" if outcome.exit_code == 0 else "error: ") + outcome.message, flush=True)
  sys.exit(outcome.exit_code)


if __name__ == "__main__":
  app.run(main)
