"""Advisory locks that keep two aigc processes from rewriting the same file at once."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from . import config
from .errors import BadInputError


def lock_file(path: str | Path) -> Path:
    """The file `held` locks for `path`: a hidden `.NAME.lock` beside it, so that every process
    that reaches the file (another user, another AIGC_DATA_DIR) reaches its lock; where that
    directory cannot be written, one in aigc's data directory keyed by the file's absolute path."""
    path = Path(path).resolve()
    beside = path.parent / (f".{path.name}.lock" if len(os.fsencode(path.name)) <= 200 else f".{_key(path)}.lock")
    if os.access(path.parent, os.W_OK):
        return beside
    return config.data_subdir("locks") / f"{_key(path)}.lock"


def _key(path: Path) -> str:
    """A name for the absolute `path` (in lower case on Windows and macOS, whose file systems take
    Trip.json and trip.json for one file)."""
    name = str(path).lower() if sys.platform in ("win32", "darwin") else str(path)
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:32]  # a name in no UTF-8 as its bytes


@contextmanager
def held(path: str | Path, busy: str = "", error: type[BadInputError] = BadInputError, wait: bool = False, timeout: float | None = None):
    """Hold `path` for this process while the block runs; a second holder fails at once with
    `error(busy)`, or with `wait` waits its turn (for a short read-modify-write), for at most
    `timeout` seconds where given (then it fails so too). The lock is a file
    beside `path` (`lock_file`), so it outlives the file being replaced by a rename; it is freed when
    the process ends, and skipped where the file system has no locks (`flock`; `msvcrt.locking` on
    Windows). As the block ends its lock file goes, while still held: one that another process
    opened meanwhile is found removed once it is locked, and that process locks the new one
    (Windows deletes no open file: there it goes once let go of, unless another process has it
    open). Yields whether it is held (False where it was skipped)."""
    locked, handle = False, None
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    while True:
        try:
            name = lock_file(path)
            handle = _open(name)
        except (OSError, BadInputError):  # a lock is a safety net, not a requirement
            break
        try:
            _lock(handle, wait, deadline)
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
        if locked and os.name != "nt":
            with contextlib.suppress(OSError):  # another user's, in a directory only they may change
                Path(name).unlink(missing_ok=True)
        if handle is not None:
            _unlock(handle)
        if locked and os.name == "nt":
            with contextlib.suppress(OSError):  # another process has it open, to lock it next
                Path(name).unlink(missing_ok=True)


@contextmanager
def held_or_waited(path: str | Path, busy: str, still: Callable[[float], str], error: type[BadInputError] = BadInputError, waiting: Callable[[], None] | None = None, timeout: float | None = None):
    """`held`, for a command that may wait its turn: where another holds `path` it fails at once with
    `error(busy)`, or with `waiting` calls `waiting()` and waits, for at most `timeout` seconds where
    given (then it fails with `error(still(timeout))`). Yields whether it is held, as `held` does."""
    with contextlib.ExitStack() as stack:
        try:
            locked = stack.enter_context(held(path, busy, error))
        except error:
            if waiting is None:
                raise
            waiting()
            locked = stack.enter_context(held(path, still(timeout) if timeout is not None else "", error, wait=True, timeout=timeout))
        yield locked


def _open(name: Path):
    """The lock file `name`, made if need be; read only where it is another user's (a lock needs no writing)."""
    try:
        return open(name, "a")
    except PermissionError:
        return open(name)


def _lock(handle, wait: bool, deadline: float | None = None) -> None:
    """Lock the open lock file `handle` for this process: BlockingIOError where another holds it (with
    `wait`, once it is let go of, or where it still holds it at `deadline`, a `time.monotonic()`),
    another OSError where the file system has no locks."""
    try:
        import fcntl
    except ImportError:  # Windows: a lock on the file's first byte (`handle` is at 0: nothing is written to it)
        import msvcrt

        def attempt() -> None:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EDEADLOCK):
                    raise
                raise BlockingIOError(exc.errno, exc.strerror) from None
    else:
        if wait and deadline is None:
            fcntl.flock(handle, fcntl.LOCK_EX)
            return

        def attempt() -> None:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)

    while True:  # tried again and again (Windows' LK_LOCK would give up after 10 s)
        try:
            attempt()
            return
        except BlockingIOError:
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                raise
        time.sleep(0.05 if deadline is None else min(0.05, max(0.0, deadline - time.monotonic())))


def _unlock(handle) -> None:
    """Close `handle`, letting go of its lock at once (Windows frees a closed file's lock some time later)."""
    if os.name == "nt":
        import msvcrt

        with contextlib.suppress(OSError):
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    handle.close()


def _same_file(handle, name: Path) -> bool:
    """Whether the open `handle` is still the file at `name`."""
    try:
        there, mine = os.stat(name), os.fstat(handle.fileno())
    except OSError:
        return False
    return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)
