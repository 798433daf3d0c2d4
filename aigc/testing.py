"""A scripted `Engine` for testing generators (aigc's and plugins') without a model:
`FakeEngine().enqueue("answer", ...)`, then check the result and `engine.calls`."""

import re

from .engine.base import Completion, EngineStats, Scored


class FakeEngine:
    """Answers `generate` with queued texts, in order; records every call."""

    name = "fake"
    can_embed = True
    can_score_chat = True

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
