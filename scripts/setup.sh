#!/usr/bin/env bash
# Create .venv with torch 2.13.0 (CPU) and aigc installed in editable mode. Extra pip args: $AIGC_EXTRAS (e.g. "[test]").
# AIGC_TORCH_INDEX: a package index to take torch from (https://download.pytorch.org/whl/cpu where PyPI's wheel is CUDA's).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt ${AIGC_TORCH_INDEX:+--index-url "$AIGC_TORCH_INDEX"} "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".${AIGC_EXTRAS:-}"
