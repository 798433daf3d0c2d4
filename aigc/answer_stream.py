"""`AnswerStream`: one answer as the model writes it, then its whole result (what `aigc.stream` and a
`ChatSession`'s `send` and `retry` return)."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

from .engine.base import Completion, Prompt, stopped_by, usage_of
from .engine.sampling import SamplingParams  # at run time, so typing.get_type_hints resolves the annotations (no torch: it imports it lazily)
from .errors import AigcError, stop_event_set


class AnswerStream:
    """Iterate it for the answer's text pieces; once it has ended, `text` (the pieces joined),
    `finish_reason` ("stop", or "length" where max_tokens cut it off), `usage` and `result` (the
    dict the generator's call, `aigc.generate`, returns) hold the whole answer, with no second model
    call. Reading one of them before the end reads the rest of the answer first, kept for the loop:
    iterating it after gives every piece the loop has not had yet. `close()`, or a loop broken out of
    with the stream left unread, stops decoding; closed early, `text` holds what was written,
    `finish_reason` is "cancelled", `usage` counts the tokens written (where the engine counts them)
    and `result` is the generator's dict for that text (None where it makes none of it: a partial
    JSON answer). Another thread may close it (a stop button's) while one reads it: the reader gets
    the piece being decoded, then the end. A `with` block closes it at its end, as the openai SDK's
    streams. Like a generator, it ends with the finish reason as the value of its `StopIteration`."""

    def __init__(
        self, pieces: Iterator[str], finish: Callable[[Any], dict[str, Any]], *, counted_by: tuple[Any, Prompt] | None = None,
        result_is_whole: bool = True, relaying: Callable[[], Any] | None = None,
    ):
        """The stream of `pieces`, an iterator that returns what `finish` makes the result from (as a
        chat session's turn relays the generator's stream and records the answer). `counted_by`, an
        engine and its prompt, counts the tokens where the pieces end with only a finish reason;
        `result_is_whole` False keeps `result` None (a stream that has no generator's dict);
        `relaying()` gives the `AnswerStream` that `pieces` relay (None before it is made), whose
        `finish_reason`, `usage` and `result` this one holds when closed early."""
        self._pieces = iter(pieces)
        self._make_result = finish
        self._token_counter = counted_by
        self._result_is_whole = result_is_whole
        self._relaying = relaying
        self._written: list[str] = []
        self._given = 0  # pieces the loop has had; those after were read for `text` and are kept for it
        self._ended = False
        self._cancelled = False  # closed before its end: its result is made when first read
        self._result: dict[str, Any] | None = None
        self._reading = threading.Lock()  # held while a piece is decoded: a `close()` from another thread leaves the pieces to the reader to close
        self._stop: Any = None  # `stopping_on`'s event

    @classmethod
    def of_engine(cls, engine: Any, prompt: Prompt, params: SamplingParams, finish: Callable[[Completion], dict[str, Any]]) -> AnswerStream:
        """Stream `engine`'s answer to `prompt` without its surrounding blank space, so that `text` is
        the result's, as `generate` gives it; `finish` makes the result from its `Completion`."""
        return cls(_trimmed(engine.stream(prompt, params)), finish, counted_by=(engine, prompt))

    @classmethod
    def of_engine_later(cls, start: Callable[[], tuple[Any, Prompt, SamplingParams]], finish: Callable[[Completion], dict[str, Any]]) -> AnswerStream:
        """`of_engine`, with `start()` giving its engine, prompt and settings when the first piece is
        asked for (where the model loads then): a stream whose model is not loaded yet returns at once."""
        stream = cls(iter(()), finish)

        def pieces() -> Any:
            engine, prompt, params = start()
            stream._token_counter = (engine, prompt)
            return (yield from _trimmed(engine.stream(prompt, params)))

        stream._pieces = pieces()
        return stream

    def stopping_on(self, stop: Any) -> AnswerStream:
        """Have `stop` (a `threading.Event`, anything with `is_set()`; None: nothing) stop this
        stream at its next decoding step once set, from any thread: the piece being read then raises
        `aigc.errors.StoppedError`, and the stream holds what `close()` leaves (finish reason "cancelled")."""
        self._stop = stop
        return self

    @classmethod
    def wrapping(cls, pieces: Iterator[str]) -> AnswerStream:
        """A plugin generator's own `stream` (a generator of text pieces) as an `AnswerStream`: `text`
        the pieces joined; `finish_reason` the finish reason it returns, or that of the engine's
        `Completion` it returns (`return (yield from self.engine.stream(...))`), else None; `usage`
        that `Completion`'s, else None; `result` None (only the generator's call makes its dict)."""
        if isinstance(pieces, AnswerStream):
            return pieces
        return cls(pieces, _plain_end, result_is_whole=False)

    def __iter__(self) -> AnswerStream:
        return self

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *raised: object) -> None:
        self.close()

    def __next__(self) -> str:
        if self._given == len(self._written):
            self._step()
        if self._given < len(self._written):
            self._given += 1
            return self._written[self._given - 1]
        if self._cancelled:  # its result is made when read
            raise StopIteration("cancelled")
        raise StopIteration(None if self._result is None else self._result["finish_reason"])

    def _step(self) -> None:
        """Decode the next piece into `_written`, or end the stream."""
        with self._reading:
            if self._ended:
                return
            stop = self._stop
            if stop is not None and stop.is_set():
                self._ended = self._cancelled = True
                self._close_pieces()
                raise stop_event_set()
            try:
                with stopped_by(stop):
                    piece = next(self._pieces)
            except StopIteration as end:
                returned = end.value
            except BaseException as exc:
                self._ended = True
                self._cancelled = _stopped(exc)
                if self._cancelled and stop is not None and stop.is_set() and not isinstance(exc, KeyboardInterrupt):
                    raise stop_event_set() from None
                raise
            else:
                self._written.append(piece)
                if self._ended:  # closed by another thread while this piece was decoded
                    self._close_pieces()
                return
            self._ended = True  # a result that fails (an answer that breaks its JSON schema) is raised once, not tied to the StopIteration
            self._result = self._make_result(self._completion(returned))

    def _completion(self, end: Any) -> Any:
        """The engine's `Completion`; an engine whose stream returns only its finish reason gets its
        tokens counted. A stream with no engine to count by passes its end on as it is."""
        if isinstance(end, Completion) or self._token_counter is None:
            return end
        engine, prompt = self._token_counter
        text = "".join(self._written)
        return Completion(text, engine.count_tokens(prompt), engine.count_tokens(text) if text else 0, end or "stop")

    def close(self) -> None:
        """Stop decoding; what was written stays in `text`. While another thread reads a piece, that
        thread stops the decoding once the piece has come."""
        if not self._ended:
            self._ended = self._cancelled = True
        if self._reading.acquire(blocking=False):
            try:
                self._close_pieces()
            finally:
                self._reading.release()

    def _close_pieces(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()

    def _read(self) -> dict[str, Any] | None:
        while not self._ended:
            self._step()
        return self._ended_result()

    def _ended_result(self) -> dict[str, Any] | None:
        if self._cancelled and self._result is None:
            self._result = self._cut_short()
        return self._result

    def _cut_short(self) -> dict[str, Any]:
        """What a stream closed before its end holds: that of the stream it relays, else the
        generator's result for the text written (the tokens counted by the engine), finish reason
        "cancelled"; one the generator cannot make (a partial JSON answer) leaves `result` None."""
        relayed = self._relaying() if self._relaying is not None else None
        if isinstance(relayed, AnswerStream) and relayed._ended:
            if relayed.result is None:
                self._result_is_whole = False
            return relayed.result or {"finish_reason": relayed.finish_reason or "cancelled", "usage": relayed.usage}
        self._result_is_whole = self._result_is_whole and self._token_counter is not None
        if self._token_counter is None:
            return {"finish_reason": "cancelled", "usage": None}
        completion = self._completion("cancelled")
        try:
            return self._make_result(completion)
        except AigcError:  # what was written is not a whole answer (a JSON schema's)
            self._result_is_whole = False
            return {"finish_reason": "cancelled", "usage": usage_of([completion])}

    @property
    def text(self) -> str:
        self._read()
        return "".join(self._written)

    def __repr__(self) -> str:  # reads nothing: what was written so far
        state = f"ended ({self._result['finish_reason']})" if self._ended and self._result is not None else "ended" if self._ended else "so far"
        return f"<AnswerStream {state}: {preview(''.join(self._written))}>"

    @property
    def finish_reason(self) -> str | None:
        result = self._read()
        return None if result is None else result["finish_reason"]

    @property
    def usage(self) -> dict[str, int] | None:
        """`prompt_tokens` and `completion_tokens`."""
        result = self._read()
        return None if result is None else result["usage"]

    @property
    def result(self) -> dict[str, Any] | None:
        result = self._read()
        return result if self._result_is_whole else None


def preview(text: str, width: int = 40) -> str:
    """`text` as a repr shows it: its length and its start, cut at `width` characters."""
    start = repr(text[:width]) + ("..." if len(text) > width else "")
    return f"{len(text)} characters {start}" if text else "no text"


def _trimmed(pieces: Iterator[str]) -> Iterator[str]:
    """`pieces` with the blank space they start with dropped and that which they end with held back
    (written before the next piece that is not blank); returns what `pieces` returns."""
    held, started = "", False
    try:
        while True:
            try:
                piece = next(pieces)
            except StopIteration as end:
                return end.value
            if not started:
                piece = piece.lstrip()
                started = bool(piece)
            body = (held + piece).rstrip()
            held = (held + piece)[len(body):]
            if body:
                yield body
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


def _stopped(exc: BaseException) -> bool:
    """Whether decoding ended on `exc` because it was told to stop (Ctrl-C; `stop_when`: an async
    stream closed, its task cancelled) rather than failed."""
    import asyncio

    return isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))


def _plain_end(end: Any) -> dict[str, Any]:
    """A plugin's stream's finish reason and usage, from what it returned."""
    if isinstance(end, Completion):
        return {"finish_reason": end.finish_reason, "usage": usage_of([end])}
    return {"finish_reason": end if isinstance(end, str) else None, "usage": None}
