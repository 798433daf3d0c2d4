"""Continuous batching: one thread owns a `LocalEngine` and decodes concurrent requests together.

Requests become `Job`s (token-id rows that share sampling settings, plus a callback for events).
When the server is idle, the scheduler thread takes the first waiting job and the others that
arrive within a short window, prefills them together and starts decoding. While that batch
decodes, jobs that arrive are admitted at the next step: their prompts are prefilled on their own
(one forward pass), their KV cache is left-padded to the running batch's width and joined to it,
and from then on they decode in the same forward pass as everyone else (vLLM's and TGI's
continuous batching, without paging: the cache is an ordinary transformers `DynamicCache`).
A prompt longer than `chunk` (`PREFILL_CHUNK`, 512) tokens is prefilled a chunk per step instead,
with one decode step of the running batch between chunks (vLLM's chunked prefill, one long prompt
at a time; shorter ones are still admitted beside it), so running streams go on while it is read,
and a job cancelled meanwhile stops after the chunk under way. The chunks are `LocalEngine`'s
(columns cut at multiples of `PREFILL_CHUNK`), so a long prompt alone gets the numbers it gets there.
Rows that finish leave the batch at once, and cache columns no row needs any more are dropped.
A model whose cache is not plain `DynamicLayer`s (sliding-window or linear-attention layers)
cannot be joined this way: there new jobs wait until the running batch is done.

Each job keeps its own sampling: its own logits processors, its own seeded RNG (drawn over all
its rows every step, finished ones included, as `DecodeLoop` does), its own token budget and stop
strings, so a job decoded alone samples exactly what `LocalEngine.generate` would. Text pieces go
to each job's callback as they are decoded; a cancelled job (a client that went away) has its
rows closed at the next step; a job whose logits processors fail (its JSON schema's decoder) ends
with that error while the other rows go on. `drain(grace)` takes no new work but goes on serving
the jobs already queued or running for `grace` seconds; then it ends the rows still running, and
fails the jobs not started, with a `ShuttingDownError`.

Events sent to `Job.emit`: `("piece", row, text, logprobs)`, `("end", row, finish_reason)` once a
row's last piece is sent (rows of one job end at different steps), `("done", [Completion per row],
logprobs per row)` and `("error", exc)`; `logprobs` is None unless the job asked for them, else a
list of `TokenLogprob` (aigc/serve/logprobs.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Generator, Iterator

from ..engine.base import Completion, EngineStats, Prompt, Scored, check_fits, check_prompts, check_texts, prompt_tokens
from ..engine.sampling import PREFILL_CHUNK, SEED_BOUND, SamplingParams, StopStrings, TextAssembler, build_processors, cache_keyword, derived_seed, make_generator, pick_tokens
from ..engine.scoring import length_batches
from ..errors import AigcError, BadInputError, option
from .logprobs import TokenTexts, prompt_offsets

log = logging.getLogger("aigc.serve")
SCORE_CHUNK = 512  # prompt tokens (padding included) per scheduler call of `BatchedEngine.score_many` and `embed`: decoding rows wait one such call at most


class QueueFullError(AigcError):
    """Too many requests are waiting; the client should retry shortly (HTTP 429)."""


class ShuttingDownError(AigcError):
    """The server is stopping and takes no new work (HTTP 503)."""


class RequestCancelled(AigcError):
    """The client that asked for this work went away."""


class Job:
    """Rows to decode with one set of sampling settings; `emit` receives the events.

    `logprobs=K` records each generated token's log-probability and its K likeliest alternatives.
    A row also ends at any token of `stop_ids` (as at the model's end-of-sequence token, left out of
    the text); `keep_stops` keeps the stop string that ended a row in its text.
    """

    def __init__(
        self, rows: list[list[int]], params: SamplingParams, emit: Callable[[tuple], Any], logprobs: int | None = None,
        stop_ids: frozenset[int] = frozenset(), keep_stops: bool = False,
    ):
        if not rows or any(not r for r in rows):
            raise BadInputError("every prompt needs at least one token")
        self._begin(rows, params, emit, logprobs)
        self.stop_ids, self.keep_stops = stop_ids, keep_stops

    def _begin(self, rows: list[list[int]], params: SamplingParams | None, emit: Callable[[tuple], Any], logprobs: int | None) -> None:
        """Set what every job holds (a `_ThreadCall` too, which has no rows to check)."""
        self.rows = rows
        self.params = params
        self.emit = emit
        self.logprobs = logprobs
        self.cancelled = False
        self.finished = False
        self.ongoing = False  # part of a request taken before a drain began: taken until the cut

    @property
    def generated(self) -> int:
        """Tokens its rows have decoded so far (none before it starts)."""
        return sum(slot.count for slot in getattr(self, "slots", ()))

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


class _ThreadCall(Job):
    """A function to run on the scheduler thread with the engine to itself (scoring)."""

    def __init__(self, fn: Callable[[], Any], emit: Callable[[tuple], Any]):
        self.fn = fn
        self._begin([], None, emit, None)


class _Slot:
    """One row of a job while it decodes."""

    __slots__ = ("job", "index", "text", "count", "done", "reason", "pending", "entries", "scored")

    def __init__(self, job: Job, index: int, text: TextAssembler):
        self.job, self.index, self.text = job, index, text
        self.count = 0
        self.done = False
        self.reason = "length"
        self.pending: list = []  # log-probabilities of tokens whose text is not out yet
        self.entries: list = []
        self.scored = None  # this step's (logprob, alternatives) of the picked token


class _Filling:
    """A job whose prompts are fed `chunk` columns a step: `at` columns are in `cache` so far."""

    def __init__(self, job: Job, ids, mask, cache):
        self.job, self.ids, self.mask, self.cache = job, ids, mask, cache
        self.positions = (mask.cumsum(-1) - 1).clamp(min=0)
        self.at = 0


class _Batch:
    """The rows decoding together: row i of every tensor belongs to `slots[i]`.

    `cache` holds exactly the tokens `mask` covers (left-padded); `next_ids` are the picked tokens
    not fed yet and `positions` their position ids.
    """

    def __init__(self, slots: list[_Slot], cache, mask, positions, next_ids=None):
        self.slots, self.cache, self.mask, self.positions, self.next_ids = slots, cache, mask, positions, next_ids

    def select(self, keep: list[int]) -> None:
        import torch

        index = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.positions, self.next_ids = self.mask[index], self.positions[index], self.next_ids[index]
        self.slots = [self.slots[i] for i in keep]


def _joinable(cache) -> bool:
    """Whether this cache's tensors can be padded and concatenated (plain full-attention layers)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and not getattr(cache, "offloading", False) and all(
        type(layer) is DynamicLayer and layer.is_initialized and layer.keys.dim() == 4 for layer in layers
    )


def _widen(batch: _Batch, width: int) -> None:
    """Left-pad the batch's cache and mask to `width` columns."""
    import torch

    extra = width - batch.mask.shape[1]
    if extra <= 0:
        return
    batch.mask = torch.cat([batch.mask.new_zeros((batch.mask.shape[0], extra)), batch.mask], dim=1)
    for layer in batch.cache.layers:
        for name in ("keys", "values"):
            tensor = getattr(layer, name)
            pad = tensor.new_zeros((tensor.shape[0], tensor.shape[1], extra, tensor.shape[3]))
            setattr(layer, name, torch.cat([pad, tensor], dim=2))


def _answer_logprobs(slot: _Slot, entries: list) -> list:
    """The log-probabilities of the tokens whose text is in the answer: none for a stop string that
    was cut off (a token that only begins before it is kept)."""
    if not slot.text.stopped:
        return entries
    end = len(slot.text.text)
    return [entry for entry in entries if entry.offset < end]


def _trim(batch: _Batch) -> None:
    """Drop the leading cache columns that no row attends to any more."""
    used = batch.mask.any(dim=0)
    first = int(used.long().argmax()) if bool(used.any()) else 0
    if first == 0:
        return
    batch.mask = batch.mask[:, first:]
    for layer in batch.cache.layers:
        layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]


class Scheduler:
    """Admits jobs into one continuously running batch and decodes it on a background thread."""

    def __init__(self, engine, max_batch: int = 32, window: float = 0.01, max_queue: int = 256, chunk: int = PREFILL_CHUNK):
        if max_batch < 1 or max_queue < 1 or window < 0 or chunk < 1:
            raise BadInputError("the batch size, queue size and prefill chunk must be at least 1, the window at least 0")
        self.engine = engine
        self.max_batch = max_batch
        self.window = window
        self.chunk = chunk  # prompt columns per prefill step of a longer prompt (`LocalEngine`'s pieces, so the numbers agree)
        self.jobs: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._carry: Job | None = None  # taken from the queue, waiting for room (scheduler thread only)
        self._filling: _Filling | None = None  # the job whose long prompt is being prefilled (scheduler thread only)
        self._stopping = threading.Event()
        self._cut_at: float | None = None  # set by drain(): when running rows are cut off
        self._thread = threading.Thread(target=self._serve, name=f"aigc-batcher-{engine.name}", daemon=True)
        self._eos = set(engine.eos_ids)
        self.token_texts = TokenTexts(engine.tokenizer)  # token id -> text and bytes, for log-probabilities
        self._cache_keyword = cache_keyword(engine.model)
        self.joinable: bool | None = None  # known after the first prefill
        # Counters for /health, tests and benchmarks.
        self.batches = 0  # prefills (groups of jobs admitted together)
        self.joined = 0  # jobs admitted while other rows were decoding
        self.largest_batch = 0
        self.cancelled_rows = 0
        self.active_rows = 0
        self.active_jobs = 0  # jobs with rows in the running batch (`/metrics`' requests running)

    # -- the client side -------------------------------------------------------------------------

    def start(self) -> "Scheduler":
        self._thread.start()
        return self

    @property
    def closing(self) -> bool:
        return self._stopping.is_set() or self._cut_at is not None

    def submit(self, job: Job) -> Job:
        """Queue a job; `QueueFullError` when the queue is full, `ShuttingDownError` when stopping
        (as the job's error event when the stop began while it was being queued). An `ongoing` job
        (the next call of a request taken before a drain began) is still taken until the cut."""
        if self.closing and (not job.ongoing or self._stopping.is_set() or time.monotonic() >= self._cut_at):
            raise ShuttingDownError("the server is shutting down")
        if not isinstance(job, _ThreadCall):
            self._check_fits(job)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise QueueFullError(f"the queue of waiting requests is full ({self.jobs.maxsize}, --max-queue); retry shortly") from None
        if self._stopping.is_set():  # stop() came after the check: its thread may have ended without seeing this job
            self._fail_queue()
        return job

    def _check_fits(self, job: Job) -> None:
        check_fits(self.engine, max(len(r) for r in job.rows), job.params.max_tokens, f"shorten the prompt or lower {option('max_tokens')}")

    def call(self, fn: Callable[..., Any], *args: Any, ongoing: bool = False) -> Any:
        """Run `fn(*args)` on the scheduler thread, between decode steps; returns its result (`ongoing`:
        a call of a request taken before a drain began, as `Job.ongoing`)."""
        events: queue.SimpleQueue = queue.SimpleQueue()
        call = _ThreadCall(lambda: fn(*args), events.put)
        call.ongoing = ongoing
        self.submit(call)
        kind, value = events.get()
        if kind == "error":
            raise value
        return value

    def drain(self, grace: float) -> None:
        """Take no new jobs; the ones already taken, running or waiting, go on being served for
        `grace` seconds (as vLLM's `--shutdown-timeout` and uvicorn's graceful shutdown let in-flight
        requests finish). Then rows still decoding end with a `ShuttingDownError` (a stream gets it
        as its last event) and jobs not started get it at once. Draining again can only bring the
        cut nearer (a second Ctrl-C: now)."""
        cut = time.monotonic() + max(0.0, grace)
        if self._cut_at is None or cut < self._cut_at:  # safe in a signal handler: one assignment; the scheduler thread does the rest
            self._cut_at = cut

    @property
    def running(self) -> bool:
        """Whether the decode thread is still running."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Take no new jobs, cancel the waiting ones, let the running rows end, join the thread."""
        self._stopping.set()
        self._fail_queue()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _fail_queue(self) -> None:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            job.send(("error", ShuttingDownError("the server is shutting down")))

    @property
    def waiting(self) -> int:
        """Jobs not decoding yet: queued, or having their prompt prefilled."""
        return self.jobs.qsize() + (1 if self._carry else 0) + (1 if self._filling else 0)

    # -- the scheduler thread --------------------------------------------------------------------

    def _serve(self) -> None:
        batch: _Batch | None = None
        while True:
            cut = self._cut_at is not None and time.monotonic() >= self._cut_at
            if self._stopping.is_set() or cut:  # a drain before its cut goes on serving what it took
                for job in (self._carry, self._filling and self._filling.job):
                    if job is not None:
                        job.send(("error", ShuttingDownError("the server is shutting down")))
                self._carry = self._filling = None
                self._fail_queue()
                if batch is not None and cut:
                    self._abort(batch.slots, ShuttingDownError("the server is shutting down; this answer was cut off"))
                    batch = None
                if batch is None:
                    if self._stopping.is_set():
                        return
                    self._stopping.wait(0.05)
                    continue
            else:
                try:
                    batch = self._admit(batch)
                except Exception as exc:  # noqa: BLE001 - a bug must not stop the thread: fail the running rows
                    log.exception("admitting requests failed")
                    if batch is not None:
                        self._abort(batch.slots, exc)
                    batch = None
                if self._filling is not None:
                    batch = self._fill(batch)
            if batch is not None:
                batch = self._advance(batch)
            self.active_rows = len(batch.slots) if batch else 0
            self.active_jobs = len({id(slot.job) for slot in batch.slots}) if batch else 0

    def _next(self, timeout: float | None) -> Job | None:
        """The carried-over job, else the next waiting one (waiting up to `timeout`, None: don't wait)."""
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        try:
            return self.jobs.get(timeout=timeout) if timeout and timeout > 0 else self.jobs.get_nowait()
        except queue.Empty:
            return None

    def _admit(self, batch: _Batch | None) -> _Batch | None:
        """Take waiting work: run calls, and prefill and join the jobs there is room for.

        Idle, it waits for a first job and then `window` seconds for more; while a batch decodes (or
        a long prompt is prefilled) it takes only what is already waiting, so the running rows lose
        at most one prefill pass, and one call (a piece of scoring or embedding) a step. A job whose prompt is longer than `chunk` tokens is not prefilled
        here: it becomes `_filling` (one at a time), fed a chunk a step by `_fill`.
        """
        busy = batch is not None or self._filling is not None
        if busy and self.joinable is False:
            return batch  # this model's cache cannot be joined: new jobs wait for the batch to end
        room = self.max_batch - (len(batch.slots) if batch else 0) - (len(self._filling.job.rows) if self._filling else 0)
        new: list[Job] = []
        size = 0
        deadline = None
        while size < room:
            if not busy and not new:
                timeout = 0.1
            elif not busy:
                timeout = deadline - time.monotonic()
            else:
                timeout = None
            job = self._next(timeout)
            if job is None:
                break
            if job.cancelled:
                job.send(("error", RequestCancelled("cancelled before it started")))
                continue
            if isinstance(job, _ThreadCall):
                self._run_call(job)
                if not busy and not new:
                    return None
                break  # one call a step: a request's next piece, queued meanwhile, waits for the rows' step
            if new or busy:  # the first job of an idle server always fits
                if size + len(job.rows) > room:
                    self._carry = job
                    break
            if max(len(r) for r in job.rows) > self.chunk:
                if self._filling is not None or (self.joinable is not True and (new or busy)):
                    self._carry = job  # one long prompt at a time; and none beside others before the cache is known to join
                    break
                try:
                    self._start_filling(job)
                except Exception as exc:  # noqa: BLE001 - this client gets the error; the running rows go on
                    log.exception("starting a prefill failed")
                    job.send(("error", exc))
                    continue
                size += len(job.rows)
                busy = True
                if self.joinable is not True:
                    break  # its first chunk tells whether other jobs may join
                continue
            new.append(job)
            size += len(job.rows)
            deadline = deadline or time.monotonic() + self.window
        if not new:
            return batch
        try:
            fresh = self._prefill(new)
        except Exception as exc:  # noqa: BLE001 - these clients get the error; the running rows go on
            if not isinstance(exc, AigcError):
                log.exception("prefilling a batch failed")
            for job in new:
                job.send(("error", exc))
            return batch
        if batch is not None:
            self.joined += len(new)
        return self._join(batch, fresh)

    def _join(self, batch: _Batch | None, fresh: _Batch | None) -> _Batch | None:
        try:
            return self._merge(batch, fresh)
        except Exception as exc:  # noqa: BLE001 - the running rows may be half-joined: all of them get the error
            log.exception("joining a batch failed")
            for part in (batch, fresh):
                if part is not None:
                    self._abort(part.slots, exc)
            return None

    def _start_filling(self, job: Job) -> None:
        from transformers import DynamicCache

        ids, mask = self.engine._batch(job.rows)
        self._start(job, ids.device, (ids, mask))
        self._filling = _Filling(job, ids, mask, DynamicCache())

    def _fill(self, batch: _Batch | None) -> _Batch | None:
        """Feed the next chunk of the long prompt being prefilled; after its last, join its rows to
        the batch. A cancelled job is dropped here, between chunks."""
        filling = self._filling
        job = filling.job
        if job.cancelled:
            self._filling = None
            self.cancelled_rows += len(job.rows)
            job.send(("error", RequestCancelled("cancelled while its prompt was read")))
            return batch
        width = filling.ids.shape[1]
        end = min(filling.at + self.chunk, width)
        try:
            fresh = self._feed([job], filling.ids, filling.mask, filling.positions, filling.cache, filling.at, end)
        except Exception as exc:  # noqa: BLE001 - this client gets the error; the running rows go on
            if not isinstance(exc, AigcError):
                log.exception("prefilling a prompt failed")
            self._filling = None
            job.send(("error", exc))
            return batch
        filling.at = end
        if end < width:
            return batch
        self._filling = None
        if batch is not None:
            self.joined += 1
        return self._join(batch, fresh)

    @staticmethod
    def _run_call(call: _ThreadCall) -> None:
        try:
            call.send(("done", call.fn()))
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            call.send(("error", exc))

    def _start(self, job: Job, device, alone=None) -> None:
        """Set up a job's rows; `alone`: their ids and mask padded as they would be alone, where already made."""
        engine = self.engine
        stops = StopStrings(engine.tokenizer, job.params.stop, engine.special_ids)
        job.slots = [_Slot(job, i, TextAssembler(engine.tokenizer, stops, keep_stops=job.keep_stops)) for i in range(len(job.rows))]
        seen, mask = alone or engine._batch(job.rows)
        job.processors = build_processors(job.params, engine.tokenizer, mask)
        job.gen = make_generator(job.params.seed, device)
        job.seen = seen if job.processors else None
        job.started = time.perf_counter()
        job.first = None

    def _prefill(self, jobs: list[Job]) -> _Batch | None:
        """The jobs' prompts in one forward pass, and their first tokens."""
        from transformers import DynamicCache

        ids, mask = self.engine._batch([r for job in jobs for r in job.rows])
        for job in jobs:
            self._start(job, ids.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return self._feed(jobs, ids, mask, positions, DynamicCache(), 0, ids.shape[1])

    def _feed(self, jobs: list[Job], ids, mask, positions, cache, start: int, end: int) -> _Batch | None:
        """Feed prompt columns `start:end` into `cache`; once the last is fed, pick the first tokens
        and return the jobs' batch (None before, or when every row ended at its first token)."""
        import torch

        with torch.inference_mode():
            out = self.engine.model(
                input_ids=ids[:, start:end],
                attention_mask=mask[:, :end],
                position_ids=positions[:, start:end],
                use_cache=True,
                **{self._cache_keyword: cache},
                logits_to_keep=1,
            )
            if self.joinable is None:
                self.joinable = _joinable(cache)
            if end < ids.shape[1]:
                return None
            batch = _Batch([s for job in jobs for s in job.slots], cache, mask, positions[:, -1:] + 1)
            picks = self._pick(batch.slots, out.logits[:, -1, :].float())
        batch.next_ids = picks[:, None]
        self.batches += 1
        self._consume(batch.slots, picks)
        return self._evict(batch)

    def _merge(self, batch: _Batch | None, fresh: _Batch | None) -> _Batch | None:
        import torch

        if batch is None or fresh is None:
            joined = batch or fresh
        else:
            width = max(batch.mask.shape[1], fresh.mask.shape[1])
            _widen(batch, width)
            _widen(fresh, width)
            for mine, theirs in zip(batch.cache.layers, fresh.cache.layers):
                mine.keys = torch.cat([mine.keys, theirs.keys], dim=0)
                mine.values = torch.cat([mine.values, theirs.values], dim=0)
            batch.mask = torch.cat([batch.mask, fresh.mask], dim=0)
            batch.positions = torch.cat([batch.positions, fresh.positions], dim=0)
            batch.next_ids = torch.cat([batch.next_ids, fresh.next_ids], dim=0)
            batch.slots = batch.slots + fresh.slots
            joined = batch
        if joined is not None:
            self.largest_batch = max(self.largest_batch, len(joined.slots))
        return joined

    def _advance(self, batch: _Batch) -> _Batch | None:
        """Close cancelled rows, then one decode step for every row; None once all rows are done."""
        try:
            for slot in batch.slots:
                if slot.job.cancelled and not slot.done:
                    self.cancelled_rows += 1
                    self._close(slot, "cancelled")
            live = self._evict(batch)
            if live is None:
                return None
            self._step(live)
            return self._evict(live)
        except Exception as exc:  # noqa: BLE001 - every client in the batch gets the error, the thread lives on
            if not isinstance(exc, AigcError):
                log.exception("decoding a batch failed")
            self._abort(batch.slots, exc)
            return None

    def _step(self, batch: _Batch) -> None:
        import torch

        engine = self.engine
        mask = torch.cat([batch.mask, batch.mask.new_ones((batch.mask.shape[0], 1))], dim=1)
        with torch.inference_mode():
            out = engine.model(
                input_ids=batch.next_ids,
                attention_mask=mask,
                position_ids=batch.positions,
                use_cache=True,
                **{self._cache_keyword: batch.cache},
                logits_to_keep=1,
            )
            batch.mask = mask
            batch.positions = batch.positions + 1
            picks = self._pick(batch.slots, out.logits[:, -1, :].float())
        batch.next_ids = picks[:, None]
        self._consume(batch.slots, picks)

    def _pick(self, slots: list[_Slot], logits):
        """One token per row, each job sampling its own rows with its own processors and RNG.

        A job's live rows are always one contiguous run of the batch (jobs join as blocks and
        leaving rows keep the order), so each job's scores are a slice.
        """
        import torch

        pieces = []
        start = 0
        while start < len(slots):
            job = slots[start].job
            end = start + 1
            while end < len(slots) and slots[end].job is job:
                end += 1
            n = len(job.rows)
            if end - start == n:
                scores, own = logits[start:end], None
            else:  # some rows are finished: they draw from a dummy row, so the RNG advances as if alone
                own = [slot.index for slot in slots[start:end]]
                scores = logits.new_zeros((n, logits.shape[1]))
                scores[own] = logits[start:end]
            try:
                shaped = job.processors(job.seen, scores) if job.processors else scores
            except AigcError as exc:  # its JSON schema's decoder failed: this job ends with the error, the other rows go on
                self._abort(slots[start:end], exc)
                shaped = scores
            chosen = pick_tokens(shaped, job.params, job.gen)
            if job.seen is not None:
                fed = chosen
                if own is not None:
                    fed = torch.full_like(chosen, self.engine.pad_id)
                    fed[own] = chosen[own]
                job.seen = torch.cat([job.seen, fed[:, None]], dim=-1)
            if own is not None:
                chosen = chosen[own]
            pieces.append(chosen)
            if job.logprobs is not None:
                self._score(job, slots[start:end], logits[start:end], chosen)
            start = end
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    @staticmethod
    def _score(job: Job, slots: list[_Slot], logits, chosen) -> None:
        import torch

        logprobs = torch.log_softmax(logits, dim=-1)
        values = logprobs.gather(1, chosen[:, None]).squeeze(1).tolist()
        if job.logprobs:
            top_values, top_ids = logprobs.topk(job.logprobs, dim=-1)
            tops = [list(zip(i, v)) for i, v in zip(top_ids.tolist(), top_values.tolist())]
        else:
            tops = [[] for _ in slots]
        for slot, value, top in zip(slots, values, tops):
            slot.scored = (value, top)

    def _consume(self, slots: list[_Slot], picks) -> None:
        """Turn each row's new token into text and events; close rows that are done."""
        now = time.perf_counter()
        for slot, token in zip(slots, picks.tolist()):
            job = slot.job
            if slot.done:  # its job failed in this step
                continue
            if job.first is None:
                job.first = now - job.started
            if token in self._eos or token in job.stop_ids:
                self._close(slot, "stop")
                continue
            slot.count += 1
            if slot.scored is not None:
                entry = self.token_texts.entry(token, slot.scored[0], slot.scored[1], len(slot.text.text))
                slot.pending.append(entry)
                slot.entries.append(entry)
            piece = slot.text.push(token)
            if piece:
                job.send(("piece", slot.index, piece, self._take(slot)))
            if slot.text.stopped:
                self._close(slot, "stop")
            elif slot.count >= job.params.max_tokens:
                self._close(slot, "length")

    @staticmethod
    def _take(slot: _Slot) -> list | None:
        if slot.job.logprobs is None:
            return None
        taken, slot.pending = slot.pending, []
        return _answer_logprobs(slot, taken)

    def _close(self, slot: _Slot, reason: str) -> None:
        slot.done = True
        slot.reason = reason
        job = slot.job
        tail = slot.text.flush()
        entries = self._take(slot)
        if not job.cancelled:
            if tail or entries:
                job.send(("piece", slot.index, tail, entries))
            job.send(("end", slot.index, reason))
        if all(s.done for s in job.slots):
            self._complete(job)

    def _complete(self, job: Job) -> None:
        results = [Completion(s.text.text, len(job.rows[s.index]), s.count, s.reason) for s in job.slots]
        logprobs = [_answer_logprobs(s, s.entries) for s in job.slots] if job.logprobs is not None else None
        elapsed = time.perf_counter() - job.started
        self.engine.stats.record(prompt_tokens(job.rows, job.params.n), sum(s.count for s in job.slots), job.first or elapsed, elapsed)
        job.send(("done", results, logprobs))  # after the stats, so a client that has its answer finds it counted

    def _evict(self, batch: _Batch) -> _Batch | None:
        """The batch without its finished rows (None when none are left)."""
        keep = [i for i, slot in enumerate(batch.slots) if not slot.done]
        if not keep:
            return None
        if len(keep) < len(batch.slots):
            batch.select(keep)
            if self.joinable:
                _trim(batch)
        return batch

    def _abort(self, slots: list[_Slot], exc: Exception) -> None:
        for slot in slots:
            slot.done = True
            slot.job.send(("error", exc))


class BatchedEngine:
    """The `Engine` interface over a `Scheduler`, for generators run by the server.

    Its calls block the calling thread (a worker thread, never the event loop) until the scheduler
    has decoded them, batched with whatever else is running. `scoped()` gives a view for one
    request: `cancel()` on it stops that request's rows and makes its further calls raise
    `RequestCancelled`, so a generator whose client went away stops at its next step; a view made
    before a drain began goes on being served until the cut (a task's later calls, embeddings in
    turns), as the request's first call is.
    """

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler
        self.local = scheduler.engine
        self.name = self.local.name
        self.variant = getattr(self.local, "variant", "")
        self.context_length = self.local.context_length
        self.can_embed = self.local.can_embed
        self.can_score_chat = getattr(self.local, "can_score_chat", True)  # an engine older than the attribute: as local engines
        self.template_lists_tools = getattr(self.local, "template_lists_tools", False)
        self._lock = threading.Lock()  # the tokenizer is shared with the scheduler thread
        self._jobs: set[Job] | None = None  # a scoped view's jobs
        self.cancelled = False
        self.ongoing = False  # a view of a request taken before a drain began

    def scoped(self) -> "BatchedEngine":
        view = BatchedEngine.__new__(BatchedEngine)
        view.__dict__.update(self.__dict__)
        view._jobs, view.cancelled, view.ongoing = set(), False, not self.scheduler.closing
        return view

    def cancel(self) -> None:
        """Stop this view's running jobs at the next step; its later calls raise `RequestCancelled`."""
        self.cancelled = True
        for job in list(self._jobs or ()):
            job.cancel()

    def _check(self) -> None:
        if self.cancelled:
            raise RequestCancelled("the client went away")

    @property
    def stats(self) -> EngineStats:
        return self.local.stats

    def encode(self, prompt: Prompt, tools: list[dict] | None = None, continue_final: bool = False) -> list[int]:
        self._check()
        with self._lock:
            return self.local.encode(prompt, tools, continue_final)

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self.encode(prompt))

    def fitted(self, text: str) -> str:
        self._check()
        with self._lock:
            return self.local.fitted(text)

    @property
    def vocabulary(self) -> int:
        """How many token ids the tokenizer has (a prompt of ids uses these)."""
        return len(self.local.tokenizer)

    def decode(self, ids: list[int]) -> str:
        """The text of a prompt given as token ids, control tokens spelt out (what echo shows)."""
        with self._lock:
            return self.local.tokenizer.decode(ids)

    def offsets(self, text: str, ids: list[int]) -> list[int]:
        """Where each of the prompt's tokens starts in its text (for `echo`)."""
        with self._lock:
            return prompt_offsets(self.local.tokenizer, text, ids, self.scheduler.token_texts)

    def _events(self, rows: list[list[int]], params: SamplingParams) -> tuple[Job, Iterator[tuple]]:
        self._check()
        events: queue.SimpleQueue = queue.SimpleQueue()
        job = Job(rows, params, events.put)
        job.ongoing = self.ongoing
        self.scheduler.submit(job)
        if self._jobs is not None:
            self._jobs.add(job)
            if self.cancelled:
                job.cancel()

        def pump() -> Iterator[tuple]:
            try:
                while True:
                    event = events.get()
                    if event[0] == "error":
                        raise event[1]
                    self._check()
                    yield event
                    if event[0] == "done":
                        return
            finally:
                if self._jobs is not None:
                    self._jobs.discard(job)

        return job, pump()

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Each prompt's `n` completions; more rows than `--max-batch` are decoded in turns of at most
        that many, so no task's options (translate's `chunk_tokens`, a `batch_size`, headline's n x 3
        samples) make a batch the operator did not allow."""
        if params.n > self.scheduler.max_batch:
            return [self._samples(prompt, params) for prompt in prompts]
        per_job = self.scheduler.max_batch // params.n
        return [row for start in range(0, len(prompts), per_job) for row in self._generate(prompts[start : start + per_job], params)]

    def _samples(self, prompt: Prompt, params: SamplingParams) -> list[Completion]:
        """One prompt's `n` completions, in order, in parts of `--max-batch` rows. With a seed, the
        first part has it and part k one drawn from it and k (not seed + k, which headline's next
        round is), so a seeded request gives the same answers each time, though not a local run's,
        which draws all n rows from the one seed (with n up to `--max-batch`, the two are alike)."""
        size, completions = self.scheduler.max_batch, []
        for part, start in enumerate(range(0, params.n, size)):
            seed = derived_seed(params.seed, part, SEED_BOUND)
            completions += self._generate([prompt], params.replace(n=min(size, params.n - start), seed=seed))[0]
        return completions

    def _generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
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

    def stream(self, prompt: Prompt, params: SamplingParams) -> Generator[str, None, Completion | None]:
        job, events = self._events([self.encode(prompt)], params.replace(n=1))
        completion = None
        try:
            for event in events:
                if event[0] == "piece" and event[2]:
                    yield event[2]
                elif event[0] == "done":
                    completion = event[1][0]
        finally:
            job.cancel()  # a caller that stops early frees its row at once
        return completion

    def score(self, prompt: Prompt, continuations: list[str]) -> list[float]:
        self._check()
        return self.scheduler.call(self.local.score, prompt, continuations, ongoing=self.ongoing)

    def score_many(self, prompts: list[Prompt], continuations: list[str], embed: bool = False) -> list[Scored]:
        """In calls of `SCORE_CHUNK` prompt tokens (the prompts batched by length), so decoding goes
        on between them (each step of a chat waits for one such call, not for a whole forward pass
        of the 32 classify examples a fit scores at a time) and a cancelled request stops at the
        next one."""
        self._check()
        check_prompts(prompts)
        heads = [self.encode(p) for p in prompts]  # once: their lengths batch them, then they are scored
        self.local.check_scored(heads, continuations)  # over all of them: a batch of long texts alone would blame a continuation
        results: list[Scored | None] = [None] * len(prompts)
        for batch in length_batches([len(h) for h in heads], SCORE_CHUNK):
            self._check()
            for index, scored in zip(batch, self.scheduler.call(self.local.score_encoded, [heads[i] for i in batch], continuations, embed, ongoing=self.ongoing)):
                results[index] = scored
        return results

    def embed(self, texts: list[str]) -> list[list[float]]:
        """In calls of at most `SCORE_CHUNK` tokens (texts batched by length; a longer text alone, in
        `PREFILL_CHUNK` pieces on its KV cache, a piece a call), so decoding goes on between them and
        a cancelled request stops at the next one."""
        check_texts(texts)
        self._check()
        with self._lock:
            rows = self.local.embedded_rows(texts)

        def run(fn: Callable[..., Any], *args: Any) -> Any:
            self._check()
            return self.scheduler.call(fn, *args, ongoing=self.ongoing)

        return self.local.embed_encoded(rows, SCORE_CHUNK, run)
