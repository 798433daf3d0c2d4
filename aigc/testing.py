"""Engines for testing generators (aigc's and plugins') without a model: `FakeEngine().enqueue("answer", ...)`,
then check the result and `engine.calls`; or the model `echo` (`-m echo`, `model="echo"`), an `EchoEngine`."""

import re

from .engine.base import Completion, EngineStats, Scored


class FakeEngine:
    """Answers `generate` with queued texts, in order; records every call."""

    name = "fake"
    can_embed = True
    can_score_chat = True
    schemas_unheld = "the test engine answers with the texts queued, not held to JSON schemas: enqueue JSON that the schema allows"

    def __init__(self, context_length: int = 2048):
        self.context_length = context_length
        self.stats = EngineStats()
        self.queue: list[str] = []
        self.calls: list[tuple] = []

    def enqueue(self, *texts: str) -> None:
        self.queue.extend(texts)

    def count_tokens(self, prompt) -> int:
        if isinstance(prompt, str):
            return len(prompt.split())
        return sum(len(m["content"].split()) + 4 for m in prompt)

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        _check_schema(params)
        out = []
        for prompt in prompts:
            group = []
            for _ in range(params.n):
                text = self.queue.pop(0) if self.queue else ""
                group.append(Completion(text, self.count_tokens(prompt), len(text.split()), "stop"))
            out.append(group)
        return out

    def stream(self, prompt, params):
        completion = self.generate([prompt], params.replace(n=1))[0][0]
        yield from re.findall(r"\S+\s*|\s+", completion.text)
        return completion

    def score(self, prompt, continuations):
        return [-float(len(c)) for c in continuations]

    def score_many(self, prompts, continuations, embed=False):
        return [Scored(self.score(p, continuations), [float(len(p))] if embed else None) for p in prompts]

    def embed(self, texts):
        """Letter counts a-z, scaled to length 1: texts with the same letters are the most alike."""
        vectors = [[t.lower().count(c) + 1e-3 for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts]
        return [[x / sum(y * y for y in v) ** 0.5 for x in v] for v in vectors]


class EchoEngine(FakeEngine):
    """The model `echo`: answers with what the prompt is about, the text a template's message was
    filled with (`templates.Message.subject`), else with the prompt's last user message (a text prompt whole), cut to
    `max_tokens` words and before a stop string; scores a continuation by how often the prompt names it, so `classify` picks
    the label its text names. No torch, no weights."""

    name = "echo"
    samples = False  # the same answer to every sample: temperature and seed change nothing
    schemas_unheld = "the model echo answers with the prompt, not held to JSON schemas: give it JSON that the schema allows as the prompt"

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        _check_schema(params)
        out = []
        for prompt in prompts:
            echoed = _echoed(prompt)
            words = re.findall(r"\S+\s*", echoed)
            cut = len(words) > params.max_tokens
            text, reason = ("".join(words[: params.max_tokens]).rstrip(), "length") if cut else (echoed, "stop")
            at = min((i for i in map(text.find, params.stop) if i >= 0), default=-1)
            if at >= 0:  # a stop string ends it, before it, as a model's answer
                text, reason = text[:at], "stop"
            out.append([Completion(text, self.count_tokens(prompt), len(text.split()), reason)] * params.n)
            self.stats.record(self.count_tokens(prompt), len(text.split()) * params.n, None, 0.0)
        return out

    def score(self, prompt, continuations):
        text = (prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)).lower()
        return [float(text.count(c.strip().lower())) for c in continuations]


def _check_schema(params) -> None:
    """A JSON schema a model refuses (`BadInputError`) refused here too, as a test engine holds no answer to it."""
    if params.json_schema is not None:
        from .engine.structured import check_schema

        check_schema(params.json_schema)


def _echoed(prompt) -> str:
    """What `EchoEngine` answers `prompt` with: the text its last user message (a text prompt whole)
    was rendered from, else that message."""
    message = prompt if isinstance(prompt, str) else next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
    return getattr(message, "subject", None) or message
