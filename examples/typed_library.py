"""aigc from typed Python: the README's "From Python" and "Async" calls, annotated as an app would
be, so that `mypy --strict` checks them against aigc's types (`get_generator("classify")` is a
`ClassifyGenerator`, `embed(text)` a `list[float]`, `embed(texts)` a `list[list[float]]`).

    python examples/typed_library.py            # on the default model (the embedded one): a few minutes
    python examples/typed_library.py echo       # on the model `echo`, which loads nothing: a second or two
    python -m mypy --strict examples/typed_library.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aigc
from aigc.batch import read_rows, run_batch
from aigc.errors import AigcWarning, OptionError, UnknownTemplateError
from aigc.generators.chat import ChatGenerator
from aigc.generators.classify import ClassifyGenerator
from aigc.generators.embed import EmbedGenerator
from aigc.similarity import rank

MODEL: str | None = sys.argv[1] if len(sys.argv) > 1 else None  # None: the default model
SHORT: dict[str, Any] = {"max_tokens": 40, "temperature": 0}  # greedy: the same answers every run
article = (Path(__file__).parent / "article.md").read_text(encoding="utf-8")
work = Path(tempfile.mkdtemp(prefix="aigc-typed-"))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))  # aigc's embeddings have length 1


def told(done: int, total: int | None, what: str) -> None:
    print(f"  {what}: {done}/{total if total is not None else '?'}", file=sys.stderr)


def topics() -> Iterator[dict[str, str]]:
    yield from ({"topic": topic} for topic in ("bees", "solar", "rail"))


def chat_and_stream() -> None:
    print("== chat")
    answer: str = aigc.generate("chat", "What is the capital of France?", MODEL, SHORT)["text"]
    print(answer)
    with aigc.stream("chat", "Tell me about bees.", MODEL, SHORT) as stream:
        for piece in stream:
            print(piece, end="", flush=True)
    tokens = stream.usage["completion_tokens"] if stream.usage else "?"  # None where the engine counts no tokens
    print(f"\n({stream.finish_reason}, {tokens} tokens)")
    chat: ChatGenerator = aigc.get_generator("chat", model=MODEL)
    with chat.stream("Name two things bees make.", SHORT) as pieces:
        print("".join(pieces))
    print(sorted(aigc.registered_generators())[:3], sorted(aigc.registered_models())[:1], sorted(aigc.list_templates())[:1])


def templates() -> None:
    print("== templates")
    print(aigc.generate("template", "Bees make honey. They live in hives.", MODEL, SHORT, template="summarize", variables={"words": 20})["text"])
    messages: list[dict[str, str]] = aigc.render_template("summarize", "Bees make honey.", variables={"words": 20})["messages"]
    print(messages[-1]["role"])
    try:
        aigc.render_template("no-such-template", "x")
    except UnknownTemplateError as exc:
        print(f"error: {exc}")


def tasks() -> None:
    print("== summarize, headlines, translate")
    summarize = aigc.get_generator("summarize", model=MODEL, progress=told)
    print(summarize(article, SHORT, length="short")["summary"])
    print(aigc.generate("headline", {"topic": "urban bees"}, MODEL, {"seed": 1}, n=1)["headlines"])
    headline = aigc.get_generator("headline", model=MODEL)
    results = headline.many([{"topic": "bees"}, {"topic": "solar"}], n=1)  # errors raised: each result a dict
    print([result["headlines"][0] for result in results])
    print(len(headline.many(topics(), n=1)), len(headline.many(({"topic": t} for t in ("a", "b")), n=1)))
    with open(work / "headlines.jsonl", "w", encoding="utf-8") as out, contextlib.closing(headline.imany(topics(), n=1, on_error="skip")) as each:
        for got in each:  # with on_error="skip", an input's error in its place
            print(json.dumps(got if isinstance(got, dict) else {"error": str(got)}), file=out, flush=True)
    for result in headline.imany(({"topic": t} for t in ("x", "y")), n=1):
        print(result["headlines"])
    print(aigc.generate("translate", "Where is the station?", MODEL, SHORT, target_language="French")["translation"])


def session() -> None:
    print("== a kept conversation")
    with aigc.ChatSession(path=work / "trip.json", sampling=SHORT, model=MODEL) as chat:
        print(chat.ask("Plan two days in Rome."))
        chat.set_sampling("temperature", 0.7)
        print("".join(chat.retry()))
        reply = chat.send("And a third?")
        print("".join(reply), reply.usage)


def classify_and_embed() -> None:
    print("== classify")
    classify: ClassifyGenerator = aigc.get_generator("classify", model=MODEL)
    result = classify("Great film!", labels="negative,positive", aspect="sentiment")
    scores: dict[str, float] = result["scores"]
    print(result["label"], {label: round(p, 3) for label, p in scores.items()})
    (work / "labelled.tsv").write_text("great game\tsports\nnew chip\ttechnology\nthe final whistle\tsports\na faster phone\ttechnology\n", encoding="utf-8")
    print([r["label"] for r in classify.classify_many(("a late goal", "a new laptop"), examples=str(work / "labelled.tsv"))])

    print("== embed")
    texts = ["bees in the city", "a recipe for bread", "honey from urban hives"]
    vectors = aigc.embed(texts, MODEL)
    query = aigc.embed("city beekeeping", MODEL)
    print(round(cosine(vectors[0], vectors[1]), 3), round(cosine(query, vectors[2]), 3))
    pairs: list[list[float]] = aigc.embed(("a cat", "a kitten"), MODEL)
    print(len(pairs), len(aigc.embed((t for t in texts), MODEL)))  # any iterable of texts
    for index, score in rank(query, vectors, 2):
        print(f"{score:.3f}  {texts[index]}")
    embedder: EmbedGenerator = aigc.get_generator("embed", model=MODEL)
    every: list[list[float]] = embedder.embed_many(texts)
    some: list[list[float] | None] = embedder.embed_many(texts, on_error=lambda index, error: print(index, error))
    print(len(every), len(some), embedder("one text")["dimensions"])


def batch_and_engine() -> None:
    print("== batch over a file (what `aigc batch` runs)")
    rows = work / "docs.jsonl"
    rows.write_text(json.dumps({"id": "a", "text": article[:400]}) + "\n", encoding="utf-8")
    run_batch(aigc.get_generator("summarize", model=MODEL), read_rows(rows), work / "out.jsonl", {"words": 40}, SHORT)
    print((work / "out.jsonl").read_text(encoding="utf-8").count("\n"), "row")

    print("== the engine")
    engine = aigc.load_model(MODEL or "smollm2")
    params = aigc.SamplingParams(temperature=0, max_tokens=16)
    for piece in engine.stream([{"role": "user", "content": "Hi!"}], params):
        print(piece, end="")
    print()
    print(engine.generate(["The capital of France is"], params)[0][0].text)
    del engine
    print(aigc.unload(MODEL or "smollm2"), "unloaded")


def errors() -> None:
    print("== errors and warnings")
    try:
        aigc.generate("chat", "Hi", MODEL, {"max_tokens": -1})
    except OptionError as exc:
        print(f"{exc.option}: {exc}")
    except aigc.BadInputError as exc:
        print(f"bad input: {exc}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AigcWarning)
        try:
            aigc.generate("headline", {"topic": "bees"}, MODEL, {"seed": 1}, n=3)
        except AigcWarning as warning:
            print(f"warning: {warning}")
        except aigc.AigcError as exc:
            print(f"error: {exc}")


async def from_asyncio() -> None:
    print("== asyncio")
    print((await aigc.agenerate("headline", {"topic": "urban bees"}, MODEL, n=1))["headlines"])
    async with aigc.astream("chat", "Tell me about bees.", MODEL, SHORT) as stream:
        async for piece in stream:
            print(piece, end="", flush=True)
    print(f"\n{stream.finish_reason} {stream.usage}")
    print((await aigc.astream("chat", "Hi", MODEL, SHORT)).text)
    answers = await asyncio.gather(*(aigc.agenerate("chat", q, MODEL, SHORT) for q in ("Hi", "Bye")))
    print([answer["text"] for answer in answers])
    with aigc.ChatSession(sampling=SHORT, model=MODEL) as chat:
        turn = aigc.AsyncAnswerStream(lambda: chat.send("Hi"))
        print("".join([piece async for piece in turn]))


if __name__ == "__main__":
    chat_and_stream()
    templates()
    tasks()
    session()
    classify_and_embed()
    batch_and_engine()
    errors()
    asyncio.run(from_asyncio())
