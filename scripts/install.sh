#!/usr/bin/env bash
# Make the course's virtual environment on top of the active Python and install the pinned stack into it.
# Usage: scripts/install.sh [VENV_DIR]   (default .venv)
# The Python is the active environment's (a GPU platform's conda env with its CUDA torch, or the laptop's);
# PYTHON=/path/to/python chooses another. The plan is decided and printed by helpers/install.py.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
STAMP="$VENV/.course-installed"
WANT=$(cat scripts/install.sh helpers/install.py pyproject.toml | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0  # already installed with these pins
fi
# Python 3.10-3.12 (xtuner 0.2.0 needs < 3.13): check before anything is made or installed.
if ! "$PYTHON" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))'; then
  echo "ERROR: $PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'), outside 3.10-3.12 (xtuner 0.2.0 needs < 3.13). Nothing was installed." >&2
  others=$(command -v python3.12 python3.11 python3.10 2>/dev/null | tr '\n' ' ')
  echo "Fix: activate a Python 3.10-3.12 environment (conda create -n xtuner-course python=3.11 -y && conda activate xtuner-course)${others:+, or run: PYTHON=$(command -v python3.11 python3.12 python3.10 2>/dev/null | head -1) make install}" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV on $PYTHON (Python $("$PYTHON" -c 'import platform; print(platform.python_version())'))"
  # --system-site-packages: the environment's own torch (a GPU platform's CUDA build) stays visible and is kept.
  "$PYTHON" -m venv --system-site-packages "$VENV"
  # A venv made from another venv sees only the base interpreter's packages: add the parent venv's too.
  parent=$("$PYTHON" -c 'import site, sys; print("\n".join(site.getsitepackages()) if sys.prefix != sys.base_prefix else "")')
  if [ -n "$parent" ]; then
    echo "$parent" > "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/course-parent-env.pth"
  fi
fi
"$VENV/bin/python" -m helpers.install
echo "$WANT" > "$STAMP"
echo "== installed into $VENV"
