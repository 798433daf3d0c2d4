"""Writing results: output paths checked before any work, atomic replacement, inherited descriptors, the umask."""

import codecs
import errno
import os
import stat
from pathlib import Path

import pytest

from aigc import writing
from aigc.errors import BadInputError, WriteError
from aigc.writing import check_writable, inherited_fd, output_target, write_atomic


def test_atomic_write_leaves_no_partial_file_and_a_failed_write_is_no_bad_input(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(WriteError, match="No space left on device [(]free some space, or write elsewhere[)]") as failed:
        write_atomic(target, "text")
    assert failed.value.exit_code == 1
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_into_missing_directory_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        write_atomic(tmp_path / "no" / "out.txt", "x")


def test_atomic_write_follows_symlinks_and_keeps_permissions(tmp_path):
    real = tmp_path / "real" / "target.md"
    real.parent.mkdir()
    real.write_text("old\n")
    real.chmod(0o644)
    link = tmp_path / "link.md"
    link.symlink_to(real)
    assert write_atomic(link, "new") == link
    assert link.is_symlink()
    assert real.read_text() == "new\n"
    assert oct(real.stat().st_mode & 0o777) == oct(0o644)


def test_a_symlink_another_user_planted_in_a_sticky_shared_directory_is_not_followed(tmp_path, monkeypatch):
    """As Linux's protected_symlinks refuses it to the shell: a link in /tmp owned by neither the
    user nor the directory's owner; the user's own links, and links elsewhere, are followed."""
    shared, home = tmp_path / "tmp", tmp_path / "home"
    shared.mkdir()
    shared.chmod(0o1777)  # sticky and world-writable, as /tmp
    home.mkdir()
    victim = home / ".bashrc"
    victim.write_text("ORIGINAL\n")
    planted = {shared / "summary.md", shared / "new.md", shared / "dir"}
    for link, to in ((shared / "summary.md", victim), (shared / "new.md", home / "new.md"), (shared / "dir", home), (shared / "mine.md", victim), (shared / "hop.md", shared / "summary.md")):
        link.symlink_to(to)
    (home / "elsewhere.md").symlink_to(victim)  # another user's link outside a shared directory is followed, as the kernel does
    planted.add(home / "elsewhere.md")
    monkeypatch.setattr(writing, "_owner", lambda path: 4242 if Path(path) in planted else os.lstat(path).st_uid, raising=False)
    for name in ("summary.md", "new.md", "dir/x.md", "hop.md"):
        with pytest.raises(BadInputError, match=r"is a symlink owned by another user in the shared directory .*; refusing to follow it"):
            write_atomic(shared / name, "planted")
    assert victim.read_text() == "ORIGINAL\n" and not (home / "new.md").exists() and not (home / "x.md").exists()
    write_atomic(shared / "mine.md", "mine")
    assert victim.read_text() == "mine\n"
    write_atomic(home / "elsewhere.md", "there")
    assert victim.read_text() == "there\n"


def test_atomic_write_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "out.txt", "x")
    finally:
        os.umask(old)
    assert oct((tmp_path / "out.txt").stat().st_mode & 0o777) == oct(0o644)


def _umask_calls(monkeypatch) -> list[tuple[int, bool]]:
    """Each `os.umask(mask)` call from here on, with whether the umask lock was held."""
    calls: list[tuple[int, bool]] = []
    real = os.umask

    def umask(mask):
        calls.append((mask, writing._UMASK_LOCK.locked()))
        return real(mask)

    monkeypatch.setattr(os, "umask", umask)
    return calls


def test_new_file_mode_reads_the_umask_without_changing_it(tmp_path, monkeypatch):
    """Setting the umask to read it is a process-wide read-modify-write: two threads at once could
    leave it at 0, and every file made afterwards writable by all."""
    old = os.umask(0o027)
    try:
        calls = _umask_calls(monkeypatch)
        assert oct(writing.file_mode(tmp_path / "new.txt")) == oct(0o640)
        assert calls == []  # Linux says it in /proc/self/status
    finally:
        monkeypatch.undo()
        os.umask(old)


def test_new_file_mode_without_proc_sets_the_umask_only_under_the_lock_and_never_to_0(tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        monkeypatch.setattr(writing, "_PROC_STATUS", str(tmp_path / "no-proc"))
        calls = _umask_calls(monkeypatch)
        assert oct(writing.file_mode(tmp_path / "new.txt")) == oct(0o640)
        assert calls and all(locked and mask != 0 for mask, locked in calls)
        assert calls[-1][0] == 0o027  # put back
    finally:
        monkeypatch.undo()
        assert oct(os.umask(old)) == oct(0o027)


def test_atomic_write_to_a_device_writes_in_place():
    assert write_atomic("/dev/null", "text") == Path("/dev/null")
    assert Path("/dev/null").is_char_device()


def test_paths_naming_this_process_descriptors_are_known_by_their_number(tmp_path):
    (tmp_path / "link").symlink_to("/dev/stdout")
    assert [inherited_fd(p) for p in ("/dev/stdout", "/dev/stderr", "/dev/fd/3", "/proc/self/fd/1", f"/proc/{os.getpid()}/fd/2", tmp_path / "link")] == [1, 2, 3, 1, 2, 1]
    assert [inherited_fd(p) for p in ("/dev/null", tmp_path / "out.txt", "/proc/1/fd/1", "stdout")] == [None] * 4
    assert output_target("/dev/stdout") is None and output_target("/dev/stderr") == "/dev/stderr"


def test_stdout_and_stderr_paths_are_written_through_their_descriptor_never_replacing_the_file(tmp_path):
    """`( echo BEFORE; aigc ... -o /dev/stderr; echo AFTER ) 2> f` keeps all three, in order, and so
    does a file appended to (`>>`): the descriptor is written where the shell left it."""
    import subprocess
    import sys

    target = tmp_path / "all.txt"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, b"BEFORE\n")
    script = "from aigc.writing import write_atomic, check_writable; check_writable('/dev/stderr'); write_atomic('/dev/stderr', 'middle')"
    subprocess.run([sys.executable, "-c", script], stderr=fd, check=True)
    os.write(fd, b"AFTER\n")
    os.close(fd)
    assert target.read_text() == "BEFORE\nmiddle\nAFTER\n"
    with open(target, "a") as appended:
        subprocess.run([sys.executable, "-c", script], stderr=appended, check=True)
    assert target.read_text() == "BEFORE\nmiddle\nAFTER\nmiddle\n"
    checked = "from aigc.writing import check_writable\ntry: check_writable('/dev/stderr')\nexcept Exception as e: print(e)"
    closed = subprocess.run([sys.executable, "-c", checked], stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(2))  # 2>&-
    assert closed.stdout == "cannot write /dev/stderr: it is not open (the shell closed it)\n"


def test_write_failing_on_a_device_is_a_write_error_with_exit_1():
    with pytest.raises(WriteError, match="cannot write /dev/full: No space left on device") as failed:
        write_atomic("/dev/full", "text")
    assert failed.value.exit_code == 1
    assert Path("/dev/full").is_char_device()


def test_unwritable_directory_and_read_only_file_are_found_before_work_saying_why(tmp_path):
    with pytest.raises(BadInputError, match="cannot write /proc/x.md: (directory /proc takes no new files|Permission denied)$"):
        check_writable("/proc/x.md")
    with pytest.raises(BadInputError, match="cannot write /proc/version: the file is read-only$"):
        check_writable("/proc/version")


def test_symlink_loops_and_dangling_links_fail_before_work_naming_the_real_directory(tmp_path):
    (tmp_path / "loop1.md").symlink_to(tmp_path / "loop2.md")
    (tmp_path / "loop2.md").symlink_to(tmp_path / "loop1.md")
    (tmp_path / "dangling.md").symlink_to(tmp_path / "gone" / "x.md")
    with pytest.raises(BadInputError, match="symbolic links"):
        check_writable(tmp_path / "loop1.md")
    with pytest.raises(BadInputError, match=f"directory {tmp_path / 'gone'} does not exist"):
        check_writable(tmp_path / "dangling.md")


def test_a_private_new_file_is_readable_by_its_owner_only_and_errors_name_the_flag(tmp_path):
    write_atomic(tmp_path / "session.json", "{}", private=True)
    assert stat.S_IMODE((tmp_path / "session.json").stat().st_mode) == 0o600
    with pytest.raises(BadInputError, match="give a file name for /save"):
        write_atomic(tmp_path, "x", "/save")


def test_write_atomic_in_utf16_or_utf8_sig_writes_one_byte_order_mark(tmp_path):
    out = tmp_path / "out.txt"
    write_atomic(out, "Hi\r\n", encoding="utf-16-be")
    assert out.read_bytes() == codecs.BOM_UTF16_BE + "Hi\r\n".encode("utf-16-be")
    write_atomic(out, "Hi\n", encoding="utf-8-sig")
    assert out.read_bytes() == codecs.BOM_UTF8 + b"Hi\n"
