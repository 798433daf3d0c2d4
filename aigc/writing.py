"""Writing results: an output path checked before any work is done, a file replaced atomically
(its permissions kept, a new one's from the umask), a descriptor the shell passed in (/dev/stdout)
written in place, and directories made with one-line errors. Text is written with the line ends it
has (LF; a CRLF input's CRLF), also on Windows, whose text mode would turn each LF into CRLF."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from .errors import DISK_FULL, BadInputError, WriteError


def make_dir(path: Path, hint: str, mode: int = 0o777) -> Path:
    """`path` as a directory, made if needed (with `mode`, under the umask; its parents as usual); a
    one-line error (ending with `hint`) when it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=mode, exist_ok=True)
    except OSError as exc:
        blocker = next((part for part in (path, *path.parents) if part.exists() and not part.is_dir()), None)
        why = f"{blocker} is a file" if blocker else exc.strerror or exc  # not "File exists"
        raise BadInputError(f"cannot make directory {path}: {why} ({hint})") from None
    return path


_FD_PATH = re.compile(r"/dev/std(?P<std>in|out|err)|/dev/fd/(?P<dev>\d+)|/proc/(?P<pid>self|\d+)/fd/(?P<proc>\d+)")


STDOUT = "-"  # the output name of stdout, on every OS (Windows has no /dev/stdout)


def inherited_fd(target: str | os.PathLike) -> int | None:
    """The file descriptor of this process that `target` names (`STDOUT`, /dev/stdout, /dev/stderr,
    /dev/fd/3, /proc/self/fd/1, or a symlink to one), else None. Such a path is written through that
    descriptor, as the shell opened it (appending, or after what came before), never replaced."""
    if os.fspath(target) == STDOUT:
        return 1
    path = os.path.abspath(os.path.expanduser(target))
    for _ in range(40):  # symlinks followed one at a time: /proc/self/fd/1 itself links to the file
        match = _FD_PATH.fullmatch(path)
        if match and match["pid"] not in ("self", str(os.getpid()), None):
            return None  # another process's descriptor
        if match:
            std, number = match["std"], match["dev"] or match["proc"]
            return ("in", "out", "err").index(std) if std else int(number)
        if not os.path.islink(path):
            return None
        path = os.path.join(os.path.realpath(os.path.dirname(path)), os.readlink(path))
        path = os.path.abspath(path)
    return None


def _check_fd(target: str | os.PathLike, fd: int) -> None:
    """A `BadInputError` unless descriptor `fd` (that `target` names) is open."""
    try:
        os.fstat(fd)
    except OSError:
        raise BadInputError(f"cannot write {target}: it is not open (the shell closed it)") from None


def check_writable(target: str | os.PathLike, flag: str = "-o") -> Path:
    """Fail before any work is done if `target` cannot be written; returns the file that will be
    written (a symlink's target; a path naming an inherited descriptor, such as /dev/stdout, as it is)."""
    fd = inherited_fd(target)
    if fd is not None:
        _check_fd(target, fd)
        return Path(target).expanduser()
    path = Path(target).expanduser()
    if path.is_dir():
        raise BadInputError(f"{target} is a directory; give a file name for {flag}")
    if str(target).endswith(("/", os.sep)):  # meant as a directory, which is not there
        raise BadInputError(f"cannot write {target}: there is no such directory; give a file name for {flag}")
    if path.exists() and not path.is_file():  # a device or pipe is written in place
        if not os.access(path, os.W_OK):
            raise BadInputError(f"cannot write {target}: permission denied")
        return path
    link = _foreign_link(path)
    if link is not None:
        raise BadInputError(
            f"cannot write {target}: {link} is a symlink owned by another user in the shared directory {link.parent}; "
            "refusing to follow it (as the system does for the shell); write the result elsewhere"
        )
    try:
        real = Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:  # a new file, or a symlink to one
        real = Path(os.path.realpath(path))
    except OSError as exc:  # a symlink loop
        raise BadInputError(f"cannot write {target}: {exc.strerror or exc}") from None
    if not real.parent.is_dir():
        raise BadInputError(f"cannot write {target}: directory {real.parent} does not exist")
    try:  # a real try: access() says yes to root on read-only and virtual file systems
        fd, probe = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BadInputError(f"cannot write {target}: {_unwritable(real, exc)}") from exc
    return real


def _owner(path: Path) -> int:
    """The user id that owns `path` itself (a symlink, not what it points to)."""
    return os.lstat(path).st_uid


def _foreign_link(path: Path) -> Path | None:
    """The first symlink on the way to `path` that Linux's `fs.protected_symlinks` would not follow:
    one in a sticky, world-writable directory (/tmp) owned by neither this user nor the directory's
    owner, which another user may have planted there to make a write land elsewhere. None otherwise,
    and where users have no ids (Windows)."""
    if not hasattr(os, "geteuid"):
        return None
    parts = list(Path(os.path.abspath(path)).parts)
    current = Path(parts.pop(0))
    for _ in range(40 + len(parts)):  # a loop is left to realpath's error
        if not parts:
            return None
        part = parts.pop(0)
        if part == "..":
            current = current.parent
            continue
        step = current / part
        if not os.path.islink(step):
            current = step
            continue
        shared = os.stat(current)
        if shared.st_mode & stat.S_ISVTX and shared.st_mode & stat.S_IWOTH and _owner(step) not in (os.geteuid(), shared.st_uid):
            return step
        pointed = Path(os.readlink(step))
        if pointed.is_absolute():
            current = Path(pointed.anchor)
        parts = [p for p in pointed.parts if p != pointed.anchor] + parts
    return None


def _unwritable(path: Path, exc: OSError) -> str:
    """Why no file can be made beside `path` to replace it (`exc`): a read-only `path` says so, and so
    does a directory that takes no new files (a virtual file system's answer is "no such file")."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and not os.access(path.parent, os.W_OK):
        return f"directory {path.parent} is not writable"  # the file is written beside itself, then renamed
    if path.is_file() and (not os.access(path, os.W_OK) or not file_mode(path) & 0o222):
        return "the file is read-only"
    if exc.errno == errno.ENOENT:
        return f"directory {path.parent} takes no new files"
    return exc.strerror or str(exc)


def _write_failed(target: str | os.PathLike, exc: OSError) -> WriteError:
    """A write that failed part-way (exit 1): the place was checked writable, so this is no bad input."""
    hint = " (free some space, or write elsewhere)" if exc.errno in DISK_FULL else ""
    return WriteError(f"cannot write {target}: {exc.strerror or exc}{hint}")


def output_target(output: str | None, flag: str = "-o", source: str | None = None, reads: Mapping[str, str | None] | None = None) -> str | None:
    """Where a command's `-o` writes: None for stdout (not given, -, or a path naming it such as
    /dev/stdout), else the file with `~` expanded; a file is checked writable before any work, and an empty name (an unset shell
    variable), the `source` file itself (the result would replace what it was made from) or another
    file the command reads (`reads`: what names it, such as "--examples", to its path, or None) is an error."""
    if output is None or output == "-":
        return None
    if not output.strip():
        raise BadInputError(f"{flag} was given an empty file name; give a file, or - for stdout")
    if inherited_fd(output) == 1:  # written as stdout is, never replacing the file it may point to
        return None
    if source is not None and os.path.exists(os.path.expanduser(output)) and _reads(source, output):
        raise BadInputError(f"{flag} {output} is the input file{' (standard input reads it)' if source == '-' else ''}; write the result to another file")
    read = next((what for what, path in (reads or {}).items() if path not in (None, "-") and os.path.exists(os.path.expanduser(output)) and _reads(path, output)), None)
    if read is not None:
        raise BadInputError(f"{flag} {output} is the {read} file, which the command reads; write the result to another file")
    check_writable(output, flag)
    return os.path.expanduser(output)  # `--output=~/x`, which the shell leaves as it is


def _reads(source: str, output: str) -> bool:
    """Whether `output` is the file that `source` reads: that file, or for "-" the file standard
    input is redirected from (`< FILE`)."""
    output = os.path.expanduser(output)
    if source != "-":
        source = os.path.expanduser(source)
        return os.path.isfile(source) and os.path.samefile(source, output)
    try:
        given, there = os.fstat(sys.stdin.fileno()), os.stat(output)
    except (AttributeError, OSError, ValueError):  # no stdin, or one with no file descriptor
        return False
    return stat.S_ISREG(given.st_mode) and (given.st_dev, given.st_ino) == (there.st_dev, there.st_ino)


def file_mode(path: Path) -> int:
    """The permissions a written file gets: those of the file it replaces, else what the umask allows."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def umask_modes(directory: Path) -> None:
    """Give `directory` and all in it the modes new ones get under the umask (0644 files and 0755
    directories under 022), as a copy made with `cp` has: a library that writes through mkstemp leaves
    files owner-only (0600), which another user of a shared cache (an image's runtime user) cannot read."""
    mask = _umask()
    for path in (directory, *directory.rglob("*")):
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


_PROC_STATUS = "/proc/self/status"
_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux's `Umask:` line
    in /proc/self/status); else set for a moment, under a lock, to a stricter mask than most (0o077,
    so a file another thread makes meanwhile is private, never open to all) and put back."""
    with contextlib.suppress(OSError, ValueError):
        with open(_PROC_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def open_stream(target: str | os.PathLike, mode: str = "a", encoding: str = "utf-8"):
    """`target`, a device, pipe or inherited descriptor (see `inherited_fd`), opened to write in
    place: a descriptor is written through as it is, not opened anew (which could start at its
    beginning and write over what others wrote there)."""
    fd = inherited_fd(target)
    if fd is None:
        return open(target, mode, encoding=encoding, newline="")
    for stream in (sys.stdout, sys.stderr):  # what Python holds for the descriptor goes first
        with contextlib.suppress(AttributeError, OSError, ValueError):  # replaced (captured) or closed
            if stream.fileno() == fd:
                stream.flush()
    return open(fd, mode, encoding=encoding, newline="", closefd=False)


def write_atomic(target: str | os.PathLike, text: str, flag: str = "-o", private: bool = False, encoding: str = "utf-8") -> Path:
    """Write text to a temp file beside `target` (a symlink's target), then rename it into place,
    keeping the replaced file's permissions (a new `private` file is readable by its owner only); a
    device or pipe is written directly. `flag` names the option the path came from in errors; an
    `encoding` other than UTF-8 (`utf-16-le`, `utf-8-sig`, ...) is written with a byte-order mark."""
    real = check_writable(target, flag)
    body = text if text.endswith("\n") else text + "\n"
    body = body if encoding in ("utf-8", "utf-8-sig") else "\ufeff" + body  # utf-8-sig writes its own
    fd = inherited_fd(target)
    if fd is not None or (real.exists() and not real.is_file()):
        try:
            with open_stream(target, "w", encoding) as handle:
                handle.write(body)
        except OSError as exc:
            raise _write_failed(target, exc) from exc
        return Path(target).expanduser()
    mode = file_mode(real) if real.exists() or not private else 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_failed(target, exc) from exc
        raise
    return Path(target).expanduser()
