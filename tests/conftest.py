"""Shared test set-up: offscreen MuJoCo rendering, a quiet TensorFlow, and no silent skips.

A skipped test fails the session unless LAEO_ALLOW_SKIPS=1 is set: no test here skips for a condition that
CI cannot meet (the multi-host test falls back to the loopback without root), so a skip means a test silently
stopped testing anything. Set the variable only to accept a skip knowingly.
"""

import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


_skipped = []


def pytest_runtest_logreport(report):
  if report.skipped:
    _skipped.append(f"{report.nodeid}: {report.longrepr[-1] if isinstance(report.longrepr, tuple) else ''}")


def pytest_sessionfinish(session, exitstatus):
  if _skipped and os.environ.get("LAEO_ALLOW_SKIPS") != "1" and exitstatus == 0:
    print(
      "\n\nerror: tests were skipped (set LAEO_ALLOW_SKIPS=1 where their conditions cannot be met):\n  "
      + "\n  ".join(_skipped)
    )
    session.exitstatus = 1
