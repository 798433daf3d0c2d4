"""aigc from Python: each task on the embedded model, with short answers so it runs in a minute or two.

    python examples/library.py            # after `bash scripts/setup.sh` (or `pip install -c constraints.txt -e .`)
"""

import asyncio
import json
import tempfile
from pathlib import Path

import aigc
from aigc.batch import read_rows, run_batch
from aigc.similarity import rank

SHORT = {"max_tokens": 40, "temperature": 0}  # greedy: the same answers every run
article = (Path(__file__).parent / "article.md").read_text(encoding="utf-8")
work = Path(tempfile.mkdtemp(prefix="aigc-example-"))

print("== chat")
print(aigc.generate("chat", "What is the capital of France?", sampling=SHORT)["text"])

print("== chat, streamed")
stream = aigc.stream("chat", "Name two things bees make.", sampling=SHORT)
for piece in stream:
    print(piece, end="", flush=True)
print(f"\n({stream.finish_reason}, {stream.usage['completion_tokens']} tokens)")  # the whole answer, without a second call

print("== structured answer (a JSON schema, in llm's concise syntax)")
person = aigc.generate("chat", "Extract: Ada Lovelace, 36, London", sampling={**SHORT, "json_schema": "name, age int, city"})
print(person["data"])

print("== a kept conversation")
with aigc.ChatSession(path=work / "trip.json", sampling=SHORT) as session:  # the default model's chat generator; holds trip.json until the block ends
    print(session.ask("Suggest one city to visit in Italy."))
    print(session.ask("Why that one?"))

print("== summarize")
summary = aigc.generate("summarize", article, words=30, sampling={"max_tokens": 80})
print(summary["summary"], f"({summary['words']} words)")

print("== headlines")
print(aigc.generate("headline", {"topic": "rooftop beekeeping"}, n=2, sampling={"max_tokens": 40, "seed": 1})["headlines"])  # sampled: n > 1

print("== translate")
print(aigc.generate("translate", "Where is the station?", target_language="French", sampling=SHORT)["translation"])

print("== classify")
result = aigc.generate("classify", "I loved every minute of it.", labels="negative,positive", aspect="sentiment")
print(result["label"], {label: round(p, 3) for label, p in result["scores"].items()})

print("== embeddings and ranking")
texts = ["bees in the city", "a recipe for bread", "honey from urban hives"]
vectors = aigc.embed(texts)
for index, score in rank(aigc.embed("city beekeeping"), vectors, 2):
    print(f"{score:.3f}  {texts[index]}")

print("== batch over a file (resumable; what `aigc batch` runs)")
rows = work / "topics.jsonl"
rows.write_text("\n".join(json.dumps({"id": name, "text": text}) for name, text in [("a", "Goals and a new stadium"), ("b", "Chips and a new phone")]) + "\n")
run_batch(aigc.get_generator("classify"), read_rows(str(rows)), str(work / "labels.jsonl"), {"labels": "sports,technology"})
for line in (work / "labels.jsonl").read_text().splitlines():
    row = json.loads(line)
    print(row["id"], row["result"]["label"])

print("== chat, from asyncio (the model runs in a worker thread: the event loop goes on)")


async def two_questions() -> None:
    france, italy = "What is the capital of France?", "What is the capital of Italy?"
    first = asyncio.create_task(aigc.agenerate("chat", france, sampling=SHORT))  # runs while the other is streamed
    stream = aigc.astream("chat", italy, sampling=SHORT)
    async for piece in stream:
        print(piece, end="", flush=True)
    print(f"\n({stream.finish_reason}, {stream.usage['completion_tokens']} tokens)")
    print((await first)["text"])


asyncio.run(two_questions())
