"""`python -m benchmarks.oneshot [--repeat N] [--against DIR]`: what a user waits for in one-shot
commands on the embedded model: whole-process wall time and time to the first byte on stdout.

Each model command is set against the bare floor measured in the same rounds: a process that only
imports aigc and loads the model (torch and transformers imports included), so the ratio is what
the command adds to that; `aigc --help` and the echo model against `python -c pass`. With
`--against DIR` (another aigc checkout, say a `git worktree` of main) every command also runs from
DIR, interleaved with this checkout's runs, and the ratios are this checkout's to DIR's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR = "import aigc; aigc.load_model(); print()"  # the public name: `--against` trees of other stops have it too
COMMANDS = {  # name: (argv after `python`, baseline name)
    "python -c pass": (["-c", "pass"], None),
    "load only": (["-c", FLOOR], None),
    "aigc --help": (["-m", "aigc", "--help"], "python -c pass"),
    "chat -m echo hi": (["-m", "aigc", "chat", "-m", "echo", "hi"], "python -c pass"),
    "chat 'Say hi' --max-tokens 8": (["-m", "aigc", "chat", "Say hi", "--max-tokens", "8", "--no-log"], "load only"),
    "classify (2 labels)": (["-m", "aigc", "classify", "great movie", "--labels", "positive,negative", "--no-log"], "load only"),
    "headline --max-tokens 24 --seed 1": (["-m", "aigc", "headline", "--topic", "solar power", "--max-tokens", "24", "--seed", "1", "--no-log"], "load only"),
    "embed hello": (["-m", "aigc", "embed", "hello"], "load only"),
}


def timed(argv: list[str], tree: Path) -> tuple[float, float]:
    """Wall seconds of `python ARGV` run with `tree` first on the path, and seconds to its first stdout byte."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, *argv], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = time.perf_counter() - started if child.stdout.read(1) else None
    child.stdout.read()
    if child.wait():
        raise SystemExit(f"python {' '.join(argv)} failed (exit code {child.returncode})")
    wall = time.perf_counter() - started
    return wall, wall if first is None else first


def measure(trees: list[Path], repeat: int) -> dict[tuple[str, Path], tuple[float, float]]:
    """Median (wall, first byte) of each command from each tree; the trees take turns going first."""
    runs: dict[tuple[str, Path], list[tuple[float, float]]] = {(name, tree): [] for name in COMMANDS for tree in trees}
    for round_ in range(repeat):
        for name, (argv, _) in COMMANDS.items():
            for tree in trees[round_ % len(trees) :] + trees[: round_ % len(trees)]:
                runs[name, tree].append(timed(argv, tree))
    return {key: (statistics.median(w for w, _ in times), statistics.median(f for _, f in times)) for key, times in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.oneshot")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (medians are shown)")
    parser.add_argument("--against", type=Path, help="another aigc checkout to run each command from too, interleaved")
    args = parser.parse_args()
    trees = [ROOT] + ([args.against.resolve()] if args.against else [])
    medians = measure(trees, args.repeat)
    print(f"{'command':<36}{'wall s':>8}{'first s':>9}  {'baseline':<16}{'wall':>7}" + (f"{'vs DIR wall':>13}{'first':>7}" if args.against else ""))
    for name, (_, base) in COMMANDS.items():
        wall, first = medians[name, ROOT]
        row = f"{name:<36}{wall:>8.3f}{first:>9.3f}  "
        row += f"{base:<16}{wall / medians[base, ROOT][0]:>7.2f}" if base else " " * 23
        if args.against:
            other_wall, other_first = medians[name, trees[1]]
            row += f"{wall / other_wall:>13.3f}{first / other_first:>7.3f}"
        print(row)


if __name__ == "__main__":
    main()
