"""Similarity search over embeddings: ranking by cosine similarity, and a cache of vectors already
computed, so `aigc similar` over the same file embeds only texts it has not seen.

The cache is one SQLite file (`~/.cache/aigc/embeddings.db`), vectors keyed by the model (its name,
how it was loaded, and `POOLING`) and the SHA-256 of the text. A cache that cannot be read or written
is an `AigcWarning` and the texts are embedded anyway.
"""

from __future__ import annotations

import hashlib
import heapq
import sqlite3
import warnings
from array import array
from contextlib import closing
from pathlib import Path
from typing import Any

from . import config
from .errors import AigcWarning, BadInputError

POOLING = "prompteol-last-token"  # how the local engine embeds; a change makes old vectors stale
SCHEMA = "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, digest BLOB NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, digest))"


def rank(query: list[float], vectors: list[list[float]], top: int) -> list[tuple[int, float]]:
    """`(index, cosine similarity)` of the `top` vectors most like `query`, most alike first (ties in
    input order). Vectors are expected to have length 1, as engines' embeddings do."""
    if top < 1:
        raise BadInputError(f"the number of results must be at least 1, got {top}")
    if vectors and len(vectors[0]) != len(query):
        raise BadInputError(f"the query has {len(query)} dimensions but the texts have {len(vectors[0])}; embed both with the same model")
    scores = ((sum(a * b for a, b in zip(query, vector)), index) for index, vector in enumerate(vectors))
    return [(index, score) for score, index in heapq.nlargest(top, scores, key=lambda pair: (pair[0], -pair[1]))]


def model_id(engine: Any) -> str:
    """What identifies an engine's vectors in the cache: its name, how it was loaded, the pooling."""
    return " ".join(filter(None, (engine.name, getattr(engine, "variant", ""), POOLING)))


class EmbeddingCache:
    """Vectors by model and text; `lookup` and `store` never fail, they warn and do without."""

    def __init__(self, path: Path | None = None):
        self.path = path or config.cache_dir() / "embeddings.db"
        self._warned = False

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        connection.execute(SCHEMA)
        return connection

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"the embedding cache {self.path} cannot be used ({exc}); embedding every text again", AigcWarning, stacklevel=3)

    def lookup(self, model: str, texts: list[str]) -> dict[int, list[float]]:
        """`{index: vector}` for the texts already cached for `model`."""
        digests = [_digest(text) for text in texts]
        found: dict[bytes, list[float]] = {}
        try:
            with closing(self._connect()) as db:
                for start in range(0, len(digests), 500):  # SQLite caps the parameters of one query
                    chunk = digests[start : start + 500]
                    query = f"SELECT digest, vector FROM vectors WHERE model = ? AND digest IN ({','.join('?' * len(chunk))})"
                    for digest, blob in db.execute(query, [model, *chunk]):
                        found[bytes(digest)] = array("f", blob).tolist()
        except (sqlite3.Error, OSError, ValueError) as exc:
            self._warn(exc)
            return {}
        return {i: found[d] for i, d in enumerate(digests) if d in found}

    def store(self, model: str, texts: list[str], vectors: list[list[float]]) -> None:
        rows = [(model, _digest(text), array("f", vector).tobytes()) for text, vector in zip(texts, vectors)]
        try:
            with closing(self._connect()) as db, db:
                db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)
        except (sqlite3.Error, OSError) as exc:
            self._warn(exc)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def embed_cached(generator, texts: list[str], cache: EmbeddingCache | None = None) -> list[list[float]]:
    """Each text's vector from `generator` (an `embed` generator), taking those cached for its model
    and storing the ones it computes."""
    cache = cache or EmbeddingCache()
    model = model_id(generator.engine)
    vectors: dict[int, list[float]] = cache.lookup(model, texts)
    missing = [i for i in range(len(texts)) if i not in vectors]
    if missing:
        computed = generator.embed_many([texts[i] for i in missing], keep=lambda done, found: cache.store(model, done, found))
        vectors.update(zip(missing, computed))
    return [vectors[i] for i in range(len(texts))]
