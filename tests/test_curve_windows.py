"""scripts/curve_windows.py: the quarter means and their standard error, computed by hand."""

import math

import pytest

from scripts import curve_windows


def write_evaluations(workdir, rows):
  path = workdir / "logs" / "evaluator_0"
  path.mkdir(parents=True)
  lines = ["episodes,learner_steps,success_rate,success_rate_final_step"]
  lines += [f"{e},{s},{a},{f}" for e, s, a, f in rows]
  (path / "logs.csv").write_text("\n".join(lines) + "\n")


def test_quarters_average_the_evaluations_inside_each_and_bound_the_change(tmp_path):
  # 8000 steps: the 3rd quarter is (4000, 6000], the 4th (6000, 8000]; step 0 and 4000 fall outside.
  write_evaluations(
    tmp_path,
    [(50, 0, 0.9, 0.9), (50, 4000, 0.9, 0.9), (50, 5000, 0.2, 0.1), (50, 6000, 0.4, 0.3), (100, 8000, 0.5, 0.5)],
  )
  q = curve_windows.quarters(curve_windows.evaluations(str(tmp_path)), 8000)
  assert (q["q3_count"], q["q4_count"], q["q3_episodes"], q["q4_episodes"]) == (2, 1, 100, 100)
  assert q["q3_any"] == pytest.approx(0.3) and q["q3_final"] == pytest.approx(0.2)
  assert q["q4_any"] == pytest.approx(0.5) and q["q4_final"] == pytest.approx(0.5)
  assert q["two_se"] == pytest.approx(2 * math.sqrt(0.3 * 0.7 / 100 + 0.5 * 0.5 / 100))
  with pytest.raises(ValueError, match="No evaluation between steps 8000 and 12000"):
    curve_windows.quarters(curve_windows.evaluations(str(tmp_path)), 16000)
