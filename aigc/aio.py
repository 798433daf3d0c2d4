"""`agenerate` and `astream`: `aigc.generate` and `aigc.stream` for asyncio code, as llm's
`get_async_model()` gives its models. The model runs in a worker thread, so the event loop goes on
while it computes.

Calls on one local model are not serialised: concurrent calls decode
at once, each in its own thread, sharing the model's weights and the CPU's cores: each answer is the
one it gives alone (greedy or seeded), and together they end no sooner than one after another. To
batch many inputs into shared model steps, use `generator.many(...)` (`generator.imany(...)` for each result as it is ready) or `aigc serve`."""

from __future__ import annotations

from typing import Any, Callable, Generator, Iterator

from .answer_stream import AnswerStream
from .errors import BadInputError


async def agenerate(
    task: str,
    inputs: Any,
    model: str | None = None,
    sampling: dict[str, Any] | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    quantize: str | None = None,
    trust_remote_code: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """`aigc.generate` awaited: `(await agenerate("chat", "Hi"))["text"]`, run in a thread of the
    event loop's default executor (so as many run at once as it has threads), in a copy of the
    caller's context (as `asyncio.to_thread`). Its errors are raised here as they are. Cancelling the
    awaiting task stops a local model's decoding after the token being decoded, as closing an
    `astream` does, and a remote model's request (its connection is shut, so the server stops
    too), and frees the thread."""
    import asyncio
    import functools

    from . import generate

    settings = {"device": device, "dtype": dtype, "quantize": quantize, "trust_remote_code": trust_remote_code}
    from .engine.base import stoppable_context

    context, stop = stoppable_context()
    call = functools.partial(context.run, generate, task, inputs, model, sampling, **settings, **options)
    try:
        return await asyncio.get_running_loop().run_in_executor(None, call)
    except asyncio.CancelledError:
        stop.set()
        raise


def astream(
    task: str,
    inputs: Any,
    model: str | None = None,
    sampling: dict[str, Any] | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    quantize: str | None = None,
    trust_remote_code: bool = False,
    **options: Any,
) -> AsyncAnswerStream:
    """`aigc.stream` for `async for`: `async for piece in astream("chat", "Hi")`; then the stream
    holds `text`, `finish_reason`, `usage` and `result`. Nothing runs until the first piece is
    asked for: the model is loaded and the inputs checked in the stream's worker thread, so their
    errors are raised by the first `async for` step."""
    from . import stream

    settings = {"device": device, "dtype": dtype, "quantize": quantize, "trust_remote_code": trust_remote_code}
    return AsyncAnswerStream(lambda: stream(task, inputs, model, sampling, **settings, **options))


class _End:
    """What a stream read to its end holds, taken in its worker thread; one closed before it
    started (None) holds the finish reason "cancelled", as a sync stream closed so does."""

    def __init__(self, stream: AnswerStream | None):
        if stream is None:
            self.finish_reason, self.usage, self.result = "cancelled", None, None
        else:
            self.finish_reason, self.usage, self.result = stream.finish_reason, stream.usage, stream.result


class AsyncAnswerStream:
    """An `AnswerStream` read in a worker thread of its own: `async for` gets each piece as it is
    decoded (one piece is decoded per piece asked for, as the sync stream does); `await stream`
    reads the rest and gives the stream back. Once it has ended, `text`, `finish_reason`, `usage`
    and `result` hold what `AnswerStream`'s do (closed early, after `await stream.aclose()`: the
    finish reason "cancelled" and the tokens written); reading them before is a `BadInputError` (no
    property can wait for the model). An error raised while decoding (an `AigcError`) is raised by
    the `async for` step as it is, and ends the stream.

    `await stream.aclose()` (an `async with` block's end does it too) stops decoding after the token
    being decoded and frees the thread; so does cancelling the task that awaits a piece. A loop broken
    out of stops the stream where nothing else holds it (`async for piece in astream(...)`): no
    further piece is decoded, and the stream is closed and its thread freed as the last reference
    to it goes. A stream kept in a variable is paused, and goes on when read again, until closed."""

    def __init__(self, start: Callable[[], Iterator[str]]):
        """The pieces of the `AnswerStream` (or a plugin generator's stream of pieces) that `start()`
        returns, called in the worker thread when the first piece is asked for. The worker thread
        runs in a copy of the caller's context (its context variables), as `asyncio.to_thread` does."""
        from concurrent.futures import ThreadPoolExecutor  # asyncio and this, imported when used: `import aigc` (the CLI) goes without them

        from .engine.base import stoppable_context

        self._start = start
        self._context, self._stopping = stoppable_context()
        self._stream: AnswerStream | None = None  # touched only in the worker thread
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aigc-astream")  # its thread starts with the first piece
        self._written: list[str] = []
        self._end: _End | None = None
        self._ended = False
        self._closing: Any = None  # the future of the worker thread's closing of the sync stream, once asked for

    def __aiter__(self) -> AsyncAnswerStream:
        return self

    def __repr__(self) -> str:
        from .answer_stream import preview

        return f"<AsyncAnswerStream {'ended' if self._ended else 'so far'}: {preview(''.join(self._written))}>"

    async def __anext__(self) -> str:
        import asyncio

        if self._ended:
            raise StopAsyncIteration
        try:
            piece = await asyncio.get_running_loop().run_in_executor(self._worker, self._context.run, self._next)
        except asyncio.CancelledError:
            self.close()
            raise
        except BaseException:
            self._finish()
            raise
        if isinstance(piece, _End):
            self._end = piece
            self._finish()
            raise StopAsyncIteration
        self._written.append(piece)
        return piece

    def _next(self) -> str | _End:
        """The next piece, or what the stream holds at its end (in the worker thread)."""
        import asyncio

        if self._stream is None:
            self._stream = AnswerStream.wrapping(self._start())
        try:
            return next(self._stream)
        except StopIteration:
            return _End(self._stream)
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                raise
            return _End(self._stream)  # closed while this piece was decoded: the stream ends there

    def _close_stream(self) -> None:
        """Close the sync stream, in the worker thread, after the piece being decoded there, and take
        what it holds then."""
        if self._stream is not None:
            self._stream.close()
        self._end = self._end or _End(self._stream)

    def _finish(self) -> None:
        self._ended = True
        self._worker.shutdown(wait=False)

    def close(self) -> None:
        """Stop decoding after the token being decoded (the worker thread closes the sync stream
        then) without waiting for it; what was written stays in `text`."""
        self._stop()

    async def aclose(self) -> None:
        """Stop decoding, as `close()`, and wait until the worker thread has stopped it."""
        import asyncio

        closing = self._stop()
        if closing is not None:
            await asyncio.wrap_future(closing)

    def _stop(self) -> Any:
        """Have the worker thread close the sync stream after its piece being decoded, unless the
        stream has ended; the future of that closing (one asked for before, by `close()` or a
        cancelled task, too), or None."""
        if not self._ended:
            self._ended = True
            self._stopping.set()  # a piece being decoded stops after its token
            self._closing = self._worker.submit(self._close_stream)
        self._worker.shutdown(wait=False)
        return self._closing

    async def __aenter__(self) -> AsyncAnswerStream:
        return self

    async def __aexit__(self, *raised: object) -> None:
        await self.aclose()

    def __await__(self) -> Generator[Any, None, AsyncAnswerStream]:
        return self._read().__await__()

    async def _read(self) -> AsyncAnswerStream:
        async for _ in self:
            pass
        return self

    def _held(self, name: str) -> _End | None:
        if not self._ended:
            raise BadInputError(f"the stream is still being written: read it to its end (`async for piece in stream`, or `await stream`) or close it (`await stream.aclose()`) before reading its {name}")
        return self._end

    @property
    def text(self) -> str:
        """The pieces read, joined."""
        self._held("text")
        return "".join(self._written)

    @property
    def finish_reason(self) -> str | None:
        end = self._held("finish_reason")
        return None if end is None else end.finish_reason

    @property
    def usage(self) -> dict[str, int] | None:
        """`prompt_tokens` and `completion_tokens`."""
        end = self._held("usage")
        return None if end is None else end.usage

    @property
    def result(self) -> dict[str, Any] | None:
        end = self._held("result")
        return None if end is None else end.result
