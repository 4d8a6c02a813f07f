"""scripts/curve_windows.py: the flattening table of any workdirs, from their evaluators' logs (the windows' own
arithmetic is checked by hand in tests/test_reproduce.py)."""

from scripts import curve_windows
from tests.helpers import write_evaluations


def test_a_workdirs_evaluations_make_its_row(tmp_path):
  workdir = tmp_path / "run"
  write_evaluations(workdir, [(0, 0.9, 0.9, 50), (5000, 0.2, 0.1, 50), (6000, 0.4, 0.3, 50), (8000, 0.5, 0.5, 100)])
  text = curve_windows.markdown([str(workdir)], [8000])
  assert text.splitlines()[2].endswith("| 8000 | 2 / 1 | 0.30 / 0.20 | 0.50 / 0.50 | +0.20 | 0.14 |")
