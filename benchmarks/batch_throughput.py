"""`aigc batch` throughput against running the same rows one by one, in the same run.

`python -m benchmarks.batch_throughput [--rows N] [--concurrency C]`: summarize (generation, greedy,
at most 32 new tokens; each row longer than its 15-word summary, so none is given back unchanged) and
classify (scoring) over N short rows; the batch run writes a JSONL.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

TOPICS = [
    "a new bridge opens", "the local team wins the cup", "rain all week", "a bakery doubles prices",
    "students build a robot", "the museum adds a dinosaur", "a power cut in the north", "more bike lanes",
    "a cat rescued from a tree", "the library stays open late", "a train line to the coast", "a record harvest",
    "a new school opens", "the river floods a village", "a marathon draws thousands", "a phone maker cuts jobs",
]


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from aigc.batch import run_batch
    from aigc.batch_inputs import Row
    from aigc.generators.base import get_generator

    tasks = {
        "summarize": ({"words": 15}, {"temperature": 0, "max_tokens": 32}, "text"),
        "classify": ({"labels": "World,Sports,Business,Sci/Tech"}, {}, "text"),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task, (options, sampling, field) in tasks.items():
            generator = get_generator(task)
            generator.prepare(options)
            rows = [Row(i + 1, i + 1, {field: f"News: {TOPICS[i % len(TOPICS)]}, officials said on day {i}. More details will follow later. Residents were asked for their views at a meeting in the town hall."}) for i in range(args.rows)]
            one = timed(lambda: [generator(generator.batch_input(r.fields, field), sampling=sampling, **options) for r in rows])
            out = Path(tmp) / f"{task}.jsonl"
            batched = timed(lambda: run_batch(generator, rows, out, options, sampling, field, concurrency=args.concurrency))
            assert len(out.read_text().splitlines()) == args.rows
            results[task] = {
                "one_by_one_rows_per_s": args.rows / one, "batch_rows_per_s": args.rows / batched, "ratio": one / batched,
            }
            print(f"{task:9} one by one {args.rows / one:6.2f} rows/s   batch (concurrency {args.concurrency}) "
                  f"{args.rows / batched:6.2f} rows/s   ratio {one / batched:.2f}x", flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
