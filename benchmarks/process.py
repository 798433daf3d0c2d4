"""Whole-process measurements: CLI start-up, cached model load, peak memory."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AIGC = [sys.executable, "-m", "aigc"]


def wall(cmd: list[str], repeat: int = 5) -> float:
    """Median wall time of a command."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def startup() -> dict[str, float]:
    python = wall([sys.executable, "-c", "pass"])
    help_seconds = wall(AIGC + ["--help"])
    return {"python_seconds": python, "help_seconds": help_seconds, "help_ratio": help_seconds / python}


def load_seconds() -> dict[str, float]:
    """Cached model load in a fresh process, torch and transformers imports included."""
    code = "import time; t = time.perf_counter()\nfrom aigc.engine.loading import load_model; load_model()\nprint(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout) for _ in range(3)]
    return {"load_seconds": statistics.median(runs)}


def peak(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process (alone in its parent, so the rusage is its own)."""
    code = (
        "import json, resource, subprocess, time\n"
        "t = time.perf_counter()\n"
        f"subprocess.run({cmd!r}, check=True, stdout=subprocess.DEVNULL)\n"
        "print(json.dumps([time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, rss = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds, rss


def long_document(words: int = 30000) -> Path:
    """About `words` words made of the example article's paragraphs, numbered apart."""
    paragraphs = [p for p in (ROOT / "examples" / "article.md").read_text().split("\n\n") if p.strip() and not p.startswith("#")]
    out, count, i = [], 0, 0
    while count < words:
        text = f"Part {i // len(paragraphs) + 1}. " + paragraphs[i % len(paragraphs)].replace("\n", " ")
        out.append(text)
        count += len(text.split())
        i += 1
    path = Path(tempfile.mkdtemp()) / "long.txt"
    path.write_text("\n\n".join(out))
    return path


def memory(long: bool) -> dict[str, float]:
    seconds, rss = peak(AIGC + ["chat", "What is the capital of France?"])
    results = {"chat_seconds": seconds, "peak_rss_mb": rss}
    if long:
        seconds, rss = peak(AIGC + ["-q", "summarize", str(long_document())])
        results.update(summarize_30k_seconds=seconds, summarize_30k_peak_rss_mb=rss)
    return results
