"""`LocalEngine`: the `Engine` interface on a transformers model in this process."""

from __future__ import annotations

import functools
import re
import threading
import time
import uuid
from typing import Any, Callable, Generator, Iterator

from ..errors import BadInputError, ContextLengthError, ContinuationLengthError
from ..textio import check_utf8
from .base import Completion, EngineStats, Prompt, Scored, check_continuations, check_fits, check_prompts, check_stopped, check_texts, prompt_tokens, ticks
from .sampling import PREFILL_CHUNK, DecodeLoop, SamplingParams, StopStrings, TextAssembler, cache_keyword, left_padded
from .scoring import length_batches, pool_hidden_states

EMBED_PROMPT = ('This sentence : "', '" means in one word:"')  # around the text `embed` reads
SCORE_BATCH_TOKENS = 4096  # prompt tokens (padding included) per scoring forward pass
CONTINUATION_TOKENS = 1024  # continuation tokens fed after the prompts' cache in one pass, all rows counted (their logits: x vocabulary floats)


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

    can_embed = True
    can_score_chat = True
    seeded_parts = True  # `generate` takes `seeds`: a merged batch's calls each drawn from their own seed (`CoalescingEngine`)

    def __repr__(self) -> str:
        return f"<LocalEngine {self.name!r} on {self.device} in {self.dtype}, {self.context_length}-token context>"

    @property
    def dtype(self) -> str:
        """The dtype its weights run in ("bfloat16" where `dtype="auto"` picked that)."""
        return str(self.model.dtype).removeprefix("torch.")

    def __init__(self, name: str, model, tokenizer, load_seconds: float = 0.0, variant: str = ""):
        self.name = name
        self.variant = variant  # where and how which weights were loaded ("cpu float32 int4 " and their files' fingerprint), for caches of what they computed
        self.modified: float | None = None  # when its weights' files were last written (`loading.written`), where it was loaded from files
        self.weights: str | None = None  # the model directory its weights were loaded from (`model_digest`)
        self._digest: str | None = None
        self.model = model
        self.tokenizer = tokenizer
        self.device = model.device
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = next((i for i in (tokenizer.pad_token_id, *self.eos_ids) if i is not None), 0)  # only ever masked: with no pad nor EOS token (generation then runs to max_tokens), any id does
        self.special_ids = list(tokenizer.all_special_ids)
        added = getattr(tokenizer, "added_tokens_decoder", {}).values()
        self.control_texts = sorted({t.content for t in added if t.special and t.content}, key=len, reverse=True)  # longest first, for regexes
        self.stats = EngineStats(load_seconds=load_seconds)
        self._previous = None  # (token ids fed, prompt length, KV cache) of the last single-row call
        self._previous_lock = threading.Lock()  # two threads' calls (aigc.astream) never take the same cache

    @property
    def model_digest(self) -> str | None:
        """The start of its weights' sha256 (`digests.model_digest`), as logs and --json record it:
        read from the record kept of them (made at conversion, by `aigc models info`, or a hub
        download's blob names), then remembered; never computed here, as logs, --json and batches
        ask for it (a model directory of yours weighing gigabytes would stall them): None where no
        record tells it yet, or where it was not loaded from files."""
        if self._digest is None and self.weights is not None:
            from .digests import model_digest

            self._digest = model_digest(self.weights, compute=False)
        return self._digest

    @property
    def template_lists_tools(self) -> bool:
        """Whether the chat template reads `tools` (so lists function definitions, and earlier calls, its own way)."""
        template = getattr(self.tokenizer, "chat_template", None) or ""
        return any("tools" in text for text in (template.values() if isinstance(template, dict) else [template]))

    def render(self, prompt: Prompt, tools: list[dict] | None = None, continue_final: bool = False) -> str:
        """Prompt text as the model sees it: chat messages go through the model's chat template,
        with `tools` (OpenAI's function definitions) where the template lists them itself; the answer's
        turn opened after them, or with `continue_final` the last message (an assistant's) left open
        to be continued (transformers' `continue_final_message`)."""
        if isinstance(prompt, str):
            return prompt
        if getattr(self.tokenizer, "chat_template", None):
            from jinja2 import TemplateError, TemplateSyntaxError

            try:
                return self.tokenizer.apply_chat_template(
                    prompt, tools=tools or None, add_generation_prompt=not continue_final, continue_final_message=continue_final, tokenize=False
                )
            except TemplateSyntaxError:
                raise
            except TemplateError as exc:  # the template's raise_exception(): messages it does not take (roles that do not alternate, ...)
                raise BadInputError(f"{self.name}'s chat template refuses these messages: {exc}") from None
            except ValueError as exc:  # transformers: the template changes the last message, so it cannot be left open
                if not continue_final:
                    raise
                raise BadInputError(f"{self.name}'s chat template cannot continue the last message: {exc}") from None
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in prompt]
        return "\n\n".join(lines + ([] if continue_final else ["Assistant:"]))

    def encode(self, prompt: Prompt, tools: list[dict] | None = None, continue_final: bool = False) -> list[int]:
        """Token ids of a prompt (chat messages rendered as `render` does). A text prompt's control tokens (`<|im_end|>`) are read as such, as
        vLLM reads a completion's prompt; in chat messages only the template's markup has them: a
        message whose content spells one gets it as plain text, so no message can open another turn."""
        text = self.render(prompt, tools, continue_final)
        check_utf8(text, "prompt")  # lone surrogates (from JSON "\ud800", say) are no text a tokenizer takes
        if isinstance(prompt, str):
            return self.tokenizer(text)["input_ids"]
        if any(control in str(m.get("content") or "") for m in prompt for control in self.control_texts):
            return self._encode_marked(prompt, tools, continue_final)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]  # chat templates already hold the BOS token where the model wants one

    def _encode_marked(self, messages: list[dict], tools: list[dict] | None = None, continue_final: bool = False) -> list[int]:
        """Chat messages whose contents spell control tokens, as ids where those spellings are plain
        text: they stand as unique markers while the template renders, the rendered text is cut at
        the control tokens left (the markup's), and the runs between them are tokenized with the
        markers spelled out again and no control token read (as a tokenizer cuts any text at its
        control tokens first, an ordinary prompt gives the same ids this way as read whole)."""
        tag = uuid.uuid4().hex
        marker = {control: f"\ue000{tag}.{i}\ue001" for i, control in enumerate(self.control_texts)}
        spelled = {m: control for control, m in marker.items()}
        controls = re.compile("|".join(map(re.escape, self.control_texts)))
        markers = re.compile("|".join(map(re.escape, spelled)))
        marked = [{**m, "content": controls.sub(lambda found: marker[found.group()], str(m.get("content") or ""))} for m in messages]
        ids: list[int] = []
        for i, piece in enumerate(re.split(f"({controls.pattern})", self.render(marked, tools, continue_final))):
            if i % 2:
                ids.append(self.tokenizer.convert_tokens_to_ids(piece))
            elif piece:
                text = markers.sub(lambda found: spelled[found.group()], piece)
                ids += self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return ids

    def count_tokens(self, prompt: Prompt) -> int:
        """Tokens the prompt takes: a text prompt as it is, chat messages through the chat template
        (its markup and the assistant's opening included)."""
        return len(self.encode(prompt))

    def _batch(self, rows: list[list[int]]):
        return left_padded(rows, self.pad_id, self.device)

    def _check_fits(self, rows: list[list[int]], params: SamplingParams) -> None:
        check_fits(self, max(len(r) for r in rows), params.max_tokens)

    def _reusable_cache(self, row: list[int]):
        """The previous single-row call's KV cache cut to what `row` shares with its prompt, down to
        a multiple of `PREFILL_CHUNK` (so the numbers are those a fresh prefill computes), and that length.

        A chat turn starts with the whole earlier conversation, so only the rest is prefilled.
        """
        with self._previous_lock:
            previous, self._previous = self._previous, None
        if previous is None:
            return None, 0
        fed, prompt_length, cache = previous
        shared = 0
        for old, new in zip(fed[:prompt_length], row):
            if old != new:
                break
            shared += 1
        shared = min(shared, len(row) - 1) // PREFILL_CHUNK * PREFILL_CHUNK  # at least one token is fed, for logits
        if shared <= 0:
            return None, 0
        try:
            if len(fed) > shared:
                cache.crop(-(len(fed) - shared))
        except (ValueError, RuntimeError):  # a cache kind that cannot be rolled back
            return None, 0
        return cache, shared

    def _run(self, prompts: list[list[int]], params: SamplingParams, seeds: list[tuple[int | None, int]] | None = None) -> "_Run":
        """A run of `params.n` rows for each prompt, grouped by prompt; `seeds`: (seed, prompts) for
        consecutive prompts, each part sampled from its own seed's generator (`generate`)."""
        rows = [ids for ids in prompts for _ in range(params.n)]
        self._check_fits(rows, params)
        ids, mask = self._batch(rows)
        cache, cached = self._reusable_cache(rows[0]) if len(rows) == 1 else (None, 0)
        loop = DecodeLoop(self.model, ids, mask, params, self.eos_ids, self.pad_id, cache=cache, cached=cached, tokenizer=self.tokenizer, repeat=params.n, seeds=None if seeds is None else [(seed, count * params.n) for seed, count in seeds])
        stops = StopStrings(self.tokenizer, params.stop, self.special_ids)
        return _Run(self, loop, [TextAssembler(self.tokenizer, stops) for _ in rows], prompt_tokens(rows, params.n))

    def _keep(self, loop: DecodeLoop) -> None:
        """Remember a finished single-row call's cache for the next call to extend."""
        if loop.input_ids.shape[0] == 1 and loop.consistent and loop.cache is not None:
            self._previous = (loop.fed[0].tolist(), loop.input_ids.shape[1], loop.cache)

    def generate(self, prompts: list[Prompt], params: SamplingParams, seeds: list[tuple[int | None, int]] | None = None) -> list[list[Completion]]:
        """`params.n` completions for each prompt, all rows decoded in one batch. A prompt that is a
        string is raw text to continue (a completion, no chat template); a list of `{"role",
        "content"}` messages is a chat, rendered by the model's chat template with the assistant's turn opened.
        `seeds` (in place of `params.seed`): `(seed, count)` for each run of `count` prompts in turn,
        whose rows are drawn from that seed's own generator, as a call of those prompts alone with
        that seed draws them (`CoalescingEngine` merges seeded calls so): from the same logits in
        float32 (but for rounding), in bfloat16 or float16 from logits that drift with the batch."""
        check_prompts(prompts, params)
        encoded = [self.encode(p) for p in prompts]
        run = self._run(encoded, params, seeds)
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

    def stream(self, prompt: Prompt, params: SamplingParams) -> Generator[str, None, Completion]:
        """Text pieces of one completion of `prompt` (raw text or chat messages, as `generate` takes
        them) as they are decoded (`params.n` is taken as 1); the generator returns the whole
        `Completion` (`text`, token counts, `finish_reason`)."""
        check_prompts(prompt, params, one=True)
        run = self._run([self.encode(prompt)], params.replace(n=1))
        for _row, piece in run:
            yield piece
        return Completion(run.texts[0].text, run.prompt_tokens, run.counts[0], "stop" if run.done[0] else "length")

    def score(self, prompt: Prompt, continuations: list[str]) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens after the prompt."""
        return self.score_many([prompt], continuations)[0].logprobs

    def score_many(self, prompts: list[Prompt], continuations: list[str], embed: bool = False) -> list[Scored]:
        """Each continuation's log-likelihood after each prompt, and with `embed` each prompt's
        hidden-state embedding, from one forward pass per batch of prompts (and the continuations').

        Prompts are batched by length (left-padded); a continuation of one token is scored from the
        prompt's last logits, longer ones in passes after the batch's KV cache that feed their distinct
        prefixes as one prefix tree (as many together as `CONTINUATION_TOKENS` allows).
        """
        check_prompts(prompts)
        return self.score_encoded([self.encode(p) for p in prompts], continuations, embed)

    def score_encoded(self, heads: list[list[int]], continuations: list[str], embed: bool = False) -> list[Scored]:
        """`score_many` of prompts already tokenized (`encode`): for a caller that needed their
        lengths first, as the server's batches do."""
        tails = self.check_scored(heads, continuations)
        started = time.perf_counter()
        results: list[Scored | None] = [None] * len(heads)
        for batch in length_batches([len(h) for h in heads], SCORE_BATCH_TOKENS):
            check_stopped()  # before each batch's forward pass
            for index, scored in zip(batch, self._score_batch([heads[i] for i in batch], tails, embed)):
                results[index] = scored
        self.stats.record_scoring(len(heads), sum(len(h) for h in heads), time.perf_counter() - started)
        return results

    def check_scored(self, heads: list[list[int]], continuations: list[str]) -> list[list[int]]:
        """The continuations' tokens, once the prompts `heads` fit the context with each of them: a
        `ContinuationLengthError` when a continuation is what does not fit (the shortest prompt fits
        with the shortest continuation, not with the longest; or it alone fills the context), else a
        `ContextLengthError` for the prompt (the text)."""
        check_continuations(continuations)
        tails = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        if not tails or any(not t for t in tails):
            raise BadInputError("every continuation to score needs at least one token")
        longest_tail, shortest_head = max(len(t) for t in tails), min(len(h) for h in heads)
        if longest_tail >= self.context_length or shortest_head + min(len(t) for t in tails) <= self.context_length < shortest_head + longest_tail:
            at = max(range(len(tails)), key=lambda i: len(tails[i]))
            raise ContinuationLengthError(f"continuation {at} takes {longest_tail} tokens, too many for {self.name}'s {self.context_length}-token context with a prompt; shorten it", at, longest_tail)
        if max(len(h) for h in heads) + longest_tail > self.context_length:
            raise ContextLengthError(f"the text is longer than {self.name}'s {self.context_length}-token context; shorten it")
        return tails

    @property
    def embedding_size(self) -> int:
        """How many numbers `embed` gives a text: the size of the model's hidden state."""
        return self.model.get_input_embeddings().embedding_dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Each text's embedding, scaled to length 1: the last hidden layer's state at the end of
        `This sentence : "TEXT" means in one word:"` (PromptEOL, Jiang et al. 2023), where the model
        is about to sum the text up. On the topic data it found documents for short queries far
        better than the mean over the text's tokens (precision@10 0.74 against 0.47)."""
        check_texts(texts)
        return self.embed_encoded(self.embedded_rows(texts))

    def embedded_rows(self, texts: list[str]) -> list[list[int]]:
        """The token ids `embed` reads for each text; a `ContextLengthError` for the first too long,
        named by its place among `texts` (`index`) and by how much."""
        rows = [self._embedded_ids(t) for t in texts]
        over = next((i for i, r in enumerate(rows) if len(r) > self.context_length), None)
        if over is not None:
            error = ContextLengthError(
                f"a text takes {len(rows[over])} tokens but {self.name} holds {self.context_length} ({len(rows[over]) - self.context_length} too many); shorten it or split it"
            )
            error.index = over
            raise error
        return rows

    def embed_encoded(self, rows: list[list[int]], budget: int = SCORE_BATCH_TOKENS, run: Callable[..., Any] | None = None) -> list[list[float]]:
        """`embed` of texts already tokenized (`embedded_rows`): rows batched by length, `budget`
        tokens (padding included) a forward pass, and a row longer than `PREFILL_CHUNK` alone, fed
        in `PREFILL_CHUNK` pieces on one KV cache. `run(fn, *args)` runs each pass (the server: on
        its scheduler thread, between decode steps; by default here)."""
        run = run or (lambda fn, *args: fn(*args))
        started = time.perf_counter()
        vectors: list[list[float] | None] = [None] * len(rows)
        for batch in length_batches([len(r) for r in rows], budget, alone=PREFILL_CHUNK):
            if len(rows[batch[0]]) > PREFILL_CHUNK:
                pieces = _EmbedPieces(self, rows[batch[0]])
                while not pieces.done:
                    run(pieces.step)
                vectors[batch[0]] = pieces.vector
                continue
            for index, vector in zip(batch, run(self.embed_batch, [rows[i] for i in batch])):
                vectors[index] = vector
        self.stats.record_embedding(len(rows), sum(map(len, rows)), time.perf_counter() - started)
        return vectors

    def embed_batch(self, rows: list[list[int]]) -> list[list[float]]:
        """The embeddings of `rows` (`embedded_rows`) from one forward pass, left-padded."""
        import torch

        ids, mask = self._batch(rows)
        with torch.inference_mode():
            hidden = self.model.base_model(
                input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)
            ).last_hidden_state[:, -1]  # rows are left-padded: the last column is each row's end
            return _unit(hidden).tolist()

    def _embedded_ids(self, text: str) -> list[int]:
        return self.tokenizer(EMBED_PROMPT[0] + text + EMBED_PROMPT[1])["input_ids"]

    def _overflow(self, text: str) -> int:
        """How many tokens `embed` would read of `text` beyond the context (0: it fits)."""
        return max(len(self._embedded_ids(text)) - self.context_length, 0)

    def fitted(self, text: str) -> str:
        """`text` as `embed` can read it: whole where it fits the context, else cut from its end to
        the tokens that fit (the start kept, as ollama's `/api/embed` truncates). The cut falls
        where a token starts, so a character split in tokens is left out whole."""
        check_texts([text])
        over = self._overflow(text)
        if not over:
            return text
        keep, start = self._token_starts(text)
        keep, tries = keep - over, 0
        while keep > 0:  # tokens at the cut and around the prompt may merge otherwise: cut again, by more each time
            cut = text[: start(keep)]
            over = self._overflow(cut)
            if not over:
                break
            keep, tries = keep - (over << tries), tries + 1
        if keep <= 0 or not cut:
            raise ContextLengthError(f"{self.name}'s {self.context_length}-token context holds no text to embed")
        if not cut.strip():
            raise ContextLengthError(
                f"the start of the text that fits {self.name}'s {self.context_length}-token context is white space only; "
                "strip the white space from the text's start"
            )
        return cut

    def _token_starts(self, text: str) -> tuple[int, Callable[[int], int]]:
        """How many tokens `text` takes, and where in it token k starts: the fast tokenizer's
        offsets, else the length of the first k tokens decoded (a cut there fits or is cut again)."""
        if getattr(self.tokenizer, "is_fast", False):
            starts = [start for start, _ in self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
            return len(starts), starts.__getitem__
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return len(ids), lambda k: len(self.tokenizer.decode(ids[:k]))

    def _score_batch(self, heads: list[list[int]], tails: list[list[int]], embed: bool) -> list[Scored]:
        import torch
        from transformers import DynamicCache

        ids, mask = self._batch(heads)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        keyword = cache_keyword(self.model)
        rows = len(heads)
        with torch.inference_mode():
            cache = DynamicCache()
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                output_hidden_states=embed, logits_to_keep=1, **{keyword: cache},
            )
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            firsts = torch.tensor([t[0] for t in tails], device=self.device)
            scores = first[:, firsts].clone()  # [rows, k]: a one-token tail's whole score
            embeddings = pool_hidden_states(out.hidden_states, mask) if embed else None
            for group in _tail_groups(tails, max(1, CONTINUATION_TOKENS // rows)):
                if self.prefix_tree:
                    self._tree(cache, mask, [tails[j] for j in group], group, scores, keyword)
                else:
                    self._whole(ids, mask, [tails[j] for j in group], group, scores)
        return [
            Scored(scores[i].tolist(), embeddings[i].tolist() if embeddings is not None else None)
            for i in range(rows)
        ]

    @functools.cached_property
    def prefix_tree(self) -> bool:
        """Whether continuations may be scored as a prefix tree under a 4D mask: every layer attends
        to the whole prompt (no sliding window, which a 4D mask would override) and positions are
        rotary (an ALiBi model builds its bias from a 2D mask)."""
        config = self.model.config
        layer_types = getattr(config, "layer_types", None)
        full = all(kind == "full_attention" for kind in layer_types) if layer_types else getattr(config, "sliding_window", None) is None
        return full and hasattr(self.model.base_model, "rotary_emb")

    def _whole(self, ids, mask, tails: list[list[int]], columns: list[int], scores) -> None:
        """Add each tail's tokens after the first to `scores[:, columns]`, running each row's prompt
        and the tail whole (for models `prefix_tree` does not hold for)."""
        import torch

        for tail, column in zip(tails, columns):
            fed = torch.tensor(tail[:-1], device=self.device).expand(ids.shape[0], -1)
            full_mask = torch.cat([mask, torch.ones_like(fed)], dim=-1)
            logits = self.model(
                input_ids=torch.cat([ids, fed], dim=-1), attention_mask=full_mask,
                position_ids=(full_mask.cumsum(-1) - 1).clamp(min=0), logits_to_keep=len(tail) - 1,
            ).logits.float()
            targets = torch.tensor(tail[1:], device=self.device).expand(ids.shape[0], -1)
            scores[:, column] += (logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)).sum(-1)

    def _tree(self, cache, mask, tails: list[list[int]], columns: list[int], scores, keyword: str) -> None:
        """Add each tail's tokens after the first to `scores[:, columns]`, after each row's prompt in
        `cache`, in one pass: the tails' distinct prefixes are packed into one sequence (a prefix tree),
        each token at its position in prompt + tail and attending only the row's prompt and its own
        prefix. The cache is cut back to the prompt afterwards."""
        import torch

        nodes: dict[tuple[int, ...], int] = {}  # prefixes fed, parents before children
        for tail in tails:
            for end in range(1, len(tail)):
                nodes.setdefault(tuple(tail[:end]), len(nodes))
        count, width = len(nodes), mask.shape[1]
        sees = torch.zeros((count, count), dtype=torch.bool)
        for prefix, at in nodes.items():
            sees[at, [nodes[prefix[:end]] for end in range(1, len(prefix) + 1)]] = True
        picks = [(nodes[tuple(tail[:end])], tail[end], column) for tail, column in zip(tails, columns) for end in range(1, len(tail))]
        node, target, column = (torch.tensor(v, device=self.device) for v in zip(*picks))
        rows = mask.shape[0]
        allowed = torch.cat([mask.bool()[:, None, :].expand(rows, count, width), sees.to(self.device).expand(rows, count, count)], dim=-1)
        dtype = self.model.dtype
        bias = torch.zeros(allowed.shape, dtype=dtype, device=self.device).masked_fill_(~allowed, torch.finfo(dtype).min)
        depth = torch.tensor([len(prefix) - 1 for prefix in nodes], device=self.device)
        logits = self.model(
            input_ids=torch.tensor([prefix[-1] for prefix in nodes], device=self.device).expand(rows, count),
            attention_mask=bias[:, None],  # [rows, 1, fed, prompt + fed], additive as eager and sdpa attention take it
            position_ids=mask.sum(-1, keepdim=True) + depth,
            use_cache=True,
            **{keyword: cache},
        ).logits.float()
        cache.crop(-count)
        picked = logits[:, node, target] - torch.logsumexp(logits, dim=-1)[:, node]  # [rows, picks]
        scores.index_add_(1, column, picked)


def _unit(hidden) -> "torch.Tensor":
    """Each row of `hidden` as float32, scaled to length 1."""
    import torch

    return torch.nn.functional.normalize(hidden.float(), dim=-1)


class _EmbedPieces:
    """One long row's embedding, fed `PREFILL_CHUNK` tokens a `step()` on one KV cache (as chat
    prefill), so a caller can run the pieces apart; `vector` once `done`."""

    def __init__(self, engine: LocalEngine, row: list[int]):
        self.engine, self.row = engine, row
        self.at = 0
        self.cache = None
        self.vector: list[float] | None = None

    @property
    def done(self) -> bool:
        return self.at >= len(self.row)

    def step(self) -> None:
        import torch
        from transformers import DynamicCache

        engine = self.engine
        end = min(self.at + PREFILL_CHUNK, len(self.row))
        if self.cache is None:
            self.cache = DynamicCache()
        with torch.inference_mode():
            hidden = engine.model.base_model(
                input_ids=torch.tensor([self.row[self.at : end]], device=engine.device),
                position_ids=torch.arange(self.at, end, device=engine.device)[None],
                use_cache=True,
                **{cache_keyword(engine.model.base_model): self.cache},
            ).last_hidden_state[:, -1]
            if end == len(self.row):
                self.vector = _unit(hidden)[0].tolist()
                self.cache = None
        self.at = end


def _tail_groups(tails: list[list[int]], budget: int) -> list[list[int]]:
    """Indices of the `tails` of more than one token, grouped so that each group feeds at most `budget`
    tokens (its tails' distinct prefixes); a tail longer than that gets a group alone. Tails are taken
    in token order, so they are packed alike whatever order they come in (classify's labels in any
    order get the same scores: in bfloat16 a prefix tree packed otherwise rounds otherwise)."""
    groups: list[list[int]] = []
    fed: set[tuple[int, ...]] = set()
    for index in sorted(range(len(tails)), key=tails.__getitem__):
        tail = tails[index]
        if len(tail) == 1:
            continue  # scored from the prompt's last logits
        prefixes = {tuple(tail[:end]) for end in range(1, len(tail))}
        if not groups or len(fed | prefixes) > budget:
            groups.append([])
            fed = set()
        groups[-1].append(index)
        fed |= prefixes
    return groups


class _Run:
    """One batch being decoded: iterating yields (row, new text); texts and counts fill as it goes.
    A call told to stop (`base.stop_when`) raises `asyncio.CancelledError` after the token decoded."""

    def __init__(self, engine: LocalEngine, loop: DecodeLoop, texts: list[TextAssembler], prompt_tokens: int):
        self.engine = engine
        self.prompt_tokens = prompt_tokens
        self.loop = loop
        self.texts = texts
        self.counts = [0] * len(texts)
        self.done = [False] * len(texts)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        loop, eos = self.loop, set(self.engine.eos_ids)
        started = time.perf_counter()
        first = None
        tick, steps = ticks(), 0  # a progress callback's, told after each step; none (no Python call) without one
        try:
            check_stopped()  # told to stop before its prompts' forward pass (prefill, the longest step) begins
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
                check_stopped()  # before the next token's forward pass
                if tick is not None:
                    steps += 1
                    tick(steps, loop.params.max_tokens, sum(self.done), len(self.done))
            for row, text in enumerate(self.texts):
                piece = text.flush()
                if piece:
                    yield row, piece
        finally:
            self.engine._keep(loop)
            elapsed = time.perf_counter() - started
            self.engine.stats.record(self.prompt_tokens, sum(self.counts), first or elapsed, elapsed)
