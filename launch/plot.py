"""Draws one or several runs' success rates and learner losses against learner steps into a PNG.

  python launch/plot.py --workdir=runs/laeo_fetch_reach_seed0 [runs/bc_fetch_reach_seed0 ...] [--out=curves.png]

Reads `<workdir>/logs/evaluator_*/logs.csv` and `<workdir>/logs/learner/logs.csv`. The default output is
`<first workdir>/curves.png`, which `launch/local.py` also writes at the end of every run.
"""

import csv
import glob
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

Curve = Tuple[List[int], List[float]]


def _read(path: str) -> List[Dict[str, str]]:
  with open(path) as f:
    return list(csv.DictReader(f))


def read_column(path: str, column: str) -> Curve:
  """(learner steps, values) of one column of a logs.csv, in step order, skipping rows without it."""
  points = sorted(
    (int(float(r["learner_steps"])), float(r[column])) for r in _read(path) if r.get(column) not in (None, "")
  )
  return [s for s, _ in points], [v for _, v in points]


def evaluator_logs(workdir: str) -> List[str]:
  """The logs.csv of each of a run's evaluators (their evaluations during training), sorted by label."""
  return sorted(glob.glob(os.path.join(workdir, "logs", "evaluator_*", "logs.csv")))


def success_curves(workdir: str) -> Dict[str, Curve]:
  """{evaluator label: (steps, success rate at any step)} of a run."""
  curves = {}
  for path in evaluator_logs(workdir):
    curves[os.path.basename(os.path.dirname(path))] = read_column(path, "success_rate")
  return curves


def loss_columns(workdir: str) -> List[str]:
  path = os.path.join(workdir, "logs", "learner", "logs.csv")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    header = next(csv.reader(f), [])
  return [c for c in header if "loss" in c]


def plot_runs(workdirs: Sequence[str], out: Optional[str] = None) -> str:
  """Draws success and losses of every run in `workdirs`; returns the PNG's path."""
  if not workdirs:
    raise ValueError("No workdir given.")
  missing = [w for w in workdirs if not os.path.isdir(os.path.join(w, "logs"))]
  if missing:
    raise FileNotFoundError(f"No logs/ in {', '.join(missing)}: not the workdir of a run.")
  losses = sorted({c for w in workdirs for c in loss_columns(w)})
  fig, axes = plt.subplots(1, 1 + len(losses), figsize=(4.5 * (1 + len(losses)), 3.6), squeeze=False)
  success_ax = axes[0][0]
  for workdir in workdirs:
    name = os.path.basename(os.path.normpath(workdir))
    for label, (steps, rates) in success_curves(workdir).items():
      success_ax.plot(steps, rates, marker="o", markersize=3, label=f"{name} {label}")
    learner_log = os.path.join(workdir, "logs", "learner", "logs.csv")
    for ax, column in zip(axes[0][1:], losses):
      if os.path.exists(learner_log) and column in loss_columns(workdir):
        ax.plot(*read_column(learner_log, column), label=name)
  success_ax.set(title="success rate (any step)", xlabel="learner steps", ylim=(-0.02, 1.02))
  for ax, column in zip(axes[0][1:], losses):
    ax.set(title=column, xlabel="learner steps")
  for ax in axes[0]:
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  fig.tight_layout()
  out = out or os.path.join(workdirs[0], "curves.png")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out


def main(argv):
  workdirs = [*flags.FLAGS.workdir, *argv[1:]]  # --workdir=A B C, or --workdir=A --workdir=B.
  try:
    print(f"wrote {plot_runs(workdirs, flags.FLAGS.out)}")
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  flags.DEFINE_multi_string("workdir", [], "Workdir of a run (repeatable).")
  flags.DEFINE_string("out", None, "PNG to write; default <first workdir>/curves.png.")
  app.run(main)
