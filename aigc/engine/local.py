"""`LocalEngine`: the `Engine` interface on a transformers model in this process."""

from __future__ import annotations

import time
from typing import Iterator

from ..errors import BadInputError
from .base import Completion, EngineStats, Prompt
from .sampling import DecodeLoop, SamplingParams, TextAssembler, cache_keyword


def _eos_ids(model, tokenizer) -> list[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    return sorted(ids)


class LocalEngine:
    """Generates with a loaded model and tokenizer on one device."""

    def __init__(self, name: str, model, tokenizer, load_seconds: float = 0.0):
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.device = model.device
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.special_ids = list(tokenizer.all_special_ids)
        self.stats = EngineStats(load_seconds=load_seconds)
        self._previous = None  # (token ids, KV cache) of the last single-row call

    def render(self, prompt: Prompt) -> str:
        """Prompt text as the model sees it: chat messages go through the model's chat template."""
        if isinstance(prompt, str):
            return prompt
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in prompt]
        return "\n\n".join(lines + ["Assistant:"])

    def encode(self, prompt: Prompt) -> list[int]:
        text = self.render(prompt)
        # Chat templates already hold the BOS token where the model wants one.
        return self.tokenizer(text, add_special_tokens=isinstance(prompt, str))["input_ids"]

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self.encode(prompt))

    def _batch(self, rows: list[list[int]]):
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _check_fits(self, rows: list[list[int]], params: SamplingParams) -> None:
        longest = max(len(r) for r in rows)
        if longest + params.max_tokens > self.context_length:
            raise BadInputError(
                f"the prompt takes {longest} tokens and {params.max_tokens} more were asked for, but "
                f"{self.name} holds {self.context_length}; shorten the input or lower --max-tokens"
            )

    def _reusable_cache(self, row: list[int]):
        """The previous single-row call's KV cache cut to what `row` shares with it, and that length.

        A chat turn starts with the whole earlier conversation, so only the new turn is prefilled.
        """
        previous, self._previous = self._previous, None
        if previous is None:
            return None, 0
        fed, cache = previous
        shared = 0
        for old, new in zip(fed, row):
            if old != new:
                break
            shared += 1
        shared = min(shared, len(row) - 1)  # at least one token must be fed to get logits
        if shared <= 0:
            return None, 0
        try:
            if len(fed) > shared:
                cache.crop(-(len(fed) - shared))
        except (ValueError, RuntimeError):  # a cache kind that cannot be rolled back
            return None, 0
        return cache, shared

    def _run(self, rows: list[list[int]], params: SamplingParams) -> "_Run":
        self._check_fits(rows, params)
        ids, mask = self._batch(rows)
        cache, cached = self._reusable_cache(rows[0]) if len(rows) == 1 else (None, 0)
        loop = DecodeLoop(self.model, ids, mask, params, self.eos_ids, self.pad_id, cache=cache, cached=cached)
        return _Run(self, loop, [TextAssembler(self.tokenizer, params.stop, self.special_ids) for _ in rows])

    def _keep(self, loop: DecodeLoop) -> None:
        """Remember a finished single-row call's cache for the next call to extend."""
        if loop.input_ids.shape[0] == 1 and loop.consistent and loop.cache is not None:
            self._previous = (loop.fed[0].tolist(), loop.cache)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        encoded = [self.encode(p) for p in prompts]
        run = self._run([ids for ids in encoded for _ in range(params.n)], params)
        for _ in run:
            pass
        results: list[list[Completion]] = []
        for p, ids in enumerate(encoded):
            group = []
            for row in range(p * params.n, (p + 1) * params.n):
                reason = "stop" if run.done[row] else "length"
                group.append(Completion(run.texts[row].text, len(ids), run.counts[row], reason))
            results.append(group)
        return results

    def stream(self, prompt: Prompt, params: SamplingParams) -> Iterator[str]:
        for _row, piece in self._run([self.encode(prompt)], params.replace(n=1)):
            yield piece

    def score(self, prompt: Prompt, continuations: list[str]) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens after the prompt.

        The prompt is run once; its KV cache is repeated for all continuations, which then run
        together in one right-padded batch.
        """
        import torch
        from transformers import DynamicCache

        head = self.encode(prompt)
        tails = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        if not tails or any(not t for t in tails):
            raise BadInputError("every continuation to score needs at least one token")
        keyword = cache_keyword(self.model)
        with torch.inference_mode():
            cache = DynamicCache()
            out = self.model(input_ids=torch.tensor([head], device=self.device), use_cache=True, **{keyword: cache}, logits_to_keep=1)
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            scores = [float(first[tail[0]]) for tail in tails]
            longest = max(len(t) for t in tails)
            if longest == 1:
                return scores
            width = longest - 1  # the last token of each continuation is never fed
            ids = torch.full((len(tails), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(tails), len(head) + width), dtype=torch.long)
            mask[:, : len(head)] = 1
            for row, tail in enumerate(tails):
                ids[row, : len(tail) - 1] = torch.tensor(tail[:-1])
                mask[row, len(head) : len(head) + len(tail) - 1] = 1
            cache.batch_repeat_interleave(len(tails))
            positions = torch.arange(len(head), len(head) + width).expand(len(tails), -1)
            logits = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=True,
                **{keyword: cache},
            ).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1)
        for row, tail in enumerate(tails):
            for k, token in enumerate(tail[1:]):
                scores[row] += float(logprobs[row, k, token])
        return scores


class _Run:
    """One batch being decoded: iterating yields (row, new text); texts and counts fill as it goes."""

    def __init__(self, engine: LocalEngine, loop: DecodeLoop, texts: list[TextAssembler]):
        self.engine = engine
        self.loop = loop
        self.texts = texts
        self.counts = [0] * len(texts)
        self.done = [False] * len(texts)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        loop, eos = self.loop, set(self.engine.eos_ids)
        started = time.perf_counter()
        first = None
        try:
            for step in loop:
                first = first if first is not None else time.perf_counter() - started
                for row, token in enumerate(step.tolist()):
                    if self.done[row]:
                        continue
                    if token in eos:
                        self.done[row] = True
                        continue
                    self.counts[row] += 1
                    piece = self.texts[row].push(token)
                    if self.texts[row].stopped:
                        self.done[row] = True
                        loop.finish(row)
                    if piece:
                        yield row, piece
            for row, text in enumerate(self.texts):
                piece = text.flush()
                if piece:
                    yield row, piece
        finally:
            self.engine._keep(loop)
            elapsed = time.perf_counter() - started
            prompt_tokens = int(self.loop.attention_mask.sum())
            self.engine.stats.record(prompt_tokens, sum(self.counts), first or elapsed, elapsed)
