"""Sampling settings and the one decode loop every generator runs through.

The loop is small pure steps: transformers' logits processors shape the scores, a token is picked,
and `TextAssembler` turns token ids into text pieces (incremental detokenization, stop strings held
back while they might still match, EOS). torch is imported inside functions so the CLI can build
`SamplingParams` without it.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import inspect
import itertools
import json
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from ..errors import BadInputError, OptionError, did_you_mean
from ..json_schemas import names_file, read_schema

if TYPE_CHECKING:
    import torch


NUMBERS = {
    "temperature": False, "top_p": False, "top_k": True, "min_p": False, "max_tokens": True, "n": True,
    "repetition_penalty": False, "frequency_penalty": False, "presence_penalty": False,
}  # name: whole number?
DRAWING = ("top_p", "top_k", "min_p", "seed")  # settings of the draw, which greedy decoding never makes
MIN_SEED, MAX_SEED = -(2**63), 2**63 - 1  # a seed is any int64, as OpenAI's
MAX_N = 128  # completions of one prompt at once (OpenAI's bound): a local model decodes them all as one batch, KV cache and logits for each
GREEDY_BELOW = 1e-5  # a lower temperature picks greedily: the logits divided by 1e-40 are inf, and sampling them fails


def number(text: str) -> int | float | str:
    """`text` as the number it spells ("5" -> 5, "0.7" -> 0.7, " 42 " -> 42), else as it is (refused
    later): a number from a command line, a form or a JSON string, as OpenAI's API takes them."""
    for kind in (int, float):
        try:
            return kind(text.strip())
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. `temperature=0` is greedy; `top_k=0`, `top_p=1` and `min_p=0` switch those
    filters off; `frequency_penalty`, `presence_penalty` (over the tokens generated) and `logit_bias`
    ({token id: -100 to 100}) are OpenAI's; `json_schema` (a JSON Schema as a dict, or as `--schema` takes it: JSON text, a .json file or
    fields like "name, age int") holds the answer to JSON that the schema allows. Numbers may be
    given as text ("5")."""

    temperature: float = 0.2
    top_p: float = 0.9
    top_k: int = 0
    max_tokens: int = 256
    stop: tuple[str, ...] = field(default=())
    seed: int | None = None
    n: int = 1
    repetition_penalty: float = 1.0
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: dict | None = field(default=None, hash=False)
    json_schema: dict | None = field(default=None, hash=False, metadata={"file": names_file})  # a .json path is a file (`aigc serve` refuses it)

    def __new__(cls, *args: Any, **settings: Any) -> "SamplingParams":
        """A keyword that names no setting is a `BadInputError`, as in `from_settings` and `replace`,
        not dataclasses' TypeError (`__init__` takes the arguments then)."""
        cls._check_known(settings)
        return super().__new__(cls)

    def __post_init__(self) -> None:
        for name in (*NUMBERS, "seed"):  # text from a form or a command line: "5" is 5
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, number(getattr(self, name)))
        if isinstance(self.json_schema, str):
            object.__setattr__(self, "json_schema", read_schema(self.json_schema))
        elif isinstance(self.json_schema, type) and callable(getattr(self.json_schema, "model_json_schema", None)):  # a pydantic model, as llm and the openai SDK take it
            object.__setattr__(self, "json_schema", self.json_schema.model_json_schema())
        for name, whole in NUMBERS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and isinstance(value, float) and not value.is_integer()):
                raise OptionError(name, f"must be {'a whole number' if whole else 'a number'}, got {value!r}")
            if whole:
                object.__setattr__(self, name, int(value))
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise OptionError("seed", f"must be an integer, got {self.seed!r}")
        stops = (self.stop,) if isinstance(self.stop, str) else self.stop  # one string is one stop
        if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) for s in stops):
            raise OptionError("stop", f"must be a string or a list of strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(s for s in stops if s))
        object.__setattr__(self, "logit_bias", _checked_bias(self.logit_bias))
        if self.json_schema is not None:
            try:
                valid = isinstance(self.json_schema, dict) and bool(json.dumps(self.json_schema))
            except (TypeError, ValueError):
                valid = False
            if not valid:
                raise OptionError("json_schema", f"must be a JSON Schema (a JSON object), got {type(self.json_schema).__name__}")
        checks = [
            ("temperature", 0 <= self.temperature <= 2, f"must be between 0 and 2 (0 = greedy), got {self.temperature}"),
            ("top_p", 0 < self.top_p <= 1, f"must be in (0, 1] (1 = off), got {self.top_p}"),
            ("top_k", self.top_k >= 0, f"must be 0 (off) or a positive number of tokens, got {self.top_k}"),
            ("max_tokens", self.max_tokens >= 1, f"must be at least 1, got {self.max_tokens}"),
            ("n", 1 <= self.n <= MAX_N, f"must be between 1 and {MAX_N} (for more, make several calls), got {self.n}"),
            ("repetition_penalty", 0 < self.repetition_penalty <= 3, f"must be in (0, 3] (1 = off), got {self.repetition_penalty}"),
            ("min_p", 0 <= self.min_p < 1, f"must be in [0, 1) (0 = off), got {self.min_p}"),
            ("frequency_penalty", -2 <= self.frequency_penalty <= 2, f"must be between -2 and 2 (0 = off), got {self.frequency_penalty}"),
            ("presence_penalty", -2 <= self.presence_penalty <= 2, f"must be between -2 and 2 (0 = off), got {self.presence_penalty}"),
            ("seed", self.seed is None or MIN_SEED <= self.seed <= MAX_SEED, f"must be an int64, from {MIN_SEED} to {MAX_SEED}, got {self.seed}"),
        ]
        for option, ok, problem in checks:
            if not ok:
                raise OptionError(option, problem)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "SamplingParams":
        """Params from a mapping of settings; a key that names no setting is a `BadInputError` (`__new__`)."""
        return cls(**settings)

    def replace(self, **changes) -> "SamplingParams":
        """A copy with the given fields changed; `None` values leave a field as it is, and a name that
        is no setting is a `BadInputError`."""
        self._check_known(changes)
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def _check_known(cls, settings: dict[str, Any]) -> None:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(settings) - known))
        if unknown:
            raise BadInputError(f"unknown sampling setting {', '.join(unknown)}{did_you_mean(unknown, known)}; known: {', '.join(sorted(known))}")

    @property
    def greedy(self) -> bool:
        """Temperature 0, or one so small that dividing the logits by it would overflow (as vLLM, below 1e-5)."""
        return self.temperature < GREEDY_BELOW


_init = inspect.signature(SamplingParams.__init__)
SamplingParams.__signature__ = _init.replace(parameters=list(_init.parameters.values())[1:], return_annotation=inspect.Signature.empty)  # help() and inspect show the fields, not `__new__`'s (*args, **settings)
del _init


def _checked_bias(bias: Any) -> dict[int, float] | None:
    """`logit_bias` as {token id: bias}; ids may come as text ("1234"), as OpenAI's JSON has them."""
    if not bias:
        return None
    if not isinstance(bias, dict):
        raise OptionError("logit_bias", f'must map token ids to numbers, e.g. {{"1234": -100}}, got {bias!r}')
    checked = {}
    for key, value in bias.items():
        token, amount = number(key) if isinstance(key, str) else key, number(value) if isinstance(value, str) else value
        if isinstance(token, bool) or not isinstance(token, int) or token < 0:
            raise OptionError("logit_bias", f"keys must be token ids (whole numbers from 0), got {key!r}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not -100 <= amount <= 100:
            raise OptionError("logit_bias", f"values must be numbers from -100 to 100, got {value!r} for token {token}")
        checked[token] = float(amount)
    return checked


def build_processors(params: SamplingParams, tokenizer=None, prompt_mask: "torch.Tensor | None" = None):
    """A `LogitsProcessorList` holding only the steps that change anything for these settings; a
    JSON schema's mask (it needs the model's `tokenizer`) comes first, so sampling picks among the
    tokens it allows. `prompt_mask` is the attention mask of a left-padded batch of prompts: the
    repetition penalty then counts only each row's own tokens."""
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
    )

    steps = LogitsProcessorList()
    if params.json_schema is not None:
        from .structured import SchemaMask

        steps.append(SchemaMask(tokenizer, params.json_schema))
    if params.logit_bias:
        steps.append(LogitBias(params.logit_bias))
    if params.repetition_penalty != 1.0:
        penalty = RepetitionPenaltyLogitsProcessor(float(params.repetition_penalty))  # it takes only a float: SamplingParams(repetition_penalty=2) failed
        steps.append(Unpadded(penalty, prompt_mask) if prompt_mask is not None and not bool(prompt_mask.all()) else penalty)
    if params.frequency_penalty or params.presence_penalty:
        steps.append(OccurrencePenalty(params.frequency_penalty, params.presence_penalty))
    if not params.greedy:
        if params.temperature != 1.0:
            steps.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k > 0:
            steps.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            steps.append(TopP(params.top_p))
        if params.min_p > 0:
            steps.append(MinPLogitsWarper(params.min_p))
    return steps


TOP_P_CANDIDATES = 256  # the likeliest tokens `TopP` looks at before it sorts the whole vocabulary


class TopP:
    """transformers' `TopPLogitsWarper` (the likeliest tokens whose probabilities reach `top_p`, at
    least one), taken from the `TOP_P_CANDIDATES` likeliest tokens where they reach it, and from
    the whole vocabulary sorted only where they do not. Sorting it was the larger part of a sampled
    decoding step: 84 ms against 1.5 ms for headline's 9 rows of 49,152 tokens (one thread, same tokens kept)."""

    def __init__(self, top_p: float):
        from transformers import TopPLogitsWarper

        self.top_p = top_p
        self.whole = TopPLogitsWarper(top_p)

    def __call__(self, input_ids: "torch.Tensor", scores: "torch.Tensor") -> "torch.Tensor":
        import torch

        probs = scores.softmax(dim=-1)
        top, ids = probs.topk(min(TOP_P_CANDIDATES, scores.shape[-1]), dim=-1)
        reached = top.cumsum(dim=-1)
        if not bool((reached[:, -1] >= self.top_p).all()):  # a flat distribution (or NaN): the whole vocabulary
            return self.whole(input_ids, scores)
        dropped = torch.ones_like(scores, dtype=torch.bool).scatter_(1, ids, reached - top >= self.top_p)  # likelier tokens reach top_p already
        return scores.masked_fill(dropped, float("-inf"))


class LogitBias:
    """OpenAI's `logit_bias`: a number added to the logits of given token ids (-100 all but bans a
    token, 100 all but forces it)."""

    def __init__(self, bias: dict[int, float]):
        self.bias = bias
        self.row: "torch.Tensor | None" = None  # the biases over the whole vocabulary, made at the first step

    def __call__(self, input_ids: "torch.Tensor", scores: "torch.Tensor") -> "torch.Tensor":
        if self.row is None:
            size = scores.shape[-1]
            unknown = max(self.bias)
            if unknown >= size:
                raise OptionError("logit_bias", f"token id {unknown} is not in the model's vocabulary (0-{size - 1})")
            self.row = scores.new_zeros(size)
            self.row[list(self.bias)] = scores.new_tensor(list(self.bias.values()))
        return scores + self.row


class Unpadded:
    """A processor that looks at which tokens each row holds (transformers'
    `RepetitionPenaltyLogitsProcessor`) shown the rows without their left padding: each pad is
    replaced by the row's first own token, which the row holds anyway. The pad id is often the EOS
    (SmolLM2's), which the penalty would otherwise lower in every shorter row of a batch, so that a
    prompt batched with a longer one stopped later than alone (as in transformers' `generate`, which
    feeds it the padded ids; text-generation-inference leaves padding out too)."""

    def __init__(self, step, prompt_mask: "torch.Tensor"):
        import torch

        self.step = step
        pads = (prompt_mask == 0).sum(-1)
        self.padding = torch.arange(prompt_mask.shape[1], device=prompt_mask.device) < pads[:, None]
        self.first = pads.clamp(max=prompt_mask.shape[1] - 1)[:, None]  # the first own token's column

    def __call__(self, input_ids: "torch.Tensor", scores: "torch.Tensor") -> "torch.Tensor":
        import torch

        width = self.padding.shape[1]
        prompts = input_ids[:, :width]
        prompts = torch.where(self.padding, prompts.gather(1, self.first), prompts)
        return self.step(torch.cat([prompts, input_ids[:, width:]], dim=-1), scores)


class OccurrencePenalty:
    """OpenAI's frequency and presence penalties: a token's logit is lowered by `frequency` for each
    time it was generated so far, and by `presence` once it was. The prompt does not count: the
    tokens after those seen at the first step are the generated ones."""

    def __init__(self, frequency: float, presence: float):
        self.frequency, self.presence = frequency, presence
        self.start: int | None = None

    def __call__(self, input_ids: "torch.Tensor", scores: "torch.Tensor") -> "torch.Tensor":
        if self.start is None:
            self.start = input_ids.shape[1]
        generated = input_ids[:, self.start :]
        if not generated.shape[1]:
            return scores
        counts = scores.new_zeros(scores.shape).scatter_add_(1, generated, scores.new_ones(generated.shape))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


SEED_BOUND = 2**63  # derived seeds for a local model (a seed is an int64; make_generator takes any)


def derived_seed(seed: int | None, part: int, bound: int) -> int | None:
    """The seed of part (or choice) `part` of a seeded request: `seed` itself for part 0, else one
    drawn from `seed` and `part` below `bound` (not seed + part, which a caller's next round may
    be), so a seeded request gives the same answers each time; None (no seed) stays None. The bound
    is what takes the seed: a local model any 64-bit one (SEED_BOUND), an OpenAI-compatible server
    a signed 32-bit one (some servers hold it in an int32)."""
    if seed is None or part == 0:
        return seed
    return random.Random(f"{seed}/{part}").randrange(bound)


CPU_STATE_BYTES = 5056  # torch's CPU generator state (torch 2.x), whose Mersenne Twister words make_generator sets


def make_generator(seed: int | None, device) -> "torch.Generator":
    """A torch RNG seeded with `seed` (any integer, taken modulo 2**64, so `seed + attempt` is one
    too); without a seed, a fresh random one. Every 64-bit seed has its own stream: torch's CPU
    generator reads only a seed's low 32 bits, so a larger one sets its Mersenne Twister state
    from all 64 (as Python's `random.seed` does); a seed below 2**32 gives torch's own stream."""
    import torch

    seed = seed % 2**64 if seed is not None else random.SystemRandom().randrange(2**64)
    gen = torch.Generator(device=device).manual_seed(seed)
    if gen.device.type == "cpu" and seed >= 2**32:
        state = gen.get_state()  # torch's CPUGeneratorImplState: seed (u64), left, seeded (i32), next (u64), state (624 x u64), ...
        if state.numel() != CPU_STATE_BYTES:  # a torch whose layout is another: fold the high bits in instead
            return gen.manual_seed((seed ^ (seed >> 32)) & 0xFFFFFFFF)
        words = torch.tensor(random.Random(seed).getstate()[1][:624], dtype=torch.int64)  # init_by_array([low, high])
        state[24 : 24 + 624 * 8] = words.view(torch.uint8)
        state[8:12] = torch.tensor([1], dtype=torch.int32).view(torch.uint8)  # left: twist before the first draw
        state[16:24] = 0  # next
        gen.set_state(state)
    return gen


def pick_tokens(scores: "torch.Tensor", params: SamplingParams, gen: "torch.Generator") -> "torch.Tensor":
    """One token id per row: argmax when greedy, else a draw from the softmax (a logit a setting made
    infinite, as a repetition penalty near 0 does, counts as the largest number, not as NaN)."""
    import torch

    if params.greedy:
        return scores.argmax(dim=-1)
    probs = torch.softmax(scores.nan_to_num(nan=float("-inf"), posinf=torch.finfo(scores.dtype).max, neginf=float("-inf")), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=gen).squeeze(1)


def cache_keyword(model) -> str:
    """`cache` in newer transformers, `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


PROMPT_CHUNK = 512  # prompt tokens (padding included) a forward pass of `prompt_logprobs` feeds: at most this many x vocabulary logits exist at once


def _here(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def prompt_logprobs(model, ids: Sequence[int], top: int = 0, chunk: int | None = None, run: Callable[..., Any] = _here):
    """Each prompt token's log-probability given the tokens before it, and the `top` likeliest tokens.

    Returns `(chosen, best)` for tokens 1..len(ids)-1 (the first token has nothing before it):
    `chosen[i]` is a float, `best[i]` a list of `(token id, logprob)`, likeliest first. The model's
    own distribution (no temperature or filters). The prompt runs in `chunk`-token pieces (PROMPT_CHUNK) on one
    KV cache (`PromptScorer`), so at most `chunk` x vocabulary logits exist at once; `run(fn)` runs
    each piece (the server: a scheduler call each, with decode steps between).
    """
    scorer = PromptScorer(model, ids, top, chunk)
    while not scorer.done:
        run(scorer.step)
    return scorer.chosen, scorer.best


class PromptScorer:
    """`prompt_logprobs` a piece a `step()`, so a caller can run the pieces apart (the server: one
    a scheduler call, with decode steps between); `chosen` and `best` grow with each."""

    def __init__(self, model, ids: Sequence[int], top: int = 0, chunk: int | None = None):
        self.model, self.ids, self.top, self.chunk = model, ids, top, chunk or PROMPT_CHUNK
        self.at = 0
        self.cache = None
        self.chosen: list[float] = []
        self.best: list[list[tuple[int, float]]] = []

    @property
    def done(self) -> bool:
        return self.at >= len(self.ids) - 1

    def step(self) -> None:
        import torch
        from transformers import DynamicCache

        model, start = self.model, self.at
        if self.cache is None:
            self.cache = DynamicCache()
        fed = list(self.ids[start : min(start + self.chunk, len(self.ids) - 1)])
        with torch.inference_mode():
            logits = model(
                input_ids=torch.tensor([fed], device=model.device),
                position_ids=torch.arange(start, start + len(fed), device=model.device)[None],
                use_cache=True,
                **{cache_keyword(model): self.cache},
            ).logits[0]
            picked, likeliest = _picked(logits, self.ids[start + 1 : start + 1 + len(fed)], self.top)
        self.chosen += picked
        self.best += likeliest
        self.at = start + len(fed)
        if self.done:
            self.cache = None


def left_padded(rows: list[Sequence[int]], pad_id: int, device) -> tuple["torch.Tensor", "torch.Tensor"]:
    """`rows` as one batch of input ids padded on the left with `pad_id`, and its attention mask."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def prompt_logprobs_many(model, rows: list[Sequence[int]], top: int = 0, run: Callable[..., Any] = _here) -> list[tuple[list[float], list[list[tuple[int, float]]]]]:
    """`prompt_logprobs` of each row, from one forward pass over the rows left-padded (a single
    row: `prompt_logprobs`, in pieces); the caller keeps rows x longest row within `PROMPT_CHUNK`.
    `run(fn, *args)` runs the model's work, as `prompt_logprobs`'."""
    if len(rows) == 1:
        return [prompt_logprobs(model, rows[0], top, run=run)]
    return run(_logprobs_batch, model, rows, top)


def _logprobs_batch(model, rows: list[Sequence[int]], top: int) -> list[tuple[list[float], list[list[tuple[int, float]]]]]:
    import torch

    fed = [list(row[:-1]) for row in rows]
    width = max(len(f) for f in fed)
    if not width:
        return [([], []) for _ in rows]
    ids, mask = left_padded(fed, 0, model.device)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=False).logits
        return [_picked(logits[i, width - len(f) :], row[1:], top) if f else ([], []) for i, (f, row) in enumerate(zip(fed, rows))]


def _picked(logits: "torch.Tensor", targets: Sequence[int], top: int) -> tuple[list[float], list[list[tuple[int, float]]]]:
    """The log-probabilities of `targets` under `logits` (one row per target), and the `top` likeliest tokens at each."""
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    chosen = logprobs.gather(1, torch.tensor(list(targets), device=logits.device)[:, None]).squeeze(1).tolist()
    if top <= 0:
        return chosen, [[] for _ in chosen]
    values, indices = logprobs.topk(top, dim=-1)
    return chosen, [list(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]


# A single row is prefilled in pieces of this many tokens, starting at multiples of it, so that a
# cache reused from an earlier call (cut at such a multiple) holds exactly the numbers a fresh
# prefill computes: in bfloat16, prefilling a prompt in other pieces changes the greedy answer.
# Each piece costs a forward pass (bfloat16 weights are repacked for each), so pieces are large:
# a prompt of up to 512 tokens is one pass, as before.
PREFILL_CHUNK = 512


class DecodeLoop:
    """Prefill a left-padded batch, then yield one tensor of next-token ids per step.

    Rows come in groups of `repeat` copies of one prompt (`n` samples of it): each prompt is
    prefilled once, and its KV cache and first logits are copied to its rows.

    Rows finish on EOS or when `finish(row)` is called (a stop string matched); finished rows
    keep producing the pad id. A `cache` that already holds the first `cached` tokens of a
    single-row input (a multiple of `PREFILL_CHUNK`) is extended instead of prefilling them again.
    `tokenizer` is needed for a JSON schema. After each forward pass the
    cache holds exactly `self.fed`; `self.consistent` is False while a forward pass is under way
    (an interrupt there leaves the cache half-updated).
    """

    def __init__(
        self,
        model,
        input_ids,
        attention_mask,
        params: SamplingParams,
        eos_ids: Sequence[int],
        pad_id: int,
        cache=None,
        cached: int = 0,
        tokenizer=None,
        repeat: int = 1,
        seeds: Sequence[tuple[int | None, int]] | None = None,
    ):
        import torch

        self.model = model
        self.params = params
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        self.eos = torch.tensor(sorted(set(eos_ids)), device=input_ids.device)
        self.pad_id = pad_id
        self.finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        self.processors = build_processors(params, tokenizer, attention_mask)
        self.gen = make_generator(params.seed, input_ids.device)
        self.parts = None  # `seeds`: (seed, rows) for consecutive rows, each part drawn from its own generator, as alone
        if seeds is not None and not params.greedy:
            starts = [0, *itertools.accumulate(rows for _, rows in seeds)]
            self.parts = [(slice(start, end), make_generator(seed, input_ids.device)) for (seed, _), start, end in zip(seeds, starts, starts[1:])]
        self.cache = cache
        self.cached = cached
        self.fed = input_ids[:, :cached]
        self.repeat = repeat
        self.consistent = True

    def finish(self, row: int) -> None:
        """End `row` (a stop string matched); in inference mode, so a loop begun in the caller's
        `torch.inference_mode()`, whose `finished` is an inference tensor, is ended outside it too."""
        import torch

        with torch.inference_mode():
            self.finished[row] = True

    def __iter__(self) -> Iterator["torch.Tensor"]:
        """The steps, each run in inference mode; the mode is left before each is handed over, so
        the caller's own torch code (between two pieces of a paused stream) keeps its gradients."""
        import torch

        steps = self._steps()
        while True:
            with torch.inference_mode():
                step = next(steps, None)
            if step is None:
                return
            yield step

    def _steps(self) -> Iterator["torch.Tensor"]:
        import torch
        from transformers import DynamicCache

        if self.cache is None:
            self.cache = DynamicCache()
        cache_arg = {cache_keyword(self.model): self.cache}
        positions = (self.attention_mask.cumsum(-1) - 1).clamp(min=0)
        seen = self.input_ids
        first = self.cached  # where the first step's input starts
        if seen.shape[0] == 1:  # every piece but the last, which the first step feeds
            first = max(self.cached, (seen.shape[1] - 1) // PREFILL_CHUNK * PREFILL_CHUNK)
            for start in range(self.cached, first, PREFILL_CHUNK):
                end = start + PREFILL_CHUNK
                self.consistent = False
                self.model(input_ids=seen[:, start:end], attention_mask=self.attention_mask[:, :end], position_ids=positions[:, start:end], use_cache=True, **cache_arg, logits_to_keep=1)
                self.fed, self.consistent = seen[:, :end], True
        mask, position_ids, step_ids = self.attention_mask, positions[:, first:], seen[:, first:]
        for step in range(self.params.max_tokens):
            self.consistent = False
            rows = slice(None, None, self.repeat if step == 0 else 1)  # the prefill feeds each prompt once
            out = self.model(
                input_ids=step_ids[rows],
                attention_mask=mask[rows],
                position_ids=position_ids[rows],
                use_cache=True,
                **cache_arg,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1, :]
            if step == 0 and self.repeat > 1:
                self.cache.batch_repeat_interleave(self.repeat)
                logits = logits.repeat_interleave(self.repeat, dim=0)
            self.fed, self.consistent = seen, True
            scores = self.processors(seen, logits.float())
            next_ids = pick_tokens(scores, self.params, self.gen) if self.parts is None else torch.cat([pick_tokens(scores[rows], self.params, gen) for rows, gen in self.parts])
            next_ids = torch.where(self.finished, torch.full_like(next_ids, self.pad_id), next_ids)
            yield next_ids
            self.finished |= torch.isin(next_ids, self.eos)
            if bool(self.finished.all()):
                return
            step_ids = next_ids[:, None]
            seen = torch.cat([seen, step_ids], dim=-1)
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            position_ids = position_ids[:, -1:] + 1


@functools.lru_cache(maxsize=64)
def _borders(stop: str) -> tuple[int, ...]:
    """For each start `stop[:i + 1]`, the length of its longest proper start that it also ends with
    (Knuth-Morris-Pratt's failure function); kept for the stop strings used last."""
    borders, border = [0] * len(stop), 0
    for i in range(1, len(stop)):
        while border and stop[i] != stop[border]:
            border = borders[border - 1]
        if stop[i] == stop[border]:
            border += 1
        borders[i] = border
    return tuple(borders)


class _StopStart:
    """How long a start of one stop string the text ends with, followed as the text grows: a new
    character costs O(1) steps on average, however long the stop string (no rescan of the tail)."""

    def __init__(self, stop: str):
        self.stop, self.borders, self.matched = stop, _borders(stop), 0

    def feed(self, text: str) -> int:
        """Take the text's new characters; return the length of the stop string's start it ends
        with, short of a whole stop string (that one is cut off, not held back)."""
        stop, borders, matched = self.stop, self.borders, self.matched
        for char in text:
            if matched == len(stop):
                matched = borders[matched - 1]
            while matched and stop[matched] != char:
                matched = borders[matched - 1]
            if stop[matched] == char:
                matched += 1
        self.matched = matched
        return min(matched, len(stop) - 1)


class StopStrings:
    """A call's stop strings, read once for all its rows. One that holds a control token
    (`<|im_end|>`, `<|im_end|>\\n`, `</s> END`) matches the text as decoded with control tokens
    kept: the answer's text leaves them out, so it could never match there (as vLLM's never do).
    The others match the answer's text as it is. The end-of-sequence token ends a row before any
    stop string sees it."""

    def __init__(self, tokenizer, stops: Sequence[str] = (), special_ids: Sequence[int] = ()):
        self.tokenizer = tokenizer
        self.all = tuple(stops)
        self.special = set(special_ids)
        spelt = {stop for stop in self.all if self.special and self.special.intersection(tokenizer(stop, add_special_tokens=False)["input_ids"])}
        self.plain = tuple(stop for stop in self.all if stop not in spelt)
        self.controlled = tuple(stop for stop in self.all if stop in spelt)
        self._spellings: dict[int, str] = {}

    def spelling(self, token: int) -> str:
        """A control token's text, as a stop string spells it."""
        if token not in self._spellings:
            self._spellings[token] = self.tokenizer.decode([token], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return self._spellings[token]


class TextAssembler:
    """Turns one row's token ids into text: incremental detokenization and stop strings.

    `push(token)` returns the new text that is safe to show; stop strings are cut off and never
    shown (kept, the text ending with the one found, where `keep_stops`), and a partial stop string
    is held back until it matches or cannot match any more. Control tokens (`special_ids`) are not
    text; a stop string that holds one (`<|im_end|>\\n`) matches where the tokens spell it with the
    control token's text (`StopStrings`; pass one, which holds its `special_ids`, to read a call's
    stop strings once for its rows).
    """

    def __init__(self, tokenizer, stops: Sequence[str] | StopStrings = (), special_ids: Sequence[int] = (), keep_stops: bool = False):
        if isinstance(stops, StopStrings) and special_ids:
            raise TypeError("give special_ids to the StopStrings, not beside one")
        self.tokenizer = tokenizer
        self.stop_strings = stops if isinstance(stops, StopStrings) else StopStrings(tokenizer, stops, special_ids)
        self.keep_stops = keep_stops
        self.starts = [_StopStart(stop) for stop in self.stop_strings.plain if stop]
        self.spelt_starts = [_StopStart(stop) for stop in self.stop_strings.controlled]
        self.held = 0  # the text's tail that could still grow into a stop string
        self.special = self.stop_strings.special
        self.spelt = ""  # the text with control tokens spelt out, kept while a stop string holds one
        self.inserted: list[tuple[int, int, int]] = []  # where `spelt` has a control token: (start, end, place in `text`)
        self.tokens: list[int] = []
        self.text = ""
        self.shown = 0
        self.prefix_offset = 0
        self.read_offset = 0
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token: int) -> str:
        """Add a token; return the text that became final."""
        if self.stopped:
            return ""
        if token in self.special:
            return self._control(token) if self.spelt_starts else ""
        self.tokens.append(token)
        prefix = self._decode(self.tokens[self.prefix_offset : self.read_offset])
        full = self._decode(self.tokens[self.prefix_offset :])
        if len(full) <= len(prefix) or full.endswith("\ufffd"):
            return ""  # an incomplete UTF-8 sequence: wait for the next token
        return self._add(full[len(prefix) :])

    def _control(self, token: int) -> str:
        """A control token, where a stop string holds one: spelt out after the text before it."""
        piece = self._settle()  # tokens waiting for the rest of a character come before it
        if self.stopped:
            return piece
        start = len(self.spelt)
        self.spelt += self.stop_strings.spelling(token)
        self.inserted.append((start, len(self.spelt), len(self.text)))
        return piece + self._match(len(self.text), start)

    def _add(self, new: str) -> str:
        """Append decoded text, release the held tokens and cut at a stop string."""
        start, spelt_start = len(self.text), len(self.spelt)
        self.text += new
        if self.spelt_starts:
            self.spelt += new
        self.prefix_offset, self.read_offset = self.read_offset, len(self.tokens)
        return self._match(start, spelt_start)

    def _match(self, start: int, spelt_start: int) -> str:
        """Cut at the first stop string found in what was added at `start` of the text (at
        `spelt_start` of the spelt text), whichever is listed first (as OpenAI's); release the rest."""
        self.held = max((tracked.feed(self.text[start:]) for tracked in self.starts), default=0)
        if self.spelt_starts:
            spelt = max(tracked.feed(self.spelt[spelt_start:]) for tracked in self.spelt_starts)
            self.held = max(self.held, len(self.text) - self._in_text(len(self.spelt) - spelt))
        found = [(self._in_spelt(at), len(stop), at, stop) for stop in self.stop_strings.plain if (at := self.text.find(stop, max(0, start - len(stop) + 1))) != -1]
        found += [(at, len(stop), self._in_text(at), stop) for stop in self.stop_strings.controlled if (at := self.spelt.find(stop, max(0, spelt_start - len(stop) + 1))) != -1]
        if found:  # the text ends where the first stop string starts
            _, _, at, stop = min(found)
            self.text = self.text[:at] + (stop if self.keep_stops else "")
            self.stopped = True
        return self._release(final=self.stopped)

    def _in_text(self, at: int) -> int:
        """The place in the text of place `at` of the spelt text."""
        for start, end, place in reversed(self.inserted):
            if at >= end:
                return place + at - end
            if at > start:
                return place
        return at

    def _in_spelt(self, at: int) -> int:
        """The place in the spelt text of the text's character `at` (after the control tokens before it)."""
        for _start, end, place in reversed(self.inserted):
            if at >= place:
                return end + at - place
        return at

    def _release(self, final: bool) -> str:
        end = len(self.text) if final else len(self.text) - self.held
        piece = self.text[self.shown : end] if end > self.shown else ""
        self.shown = max(self.shown, end)
        return piece

    def _settle(self, final: bool = False) -> str:
        """Decode the tokens still waiting for the rest of a UTF-8 sequence as they are; at the end
        (`final`), without the bytes of a last character left incomplete."""
        if self.stopped or self.read_offset >= len(self.tokens):
            return ""
        if final and (whole := self._whole_characters()) is not None:
            return self._add(whole)
        prefix = self._decode(self.tokens[self.prefix_offset : self.read_offset])
        return self._add(self._decode(self.tokens[self.prefix_offset :])[len(prefix) :])

    def _whole_characters(self) -> str | None:
        """The waiting tokens' text without the bytes that start a character and stop short of its
        end; None where they end in no such bytes."""
        from .token_bytes import TokenBytes

        spell = TokenBytes(self.tokenizer)
        data = b"".join(spell(token)[1] for token in self.tokens[self.read_offset :])
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        whole = decoder.decode(data, final=False)  # invalid bytes still become U+FFFD
        return whole if decoder.getstate()[0] else None

    def flush(self) -> str:
        """The held-back tail, once generation is over. Tokens still waiting for the rest of a UTF-8
        sequence are decoded as they are, except that a last character cut off (by the token limit
        or the end of the answer) is dropped, as llama.cpp's server does: a U+FFFD that ends the
        answer comes only from bytes that are no UTF-8. Stop strings still apply."""
        return self._settle(final=True) + self._release(final=True)
