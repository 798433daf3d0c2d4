"""Classify on the held-back part of ../shared/data: zero-shot, 16 examples, and the tuning part as examples.

Each TSV is split the same way every time: rows whose index is 5 mod 6 are held back (never used for
tuning or as examples); the rest is the tuning part. `python -m benchmarks.classify_eval [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKS = {  # labels, aspect, kind of text (picked on the tuning parts)
    "sentiment": ("negative,positive", "sentiment", "movie review"),
    "topic": ("World,Sports,Business,Sci/Tech", "topic", ""),
}


def split(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(tuning part, held-back part), each cell read as `aigc eval` reads it (quoted cells unquoted)."""
    from aigc.textio import unquote

    rows = [tuple(map(unquote, line.split("\t"))) for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    return [r for i, r in enumerate(rows) if i % 6 != 5], [r for i, r in enumerate(rows) if i % 6 == 5]


def balanced(rows: list[tuple[str, str]], count: int, seed: int = 0) -> list[tuple[str, str]]:
    """`count` rows, the same number per label, drawn with a fixed seed."""
    labels = sorted({label for _, label in rows})
    rng = random.Random(seed)
    return [row for label in labels for row in rng.sample([r for r in rows if r[1] == label], count // len(labels))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("AIGC_EVAL_DATA", DATA)))
    parser.add_argument("--task", choices=sorted(TASKS), action="append")
    parser.add_argument("--method", default="auto")
    args = parser.parse_args()
    from aigc.evaluation import evaluate_classify
    from aigc.generators.base import get_generator

    generator = get_generator("classify")
    results = []
    for task in args.task or sorted(TASKS):
        tune, held = split(args.data / f"{task}_dev.tsv")
        settings = (
            ("zero-shot", None, "auto"),
            ("zero-shot, batch calibration", None, "batch"),
            ("16 examples", balanced(tune, 16), "auto"),
            (f"{len(tune)} examples", tune, "auto"),
        )
        for setting, examples, calibrate in settings:
            labels, aspect, kind = TASKS[task]
            options = {"labels": labels, "aspect": aspect, "kind": kind, "examples": examples, "calibrate": calibrate, "method": args.method if examples else "auto"}
            report = evaluate_classify(generator, held, options).as_dict()
            results.append({"task": task, "setting": setting, **report})
            print(f"{task:9} {setting:29} acc {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}  "
                  f"{report['examples_per_second']:.1f} ex/s  method {report['method']}  calibration {report['calibration']}",
                  file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
