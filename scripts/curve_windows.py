"""Whether a run's success curve has flattened: the mean success rate of its evaluations during training over the
third and the fourth quarter of its learner steps, their difference, and twice that difference's standard error
(binomial, from the episodes evaluated in each quarter). A change within 2 SE: flat at this resolution
(a markdown table; not a test).

  python scripts/curve_windows.py runs/paper/fig3/DATASET/laeo_laptop_40000steps_seed0 [...] [--out=FILE.md]

Reads `<workdir>/logs/evaluator_*/logs.csv` (episodes, learner_steps, success_rate, success_rate_final_step). The
evaluations at step 0 and past the run's end are left out; a quarter's mean weights every evaluation alike.
"""

import argparse
import csv
import glob
import json
import math
import os
from typing import Dict, List, Sequence, Tuple


def evaluations(workdir: str) -> List[Tuple[int, float, float, int]]:
  """(learner step, success at any step, success at the final step, episodes) of every evaluation in training."""
  points = []
  for path in sorted(glob.glob(os.path.join(workdir, "logs", "evaluator_*", "logs.csv"))):
    with open(path) as f:
      for r in csv.DictReader(f):
        step, episodes = int(float(r["learner_steps"])), int(r["episodes"])
        points.append((step, float(r["success_rate"]), float(r["success_rate_final_step"]), episodes))
  return sorted(points)


def quarters(points: Sequence[Tuple[int, float, float, int]], num_steps: int) -> Dict[str, float]:
  """Mean success (any step, final step) over (num_steps/2, 3 num_steps/4] and (3 num_steps/4, num_steps]."""
  out = {}
  for name, low, high in (("q3", num_steps // 2, 3 * num_steps // 4), ("q4", 3 * num_steps // 4, num_steps)):
    inside = [p for p in points if low < p[0] <= high]
    if not inside:
      raise ValueError(f"No evaluation between steps {low} and {high}.")
    out[f"{name}_any"] = sum(p[1] for p in inside) / len(inside)
    out[f"{name}_final"] = sum(p[2] for p in inside) / len(inside)
    out[f"{name}_count"] = len(inside)
    out[f"{name}_episodes"] = sum(p[3] for p in inside)
  variance = sum(out[f"{q}_any"] * (1 - out[f"{q}_any"]) / out[f"{q}_episodes"] for q in ("q3", "q4"))
  out["two_se"] = 2 * math.sqrt(variance)
  return out


def markdown(workdirs: Sequence[str], num_steps: Sequence[int]) -> str:
  lines = [
    "| run | steps | evaluations (3rd / 4th quarter) | 3rd quarter any / final | 4th quarter any / final | change (any) "
    "| 2 SE |",
    "|---|---|---|---|---|---|---|",
  ]
  for workdir, steps in zip(workdirs, num_steps):
    q = quarters(evaluations(workdir), steps)
    lines.append(
      f"| {os.path.relpath(workdir)} | {steps} | {q['q3_count']} / {q['q4_count']} | {q['q3_any']:.2f} / "
      f"{q['q3_final']:.2f} | {q['q4_any']:.2f} / {q['q4_final']:.2f} | {q['q4_any'] - q['q3_any']:+.2f} | {q['two_se']:.2f} |"
    )
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  steps = []
  for workdir in args.workdirs:
    with open(os.path.join(workdir, "run_config.json")) as f:
      steps.append(int(json.load(f)["num_steps"]))
  text = markdown(args.workdirs, steps)
  print(text, end="")
  if args.out:
    with open(args.out, "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()
