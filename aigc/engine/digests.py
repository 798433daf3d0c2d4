"""Which weights a model holds, by content: the sha256 of its weight files, computed once and kept.

A model converted by aigc (the embedded one, a .gguf) gets its record when it is converted, beside
its weights; any other model directory (a cache converted by an older aigc, a directory of the
user's) when `aigc models info` asks for it (runs only read records: hashing gigabytes is no work
to do after an answer), in aigc's cache directory (`digests/`), under its place: nothing is written into a model's directory after the fact, so its fingerprint (`loading.
fingerprint`) stays. A record holds each weight file's size and modification time, so weights
written again are hashed again; a hub download's files are links to blobs named by their sha256,
which is read, not computed. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable

from .. import config

RECORD = "aigc-digest.json"  # beside a converted model's weights
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")
SHOWN = 16  # hex digits of the digest that logs and --json record
_BLOB = re.compile(r"[0-9a-f]{64}")


def weight_files(path: Path) -> list[Path]:
    """The weight files of model directory `path` (every shard), by name."""
    return sorted((entry for entry in path.iterdir() if entry.name.endswith(WEIGHTS) and entry.is_file()), key=lambda entry: entry.name) if path.is_dir() else []


def model_digest(path: str | Path, compute: bool = True, hashing: Callable[[Path, int], None] | None = None) -> str | None:
    """The first `SHOWN` hex digits of the weights' sha256 at `path` (a model directory): with one
    weight file, that file's own (`sha256sum model.safetensors` shows it); with shards, that of their
    `sha256sum` lines. Read from the record kept of them, else computed once and kept (not with
    `compute=False`: then None, unless a hub download's blob names tell); `hashing(path, bytes)` is
    called before the files are read to be hashed, so a caller can say so. None for a directory
    without weight files."""
    path = Path(path)
    try:
        files = weight_files(path)
        stamps = {entry.name: [(stat := entry.stat()).st_size, stat.st_mtime_ns] for entry in files}
    except OSError:
        return None
    if not files:
        return None
    for record in (path / RECORD, _cache_record(path)):
        kept = _read(record)
        if kept.get("stamps") == stamps and isinstance(kept.get("sha256"), dict) and set(kept["sha256"]) == set(stamps):
            return _shown(kept["sha256"])
    blobs = {entry.name: Path(os.path.realpath(entry)).name for entry in files}
    if not compute and not all(_BLOB.fullmatch(blob) for blob in blobs.values()):
        return None
    unnamed = [entry for entry in files if not _BLOB.fullmatch(blobs[entry.name])]
    if unnamed and hashing is not None:
        hashing(path, sum(stamps[entry.name][0] for entry in unnamed))
    sums = {entry.name: blobs[entry.name] if _BLOB.fullmatch(blobs[entry.name]) else _sha256(entry) for entry in files}
    _write(_cache_record(path), {"sha256": sums, "stamps": stamps})
    return _shown(sums)


def record_converted(path: Path) -> None:
    """Hash the weights of a model being converted into `path` (before it is renamed into place) and
    keep the record beside them: every load after reads it."""
    files = weight_files(path)
    _write(path / RECORD, {"sha256": {entry.name: _sha256(entry) for entry in files}, "stamps": {entry.name: [(stat := entry.stat()).st_size, stat.st_mtime_ns] for entry in files}})


def _shown(sums: dict[str, str]) -> str:
    whole = next(iter(sums.values())) if len(sums) == 1 else hashlib.sha256("".join(f"{sums[name]}  {name}\n" for name in sorted(sums)).encode()).hexdigest()
    return whole[:SHOWN]


def _cache_record(path: Path) -> Path:
    place = hashlib.sha256(os.fsencode(str(path.resolve()))).hexdigest()[:16]
    return config.cache_dir() / "digests" / f"{place}.json"


def _read(record: Path) -> dict:
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(record: Path, data: dict) -> None:
    """Keep `data` at `record`, atomically; a place that cannot be written keeps nothing (the digest is
    computed again next time, and still recorded)."""
    with contextlib.suppress(OSError):
        record.parent.mkdir(parents=True, exist_ok=True)
        partial = record.with_name(f".{record.name}.{os.getpid()}")
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, record)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
