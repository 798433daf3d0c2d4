#!/usr/bin/env bash
# Create .venv with torch 2.13.0 (CPU) and aigc installed in editable mode. Extra pip args: $AIGC_EXTRAS (e.g. "[test]").
# AIGC_TORCH_INDEX: a package index to take torch from (https://download.pytorch.org/whl/cpu where PyPI's wheel is CUDA's).
# Each step is said on stderr before it starts (pip itself runs quietly).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
step() { echo "setup: $*" >&2; }
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $("$PYTHON" --version 2>&1) ..."
  "$PYTHON" -m venv .venv
fi
step "upgrading pip in .venv ..."
.venv/bin/python -m pip install -q --upgrade pip
step "installing torch 2.13.0 (CPU, a 192 MB wheel when not installed yet) into .venv${AIGC_TORCH_INDEX:+ from $AIGC_TORCH_INDEX} ..."
.venv/bin/python -m pip install -q -c constraints.txt ${AIGC_TORCH_INDEX:+--index-url "$AIGC_TORCH_INDEX"} "torch==2.13.0"
step "installing aigc${AIGC_EXTRAS:-} (editable) and its dependencies into .venv ..."
.venv/bin/python -m pip install -q -c constraints.txt -e ".${AIGC_EXTRAS:-}"
step "done: .venv/bin/aigc is ready"
