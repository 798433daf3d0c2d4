"""Consoles, progress and streaming display, for the CLI (the library's `run_batch` uses only
`above_live_display`, for rows streamed to the terminal of the CLI's progress bar).

stdout carries results only; everything else (progress, stats, warnings) goes to stderr. Progress
bars and spinners appear only when stderr is a terminal that takes cursor moves; elsewhere (`2> log`,
nohup, cron, CI, TERM=dumb, TTY_INTERACTIVE=0) a long run writes a plain progress line now and then instead.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TextIO

from rich.console import Console
from rich.file_proxy import FileProxy

from .errors import AigcError, Terminated, named_options


@dataclass
class Settings:
    verbosity: int = 0  # -1 quiet, 0 normal, 1+ verbose


settings = Settings()
PLAIN_EVERY = 30.0  # seconds between plain progress lines where stderr is no terminal
HEARTBEAT_CHECK = 5.0  # seconds between looks at the clock for a plain line due while a long step runs
clock = time.monotonic  # what plain progress lines are timed by; tests put a fake one here
_stderr: Console | None = None
_stdout: TextIO | None = None  # the real stdout while `prints_to_stderr` points sys.stdout at stderr


def stderr() -> Console:
    global _stderr
    if _stderr is None:
        _stderr = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())  # piped lines stay whole
    return _stderr


def interactive() -> bool:
    """Whether progress is drawn live: stderr is a terminal that takes cursor moves (rich's rule: not
    TERM=dumb, as Emacs' shell, nor TTY_INTERACTIVE=0) and -q is not given; else it is plain lines."""
    return sys.stderr.isatty() and stderr().is_interactive and settings.verbosity >= 0


def colour() -> bool:
    """Whether stderr takes colour, by rich's rules for aigc's own lines (a terminal, or FORCE_COLOR;
    not NO_COLOR, nor TERM=dumb): for text coloured elsewhere, as uvicorn's log of `aigc serve`."""
    console = stderr()
    return console.color_system is not None and not console.no_color


def info(message: str) -> None:
    """A progress note on stderr (hidden by -q)."""
    if settings.verbosity >= 0:
        stderr().print(message, markup=False, style="dim")


def debug(message: str) -> None:
    """Detail shown with -v."""
    if settings.verbosity > 0:
        stderr().print(message, markup=False, style="dim")


def warn(message: str) -> None:
    """`message` on stderr, each option marked in it (`errors.option`, as `fewer_advice` gives) named as the command's flag."""
    stderr().print(f"Warning: {named_options(message)}", markup=False, style="yellow", soft_wrap=True)


def error(message: str) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"Error: {message}", markup=False, style="bold red")


def windows_stdio() -> None:
    """On Windows, make a redirected or piped stdout and stderr write UTF-8 with the line ends given
    (LF), as elsewhere: Python writes the ANSI code page there (a character outside it fails) and turns
    each LF into CRLF. A console is left as is (Python writes it UTF-8); PYTHONIOENCODING, where set,
    keeps its encoding."""
    if sys.platform != "win32":
        return
    encoding = None if os.environ.get("PYTHONIOENCODING") else "utf-8"
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure") and not stream.isatty():
            stream.reconfigure(encoding=encoding, newline="\n")


class StdoutClosedError(OSError):
    """A result written to a `ClosedStdout`."""


class ClosedStdout(io.TextIOBase):
    """stdout for a process started with it closed (`aigc ... >&-`), where Python has none: writing
    a result is a one-line error (exit 1), as a full disk is, and a command that writes none runs."""

    def write(self, text: str) -> int:
        raise StdoutClosedError(errno.EBADF, "standard output is closed")


def closed_stdout() -> None:
    """Give a process started without stdout a `ClosedStdout` (see there)."""
    if sys.stdout is None:
        sys.stdout = ClosedStdout()


def stdout() -> TextIO:
    """Where results go: stdout, also inside `prints_to_stderr`."""
    return _stdout or sys.stdout


@contextlib.contextmanager
def prints_to_stderr() -> Iterator[None]:
    """Run generator code with what it prints (a plugin's print(), a library's progress) going to
    stderr, so results on stdout stay machine-readable; `result` and `stream_result` still write to
    stdout. Enter it in the main thread: sys.stdout is one for the whole process, so what the
    threads started inside it (batch workers) print goes to stderr too."""
    global _stdout
    outer = _stdout
    _stdout = stdout()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _stdout = outer


def print_table(table) -> None:
    """Print a rich `Table` on stdout without cutting a cell with "…" (a label, an alias, a name
    that is to be read or typed): on a terminal its cells wrap within the width (a long word folded),
    except those of a column kept to one line (`no_wrap`, a preview); elsewhere (a pipe, a log, CI)
    it is as wide as its cells need, each row on one line, whatever COLUMNS says, and with no spaces
    padding its lines' ends (noise for `diff`, `grep -x`)."""
    from rich.console import Console
    from rich.measure import Measurement

    for column in table.columns:
        if not column.no_wrap:
            column.overflow = "fold"
    console = Console(file=stdout(), highlight=False)
    if stdout().isatty():
        console.print(table)
        return
    console.width = Measurement.get(console, console.options.update_width(sys.maxsize), table).maximum
    with console.capture() as captured:
        console.print(table)
    result("\n".join(line.rstrip() for line in captured.get().splitlines()))


def result(text: str) -> None:
    """Write a result to stdout, as plain text; a file name's bytes in no UTF-8 (lone surrogates, as
    Python reads them) as the bytes they were, also where stdout takes only proper text (a UTF-8 locale)."""
    text = text if text.endswith("\n") else text + "\n"
    out = stdout()
    if above_live_display(out, text[:-1]):
        return
    with closed_pipe():
        try:
            out.write(text)
        except UnicodeEncodeError:
            if not hasattr(out, "buffer"):
                raise
            out.flush()
            try:
                data = text.encode(out.encoding or "utf-8", "surrogateescape")
            except UnicodeEncodeError:  # a character the encoding has none for (a Windows code page's): "?", the answer not lost
                data = text.encode(out.encoding, "replace")
            out.buffer.write(data)
        out.flush()


@contextlib.contextmanager
def closed_pipe() -> Iterator[None]:
    """A write to a pipe whose reader went away (`| Select-Object -First 1`) raises BrokenPipeError,
    which the CLI takes as a quiet stop, also on Windows, where it is an OSError EINVAL (python/cpython#79935)."""
    try:
        yield
    except OSError as exc:
        if os.name == "nt" and exc.errno == errno.EINVAL:
            raise BrokenPipeError(errno.EPIPE, "the reader of stdout went away") from exc
        raise


def above_live_display(out: TextIO, line: str) -> bool:
    """Print `line` above a live progress display where `out` writes to the display's terminal
    (rich clears the display, prints the line and draws it again), so that it does not stick to
    the display's text; False where no display is there: `out` is to be written as usual."""
    if not _under_live_display(out):
        return False
    stderr().print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
    return True


def _under_live_display(out: TextIO) -> bool:
    """Whether a live progress display (its `Live` puts rich's proxy in sys.stdout) is drawn on the
    terminal `out` writes to: written past it, a line would stick to the display's text."""
    if not isinstance(sys.stdout, FileProxy):
        return False
    try:
        return out.isatty() and os.path.samestat(os.fstat(out.fileno()), os.fstat(stderr().file.fileno()))
    except (AttributeError, OSError, ValueError):  # no file descriptor (a test's StringIO)
        return False


def stream_result(pieces: Iterator[str], on_stop: Callable[[str], None] = lambda partial: None, write: Callable[[str], None] | None = None, cut: Callable[[str], None] | None = None) -> tuple[str, str | None]:
    """Write a result's pieces to stdout as they come (leading space dropped, a line break after);
    returns the whole text and what `pieces` returns at its end (a stream's finish reason). An
    `AigcError`, Ctrl-C or SIGTERM midway ends the written line first; Ctrl-C and SIGTERM (a stop)
    give `on_stop` the text written so far. With `write` (stdout is no terminal, `> draft.md`, where an answer comes
    whole) nothing is shown as it comes: `write` gets the whole text at the end, or where Ctrl-C
    stops it, the text so far (before `on_stop`), which `cut` gets instead where it is given (an
    `-o` file keeps what it had: only a whole answer replaces it)."""
    seen: list[str] = []
    started = False
    out = stdout()
    pieces = iter(pieces)
    try:
        while True:
            try:
                piece = next(pieces)
            except StopIteration as end:
                reason = end.value
                break
            if not started:
                piece = piece.lstrip()
                started = bool(piece)
            seen.append(piece)
            if write is None:
                out.write(piece)
                out.flush()
    except (AigcError, KeyboardInterrupt, Terminated) as exc:  # the error goes on a line of its own, after what was written
        if started and write is None:
            out.write("\n")
            out.flush()
        if isinstance(exc, (KeyboardInterrupt, Terminated)):
            close = getattr(pieces, "close", None)
            if close:
                close()  # a session records the partial reply now
            partial = "".join(seen).strip()
            if (cut or write) is not None and partial:
                (cut or write)(partial)
            on_stop(partial)
        raise
    if write is None:
        out.write("\n")
        out.flush()
    else:
        write("".join(seen).strip())
    return "".join(seen), reason


class _Lines:
    """Progress as plain lines on stderr where it is no terminal (a log, nohup, CI), as tqdm's
    `mininterval` but for logs: a line at most every `PLAIN_EVERY` seconds, the first only once the
    run has taken that long, so a short run writes none. Calling it with `line(now)` writes that line when one is due,
    and with `final` (the stage's last step done) whenever an earlier line was written, so a log ends at `1/1`, not `0/1`;
    inside `beating()`, a step that runs longer than that (one summary, a headline's samples, a row) gets its latest
    line again every `PLAIN_EVERY` seconds, saying how long the run has taken, so a slow run does not look hung."""

    def __init__(self) -> None:
        self.last = self.start = clock()
        self.latest: Callable[[float], str] | None = None  # the line last reported, for `beat`
        self.wrote = False  # whether a line was written yet
        self.lock = threading.Lock()

    def __call__(self, line: Callable[[float], str], final: bool = False) -> None:
        with self.lock:
            self.latest = line
            now = clock()
            if now - self.last < PLAIN_EVERY and not (final and self.wrote):
                return
            self.last, self.wrote = now, True
        info(line(now))

    def beat(self) -> None:
        """The latest line again, with how long the run has taken, where none was written for `PLAIN_EVERY` seconds."""
        with self.lock:
            now = clock()
            if self.latest is None or now - self.last < PLAIN_EVERY:
                return
            self.last, self.wrote, line = now, True, self.latest
        info(f"{line(now)} (still running, {_taken(now - self.start)} in)")

    @contextlib.contextmanager
    def beating(self) -> Iterator[None]:
        """`beat` from one thread that looks at the clock every `HEARTBEAT_CHECK` seconds (it sleeps between), while the context runs."""
        stop = threading.Event()

        def beats() -> None:
            while not stop.wait(HEARTBEAT_CHECK):
                self.beat()

        thread = threading.Thread(target=beats, name="aigc-progress-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _taken(seconds: float) -> str:
    """How long something has taken, to the second, so lines 30 s apart differ: "45 s", "90 s",
    "2 min 30 s", "7 min", "1 h 5 min 30 s"."""
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    parts = ((seconds // 3600, "h"), (seconds % 3600 // 60, "min"), (seconds % 60, "s"))
    return " ".join(f"{n} {unit}" for n, unit in parts if n)


def _about(seconds: float | None) -> str:
    """The time left as ", about 3 min left"; nothing where it is not known yet, or none is left."""
    seconds = round(seconds or 0)
    if seconds <= 0:
        return ""
    if seconds < 60:
        return f", about {seconds} s left"
    if seconds < 3600:
        return f", about {round(seconds / 60)} min left"
    return f", about {seconds // 3600} h {seconds % 3600 // 60} min left"


@contextlib.contextmanager
def stage_status() -> Iterator[Callable[..., None]]:
    """Show what the engine is doing (download with a byte bar, conversion, loading): a live line
    on a terminal with the time it has taken, plain lines on stderr otherwise (routine loading only
    with -v, or after a note such as a first-time pull's; the bytes of a long download now and then,
    as `_Lines`). A `Note` is a line kept above the live one. Yields the callback the engine reports
    to: `stage(name)` or `stage(name, done, total)`."""
    from .engine.models import Note

    if not interactive():
        from rich.filesize import decimal

        printed: set[str] = set()
        lines = _Lines()

        def plain(stage: str, done: int | None = None, total: int | None = None) -> None:
            if stage not in printed:
                routine = stage.startswith("loading") and not any(isinstance(seen, Note) for seen in printed)
                printed.add(stage)
                (debug if routine else info)(stage)
            elif total:
                lines(lambda now: f"{stage}: {decimal(done or 0)} of {decimal(total)}")

        yield plain
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Bytes(DownloadColumn):
        def render(self, task):
            return super().render(task) if task.total else Text("")

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), Bytes(), TimeElapsedColumn())
    with Progress(*columns, console=stderr(), transient=True) as progress:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int | None = None, total: int | None = None) -> None:
            if isinstance(stage, Note):
                info(stage)
                return
            if stage not in tasks:
                for task in tasks.values():
                    progress.update(task, visible=False)
                tasks[stage] = progress.add_task(stage, total=total)
                debug(stage)
            progress.update(tasks[stage], completed=done or 0, total=total)

        yield update


@contextlib.contextmanager
def progress_bar() -> Iterator[Callable[[int, int | None, str], None]]:
    """A rich progress bar on a terminal; elsewhere a plain line now and then (`_Lines`: "translating:
    3/7, about 40 s left"), none with -q. Yields a (done, total, what) callback; `total` None: not known."""
    if not interactive():
        if settings.verbosity < 0:
            yield _no_decoding(lambda done, total, what: None)
            return
        lines = _Lines()
        started: dict[str, tuple[float, int]] = {}  # each stage's clock and count at its first report

        def plain(done: int, total: int | None, what: str) -> None:
            if what == "decoding":  # a generator's steps within one model call (generators.base.DECODING): the stages' counts say enough
                return
            since, first = started.setdefault(what, (clock(), done))
            of = "" if total is None else f"/{total}"
            lines(lambda now: f"{what}: {done}{of}" + _about(rate_and_left(done - first, None if total is None else total - first, now - since)[1]), final=done == total)

        with lines.beating():
            yield _no_decoding(plain)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), _time_left())
    with Progress(*columns, console=stderr(), transient=True, get_time=lambda: clock()) as progress:
        tasks: dict[str, int] = {}

        def update(done: int, total: int | None, what: str) -> None:
            if what == "decoding":
                return
            if what not in tasks:  # each stage's clock and count start at its first report, as the plain line's
                tasks[what] = progress.add_task(what, total=total, first=done)
            progress.update(tasks[what], completed=done, total=total)

        yield _no_decoding(update)


def _no_decoding(callback: Callable[[int, int | None, str], None]) -> Callable[[int, int | None, str], None]:
    """`callback`, marked as one that takes no `"decoding"` steps (`Generator.decoding`): a generator
    then calls nothing per decoded token."""
    callback.wants_decoding = False  # type: ignore[attr-defined]
    return callback


def _time_left():
    """A rich column of the time left in a task ("0:00:41"; "-:--:--" before anything is done) at the
    rate over its run so far, from the count at its start (its `first` field, else 0)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Left(ProgressColumn):
        def render(self, task):
            first = task.fields.get("first", 0)
            _, left = rate_and_left(int(task.completed) - first, None if task.total is None else int(task.total) - first, task.elapsed or 0)
            return Text("-:--:--" if left is None else f"{int(left) // 3600}:{int(left) % 3600 // 60:02d}:{int(left) % 60:02d}", style="progress.remaining")

    return Left()


def rate_and_left(done: int, total: int | None, elapsed: float) -> tuple[float | None, float | None]:
    """Rows/s over the whole run so far (`done` in `elapsed` seconds since the first row started)
    and the seconds left at that rate; None before a row is done (or without a total)."""
    if not done or elapsed <= 0:
        return None, None
    rate = done / elapsed
    return rate, None if total is None else max(total - done, 0) / rate


@contextlib.contextmanager
def items_progress(what: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """A bar of rows done (of `total`, where known now), rows/s and time left on a terminal; elsewhere
    the same as a plain line now and then (`_Lines`: "summarize: 40/120 rows, 3.1 rows/s, about 26 s
    left"), none with -q. Yields `(done, total)`. Its clock starts at the first call (`(0, total)` as the
    first row starts); rate and time left are over the whole run, as rows finish a window at a time."""
    if not interactive():
        if settings.verbosity < 0:
            yield lambda done, total: None
            return
        lines = _Lines()
        started: list[float] = []

        def plain(done: int, total: int) -> None:
            if not started:
                started.append(clock())
            lines(lambda now: _rows_line(what, done, total, now - started[0]), final=done == total)

        with lines.beating():
            yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task):
            rate, _ = rate_and_left(int(task.completed), task.total, task.elapsed or 0)
            return Text(f"{rate:.2f} rows/s" if rate else "")

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(), _time_left())
    with Progress(*columns, console=stderr(), transient=True) as progress:
        task = progress.add_task(what, total=total, start=False)

        def update(done: int, total: int) -> None:
            progress.start_task(task)  # the first call (the first row starting) starts the clock; later ones leave it
            progress.update(task, completed=done, total=total)

        yield update


def _rows_line(what: str, done: int, total: int, elapsed: float) -> str:
    rate, left = rate_and_left(done, total, elapsed)
    shown = "" if not rate else f", {rate:.1f} rows/s" if rate >= 1 else f", {rate:.2g} rows/s"
    return f"{what}: {done}/{total} rows{shown}" + _about(left)


def print_stats(stats, task: list[tuple[str, str]] = ()) -> None:
    """`--stats`: like `ollama run --verbose`, on stderr; `task`: rows of the task's own (summarize's parts)."""
    rows = [("download/convert time", f"{stats.pull_seconds:.2f}s")] if stats.pull_seconds else []
    rows += [("load time", f"{stats.load_seconds:.2f}s"), ("prompt tokens", str(stats.prompt_tokens))]
    if stats.scored_prompts:  # classify: prompts scored, nothing generated
        rows += [("prompts scored", str(stats.scored_prompts)), ("scoring time", f"{stats.scoring_seconds:.2f}s")]
    if stats.embedded_texts:  # embed, similar: texts embedded, nothing generated
        rows += [("texts embedded", str(stats.embedded_texts)), ("embedding time", f"{stats.embedding_seconds:.2f}s")]
    if stats.calls or not (stats.scored_prompts or stats.embedded_texts):
        rows += [
            ("generated tokens", str(stats.completion_tokens)),
            ("time to first token", "n/a" if stats.first_token_seconds is None else f"{stats.first_token_seconds:.3f}s"),
            ("generation time", f"{stats.generation_seconds:.2f}s" + (f" (wall; {stats.decode_seconds:.2f}s summed over calls that ran at once)" if stats.overlapped else "")),
            ("tokens/s", f"{stats.tokens_per_second:.1f}" + (" (over the wall time)" if stats.overlapped else "")),
        ]
    rows += list(task)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        stderr().print(f"{name + ':':<{width + 1}} {value}", markup=False)
