"""Similarity search over embeddings: ranking by cosine similarity, and a cache of vectors already
computed, so `aigc similar` over the same file embeds only texts it has not seen.

The cache is one SQLite file (`~/.cache/aigc/embeddings.db`, readable by its owner only), vectors
keyed by the model and the SHA-256 of the text, the `KEPT_VECTORS` used last kept. The model's key holds its name, how it was loaded,
`POOLING`, and a digest of the vector it gives a fixed text, so two models of one name (a path reused,
a model pulled again, another server behind a URL) never share vectors. A cache that cannot be read
or written is one `AigcWarning`, and the run goes on without it.
"""

from __future__ import annotations

import hashlib
import heapq
import numbers
import os
import sqlite3
import warnings
from array import array
from contextlib import closing, suppress
from pathlib import Path
from typing import Any, Callable

from . import config
from .errors import AigcWarning, BadInputError

POOLING = "prompteol-last-token"  # how the local engine embeds; a change makes old vectors stale
FINGERPRINT_TEXT = "The quick brown fox jumps over the lazy dog."
LOCK_WAIT = 5  # seconds to wait for another process's write before going on without the cache
KEPT_VECTORS = 100_000  # vectors kept, those used last (2.3 KB each for SmolLM2-135M, 16 KB for a 4096-wide model)
SCHEMA = "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, digest BLOB NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, digest))"
# when a vector was last stored or found, in uses of the cache counted up (the highest is the latest); a
# table apart, made at the first write, so that `vectors` keeps the shape older aigc versions read and write
USES = (
    "CREATE TABLE IF NOT EXISTS uses (model TEXT NOT NULL, digest BLOB NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (model, digest))",
    "CREATE INDEX IF NOT EXISTS uses_used ON uses (used)",
)


def rank(query: list[float], vectors: list[list[float]], top: int) -> list[tuple[int, float]]:
    """`(index, cosine similarity)` of the `top` vectors most like `query`, most alike first (ties in
    input order), within [-1, 1]. Vectors are expected to have length 1, as engines' embeddings do."""
    if isinstance(top, bool) or not isinstance(top, numbers.Integral) or top < 1:  # numpy's ints too
        raise BadInputError(f"the number of results must be a whole number, at least 1, got {top!r}")
    try:
        sizes = {len(vector) for vector in vectors} - {len(query)}
        if sizes:
            raise BadInputError(f"the query has {len(query)} dimensions but texts have {min(sizes)}; embed them all with the same model")
        scores = ((max(-1.0, min(1.0, sum(a * b for a, b in zip(query, vector)))), index) for index, vector in enumerate(vectors))  # rounding can pass 1
        return [(index, float(score)) for score, index in heapq.nlargest(top, scores, key=lambda pair: (pair[0], -pair[1]))]
    except TypeError:  # a number, text or None where vectors belong
        raise BadInputError("rank takes a query vector and a list of vectors (each a list of numbers), as aigc.embed gives them") from None


def model_id(engine: Any) -> str:
    """What identifies an engine's vectors in the cache: its name, how it was loaded, the pooling,
    and a digest of its vector for `FINGERPRINT_TEXT` (rounded, so it is the same run after run)."""
    vector = engine.embed([FINGERPRINT_TEXT])[0]
    digest = hashlib.sha256(" ".join(f"{x:.3f}" for x in vector).encode()).hexdigest()[:16]
    return " ".join(filter(None, (engine.name, getattr(engine, "variant", ""), POOLING, digest)))


class EmbeddingCache:
    """Vectors by model and text; `lookup` and `store` never fail, they warn and do without."""

    def __init__(self, path: Path | None = None):
        self.path = path or config.cache_dir() / "embeddings.db"
        self.broken = False  # set at the first failure: the rest of the run does without the cache

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        connection = sqlite3.connect(self.path, timeout=LOCK_WAIT)
        try:
            connection.execute(SCHEMA)  # a no-op on a cache that has it, read-only too
        except BaseException:
            connection.close()
            raise
        return connection

    def _fail(self, exc: Exception) -> None:
        self.broken = True
        warnings.warn(f"the embedding cache {self.path} cannot be used ({exc}); going on without it", AigcWarning, stacklevel=3)

    def lookup(self, model: str, texts: list[str]) -> dict[int, list[float]]:
        """`{index: vector}` for the texts already cached for `model` (marked used now)."""
        if self.broken:
            return {}
        digests = [_digest(text) for text in texts]
        found: dict[bytes, list[float]] = {}
        try:
            with closing(self._connect()) as db:
                for start in range(0, len(digests), 500):  # SQLite caps the parameters of one query
                    chunk = digests[start : start + 500]
                    query = f"SELECT digest, vector FROM vectors WHERE model = ? AND digest IN ({','.join('?' * len(chunk))})"
                    for digest, blob in db.execute(query, [model, *chunk]):
                        found[bytes(digest)] = array("f", blob).tolist()
                if found:
                    with suppress(sqlite3.Error), db:  # a read-only cache: used as it is
                        _mark_used(db, model, list(found))
        except (sqlite3.Error, OSError, ValueError) as exc:
            self._fail(exc)
            return {}
        return {i: found[d] for i, d in enumerate(digests) if d in found}

    def store(self, model: str, texts: list[str], vectors: list[list[float]]) -> None:
        """Keep the vectors of `texts` for `model`, and of all vectors only the `KEPT_VECTORS` used last."""
        if self.broken:
            return
        try:
            with closing(self._connect()) as db, db:
                rows = [(model, _digest(text), array("f", vector).tobytes()) for text, vector in zip(texts, vectors)]
                db.executemany("INSERT OR REPLACE INTO vectors (model, digest, vector) VALUES (?, ?, ?)", rows)
                _mark_used(db, model, [row[1] for row in rows])
                extra = db.execute("SELECT count(*) FROM vectors").fetchone()[0] - KEPT_VECTORS
                if extra > 0:  # those an older aigc stored, never marked, go first
                    db.execute(
                        "DELETE FROM vectors WHERE rowid IN (SELECT vectors.rowid FROM vectors LEFT JOIN uses USING (model, digest) ORDER BY coalesce(used, 0) LIMIT ?)", (extra,)
                    )
                    db.execute("DELETE FROM uses WHERE NOT EXISTS (SELECT 1 FROM vectors WHERE vectors.model = uses.model AND vectors.digest = uses.digest)")
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)


def _mark_used(db: sqlite3.Connection, model: str, digests: list[bytes]) -> None:
    """Mark `model`'s vectors of `digests` used now, one past the latest use (a write: the `uses`
    table is made here, not when the cache is only read)."""
    for statement in USES:
        db.execute(statement)
    used = db.execute("SELECT coalesce(max(used), 0) + 1 FROM uses").fetchone()[0]
    db.executemany("INSERT OR REPLACE INTO uses (model, digest, used) VALUES (?, ?, ?)", [(model, digest, used) for digest in digests])


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def embed_cached(generator, texts: list[str], cache: EmbeddingCache | None = None, on_error: Callable[[int, Exception], None] | None = None) -> list[list[float] | None]:
    """Each text's vector from `generator` (an `embed` generator), taking those cached for its model
    and storing the ones it computes; `on_error` as in `EmbedGenerator.embed_many`."""
    cache = cache or EmbeddingCache()
    model = model_id(generator.engine)
    vectors: dict[int, list[float] | None] = dict(cache.lookup(model, texts))
    missing = [i for i in range(len(texts)) if i not in vectors]
    if missing:
        def keep(done: list[str], found: list[list[float] | None]) -> None:
            cache.store(model, [t for t, v in zip(done, found) if v is not None], [v for v in found if v is not None])

        report = None if on_error is None else lambda index, exc: on_error(missing[index], exc)
        vectors.update(zip(missing, generator.embed_many([texts[i] for i in missing], keep=keep, on_error=report)))
    return [vectors[i] for i in range(len(texts))]
