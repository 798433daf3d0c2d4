"""Dynamic batching: one thread owns a `LocalEngine` and decodes concurrent requests together.

Requests become `Job`s (token-id rows that share sampling settings, plus a callback for events).
The scheduler thread takes the first waiting job, gathers the others that arrive within a short
window (up to `max_batch` rows), left-pads them into one batch and runs one `DecodeLoop` over it.
Each job keeps its own sampling: its own logits processors, its own seeded RNG and its own token
budget and stop strings, so a job decoded alone samples exactly what `LocalEngine.generate` would.
Text pieces go to each job's callback as they are decoded; a cancelled job (a client that went
away) has its rows finished with `DecodeLoop.finish` on the next step.

Events sent to `Job.emit`: `("piece", row, text)`, `("done", [Completion per row])`, `("error", exc)`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Iterator

from ..engine.base import Completion, EngineStats, Prompt
from ..engine.sampling import DecodeLoop, SamplingParams, TextAssembler, build_processors, make_generator, pick_tokens
from ..errors import AigcError, BadInputError

log = logging.getLogger("aigc.serve")


class QueueFullError(AigcError):
    """Too many requests are waiting; the client should retry shortly (HTTP 429)."""


class ShuttingDownError(AigcError):
    """The server is stopping and takes no new work (HTTP 503)."""


class Job:
    """Rows to decode with one set of sampling settings; `emit` receives the events."""

    def __init__(self, rows: list[list[int]], params: SamplingParams, emit: Callable[[tuple], Any]):
        if not rows or any(not r for r in rows):
            raise BadInputError("every prompt needs at least one token")
        self.rows = rows
        self.params = params
        self.emit = emit
        self.cancelled = False
        self.finished = False

    def cancel(self) -> None:
        """Stop this job's rows at the next decode step (or skip it if it has not started)."""
        self.cancelled = True

    def send(self, event: tuple) -> None:
        if event[0] in ("done", "error"):
            if self.finished:
                return
            self.finished = True
        try:
            self.emit(event)
        except Exception:  # the receiver is gone (event loop closed): nobody is listening any more
            self.cancelled = True


class _Call(Job):
    """A function to run on the scheduler thread with the engine to itself (scoring)."""

    def __init__(self, fn: Callable[[], Any], emit: Callable[[tuple], Any]):
        self.fn = fn
        self.rows = []
        self.emit = emit
        self.cancelled = False
        self.finished = False


class Scheduler:
    """Gathers jobs into batches and decodes them on one background thread."""

    def __init__(self, engine, max_batch: int = 32, window: float = 0.01, max_queue: int = 256):
        if max_batch < 1 or max_queue < 1 or window < 0:
            raise BadInputError("the batch size and queue size must be at least 1, the window at least 0")
        self.engine = engine
        self.max_batch = max_batch
        self.window = window
        self.jobs: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._carry: Job | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"aigc-batcher-{engine.name}", daemon=True)
        # Counters for /health, tests and benchmarks.
        self.batches = 0
        self.largest_batch = 0
        self.cancelled_rows = 0
        self.active_rows = 0

    # -- the client side -------------------------------------------------------------------------

    def start(self) -> "Scheduler":
        self._thread.start()
        return self

    def submit(self, job: Job) -> Job:
        """Queue a job; `QueueFullError` when the queue is full, `ShuttingDownError` when stopping."""
        if self._stopping.is_set():
            raise ShuttingDownError("the server is shutting down")
        if not isinstance(job, _Call):
            self._check_fits(job)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise QueueFullError(f"{self.jobs.maxsize} requests are already waiting; retry shortly") from None
        return job

    def _check_fits(self, job: Job) -> None:
        longest = max(len(r) for r in job.rows)
        limit = self.engine.context_length
        if longest + job.params.max_tokens > limit:
            raise BadInputError(
                f"the prompt takes {longest} tokens and {job.params.max_tokens} more were asked for, "
                f"but {self.engine.name} holds {limit}; shorten the prompt or lower max_tokens"
            )

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` on the scheduler thread, between batches; returns its result."""
        events: queue.SimpleQueue = queue.SimpleQueue()
        self.submit(_Call(lambda: fn(*args), events.put))
        kind, value = events.get()
        if kind == "error":
            raise value
        return value

    def stop(self, timeout: float = 10.0) -> None:
        """Take no new jobs, cancel the waiting ones, let the running batch end, join the thread."""
        self._stopping.set()
        while True:
            try:
                job = self._carry or self.jobs.get_nowait()
            except queue.Empty:
                break
            self._carry = None
            job.send(("error", ShuttingDownError("the server is shutting down")))
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def waiting(self) -> int:
        return self.jobs.qsize() + (1 if self._carry else 0)

    # -- the scheduler thread --------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping.is_set():
            batch = self._gather()
            if not batch:
                continue
            if isinstance(batch[0], _Call):
                call = batch[0]
                try:
                    call.send(("done", call.fn()))
                except Exception as exc:  # noqa: BLE001 - handed to the caller
                    call.send(("error", exc))
                continue
            try:
                self._decode(batch)
            except Exception as exc:  # noqa: BLE001 - every waiting client gets the error, the thread lives on
                if not isinstance(exc, AigcError):
                    log.exception("decoding a batch failed")
                for job in batch:
                    job.send(("error", exc))
            finally:
                self.active_rows = 0

    def _gather(self) -> list[Job]:
        """The next batch: the first waiting job plus the ones that arrive within the window."""
        try:
            first = self._carry or self.jobs.get(timeout=0.1)
        except queue.Empty:
            return []
        self._carry = None
        if first.cancelled:
            first.send(("error", ShuttingDownError("cancelled")))
            return []
        if isinstance(first, _Call):
            return [first]
        batch, size = [first], len(first.rows)
        deadline = time.monotonic() + self.window
        while size < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self.jobs.get(timeout=left) if left > 0 else self.jobs.get_nowait()
            except queue.Empty:
                break
            if job.cancelled:
                job.send(("error", ShuttingDownError("cancelled")))
                continue
            if isinstance(job, _Call) or size + len(job.rows) > self.max_batch:
                self._carry = job
                break
            batch.append(job)
            size += len(job.rows)
        return batch

    def _decode(self, batch: list[Job]) -> None:
        import torch

        engine = self.engine
        rows = [r for job in batch for r in job.rows]
        ids, mask = engine._batch(rows)
        width = ids.shape[1]
        spans: list[tuple[Job, int, int]] = []
        start = 0
        for job in batch:
            spans.append((job, start, start + len(job.rows)))
            start += len(job.rows)
        owner = [(job, r - s) for job, s, e in spans for r in range(s, e)]
        steps = max(job.params.max_tokens for job in batch)
        # The loop itself is greedy over the scores `_pick` returns, which put each row's own pick on top.
        loop = DecodeLoop(engine.model, ids, mask, SamplingParams(temperature=0, max_tokens=steps), engine.eos_ids, engine.pad_id)
        samplers = []
        for job, s, e in spans:
            own_width = max(len(r) for r in job.rows)
            samplers.append((job, s, e, width - own_width, build_processors(job.params), make_generator(job.params.seed, ids.device)))
        done = [False] * len(rows)

        def _pick(seen, scores):
            picks = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
            for job, s, e, pad, processors, gen in samplers:
                if all(done[s:e]):
                    continue
                sub = scores[s:e]
                if processors:
                    sub = processors(seen[s:e, pad:], sub)  # the job's rows as they would be alone
                picks[s:e] = pick_tokens(sub, job.params, gen)
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(1, picks[:, None], 0.0)

        loop.processors = _pick
        texts = [TextAssembler(engine.tokenizer, job.params.stop, engine.special_ids) for job, _ in owner]
        counts = [0] * len(rows)
        reasons = ["length"] * len(rows)
        eos = set(engine.eos_ids)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(rows))
        self.active_rows = len(rows)

        def close(row: int, reason: str) -> None:
            done[row] = True
            reasons[row] = reason
            loop.finish(row)
            job, index = owner[row]
            tail = texts[row].flush()
            if tail and not job.cancelled:
                job.send(("piece", index, tail))
            job_start = next(s for j, s, _ in spans if j is job)
            if all(done[job_start : job_start + len(job.rows)]):
                self._complete(job, job_start, texts, counts, reasons)

        started = time.perf_counter()
        first = None
        for step in loop:
            first = first if first is not None else time.perf_counter() - started
            for job, s, e in spans:
                if job.cancelled and not all(done[s:e]):
                    self.cancelled_rows += sum(1 for r in range(s, e) if not done[r])
                    for r in range(s, e):
                        if not done[r]:
                            close(r, "cancelled")
            for row, token in enumerate(step.tolist()):
                if done[row]:
                    continue
                job, index = owner[row]
                if token in eos:
                    close(row, "stop")
                    continue
                counts[row] += 1
                piece = texts[row].push(token)
                if piece:
                    job.send(("piece", index, piece))
                if texts[row].stopped:
                    close(row, "stop")
                elif counts[row] >= job.params.max_tokens:
                    close(row, "length")
            self.active_rows = done.count(False)
        for row in range(len(rows)):
            if not done[row]:
                close(row, "length")
        elapsed = time.perf_counter() - started
        engine.stats.record(int(mask.sum()), sum(counts), first or elapsed, elapsed)

    @staticmethod
    def _complete(job: Job, start: int, texts, counts, reasons) -> None:
        results = [
            Completion(texts[r].text, len(job.rows[r - start]), counts[r], reasons[r])
            for r in range(start, start + len(job.rows))
        ]
        job.send(("done", results))


class BatchedEngine:
    """The `Engine` interface over a `Scheduler`, for generators run by the server.

    Its calls block the calling thread (a worker thread, never the event loop) until the scheduler
    has decoded them, batched with whatever else is running.
    """

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler
        self.local = scheduler.engine
        self.name = self.local.name
        self.context_length = self.local.context_length
        self._lock = threading.Lock()  # the tokenizer is shared with the scheduler thread

    @property
    def stats(self) -> EngineStats:
        return self.local.stats

    def encode(self, prompt: Prompt) -> list[int]:
        with self._lock:
            return self.local.encode(prompt)

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self.encode(prompt))

    def _events(self, rows: list[list[int]], params: SamplingParams) -> tuple[Job, Iterator[tuple]]:
        events: queue.SimpleQueue = queue.SimpleQueue()
        job = self.scheduler.submit(Job(rows, params, events.put))

        def pump() -> Iterator[tuple]:
            while True:
                event = events.get()
                if event[0] == "error":
                    raise event[1]
                yield event
                if event[0] == "done":
                    return

        return job, pump()

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        encoded = [self.encode(p) for p in prompts]
        job, events = self._events([ids for ids in encoded for _ in range(params.n)], params)
        completions: list[Completion] = []
        try:
            for event in events:
                if event[0] == "done":
                    completions = event[1]
        finally:
            job.cancel()
        return [completions[i * params.n : (i + 1) * params.n] for i in range(len(prompts))]

    def stream(self, prompt: Prompt, params: SamplingParams) -> Iterator[str]:
        job, events = self._events([self.encode(prompt)], params.replace(n=1))
        try:
            for event in events:
                if event[0] == "piece":
                    yield event[2]
        finally:
            job.cancel()  # a caller that stops early frees its row at once

    def score(self, prompt: Prompt, continuations: list[str]) -> list[float]:
        return self.scheduler.call(self.local.score, prompt, continuations)
