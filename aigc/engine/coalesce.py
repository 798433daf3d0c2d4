"""`CoalescingEngine`: merges the model calls of concurrent callers into batched engine calls.

Each worker thread runs one item through a generator as usual. When every worker still running
is waiting on `generate` (or `score_many`, `embed`), the waiting calls that share settings are sent to the
wrapped engine as one batch and the results handed back. Generators need no batching code of their
own, and a third-party generator batches the same way.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadInputError
from .base import Completion, Prompt, Scored, check_stopped


@dataclass
class _PendingCall:
    kind: str  # "generate", "score" or "embed"
    prompts: list[Prompt]
    key: Any  # calls with equal kind and key are merged
    result: list = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


class CoalescingEngine:
    """Wraps an engine for `workers` threads; call `retire()` when a thread has no more work."""

    def __init__(self, engine, workers: int):
        self.engine = engine
        self.workers = workers
        self._active = workers
        self._waiting: list[_PendingCall] = []
        self._lock = threading.Condition()
        self.batches: list[int] = []  # prompts per engine call made, for inspection

    def __getattr__(self, name: str):
        return getattr(self.engine, name)  # name, context_length, stats, tokenizer, ...

    def count_tokens(self, prompt: Prompt) -> int:
        with self._lock:
            return self.engine.count_tokens(prompt)

    def score(self, prompt: Prompt, continuations: list[str]) -> list[float]:
        return self.score_many([prompt], continuations)[0].logprobs

    def stream(self, prompt: Prompt, params):
        completion = self.generate([prompt], params.replace(n=1))[0][0]
        yield completion.text
        return completion

    def generate(self, prompts: list[Prompt], params) -> list[list[Completion]]:
        return self._wait(_PendingCall("generate", list(prompts), params))

    def score_many(self, prompts: list[Prompt], continuations: list[str], embed: bool = False) -> list[Scored]:
        return self._wait(_PendingCall("score", list(prompts), (tuple(continuations), embed)))

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._wait(_PendingCall("embed", list(texts), None))

    def retire(self) -> None:
        with self._lock:
            self._active -= 1
            self._dispatch()

    def _wait(self, call: _PendingCall) -> list:
        with self._lock:
            self._waiting.append(call)
            self._dispatch()
            while not call.done:
                self._lock.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def _dispatch(self) -> None:
        """With the lock held: once every active worker waits, run the waiting calls, merged."""
        if not self._waiting or len(self._waiting) < self._active:
            return
        waiting, self._waiting = self._waiting, []
        groups: list[list[_PendingCall]] = []
        parts = getattr(type(self.engine), "seeded_parts", False)  # its own class's (a wrapper's forwarded attribute is not its `generate`'s)
        for call in waiting:
            group = next((g for g in groups if _mergeable(g[0], call, parts)), None)
            group.append(call) if group else groups.append([call])
        for group in groups:
            try:
                self._run(group)
            except BadInputError as exc:
                if len(group) == 1:
                    group[0].error = exc
                else:  # one call's input (a prompt too long) must not fail the others: each alone
                    for call in group:
                        try:
                            self._run([call])
                        except BaseException as own:  # noqa: BLE001 - its caller re-raises it
                            call.error = own
            except BaseException as exc:  # noqa: BLE001 - the model or server failed: every caller re-raises it
                for call in group:
                    call.error = exc
            for call in group:
                call.done = True
        self._lock.notify_all()

    def _run(self, group: list[_PendingCall]) -> None:
        """One engine call for the whole group; each call gets its share of the results. Nothing is run
        once the calls were told to stop (`base.stop_when`, as `aigc.batch` does): each raises `asyncio.CancelledError`."""
        check_stopped()
        prompts = [p for call in group for p in call.prompts]
        self.batches.append(len(prompts))
        if group[0].kind == "generate" and len(group) > 1 and not group[0].key.greedy and any(call.key.seed is not None for call in group):
            results = self.engine.generate(prompts, dataclasses.replace(group[0].key, seed=None), seeds=[(call.key.seed, len(call.prompts)) for call in group])
        elif group[0].kind == "generate":
            results = self.engine.generate(prompts, group[0].key)
        elif group[0].kind == "embed":
            results = self.engine.embed(prompts)
        else:
            continuations, embed = group[0].key
            results = self.engine.score_many(prompts, list(continuations), embed=embed)
        at = 0
        for call in group:
            call.result = results[at : at + len(call.prompts)]
            at += len(call.prompts)


def _mergeable(first: _PendingCall, call: _PendingCall, parts: bool = False) -> bool:
    """Same kind and settings. Seeded sampling is merged only with `parts`: into an engine whose
    `generate` takes `seeds` (`seeded_parts`, a local model's), whatever the seeds and dtype: each
    call's rows are drawn from its own seed's generator. In float32 its logits are those it has alone
    (but for rounding, about 1e-6, which only a draw right at a boundary notices), so the call alone
    with its seed almost always gives the same answer; in bfloat16 or float16 a row's logits change
    with its batch, so alone it gives the same answer only up to that drift (README, Reproducibility):
    batching wins over exact replay there. Elsewhere seeded calls are not merged: a batch would draw
    every row from one random generator, so a row's sample would depend on the rows beside it."""
    if first.kind != call.kind:
        return False
    if first.kind == "generate" and parts:
        return dataclasses.replace(first.key, seed=None) == dataclasses.replace(call.key, seed=None)
    if first.key != call.key:
        return False
    return first.kind != "generate" or first.key.seed is None or first.key.greedy
