"""examples/library.py, the library tour, runs on the embedded model as written."""

import ast
import os
import subprocess
import sys

import pytest

from conftest_integration import ROOT

pytestmark = pytest.mark.integration


def test_the_library_example_runs_every_task():
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "library.py")], capture_output=True, text=True, timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    sections = {}
    for block in done.stdout.split("== ")[1:]:
        title, _, body = block.partition("\n")
        sections[title] = body.strip().splitlines()
    assert "Paris" in sections["chat"][0]
    assert sections["chat, streamed"][-1].startswith(("(stop, ", "(length, 40 tokens)"))  # the stream's result once read
    assert set(ast.literal_eval(sections["structured answer (a JSON schema, in llm's concise syntax)"][0])) == {"name", "age", "city"}
    assert len(ast.literal_eval(sections["headlines"][0])) == 2
    assert sections["classify"][0].split()[0] in ("negative", "positive")
    assert [line.split()[0] for line in sections["batch over a file (resumable; what `aigc batch` runs)"]] == ["a", "b"]
    assert all(line.split()[1] in ("sports", "technology") for line in sections["batch over a file (resumable; what `aigc batch` runs)"])
    assert len(sections["embeddings and ranking"]) == 2
    from_asyncio = sections["chat, from asyncio (the model runs in a worker thread: the event loop goes on)"]
    ended = next(i for i, line in enumerate(from_asyncio) if line.startswith(("(stop, ", "(length, 40 tokens)")))  # the streamed answer's end
    assert "Ital" in " ".join(from_asyncio[:ended]) and "Paris" in " ".join(from_asyncio[ended + 1:])  # the streamed answer (Italy's: not always "Rome" from a 135M model, greedy on every host), then the other
