"""Draws results/paper/fig<N>.png from the table scripts/reproduce.py writes (bars with per-seed points, or
per-seed training curves for Fig. 4); reproduce.py calls it after every run.

A run's evaluations during training live in its workdir (`runs/`, not committed), so each drawing first copies
those of every run in the table into `<out_dir>/curves.csv` (once per run): Fig. 4, and each figure's table of
whether its runs' curves have flattened, are then drawn from committed files on any machine.

  python scripts/paper_plots.py --figure=3     # redraw one figure and its table in docs/results.md from its CSV
"""

import argparse
import collections
import csv
import math
import os
import sys
from typing import Dict, List, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from launch import plot  # noqa: E402
from scripts import row_code  # noqa: E402

AGENT_ORDER = ("laeo", "oril", "purl", "bc")
COLORS = {"laeo": "tab:blue", "oril": "tab:orange", "purl": "tab:green", "bc": "tab:gray"}
TITLES = {
  0: "Pipeline sanity: BC on clean-controller data",
  3: "Fig. 3: medium-quality data",
  5: "Fig. 5: low-quality data",
  6: "Fig. 6: success examples / data size",
  7: "Fig. 7: occluded camera",
}


def _rows(table: str) -> List[Dict]:
  if not os.path.exists(table):
    return []
  with open(table) as f:
    return list(csv.DictReader(f))


def cell_labels(figure: int, rows: List[Dict]) -> List[str]:
  """Each row's cell: its task (Fig. 6: with its success examples and episodes), and its steps when the table
  holds runs of several budgets (e.g. --extend's), so that no cell averages runs of different lengths."""
  several = len({r["num_steps"] for r in rows}) > 1
  labels = []
  for r in rows:
    label = r["task"] if figure != 6 else f"{r['task']} ({r['num_success_examples']} ex, {r['dataset_episodes']} ep)"
    labels.append(f"{label} [{r['num_steps']} steps]" if several else label)
  return labels


def _bars(ax, groups: Dict[str, Dict[str, List[float]]], metric_name: str) -> None:
  """groups: x label -> agent -> per-seed values; mean bars with every seed as a dot."""
  labels = list(groups)
  agents = [a for a in AGENT_ORDER if any(a in g for g in groups.values())]
  width = 0.8 / max(1, len(agents))
  for j, agent in enumerate(agents):
    for i, label in enumerate(labels):
      values = groups[label].get(agent, [])
      if not values:
        continue
      x = i - 0.4 + width * (j + 0.5)
      ax.bar(x, np.mean(values), width, color=COLORS[agent], alpha=0.7, label=agent if i == 0 else None)
      ax.scatter(np.full(len(values), x), values, color="k", s=10, zorder=3)
  ax.set_xticks(range(len(labels)))
  ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
  ax.set_ylim(0, 1.05)
  ax.set_ylabel(metric_name)
  handles, names = ax.get_legend_handles_labels()
  by_name = dict(zip(names, handles))
  ax.legend([by_name[a] for a in agents if a in by_name], [a for a in agents if a in by_name], fontsize=8)


Point = Tuple[int, float, float, int]  # (learner step, success at any step, at the final step, episodes)
CURVE_COLUMNS = ("workdir", "commit", "learner_steps", "episodes", "success_rate", "success_rate_final_step")


def _point(r: Dict) -> Point:
  """An evaluation of an evaluator's logs.csv or of curves.csv (the same columns)."""
  return (
    int(float(r["learner_steps"])),
    float(r["success_rate"]),
    float(r["success_rate_final_step"]),
    int(r["episodes"]),
  )


def workdir_evaluations(workdir: str) -> List[Point]:
  """Every evaluation during training of the run in `workdir` (its evaluators' logs.csv), in step order."""
  return sorted(_point(r) for path in plot.evaluator_logs(workdir) for r in _rows(path))


def _curve_key(row: Dict) -> Tuple[str, str]:
  return row["workdir"], row.get("commit") or ""


def read_curves(out_dir: str) -> Dict[Tuple[str, str], List[Point]]:
  """{(workdir, commit): evaluations} of `<out_dir>/curves.csv`."""
  curves: Dict[Tuple[str, str], List[Point]] = collections.defaultdict(list)
  for r in _rows(os.path.join(out_dir, "curves.csv")):
    curves[_curve_key(r)].append(_point(r))
  return {key: sorted(points) for key, points in curves.items()}


def _append_curve_rows(path: str, rows: Sequence[Sequence]) -> None:
  """Appends `rows` (cells in CURVE_COLUMNS order) to the curves file `path`, made with its header if missing."""
  new = not os.path.exists(path)
  with open(path, "a", newline="") as f:
    writer = csv.writer(f)
    if new:
      writer.writerow(CURVE_COLUMNS)
    writer.writerows(rows)


def record_curves(rows: Sequence[Dict], out_dir: str, root: str) -> int:
  """Appends to `<out_dir>/curves.csv` the evaluations of each row's run whose curve it lacks and whose workdir
  (under `root`) has them; returns how many runs it added."""
  path, known, added = os.path.join(out_dir, "curves.csv"), set(read_curves(out_dir)), 0
  for row in rows:
    key = _curve_key(row)
    points = [] if key in known else workdir_evaluations(os.path.join(root, row["workdir"]))
    if not points:
      continue
    _append_curve_rows(path, [[*key, step, episodes, any_step, final] for step, any_step, final, episodes in points])
    known.add(key)
    added += 1
  return added


def merge_curves(out_dir: str, other_dir: str) -> int:
  """Appends to `<out_dir>/curves.csv` each run's curve in `<other_dir>/curves.csv` (another checkout's, e.g. a
  sweep's worktree) that it lacks; returns how many runs it added."""
  known = set(read_curves(out_dir))
  new = [r for r in _rows(os.path.join(other_dir, "curves.csv")) if _curve_key(r) not in known]
  if new:
    _append_curve_rows(os.path.join(out_dir, "curves.csv"), [[r.get(c, "") for c in CURVE_COLUMNS] for r in new])
  return len({_curve_key(r) for r in new})


def _curves(ax, rows: List[Dict], curves: Dict, task: str) -> None:
  for row in rows:
    if row["task"] != task or row["agent"] not in ("laeo", "oril"):
      continue
    # The run ends at num_steps before its evaluator sees them: the final checkpoint's evaluation closes the curve.
    points = [(p[0], p[1]) for p in curves.get(_curve_key(row), []) if p[0] < int(row["num_steps"])]
    points.append((int(row["num_steps"]), float(row["success_any_step"])))
    steps, rates = zip(*points)
    ax.plot(steps, rates, color=COLORS[row["agent"]], alpha=0.8, label=row["agent"])
  handles, names = ax.get_legend_handles_labels()
  by_name = dict(zip(names, handles))
  ax.legend(by_name.values(), by_name.keys(), fontsize=8)
  ax.set_xlabel("learner steps")
  ax.set_ylabel("success rate (any step)")
  ax.set_ylim(-0.02, 1.02)
  ax.set_title(f"Fig. 4: per-seed training curves, {task}")


def windows(points: Sequence[Point], num_steps: int) -> Dict[str, float]:
  """Mean success (any step, final step) of the evaluations in (num_steps/2, 3 num_steps/4] and in
  (3 num_steps/4, num_steps], and twice the standard error of their difference (binomial, from the episodes
  evaluated in each window; every evaluation weighs alike in its window's mean)."""
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


def flatness_markdown(figure: int, rows: Sequence[Dict], curves: Dict) -> str:
  """Whether each run's curve has flattened: its 3rd- and 4th-quarter mean success during training; a change of
  the any-step mean within 2 SE reads 'flat' at this resolution."""
  lines = [
    "Has each run's curve flattened? Mean success of its evaluations during training over the 3rd and the 4th "
    "quarter of its steps; a change (any step) within 2 SE is flat at this resolution.\n",
    "| task | agent | seed | steps | evaluations (3rd / 4th) | 3rd quarter any / final | 4th quarter any / final "
    "| change | 2 SE | curve |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  missing = 0
  for label, row in zip(cell_labels(figure, list(rows)), rows):
    points = curves.get(_curve_key(row), [])
    try:
      q = windows(points, int(row["num_steps"]))
    except ValueError:
      missing += 1
      continue
    change = q["q4_any"] - q["q3_any"]
    verdict = "flat" if abs(change) <= q["two_se"] else ("rising" if change > 0 else "falling")
    lines.append(
      f"| {label} | {row['agent']} | {row['seed']} | {row['num_steps']} | {q['q3_count']} / {q['q4_count']} | "
      f"{q['q3_any']:.2f} / {q['q3_final']:.2f} | {q['q4_any']:.2f} / {q['q4_final']:.2f} | {change:+.2f} | "
      f"{q['two_se']:.2f} | {verdict} |"
    )
  note = (
    f"{missing} of {len(rows)} runs have no recorded curve covering their second half (made before curves were "
    "recorded, with their workdirs gone, or evaluated too rarely)."
  )
  if missing == len(rows):
    return lines[0].replace("\n", " ") + note + "\n"  # No table without a row.
  return "\n".join(lines + ([f"\n{note}"] if missing else [])) + "\n"


def fig6_series(rows: List[Dict], task: str, axis: str) -> Dict[str, Dict[int, List[Dict]]]:
  """Fig. 6's two sweeps of `task`: agent -> x -> rows. axis 'examples': x = num_success_examples over the runs on
  the full dataset (the size the success-example runs share); axis 'episodes': x = dataset_episodes over the runs
  with the most success examples (the dataset-size runs use the default 200)."""
  rows = [r for r in rows if r["task"] == task]
  sizes = collections.Counter(int(r["dataset_episodes"]) for r in rows)
  examples = max((int(r["num_success_examples"]) for r in rows), default=0)
  full = sizes.most_common(1)[0][0] if sizes else 0
  series: Dict[str, Dict[int, List[Dict]]] = collections.defaultdict(lambda: collections.defaultdict(list))
  for r in rows:
    if axis == "examples" and int(r["dataset_episodes"]) == full:
      series[r["agent"]][int(r["num_success_examples"])].append(r)
    elif axis == "episodes" and int(r["num_success_examples"]) == examples:
      series[r["agent"]][int(r["dataset_episodes"])].append(r)
  return series


def _fig6(rows: List[Dict]):
  """One row of panels per task: success against the number of success examples, and against the dataset size;
  per agent the mean over seeds at any step (solid) and at the final step (dashed), every seed a dot."""
  tasks = list(dict.fromkeys(r["task"] for r in rows)) or ["fetch_push"]
  fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 4 * len(tasks)), squeeze=False)
  for row_axes, task in zip(axes, tasks):
    for ax, axis, xlabel in zip(row_axes, ("examples", "episodes"), ("success examples", "dataset episodes")):
      for agent, points in fig6_series(rows, task, axis).items():
        xs = sorted(points)
        for column, style in (("success_any_step", "-"), ("success_final_step", "--")):
          means = [np.mean([float(r[column]) for r in points[x]]) for x in xs]
          label = f"{agent} ({'any step' if style == '-' else 'final step'})"
          ax.plot(xs, means, style, marker="o", color=COLORS[agent], label=label)
          for x in xs:
            ax.scatter([x] * len(points[x]), [float(r[column]) for r in points[x]], color="k", s=8, zorder=3)
      ax.set_xscale("log")
      ax.set_ylim(-0.02, 1.02)
      ax.set_xlabel(xlabel)
      ax.set_ylabel("success")
      ax.set_title(task, fontsize=9)
      ax.legend(fontsize=7)
  return fig


def _mean_std(values: List[float]) -> str:
  return f"{np.mean(values):.3f} ± {np.std(values):.3f} (n={len(values)})" if values else "n/a"


def stability_markdown(rows: List[Dict], curves: Dict) -> str:
  """Fig. 4's measure of stability: per run, the mean absolute change of the success rate (any step) between
  consecutive evaluations during training; per task and agent its mean and spread over seeds."""
  cells: Dict[tuple, List[tuple]] = collections.defaultdict(list)
  for row in rows:
    points = curves.get(_curve_key(row), [])
    steps, rates, episodes = [p[0] for p in points], [p[1] for p in points], [p[3] for p in points]
    if len(rates) >= 2:
      # The second half of training too: there a rising curve no longer counts as instability.
      late = np.asarray(rates)[np.asarray(steps) >= int(row.get("num_steps") or max(steps)) // 2]
      late_change = float(np.mean(np.abs(np.diff(late)))) if len(late) >= 2 else float("nan")
      cells[(row["task"], row["agent"])].append(
        (float(np.mean(np.abs(np.diff(rates)))), late_change, len(rates), episodes)
      )
  lines = [
    "Stability during training: mean |change| of the success rate (any step) between consecutive evaluations, "
    "over the whole run and over its second half, mean ± std over seeds (lower is steadier).\n",
    "| task | agent | seeds | mean abs change | second half | evaluations per run | episodes per evaluation |",
    "|---|---|---|---|---|---|---|",
  ]
  for (task, agent), runs in sorted(cells.items()):
    changes, late = [c for c, _, _, _ in runs], [c for _, c, _, _ in runs]
    episodes = sorted({int(e) for _, _, _, eps in runs for e in eps})
    lines.append(
      f"| {task} | {agent} | {len(runs)} | {np.mean(changes):.3f} ± {np.std(changes):.3f} | "
      f"{_mean_std([c for c in late if np.isfinite(c)])} | {'/'.join(str(n) for n in sorted({n for _, _, n, _ in runs}))} | "
      f"{'/'.join(map(str, episodes))} |"
    )
  return "\n".join(lines) + "\n"


RESULTS_DOC = os.path.join("docs", "results.md")  # Quotes the project's own tables, between markers.


def update_table(document: str, name: str, text: str) -> bool:
  """Replaces the document's block between `<!-- table:NAME -->` and `<!-- end table:NAME -->` by `text`; False
  when it has no such block."""
  if not os.path.exists(document):
    return False
  with open(document) as f:
    content = f.read()
  start, end = f"<!-- table:{name} -->", f"<!-- end table:{name} -->"
  if start not in content or end not in content:
    return False
  head, rest = content.split(start, 1)
  _, tail = rest.split(end, 1)
  with open(document, "w") as f:
    f.write(f"{head}{start}\n{text.rstrip()}\n{end}{tail}")
  return True


def _suptitle(fig, figure: int, rows: List[Dict]) -> None:
  steps = sorted({r["num_steps"] for r in rows})
  episodes = sorted({r["eval_episodes"] for r in rows})
  marks = "lines: mean" if figure == 6 else "bars: mean"
  fig.suptitle(
    f"{TITLES[figure]} ({'/'.join(steps)} learner steps, "
    f"{'/'.join(sorted({r['preset'] for r in rows}))} preset, final checkpoint, "
    f"{'/'.join(episodes)} episodes; {marks}, dots: seeds)"
  )


def plot_figure(figure: int, table: str, out_dir: str, root: str) -> str:
  """Draws figure `figure` from `table` (and the curves of its runs: recorded first, see the module's doc); returns
  the PNG's path. Fig. 4 with no curve for any of its runs raises ValueError and leaves its files as they were."""
  rows = _rows(table)
  record_curves(rows, out_dir, root)
  curves = read_curves(out_dir)
  out = os.path.join(out_dir, f"fig{figure}.png")
  if figure == 4:
    rows = [r for r in rows if r["agent"] in ("laeo", "oril") and _curve_key(r) in curves]
    if not rows:
      raise ValueError(f"Fig. 4: no run of {table} has a recorded curve (curves.csv) or a workdir with one.")
    present = {r["task"] for r in rows}
    tasks = [t for t in ("fetch_push", "fetch_push_image") if t in present] or ["fetch_push"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
      _curves(ax, rows, curves, task)
    stability = stability_markdown(rows, curves)
    with open(os.path.join(out_dir, "fig4.md"), "w") as f:
      f.write(stability)
    if out_dir == os.path.join(root, "results", "paper"):
      update_table(os.path.join(root, RESULTS_DOC), "fig4", stability)
  elif figure == 6:
    fig = _fig6(rows)
    _suptitle(fig, figure, rows)
  else:
    metrics = (("success_any_step", "success (any step)"), ("success_final_step", "success (final step)"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, (column, name) in zip(axes, metrics):
      groups: Dict[str, Dict[str, List[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
      for label, r in zip(cell_labels(figure, rows), rows):
        groups[label][r["agent"]].append(float(r[column]))
      _bars(ax, groups, name)
    _suptitle(fig, figure, rows)
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)
  if figure != 4:
    summary = summary_markdown(figure, table)
    with open(os.path.join(out_dir, f"fig{figure}.md"), "w") as f:
      f.write(
        "Success rate of the final checkpoint: mean over seeds, any step / final step "
        "(per-seed any-step values in brackets).\n\n"
        + summary
        + "\n"
        + flatness_markdown(figure, rows, curves)
        + "\n"
        + row_code.code_markdown(rows, root)
      )
    if out_dir == os.path.join(root, "results", "paper"):  # docs/results.md quotes the project's own tables.
      update_table(os.path.join(root, RESULTS_DOC), f"fig{figure}", summary + "\n" + row_code.summary_line(rows, root))
  return out


def summary_markdown(figure: int, table: str) -> str:
  """Mean (and per-seed values) of each task x agent, both metrics, as a markdown table."""
  rows = _rows(table)
  cells: Dict[tuple, List[Dict]] = collections.defaultdict(list)
  for label, r in zip(cell_labels(figure, rows), rows):
    cells[(label, r["agent"])].append(r)
  labels = list(dict.fromkeys(label for label, _ in cells))
  agents = [a for a in AGENT_ORDER if any(a == agent for _, agent in cells)]
  lines = [f"| task | {' | '.join(agents)} |", "|---" * (len(agents) + 1) + "|"]
  for label in labels:
    entries = []
    for agent in agents:
      runs = sorted(cells.get((label, agent), []), key=lambda r: int(r["seed"]))
      if not runs:
        entries.append("")
        continue
      any_step = [float(r["success_any_step"]) for r in runs]
      final = [float(r["success_final_step"]) for r in runs]
      entries.append(
        f"{np.mean(any_step):.2f} / {np.mean(final):.2f} (n={len(runs)}: " f"{', '.join(f'{v:.2f}' for v in any_step)})"
      )
    lines.append(f"| {label} | {' | '.join(entries)} |")
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--figure", type=int, required=True, choices=sorted({0, 3, 4, 5, 6, 7}))
  parser.add_argument("--out_dir", default=os.path.join(ROOT, "results", "paper"))
  args = parser.parse_args()
  table = os.path.join(args.out_dir, f"fig{3 if args.figure == 4 else args.figure}.csv")
  print(plot_figure(args.figure, table, args.out_dir, ROOT))


if __name__ == "__main__":
  main()
