"""How well a learner could imitate each task's clean controller (not a test).

  python scripts/measure_expert_robustness.py --episodes 100

A learner reads positions from its observations only to within some error, so the best it can imitate is the
controller's action averaged over that error. For every state task and noise level sigma (metres, Gaussian, on
every position the controller reads except the fixed goal), rolls out the noise-averaged controller (--samples
draws per step) and records its success rate (any step and final step) and how much the hand still moves after
the first success (mean |action| over those steps). Writes results/push_expert.{json,md} (--out elsewhere), each
row with the commit of the code.
"""

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import environments  # noqa: E402
from data_pipeline import scripted  # noqa: E402
from scripts import reproduce  # noqa: E402

OUT = os.path.join(ROOT, "results", "push_expert")


def measure(task: str, sigma: float, episodes: int, samples: int, seed: int) -> dict:
  env = environments.make(task, seed=seed)
  rng = np.random.default_rng(seed)
  controller = scripted.CONTROLLERS[task]
  if sigma > 0:
    controller = scripted.noise_averaged(controller, sigma, samples, rng)
  any_step, final, after = [], [], []
  for _ in range(episodes):
    env.reset()
    succeeded = False
    for _ in range(env.horizon):
      action = np.clip(controller(env.privileged_state()), -1.0, 1.0)
      if succeeded:
        after.append(np.abs(action[:3]).mean())
      env.step(action.astype(np.float32))
      succeeded |= env.success()
    any_step.append(succeeded)
    final.append(env.success())
  env.close()
  return {
    "task": task,
    "sigma_m": sigma,
    "episodes": episodes,
    "samples": samples if sigma > 0 else 1,
    "success_any_step": float(np.mean(any_step)),
    "success_final_step": float(np.mean(final)),
    "mean_abs_action_after_success": round(float(np.mean(after)), 4) if after else None,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tasks", nargs="+", default=list(scripted.CONTROLLERS))
  parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.005, 0.01, 0.02])
  parser.add_argument("--episodes", type=int, default=100)
  parser.add_argument("--samples", type=int, default=16)
  parser.add_argument("--seed", type=int, default=2000)
  parser.add_argument(
    "--out",
    default=OUT,
    metavar="PREFIX",
    help="Writes the rows to PREFIX.json and their table to PREFIX.md (default results/push_expert).",
  )
  args = parser.parse_args()
  commit = reproduce.code_commit()
  rows = []
  for task in args.tasks:
    for sigma in args.sigmas:
      row = {**measure(task, sigma, args.episodes, args.samples, args.seed), "commit": commit}
      print(json.dumps(row), flush=True)
      rows.append(row)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out + ".json", "w") as f:
    json.dump(rows, f, indent=2)
  lines = [
    "Noise-averaged clean controllers (`python scripts/measure_expert_robustness.py`): success any step / final "
    "step, and the mean |action| per axis after the first success.\n",
    "| task | sigma (cm) | episodes | success | after success | commit |",
    "|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['task']} | {100 * r['sigma_m']:g} | {r['episodes']} | {r['success_any_step']:.2f} / "
      f"{r['success_final_step']:.2f} | {r['mean_abs_action_after_success']} | {r['commit']} |"
    )
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
