"""Embeddings on a tiny random model: the engine's vectors, the embed generator, similarity ranking,
the embedding cache, and the `embed` / `similar` / `batch embed` commands."""

import json
import math
import stat
import warnings
from contextlib import closing

import pytest
from typer.testing import CliRunner

from aigc.cli.app import app
from aigc.errors import AigcWarning, BadInputError, ContextLengthError
from aigc.generators.embed import EmbedGenerator
from aigc.similarity import FINGERPRINT_TEXT, EmbeddingCache, embed_cached, model_id, rank
from aigc.testing import FakeEngine

runner = CliRunner()
TEXTS = ["Bees make honey on city rooftops.", "Paris is the capital of France.", "The quick brown fox jumps over the lazy dog."]


def norm(vector):
    return math.sqrt(sum(x * x for x in vector))


def test_engine_vectors_have_length_one_and_do_not_depend_on_the_batch(tiny_engine):
    together = tiny_engine.embed(TEXTS)
    alone = [tiny_engine.embed([text])[0] for text in TEXTS]
    assert len(together) == 3 and all(len(v) == tiny_engine.model.config.hidden_size for v in together)
    assert all(norm(v) == pytest.approx(1.0) for v in together)
    for a, b in zip(together, alone):  # left padding in a batch changes nothing
        assert a == pytest.approx(b, abs=1e-5)
    assert together[0] != pytest.approx(together[1], abs=1e-3)
    assert tiny_engine.embed(TEXTS[:1]) == tiny_engine.embed(TEXTS[:1])


@pytest.mark.parametrize("texts, words", [([], "non-empty list"), ("text", "non-empty list"), (["ok", " "], "non-empty text"), ([3], "non-empty text")])
def test_engine_refuses_what_it_cannot_embed(tiny_engine, texts, words):
    with pytest.raises(BadInputError, match=words):
        tiny_engine.embed(texts)


def test_engine_refuses_a_text_longer_than_the_context(tiny_engine):
    with pytest.raises(BadInputError, match="tokens but .* holds 512"):
        tiny_engine.embed(["bees " * 600])


@pytest.mark.parametrize("text", ["the cat sat on the mat. " * 200, "aa" + "日" * 800, "a" + "🐝" * 800])  # the cut inside a character's bytes
def test_fitted_cuts_a_long_text_to_the_start_that_fits_the_context(tiny_engine, text):
    cut = tiny_engine.fitted(text)
    assert text.startswith(cut) and 0 < len(cut) < len(text)  # no character cut in two (no U+FFFD at the end)
    assert len(tiny_engine.tokenizer('This sentence : "' + cut + '" means in one word:"')["input_ids"]) <= tiny_engine.context_length
    assert len(tiny_engine.embed([cut])[0]) == tiny_engine.embedding_size
    assert tiny_engine.fitted(text[:20]) == text[:20]


class CountedTokenizer:
    """A tokenizer that counts the texts it tokenizes or decodes; `fast=False` offers no offsets."""

    def __init__(self, tokenizer, fast: bool):
        self.tokenizer, self.is_fast, self.calls = tokenizer, fast, 0

    def __call__(self, text, **kwargs):
        assert self.is_fast or "return_offsets_mapping" not in kwargs
        self.calls += 1
        return self.tokenizer(text, **kwargs)

    def decode(self, ids, **kwargs):
        self.calls += 1
        return self.tokenizer.decode(ids, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("text", ["the cat sat on the mat. " * 200, "a" + "🐝" * 800, "word" + " " * 3000, "日" * 600 + " \n" * 1000])
def test_fitted_tokenizes_a_long_text_a_few_times_only(tiny_engine, monkeypatch, text, fast):
    counted = CountedTokenizer(tiny_engine.tokenizer, fast)
    monkeypatch.setattr(tiny_engine, "tokenizer", counted)
    cut = tiny_engine.fitted(text)
    assert counted.calls <= 6  # a few tokenizations, however long the text
    assert text.startswith(cut) and cut.strip() and len(tiny_engine._embedded_ids(cut)) <= tiny_engine.context_length


class MergingTokenizer:
    """A tokenizer double: alone (`add_special_tokens=False`) a token a character, inside the embedding
    prompt two characters a token, so a cut made by the text's own tokens overflows again by half as
    much (a decode-and-retry loop cutting by that overflow takes a dozen tries); `decode` spells the
    tokens in capitals, as a normalizing decode, so its text is no prefix of the text."""

    is_fast = True

    def __init__(self):
        self.calls = 0

    def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
        self.calls += 1
        if add_special_tokens:
            return {"input_ids": [0] * math.ceil(len(text) / 2)}
        return {"input_ids": [0] * len(text), **({"offset_mapping": [(i, i + 1) for i in range(len(text))]} if return_offsets_mapping else {})}

    def decode(self, ids, **kwargs):
        self.calls += 1
        return "A" * len(ids)


def test_fitted_cuts_at_a_token_start_by_the_offsets_in_a_few_tries_keeping_nearly_all_that_fits(tiny_engine, monkeypatch):
    counted = MergingTokenizer()
    monkeypatch.setattr(tiny_engine, "tokenizer", counted)
    text = "a" * 3000  # inside the prompt 1500 tokens and more: about 1000 over the 512-token context
    cut = tiny_engine.fitted(text)
    assert counted.calls <= 6 and text.startswith(cut)  # the text's own characters, not the decoded ones
    assert len(tiny_engine._embedded_ids(cut)) <= tiny_engine.context_length < len(tiny_engine._embedded_ids(text[: len(cut) + 8]))


@pytest.mark.parametrize("text", [" " * 3000 + "word", "\u3000" * 1000 + "word", " \t" * 2000 + "word"])
def test_fitted_says_to_strip_a_text_whose_start_that_fits_is_white_space(tiny_engine, monkeypatch, text):
    counted = CountedTokenizer(tiny_engine.tokenizer, True)
    monkeypatch.setattr(tiny_engine, "tokenizer", counted)
    with pytest.raises(ContextLengthError, match="fits .*512-token context is white space only; strip the white space from the text's start"):
        tiny_engine.fitted(text)
    assert counted.calls <= 3


def test_fitted_refuses_a_blank_text_as_embed_does(tiny_engine):
    with pytest.raises(BadInputError, match="a text to embed must be non-empty text"):
        tiny_engine.fitted("\n" * 3000)


def test_generator_result_many_and_embed_many_agree(tiny_engine):
    generator = EmbedGenerator(engine=tiny_engine)
    result = generator(TEXTS[0])
    assert set(result) == {"embedding", "dimensions"} and result["dimensions"] == len(result["embedding"])
    many = generator.many(TEXTS)
    for row, vector in zip(many, generator.embed_many(TEXTS), strict=True):
        assert row["embedding"] == pytest.approx(vector, abs=1e-5)
    assert result["embedding"] == pytest.approx(many[0]["embedding"], abs=1e-5)
    for bad, words in (("", "empty"), (["a"], "takes text")):
        with pytest.raises(BadInputError, match=words):
            generator(bad)
    with pytest.raises(BadInputError, match="list of texts"):
        generator.embed_many("one text")


def test_embed_many_calls_the_engine_in_chunks_and_reports_each(monkeypatch):
    import aigc.generators.embed as embed

    monkeypatch.setattr(embed, "CHUNK", 2)
    engine, seen, kept = FakeEngine(), [], []
    original = engine.embed
    engine.embed = lambda texts: seen.append(list(texts)) or original(texts)
    generator = EmbedGenerator(engine=engine, progress=lambda done, total, what: kept.append((done, total)))
    vectors = generator.embed_many(["a", "b", "c", "d", "e"], keep=lambda texts, found: kept.append((texts, len(found))))
    assert seen == [["a", "b"], ["c", "d"], ["e"]] and len(vectors) == 5
    assert kept == [(["a", "b"], 2), (2, 5), (["c", "d"], 2), (4, 5), (["e"], 1), (5, 5)]


def test_rank_orders_by_cosine_similarity_ties_in_input_order():
    vectors = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [1.0, 0.0]]
    assert rank([1.0, 0.0], vectors, 3) == [(0, 1.0), (3, 1.0), (2, 0.6)]
    assert [i for i, _ in rank([0.0, 1.0], vectors, 10)] == [1, 2, 0, 3]
    with pytest.raises(BadInputError, match="at least 1"):
        rank([1.0, 0.0], vectors, 0)
    with pytest.raises(BadInputError, match="same model"):
        rank([1.0, 0.0, 0.0], vectors, 1)
    with pytest.raises(BadInputError, match="same model"):
        rank([1.0, 0.0], vectors + [[1.0, 0.0, 0.0]], 1)  # a later vector of another size too
    for query, others, top in (([1.0, 0.0], vectors, "2"), ([1.0, 0.0], vectors, True)):
        with pytest.raises(BadInputError, match="must be a whole number, at least 1"):
            rank(query, others, top)
    for query, others in ((None, vectors), ([1.0], "ab"), ([1.0, 0.0], [["a", "b"]]), ("ab", vectors)):
        with pytest.raises(BadInputError, match=r"^rank takes a query vector and a list of vectors \(each a list of numbers\)"):
            rank(query, others, 1)


def test_cache_keeps_vectors_per_model_and_embeds_only_new_texts(tmp_path):
    cache = EmbeddingCache(tmp_path / "embeddings.db")
    engine = FakeEngine()
    calls = []
    original = engine.embed
    engine.embed = lambda texts: calls.append(list(texts)) or original(texts)
    generator = EmbedGenerator(engine=engine)
    first = embed_cached(generator, ["bees", "honey"], cache)
    second = embed_cached(generator, ["honey", "hive", "bees"], cache)
    probe = [FINGERPRINT_TEXT]  # each run embeds it first: the model's key
    assert calls == [probe, ["bees", "honey"], probe, ["hive"]]
    assert second[0] == pytest.approx(first[1], abs=1e-6) and second[2] == pytest.approx(first[0], abs=1e-6)
    assert cache.lookup(model_id(engine) + " other", ["bees"]) == {}  # another model's vectors are apart
    assert model_id(engine).startswith("fake prompteol-last-token ")
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600


def test_another_model_under_the_same_name_never_gets_the_cached_vectors(tmp_path):
    cache = EmbeddingCache(tmp_path / "embeddings.db")
    first, other = FakeEngine(), FakeEngine()
    other.embed = lambda texts: [[-x for x in v] for v in FakeEngine.embed(other, texts)]  # same name, other vectors
    embed_cached(EmbedGenerator(engine=first), ["bees"], cache)
    again = embed_cached(EmbedGenerator(engine=other), ["bees"], cache)
    assert again[0] == pytest.approx(other.embed(["bees"])[0])


def test_the_cache_keeps_only_the_vectors_used_last(tmp_path, monkeypatch):
    """As the classify caches keep the fits used last, so the file cannot grow without bound."""
    import aigc.similarity as similarity

    monkeypatch.setattr(similarity, "KEPT_VECTORS", 3)
    cache = EmbeddingCache(tmp_path / "embeddings.db")
    for text in ("a", "b", "c"):
        cache.store("m", [text], [[1.0, 0.0]])
    assert list(cache.lookup("m", ["a"])) == [0]  # found: used now, so "b" is the one used longest ago
    cache.store("m", ["d"], [[0.0, 1.0]])
    assert sorted(cache.lookup("m", ["a", "b", "c", "d"])) == [0, 2, 3]
    cache.store("other model", ["e", "f"], [[1.0, 0.0], [0.0, 1.0]])  # one cap for all models together
    assert len(cache.lookup("m", ["a", "b", "c", "d"])) == 1 and not cache.broken


def test_a_cache_an_older_aigc_made_is_read_and_capped(tmp_path, monkeypatch):
    import sqlite3
    from array import array

    import aigc.similarity as similarity

    path = tmp_path / "embeddings.db"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE vectors (model TEXT NOT NULL, digest BLOB NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, digest))")
        old.executemany("INSERT INTO vectors VALUES (?, ?, ?)", [("m", similarity._digest(t), array("f", [0.5, 0.5]).tobytes()) for t in ("old", "older")])
    old.close()
    monkeypatch.setattr(similarity, "KEPT_VECTORS", 2)
    cache = EmbeddingCache(path)
    assert cache.lookup("m", ["old"]) == {0: [0.5, 0.5]}
    cache.store("m", ["new"], [[1.0, 0.0]])
    assert sorted(cache.lookup("m", ["old", "older", "new"])) == [0, 2] and not cache.broken
    with closing(sqlite3.connect(path)) as old, old:  # that older aigc still stores into it, as it did
        old.execute("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", ("m", similarity._digest("oldest"), array("f", [0.0, 1.0]).tobytes()))
    assert cache.lookup("m", ["oldest"]) == {0: [0.0, 1.0]}
    cache.store("m", ["newest"], [[1.0, 0.0]])  # of 4, the 2 used last are kept
    assert sorted(cache.lookup("m", ["old", "new", "oldest", "newest"])) == [2, 3] and not cache.broken


def test_a_read_only_cache_an_older_aigc_made_is_read(tmp_path, monkeypatch):
    """The table of use times is made at the first write, not when a cache is only read."""
    import sqlite3
    from array import array

    import aigc.similarity as similarity

    path = tmp_path / "embeddings.db"
    with closing(sqlite3.connect(path)) as old, old:
        old.execute("CREATE TABLE vectors (model TEXT NOT NULL, digest BLOB NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, digest))")
        old.execute("INSERT INTO vectors VALUES (?, ?, ?)", ("m", similarity._digest("hello"), array("f", [1.0, 2.0]).tobytes()))
    real = sqlite3.connect
    monkeypatch.setattr(similarity.sqlite3, "connect", lambda path, **kwargs: real(f"file:{path}?mode=ro", uri=True, **kwargs))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert EmbeddingCache(path).lookup("m", ["hello", "x"]) == {0: [1.0, 2.0]}


def test_a_read_only_cache_is_read_as_it_is(tmp_path, monkeypatch):
    """Marking the vectors found as used is a write; a cache that takes none still gives them."""
    import sqlite3

    import aigc.similarity as similarity

    cache = EmbeddingCache(tmp_path / "embeddings.db")
    cache.store("m", ["bees"], [[1.0, 0.0]])
    real = sqlite3.connect
    monkeypatch.setattr(similarity.sqlite3, "connect", lambda path, **kwargs: real(f"file:{path}?mode=ro", uri=True, **kwargs))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.lookup("m", ["bees", "honey"]) == {0: [1.0, 0.0]}


def test_a_connection_is_closed_when_its_table_cannot_be_made(tmp_path, monkeypatch):
    import sqlite3

    import aigc.similarity as similarity

    closed = []

    class Broken:
        def execute(self, *args):
            raise sqlite3.OperationalError("disk I/O error")

        def close(self):
            closed.append(True)

    monkeypatch.setattr(similarity.sqlite3, "connect", lambda *args, **kwargs: Broken())
    cache = EmbeddingCache(tmp_path / "embeddings.db")
    with pytest.warns(AigcWarning, match="disk I/O error"):
        assert cache.lookup("m", ["bees"]) == {}
    assert closed == [True]


def test_a_locked_cache_is_given_up_after_one_wait(tmp_path, monkeypatch):
    import sqlite3

    import aigc.similarity as similarity

    monkeypatch.setattr(similarity, "LOCK_WAIT", 0.2)
    cache = EmbeddingCache(tmp_path / "embeddings.db")
    embed_cached(EmbedGenerator(engine=FakeEngine()), ["warm"], cache)  # the file exists
    holder = sqlite3.connect(cache.path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vectors = embed_cached(EmbedGenerator(engine=FakeEngine()), [f"text {i}" for i in range(200)], cache)
    finally:
        holder.close()
    assert len(vectors) == 200 and cache.broken and len(caught) == 1


def test_texts_the_engine_refuses_are_reported_and_skipped_with_on_error(tiny_engine, monkeypatch):
    import aigc.generators.embed as embed

    monkeypatch.setattr(embed, "CHUNK", 3)
    generator = EmbedGenerator(engine=tiny_engine)
    texts = ["bees", "bees " * 600, "honey", "hive"]
    with pytest.raises(BadInputError, match="holds 512"):
        generator.embed_many(texts)
    refused = []
    vectors = generator.embed_many(texts, on_error=lambda index, exc: refused.append((index, str(exc))))
    assert [v is None for v in vectors] == [False, True, False, False] and [i for i, _ in refused] == [1]
    assert vectors[2] == pytest.approx(tiny_engine.embed(["honey"])[0], abs=1e-5)


def test_text_that_is_not_utf8_is_bad_input(tiny_engine):
    with pytest.raises(BadInputError, match="not valid UTF-8"):
        tiny_engine.embed(["\ud800x"])
    with pytest.raises(BadInputError, match="not valid UTF-8"):
        tiny_engine.encode("\ud800x")


def test_an_unusable_cache_warns_once_and_embeds_anyway(tmp_path):
    (tmp_path / "embeddings.db").mkdir()  # a directory where the file should be
    generator = EmbedGenerator(engine=FakeEngine())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vectors = embed_cached(generator, ["bees", "honey"], EmbeddingCache(tmp_path / "embeddings.db"))
    assert len(vectors) == 2
    assert [w.category for w in caught] == [AigcWarning] and "cannot be used" in str(caught[0].message)


def test_library_embed_takes_a_text_or_a_list(tiny_model_dir):
    import aigc

    one = aigc.embed(TEXTS[0], model=str(tiny_model_dir), device="cpu", dtype="float32")
    many = aigc.embed(TEXTS, model=str(tiny_model_dir), device="cpu", dtype="float32")
    assert len(many) == 3 and one == pytest.approx(many[0], abs=1e-5)


def invoke(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def fresh_model(tiny_model_dir, tmp_path):
    """A copy of the tiny model: an engine whose `--stats` no other test counted on."""
    import shutil

    return str(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def test_cli_embed_prints_a_json_list_and_json_lines(tiny_model_dir, tmp_path):
    result = invoke("embed", TEXTS[0], "-m", fresh_model(tiny_model_dir, tmp_path), "--stats")
    assert result.exit_code == 0, result.output
    vector = json.loads(result.stdout)
    assert len(vector) == 32 and norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert "texts embedded: 1" in result.stderr and "tokens/s" not in result.stderr
    result = invoke("embed", "-", "--lines", "--json", "-m", str(tiny_model_dir), input="bees\n\nhoney\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 3] and all(r["dimensions"] == 32 for r in rows)
    assert rows[0]["embedding"] == pytest.approx(json.loads(invoke("embed", "bees", "-m", str(tiny_model_dir)).stdout), abs=1e-5)


def test_cli_embed_writes_the_vector_to_a_file_with_o(tiny_model_dir, tmp_path):
    target = tmp_path / "vec.json"
    result = invoke("embed", "bees", "-m", str(tiny_model_dir), "--json", "-o", str(target))
    assert result.exit_code == 0 and result.stdout == "", result.output
    record = json.loads(target.read_text())
    assert record["dimensions"] == 32 and record["embedding"] == pytest.approx(json.loads(invoke("embed", "bees", "-m", str(tiny_model_dir)).stdout), abs=1e-5)
    result = invoke("embed", "-", "--lines", "-o", str(target), "-m", str(tiny_model_dir), input="bees\n\ncities\n")
    assert result.exit_code == 0 and result.stdout == "", result.output
    assert target.read_text() == invoke("embed", "-", "--lines", "-m", str(tiny_model_dir), input="bees\n\ncities\n").stdout  # a line each, blank for blank


@pytest.mark.parametrize("args, input, words", [(["-"], "  \n", "standard input is empty"), (["missing.txt"], None, "no such file")])
def test_cli_embed_bad_input_is_exit_2(tiny_model_dir, args, input, words):
    result = invoke("embed", *args, "-m", str(tiny_model_dir), input=input)
    assert result.exit_code == 2 and words in result.stderr


def test_cli_similar_ranks_the_items_and_reuses_the_cache(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    items = tmp_path / "items.jsonl"
    rows = [{"id": f"t{i}", "text": t, "url": f"https://x/{i}"} for i, t in enumerate(TEXTS)] + [{"id": "empty", "text": ""}, {"id": "other"}]
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    args = ("similar", TEXTS[1], "-i", str(items), "-m", fresh_model(tiny_model_dir, tmp_path), "-n", "2", "--stats")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [line[1] for line in lines][0] == "t1" and float(lines[0][0]) == pytest.approx(1.0, abs=1e-3)
    assert len(lines) == 2 and float(lines[0][0]) >= float(lines[1][0]) and lines[0][2] == TEXTS[1]
    assert "row 4 skipped: the text is empty" in result.stderr and "row 5 skipped" in result.stderr
    assert "texts embedded: 4" in result.stderr  # the model's fingerprint, the query (item t1 too: the same text, embedded once) and 2 items
    again = invoke(*args, "--json")
    assert again.exit_code == 0, again.output
    assert "texts embedded: 5" in again.stderr  # the fingerprint again: the query and the items were cached
    found = [json.loads(line) for line in again.stdout.splitlines()]
    assert [f["id"] for f in found] == [line[1] for line in lines] and found[0]["text"] == TEXTS[1] and found[0]["score"] == 1.0
    assert found[0]["fields"] == {"url": "https://x/1"}  # the row's other columns


@pytest.mark.parametrize("extra, words", [(["-n", "0"], "-n must be at least 1"), (["--field", "body"], "no row has the column 'body' (its columns: 'text'); name the one with the text with --field"), ([], "no row has the column 'text' (its columns: 'body'); name the one with the text with --field")])
def test_cli_similar_bad_input_is_exit_2(tiny_model_dir, tmp_path, extra, words):
    items = tmp_path / "items.jsonl"
    items.write_text('{"body": "bees"}\n{"body": "honey"}\n' if not extra else '{"text": "bees"}\n{"text": "honey"}\n')
    result = invoke("similar", "bees", "-i", str(items), "-m", str(tiny_model_dir), *extra)
    assert result.exit_code == 2 and words in result.stderr


def test_cli_similar_refuses_a_field_for_a_txt_file_whose_lines_are_the_texts(tiny_model_dir, tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("bees\nhoney\n")
    result = invoke("similar", "bees", "-i", str(items), "-m", str(tiny_model_dir), "--field", "body")
    assert result.exit_code == 2 and result.stderr == f"Error: {items}: a .txt file has one text a line and no columns, so no --field; leave it out, or give a .jsonl, .csv or .tsv file\n"
    assert invoke("similar", "bees", "-i", str(items), "-m", str(tiny_model_dir), "--field", "text", "-n", "1").stdout.endswith("\tbees\n")  # the default, said again


def test_cli_similar_refuses_an_empty_query_before_reading_the_rows(tiny_model_dir, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text('{"text": "bees"}\n{"text": ""}\n{"id": "x"}\n')
    result = invoke("similar", " ", "-i", str(items), "-m", str(tiny_model_dir))
    assert result.exit_code == 2 and result.stderr.strip() == "Error: the text is empty; give some text"  # no row warnings first


def test_batch_embed_writes_one_vector_per_row(tiny_model_dir, tmp_path, tiny_engine):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "out.jsonl"
    result = invoke("batch", "embed", "-i", str(source), "-o", str(out), "-m", str(tiny_model_dir), "--dtype", "float32")  # as tiny_engine
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    for row, text in zip(rows, TEXTS):
        assert row["result"]["embedding"] == pytest.approx(tiny_engine.embed([text])[0], abs=1e-5)


def test_cli_similar_skips_a_row_too_long_and_allows_repeated_ids(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    items = tmp_path / "items.csv"
    items.write_text(f"key,body\nk1,{TEXTS[0]}\nk1,{'bees ' * 600}\nk2,{TEXTS[1]}\n")
    result = invoke("similar", TEXTS[1], "-i", str(items), "--field", "body", "--id-field", "key", "-m", str(tiny_model_dir))
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[1] for line in result.stdout.splitlines()] == ["k2", "k1"]
    assert "row 2 skipped: a text takes" in result.stderr


def test_cli_embed_lines_checks_every_line_for_utf8(tiny_model_dir):
    result = invoke("embed", "--lines", "ok\nbad\udcff", "-m", str(tiny_model_dir))
    assert result.exit_code == 2 and "not valid UTF-8" in result.stderr


def test_cli_similar_with_no_row_embedded_is_exit_2_and_odd_ids_stay_on_their_line(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    long = tmp_path / "long.txt"
    long.write_text("bees " * 600 + "\n")
    result = invoke("similar", "bees", "-i", str(long), "-m", str(tiny_model_dir))
    assert result.exit_code == 2 and "no row of" in result.stderr and "could be embedded" in result.stderr
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"id": "a\tb\nc", "text": TEXTS[0]}) + "\n" + json.dumps({"id": True, "text": TEXTS[1]}) + "\n")
    lines = invoke("similar", TEXTS[0], "-i", str(odd), "-m", str(tiny_model_dir)).stdout.splitlines()
    assert len(lines) == 2 and [line.split("\t")[1] for line in lines] == ['"a\\tb\\nc"', "true"]


def test_embed_many_embeds_a_repeated_text_once(tiny_engine):
    from aigc.generators.embed import EmbedGenerator

    errors = []
    vectors = EmbedGenerator(engine=tiny_engine).embed_many(["bees", "honey", "bees", "x " * 5000, "x " * 5000], on_error=lambda i, exc: errors.append(i))
    assert vectors[0] == vectors[2] and vectors[3] is None and vectors[4] is None and errors == [3, 4]


def test_cli_similar_format_names_the_format_of_rows_on_stdin_or_in_a_file_without_a_suffix(tiny_model_dir, tmp_path):
    lines = invoke("similar", "bees", "-i", "-", "--format", "TXT", "-m", str(tiny_model_dir), "-n", "1", input="honey\nbees\n")
    assert lines.exit_code == 0 and lines.stdout.endswith("\t2\tbees\n"), lines.output  # a text a line, numbered
    table = tmp_path / "items"  # no suffix, as a pipe has none
    table.write_text("id,text\na,honey\nb,bees\n")
    found = invoke("similar", "bees", "-i", str(table), "--format", "csv", "-m", str(tiny_model_dir), "-n", "1")
    assert found.exit_code == 0 and found.stdout.endswith("\tb\tbees\n"), found.output
    refused = invoke("similar", "bees", "-i", "-", "--format", "txt", "--field", "body", "-m", str(tiny_model_dir), input="honey\n")
    assert refused.exit_code == 2 and "no columns, so no --field" in refused.stderr
    unknown = invoke("similar", "bees", "-i", str(table), "--format", "bullets", "-m", str(tiny_model_dir))
    assert unknown.exit_code == 2 and "--format names the format of the rows: jsonl, csv, tsv or txt, not 'bullets'" in unknown.stderr


def test_cli_similar_reads_piped_items_without_i_and_plain_lines_as_a_text_each(tiny_model_dir, monkeypatch):
    lines = invoke("similar", "bees", "-m", str(tiny_model_dir), "-n", "1", input="honey\nbees\n")  # `grep bees notes.txt | aigc similar ...`
    assert lines.exit_code == 0 and lines.stdout.endswith("\t2\tbees\n"), lines.output
    dashed = invoke("similar", "bees", "-i", "-", "-m", str(tiny_model_dir), "-n", "1", input="honey\nbees\n")
    assert dashed.exit_code == 0 and dashed.stdout == lines.stdout, dashed.output
    rows = invoke("similar", "bees", "-m", str(tiny_model_dir), "-n", "1", input='{"id": "a", "text": "honey"}\n{"id": "b", "text": "bees"}\n')
    assert rows.exit_code == 0 and rows.stdout.endswith("\tb\tbees\n"), rows.output  # JSON Lines, as `aigc batch -o -` writes them
    braced = invoke("similar", "bees", "-m", str(tiny_model_dir), "-n", "2", input="honey\n{draft} bees\n")  # a line that begins with { but is no JSON object
    assert braced.exit_code == 0 and sorted(line.split("\t", 1)[1] for line in braced.stdout.splitlines()) == ["1\thoney", "2\t{draft} bees"], braced.output
    table = invoke("similar", "bees", "--field", "body", "-m", str(tiny_model_dir), input="id,body\na,honey\n")  # columns named: a table, whose format is to be said
    assert table.exit_code == 2 and "--format txt for a text a line (or csv, tsv)" in table.stderr and "-i -" not in table.stderr
    monkeypatch.setattr("aigc.cli.options._piped", lambda: False)
    alone = invoke("similar", "bees", "-m", str(tiny_model_dir))
    assert alone.exit_code == 2 and alone.stderr == "Error: give -i FILE with the items (.txt, .jsonl, .csv or .tsv), or pipe it in\n"
