"""Which learning code made each row of a figure's table, against the code checked out now.

Every row names the commit of the code that trained it ('+dirty' where that code had uncommitted changes). The
learning code is what a row's numbers depend on: the agents, the data pipeline (batches; the datasets' generation),
the tasks, and the launcher's run preparation, learner, evaluator and final evaluation. Plots, SLURM, the
supervisor and the scripts do not enter. For each commit this lists the learning files that differ from HEAD, so
a table's reader sees which rows were made on other learning code and what changed (a speed-only change still
counts: the reading is theirs).

  python scripts/row_code.py results/paper/fig3.csv
"""

import argparse
import collections
import csv
import os
import re
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LEARNING_CODE = (
  "agents",
  "data_pipeline",
  "environments",
  *(
    f"launch/{name}.py"
    for name in (
      "checkpointing",
      "evaluate",
      "local",
      "nodes",
      "policy",
      "prepare",
      "program",
      "rollout",
      "run_config",
      "variable_client",
    )
  ),
)
DIRTY = "+dirty"  # The mark reproduce.code_commit gives a commit whose code had uncommitted changes.


def _git(root: str, *args: str) -> Optional[str]:
  done = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True)
  return done.stdout if done.returncode == 0 else None


def head(root: str = ROOT) -> str:
  return (_git(root, "rev-parse", "--short=10", "HEAD") or "unknown").strip()


def changed_since(commit: str, root: str = ROOT) -> Optional[List[str]]:
  """The learning files that differ between `commit` (its '+dirty' mark dropped) and HEAD, each with the lines
  added and removed since ('agents/x.py (+3/-1)'); None where the repository does not hold that commit (a row
  that recorded none, or a commit that was never pushed here)."""
  base = commit[: -len(DIRTY)] if commit.endswith(DIRTY) else commit
  if not re.fullmatch(r"[0-9a-f]{4,40}", base):  # A table's cell never reaches git as an option.
    return None
  numstat = _git(root, "diff", "--numstat", base, "HEAD", "--", *LEARNING_CODE)
  if numstat is None:
    return None
  return sorted(
    f"{name} (+{added}/-{removed})" for added, removed, name in (line.split("\t") for line in numstat.splitlines())
  )


def _commits(rows: Sequence[Dict], root: str) -> Dict[str, tuple]:
  """{commit: (rows it made, changed_since)} in the rows' order."""
  counts = collections.Counter(r.get("commit") or "" for r in rows)
  return {commit: (n, changed_since(commit, root)) for commit, n in counts.items()}


def code_markdown(rows: Sequence[Dict], root: str = ROOT) -> str:
  """A table of the rows' commits: how many rows each made and the learning files changed since, against HEAD."""
  lines = [
    f"The code of the rows against this checkout ({head(root)}); learning code: "
    f"{', '.join(LEARNING_CODE[:3])} and the launcher's learner, evaluator and final evaluation "
    "(`scripts/row_code.py`; `git log COMMIT..HEAD -- agents data_pipeline environments launch` says what each "
    "change was for).",
    "",
    "| commit | rows | learning files changed since |",
    "|---|---|---|",
  ]
  for commit, (n, files) in _commits(rows, root).items():
    what = "unknown (not a commit of this repository)" if files is None else ", ".join(files)
    what = what or "none"
    if commit.endswith(DIRTY):
      what += " (and changes not committed when the row was made)"
    lines.append(f"| {commit or '(none recorded)'} | {n} | {what} |")
  return "\n".join(lines) + "\n"


def summary_line(rows: Sequence[Dict], root: str = ROOT) -> str:
  """One sentence for beside a table: how many rows were made on this checkout's learning code."""
  same = sum(n for commit, (n, files) in _commits(rows, root).items() if files == [] and not commit.endswith(DIRTY))
  return (
    f"{same} of {len(rows)} rows were made on the learning code checked out at {head(root)}; the figure's `.md` "
    "lists what changed since for the others (`scripts/row_code.py`)."
  )


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("table", help="A figure's CSV (results/paper/fig<N>.csv).")
  args = parser.parse_args(argv)
  with open(args.table, newline="") as f:
    rows = list(csv.DictReader(f))
  print(code_markdown(rows), end="")
  return 0


if __name__ == "__main__":
  sys.exit(main())
