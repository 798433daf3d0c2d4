"""Seconds per denoising step of `aigc image` on the tiny random pipeline the tests build:
`python -m benchmarks.image_steps` (needs the image extra)."""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "unit")]  # test_image imports tests/lazy_imports.py

from test_image import PROMPT, build_tiny_pipeline  # noqa: E402 - the tests' tiny pipeline builder


def measure_seconds_per_step(dtypes=("auto", "float32"), sides=(64, 256), steps=20, runs=5) -> None:
    """Print seconds per denoising step on the tiny pipeline, through aigc's loader (not a test):
    `python -m benchmarks.image_steps`. Median of `runs` images of `steps` steps, guidance 7.5."""
    import statistics
    import tempfile

    import aigc

    with tempfile.TemporaryDirectory() as tmp:
        directory = build_tiny_pipeline(Path(tmp))
        for dtype in dtypes:
            generator = aigc.get_generator("image", model=str(directory), device="cpu", dtype=dtype)
            generator("warm up", steps=2, width=64, height=64, seed=0)
            for side in sides:
                results = [generator(PROMPT, steps=steps, width=side, height=side, seed=run) for run in range(runs)]
                per_step = [r["seconds_per_step"] for r in results]
                print(
                    f"{side}x{side} {results[0]['settings']['dtype']}: {statistics.median(per_step):.4f} s/step "
                    f"(median of {runs}; min {min(per_step):.4f}, max {max(per_step):.4f})"
                )


if __name__ == "__main__":
    measure_seconds_per_step()
