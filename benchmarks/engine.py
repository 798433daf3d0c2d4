"""In-process engine measurements: decode speed against plain float32 `generate`, time to first
token, batching, and chat KV-cache reuse. Every ratio's baseline is measured in the same run."""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DECODE_PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to read."}]
BATCH_PROMPTS = [
    "Write a long story about a dragon who learns to read.",
    "Describe a busy harbour at dawn in detail.",
    "Explain how a bicycle works, step by step.",
    "Write a letter from a sailor to his sister.",
    "Describe the history of the printing press.",
    "Write a long poem about autumn in the mountains.",
    "Explain why the sky is blue to a ten-year-old.",
    "Describe a market in a small town on a Saturday.",
]
CHAT_TURNS = [
    "Hi! I want to plan a garden.",
    "What vegetables grow well in spring?",
    "How much sun do tomatoes need?",
    "And how often should I water them?",
    "What about carrots?",
    "Can I grow herbs next to them?",
    "Which herbs are easiest?",
    "How do I keep snails away?",
    "Should I use compost?",
    "Thanks! Can you summarize the plan in three points?",
]


def _timed_tokens(engine, prompts, params) -> tuple[float, list[list[int]]]:
    """Seconds and generated token ids of one batched call."""
    run = engine._run([engine.encode(p) for p in prompts], params)
    started = time.perf_counter()
    for _ in run:
        pass
    return time.perf_counter() - started, [text.tokens for text in run.texts]


def _first_divergence(a: list[int], b: list[int], limit: int = 32) -> int:
    """Index of the first differing token within `limit` (limit when the first `limit` agree)."""
    return next((i for i, (x, y) in enumerate(zip(a[:limit], b[:limit])) if x != y), min(limit, len(a), len(b)))


def decode(new_tokens: int = 64) -> dict[str, float]:
    """Single-stream greedy decode: aigc (auto dtype, int4 and int8) vs float32 `model.generate`."""
    import torch

    from aigc.engine.loading import load_model
    from aigc.engine.sampling import SamplingParams

    baseline = load_model(dtype="float32")
    ids = torch.tensor([baseline.encode(DECODE_PROMPT)])
    generate = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=baseline.pad_id)
    baseline.model.generate(ids, max_new_tokens=4, **generate)
    started = time.perf_counter()
    out = baseline.model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **generate)
    baseline_tps = new_tokens / (time.perf_counter() - started)
    reference = out[0, ids.shape[1] :].tolist()

    results = {"baseline_decode_tps": baseline_tps}
    params = SamplingParams(temperature=0, max_tokens=new_tokens)
    for label, engine in (("decode", load_model()), ("int4_decode", load_model(quantize="int4")), ("int8_decode", load_model(quantize="int8"))):
        _timed_tokens(engine, [DECODE_PROMPT], params.replace(max_tokens=4))
        engine._previous = None
        seconds, (tokens,) = _timed_tokens(engine, [DECODE_PROMPT], params)
        results[f"{label}_tps"] = len(tokens) / seconds
        results[f"{label}_ratio"] = results[f"{label}_tps"] / baseline_tps
        results[f"{label}_match_tokens"] = _first_divergence(tokens, reference)
    return results


def time_to_first_token(engine, prompt) -> float:
    """Seconds until the first text piece, with no cached prefix."""
    from aigc.engine.sampling import SamplingParams

    engine._previous = None
    started = time.perf_counter()
    next(iter(engine.stream(prompt, SamplingParams(temperature=0, max_tokens=8))))
    return time.perf_counter() - started


def ttft_1k() -> dict[str, float]:
    """Time to first token for a ~1,000-token prompt, auto dtype and int4 (prefill is where int4
    weights cost: they are rebuilt as float32 for it)."""
    from aigc.engine.loading import load_model

    engine = load_model()
    text = (ROOT / "examples" / "article.md").read_text()
    while engine.count_tokens(text) < 1000:
        text += "\n\n" + text
    words = text.split()
    while engine.count_tokens(" ".join(words)) > 1000:
        words = words[:-10]
    prompt = [{"role": "user", "content": "Summarize this:\n\n" + " ".join(words)}]
    results = {"ttft_1k_prompt_tokens": engine.count_tokens(prompt)}
    for label, engine in (("ttft_1k", engine), ("int4_ttft_1k", load_model(quantize="int4"))):
        time_to_first_token(engine, prompt)
        results[f"{label}_seconds"] = time_to_first_token(engine, prompt)
    results["int4_ttft_1k_ratio"] = results["int4_ttft_1k_seconds"] / results["ttft_1k_seconds"]
    return results


def batch8(new_tokens: int = 64) -> dict[str, float]:
    """Aggregate tokens/s of 8 different prompts in one batch vs the same prompts one at a time."""
    from aigc.engine.loading import load_model
    from aigc.engine.sampling import SamplingParams

    engine = load_model()
    prompts = [[{"role": "user", "content": p}] for p in BATCH_PROMPTS]
    params = SamplingParams(temperature=0, max_tokens=new_tokens)
    _timed_tokens(engine, prompts, params.replace(max_tokens=2))  # warm-up: first use of each shape is slow
    _timed_tokens(engine, prompts[:1], params.replace(max_tokens=2))
    single_tokens = single_seconds = 0.0
    for prompt in prompts:
        engine._previous = None
        seconds, (tokens,) = _timed_tokens(engine, [prompt], params)
        single_seconds += seconds
        single_tokens += len(tokens)
    seconds, rows = _timed_tokens(engine, prompts, params)
    batch_tps = sum(len(r) for r in rows) / seconds
    single_tps = single_tokens / single_seconds
    return {"single_stream_tps": single_tps, "batch8_tps": batch_tps, "batch8_ratio": batch_tps / single_tps}


SCHEMA_PROMPT = [{"role": "user", "content": "Invent a fictional person: name, age, city, job and three hobbies."}]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}, "city": {"type": "string"}, "job": {"type": "string"},
        "hobbies": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name", "age", "city", "job", "hobbies"],
}


def schema_decode(new_tokens: int = 96) -> dict[str, float]:
    """Greedy decode held to a JSON schema vs the same prompt decoded freely (the token table is
    built by a warm-up first, as it is once per process)."""
    from aigc.engine.loading import load_model
    from aigc.engine.sampling import SamplingParams

    engine = load_model()
    free = SamplingParams(temperature=0, max_tokens=new_tokens)
    held = free.replace(json_schema=PERSON)
    _timed_tokens(engine, [SCHEMA_PROMPT], held.replace(max_tokens=4))
    results = {}
    for label, params in (("free", free), ("schema", held)):
        engine._previous = None
        seconds, (tokens,) = _timed_tokens(engine, [SCHEMA_PROMPT], params)
        results[f"{label}_decode_tps"] = len(tokens) / seconds
    results["schema_decode_ratio"] = results["schema_decode_tps"] / results["free_decode_tps"]
    return results


def chat_turns() -> dict[str, float]:
    """Time to first token at turn 1 and turn 10 of one conversation (KV cache reused between turns),
    and at turn 10 with the cache dropped (the whole history prefilled again)."""
    from aigc.engine.loading import load_model
    from aigc.generators.chat import ChatGenerator, ChatSession

    engine = load_model()
    for _ in ChatSession(ChatGenerator(engine=engine), sampling={"max_tokens": 4}).send("Hello"):
        pass  # warm-up
    engine._previous = None
    session = ChatSession(ChatGenerator(engine=engine), sampling={"max_tokens": 48})
    ttft = []
    for turn in CHAT_TURNS:
        started = time.perf_counter()
        reply = session.send(turn)
        next(reply)
        ttft.append(time.perf_counter() - started)
        for _ in reply:
            pass
    history = session.messages[:-2]
    engine._previous = None
    cold = time_to_first_token(engine, history + [{"role": "user", "content": CHAT_TURNS[-1]}])
    return {
        "chat_ttft_turn1_seconds": ttft[0],
        "chat_ttft_turn10_seconds": ttft[-1],
        "chat_ttft_ratio": ttft[-1] / ttft[0],
        "chat_ttft_turn10_no_reuse_seconds": cold,
        "chat_turn10_prompt_tokens": engine.count_tokens(history + [{"role": "user", "content": CHAT_TURNS[-1]}]),
    }
