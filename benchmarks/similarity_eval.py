"""Embeddings for similarity search, on the news-topic data: do nearest neighbours share a topic?

The tuning part of ../shared/data/topic_dev.tsv (as `classify_eval` splits it) is what is searched,
by two kinds of query: the held-back rows (documents like the ones searched), and short phrases
written for each topic (as a person searches). Precision@k counts the k nearest items (cosine
similarity) that have the query's topic; the baseline, measured in the same run, is TF-IDF over
words. Speed: texts/s embedded in batches against one text per call.
`python -m benchmarks.similarity_eval [--json]`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections import Counter

from .classify_eval import DATA, split

ONE_BY_ONE = 40  # texts embedded one per call for the speed baseline
PHRASES = {  # not the phrases the embedding was chosen with
    "World": ["international news", "a government minister", "conflict in the middle east"],
    "Sports": ["a tennis tournament", "the baseball season", "an olympic athlete"],
    "Business": ["oil prices", "a corporate merger", "interest rates and inflation"],
    "Sci/Tech": ["the internet", "space exploration", "a new mobile phone"],
}


def tfidf(index: list[str], queries: list[str]) -> tuple[list[list[float]], list[list[float]]]:
    """Unit TF-IDF vectors (log term frequency, smoothed IDF from the index) over lower-cased words."""
    words = [[w for w in re.findall(r"\w+", t.lower())] for t in index + queries]
    df = Counter(w for doc in words[: len(index)] for w in set(doc))
    vocabulary = {w: i for i, w in enumerate(df)}
    vectors = []
    for doc in words:
        vector = [0.0] * len(vocabulary)
        for word, count in Counter(doc).items():
            if word in vocabulary:
                vector[vocabulary[word]] = (1 + math.log(count)) * (math.log(len(index) / df[word]) + 1)
        size = math.sqrt(sum(x * x for x in vector)) or 1.0
        vectors.append([x / size for x in vector])
    return vectors[: len(index)], vectors[len(index) :]


def precision(index: list[list[float]], labels: list[str], queries: list[list[float]], truth: list[str], k: int) -> float:
    from aigc.similarity import rank

    hits = sum(labels[i] == label for query, label in zip(queries, truth) for i, _ in rank(query, index, k))
    return hits / (k * len(queries))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from aigc.generators.base import get_generator

    tune, held = split(DATA / "topic_dev.tsv")
    texts, labels = [t for t, _ in tune], [label for _, label in tune]
    queries, truth = [t for t, _ in held], [label for _, label in held]
    generator = get_generator("embed")
    generator.embed_many(queries[:4])  # load and warm up
    started = time.perf_counter()
    index = generator.embed_many(texts)
    batched = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    for text in texts[:ONE_BY_ONE]:
        generator.embed_many([text])
    single = ONE_BY_ONE / (time.perf_counter() - started)
    phrases = [p for group in PHRASES.values() for p in group]
    topics = [topic for topic, group in PHRASES.items() for _ in group]
    results: dict = {"index": len(texts), "embed_texts_per_second": batched, "one_by_one_texts_per_second": single, "batch_ratio": batched / single}
    print(f"topic: {len(texts)} tuning rows searched")
    for kind, asked, wanted, ks in (("rows", queries, truth, (1, 5)), ("phrases", phrases, topics, (1, 10))):
        embedded = generator.embed_many(asked)
        words_index, words_queries = tfidf(texts, asked)
        for k in ks:
            ours = results[f"{kind}_embedding_precision_at_{k}"] = precision(index, labels, embedded, wanted, k)
            theirs = results[f"{kind}_tfidf_precision_at_{k}"] = precision(words_index, labels, words_queries, wanted, k)
            print(f"{len(asked)} {'held-back rows' if kind == 'rows' else 'short phrases'}, precision@{k}: embeddings {ours:.3f}  TF-IDF {theirs:.3f}")
    print(f"embedding: {batched:.1f} texts/s batched, {single:.1f} one per call ({results['batch_ratio']:.2f}x)")
    if args.json:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    main()
