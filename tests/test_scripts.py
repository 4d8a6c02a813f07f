"""Every script in scripts/ still starts: it answers --help (a script that no longer imports fails here)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(f for f in os.listdir(os.path.join(ROOT, "scripts")) if f.endswith(".py") and f != "__init__.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_answers_help(script):
  proc = subprocess.run(
    [sys.executable, os.path.join("scripts", script), "--help"],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=ROOT,
    env={**os.environ, "MUJOCO_GL": "egl"},
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "usage:" in proc.stdout.lower(), proc.stdout[-2000:]
