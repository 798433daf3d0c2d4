"""Advisory locks that keep two aigc processes from rewriting the same file at once."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

from . import config
from .errors import BadInputError


@contextmanager
def held(path: str | Path, busy: str, error: type[BadInputError] = BadInputError):
    """Hold `path` for this process while the block runs; a second holder fails at once with
    `error(busy)`. The lock lives in aigc's data directory, keyed by the file's absolute
    path, so it outlives the file being replaced by a rename; it is freed when the process ends,
    and skipped where the system or file system has no `flock`. Yields whether it is held (False
    where it was skipped)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None
    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:32]
    try:
        handle = open(config.data_subdir("locks") / f"{key}.lock", "w") if fcntl else None
    except (OSError, BadInputError):  # a lock is a safety net, not a requirement
        handle = None
    locked = False
    try:
        if handle is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                raise error(busy) from None
            except OSError:  # e.g. no locks on this file system
                pass
        yield locked
    finally:
        if handle is not None:
            handle.close()
