#!/usr/bin/env bash
# Runs each aigc command on the example article. Assumes `aigc` is on PATH (e.g. `. .venv/bin/activate`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
article="$here/article.md"

echo "== chat (one-shot)"
echo "What is the capital of France?" | aigc chat

echo "== chat with a system prompt"
aigc chat --system "Answer in one short sentence." "Why do cities keep bees?"

echo "== chat about a file (-f puts it before the prompt, with its name)"
aigc chat -f "$article" "In one sentence, what is this article about?" < /dev/null

echo "== a chat session: two commands, one conversation (kept in a file here; -S NAME keeps it in aigc's data)"
session="$(mktemp -d)/bees.json"
aigc chat -S "$session" "Name one thing bees make." < /dev/null
aigc chat -S "$session" "How do they make it?" < /dev/null
aigc sessions show "$session"

echo "== summarize (medium paragraph, with stats)"
aigc summarize "$article" --stats

echo "== summarize (short bullets, JSON)"
aigc summarize "$article" --length short --format bullets --json

echo "== headlines for the article"
aigc headline "$article" -n 3 --style news

echo "== headlines for a topic, as JSON"
aigc headline --topic "rooftop beekeeping in cities" -n 3 --style question --max-words 10 --json

echo "== models"
aigc models list
aigc models info smollm2
