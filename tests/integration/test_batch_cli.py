"""`aigc batch` on the real embedded model: a run killed with SIGKILL mid-way, then resumed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest_integration import aigc

pytestmark = pytest.mark.integration

TOPICS = [
    "a new bridge opens in the city", "the local team wins the cup", "rain expected all week",
    "a bakery doubles its prices", "students build a small robot", "the museum adds a dinosaur",
    "a power cut hits the north", "the mayor plans more bike lanes", "a cat rescued from a tree",
    "the library stays open late", "a new train line to the coast", "farmers report a record harvest",
]


def test_a_killed_batch_run_resumes_without_duplicates_or_torn_rows(tmp_path):
    source = tmp_path / "topics.jsonl"
    source.write_text("".join(json.dumps({"id": f"t{i}", "topic": t}) + "\n" for i, t in enumerate(TOPICS)))
    out = tmp_path / "out.jsonl"
    args = ["batch", "headline", "-i", str(source), "--field", "topic", "-o", str(out), "-O", "n=1", "--max-tokens", "24", "--concurrency", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.Popen([sys.executable, "-m", "aigc", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    written = out.read_text().count("\n")
    assert 2 <= written < len(TOPICS), "the run should be killed part-way"
    done = aigc(*args)
    assert done.returncode == 0, done.stderr
    assert f"{len(TOPICS) - written} rows written" in done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == [f"t{i}" for i in range(len(TOPICS))]
    assert all(row["result"]["headlines"] for row in rows)
