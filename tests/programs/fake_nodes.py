"""A supervisor run over fake node processes, for tests/test_supervisor.py: the supervisor's own behaviour (exit
codes, restarts, stopping, killing) in seconds, without Launchpad, Reverb or JAX in the nodes.

Each node is `python fake_nodes.py --node=KIND`:
  sleeper    runs until SIGTERM, then exits 0;
  stubborn   ignores SIGTERM (the supervisor must kill it);
  crasher    exits with code 3 after 0.3 s;
  crash_once exits with code 1 the first time (a marker file in the workdir), then behaves as a sleeper.
`python fake_nodes.py --run --workdir=W --nodes=learner/0:sleeper,evaluator/0:crasher [--max_restarts=N]` runs a
supervisor over them and exits with its outcome's code.
"""

import argparse
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def node(kind: str, workdir: str) -> None:
  print(f"fake node {kind} up", flush=True)
  if kind == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
  elif kind == "crasher":
    time.sleep(0.3)
    sys.exit(3)
  elif kind == "crash_once":
    marker = os.path.join(workdir, "crashed_once")
    if not os.path.exists(marker):
      open(marker, "w").close()
      sys.exit(1)
  while True:
    time.sleep(0.1)


def supervisor(workdir: str, nodes: str, max_restarts: int = 0, grace_s: float = 1.0, patch=setattr):
  """A Supervisor whose program is the fake nodes `nodes` ('title:kind,...'), for a run of 10 steps in workdir.
  `patch(module, name, value)` replaces the Launchpad program and the grace period (tests pass pytest's
  monkeypatch.setattr, which undoes it)."""
  sys.path.insert(0, ROOT)
  from launch import launchpad_local  # pylint: disable=g-import-not-at-top
  from launch import program as program_lib  # pylint: disable=g-import-not-at-top
  from launch import run_config as run_config_lib  # pylint: disable=g-import-not-at-top
  from launch import supervisor as supervisor_lib  # pylint: disable=g-import-not-at-top

  pairs = [item.split(":") for item in nodes.split(",")]
  commands = [
    launchpad_local.NodeCommand(
      title, [sys.executable, os.path.abspath(__file__), f"--node={kind}", f"--workdir={workdir}"], {}
    )
    for title, kind in pairs
  ]
  program = type("Program", (), {"groups": {t.split("/")[0]: [] for t, _ in pairs}})()
  patch(program_lib, "make_program", lambda config: program)
  patch(launchpad_local, "node_commands", lambda program, resources: commands)
  patch(supervisor_lib, "STOP_GRACE_S", grace_s)
  config = run_config_lib.RunConfig(agent="bc", env=None, dataset_dir="", workdir=workdir, num_steps=10)
  return supervisor_lib.Supervisor(config, max_restarts=max_restarts, poll_s=0.05)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--node", default=None)
  parser.add_argument("--run", action="store_true")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--nodes", default="")
  parser.add_argument("--max_restarts", type=int, default=0)
  parser.add_argument("--grace_s", type=float, default=20.0)
  args = parser.parse_args()
  if args.node:
    node(args.node, args.workdir)
  outcome = supervisor(args.workdir, args.nodes, args.max_restarts, args.grace_s).run()
  print(outcome.message, flush=True)
  sys.exit(outcome.exit_code)


if __name__ == "__main__":
  main()
