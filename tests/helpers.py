"""Helpers shared by the test modules (fixtures live in conftest.py)."""

import socket
import time
from typing import List


def make_tiny_run_config(dataset_dir, workdir, **kwargs):
  """prepare.prepare_run for a 10-step BC run on the tiny dataset; kwargs add or override options."""
  from launch import prepare

  return prepare.prepare_run(
    **{
      "agent": "bc",
      "env": "fetch_reach",
      "dataset_dir": dataset_dir,
      "quality": "medium",
      "dataset_episodes": 12,
      "num_evaluators": 1,
      "num_steps": 10,
      "seed": 0,
      "workdir": str(workdir),
      "episodes_per_eval": 1,
      "eval_every": 5,
      "checkpoint_every": 5,
      "log_every": 5,
      "preset": "laptop",
      "config": [],
      **kwargs,
    }
  )


def read_episodes(dataset_dir, include_success: bool = True):
  """Every episode of a dataset with all its step fields, raw, through the one reader (rlds_reader.read_steps)."""
  from data_pipeline import rlds_reader

  episodes = list(rlds_reader.read_steps(str(dataset_dir)))
  if not include_success:
    for episode in episodes:
      episode.pop("success", None)
  return episodes


def free_ports(count: int) -> List[int]:
  """`count` distinct TCP ports that nothing listens on now (held open together while picked)."""
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket()
      s.bind(("", 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def write_evaluations(workdir, points):
  """An evaluator's logs.csv in `workdir` (a pathlib.Path), as a run's evaluator writes it: points (learner step,
  success at any step, at the final step, episodes)."""
  (workdir / "logs" / "evaluator_0").mkdir(parents=True, exist_ok=True)
  lines = ["episodes,learner_steps,success_rate,success_rate_final_step"]
  lines += [f"{e},{s},{a},{f}" for s, a, f, e in points]
  (workdir / "logs" / "evaluator_0" / "logs.csv").write_text("\n".join(lines) + "\n")


def wait_for(predicate, timeout_s, what):
  """Polls `predicate` until it holds; an AssertionError naming `what` after `timeout_s` seconds."""
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    if predicate():
      return
    time.sleep(0.2)
  raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
