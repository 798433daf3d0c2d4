"""`python -m benchmarks [--json] [--quick]`: aigc's speed as figures and as ratios to baselines
measured in the same run on the same machine (absolute times on shared machines are noise).

--quick skips the 30,000-word summarize. --json adds one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess

from . import engine, process, reference

# (label, key, baseline label, baseline key, ratio key)
ROWS = [
    ("decode tok/s, aigc (auto dtype)", "decode_tps", "fp32 generate", "baseline_decode_tps", "decode_ratio"),
    ("decode tok/s, aigc --quantize int4", "int4_decode_tps", "fp32 generate", "baseline_decode_tps", "int4_decode_ratio"),
    ("decode tok/s, aigc --quantize int8", "int8_decode_tps", "fp32 generate", "baseline_decode_tps", "int8_decode_ratio"),
    ("  greedy tokens equal to fp32 (of 32), auto", "decode_match_tokens", None, None, None),
    ("  greedy tokens equal to fp32 (of 32), int4", "int4_decode_match_tokens", None, None, None),
    ("  greedy tokens equal to fp32 (of 32), int8", "int8_decode_match_tokens", None, None, None),
    ("decode tok/s, llama.cpp llama-bench", "llama_bench_decode_tps", "aigc int4", "int4_decode_tps", "llama_bench_ratio"),
    ("time to first token, ~1k-token prompt (s)", "ttft_1k_seconds", None, None, None),
    ("time to first token, ~1k-token prompt, int4 (s)", "int4_ttft_1k_seconds", "auto dtype", "ttft_1k_seconds", "int4_ttft_1k_ratio"),
    ("decode tok/s held to a JSON schema (--schema)", "schema_decode_tps", "free decode", "free_decode_tps", "schema_decode_ratio"),
    ("batch of 8 prompts, aggregate tok/s", "batch8_tps", "single stream", "single_stream_tps", "batch8_ratio"),
    ("chat TTFT at turn 10 (s)", "chat_ttft_turn10_seconds", "turn 1", "chat_ttft_turn1_seconds", "chat_ttft_ratio"),
    ("chat TTFT at turn 10, no cache reuse (s)", "chat_ttft_turn10_no_reuse_seconds", None, None, None),
    ("aigc --help (s)", "help_seconds", "python -c pass", "python_seconds", "help_ratio"),
    ("cached model load, imports included (s)", "load_seconds", None, None, None),
    ("one-shot chat, whole process (s)", "chat_seconds", None, None, None),
    ("one-shot chat peak RSS (MB)", "peak_rss_mb", None, None, None),
    ("30k-word summarize, whole process (s)", "summarize_30k_seconds", None, None, None),
    ("30k-word summarize peak RSS (MB)", "summarize_30k_peak_rss_mb", None, None, None),
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--json", action="store_true", help="also print one JSON object on the last line")
    parser.add_argument("--quick", action="store_true", help="skip the 30,000-word summarize")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    subprocess.run(process.AIGC + ["models", "pull", "smollm2"], check=True, capture_output=True)

    results: dict[str, float] = {}
    results.update(process.startup())
    results.update(process.load_seconds())
    results.update(engine.decode())
    results.update(engine.ttft_1k())
    results.update(engine.schema_decode())
    results.update(engine.batch8())
    results.update(engine.chat_turns())
    outside = reference.llama_bench()
    if outside:
        results.update(outside)
        results["llama_bench_ratio"] = results["llama_bench_decode_tps"] / results["int4_decode_tps"]
    results.update(process.memory(long=not args.quick))

    print(f"{'measure':<46}{'value':>10}  {'baseline':<16}{'value':>10}{'ratio':>8}")
    for label, key, base_label, base_key, ratio_key in ROWS:
        if key not in results:
            if key.startswith("llama_bench"):
                print(f"{label:<46}{'skipped':>10}  (llama-bench not found: ../shared/tools/build-llama-bench.sh)")
            continue
        base = f"{base_label:<16}{results[base_key]:>10.3f}" if base_key else " " * 26
        ratio = f"{results[ratio_key]:>8.2f}" if ratio_key else ""
        print(f"{label:<46}{results[key]:>10.3f}  {base}{ratio}")
    if args.json:
        print(json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()
