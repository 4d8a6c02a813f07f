#!/usr/bin/env bash
# Creates .venv with the Python named in .python-version and installs the pinned stack into it.
# Safe to re-run: it only reinstalls when requirements.txt or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")"

want=$(cat .python-version)
find_python() {
  local candidates=()
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)/versions/$want/bin/python3")
  fi
  candidates+=("$(command -v python3.10 || true)")
  for py in "${candidates[@]}"; do
    if [ -n "$py" ] && [ -x "$py" ] && [ "$("$py" -c 'import platform; print(platform.python_version())' 2>/dev/null)" = "$want" ]; then
      echo "$py"; return 0
    fi
  done
  echo "install.sh: Python $want not found (dm-launchpad has no wheels for newer Pythons)." >&2
  echo "  Install it, e.g. 'pyenv install $want', then re-run." >&2
  return 1
}

if [ ! -x .venv/bin/python ] || [ "$(.venv/bin/python -c 'import platform; print(platform.python_version())')" != "$want" ]; then
  rm -rf .venv
  "$(find_python)" -m venv .venv
fi

stamp=.venv/.laeo-installed
digest=$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  echo "install.sh: installing the pinned stack into .venv (a few minutes on first run)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check pip==24.0
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$digest" > "$stamp"
fi
