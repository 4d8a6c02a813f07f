"""scripts/row_code.py: which learning code made each row of a figure's table, against HEAD."""

import subprocess

from scripts import paper_plots
from scripts import reproduce
from scripts import row_code


def _commit_files(root, files):
  """Writes `files` ({path: text}) into the repository at `root` and commits them; returns the commit."""
  for path, text in files.items():
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)
  git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
  subprocess.run([*git, "add", "-A"], check=True, capture_output=True)
  subprocess.run([*git, "commit", "-qm", "c"], check=True, capture_output=True)
  return subprocess.run(
    [*git, "rev-parse", "--short=10", "HEAD"], check=True, capture_output=True, text=True
  ).stdout.strip()


def test_each_rows_commit_is_told_which_learning_files_changed_since(tmp_path):
  subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
  code = {"agents/laeo/learning.py": "a\n", "launch/nodes.py": "n\n", "launch/slurm.py": "s\n", "scripts/x.py": "x\n"}
  first = _commit_files(tmp_path, code)
  # The learner changes (2 lines for 1); a SLURM and a script change are not learning code.
  second = _commit_files(
    tmp_path, {"agents/laeo/learning.py": "b\nc\n", "launch/slurm.py": "t\n", "scripts/x.py": "y\n"}
  )
  root = str(tmp_path)
  assert row_code.changed_since(first, root) == ["agents/laeo/learning.py (+2/-1)"]
  assert row_code.changed_since(second, root) == []
  assert row_code.changed_since("0123456789", root) is None
  assert row_code.changed_since("unrecorded (row committed in c65207c576)", root) is None
  assert row_code.changed_since(f"--output={tmp_path / 'written'}", root) is None
  assert not (tmp_path / "written").exists()

  rows = [{"commit": c} for c in (first, first, second, second + "+dirty", first + "+dirty", "", "0123456789")]
  text = row_code.code_markdown(rows, root)
  assert f"| {first} | 2 | agents/laeo/learning.py (+2/-1) |" in text
  assert f"| {second} | 1 | none |" in text
  assert f"| {second}+dirty | 1 | none (and changes not committed when the row was made) |" in text
  assert f"| {first}+dirty | 1 | agents/laeo/learning.py (+2/-1) (and changes not committed" in text
  assert "| (none recorded) | 1 | unknown" in text and "| 0123456789 | 1 | unknown" in text
  # Only the clean rows of HEAD's learning code count as made on it.
  assert row_code.summary_line(rows, root).startswith(
    f"1 of 7 rows were made on the learning code checked out at {second}"
  )

  # A figure's .md carries the table.
  out = tmp_path / "results"
  out.mkdir()
  for seed, commit in enumerate((first, second)):
    reproduce.append_row(
      str(out / "fig3.csv"),
      {
        "figure": 3, "task": "fetch_push", "agent": "laeo", "seed": seed, "dataset": "d", "quality": "medium",
        "dataset_episodes": 10, "num_success_examples": 200, "num_steps": 4000, "preset": "laptop",
        "success_any_step": 0.5, "success_final_step": 0.25, "eval_episodes": 100, "wall_s": 1,
        "workdir": f"run{seed}", "commit": commit,
      },
    )  # fmt: skip
  paper_plots.plot_figure(3, str(out / "fig3.csv"), str(out), root)
  figure_text = (out / "fig3.md").read_text()
  assert (
    f"| {first} | 1 | agents/laeo/learning.py (+2/-1) |" in figure_text and f"| {second} | 1 | none |" in figure_text
  )
