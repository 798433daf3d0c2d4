"""`python -m benchmarks [--json] [--quick]`: aigc's speed, as figures and as ratios to a baseline
measured in the same run on the same machine.

Rows: `aigc --help` vs `python -c pass`; cached model load; single-stream decode of aigc's engine vs
plain float32 `model.generate`; a one-shot `aigc chat`; and (unless --quick) a 30,000-word
summarize with its wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTICLE = ROOT / "examples" / "article.md"
DECODE_PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to read."}]
NEW_TOKENS = 64


def wall(cmd: list[str], repeat: int = 5) -> float:
    """Median wall time of a command."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def child_run(cmd: list[str], **kwargs) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process (run alone, so RUSAGE_CHILDREN is its own)."""
    code = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        f"subprocess.run({cmd!r}, check=True, stdout=subprocess.DEVNULL)\n"
        "print(json.dumps([time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, **kwargs)
    seconds, rss = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds, rss


def load_time() -> float:
    code = (
        "import time; t = time.perf_counter()\n"
        "from aigc.engine.models import load_model; load_model()\n"
        "print(time.perf_counter() - t)"
    )
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout) for _ in range(3)]
    return statistics.median(runs)


def decode_rates() -> dict[str, float]:
    """Tokens/s of aigc's engine (auto dtype) and of plain float32 `generate`, greedy, same prompt and length."""
    import torch

    from aigc.engine.models import load_model
    from aigc.engine.sampling import SamplingParams

    fast = load_model()
    params = SamplingParams(temperature=0, max_tokens=NEW_TOKENS)
    fast.generate([DECODE_PROMPT], params)  # warm-up
    started = time.perf_counter()
    produced = fast.generate([DECODE_PROMPT], params)[0][0].completion_tokens
    ours = produced / (time.perf_counter() - started)

    base = load_model(dtype="float32")
    ids = torch.tensor([base.encode(DECODE_PROMPT)])
    kwargs = dict(max_new_tokens=produced, min_new_tokens=produced, do_sample=False, pad_token_id=base.pad_id)
    base.model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=base.pad_id)
    started = time.perf_counter()
    base.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    baseline = produced / (time.perf_counter() - started)
    return {"decode_tps": ours, "baseline_decode_tps": baseline, "decode_ratio": ours / baseline, "decode_tokens": produced}


def long_document(words: int = 30000) -> Path:
    """A document of about `words` words made of the example article's paragraphs, numbered apart."""
    paragraphs = [p for p in ARTICLE.read_text().split("\n\n") if p.strip() and not p.startswith("#")]
    out, count, i = [], 0, 0
    while count < words:
        text = f"Part {i // len(paragraphs) + 1}. " + paragraphs[i % len(paragraphs)].replace("\n", " ")
        out.append(text)
        count += len(text.split())
        i += 1
    path = Path(tempfile.mkdtemp()) / "long.txt"
    path.write_text("\n\n".join(out))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--json", action="store_true", help="also print one JSON object on the last line")
    parser.add_argument("--quick", action="store_true", help="skip the 30,000-word summarize")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    aigc = [sys.executable, "-m", "aigc"]
    subprocess.run(aigc + ["models", "pull", "smollm2"], check=True, capture_output=True)

    results: dict[str, float] = {}
    results["python_seconds"] = wall([sys.executable, "-c", "pass"])
    results["help_seconds"] = wall(aigc + ["--help"])
    results["help_ratio"] = results["help_seconds"] / results["python_seconds"]
    results["load_seconds"] = load_time()
    results.update(decode_rates())
    chat_seconds, chat_rss = child_run(aigc + ["chat", "What is the capital of France?"])
    results["chat_seconds"], results["peak_rss_mb"] = chat_seconds, chat_rss
    if not args.quick:
        doc = long_document()
        seconds, rss = child_run(aigc + ["-q", "summarize", str(doc)])
        results["summarize_30k_seconds"], results["summarize_30k_peak_rss_mb"] = seconds, rss

    rows = [
        ("aigc --help (s)", "help_seconds", "python -c pass", "python_seconds", "help_ratio"),
        ("cached model load, imports included (s)", "load_seconds", None, None, None),
        ("decode tok/s, aigc engine", "decode_tps", "float32 generate", "baseline_decode_tps", "decode_ratio"),
        ("one-shot chat wall (s)", "chat_seconds", None, None, None),
        ("one-shot chat peak RSS (MB)", "peak_rss_mb", None, None, None),
        ("30k-word summarize wall (s)", "summarize_30k_seconds", None, None, None),
        ("30k-word summarize peak RSS (MB)", "summarize_30k_peak_rss_mb", None, None, None),
    ]
    print(f"{'measure':<42}{'value':>10}  {'baseline':<18}{'value':>10}{'ratio':>8}")
    for label, key, base_label, base_key, ratio_key in rows:
        if key not in results:
            continue
        base = f"{base_label:<18}{results[base_key]:>10.3f}" if base_key else " " * 28
        ratio = f"{results[ratio_key]:>8.2f}" if ratio_key else ""
        print(f"{label:<42}{results[key]:>10.3f}  {base}{ratio}")
    if args.json:
        print(json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()
