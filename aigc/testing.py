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


def check_engine(engine, prompt: str = "Say hello.") -> dict:
    """A small conformance check of an engine (a backend's) for its author's tests: what `aigc`
    reads of it and what each method returns, in shape. Methods the engine says it cannot run (an
    `EngineError`, as `aigc.EngineBase`'s defaults raise) are listed under "cannot"; anything else
    wrong is an `AssertionError` listing every problem. Returns `{"can": [...], "cannot": [...]}`.
    It makes real calls, each asking for a few tokens: point it at a test server or a small model."""
    from .engine.sampling import SamplingParams
    from .errors import EngineError

    problems: list[str] = []
    report: dict[str, list[str]] = {"can": [], "cannot": []}
    name = getattr(engine, "name", None)
    if not isinstance(name, str) or not name:
        problems.append(f"name must be non-empty text, got {name!r}")
    for member, kind in (("context_length", int), ("can_embed", bool), ("can_score_chat", bool)):
        value = getattr(engine, member, None)
        if not isinstance(value, kind) or (member == "context_length" and value <= 0):
            problems.append(f"{member} must be {'a positive int' if kind is int else 'True or False'}, got {value!r}")
    if not callable(getattr(getattr(engine, "stats", None), "record", None)):
        problems.append("stats must be an aigc.engine.base.EngineStats (aigc.EngineBase makes one)")
    chat = [{"role": "user", "content": prompt}]
    params = SamplingParams(max_tokens=8, n=2, temperature=0.7, seed=1)

    def run(method: str, check, *args) -> None:
        try:
            function = getattr(engine, method)
        except (AttributeError, EngineError):  # a plugin's engine without it: an EngineError saying so
            problems.append(f"it has no {method} (aigc.EngineBase gives a default)")
            return
        try:
            problem = check(function(*args))
        except EngineError as exc:
            report["cannot"].append(method)
            problem = None if method in ("score", "score_many", "embed") else f"{method} raised {exc}"
        except Exception as exc:  # noqa: BLE001 - each is a problem to list
            problem = f"{method} raised {type(exc).__name__}: {exc}"
        else:
            report["can"].append(method)
        if problem:
            problems.append(problem)

    def completions(result) -> str | None:
        if not (isinstance(result, list) and len(result) == 2 and all(isinstance(group, list) and len(group) == params.n for group in result)):
            return f"generate of 2 prompts with n={params.n} must return 2 lists of {params.n} Completions, got {_kind(result)}"
        return next((_completion_problem("generate", c) for group in result for c in group if _completion_problem("generate", c)), None)

    def streamed(pieces) -> str | None:
        seen: list = []
        try:
            while True:
                seen.append(next(pieces))
        except StopIteration as end:
            done = end.value
        if not all(isinstance(piece, str) for piece in seen):
            return f"stream must yield text pieces, got {_kind(seen)}"
        return _completion_problem("stream", done) or (None if done.text == "".join(seen) else f"stream's Completion text {done.text!r} is not its pieces joined, {''.join(seen)!r}")

    run("count_tokens", lambda n: None if isinstance(n, int) and n > 0 else f"count_tokens must return a positive int, got {n!r}", prompt)
    run("count_tokens", lambda n: None if isinstance(n, int) and n > 0 else f"count_tokens of chat messages must return a positive int, got {n!r}", chat)
    run("generate", completions, [prompt, chat], params)
    run("stream", streamed, chat, params.replace(n=1))
    labels = [" yes", " no"]
    run("score", lambda got: None if isinstance(got, list) and len(got) == 2 and all(isinstance(x, float) for x in got) else f"score of 2 continuations must return 2 floats, got {_kind(got)}", prompt, labels)
    run("score_many", lambda got: None if isinstance(got, list) and len(got) == 1 and isinstance(got[0], Scored) and len(got[0].logprobs) == 2 else f"score_many of 1 prompt must return 1 Scored with 2 logprobs, got {_kind(got)}", [prompt], labels)
    run("embed", _vectors_problem, ["a cat", "a dog"])
    report["can"], report["cannot"] = list(dict.fromkeys(report["can"])), list(dict.fromkeys(report["cannot"]))
    if problems:
        raise AssertionError(f"engine {name!r} does not conform:\n- " + "\n- ".join(dict.fromkeys(problems)))
    return report


def _completion_problem(method: str, completion) -> str | None:
    if not isinstance(completion, Completion):
        return f"{method} must give aigc.Completion objects, got {_kind(completion)}"
    if not isinstance(completion.text, str) or not all(isinstance(n, int) and n >= 0 for n in (completion.prompt_tokens, completion.completion_tokens)):
        return f"{method}'s Completion needs text (str) and token counts (int, 0 or more), got {completion!r}"
    return None if completion.finish_reason in ("stop", "length") else f"{method}'s Completion finish_reason must be 'stop' or 'length', got {completion.finish_reason!r}"


def _vectors_problem(vectors) -> str | None:
    if not (isinstance(vectors, list) and len(vectors) == 2 and all(isinstance(v, list) and v and all(isinstance(x, float) for x in v) for v in vectors)):
        return f"embed of 2 texts must return 2 lists of floats, got {_kind(vectors)}"
    if len(vectors[0]) != len(vectors[1]) or any(abs(sum(x * x for x in v) - 1) > 1e-3 for v in vectors):
        return "embed's vectors must be of one length, each of unit length"
    return None


def _kind(value) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else f"{type(value).__name__} {shown[:70]}..."
