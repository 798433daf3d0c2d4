"""Advisory locks that keep two aigc processes from rewriting the same file at once."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

from . import config
from .errors import BadInputError


def lock_file(path: str | Path) -> Path:
    """The file `held` locks for `path`, in aigc's data directory, keyed by its absolute path."""
    key = hashlib.sha256(os.fsencode(Path(path).resolve())).hexdigest()[:32]  # a name in no UTF-8 as its bytes
    return config.data_subdir("locks") / f"{key}.lock"


@contextmanager
def held(path: str | Path, busy: str = "", error: type[BadInputError] = BadInputError, wait: bool = False):
    """Hold `path` for this process while the block runs; a second holder fails at once with
    `error(busy)`, or with `wait` waits its turn (for a short read-modify-write). The lock lives in
    aigc's data directory (`lock_file`), keyed by the file's absolute
    path, so it outlives the file being replaced by a rename; it is freed when the process ends,
    and skipped where the system or file system has no `flock`. When `path` is gone as the block
    ends (deleted, or never made), its lock file goes too, while still held: one that another
    process opened meanwhile is found removed once it is locked, and that process locks the new
    one. Yields whether it is held (False where it was skipped)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None
    locked, handle = False, None
    while fcntl is not None:
        try:
            name = lock_file(path)
            handle = open(name, "w")
        except (OSError, BadInputError):  # a lock is a safety net, not a requirement
            break
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise error(busy) from None
        except OSError:  # e.g. no locks on this file system
            break
        if _same_file(handle, name):
            locked = True
            break
        handle.close()  # removed by its holder before this process locked it: lock the one there now
        handle = None
    try:
        yield locked
    finally:
        if locked and not os.path.lexists(path):
            Path(name).unlink(missing_ok=True)
        if handle is not None:
            handle.close()


def _same_file(handle, name: Path) -> bool:
    """Whether the open `handle` is still the file at `name`."""
    try:
        there, mine = os.stat(name), os.fstat(handle.fileno())
    except OSError:
        return False
    return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)
