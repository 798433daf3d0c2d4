#!/usr/bin/env bash
# Set up (with the test extra) and run every test: unit tests on tiny random models, then integration
# tests that pull the embedded model (if it is not cached yet) and run it through the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
AIGC_EXTRAS="[test,image,serve]" bash scripts/setup.sh
# The example plugins, so their tests run through the installed entry points too (torch untouched).
echo "setup: installing the example plugins aigc-adcopy and aigc-social-templates (editable) into .venv ..." >&2
.venv/bin/python -m pip install -q -c constraints.txt --no-deps -e plugins/aigc-adcopy -e plugins/aigc-social-templates
export HF_HUB_OFFLINE=1
.venv/bin/python -m pytest -q "$@"
