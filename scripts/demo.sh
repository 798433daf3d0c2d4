#!/usr/bin/env bash
# Set up, pull the embedded model, then summarize the example article and write headlines for it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/aigc models pull smollm2
echo "== Summary of examples/article.md"
.venv/bin/aigc summarize examples/article.md --length short
echo "== Headlines"
.venv/bin/aigc headline examples/article.md -n 3
