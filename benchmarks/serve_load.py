"""A bounded loopback load test of `aigc serve`: `python -m benchmarks.serve_load [--json]`.

Starts `aigc serve -m MODEL` on 127.0.0.1 (a free port, a random API key), sends REQUESTS
streaming chat requests at once with the official `openai` client, then the same requests one
after another, and stops the server. Every request is greedy with its own prompt, so each stream
must be complete (a finish reason, the usage chunk) and equal to the same request sent alone.
Reports p50/p95 latency, time to first token, aggregate tokens/s and the concurrent/sequential
ratio, and how soon a short request sent while the batch decodes gets its first token (it joins
the running batch at the next step). Needs the serve extra and `openai`; the server never leaves
the loopback interface.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request

TOPICS = [
    "bees", "lighthouses", "volcanoes", "bread", "chess", "rivers", "comets", "owls",
    "bicycles", "glaciers", "tea", "violins", "deserts", "coral reefs", "trains", "maps",
    "paper", "salt", "kites", "wolves", "clocks", "caves", "rain", "bridges",
    "honey", "mushrooms", "lanterns", "whales", "windmills", "ink", "snow", "compasses",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"aigc serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("aigc serve did not start in time")


LATE_PROMPT = "Say hello."


def _health(base: str) -> dict:
    with urllib.request.urlopen(base + "/health", timeout=5) as response:
        return next(iter(json.loads(response.read())["models"].values()))


def _one(client, model: str, prompt: str, max_tokens: int) -> dict:
    started = time.perf_counter()
    first = None
    pieces, reasons, usage = [], [], None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        temperature=0,
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    for event in stream:
        usage = event.usage or usage
        for choice in event.choices:
            if choice.delta.content:
                first = first if first is not None else time.perf_counter() - started
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    return {
        "latency": time.perf_counter() - started,
        "ttft": first,
        "text": "".join(pieces),
        "tokens": usage.completion_tokens if usage else 0,
        "complete": len(reasons) == 1 and usage is not None,
    }


def _summary(results: list[dict], wall: float) -> dict:
    latencies = sorted(r["latency"] for r in results)
    ttfts = sorted(r["ttft"] for r in results if r["ttft"] is not None)
    tokens = sum(r["tokens"] for r in results)

    def pct(values, q):
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else None

    return {
        "wall_seconds": round(wall, 3),
        "p50_latency": round(pct(latencies, 0.5), 3),
        "p95_latency": round(pct(latencies, 0.95), 3),
        "p50_ttft": round(pct(ttfts, 0.5), 3) if ttfts else None,
        "tokens": tokens,
        "tokens_per_second": round(tokens / wall, 1),
        "complete": sum(r["complete"] for r in results),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="smollm2")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="float32 makes batched greedy streams equal to single ones.")
    parser.add_argument("--timeout", type=float, default=600, help="Give up after this many seconds in all.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import openai

    deadline = time.monotonic() + args.timeout
    port, key = _free_port(), secrets.token_hex(8)
    env = {**os.environ, "AIGC_API_KEY": key, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    cmd = [sys.executable, "-m", "aigc", "-q", "serve", "-m", args.model, "--host", "127.0.0.1", "--port", str(port),
           "--device", args.device, "--dtype", args.dtype, "--max-batch", str(max(32, args.requests))]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc, min(deadline, time.monotonic() + 180))
        client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=max(30.0, deadline - time.monotonic()))
        model = client.models.list().data[0].id
        prompts = [f"Write two sentences about {TOPICS[i % len(TOPICS)]}." for i in range(args.requests)]
        _one(client, model, "Hello!", 8)  # warm up


        def concurrently(late: dict | None = None) -> tuple[list[dict], float]:
            """All prompts at once; with `late`, one short request more once they are decoding (its result goes there)."""
            results: list[dict | None] = [None] * len(prompts)

            def run(i: int) -> None:
                results[i] = _one(client, model, prompts[i], args.max_tokens)

            started = time.perf_counter()
            threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(prompts))]
            for thread in threads:
                thread.start()
            if late is not None:
                while time.monotonic() < deadline and not _health(base)["decoding_rows"]:
                    time.sleep(0.005)
                late.update(_one(client, model, LATE_PROMPT, 8), running=sum(r is None for r in results))
            for thread in threads:
                thread.join(max(1.0, deadline - time.monotonic()))
            if any(r is None for r in results):
                raise SystemExit("some concurrent requests did not finish before the deadline")
            return results, time.perf_counter() - started

        # The first large batch is slow once (CPU kernels for new shapes); a server pays it once.
        _, cold_wall = concurrently()
        print(f"cold concurrent round: {cold_wall:.2f} s", file=sys.stderr, flush=True)
        idle = _one(client, model, LATE_PROMPT, 8)
        late: dict = {}
        results, concurrent_wall = concurrently(late)

        started = time.perf_counter()
        alone = [_one(client, model, p, args.max_tokens) for p in prompts]
        sequential_wall = time.perf_counter() - started
        with urllib.request.urlopen(base + "/health", timeout=5) as response:
            health = json.loads(response.read())
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    together, one_by_one = _summary(results, concurrent_wall), _summary(alone, sequential_wall)
    same = sum(a["text"] == b["text"] for a, b in zip(results, alone))
    report = {
        "model": model,
        "requests": len(prompts),
        "max_tokens": args.max_tokens,
        "concurrent": together,
        "sequential": one_by_one,
        "streams_equal_to_alone": same,
        "throughput_ratio": round(together["tokens_per_second"] / one_by_one["tokens_per_second"], 2),
        "wall_ratio": round(one_by_one["wall_seconds"] / together["wall_seconds"], 2),
        "cold_concurrent_wall_seconds": round(cold_wall, 3),
        "batches": next(iter(health["models"].values()))["batches"],
        "late_request": {
            "ttft": round(late["ttft"], 3) if late.get("ttft") is not None else None,
            "latency": round(late["latency"], 3),
            "idle_ttft": round(idle["ttft"], 3) if idle.get("ttft") is not None else None,
            "streams_still_running": late["running"],
            "joined": next(iter(health["models"].values())).get("joined"),
        },
    }
    print(f"{len(prompts)} streaming chat requests, {args.max_tokens} max tokens, greedy, model {model}")
    for label, data in (("concurrent", together), ("sequential", one_by_one)):
        print(
            f"  {label:10s}: wall {data['wall_seconds']:.2f} s, p50 {data['p50_latency']:.2f} s, p95 {data['p95_latency']:.2f} s, "
            f"p50 TTFT {data['p50_ttft']} s, {data['tokens']} tokens, {data['tokens_per_second']} tok/s, "
            f"{data['complete']}/{len(prompts)} complete streams"
        )
    print(f"  first (cold) concurrent round, not counted: wall {cold_wall:.2f} s")
    print(f"  concurrent/sequential: {report['throughput_ratio']}x tok/s, {report['wall_ratio']}x faster wall time")
    print(f"  streams equal to the same request sent alone: {same}/{len(prompts)}")
    lr = report["late_request"]
    print(
        f"  a short request sent while {lr['streams_still_running']} streams were decoding: first token after {lr['ttft']} s "
        f"(idle server: {lr['idle_ttft']} s), done after {lr['latency']} s"
    )
    if args.json:
        print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
