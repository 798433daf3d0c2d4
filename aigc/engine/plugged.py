"""Engines from outside aigc: `EngineBase`, the defaults a backend author subclasses, and
`PluggedEngine`, which names a plugin's engine (and its plugin) in what it fails at or lacks."""

from __future__ import annotations

import functools
from typing import Any, Generator

from ..errors import AigcError, BadInputError, EngineError
from .base import Completion, EngineStats, Prompt, Scored
from .sampling import SamplingParams

NEEDED_FOR = {  # a method an engine may lack, and what needs it (said when a task calls it)
    "count_tokens": "fitting prompts in the context window (chat, summarize, translate)",
    "generate": "every task that writes text",
    "stream": "streaming an answer (chat on a terminal, aigc.stream)",
    "score": "ranking (headline)",
    "score_many": "scoring labels (classify)",
    "embed": "embeddings (embed, similar)",
    "context_length": "fitting prompts in the context window (chat, summarize, translate)",
}


def engine_error(engine: Any, plugin: str | None, method: str, what: str) -> EngineError:
    """An `EngineError` naming `engine` (and `plugin`, when one made it): `what` it did at `method`."""
    whose = f" (plugin {plugin!r})" if plugin else ""
    return EngineError(f"engine {getattr(engine, 'name', type(engine).__name__)!r}{whose} {what}")


class Lacking(EngineError, AttributeError):
    """An engine's missing method, asked for: an `EngineError` saying what needs it, and an
    `AttributeError`, so `hasattr(engine, m)` and `getattr(engine, m, default)` see it as missing."""


def lacking(engine: Any, plugin: str | None, method: str) -> Lacking:
    """The error for an engine without `method`, which a task called."""
    error = engine_error(engine, plugin, method, f"has no {method}, which {NEEDED_FOR[method]} needs; define it, or subclass aigc.EngineBase for a default (docs/plugins.md, Backends)")
    return Lacking(*error.args)


class EngineBase:
    """Defaults for an engine of your own (a backend): define `generate`, and `name` and
    `context_length`; `stream` sends the whole answer as one piece, `count_tokens` estimates
    (3 bytes a token), `score_many` calls `score` for each prompt, and `score` and `embed` raise an
    `EngineError` saying the engine cannot. `stats` is an `EngineStats` of its own."""

    name = "engine"
    context_length = 4096
    can_embed = False  # whether `score_many(..., embed=True)` gives hidden-state embeddings
    can_score_chat = False  # whether `score` takes chat messages

    @functools.cached_property
    def stats(self) -> EngineStats:
        """Counters the CLI's `--stats` shows: `self.stats.record(...)` after each call to fill them."""
        return EngineStats()

    def count_tokens(self, prompt: Prompt) -> int:
        """An estimate: 3 bytes of text a token, 8 more per chat message."""
        from .remote import _estimate

        return _estimate(prompt)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """`params.n` completions for each prompt; every engine defines it."""
        raise lacking(self, None, "generate")

    def stream(self, prompt: Prompt, params: SamplingParams) -> Generator[str, None, Completion]:
        """The answer of `generate` as one piece, returning its `Completion`."""
        completion = self.generate([prompt], params.replace(n=1))[0][0]
        if completion.text:
            yield completion.text
        return completion

    def score(self, prompt: Prompt, continuations: list[str]) -> list[float]:
        """Log-likelihood of each continuation after the prompt; by default an `EngineError`: it cannot score."""
        raise engine_error(self, None, "score", "cannot score continuations (no log-likelihoods), which classify and headline's ranking need; use a model that can")

    def score_many(self, prompts: list[Prompt], continuations: list[str], embed: bool = False) -> list[Scored]:
        """`score` for each prompt; `embed` needs hidden states, which only an engine with `can_embed` has."""
        if embed:
            raise BadInputError(f"engine {self.name!r} cannot embed prompts while scoring them (no hidden states)")
        return [Scored(self.score(prompt, continuations)) for prompt in prompts]

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One unit-length vector per text; by default an `EngineError`: it cannot embed."""
        raise engine_error(self, None, "embed", "cannot embed texts, which embed and similar need; use a model that can")


_METHODS = ("count_tokens", "generate", "stream", "score", "score_many", "embed")


class PluggedEngine:
    """A plugin's engine, as aigc runs it: what it lacks, and what it raises that is no `AigcError`
    (a connection refused, its own bug), are `EngineError`s naming it and its plugin."""

    def __init__(self, engine: Any, plugin: str | None, name: str | None = None):
        self.engine = engine
        self.plugin = plugin
        if not isinstance(getattr(engine, "name", None), str):  # called as the model was named
            self.name = name or type(engine).__name__

    def __repr__(self) -> str:
        return f"<PluggedEngine {self.engine!r} of plugin {self.plugin!r}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "engine" not in self.__dict__:  # copy and pickle ask before __init__ ran
            raise AttributeError(name)
        try:
            value = getattr(self.engine, name)
        except AttributeError:
            if name in NEEDED_FOR:
                raise lacking(self.engine, self.plugin, name) from None
            if name == "stats":  # counted here for one that keeps none
                value = self.__dict__.setdefault("stats", EngineStats())
            elif name in ("can_embed", "can_score_chat"):
                return False
            else:
                raise
        if name in _METHODS and callable(value):
            return functools.partial(self._stream if name == "stream" else self._call, name, value)
        return value

    def _failed(self, method: str, exc: Exception) -> EngineError:
        return engine_error(self.engine, self.plugin, method, f"failed in {method}: {type(exc).__name__}: {exc}")

    def _call(self, method: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except AigcError:
            raise
        except Exception as exc:  # noqa: BLE001 - the plugin's, named as such (a KeyboardInterrupt or cancel passes)
            raise self._failed(method, exc) from exc

    def _stream(self, method: str, function: Any, *args: Any, **kwargs: Any) -> Generator[str, None, Completion]:
        try:
            return (yield from function(*args, **kwargs))
        except AigcError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._failed(method, exc) from exc
