"""Windows (and macOS) behaviour, emulated on any OS: `sys.platform`/`os.name` patched where the code
reads them, stdout a text stream in a Windows code page that turns LF into CRLF, as Python's stdout is
on Windows when redirected, Windows-only modules (msvcrt) and socket options faked."""

import io
import json
import ntpath
import os
import signal
import sys
import sysconfig
import types

import pytest
import typer.core

from aigc import ui
from aigc.errors import BadInputError
from aigc.cli import app as cli_app


@pytest.fixture(autouse=True)
def posix_config_read():
    """sysconfig reads its build's data on first use, by `sys.platform`: read before that is patched."""
    sysconfig.get_config_vars()


def windows_stdout(encoding: str = "cp1252") -> io.TextIOWrapper:
    """stdout as Python opens a redirected one on Windows: the ANSI code page, LF written as CRLF."""
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, newline="\r\n")


def written(stream: io.TextIOWrapper) -> bytes:
    stream.flush()
    return stream.buffer.getvalue()


def run_main(monkeypatch, *argv: str) -> int:
    """`aigc ARGV` through the console script's entry point."""
    monkeypatch.setattr(sys, "argv", ["aigc", *argv])
    monkeypatch.setattr(sys, "stdin", open(os.devnull, encoding="utf-8"))  # `< /dev/null`
    handler = signal.getsignal(signal.SIGTERM)
    try:
        cli_app.main()
    except SystemExit as exc:
        return exc.code or 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    return 0


def test_a_result_outside_the_windows_code_page_is_written_utf8_with_lf(monkeypatch):
    out = windows_stdout()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.delenv("PYTHONIOENCODING", raising=False)
    monkeypatch.setattr(sys, "stdout", out)
    assert run_main(monkeypatch, "chat", "-m", "echo", "--no-log", "山田太郎 lives in 東京 ✓") == 0
    text = written(out).decode("utf-8")
    assert "山田太郎 lives in 東京 ✓" in text and "\r" not in text


def test_pythonioencoding_keeps_its_encoding_on_windows(monkeypatch):
    out = windows_stdout("cp1252")
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("PYTHONIOENCODING", "cp1252")
    monkeypatch.setattr(sys, "stdout", out)
    ui.windows_stdio()
    ui.result("café\nthé")
    assert written(out) == "café\nthé\n".encode("cp1252")


def test_a_console_is_left_as_python_opens_it(monkeypatch):
    out = windows_stdout()
    monkeypatch.setattr(out, "isatty", lambda: True)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(sys, "stdout", out)
    ui.windows_stdio()
    assert (out.encoding, written(out)) == ("cp1252", b"")
    out.write("a\n")
    assert written(out) == b"a\r\n"


def test_a_result_the_stdout_encoding_cannot_hold_is_written_with_question_marks_not_lost(monkeypatch):
    out = windows_stdout()
    monkeypatch.setattr(sys, "stdout", out)
    ui.result("Tokyo is 東京 ✓")
    assert written(out) == b"Tokyo is ?? ?\n"


def test_arguments_are_not_expanded_as_file_patterns_or_variables_on_windows(monkeypatch, tmp_path):
    (tmp_path / "Why1").write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRET", "s3cr3t")
    out = windows_stdout("utf-8")
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(typer.core, "os", types.SimpleNamespace(**{**vars(os), "name": "nt"}))  # what typer checks before expanding
    assert run_main(monkeypatch, "chat", "-m", "echo", "--no-log", "Why? $SECRET") == 0
    assert "Why? $SECRET" in written(out).decode("utf-8")


def test_batch_o_dash_streams_to_stdout_where_there_is_no_dev_stdout(monkeypatch, tmp_path, capfd):
    from aigc import writing

    monkeypatch.setattr(writing, "os", types.SimpleNamespace(**{**vars(os), "path": ntpath}))  # /dev/stdout is C:\dev\stdout there
    (tmp_path / "rows.txt").write_text("good film\nbad film\n", encoding="utf-8")
    code = run_main(monkeypatch, "batch", "classify", "-i", str(tmp_path / "rows.txt"), "-O", "labels=good,bad", "-m", "echo", "-o", "-")
    out, err = capfd.readouterr()
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [1, 2]


@pytest.fixture
def windows_text_files(monkeypatch):
    """`open` and `os.fdopen` in aigc.writing as on Windows: text written with no `newline` given has
    each LF turned into CRLF."""
    from aigc import writing

    def crlf(opener):
        def opened(file, mode="r", *args, **kwargs):
            if "b" not in mode and "newline" not in kwargs and len(args) < 3:
                kwargs["newline"] = "\r\n"
            return opener(file, mode, *args, **kwargs)
        return opened

    monkeypatch.setattr(writing, "open", crlf(open), raising=False)
    monkeypatch.setattr(writing, "os", types.SimpleNamespace(**{**vars(os), "fdopen": crlf(os.fdopen)}))


def test_files_are_written_with_the_line_ends_of_the_text_on_windows(windows_text_files, tmp_path):
    from aigc.writing import open_stream, write_atomic

    write_atomic(tmp_path / "summary.md", "one\ntwo")
    write_atomic(tmp_path / "notepad.txt", "un\r\ndeux\r\n")  # a CRLF file's translation, CRLF as it was
    with open_stream(tmp_path / "rows.jsonl") as handle:
        handle.write('{"id": 1}\n')
    assert (tmp_path / "summary.md").read_bytes() == b"one\ntwo\n"
    assert (tmp_path / "notepad.txt").read_bytes() == b"un\r\ndeux\r\n"
    assert (tmp_path / "rows.jsonl").read_bytes() == b'{"id": 1}\n'


def test_crlf_text_reaches_a_redirected_stdout_as_it_is_on_windows(monkeypatch):
    out = windows_stdout()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(sys, "stdout", out)
    ui.windows_stdio()
    ui.result("un\r\ndeux\r\n")
    assert written(out) == b"un\r\ndeux\r\n"


def a_session():
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    return ChatSession(ChatGenerator(engine=FakeEngine()))


@pytest.mark.parametrize("typed", ["notes\\draft.txt", '"notes\\draft.txt"', "'notes\\draft.txt'"])
def test_a_repl_file_path_keeps_its_backslashes_on_windows(monkeypatch, tmp_path, typed):
    from aigc.cli import chat

    monkeypatch.setattr(chat, "os", types.SimpleNamespace(**{**vars(os), "name": "nt"}))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes\\draft.txt").write_text("Bees make honey.", encoding="utf-8")  # on this OS, a name with a backslash in it
    pending = []
    chat._command("/file", typed, a_session(), pending)
    assert pending == [("notes\\draft.txt", "Bees make honey.")]


def test_a_repl_file_path_is_read_as_a_posix_shell_reads_it_elsewhere(monkeypatch, tmp_path):
    from aigc.cli import chat

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my notes.txt").write_text("Bees make honey.", encoding="utf-8")
    for typed in ("my\\ notes.txt", "'my notes.txt'"):
        pending = []
        chat._command("/file", typed, a_session(), pending)
        assert pending == [("my notes.txt", "Bees make honey.")]


@pytest.fixture
def windows_editor(monkeypatch):
    """aigc.cli.templates as on Windows; yields the command lines it runs."""
    from aigc.cli import templates as cli_templates

    monkeypatch.setattr(cli_templates, "os", types.SimpleNamespace(**{**vars(os), "name": "nt"}))
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)
    ran = []
    monkeypatch.setattr("subprocess.call", lambda argv: ran.append(argv) or 0)
    monkeypatch.setattr("shutil.which", lambda name: {"code": "C:\\Programs\\VS Code\\bin\\code.CMD", "notepad": "C:\\Windows\\notepad.EXE"}.get(name))
    return cli_templates, ran


def test_the_default_editor_on_windows_is_notepad(windows_editor, tmp_path):
    cli_templates, ran = windows_editor
    cli_templates._run_editor(cli_templates._editor("greet", tmp_path / "greet.j2"), tmp_path / "greet.j2")
    assert ran == [["C:\\Windows\\notepad.EXE", str(tmp_path / "greet.j2")]]


def test_a_windows_editor_path_with_spaces_and_a_cmd_editor_are_run(windows_editor, monkeypatch, tmp_path):
    cli_templates, ran = windows_editor
    program = tmp_path / "Program Files" / "Notepad++" / "notepad++.exe"  # a path with spaces, as Windows has
    program.parent.mkdir(parents=True)
    program.write_bytes(b"")
    for editor in (str(program), f'"{program}"', f'"{program}" -multiInst', "code --wait"):
        monkeypatch.setenv("EDITOR", editor)
        cli_templates._run_editor(cli_templates._editor("greet", tmp_path / "greet.j2"), tmp_path / "greet.j2")
    assert ran == [
        [str(program), str(tmp_path / "greet.j2")],
        [str(program), str(tmp_path / "greet.j2")],
        [str(program), "-multiInst", str(tmp_path / "greet.j2")],
        ["C:\\Programs\\VS Code\\bin\\code.CMD", "--wait", str(tmp_path / "greet.j2")],
    ]


@pytest.fixture
def windows_locks(monkeypatch):
    """aigc.locks as on Windows: no fcntl, and msvcrt.locking (emulated with flock, which likewise
    refuses a second open file its lock) on the first byte; an open file cannot be deleted."""
    import errno
    import fcntl
    import pathlib

    from aigc import locks

    def locking(fd, mode, nbytes):
        assert nbytes == 1 and os.lseek(fd, 0, os.SEEK_CUR) == 0
        try:
            fcntl.flock(fd, fcntl.LOCK_UN if mode == msvcrt.LK_UNLCK else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OSError(errno.EACCES, "Permission denied") from None

    msvcrt = types.SimpleNamespace(LK_NBLCK=2, LK_UNLCK=0, locking=locking)
    handles = []
    real_unlink = pathlib.Path.unlink

    def tracked_open(name, mode="r", **kwargs):
        handles.append(open(name, mode, **kwargs))
        return handles[-1]

    def unlink(self, missing_ok=False):
        if any(handle.name == str(self) and not handle.closed for handle in handles):
            raise PermissionError(13, "The process cannot access the file because it is being used by another process", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", msvcrt)
    monkeypatch.setattr(locks, "os", types.SimpleNamespace(**{**vars(os), "name": "nt"}))
    monkeypatch.setattr(locks, "open", tracked_open, raising=False)
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    return locks


def test_a_second_holder_is_refused_on_windows_and_the_lock_file_goes_with_the_file(windows_locks, tmp_path):
    locks = windows_locks
    chat = tmp_path / "trip.json"
    with locks.held(chat, "busy") as locked:
        assert locked and locks.lock_file(chat).exists()
        with pytest.raises(BadInputError, match="^busy$"):
            with locks.held(chat, "busy"):
                pass
    assert not locks.lock_file(chat).exists()  # trip.json was never made: its lock file is removed, once closed
    with locks.held(chat, "busy") as locked:  # let go of: held again
        assert locked


def test_a_waiting_holder_gets_the_lock_when_it_is_let_go_of_on_windows(windows_locks, tmp_path):
    import threading

    locks = windows_locks
    chat = tmp_path / "trip.json"
    chat.write_text("{}", encoding="utf-8")
    order = []

    def wait_for_it():
        order.append("waiting")
        with locks.held(chat, wait=True):
            order.append("got it")

    with locks.held(chat, "busy"):
        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        waiter.join(0.3)  # it waits meanwhile
        order.append("let go")
    waiter.join()
    assert order == ["waiting", "let go", "got it"]


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_session_names_differing_in_case_share_one_lock_where_the_file_system_ignores_case(monkeypatch, tmp_path, platform):
    from aigc import locks

    monkeypatch.setattr(sys, "platform", platform)
    unwritable = tmp_path / "none"  # the lock goes in the data directory, keyed by the path
    assert locks.lock_file(unwritable / "Trip.json") == locks.lock_file(unwritable / "trip.json")


class GoneReader(io.StringIO):
    """stdout on Windows once the pipe's reader went away: writes fail with EINVAL, not EPIPE."""

    def write(self, text):
        raise OSError(22, "Invalid argument")

    def flush(self):
        raise OSError(22, "Invalid argument")


def test_a_reader_gone_on_windows_stops_the_command_quietly(monkeypatch, capfd):
    from aigc import ui

    monkeypatch.setattr(ui, "os", types.SimpleNamespace(**{**vars(os), "name": "nt"}))
    monkeypatch.setattr(sys, "stdout", GoneReader())
    code = run_main(monkeypatch, "chat", "-m", "echo", "--no-log", "hello")
    assert (code, capfd.readouterr().err) == (1, "")


class GonePipe(io.RawIOBase):
    """A pipe on Windows whose reader went away: each write fails with EINVAL, not EPIPE."""

    def writable(self):
        return True

    def write(self, data):
        raise OSError(22, "Invalid argument")


def test_batch_streaming_to_a_reader_gone_on_windows_stops_quietly(monkeypatch, tmp_path, capfd):
    from aigc import batch

    monkeypatch.setattr(ui, "os", types.SimpleNamespace(**{**vars(os), "name": "nt"}))
    monkeypatch.setattr(batch, "open_stream", lambda output: io.TextIOWrapper(io.BufferedWriter(GonePipe()), encoding="utf-8", newline=""))  # `-o - | Select-Object -First 1`
    (tmp_path / "rows.txt").write_text("good film\nbad film\n", encoding="utf-8")
    code = run_main(monkeypatch, "batch", "classify", "-i", str(tmp_path / "rows.txt"), "-O", "labels=good,bad", "-m", "echo", "-o", "-")
    assert (code, capfd.readouterr().err) == (1, "")


def test_serve_binds_its_port_exclusively_on_windows(monkeypatch):
    import socket

    from aigc.serve.running import bind

    set_options = []

    class Socket(socket.socket):
        def setsockopt(self, level, option, value):
            set_options.append(option)

    monkeypatch.setattr(socket, "SO_EXCLUSIVEADDRUSE", -5, raising=False)  # what Windows has, and nothing else
    monkeypatch.setattr(socket, "socket", Socket)
    bind("127.0.0.1", 0).close()
    assert set_options == [-5]


def test_bfloat16_on_mps_before_macos_14_is_an_option_error(monkeypatch):
    import torch

    from aigc.engine.loading import pick_dtype
    from aigc.errors import OptionError

    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: (major, minor) <= (13, 6))  # macOS 13.6
    with pytest.raises(OptionError, match="bfloat16 needs macOS 14 or newer"):
        pick_dtype("bfloat16", "mps")
    assert pick_dtype("float16", "mps") == torch.float16
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: True)
    assert pick_dtype("bfloat16", "mps") == torch.bfloat16


def test_ctrl_break_stops_a_command_as_sigterm_does(monkeypatch):
    """Windows' Ctrl-Break (SIGBREAK), where SIGTERM is never sent by a console: the same clean stop."""
    from aigc.errors import Terminated

    installed = {}
    monkeypatch.setattr(signal, "SIGBREAK", 21, raising=False)  # Windows' number, and no handler set for real
    monkeypatch.setattr(signal, "signal", lambda sig, handler: installed.__setitem__(sig, handler))
    assert run_main(monkeypatch, "--version") == 0
    assert installed[signal.SIGBREAK] is cli_app._terminate
    with pytest.raises(Terminated):
        installed[signal.SIGBREAK](signal.SIGBREAK, None)
    assert installed[signal.SIGBREAK] is signal.SIG_DFL  # a second Ctrl-Break ends the process at once
