"""The tree keeps the one formatter configuration of pyproject.toml ([tool.ruff])."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_python_file_is_formatted():
  proc = subprocess.run(
    [sys.executable, "-m", "ruff", "format", "--check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
  )
  assert proc.returncode == 0, f"run `.venv/bin/ruff format .`:\n{proc.stdout}{proc.stderr}"
