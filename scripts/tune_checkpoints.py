"""Measures each checkpoint's success rate per task and solves the mixture beta of each dataset quality.

  python scripts/tune_checkpoints.py --tasks fetch_reach fetch_push --episodes 200

For every task and every competence in `scripted.CHECKPOINTS`, rolls out `--episodes` seeded episodes
(exactly as `data_pipeline.generate` does) and records the success rate (any step, and final step). Then
solves beta such that the mixture exp(beta * c) hits each quality's target rate (medium 47.5 %, low 10 %)
and writes everything to results/checkpoint_tuning.json (--out: another file; one entry per task, updated in
place). The betas go into `scripted.QUALITY_BETA` by hand.
"""

import argparse
import json
import multiprocessing
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data_pipeline import generate  # noqa: E402
from data_pipeline import rlds_writer  # noqa: E402
from data_pipeline import scripted  # noqa: E402

TARGETS = {"medium": 0.475, "low": 0.10}
OUT = os.path.join(ROOT, "results", "checkpoint_tuning.json")


def measure(task: str, episodes: int, seed: int) -> dict:
  env = generate._default_env_factory(task, seed)  # pylint: disable=protected-access
  start = time.time()
  rates = []
  for k, competence in enumerate(scripted.CHECKPOINTS):
    any_step, final = [], []
    for i in range(episodes):
      episode = generate.seeded_episode(
        env,
        generate._default_policy_factory,
        competence,  # pylint: disable=protected-access
        seed,
        k * episodes + i,
      )
      any_step.append(rlds_writer.episode_success(episode["success"]))
      final.append(bool(episode["success"][-1]))
    rates.append(
      {
        "competence": competence,
        "success_rate": float(np.mean(any_step)),
        "success_rate_final_step": float(np.mean(final)),
      }
    )
  env.close()
  p = np.array([r["success_rate"] for r in rates])
  betas = {q: solve_beta(p, target) for q, target in TARGETS.items()}
  return {
    "task": task,
    "episodes_per_checkpoint": episodes,
    "seed": seed,
    "checkpoints": rates,
    "beta": betas,
    "predicted_success_rate": {q: mixture_rate(p, b) for q, b in betas.items()},
    "seconds": round(time.time() - start, 1),
  }


def mixture_rate(p: np.ndarray, beta: float) -> float:
  w = np.exp(beta * np.asarray(scripted.CHECKPOINTS))
  return float(w @ p / w.sum())


def solve_beta(p: np.ndarray, target: float) -> float:
  """Bisection on beta in [-30, 30]; the mixture rate increases with beta when p does."""
  lo, hi = -30.0, 30.0
  for _ in range(100):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if mixture_rate(p, mid) < target else (lo, mid)
  return round(0.5 * (lo + hi), 3)


def _measure(args):
  return measure(*args)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--tasks", nargs="+", default=list(scripted.QUALITY_BETA))
  parser.add_argument("--episodes", type=int, default=200)
  parser.add_argument("--seed", type=int, default=1000)
  parser.add_argument(
    "--out",
    default=OUT,
    help="The JSON of every task's checkpoint success rates and betas, one entry per task: the tasks measured "
    "replace theirs, the others are kept (default results/checkpoint_tuning.json).",
  )
  args = parser.parse_args()
  results = {}
  if os.path.exists(args.out):
    with open(args.out) as f:
      results = json.load(f)
  with multiprocessing.get_context("spawn").Pool(min(2, len(args.tasks))) as pool:
    for result in pool.imap_unordered(_measure, [(t, args.episodes, args.seed) for t in args.tasks]):
      results[result["task"]] = result
      print(
        json.dumps({k: result[k] for k in ("task", "beta", "predicted_success_rate", "seconds")}),
        [round(r["success_rate"], 3) for r in result["checkpoints"]],
        flush=True,
      )
      os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
      with open(args.out, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)


if __name__ == "__main__":
  main()
