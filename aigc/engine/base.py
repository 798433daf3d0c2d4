"""The small interface every engine implements (local transformers, or a remote OpenAI-compatible server).

Generators talk to an `Engine` only: generate, stream, score and embed, plus token counting and
the context window, so a remote backend can stand in for the local one.
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterator, Protocol, Union

from ..errors import BadInputError, ContextLengthError, option
from ..textio import check_utf8
from .sampling import SamplingParams  # at run time, so typing.get_type_hints resolves the annotations (no torch: it imports it lazily)


class StopSignal(threading.Event):
    """The event that, once set, tells the engine calls of a worker's context (`stop_when`) to stop:
    a local engine looks at it between tokens (`check_stopped`); a remote one has its connections in
    flight shut down as it is set (`on_stop`), so a request waiting on the server ends at once."""

    def __init__(self) -> None:
        super().__init__()
        self._held = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def set(self) -> None:
        """Set it, then run the callbacks `on_stop` holds (in this thread; each must not raise)."""
        with self._held:
            super().set()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    @contextlib.contextmanager
    def calling(self, callback: Callable[[], None]) -> Iterator[None]:
        """Have `set()` run `callback` while in the block; at once where it is set already."""
        with self._held:
            self._callbacks.append(callback)
            stopped = self.is_set()
        try:
            if stopped:
                callback()
            yield
        finally:
            with self._held:
                self._callbacks.remove(callback)


_stop: ContextVar[Any] = ContextVar("aigc_stop", default=None)  # a StopSignal, or anything with is_set() (a caller's `stop`)
POLL = 0.05  # seconds between looks at a `stop` that is no StopSignal (a threading.Event), where something must react to it


class _Either:
    """Set when any of `events` is: a caller's `stop` inside calls an outer stopper holds (`aigc.aio`, a batch's worker)."""

    def __init__(self, *events: Any) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(event.is_set() for event in self.events)


def stop_when(event: Any) -> None:
    """Have the calls made in this context (a worker thread's copy, as `aigc.aio` makes) stop
    decoding after the token being decoded once `event` is set (a `StopSignal`, or anything with
    `is_set()`)."""
    _stop.set(event)


def stoppable_context(event: StopSignal | None = None) -> tuple[contextvars.Context, StopSignal]:
    """A copy of the caller's context (its context variables) for a worker's calls, and the event
    (`event`, or a new one) that, once set, has them stop decoding after the token being decoded."""
    context, event = contextvars.copy_context(), event or StopSignal()
    context.run(stop_when, event)
    return context, event


def also_stopped_by(stop: Any) -> Any:
    """What this context's calls are to stop on once `stop` (anything with `is_set()`) is also
    looked at: `stop`, or it and whatever already stops them (`stop_when`)."""
    outer = _stop.get()
    return stop if outer is None or outer is stop else _Either(outer, stop)


@contextlib.contextmanager
def stopped_by(stop: Any) -> Iterator[None]:
    """While in the block, this context's calls also stop once `stop` (anything with `is_set()`,
    None: nothing more) is set, at their next step, raising `asyncio.CancelledError` (`check_stopped`)."""
    if stop is None:
        yield
        return
    token = _stop.set(also_stopped_by(stop))
    try:
        yield
    finally:
        _stop.reset(token)


def stopped() -> bool:
    """Whether this context's calls were told to stop (`stop_when`)."""
    event = _stop.get()
    return event is not None and event.is_set()


def check_stopped() -> None:
    """Raise `asyncio.CancelledError` where this context's calls were told to stop (`stop_when`); an
    engine asks between tokens. A BaseException, as a cancelled task's: no `except Exception` of a
    generator takes it for a failed step."""
    if stopped():
        import asyncio

        raise asyncio.CancelledError("the task awaiting this call was cancelled")


@contextlib.contextmanager
def calling(event: Any, callback: Callable[[], None]) -> Iterator[None]:
    """Run `callback` once, in the thread that sets it, if `event` (a `StopSignal`, or anything with
    `is_set()`, which a thread of its own looks at every `POLL` seconds) is set while in the block;
    at once where it is set already."""
    ran = threading.Lock()

    def once() -> None:
        if ran.acquire(blocking=False):
            callback()

    with contextlib.ExitStack() as stack:
        for each in event.events if isinstance(event, _Either) else (event,):
            if isinstance(each, StopSignal):
                stack.enter_context(each.calling(once))
            else:
                stack.enter_context(_polled(each, once))
        yield


@contextlib.contextmanager
def _polled(event: Any, callback: Callable[[], None]) -> Iterator[None]:
    if event.is_set():
        callback()
        yield
        return
    left = threading.Event()

    def watch() -> None:
        while not left.wait(POLL):
            if event.is_set():
                callback()
                return

    watcher = threading.Thread(target=watch, daemon=True, name="aigc stop watcher")
    watcher.start()
    try:
        yield
    finally:
        left.set()
        watcher.join()  # no thread left behind the block


@contextlib.contextmanager
def on_stop(callback: Callable[[], None]) -> Iterator[None]:
    """Run `callback` (in the thread that stops them) if this context's calls are told to stop
    (`stop_when`) while in the block, or at once where they were before: how a remote engine shuts
    the connections of its requests in flight. Nothing where no one can stop them."""
    event = _stop.get()
    with calling(event, callback) if event is not None else contextlib.nullcontext():
        yield


def pause(seconds: float) -> None:
    """`time.sleep(seconds)`, cut short where this context's calls are told to stop, which then
    raises `asyncio.CancelledError` (`check_stopped`)."""
    event = _stop.get()
    if event is None:
        time.sleep(seconds)
    elif isinstance(event, threading.Event):
        event.wait(seconds)
    else:
        end = time.monotonic() + seconds
        while not event.is_set() and (left := end - time.monotonic()) > 0:
            time.sleep(min(POLL, left))
    check_stopped()


Tick = Callable[[int, int, int, int], None]  # (steps, max_tokens, rows finished, rows)
_ticks: ContextVar[Tick | None] = ContextVar("aigc_ticks", default=None)


@contextlib.contextmanager
def ticking(tick: Tick | None) -> Iterator[None]:
    """While in the block, a local engine's decoding calls `tick(steps, max_tokens, finished,
    rows)` after each decoding step: the steps decoded so far in this call (of at most
    `max_tokens`), and its rows (answers) that have ended of all of them. None: nothing is called."""
    token = _ticks.set(tick)
    try:
        yield
    finally:
        _ticks.reset(token)


def ticks() -> Tick | None:
    """What `ticking` set for this context's decoding, or None."""
    return _ticks.get()


def check_fits(engine, prompt_tokens: int, max_tokens: int, fix: str = f"shorten the input or lower {option('max_tokens')}", alone_fix: str = "shorten it") -> None:
    """A `ContextLengthError` when the prompt and the tokens asked for do not fit `engine`'s context
    window; `fix` says what to do, `alone_fix` when the prompt alone takes it all (fewer tokens would not help)."""
    if prompt_tokens >= engine.context_length:
        error = ContextLengthError(f"the prompt takes {prompt_tokens} tokens, but {engine.name} holds {engine.context_length} with the answer; {alone_fix}")
    elif prompt_tokens + max_tokens > engine.context_length:
        error = ContextLengthError(
            f"the prompt takes {prompt_tokens} tokens and {max_tokens} more were asked for, but "
            f"{engine.name} holds {engine.context_length}; {fix}"
        )
    else:
        return
    error.prompt_tokens, error.context_length = prompt_tokens, engine.context_length
    raise error


Message = dict  # {"role": "system"|"user"|"assistant", "content": str}
Prompt = Union[str, list[Message]]  # raw text, or chat messages the engine formats itself


def check_prompts(prompts: Any, params: Any = None, one: bool = False) -> None:
    """A `BadInputError` for what an engine call cannot take: `prompts` (one prompt with `one`) must
    be non-empty text or chat messages, `params` a `SamplingParams`."""
    from .sampling import SamplingParams

    if params is not None and not isinstance(params, SamplingParams):
        raise BadInputError(f"params must be an aigc.SamplingParams, got {type(params).__name__} (SamplingParams(**settings) makes one)")
    if not one and (isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not prompts):
        raise BadInputError(f"prompts must be a non-empty list of prompts (text, or chat messages), got {_kind(prompts)}")
    for prompt in [prompts] if one else prompts:
        if isinstance(prompt, str):
            if not prompt:
                raise BadInputError("a prompt is empty")
        elif not (isinstance(prompt, list) and prompt and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt)):
            raise BadInputError(f"a prompt must be text or chat messages ([{{'role': 'user', 'content': TEXT}}, ...]), got {_kind(prompt)}")


def check_texts(texts: Any) -> None:
    """A `BadInputError` unless `texts` is a non-empty list of non-empty strings (what `embed` takes)."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
        raise BadInputError(f"texts must be a non-empty list of strings, got {_kind(texts)}")
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise BadInputError(f"a text to embed must be non-empty text, got {_kind(text)}")
        check_utf8(text, "text to embed")


def check_continuations(continuations: Any) -> None:
    """A `BadInputError` unless `continuations` is a non-empty list of non-empty texts (one text
    would be scored a character at a time)."""
    if isinstance(continuations, str):
        raise BadInputError(f"continuations must be a list of texts, got the text {_kind(continuations)}; to score one, give [{continuations!r}]")
    if not isinstance(continuations, (list, tuple)) or not all(isinstance(c, str) for c in continuations):
        raise BadInputError(f"continuations must be a list of texts, got {_kind(continuations)}")
    if not continuations or any(not c for c in continuations):
        raise BadInputError("every continuation to score needs at least one token")


def _kind(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else f"{type(value).__name__} {shown[:50]}..."


def prompt_tokens(rows: list[list[int]], n: int) -> int:
    """The prompt tokens of a call whose `rows` hold each prompt's ids `n` times over (a row an
    answer): each prompt once, as OpenAI's usage counts a request's prompt however many answers."""
    return sum(len(row) for row in rows[::n])


@dataclass
class Completion:
    """One generated text for one prompt."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or stop string) or "length"


def usage_of(completions: list[Completion]) -> dict[str, int]:
    """A result's `usage` for the completions of one prompt: its tokens once, theirs summed."""
    return {"prompt_tokens": completions[0].prompt_tokens, "completion_tokens": sum(c.completion_tokens for c in completions)}


@dataclass
class Scored:
    """One prompt's continuation log-likelihoods, and its hidden-state embedding when asked for."""

    logprobs: list[float]
    embedding: list[float] | None = None


class WallTime:
    """Seconds during which calls ran, counting calls that overlapped (a remote engine's requests
    from many threads) once: the length of the union of their spans."""

    KEPT = 256  # spans kept (a server records calls for ever); older time is counted up to `horizon`

    def __init__(self) -> None:
        self.starts: list[float] = []  # disjoint spans, in order
        self.ends: list[float] = []
        self.seconds = 0.0
        self.horizon = float("-inf")  # the end of the spans let go: time before it is counted already

    def add(self, seconds: float, end: float) -> None:
        """A call of `seconds` that ended at `end` (`time.perf_counter()`)."""
        start = max(end - seconds, self.horizon)
        if start >= end:
            return
        first, last = bisect.bisect_left(self.ends, start), bisect.bisect_right(self.starts, end)  # the spans it touches
        if first < last:
            start, end = min(start, self.starts[first]), max(end, self.ends[last - 1])
        self.seconds += (end - start) - sum(e - s for s, e in zip(self.starts[first:last], self.ends[first:last]))
        self.starts[first:last], self.ends[first:last] = [start], [end]
        if len(self.starts) > self.KEPT:
            drop = len(self.starts) - self.KEPT // 2
            self.horizon = self.ends[drop - 1]
            del self.starts[:drop], self.ends[:drop]


@dataclass
class EngineStats:
    """Counters an engine accumulates across calls; the CLI's `--stats` prints them. Its times are
    wall times, where calls that ran at once (concurrent requests to a remote model) count once,
    but `decode_seconds` and `prefill_seconds`, which sum each call's."""

    load_seconds: float = 0.0
    pull_seconds: float = 0.0  # downloading or converting the model first (once), apart from loading it
    prompt_tokens: int = 0  # a call's prompts once each, however many answers (n) each asked for
    completion_tokens: int = 0
    first_token_seconds: float | None = None
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    calls: int = field(default=0)
    timed_calls: int = 0  # calls whose first token's time is known
    scored_prompts: int = 0  # prompts scored (classify): their tokens count as prompt tokens
    scoring_seconds: float = 0.0  # wall time
    embedded_texts: int = 0  # texts embedded: their tokens count as prompt tokens
    embedding_seconds: float = 0.0  # wall time
    _generating: WallTime = field(default_factory=WallTime, repr=False, compare=False)
    _scoring: WallTime = field(default_factory=WallTime, repr=False, compare=False)
    _embedding: WallTime = field(default_factory=WallTime, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)  # calls end in many threads

    def record(self, prompt_tokens: int, completion_tokens: int, first_token: float | None, decode: float, end: float | None = None) -> None:
        """One call that ended at `end` (`time.perf_counter()`, by default now): `first_token` is
        seconds to the first token (None when unknown: a remote answer that came whole), `decode`
        seconds in all."""
        end = time.perf_counter() if end is None else end
        with self._lock:
            self.calls += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            if first_token is not None:
                self.timed_calls += 1
                if self.first_token_seconds is None:
                    self.first_token_seconds = first_token
                self.prefill_seconds += first_token
            self.decode_seconds += decode
            self._generating.add(decode, end)

    def record_scoring(self, prompts: int, prompt_tokens: int, seconds: float, end: float | None = None) -> None:
        """One `score_many` call."""
        with self._lock:
            self.scored_prompts += prompts
            self.scoring_seconds = self._timed(self._scoring, prompt_tokens, seconds, end)

    def record_embedding(self, texts: int, tokens: int, seconds: float, end: float | None = None) -> None:
        """One `embed` call."""
        with self._lock:
            self.embedded_texts += texts
            self.embedding_seconds = self._timed(self._embedding, tokens, seconds, end)

    def _timed(self, clock: WallTime, prompt_tokens: int, seconds: float, end: float | None) -> float:
        """Count a call's prompt tokens and its time on `clock`; returns the clock's wall time."""
        self.prompt_tokens += prompt_tokens
        clock.add(seconds, time.perf_counter() if end is None else end)
        return clock.seconds

    @property
    def generation_seconds(self) -> float:
        """Wall time spent generating: `decode_seconds` (each call's time, summed) less the overlaps."""
        return self._generating.seconds

    @property
    def overlapped(self) -> bool:
        """Whether some calls ran at once, so their summed times exceed the wall time."""
        return self.decode_seconds > self.generation_seconds * 1.001

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second after the first token (prompt processing excluded); for calls
        without a first-token time, over their whole time; for calls that ran at once, all their
        tokens over the wall time (their throughput)."""
        if self.overlapped:
            return self.completion_tokens / self.generation_seconds
        after_first = self.decode_seconds - self.prefill_seconds
        return max(0, self.completion_tokens - self.timed_calls) / after_first if after_first > 0 else 0.0


def relay(stream: Iterator[str], seen: list[str]) -> Generator[str, None, Any]:
    """`stream`'s pieces, each also added to `seen`; returns what `stream` returns (an engine's
    `Completion`, a generator's finish reason). Closing it closes `stream`."""
    stream = iter(stream)
    try:
        while True:
            try:
                piece = next(stream)
            except StopIteration as end:
                return end.value
            seen.append(piece)
            yield piece
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


class Engine(Protocol):
    """What generators may use. A prompt is raw text or chat messages: a string is text to continue
    as it is (a completion: no chat template, so `generate(["Hi"], ...)` goes on from "Hi"), a list
    of `{"role": ..., "content": ...}` messages is a chat, which the engine formats with the model's
    chat template and answers as the assistant (what `aigc.generate("chat", "Hi")` sends)."""

    name: str
    context_length: int
    stats: EngineStats
    can_embed: bool  # whether `score_many(..., embed=True)` works (a remote API has no hidden states)
    can_score_chat: bool  # whether `score` takes chat messages (a remote API scores text prompts only)

    def count_tokens(self, prompt: Prompt) -> int:
        """Tokens the prompt takes, chat formatting included."""

    def generate(self, prompts: list[Prompt], params: "SamplingParams") -> list[list[Completion]]:
        """`params.n` completions for each prompt, batched together."""

    def stream(self, prompt: Prompt, params: "SamplingParams") -> Generator[str, None, Completion]:
        """Text pieces of one completion as they are decoded; a generator returns the whole
        `Completion` (its text, token counts and finish reason), which an `AnswerStream` makes its result from."""

    def score(self, prompt: Prompt, continuations: list[str]) -> list[float]:
        """Log-likelihood of each continuation after the prompt."""

    def score_many(self, prompts: list[Prompt], continuations: list[str], embed: bool = False) -> list[Scored]:
        """`score` for many prompts at once; with `embed`, each prompt's embedding too (engines
        that cannot embed raise `BadInputError` saying so)."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One unit-length vector per text, for cosine similarity (a remote server's `/embeddings`)."""
