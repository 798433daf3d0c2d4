"""Embeddings: a text as a unit-length vector, for similarity search (`aigc similar`) and clustering."""

from __future__ import annotations

from typing import Any, Callable, Iterable, overload

from ..errors import BadInputError
from .base import Generator, listed, type_name

CHUNK = 64  # texts per engine call in `embed_many` (the engine batches them by length)


class EmbedGenerator(Generator):
    """The engine's embedding of one text (`embed_many` for many, with progress)."""

    name = "embed"
    description = "Turn a text into a vector for similarity search"
    samples = False

    def check_inputs(self, inputs: Any) -> None:
        if not isinstance(inputs, str):
            raise BadInputError(f"embed takes text, got {type_name(inputs)}")
        if not inputs.strip():
            raise BadInputError("the text is empty; give some text")

    def preprocess(self, inputs: str, opts) -> str:
        return inputs

    def forward(self, text: str, opts, sampling: dict[str, Any]) -> list[float]:
        return self.engine.embed([text])[0]

    def postprocess(self, vector: list[float], opts) -> dict[str, Any]:
        return {"embedding": vector, "dimensions": len(vector)}

    @overload
    def embed_many(
        self, texts: Iterable[str], keep: Callable[[list[str], list[list[float] | None]], None] | None = None, on_error: None = None,
    ) -> list[list[float]]: ...
    @overload
    def embed_many(
        self, texts: Iterable[str], keep: Callable[[list[str], list[list[float] | None]], None] | None = None, *,
        on_error: Callable[[int, BadInputError], None],
    ) -> list[list[float] | None]: ...
    def embed_many(
        self, texts: Iterable[str], keep: Callable[[list[str], list[list[float] | None]], None] | None = None,
        on_error: Callable[[int, BadInputError], None] | None = None,
    ) -> list[list[float]] | list[list[float] | None]:
        """Each text's vector, in order (a text given twice embedded once), `CHUNK` texts per engine call; reports progress, and hands
        each call's texts and vectors to `keep` (a cache) as they come. A text the engine refuses
        (longer than the context, say) raises its error; with `on_error`, its vector is None and
        `on_error(index, error)` is told instead."""
        texts = listed(texts, "give a list of texts to embed", "; embed one text with aigc.embed(text)")
        self.check_each(texts)
        unique = list(dict.fromkeys(texts))
        if len(unique) < len(texts):  # a text given twice is embedded once: the copies get the same vector
            places: dict[str, list[int]] = {}
            for index, text in enumerate(texts):
                places.setdefault(text, []).append(index)
            report = None if on_error is None else lambda index, exc: [on_error(place, exc) for place in places[unique[index]]]
            found = dict(zip(unique, self.embed_many(unique, keep, report)))  # type: ignore[arg-type]  # report: None or a function, as on_error was
            return [None if found[text] is None else list(found[text]) for text in texts]  # copies: changing one changes no other
        vectors: list[list[float]] = []
        for start in range(0, len(texts), CHUNK):
            chunk = list(texts[start : start + CHUNK])
            try:
                vectors += self.engine.embed(chunk)
            except BadInputError:
                if on_error is None:
                    raise
                vectors += [self._one(text, start + offset, on_error) for offset, text in enumerate(chunk)]  # find which
            if keep:
                keep(chunk, vectors[start:])
            self.progress(len(vectors), len(texts), "embedding")
        return vectors

    def _one(self, text: str, index: int, on_error: Callable[[int, BadInputError], None]) -> list[float] | None:
        try:
            return self.engine.embed([text])[0]
        except BadInputError as exc:
            on_error(index, exc)
            return None
