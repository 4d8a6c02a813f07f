"""Whether a run's success curve has flattened: the mean success rate of its evaluations during training over the
third and the fourth quarter of its learner steps, their difference, and twice that difference's standard error
(binomial, from the episodes evaluated in each quarter). A change within 2 SE: flat at this resolution
(a markdown table; not a test). The figures of scripts/reproduce.py carry the same table for their own runs
(`fig<N>.md`, from their recorded curves); this reads any workdirs.

  python scripts/curve_windows.py runs/paper/fig3/DATASET/laeo_laptop_40000steps_seed0 [...] [--out=FILE.md]

Reads `<workdir>/logs/evaluator_*/logs.csv` (episodes, learner_steps, success_rate, success_rate_final_step). The
evaluations at step 0 and past the run's end are left out; a quarter's mean weights every evaluation alike.
"""

import argparse
import json
import os
import sys
from typing import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts import paper_plots  # noqa: E402


def markdown(workdirs: Sequence[str], num_steps: Sequence[int]) -> str:
  lines = [
    "| run | steps | evaluations (3rd / 4th quarter) | 3rd quarter any / final | 4th quarter any / final | change (any) "
    "| 2 SE |",
    "|---|---|---|---|---|---|---|",
  ]
  for workdir, steps in zip(workdirs, num_steps):
    q = paper_plots.windows(paper_plots.workdir_evaluations(workdir), steps)
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
