"""Batch runs: reading rows, resuming, order, errors, and model calls merged into batches."""

import io
import json
import os
import threading
import time

import pytest

from aigc.batch import run_batch
from aigc.batch_inputs import Row, read_rows
from aigc.batch_output import pending_rows, read_output, run_settings
from aigc.engine.coalesce import CoalescingEngine
from aigc.engine.sampling import SamplingParams
from aigc.errors import AigcError, BadInputError, BusyError, PluginError, option
from aigc.generators.base import Generator, get_generator
from aigc.testing import FakeEngine
from counted import counted


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rows_from_every_format(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "x", "text": "one"}\n\n{"text": "two"}\n[1]\n{"id": NaN, "text": "three"}\n{"id": 1e400, "text": "four"}\n{"text": "five}\n')
    (tmp_path / "a.csv").write_text("id,text\n7,\"one, with comma\"\n8,two\n")
    (tmp_path / "a.tsv").write_text('"text"\tother\n"Hello" she said\t1\n"unbalanced quote\t2\n"She said ""hi"""\t3\n')
    (tmp_path / "b.csv").write_text("id,text\n1,short\n2\n3,long,extra\n")
    (tmp_path / "c.csv").write_text("id,text,note\n1\n")
    (tmp_path / "a.txt").write_text("one\n\n \t\ntwo\n")  # blank lines are no rows, but count in the ids
    jsonl = read_rows(tmp_path / "a.jsonl")
    assert [(r.id, r.fields.get("text"), r.error) for r in jsonl] == [("x", "one", None), (3, "two", None), (None, None, "not a JSON object (a list); each line must be one object"), (None, None, "bad JSON: NaN is not JSON"), (None, None, "bad JSON: 1e400 is too large a number"), (None, None, "bad JSON: Unterminated string starting at: column 10")]
    (tmp_path / "b.jsonl").write_text('"str"\n{"id": [1], "text": "x"}\n{"id": {"a": 1}, "text": "x"}\n{"id": true, "text": "x"}\n{"id": 2.5, "text": "x"}\n')
    assert [(r.id, r.error) for r in read_rows(tmp_path / "b.jsonl")] == [
        (None, "not a JSON object (a string); each line must be one object"), (None, "the id ('id') must be a string or number, not a list"),
        (None, "the id ('id') must be a string or number, not an object"), (None, "the id ('id') must be a string or number, not true"), (2.5, None),
    ]
    assert [r.id for r in read_rows(tmp_path / "b.jsonl", unique_ids=False)][1:] == [[1], {"a": 1}, True, 2.5]  # shown, not resumed by (`aigc similar`)
    assert [(r.id, r.fields["text"]) for r in read_rows(tmp_path / "a.csv")] == [("7", "one, with comma"), ("8", "two")]
    assert [(r.id, r.fields["text"]) for r in read_rows(tmp_path / "a.tsv")] == [(1, '"Hello" she said'), (2, '"unbalanced quote'), (3, 'She said "hi"')]
    assert [(r.id, r.error) for r in read_rows(tmp_path / "b.csv")] == [
        ("1", None), ("2", "the row has 1 cell; the header has 2 (no 'text' cell)"), ("3", "the row has 3 cells; the header has 2")
    ]
    assert [r.error for r in read_rows(tmp_path / "c.csv")] == ["the row has 1 cell; the header has 3 (no 'text' cell)"]
    assert [(r.id, r.fields["text"], r.error) for r in read_rows(tmp_path / "a.txt")] == [(1, "one", None), (4, "two", None)]


@pytest.mark.parametrize("name, delimiter", [("a.csv", ","), ("a.tsv", "\t")])
def test_a_table_row_short_of_cells_after_its_text_has_them_empty_as_pandas_reads_it(tmp_path, name, delimiter):
    (tmp_path / name).write_text("id,text,note,tag\n1,hello\n2,hi,n\n3,x,y,z,extra\n,bye,m\n".replace(",", delimiter))
    rows = read_rows(tmp_path / name)
    assert [(r.id, r.fields, r.error) for r in rows] == [
        ("1", {"id": "1", "text": "hello", "note": "", "tag": ""}, None),
        ("2", {"id": "2", "text": "hi", "note": "n", "tag": ""}, None),
        ("3", {}, "the row has 5 cells; the header has 4"),  # cells beyond the header: which column is which is unknown
        (4, {"id": "", "text": "bye", "note": "m", "tag": ""}, None),
    ]
    by_note = read_rows(tmp_path / name, field="note")  # the row without the --field's cell has no text
    assert [r.error for r in by_note] == ["the row has 2 cells; the header has 4 (no 'note' cell)", None, "the row has 5 cells; the header has 4", None]


def test_a_csv_whose_first_line_names_its_delimiter_as_excel_reads_it_is_split_there(tmp_path):
    (tmp_path / "a.csv").write_text('sep=;\r\nid;text\r\n1;hello, there\r\n2;"a; b"\r\n')
    assert [(r.id, r.fields["text"]) for r in read_rows(tmp_path / "a.csv")] == [("1", "hello, there"), ("2", "a; b")]
    (tmp_path / "b.csv").write_text("\nsep=|\nid|id\n1|2\n")
    with pytest.raises(BadInputError, match=r"b.csv:3: the header names 'id' twice"):  # its line, counted as the file has it
        read_rows(tmp_path / "b.csv")


def test_a_tsv_cell_quoted_over_several_lines_as_pandas_and_excel_write_it_is_one_cell(tmp_path):
    (tmp_path / "a.tsv").write_text('id\ttext\tnote\n1\t"first line\nsecond ""quoted""\n\nthird"\tx\n2\t"unbalanced quote\ty\n3\tok\tz\n')
    assert [(r.id, r.fields["text"], r.fields["note"]) for r in read_rows(tmp_path / "a.tsv")] == [("1", 'first line\nsecond "quoted"\n\nthird', "x"), ("2", '"unbalanced quote', "y"), ("3", "ok", "z")]
    (tmp_path / "b.tsv").write_text('id\ttext\n1\t"never closed\n2\ttwo\n3\t"closed" but not a cell\n')  # no quoted cell ends: lines as they are
    assert [(r.id, r.fields.get("text")) for r in read_rows(tmp_path / "b.tsv")] == [("1", '"never closed'), ("2", "two"), ("3", '"closed" but not a cell')]
    (tmp_path / "c.tsv").write_text('id\ttext\tnote\n1\t"two\nlines"\t"and\ntwo more"\n2\tok\tz\n')  # two such cells in one row
    assert [(r.id, r.fields["text"], r.fields["note"]) for r in read_rows(tmp_path / "c.tsv")] == [("1", "two\nlines", "and\ntwo more"), ("2", "ok", "z")]


def test_bad_inputs_are_clear_errors(tmp_path):
    (tmp_path / "a.xml").write_text("x")
    (tmp_path / "dup.jsonl").write_text('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n')
    (tmp_path / "empty.txt").write_text("\n")
    for name, words in (("a.xml", "rows are read from .jsonl, .ndjson, .csv, .tsv, .txt files"), ("dup.jsonl", "more than once"), ("empty.txt", "empty"), ("nope.txt", "no such file"), ("nope", "no such file"), ("nope.xml", "no such file")):
        with pytest.raises(BadInputError, match=words):
            read_rows(tmp_path / name)


def test_a_dotted_field_or_id_field_reads_nested_json_objects(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        '{"meta": {"id": "a"}, "translation": {"en": "Hello", "fr": "Bonjour"}}\n'
        '{"meta": {"id": "b"}, "translation": {"en": null}}\n'
        '{"meta": {}, "translation": "flat"}\n'
        '{"meta": {"id": "d"}, "translation.en": "a key with a dot wins"}\n'
    )
    rows = read_rows(tmp_path / "a.jsonl", "meta.id", "translation.en")
    assert [(r.id, r.fields.get("translation.en")) for r in rows] == [("a", "Hello"), ("b", None), (3, None), ("d", "a key with a dot wins")]
    assert "translation.en" in rows[1].fields and "translation.en" not in rows[2].fields  # null is a value (an error as a row runs), not a missing key
    summarize = get_generator("summarize")
    assert summarize.batch_input(rows[0].fields, "translation.en") == "Hello"
    with pytest.raises(BadInputError, match="must hold text, not null"):
        summarize.batch_input(rows[1].fields, "translation.en")
    with pytest.raises(BadInputError, match="no 'translation.en' field"):
        summarize.batch_input(rows[2].fields, "translation.en")


def test_a_json_file_says_how_to_make_it_json_lines(tmp_path):
    (tmp_path / "docs.json").write_text('[{"id": 1, "text": "a"}]\n')
    with pytest.raises(BadInputError) as error:
        read_rows(tmp_path / "docs.json")
    assert str(error.value) == f"{tmp_path / 'docs.json'}: rows are read from .jsonl, .ndjson, .csv, .tsv, .txt files; for a JSON list of objects, `jq -c '.[]' {tmp_path / 'docs.json'} > {tmp_path / 'docs.jsonl'}` writes them one a line (JSON Lines); for an object of strings (an i18n file), `aigc translate {tmp_path / 'docs.json'} --to LANG -o OUT.json` translates its values, keeping its keys and shape"


def test_a_spreadsheet_or_parquet_file_says_how_to_make_rows_of_it(tmp_path):
    for name, words in (("sheet.xlsx", "; save the sheet as CSV (UTF-8) from the spreadsheet and give that file"), ("data.parquet", f"pandas.read_parquet('{tmp_path / 'data.parquet'}').to_json('{tmp_path / 'data.jsonl'}', orient='records', lines=True")):
        (tmp_path / name).write_bytes(b"PK\x03\x04")
        with pytest.raises(BadInputError) as error:
            read_rows(tmp_path / name)
        assert words in str(error.value)


def test_run_batch_names_an_argument_of_the_wrong_kind_before_any_row_runs(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("one\n")
    engine, out = FakeEngine(), tmp_path / "out.jsonl"
    for args, sampling, words in (
        (("summarize", read_rows(source), out, {}), None, "run_batch runs a generator, such as aigc.get_generator('summarize'), got str"),
        ((summarizer(engine), "rows.txt", out, {}), None, "rows must be a list of rows, as read_rows(path) gives them, got str"),
        ((summarizer(engine), [{"id": "a", "text": "one"}], out, {}), None, "as read_rows(path) gives them, got a list holding dict; generator.many(inputs) runs a list of inputs in memory"),
        ((summarizer(engine), read_rows(source), out, None), None, "options must be a dict of the generator's options, such as {'words': 40}, got None"),
        ((summarizer(engine), read_rows(source), 5, {}), None, "output must be the path of the file to write (str or Path), got int"),
        ((summarizer(engine), read_rows(source), out, {}), {"temprature": 0}, "unknown sampling setting temprature"),
    ):
        with pytest.raises(BadInputError) as info:
            run_batch(*args, sampling)
        assert words in str(info.value)
    with pytest.raises(BadInputError, match="^read_rows takes the path of a file of rows"):
        read_rows(None)
    assert engine.calls == [] and not out.exists()


def test_an_unwritable_output_fails_before_any_row_runs(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("one\n")
    engine = FakeEngine()
    with pytest.raises(BadInputError, match="does not exist"):
        run_batch(summarizer(engine), read_rows(source), tmp_path / "missing" / "out.jsonl", {})
    assert engine.calls == []


def test_a_torn_last_line_is_cut_off_and_only_results_count_as_done(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a", "row": 1, "result": {}}\n{"id": 2, "row": 2, "error": "x"}\n{"id": "c", "ro')
    rows = [Row(1, "a", {}), Row(2, 2, {}), Row(3, "c", {})]
    assert [r.id for r in pending_rows(rows, out, summarizer(FakeEngine()), {})] == [2, "c"]
    assert out.read_text().endswith('"ro')  # only looked at: the run that holds the file repairs it
    read_output(out)
    assert out.read_text().endswith('"error": "x"}\n')
    out.write_text('{"id": "a", "row": 1, "result": {}}\n{"i')  # torn before its id was written
    assert [r.id for r in pending_rows(rows, out, summarizer(FakeEngine()), {})] == [2, "c"]
    assert len(read_output(out)) == 1 and out.read_text().endswith("}\n")
    out.write_text('{"id": "a", "row": 1, "result": {}}')  # whole, only its newline missing
    assert [r.id for r in pending_rows(rows, out, summarizer(FakeEngine()), {})] == [2, "c"]
    assert len(read_output(out)) == 1 and out.read_text().endswith("}\n")
    for other in ("not a batch file\n", '{"id": 1, "text": "an input row"}\n', "my notes\nprecious last line", '{"id": 1, "text": "my only row"}'):
        out.write_text(other)
        with pytest.raises(BadInputError, match="not a batch output line"):
            pending_rows(rows, out, summarizer(FakeEngine()), {})
        assert out.read_text() == other  # a file that is not batch output is never cut


def test_other_json_lines_with_an_id_and_a_result_or_error_are_not_taken_for_batch_output(tmp_path):
    out = tmp_path / "out.jsonl"
    rows = [Row(1, 1, {"text": "one"}), Row(2, 2, {"text": "two"})]
    openai_batch_output = (
        '{"id": "batch_req_1", "custom_id": "request-2", "response": {"status_code": 200, "body": {}}, "error": null}\n'
        '{"id": "batch_req_2", "custom_id": "request-1", "response": null, "error": {"code": "invalid_prompt", "message": "x"}}\n'
    )
    json_rpc_log = '{"jsonrpc": "2.0", "result": 19, "id": 1}\n{"jsonrpc": "2.0", "result": -19, "id": 2}\n'
    for other in (openai_batch_output, json_rpc_log, '{"id": 1, "row": true, "result": {}}\n', '{"id": 1, "row": "1", "result": {}}\n'):
        out.write_text(other)
        with pytest.raises(BadInputError, match="out.jsonl:1 is not a batch output line"):
            run_batch(summarizer(FakeEngine()), rows, out, {})
        assert out.read_text() == other
    out.write_text('{"id": 1, "row": 1, "result": {"summary": "old"}}\n{"id": 2, "row": 2, "error": "failed"}\n')  # as the first aigc batch wrote them
    assert run_batch(summarizer(FakeEngine()), rows, out, {}).retried == 1
    assert [(r["id"], "result" in r) for r in lines(out)] == [(1, True), (2, True)] and lines(out)[0]["result"] == {"summary": "old"}


def test_blank_lines_added_to_an_output_file_are_skipped(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("one\ntwo\nthree\n")
    rows = read_rows(source)
    run_batch(summarizer(FakeEngine()), rows[:2], out, {})
    first, second = out.read_text().splitlines()
    out.write_text(f"\n{first}\n \t\n{second}\n\n  ")  # blank lines typed by hand, the last without its newline
    assert [r.id for r in pending_rows(rows, out, summarizer(FakeEngine()), {})] == [3]
    assert [key for key, _ in read_output(out)] == ["1", "2"] and out.read_text().endswith("}\n\n")
    run_batch(summarizer(FakeEngine()), rows, out, {})
    assert [record["id"] for _, record in read_output(out)] == [1, 2, 3]
    out.write_text(f"{first}\n\nmy notes")
    with pytest.raises(BadInputError, match=r"out.jsonl:3 is not a batch output line"):  # other damaged lines are refused as before
        read_output(out)


def test_json_nested_too_deeply_is_bad_json_not_a_crash(tmp_path):
    deep = "[" * 100000 + "]" * 100000
    (tmp_path / "in.jsonl").write_text(f'{{"id": 1, "text": {deep}}}\n{{"id": 2, "text": "two"}}\n')
    assert [(r.id, r.error) for r in read_rows(tmp_path / "in.jsonl")] == [(None, "bad JSON: nested too deeply"), (2, None)]
    out = tmp_path / "out.jsonl"
    for text in (f"{deep}\n", f'{{"id": 1, "row": 1, "result": {{}}}}\n{deep}'):  # a line, and a last line without its newline
        out.write_text(text)
        with pytest.raises(BadInputError, match=r"out.jsonl:\d is not a batch output line"):
            read_output(out)
        assert out.read_text() == text


def test_output_of_another_task_is_refused(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "row": 1, "task": "classify", "result": {}}\n')
    with pytest.raises(BadInputError, match="holds classify output, not summarize"):
        pending_rows([Row(1, 1, {})], out, summarizer(FakeEngine()), {})


def test_a_rerun_with_another_model_or_other_settings_is_refused(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("one\ntwo\n")
    rows = read_rows(source)
    run_batch(summarizer(FakeEngine()), rows[:1], out, {"words": 20}, {"temperature": 0.0})
    made = lines(out)[0]
    assert made["model"] == "fake" and len(made["settings"]) == 12
    assert [r.id for r in pending_rows(rows, out, summarizer(FakeEngine()), {"words": 20}, {"temperature": 0.0})] == [2]
    for options, sampling in (({"words": 30}, {"temperature": 0.0}), ({"words": 20}, {}), ({"words": 20}, {"temperature": 0.0, "seed": 1})):
        with pytest.raises(BadInputError, match="made with other task options, sampling settings or columns"):
            run_batch(summarizer(FakeEngine()), rows, out, options, sampling)
    for columns in (("body", "id"), ("text", "key")):  # the text or ids read from another column
        with pytest.raises(BadInputError, match=r"or columns \(--field, --id-field\)"):
            pending_rows(rows, out, summarizer(FakeEngine()), {"words": 20}, {"temperature": 0.0}, columns)
    other = summarizer(FakeEngine())
    other.engine.name = "other-model"
    with pytest.raises(BadInputError, match="made with model fake, not other-model; resume it with that model"):
        pending_rows(rows, out, other, {"words": 20}, {"temperature": 0.0})
    assert lines(out) == [made]  # a refused rerun leaves the file as it is
    run_batch(summarizer(FakeEngine()), rows, out, {"words": 20}, {"temperature": 0.0})
    assert [line["id"] for line in lines(out)] == [1, 2] and len({line["settings"] for line in lines(out)}) == 1


def test_a_rerun_with_another_64_bit_seed_is_refused_and_a_small_seeds_file_still_resumes(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("one\ntwo\n")
    rows, seed = read_rows(source), 2**60  # 2**60 + 1 is the same float: each seed has its own stream
    run_batch(summarizer(FakeEngine()), rows[:1], out, {}, {"seed": seed, "temperature": 0.7})
    with pytest.raises(BadInputError, match=rf"seed: {seed} then, {seed + 1} now"):
        pending_rows(rows, out, summarizer(FakeEngine()), {}, {"seed": seed + 1, "temperature": 0.7})
    assert [r.id for r in pending_rows(rows, out, summarizer(FakeEngine()), {}, {"seed": seed, "temperature": 0.7})] == [2]
    chat = get_generator("chat", engine=FakeEngine())  # the fingerprint aigc recorded before large seeds counted
    assert run_settings(chat, {}, {"seed": 7, "max_tokens": 64, "temperature": 1})["settings"] == "74ce9f4f97f8"
    assert run_settings(chat, {}, {"seed": -3, "max_tokens": 64, "temperature": 1})["settings"] == "eec7f13370f6"


def test_a_file_whose_settings_record_an_older_aigc_fingerprinted_otherwise_is_refused_saying_so(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("one\ntwo\n")
    rows, seed = read_rows(source), 2**60
    run_batch(summarizer(FakeEngine()), rows[:1], out, {}, {"seed": seed, "temperature": 0.7})
    out.write_text("".join(json.dumps({**line, "settings": "df3af6e8c87f"}) + "\n" for line in lines(out)))  # as aigc wrote it before 64-bit seeds counted
    with pytest.raises(BadInputError, match=r"^.*out\.jsonl records the same task options, sampling settings and columns \(made_with\), fingerprinted otherwise \(settings\) by another version of aigc; add retry_failed to run the rows it has no result for with these \(the results it has are kept\), or give another -o to start a new file$"):
        pending_rows(rows, out, summarizer(FakeEngine()), {}, {"seed": seed, "temperature": 0.7})
    assert [r.id for r in pending_rows(rows, out, summarizer(FakeEngine()), {}, {"seed": seed, "temperature": 0.7}, retry_failed=True)] == [2]


def test_a_rerun_with_other_settings_is_let_through_when_no_result_was_made_with_the_old_ones(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("one\ntwo\n")
    rows = read_rows(source)
    out.write_text("".join(json.dumps({"id": n, "row": n, **run_settings(summarizer(FakeEngine()), {"words": 20}, {"max_tokens": 8}), "error": "cut off at --max-tokens 8"}) + "\n" for n in (1, 2)))
    summary = run_batch(summarizer(FakeEngine()), rows, out, {"words": 20}, {"max_tokens": 64})  # every row failed with the old settings: nothing to mix with
    assert (summary.done, summary.retried) == (2, 2)
    assert [(line["id"], line["made_with"]["max_tokens"], "result" in line) for line in lines(out)] == [(1, 64, True), (2, 64, True)]
    out.write_text(out.read_text().replace('"result"', '"error": "x", "was"', 1))  # row 1 failed, row 2 has a result made with max_tokens 64
    with pytest.raises(BadInputError, match=r"max_tokens: 64 then, 8 now"):
        pending_rows(rows, out, summarizer(FakeEngine()), {"words": 20}, {"max_tokens": 8})
    out.write_text('{"id": 1, "row": 1, "task": "classify", "error": "x"}\n')  # a file of failed rows of another task holds nothing to keep
    assert [r.id for r in pending_rows(rows, out, summarizer(FakeEngine()), {})] == [1, 2]


def test_a_bad_json_line_has_no_id_to_clash_with_a_real_one(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 10, "text": "a"}\n{bad\n{"id": 2, "text": "b"}\n{"id": null, "text": "c"}\n')
    engine = FakeEngine()
    engine.enqueue("one.", "two.", "three.")
    out = tmp_path / "out.jsonl"
    run_batch(summarizer(engine), read_rows(source), out, {})
    expected = [(10, 1, False), (None, 2, True), (2, 3, False), (4, 4, False)]  # "id": null is no id: the row number
    assert [(r["id"], r["row"], "error" in r) for r in lines(out)] == expected
    again = run_batch(summarizer(engine), read_rows(source), out, {})  # only the bad line runs again
    assert again.done == 1 and [(r["id"], r["row"], "error" in r) for r in lines(out)] == expected


def test_a_rerun_retries_failed_rows_and_keeps_input_order(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "r1", "text": "fine"}\n{"id": "r2", "text": ""}\n{"id": "r3", "text": "also fine"}\n')
    out = tmp_path / "out.jsonl"
    engine = FakeEngine()
    engine.enqueue(*["ok."] * 3)
    first = run_batch(summarizer(engine), read_rows(source), out, {})
    assert first.errors == 1 and "error" in lines(out)[1]
    source.write_text(source.read_text().replace('"text": ""', '"text": "fixed now"'))
    again = run_batch(summarizer(engine), read_rows(source), out, {})
    assert (again.done, again.skipped, again.retried, again.errors) == (1, 2, 1, 0)
    rows = lines(out)
    assert [r["id"] for r in rows] == ["r1", "r2", "r3"] and all("result" in r for r in rows)


def test_nothing_left_to_do_loads_no_model(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("one\n")
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "row": 1, "result": {"summary": "s"}}\n')

    class Unloadable(type(summarizer(FakeEngine()))):
        def prepare(self, options):
            raise AssertionError("loaded a model with nothing to do")

    summary = run_batch(Unloadable(engine=FakeEngine()), read_rows(source), out, {})
    assert (summary.done, summary.skipped) == (0, 1)


def summarizer(engine):
    return get_generator("summarize", engine=engine)


def test_results_keep_input_order_and_a_rerun_skips_done_rows(tmp_path):
    texts = [f"{'word ' * (120 - i)}item {i}." for i in range(10)]  # lengths differ, so rows are reordered; each longer than its summary
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts))
    out = tmp_path / "out.jsonl"
    engine = FakeEngine()
    engine.enqueue(*[f"summary {i}" for i in range(10)])
    summary = run_batch(summarizer(engine), read_rows(source)[:6], out, {}, concurrency=4)
    assert summary.done == 6 and [row["id"] for row in lines(out)] == [1, 2, 3, 4, 5, 6]
    again = run_batch(summarizer(engine), read_rows(source), out, {}, concurrency=4)
    assert again.skipped == 6 and again.done == 4
    rows = lines(out)
    assert [row["id"] for row in rows] == list(range(1, 11))
    assert all("summary" in row["result"]["summary"] for row in rows)


def test_a_rerun_runs_again_the_rows_whose_input_changed_since_their_result(tmp_path):
    long = "word " * 150  # longer than its summary, so it reaches the model
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text(f"{long}one.\n{long}two.\n{long}three.\n")
    engine = FakeEngine()
    engine.enqueue("summary of one", "summary of two", "summary of three")
    run_batch(summarizer(engine), read_rows(source), out, {}, concurrency=1)
    source.write_text(f"{long}one.\n{long}TWO, fixed.\n{long}three.\n")  # the same ids, row 2 edited (or another file of as many lines)
    engine.enqueue("summary of the fixed two")
    again = run_batch(summarizer(engine), read_rows(source), out, {}, concurrency=1)
    assert (again.done, again.skipped, again.changed) == (1, 2, 1) and engine.queue == []
    assert [(row["id"], row["result"]["summary"]) for row in lines(out)] == [(1, "summary of one"), (2, "summary of the fixed two"), (3, "summary of three")]
    out.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "input_digest"}) + "\n" for row in lines(out)))  # lines written before inputs were recorded
    source.write_text(f"{long}one, edited.\n{long}TWO, fixed.\n{long}three.\n")
    assert run_batch(summarizer(engine), read_rows(source), out, {}).skipped == 3  # taken as made from the input as it is


def test_dev_stdout_is_written_as_a_stream_even_when_it_appends_to_a_file(tmp_path):
    import subprocess
    import sys

    (tmp_path / "in.txt").write_text("good film\nbad film\n")
    out = tmp_path / "log.txt"
    out.write_text("an earlier line that is no batch output\n")
    script = (
        "from aigc.batch import run_batch; from aigc.batch_inputs import read_rows; from aigc.batch_output import pending_rows; from aigc.generators.base import get_generator; from aigc.testing import FakeEngine; "
        f"g, rows = get_generator('classify', engine=FakeEngine()), read_rows({str(tmp_path / 'in.txt')!r}); "
        "assert len(pending_rows(rows, '/dev/stdout', g, {'labels': 'a,bb'})) == 2; "  # what the CLI asks first
        "run_batch(g, rows, '/dev/stdout', {'labels': 'a,bb'})"
    )
    with open(out, "a") as sink:
        subprocess.run([sys.executable, "-c", script], stdout=sink, check=True)
    first, *rows = out.read_text().splitlines()
    assert first == "an earlier line that is no batch output"
    assert [(json.loads(r)["id"], json.loads(r)["result"]["label"]) for r in rows] == [(1, "a"), (2, "a")]
    fd = os.open(out, os.O_WRONLY | os.O_TRUNC)  # `( echo BEFORE; aigc batch ... -o /dev/stdout; echo AFTER ) > log.txt`
    os.write(fd, b"BEFORE\n")
    subprocess.run([sys.executable, "-c", script], stdout=fd, check=True)
    os.write(fd, b"AFTER\n")
    os.close(fd)
    first, *rows, last = out.read_text().splitlines()
    assert (first, last, [json.loads(r)["id"] for r in rows]) == ("BEFORE", "AFTER", [1, 2])


def test_concurrent_rows_share_model_calls(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(f"text number {i} about things " * 25 for i in range(12)))  # longer than a summary
    engine = FakeEngine()
    engine.enqueue(*["a summary."] * 12)
    run_batch(summarizer(engine), read_rows(source), tmp_path / "out.jsonl", {}, concurrency=4)
    sizes = [len(prompts) for prompts, _ in engine.calls]
    assert sum(sizes) == 12 and len(sizes) <= 4 and max(sizes) == 4


def test_on_error_skip_records_the_error_and_stop_names_the_row(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "fine"}\n{"text": ""}\n{"body": "x"}\n{"text": "also fine"}\n')
    engine = FakeEngine()
    engine.enqueue(*["ok."] * 4)
    out = tmp_path / "skip.jsonl"
    summary = run_batch(summarizer(engine), read_rows(source), out, {}, on_error="skip")
    rows = lines(out)
    assert summary.errors == 2 and [("error" in r) for r in rows] == [False, True, True, False]
    assert "no text" in rows[1]["error"] and "'text' field" in rows[2]["error"]
    stopped = tmp_path / "stop.jsonl"
    threads = threading.active_count()
    generator = summarizer(engine)
    with pytest.raises(BadInputError, match="row 2"):
        run_batch(generator, read_rows(source), stopped, {}, on_error="stop")
    assert [r["row"] for r in lines(stopped)] == [1]
    assert threading.active_count() == threads and generator.engine is engine  # no row still running


def test_options_that_need_texts_together_are_refused(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("good\nbad\n")
    with pytest.raises(BadInputError, match="classify --lines"):
        run_batch(get_generator("classify", engine=FakeEngine()), read_rows(source), tmp_path / "out.jsonl", {"labels": "a,b", "calibrate": "batch"})


def test_sampling_settings_for_a_task_that_generates_no_text_are_refused_not_recorded(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("good\nbad\n")
    for task, options in (("classify", {"labels": "a,b"}), ("embed", {})):
        generator = get_generator(task, engine=FakeEngine())
        with pytest.raises(BadInputError, match=f"^{task} takes no sampling options \\(it generates no text\\): drop temperature, max_tokens$"):
            pending_rows(read_rows(source), out, generator, options, {"temperature": 0.7, "max_tokens": 5})
        with pytest.raises(BadInputError, match="takes no sampling options"):
            run_batch(generator, read_rows(source), out, options, {"seed": 1})
    assert not out.exists()
    run_batch(get_generator("classify", engine=FakeEngine()), read_rows(source), out, {"labels": "a,b"}, {})
    assert lines(out)[0]["made_with"].keys() == {"labels"}


def test_chat_made_with_lists_the_options_given_not_its_empty_variables():
    chat = get_generator("chat", engine=FakeEngine())
    assert run_settings(chat, {"system": "Be brief."})["made_with"] == {"system": "Be brief."}
    assert run_settings(chat, {})["settings"] == run_settings(chat, {"variables": None})["settings"] == run_settings(chat, {"variables": {}})["settings"]


def test_summarizes_part_size_fitted_to_the_model_keeps_the_fingerprint_of_the_default_it_replaced():
    summarize = summarizer(FakeEngine())
    made = run_settings(summarize, {})
    assert {k: v for k, v in made.items() if k != "templates"} == {"task": "summarize", "model": "fake", "settings": "9de1e99c0744", "made_with": {}}  # as aigc recorded chunk_tokens 1500
    assert sorted(made["templates"]) == ["summarize", "summarize-chunk"]  # recorded beside the fingerprint, not in it
    assert run_settings(summarize, {"chunk_tokens": 500})["made_with"] == {"chunk_tokens": 500}


def test_headlines_tone_left_unset_keeps_the_fingerprint_of_the_options_before_tone():
    from aigc.generators.headline import HeadlineOptions

    headline = get_generator("headline", engine=FakeEngine())
    assert run_settings(headline, {})["settings"] == "1c8627ec3329"  # as aigc recorded n, style, max_words and template
    toned = run_settings(headline, {"tone": "playful"})
    assert toned["settings"] != "1c8627ec3329" and toned["made_with"] == {"tone": "playful"}
    assert HeadlineOptions(5, "seo", 10) == HeadlineOptions(n=5, style="seo", max_words=10)  # a new option goes last: positional calls keep their meaning


def test_a_txt_files_line_options_are_its_defaults_so_made_with_does_not_list_them(tmp_path):
    translate = get_generator("translate", engine=FakeEngine())
    german = {"target_language": "de"}
    assert run_settings(translate, german, lines=True)["made_with"] == {"target_language": "de"}  # plain, as a .txt row is read
    assert run_settings(translate, {**german, "plain": True})["made_with"] == {"plain": True, "target_language": "de"}  # a .jsonl row
    assert run_settings(translate, {**german, "plain": False}, lines=True)["made_with"] == {"plain": False, "target_language": "de"}
    assert run_settings(translate, german, lines=True)["settings"] == run_settings(translate, {**german, "plain": True})["settings"]
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("    an indented line\n")
    translate.engine.enqueue("eine Zeile")
    run_batch(translate, read_rows(source), out, german, lines=True)
    assert lines(out)[0]["made_with"] == {"target_language": "de"} and lines(out)[0]["result"]["translation"] == "    eine Zeile"  # prose, not code kept as it is


def test_coalescing_engine_merges_waiting_calls_by_settings():
    engine = FakeEngine()
    engine.enqueue(*[str(i) for i in range(6)])
    coalescing = CoalescingEngine(engine, workers=3)
    params = SamplingParams(max_tokens=5)
    answers = {}

    def worker(name, settings):
        answers[name] = coalescing.generate([name], settings)[0][0].text
        coalescing.retire()

    threads = [threading.Thread(target=worker, args=(n, p)) for n, p in (("a", params), ("b", params), ("c", params.replace(max_tokens=9)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(coalescing.batches) == [1, 2]  # a and b together, c alone
    assert sorted(answers) == ["a", "b", "c"]


def _run_workers(coalescing, calls):
    """Each (name, prompt, settings) on its own thread; {name: text or the error}."""
    answers = {}

    def worker(name, prompt, settings):
        try:
            answers[name] = coalescing.generate([prompt], settings)[0][0].text
        except BadInputError as exc:
            answers[name] = exc
        finally:
            coalescing.retire()

    threads = [threading.Thread(target=worker, args=call) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    return answers


def test_a_merged_call_that_fails_is_retried_alone_so_the_error_stays_with_its_row():
    class PickyEngine(FakeEngine):
        def generate(self, prompts, params):
            if "too long" in prompts:
                raise BadInputError("the prompt takes 660 tokens")
            return super().generate(prompts, params)

    engine = PickyEngine()
    engine.enqueue("fine answer")
    coalescing = CoalescingEngine(engine, workers=2)
    params = SamplingParams(max_tokens=5)
    answers = _run_workers(coalescing, [("good", "short", params), ("bad", "too long", params)])
    assert answers["good"] == "fine answer" and isinstance(answers["bad"], BadInputError)
    assert sorted(coalescing.batches) == [1, 1, 2]  # tried together, then each alone


def test_seeded_sampling_is_not_merged_on_an_engine_without_seeded_parts():
    engine = FakeEngine()
    engine.enqueue(*"abcd")
    coalescing = CoalescingEngine(engine, workers=4)
    seeded, greedy = SamplingParams(temperature=1.0, seed=3, max_tokens=5), SamplingParams(temperature=0, seed=3, max_tokens=5)
    _run_workers(coalescing, [("s1", "x", seeded), ("s2", "y", seeded), ("g1", "z", greedy), ("g2", "w", greedy)])
    assert sorted(coalescing.batches) == [1, 1, 2]  # each seeded call alone; the greedy ones together


def test_seeded_sampling_is_merged_in_half_precision_each_call_with_its_own_seed():
    class HalfEngine(FakeEngine):  # a local model in bfloat16: throughput wins over exact replay alone
        seeded_parts = True
        dtype = "bfloat16"

        def generate(self, prompts, params, seeds=None):
            self.seeds = seeds
            return super().generate(prompts, params)

    half = HalfEngine()
    half.enqueue(*"ab")
    coalescing = CoalescingEngine(half, workers=2)
    seeded = SamplingParams(temperature=1.0, seed=3, max_tokens=5)
    answers = _run_workers(coalescing, [("s1", "x", seeded), ("s2", "y", seeded.replace(seed=4))])
    assert coalescing.batches == [2] and sorted(answers.values()) == ["a", "b"]
    assert sorted(half.seeds) == [(3, 1), (4, 1)] and half.calls[0][1].seed is None  # each call drawn from its own seed


def test_a_batch_merges_sampled_rows_with_drawn_seeds_on_a_bfloat16_model(tiny_model_dir, monkeypatch):
    import aigc.batch as batch
    from aigc.batch import run_rows
    from aigc.batch_inputs import Row
    from aigc.engine.loading import load_model

    made = []

    class Counted(CoalescingEngine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(batch, "CoalescingEngine", Counted)
    generator = get_generator("chat")
    generator._engine = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    rows = [Row(i + 1, str(i), {"text": f"hello {i}"}) for i in range(6)]
    outcomes = list(run_rows(generator, rows, {}, {"temperature": 1.0, "max_tokens": 3}, concurrency=6, draw_seeds=True))
    assert all("result" in outcome for _, outcome in outcomes)
    seeds = [outcome["seed"] for _, outcome in outcomes]
    assert len(set(seeds)) == 6  # each row its own seed, recorded
    assert made[0].batches == [6]  # and still one model batch, not six of one row


def test_a_local_models_seeded_calls_are_merged_each_drawn_from_its_own_seed_as_alone(tiny_engine):
    coalescing = CoalescingEngine(tiny_engine, workers=4)
    sampled = SamplingParams(temperature=1.5, max_tokens=6)
    calls = [("s1", "Bees make", sampled.replace(seed=1)), ("s2", "Paris is", sampled.replace(seed=2**40 + 7)), ("s3", "Bees make", sampled.replace(seed=5)), ("u", "The quick", sampled)]
    answers = _run_workers(coalescing, calls)
    assert coalescing.batches == [4]  # one model batch
    for name, prompt, params in calls[:3]:  # each as the same prompt and seed alone gives it
        assert answers[name] == tiny_engine.generate([prompt], params)[0][0].text
    several = SamplingParams(temperature=1.5, max_tokens=6, n=2)
    merged = CoalescingEngine(tiny_engine, workers=2)
    answers = {}

    def worker(name, prompts, seed):
        answers[name] = [c.text for group in merged.generate(prompts, several.replace(seed=seed)) for c in group]
        merged.retire()

    threads = [threading.Thread(target=worker, args=args) for args in (("a", ["Bees make", "Paris is"], 11), ("b", ["The quick"], 12))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert merged.batches == [3]
    assert answers["a"] == [c.text for group in tiny_engine.generate(["Bees make", "Paris is"], several.replace(seed=11)) for c in group]
    assert answers["b"] == [c.text for group in tiny_engine.generate(["The quick"], several.replace(seed=12)) for c in group]


def test_a_failing_model_fails_the_merged_call_once_not_per_caller():
    from aigc.errors import ModelUnavailableError

    class DownEngine(FakeEngine):
        def generate(self, prompts, params):
            self.calls.append(prompts)
            raise ModelUnavailableError("cannot reach http://gpu-box")

    engine = DownEngine()
    coalescing = CoalescingEngine(engine, workers=3)
    errors = {}

    def worker(name):
        try:
            coalescing.generate([name], SamplingParams(max_tokens=5))
        except ModelUnavailableError as exc:
            errors[name] = exc
        finally:
            coalescing.retire()

    threads = [threading.Thread(target=worker, args=(n,)) for n in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(errors) == ["a", "b", "c"] and len(engine.calls) == 1


def test_a_generator_bug_on_a_row_is_that_rows_error_under_skip_and_stops_the_run_under_stop(tmp_path):
    from aigc.generators.base import Generator

    class Parser(Generator):
        name = "parser"

        def preprocess(self, inputs, opts):
            return inputs

        def forward(self, prepared, opts, sampling):
            if "bad" in prepared:
                raise ValueError("could not parse the model's answer")
            if "filter" in prepared:
                raise PluginError("jinja filter 'x' of plugin 'p' failed: KeyError: 1")
            return prepared

        def postprocess(self, raw, opts):
            return {"text": raw.upper()}

    source = tmp_path / "in.txt"
    source.write_text("one\nbad two\nthree\n")
    out = tmp_path / "out.jsonl"
    summary = run_batch(Parser(engine=FakeEngine()), read_rows(source), out, {})
    assert summary.errors == 1 and [line.get("result") for line in lines(out)] == [{"text": "ONE"}, None, {"text": "THREE"}]
    assert lines(out)[1]["error"] == "the parser generator failed: ValueError: could not parse the model's answer"
    with pytest.raises(AigcError, match=r"^row 2 \(id 2\): the parser generator failed: ValueError: could not parse") as stopped:
        run_batch(Parser(engine=FakeEngine()), read_rows(source), tmp_path / "stopped.jsonl", {}, on_error="stop")
    assert not isinstance(stopped.value, BadInputError) and isinstance(stopped.value.__cause__, ValueError)  # exit 1: a bug
    source.write_text("one\nfilter two\n")
    with pytest.raises(AigcError, match=r"^row 2 \(id 2\): jinja filter 'x' of plugin 'p' failed") as stopped:
        run_batch(Parser(engine=FakeEngine()), read_rows(source), tmp_path / "plugin.jsonl", {}, on_error="stop")
    assert not isinstance(stopped.value, BadInputError)  # not the row's fault: exit 1


def test_a_generator_that_exits_or_returns_what_json_cannot_hold_fails_its_row_only(tmp_path):
    from aigc.generators.base import Generator

    class Odd(Generator):
        name = "odd"

        def preprocess(self, inputs, opts):
            return inputs

        def forward(self, prepared, opts, sampling):
            if prepared == "exit":
                raise SystemExit("missing dependency")
            if prepared == "interrupt":
                raise KeyboardInterrupt
            return {"set": {prepared}} if prepared == "set" else {"value": float("nan")} if prepared == "nan" else {"text": prepared}

        def postprocess(self, raw, opts):
            return raw

    source = tmp_path / "in.txt"
    source.write_text("exit\ninterrupt\nset\nnan\nfine\n")
    out = tmp_path / "out.jsonl"
    done = threading.Thread(target=run_batch, args=(Odd(engine=FakeEngine()), read_rows(source), out, {}), daemon=True)
    done.start()
    done.join(timeout=30)
    assert not done.is_alive()  # a worker that raised SystemExit used to leave the run waiting for ever
    rows = lines(out)
    assert [row.get("result") for row in rows] == [None, None, None, None, {"text": "fine"}]
    assert rows[0]["error"] == "the odd generator failed: SystemExit: missing dependency" and "KeyboardInterrupt" in rows[1]["error"]
    assert all("returned what JSON cannot hold" in row["error"] for row in rows[2:4])
    with pytest.raises(SystemExit, match="missing dependency"):  # raised to the caller as a call on its own would, once all have run
        Odd(engine=FakeEngine()).many(["exit", "fine"])
    results = Odd(engine=FakeEngine()).imany(iter(["fine", "exit", "never"]), on_error="skip", concurrency=1)
    assert next(results) == {"text": "fine"}
    with pytest.raises(SystemExit, match="missing dependency"):  # at its place, skip or not
        next(results)


def test_on_error_stop_starts_no_row_after_the_bad_one(tmp_path):
    Counted = counted("bad0")
    source = tmp_path / "in.txt"
    source.write_text("ok, the first row\nbad0\n" + "".join(f"ok{'!' * (i % 7)}\n" for i in range(1, 40)))  # shorter rows after it would be taken first by length
    out = tmp_path / "out.jsonl"
    with pytest.raises(BadInputError, match=r"^row 2 \(id 2\): the model cannot answer this one$"):
        run_batch(Counted(engine=FakeEngine()), read_rows(source), out, {}, on_error="stop", concurrency=1)
    assert Counted.ran == ["ok, the first row", "bad0"] and [r["row"] for r in lines(out)] == [1]


def test_stop_at_error_gives_outcomes_in_input_order_up_to_the_first_failure():
    from aigc.batch import run_rows

    class Failing(Generator):
        name = "failing"

        def preprocess(self, inputs, opts):
            return inputs

        def forward(self, prepared, opts, sampling):
            if prepared == 3:
                failed.set()
                raise BadInputError("fails at once")
            if prepared == 1:
                failed.wait(30)
                raise BadInputError("fails after row 3, earlier in input")
            return {"text": prepared}

        def postprocess(self, raw, opts):
            return raw

    failed = threading.Event()
    rows = [Row(i, i, {}, input=i, given=True) for i in range(4)]
    outcomes = run_rows(Failing(engine=FakeEngine()), rows, {}, concurrency=4, in_order=False, stop_at_error=True)
    assert [(row.number, "error" in outcome) for row, outcome in outcomes] == [(0, False), (1, True)]


def test_a_resume_with_the_same_settings_spelled_otherwise_is_taken(tmp_path, tiny_model_dir):
    import shutil

    from aigc.generators.headline import HeadlineGenerator

    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("bees\nsolar\n")
    rows = read_rows(source)
    engine = FakeEngine()
    engine.enqueue("Bees are back")
    run_batch(HeadlineGenerator(engine=engine), rows[:1], out, {"n": "1"}, {"temperature": 1, "stop": "x"})
    for options, sampling in (({"n": 1}, {"temperature": 1.0, "stop": ["x"]}), ({"n": "01", "style": "news"}, {"temperature": 1, "stop": ("x",)})):
        assert [r.id for r in pending_rows(rows, out, HeadlineGenerator(engine=engine), options, sampling)] == [2]
    with pytest.raises(BadInputError, match="other task options"):
        pending_rows(rows, out, HeadlineGenerator(engine=engine), {"n": 1, "style": "question"}, {"temperature": 1})
    translated = tmp_path / "translated.jsonl"
    run_batch(get_generator("translate", engine=engine), rows[:1], translated, {"target_language": "de"})
    assert [r.id for r in pending_rows(rows, translated, get_generator("translate", engine=engine), {"target_language": "German", "source_language": "auto"})] == [2]
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    made = tmp_path / "made.jsonl"
    settings = run_settings(get_generator("summarize", model=str(model)), {}, {})
    made.write_text(json.dumps({"id": 1, "row": 1, **settings, "result": {}}) + "\n")
    assert settings["model"] == str(model)
    for spelling in (str(tmp_path / "model" / ".." / "model"), str(model) + "/"):  # not loaded: checked before any load
        assert [r.id for r in pending_rows(rows, made, get_generator("summarize", model=spelling), {}, {})] == [2]
    with pytest.raises(BadInputError, match=f"made with model {model}, not {tiny_model_dir}"):
        pending_rows(rows, made, get_generator("summarize", model=str(tiny_model_dir)), {}, {})


def test_template_rows_fill_the_declared_variables_and_a_txt_line_fills_the_input(tmp_path):
    from aigc.generators.template import TemplateGenerator

    (tmp_path / "a.csv").write_text("id,input,note\nr1,Say hi,ignored\n")
    (tmp_path / "a.txt").write_text("Say hello\n")
    (tmp_path / "topics.txt").write_text("rooftop bees\n")
    engine = FakeEngine()
    engine.enqueue("one", "two")
    for name in ("a.csv", "a.txt"):
        run_batch(TemplateGenerator(engine=engine), read_rows(tmp_path / name), tmp_path / f"{name}.jsonl", {"template": "chat"})
    results = [lines(tmp_path / f"{name}.jsonl")[0] for name in ("a.csv", "a.txt")]
    assert [r["result"]["messages"][-1]["content"] for r in results] == ["Say hi", "Say hello"]
    assert [r["id"] for r in results] == ["r1", 1]
    assert read_rows(tmp_path / "topics.txt", field="topic")[0].fields == {"topic": "rooftop bees"}  # --field names a .txt line


def test_a_txt_line_fills_the_input_of_a_template_that_declares_no_variables(tmp_path):
    from aigc import templates
    from aigc.generators.template import TemplateGenerator

    templates.user_dir().mkdir(parents=True, exist_ok=True)
    (templates.user_dir() / "bare.j2").write_text("Answer: {{ input }}\n")
    (templates.user_dir() / "columns.j2").write_text("{{ text }} by {{ who }}\n")
    (tmp_path / "a.txt").write_text("Say hello\n")
    (tmp_path / "a.jsonl").write_text('{"text": "Hi", "who": "me"}\n')
    engine = FakeEngine()
    engine.enqueue("one", "two")
    run_batch(TemplateGenerator(engine=engine), read_rows(tmp_path / "a.txt"), tmp_path / "a.out", {"template": "bare"})
    run_batch(TemplateGenerator(engine=engine), read_rows(tmp_path / "a.jsonl"), tmp_path / "b.out", {"template": "columns"})  # columns fill it by name
    assert [lines(tmp_path / name)[0]["result"]["messages"][-1]["content"] for name in ("a.out", "b.out")] == ["Answer: Say hello", "Hi by me"]


def test_stop_names_a_row_without_an_id_as_json(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(BadInputError, match=r"row 2 \(id null\): bad JSON"):
        run_batch(summarizer(FakeEngine()), read_rows(source), tmp_path / "out.jsonl", {}, on_error="stop")


def test_an_id_column_no_row_has_is_an_error_not_row_numbers(tmp_path):
    (tmp_path / "a.csv").write_text("key,text\nk1,one\n")
    with pytest.raises(BadInputError, match="no row has the id column 'kee' given with id_field \\(its columns: 'key', 'text'\\)"):
        read_rows(tmp_path / "a.csv", "kee")
    assert [r.id for r in read_rows(tmp_path / "a.csv", "key")] == ["k1"]


def test_cells_are_read_as_they_are(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "a\\u2028b", "text": "first\u2028second"}\n{"id": "c", "text": "third\x85"}\n', encoding="utf-8")
    (tmp_path / "a.tsv").write_text("id\ttext\tnote\n1\t<html> is markup\tx\n2\tplain\t\n")
    (tmp_path / "a.csv").write_text("id , text \n1,one\n")
    rows = read_rows(tmp_path / "a.jsonl")  # U+2028 and U+0085 end no line
    assert [(r.id, r.fields["text"]) for r in rows] == [("a\u2028b", "first\u2028second"), ("c", "third\x85")]
    assert [(r.fields, r.error) for r in read_rows(tmp_path / "a.tsv")] == [
        ({"id": "1", "text": "<html> is markup", "note": "x"}, None), ({"id": "2", "text": "plain", "note": ""}, None)  # an empty last cell is a cell
    ]
    assert read_rows(tmp_path / "a.csv")[0].fields == {"id": "1", "text": "one"}  # header names without their spaces
    engine = FakeEngine()
    engine.enqueue("One.", "Two.", "Three.")
    out = tmp_path / "out.jsonl"
    run_batch(summarizer(engine), rows, out, {})
    assert [r.id for r in pending_rows(rows, out, summarizer(engine), {})] == []  # its own output reads back, U+2028 and all


def test_rows_are_written_as_they_finish_and_a_finished_run_is_in_input_order(tmp_path):
    release = threading.Event()
    generator = summarizer(FakeEngine())

    class SlowOnOne(type(generator)):
        def __call__(self, inputs, **kwargs):
            result = super().__call__(inputs, **kwargs)
            if "slow" in inputs:
                release.wait(30)  # done after the other row is written
            return result

    source = tmp_path / "in.txt"
    source.write_text("a slow one.\nquick.\n")
    out = tmp_path / "out.jsonl"
    engine = FakeEngine()
    engine.enqueue("Done.", "Done.")
    written = []

    def progress(done, total):
        if done:  # (0, total) first, as the rows start
            written.append([r["id"] for r in lines(out)])
            release.set()

    run_batch(SlowOnOne(engine=engine), read_rows(source), out, {}, concurrency=2, progress=progress)
    assert written == [[2], [2, 1]] and [r["id"] for r in lines(out)] == [1, 2]


def test_an_output_another_run_is_writing_is_refused(tmp_path):
    from aigc import locks

    source = tmp_path / "in.txt"
    source.write_text("one.\n")
    out = tmp_path / "out.jsonl"
    with locks.held(out, "busy"):
        with pytest.raises(BusyError, match="being written by another aigc batch; wait for it to end \\(--wait\\), or give another -o$"):
            run_batch(summarizer(FakeEngine()), read_rows(source), out, {})
        with pytest.raises(BadInputError, match="being written by another aigc batch"):  # the CLI asks before the model loads
            pending_rows(read_rows(source), out, summarizer(FakeEngine()), {})
    run_batch(summarizer(FakeEngine()), read_rows(source), out, {})
    assert [r["id"] for r in lines(out)] == [1]


def test_an_output_named_in_no_utf8_is_locked_and_written(tmp_path):
    from aigc import locks

    source = tmp_path / "in.txt"
    source.write_text("one.\n")
    out = tmp_path / os.fsdecode(b"caf\xe9.jsonl")  # as Python reads such a name from argv: a lone surrogate
    with locks.held(out, "busy") as locked:
        assert locked
        with pytest.raises(BadInputError, match="being written by another aigc batch"):  # held for this name, not skipped
            pending_rows(read_rows(source), out, summarizer(FakeEngine()), {})
    run_batch(summarizer(FakeEngine()), read_rows(source), out, {})
    assert [r["id"] for r in lines(out)] == [1]


def test_a_field_no_row_has_fails_before_any_row_runs(tmp_path):
    from aigc.batch_inputs import check_inputs

    (tmp_path / "a.jsonl").write_text('{"body": "one"}\n{"body": "two"}\nnot json\n')
    rows = read_rows(tmp_path / "a.jsonl")
    with pytest.raises(BadInputError, match=r"a.jsonl: no row can run: the row has no 'text' field \(it has 'body'\)"):
        check_inputs(summarizer(FakeEngine()), rows, "text", tmp_path / "a.jsonl")
    check_inputs(summarizer(FakeEngine()), rows, "body", tmp_path / "a.jsonl")  # some rows can: the bad JSON line is a row error


def test_rows_come_from_a_named_pipe_and_a_directory_is_said_to_be_one(tmp_path):
    import os
    import threading

    os.mkfifo(tmp_path / "p.jsonl")
    writer = threading.Thread(target=(tmp_path / "p.jsonl").write_text, args=('{"text": "piped"}\n',))
    writer.start()
    assert [r.fields["text"] for r in read_rows(tmp_path / "p.jsonl")] == ["piped"]
    writer.join()
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(BadInputError, match="d.jsonl is a directory; give a file"):
        read_rows(tmp_path / "d.jsonl")


def test_blank_lines_around_a_table_are_no_rows_and_a_bad_table_is_one_error(tmp_path):
    (tmp_path / "a.csv").write_text('\n  \nid,text\n1,"first\n\nparagraph"\n   \n2,two\n \n')
    assert [(r.id, r.fields["text"], r.error) for r in read_rows(tmp_path / "a.csv")] == [("1", "first\n\nparagraph", None), ("2", "two", None)]
    (tmp_path / "b.csv").write_bytes(b"id,text\n1,one\r2\n")  # a lone carriage return outside quotes
    with pytest.raises(BadInputError, match=r"b.csv:2: cannot read it as CSV: a cell holds a carriage return outside quotes; put the cell in double quotes") as error:
        read_rows(tmp_path / "b.csv")
    assert "universal-newline" not in str(error.value)  # Python's hint: no help to a user
    (tmp_path / "mac.csv").write_bytes(b'id,text\r1,one\r2,"two, three"\r')  # Excel's "CSV (Macintosh)"
    with pytest.raises(BadInputError, match=r"mac.csv: cannot read it as CSV: its lines end in a lone carriage return \(as old Mac programs write them\); save it with line feeds"):
        read_rows(tmp_path / "mac.csv")


def test_a_quote_never_closed_in_a_csv_is_an_error_at_the_line_it_opens(tmp_path):
    (tmp_path / "a.csv").write_text('\nid,text\n1,hi\n2,"He said ""no, thanks\n3,third row\n4,fourth row\n')
    (tmp_path / "semicolons.csv").write_text('id;text\n1;"never closed\n2;second row\n')  # split at semicolons: the quote opens a cell too
    (tmp_path / "last.csv").write_text('id,text\n1,one\n2,"never closed\n')  # on the last line: the cell would take its line break in
    for name, line in (("a.csv", 4), ("semicolons.csv", 2), ("last.csv", 3)):
        with pytest.raises(BadInputError, match=f"{name}:{line}: cannot read it as CSV: a quoted cell opens on this row and is never closed"):
            read_rows(tmp_path / name)
    (tmp_path / "b.csv").write_text('id,text\n1,"x" \n2,"hello" world\n3,a 5" screen\n4,"two\nlines"\n')  # loose, but readable
    assert [r.fields["text"] for r in read_rows(tmp_path / "b.csv")] == ["x ", "hello world", 'a 5" screen', "two\nlines"]


def test_a_header_naming_a_column_twice_or_an_id_column_for_txt_is_an_error(tmp_path):
    (tmp_path / "dup.csv").write_text("\nid,text,text\n1,a,b\n")
    with pytest.raises(BadInputError, match=r"dup.csv:2: the header names 'text' twice; give each column its own name"):
        read_rows(tmp_path / "dup.csv")
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    with pytest.raises(BadInputError, match="a .txt file has one text a line and no columns, so no id_field"):
        read_rows(tmp_path / "a.txt", id_field="key")


def test_the_progress_bar_shows_the_total_at_once_and_a_rate_over_the_whole_run(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from aigc import ui

    assert ui.rate_and_left(8, 24, 7.0) == (8 / 7, 14.0)  # a window of 8 done 7 s in: 14 s left, not 0
    assert ui.rate_and_left(0, 24, 3.0) == (None, None)
    screen = io.StringIO()
    monkeypatch.setattr(ui, "_stderr", Console(file=screen, force_terminal=True, width=100))
    monkeypatch.setattr(ui, "interactive", lambda: True)
    source = tmp_path / "in.txt"
    source.write_text("one.\ntwo.\nthree.\n")
    seen = []
    with ui.items_progress("summarize") as progress:
        def report(done, total):
            progress(done, total)
            seen.append((done, total))
        run_batch(summarizer(FakeEngine()), read_rows(source), tmp_path / "out.jsonl", {}, progress=report)
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)  # the total from the start
    assert "3/3" in screen.getvalue() and " rows/s" in screen.getvalue() and "items/s" not in screen.getvalue()


def test_a_template_with_nowhere_to_put_the_text_fails_before_any_row_runs(tmp_path):
    from aigc.batch_inputs import check_inputs
    from aigc.generators.template import TemplateGenerator

    (tmp_path / "a.jsonl").write_text('{"text": "bees"}\n{"text": "solar"}\n')
    (tmp_path / "b.jsonl").write_text('{"topic": "bees"}\n')
    generator = TemplateGenerator(engine=FakeEngine())
    with pytest.raises(BadInputError, match=r"a.jsonl: no row can run: template 'headline' has no 'input' variable .* nowhere to go"):
        check_inputs(generator, read_rows(tmp_path / "a.jsonl"), "text", tmp_path / "a.jsonl", {"template": "headline"})
    check_inputs(generator, read_rows(tmp_path / "b.jsonl"), "text", tmp_path / "b.jsonl", {"template": "headline"})  # a column named after its variable
    check_inputs(generator, read_rows(tmp_path / "a.jsonl"), "text", tmp_path / "a.jsonl", {"template": "chat"})
    from typer.testing import CliRunner

    from aigc.cli.app import app

    out = tmp_path / "out.jsonl"
    unloadable = tmp_path / "unloadable-model"  # found, but loading it would fail: the check comes before the load
    unloadable.mkdir()
    (unloadable / "config.json").write_text('{"model_type": "llama"}')
    result = CliRunner().invoke(app, ["batch", "template", "-i", str(tmp_path / "a.jsonl"), "-o", str(out), "-O", "template=headline", "-m", str(unloadable)])
    assert result.exit_code == 2 and "nowhere to go" in result.stderr and not out.exists()


def test_the_output_is_held_while_the_model_loads(tmp_path, monkeypatch, tiny_model_dir):
    from typer.testing import CliRunner

    from aigc import locks
    from aigc.cli.app import app
    from aigc.generators.base import Generator

    (tmp_path / "in.txt").write_text("one.\n")
    out = tmp_path / "out.jsonl"
    refused = []

    def second_run():  # another run (a thread holds its own lock) asks for the file
        try:
            with locks.held(out, "busy"):
                refused.append(False)
        except BadInputError:
            refused.append(True)

    def prepare(self, options):
        thread = threading.Thread(target=second_run)
        thread.start()
        thread.join()
        raise BadInputError("no model here")

    monkeypatch.setattr(Generator, "prepare", prepare)
    result = CliRunner().invoke(app, ["batch", "summarize", "-i", str(tmp_path / "in.txt"), "-o", str(out), "-m", str(tiny_model_dir)])  # not loaded
    assert "no model here" in result.stderr and refused == [True]


def test_an_output_not_named_jsonl_is_refused_before_any_work(tmp_path):
    from aigc.batch import check_output_name

    for name in ("results.csv", "results.json", "results"):
        with pytest.raises(BadInputError, match=r"aigc batch writes JSON Lines .* name it .jsonl, e.g. -o .*results.jsonl"):
            check_output_name(tmp_path / name)
    for name in (tmp_path / "out.jsonl", tmp_path / "out.NDJSON", "/dev/stdout", "/dev/null"):
        check_output_name(name)


def test_ndjson_is_json_lines_and_a_csv_may_be_split_by_semicolons_tabs_or_pipes(tmp_path):
    (tmp_path / "a.ndjson").write_text('{"id": "x", "text": "one"}\n')
    (tmp_path / "semi.csv").write_text('id;text\n1;"one; with semicolon"\n2;two, with comma\n')
    (tmp_path / "pipe.csv").write_text("id|text\n1|one\n")
    (tmp_path / "one.csv").write_text("text\nhello; world\n")  # one column: nothing to split
    assert [(r.id, r.fields["text"]) for r in read_rows(tmp_path / "a.ndjson")] == [("x", "one")]
    assert [(r.id, r.fields["text"]) for r in read_rows(tmp_path / "semi.csv")] == [("1", "one; with semicolon"), ("2", "two, with comma")]
    assert [(r.id, r.fields["text"]) for r in read_rows(tmp_path / "pipe.csv")] == [("1", "one")]
    assert [r.fields for r in read_rows(tmp_path / "one.csv")] == [{"text": "hello; world"}]


def test_a_row_numbered_for_want_of_an_id_that_clashes_with_a_real_id_is_named(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"id": 2, "text": "a"}\n{"text": "b"}\n')
    (tmp_path / "c.csv").write_text("id,text\n2,a\n,b\n")  # "2" is the number 2, compared as text
    (tmp_path / "d.jsonl").write_text('{"id": 1, "text": "a"}\n{"text": "b"}\n{"id": 1, "text": "c"}\n')
    for name in ("c.jsonl", "c.csv"):
        with pytest.raises(BadInputError, match=rf"{name}: row 2 has no id, so it gets its row number, 2, which is also row 1's id; .* give every row an id"):
            read_rows(tmp_path / name)
    with pytest.raises(BadInputError, match=r"d.jsonl: id 1 \(rows 1, 3\) appears more than once"):
        read_rows(tmp_path / "d.jsonl")
    assert [r.id for r in read_rows(tmp_path / "c.jsonl", unique_ids=False)] == [2, 2]


@pytest.mark.parametrize(
    "task, options",
    [("translate", {"target_language": "fr"}), ("headline", {}), ("summarize", {}), ("classify", {"labels": "a,b"})],
)
def test_a_task_template_that_needs_a_variable_the_task_does_not_fill_is_an_option_error(task, options):
    from aigc.errors import OptionError

    generator = get_generator(task, engine=FakeEngine())
    with pytest.raises(OptionError, match=rf"names template 'chat', which needs input, and {task} fills only .*; give a template made for {task}"):
        generator.validate({**options, "template": "chat"})  # checked once, not an error on every row
    generator.validate(options)


@pytest.mark.parametrize("task, options, template", [("summarize", {}, "headline"), ("translate", {"target_language": "fr"}, "headline")])
def test_a_task_template_that_never_reads_the_input_is_an_option_error(task, options, template):
    from aigc.errors import OptionError

    with pytest.raises(OptionError, match=rf"names template '{template}', which never reads .*, where {task} puts its input"):
        get_generator(task, engine=FakeEngine()).validate({**options, "template": template})  # the text would be dropped


def test_a_translate_template_that_never_reads_the_target_language_is_an_option_error():
    from aigc.errors import OptionError

    with pytest.raises(OptionError, match=r"names template 'summarize', which never reads target \(the language to translate into\); give a template made for translate"):
        get_generator("translate", engine=FakeEngine()).validate({"target_language": "fr", "template": "summarize"})


def test_rows_that_failed_when_read_load_no_model(tmp_path, monkeypatch):
    import aigc.batch

    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "fine"}\n{oops\n')
    out = tmp_path / "out.jsonl"
    run_batch(summarizer(FakeEngine()), read_rows(source), out, {})  # the good row is done; the bad one fails

    class Unloadable(type(summarizer(FakeEngine()))):
        def prepare(self, options):
            raise AssertionError("loaded a model for rows that never reach it")

    monkeypatch.setattr(aigc.batch, "CoalescingEngine", None)  # no engine is wrapped for the workers either
    summary = run_batch(Unloadable(engine=FakeEngine()), read_rows(source), out, {})
    assert (summary.done, summary.skipped, summary.errors) == (1, 1, 1)


def test_rows_without_text_fail_as_they_are_read_and_a_rerun_of_them_loads_no_model(tmp_path, monkeypatch):
    import aigc.batch
    from aigc.batch_inputs import check_inputs

    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "body": "no text"}\n{"id": "c", "text": "  "}\n{"id": "d", "text": 3}\n{"id": "e", "text": null}\n{"id": "f", "text": ["x"]}\n')
    out = tmp_path / "out.jsonl"
    rows = read_rows(source)
    check_inputs(summarizer(FakeEngine()), rows, "text", source)
    errors = {"b": "the row has no 'text' field (it has 'id', 'body'); pick one with field", "c": "there is no text to summarize", "d": "field 'text' must hold text, not a number", "e": "field 'text' must hold text, not null", "f": "field 'text' must hold text, not a list"}
    assert {r.id: r.error for r in rows} == {"a": None, **errors}  # as running them says
    engine = FakeEngine()
    engine.enqueue("ok.")
    run_batch(summarizer(engine), read_rows(source), out, {})  # flagged by run_batch itself too
    assert {r["id"]: r.get("error") for r in lines(out)} == {"a": None, **errors}

    class Unloadable(type(summarizer(FakeEngine()))):
        def prepare(self, options):
            raise AssertionError("loaded a model for rows that never reach it")

    monkeypatch.setattr(aigc.batch, "CoalescingEngine", None)
    summary = run_batch(Unloadable(engine=FakeEngine()), read_rows(source), out, {})
    assert (summary.done, summary.skipped, summary.retried, summary.errors) == (5, 1, 5, 5)
    with pytest.raises(BadInputError, match=r'row 2 \(id "b"\): the row has no .text. field'):
        run_batch(Unloadable(engine=FakeEngine()), read_rows(source), out, {}, on_error="stop")


def test_a_resumed_run_numbers_its_rows_as_the_input_is_now(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "n1", "text": "one"}\n{"id": "n2", "text": "two"}\n')
    out = tmp_path / "out.jsonl"
    run_batch(summarizer(FakeEngine()), read_rows(source), out, {})
    source.write_text('{"id": "n1", "text": "one"}\n{"id": "mid", "text": "new"}\n{"id": "n2", "text": "two"}\n')
    run_batch(summarizer(FakeEngine()), read_rows(source), out, {})
    assert [(r["id"], r["row"]) for r in lines(out)] == [("n1", 1), ("mid", 2), ("n2", 3)]


def test_aigc_batch_prepares_a_plugin_generator_once(tmp_path):
    from typer.testing import CliRunner

    from aigc import hookimpl, plugins
    from aigc.cli.app import app
    from aigc.generators.base import Generator

    prepared = []

    class Counting(Generator):
        name = "counting"

        def prepare(self, options):
            prepared.append(options)

        def preprocess(self, inputs, opts):
            return inputs

        def forward(self, prepared_input, opts, sampling):
            return prepared_input

        def postprocess(self, raw, opts):
            return {"text": raw}

    class Plugin:
        @hookimpl
        def register_generators(self, register):
            register("counting", Counting)

    (tmp_path / "in.txt").write_text("one\ntwo\n")
    plugins.reset()
    plugins.get_plugin_manager().register(Plugin(), name="counter")
    try:
        result = CliRunner().invoke(app, ["batch", "counting", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl")])
    finally:
        plugins.reset()
    assert result.exit_code == 0, result.output
    assert len(prepared) == 1 and [row["result"] for row in lines(tmp_path / "out.jsonl")] == [{"text": "one"}, {"text": "two"}]
    run_batch(Counting(engine=FakeEngine()), read_rows(tmp_path / "in.txt"), tmp_path / "lib.jsonl", {})
    assert len(prepared) == 2  # the library prepares when its caller has not


def test_a_plugin_generators_failure_on_a_row_names_the_plugin(tmp_path):
    from aigc import hookimpl, plugins
    from aigc.generators.base import Generator

    class Fragile(Generator):
        name = "fragile"

        def preprocess(self, inputs, opts):
            return inputs

        def forward(self, prepared, opts, sampling):
            if prepared == "bad":
                raise KeyError("answer")
            return {"set": {1}} if prepared == "set" else {"text": prepared}

        def postprocess(self, raw, opts):
            return raw

    class Plugin:
        @hookimpl
        def register_generators(self, register):
            register("fragile", Fragile)

    source = tmp_path / "in.txt"
    source.write_text("fine\nbad\nset\n")
    plugins.reset()
    plugins.get_plugin_manager().register(Plugin(), name="fragile-plugin")
    try:
        summary = run_batch(get_generator("fragile", engine=FakeEngine()), read_rows(source), tmp_path / "out.jsonl", {})
    finally:
        plugins.reset()
    rows = lines(tmp_path / "out.jsonl")
    assert summary.errors == 2 and rows[0]["result"] == {"text": "fine"}
    assert rows[1]["error"] == "the fragile generator (plugin 'fragile-plugin') failed: KeyError: 'answer'"
    assert rows[2]["error"].startswith("the fragile generator (plugin 'fragile-plugin') returned what JSON cannot hold")


def test_aigc_batch_names_a_plugin_generator_whose_options_or_prepare_fail(tmp_path):
    import dataclasses

    from typer.testing import CliRunner

    from aigc import hookimpl, plugins
    from aigc.cli.app import app
    from aigc.generators.base import Generator

    @dataclasses.dataclass
    class Picky:
        level: int = 1

        def __post_init__(self):
            if self.level == 4:
                raise ValueError("four is unlucky")

    class Exploding(Generator):
        name = "exploding"
        Options = Picky

        def prepare(self, options):
            raise RuntimeError(f"prepare exploded at {options['level']!r}")

    class Plugin:
        @hookimpl
        def register_generators(self, register):
            register("exploding", Exploding)

    (tmp_path / "in.txt").write_text("one\n")
    plugins.reset()
    plugins.get_plugin_manager().register(Plugin(), name="boom")
    try:
        runs = [CliRunner().invoke(app, ["batch", "exploding", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl"), "-O", f"level={level}"]) for level in (4, 2)]
    finally:
        plugins.reset()
    assert runs[0].exit_code == 2 and runs[0].stderr.strip() == "Error: -O level is refused by the exploding generator (plugin 'boom'): four is unlucky"
    assert runs[1].exit_code == 1 and runs[1].stderr.strip().startswith("Error: the exploding generator (plugin 'boom') failed in prepare: RuntimeError: prepare exploded at 2")


def test_a_refused_rerun_names_the_settings_that_differ_and_both_values(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("one\ntwo\n")
    rows = read_rows(source)
    run_batch(summarizer(FakeEngine()), rows[:1], out, {"words": 20, "format": "bullets"}, {"temperature": 0.0, "max_tokens": 8})
    assert lines(out)[0]["made_with"] == {"format": "bullets", "max_tokens": 8, "temperature": 0.0, "words": 20}  # what is not a default
    out.write_text(out.read_text().replace('"max_tokens": 8, ', ""))  # as if made without it
    with pytest.raises(BadInputError, match=r"\(format: 'bullets' then, the default now; temperature: 0.0 then, 0.7 now; words: 20 then, 30 now\); resume it"):
        pending_rows(rows, out, summarizer(FakeEngine()), {"words": 30}, {"temperature": 0.7})
    with pytest.raises(BadInputError, match=r"\(columns: --field 'text' --id-field 'id' then, --field 'body' --id-field 'id' now\)"):
        pending_rows(rows, out, summarizer(FakeEngine()), {"words": 20, "format": "bullets"}, {"temperature": 0.0}, ("body", "id"))
    edited = tmp_path / "edited.jsonl"  # columns edited by hand into something no run writes: shown as they are
    edited.write_text(json.dumps({**lines(out)[0], "made_with": {**lines(out)[0]["made_with"], "columns": "body"}}) + "\n")
    with pytest.raises(BadInputError, match=r"\(columns: 'body' then, --field 'body' --id-field 'id' now\)"):
        pending_rows(rows, edited, summarizer(FakeEngine()), {"words": 20, "format": "bullets"}, {"temperature": 0.0}, ("body", "id"))
    old = tmp_path / "old.jsonl"  # written before lines recorded what they were made with
    old.write_text(json.dumps({k: v for k, v in lines(out)[0].items() if k != "made_with"}) + "\n")
    with pytest.raises(BadInputError, match=r"or columns \(--field, --id-field\); resume it"):
        pending_rows(rows, old, summarizer(FakeEngine()), {"words": 30}, {"temperature": 0.0})


def test_aigc_batch_rerun_of_rows_without_text_loads_no_model(tmp_path, monkeypatch, tiny_model_dir):
    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.generators.classify import ClassifyGenerator

    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "Bees."}\n{"id": "b", "body": "x"}\n{"id": "c", "text": " "}\n')
    out = tmp_path / "out.jsonl"
    args = ["batch", "classify", "-i", str(source), "-o", str(out), "-O", "labels=a,b", "-m", str(tiny_model_dir)]
    assert CliRunner().invoke(app, args).exit_code == 1

    def prepare(self, options):
        raise AssertionError("loaded a model for rows that never reach it")

    monkeypatch.setattr(ClassifyGenerator, "prepare", prepare)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "2 of 3 rows failed" in again.stderr, again.output
    assert [r.get("error") for r in lines(out)][1:] == ["the row has no 'text' field (it has 'id', 'body'); pick one with --field", "there is no text to classify"]


def test_a_missing_examples_or_glossary_file_given_with_O_is_named_as_such(tmp_path):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    (tmp_path / "in.txt").write_text("one\n")
    for task, option, named in (("classify", "examples", "examples file"), ("translate", "glossary", "glossary file")):
        args = ["batch", task, "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl"), "-O", f"{option}=nope.tsv", "-O", "target_language=fr" if task == "translate" else "labels=a,b"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and f"no such {named}: nope.tsv" in result.stderr, result.output


def test_rows_with_fewer_results_than_asked_for_are_counted(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("rooftop bees\n")
    engine = FakeEngine()
    engine.enqueue(*["Bees on the roof"] * 200)  # one distinct headline, however often it is sampled
    summary = run_batch(get_generator("headline", engine=engine), read_rows(source), out, {"n": 2}, {"temperature": 0.8, "seed": 1})
    assert (summary.done, summary.errors, summary.short) == (1, 0, 1)
    assert lines(out)[0]["result"]["headlines"] == ["Bees on the roof"] and lines(out)[0]["result"]["missing"] == 1


def test_an_examples_file_is_read_once_a_run_and_again_once_it_changes(tmp_path, monkeypatch):
    from aigc.generators import classify_examples

    examples = tmp_path / "ex.tsv"
    examples.write_text("great fun\tpositive\nawful, dull\tnegative\n")
    changed = time.time() - 60
    os.utime(examples, (changed, changed))  # written a minute ago
    reads = []
    read_document = classify_examples.read_document
    monkeypatch.setattr(classify_examples, "read_document", lambda *args, **kwargs: reads.append(args[0]) or read_document(*args, **kwargs))
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"text number {n}"}) + "\n" for n in range(20)))
    run_batch(get_generator("classify", engine=FakeEngine()), read_rows(source), tmp_path / "out.jsonl", {"examples": str(examples), "method": "zero-shot"})
    assert [sorted(r["result"]["scores"]) for r in lines(tmp_path / "out.jsonl")] == [["negative", "positive"]] * 20
    assert reads == [str(examples)]  # not once a row
    examples.write_text("great fun\tpositive\nawful, dull\tnegative\nso good\tpositive\n")
    os.utime(examples, (changed, changed))  # the same modification time, another size
    assert len(classify_examples.load_examples(examples)) == 3 and len(reads) == 2
    examples.write_text("great fun\tpositive\nawful, dull\tnegative\nso bad!\tnegative\n")  # just now, the same size
    assert classify_examples.load_examples(examples)[2] == ("so bad!", ["negative"])
    assert classify_examples.load_examples(examples) == classify_examples.load_examples(examples) and len(reads) == 5  # changed within the timestamps' resolution: read each time


def test_an_examples_file_kept_read_is_fitted_under_the_same_cache_key_as_its_examples_given_as_pairs(tmp_path):
    import hashlib

    from aigc.generators.classify_examples import VERSION, cache_path
    from aigc.templates import get_template

    examples = tmp_path / "ex.tsv"
    examples.write_text('text\tlabel\nsnow ☃ "so" \\\\ cold\tfroid\nété\tchaud\n')
    changed = time.time() - 60
    os.utime(examples, (changed, changed))
    generator = get_generator("classify", engine=FakeEngine())
    read = generator.validate({"examples": str(examples), "aspect": "météo"})
    assert read.examples_json is not None  # made once for the file, not on every row
    assert cache_path(generator, read) == cache_path(generator, generator.validate({"examples": read.examples, "aspect": "météo"}))
    listed = [VERSION, "fake", "", get_template("classify").body, [(l.name, l.verbalizers) for l in read.parsed], "météo", "", read.examples, "auto", "auto", False]
    assert cache_path(generator, read).stem == hashlib.sha256(json.dumps(listed, ensure_ascii=False).encode()).hexdigest()[:32]  # as fits were kept before


class Cutting(Generator):
    """Echoes its text, cut off (a row error saying to raise max_tokens) when the text is longer than max_tokens."""

    name = "cutting"
    samples = True

    def preprocess(self, inputs, opts):
        if inputs == "bad":
            raise BadInputError("this row is bad")
        return inputs

    def forward(self, prepared, opts, sampling):
        limit = sampling.get("max_tokens") or 100
        if len(prepared) > limit:
            raise BadInputError(f"cut off at {option('max_tokens', limit)}; raise {option('max_tokens')}")
        return prepared

    def postprocess(self, raw, opts):
        return {"text": raw}


def test_retry_failed_runs_the_failed_rows_with_other_settings_and_the_rows_done_keep_theirs(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("a\nbbbbbbb\ncc\nddddddd\n")
    rows = read_rows(source)
    first = run_batch(Cutting(engine=FakeEngine()), rows, out, {}, {"max_tokens": 3})
    assert (first.errors, first.to_raise) == (2, {("max_tokens",): 2})  # what the errors say to raise
    made = out.read_text()
    with pytest.raises(BadInputError, match=r"\(max_tokens: 3 then, 10 now\); resume it with the same ones, add retry_failed to run its 2 failed rows with these \(the results it has are kept\), or give"):
        run_batch(Cutting(engine=FakeEngine()), rows, out, {}, {"max_tokens": 10})
    assert out.read_text() == made  # refused: left as it is
    assert [r.id for r in pending_rows(rows, out, Cutting(engine=FakeEngine()), {}, {"max_tokens": 10}, retry_failed=True)] == [2, 4]
    summary = run_batch(Cutting(engine=FakeEngine()), rows, out, {}, {"max_tokens": 10}, retry_failed=True)
    assert (summary.done, summary.retried, summary.skipped, summary.errors) == (2, 2, 2, 0)
    assert [(line["id"], line["result"]["text"], line["made_with"]["max_tokens"]) for line in lines(out)] == [(1, "a", 3), (2, "bbbbbbb", 10), (3, "cc", 3), (4, "ddddddd", 10)]  # input order; each line says what made it
    again = run_batch(Cutting(engine=FakeEngine()), rows, out, {}, {"max_tokens": 10}, retry_failed=True)
    assert (again.done, again.skipped) == (0, 4)
    with pytest.raises(BadInputError, match="add retry_failed to run the rows it has no result for with these"):  # made with two settings: no plain resume takes it
        run_batch(Cutting(engine=FakeEngine()), rows, out, {}, {"max_tokens": 3})


def test_retry_failed_takes_other_settings_but_not_another_task_model_or_columns(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("a\nbbbbbbb\n")
    rows = read_rows(source)
    run_batch(Cutting(engine=FakeEngine()), rows, out, {}, {"max_tokens": 3})
    with pytest.raises(BadInputError, match=r"made with other columns \(columns: --field 'text' --id-field 'id' then, --field 'text' --id-field 'key' now\); retry_failed runs rows with other task options or sampling settings, not other columns"):
        pending_rows(rows, out, Cutting(engine=FakeEngine()), {}, {"max_tokens": 10}, ("text", "key"), retry_failed=True)
    with pytest.raises(BadInputError, match=r"\(--field, --id-field\) \(columns: .*\); resume it with the same ones, or give"):  # --retry-failed would not take it: not offered
        pending_rows(rows, out, Cutting(engine=FakeEngine()), {}, {"max_tokens": 10}, ("text", "key"))
    other = Cutting(engine=FakeEngine())
    other.engine.name = "other-model"
    with pytest.raises(BadInputError, match="made with model fake, not other-model"):
        pending_rows(rows, out, other, {}, {"max_tokens": 10}, retry_failed=True)
    with pytest.raises(BadInputError, match="holds cutting output, not summarize"):
        pending_rows(rows, out, summarizer(FakeEngine()), {}, {"max_tokens": 10}, retry_failed=True)


def test_a_retry_killed_after_dropping_the_failed_lines_leaves_whole_lines_and_goes_on(tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("a\nbbbbbbb\ncc\n")
    rows = read_rows(source)
    run_batch(Cutting(engine=FakeEngine()), rows, out, {}, {"max_tokens": 3})

    def killed(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # killed as the retried rows start: the failed line is gone at once, the rows done kept
        run_batch(Cutting(engine=FakeEngine()), rows, out, {}, {"max_tokens": 10}, progress=killed, retry_failed=True)
    assert [(line["id"], "result" in line) for line in lines(out)] == [(1, True), (3, True)]
    summary = run_batch(Cutting(engine=FakeEngine()), rows, out, {}, {"max_tokens": 10}, retry_failed=True)
    assert (summary.done, summary.skipped) == (1, 2)
    assert [(line["id"], line["made_with"]["max_tokens"]) for line in lines(out)] == [(1, 3), (2, 10), (3, 3)]


def test_aigc_batch_refuses_retry_failed_on_stdout(tmp_path):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    (tmp_path / "in.txt").write_text("a\n")
    result = CliRunner().invoke(app, ["batch", "headline", "-i", str(tmp_path / "in.txt"), "-o", "-", "--retry-failed"])
    assert result.exit_code == 2 and "--retry-failed resumes an output file, and stdout keeps no rows to retry: give -o FILE" in " ".join(result.stderr.split())


def test_aigc_batch_says_how_to_finish_a_run_with_failed_rows(tmp_path):
    from typer.testing import CliRunner

    from aigc import hookimpl, plugins
    from aigc.cli.app import app

    class Plugin:
        @hookimpl
        def register_generators(self, register):
            register("cutting", Cutting)

    (tmp_path / "in.txt").write_text("a\nbbbbbbb\ncc\nddddddd\nbad\n")
    out = tmp_path / "out.jsonl"
    plugins.reset()
    plugins.get_plugin_manager().register(Plugin(), name="cutter")
    try:
        run = lambda *extra: CliRunner().invoke(app, ["batch", "cutting", "-i", str(tmp_path / "in.txt"), "-o", str(out), *extra])  # noqa: E731
        help_text = " ".join(run("--help").output.split())
        first = run("--max-tokens", "3")
        refused = run("--max-tokens", "10")
        retried = run("--max-tokens", "10", "--retry-failed")
    finally:
        plugins.reset()
    assert "--retry-failed" in help_text
    assert first.exit_code == 1 and " ".join(first.stderr.split()).endswith(
        f"3 of 5 rows failed; their errors are in {out}; rerun with --retry-failed and a higher --max-tokens (2 rows) to run them again, keeping the rows done"
    )
    assert refused.exit_code == 2 and "add --retry-failed to run its 3 failed rows with these" in refused.stderr
    assert retried.exit_code == 1 and " ".join(retried.stderr.split()).endswith(  # the bad row fails again; its error says nothing to raise
        "rerunning the same command retries them (fix bad rows first; --retry-failed runs them with other settings, keeping the rows done)"
    )
    assert [(line["id"], line["made_with"]["max_tokens"], "result" in line) for line in lines(out)] == [(1, 3, True), (2, 10, True), (3, 3, True), (4, 10, True), (5, 10, False)]


def test_a_txt_line_is_a_headline_topic_as_with_lines_unless_field_names_another_column(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.engine import loading
    from aigc.generators.headline import HeadlineGenerator

    seen = []
    real = HeadlineGenerator.batch_input
    monkeypatch.setattr(HeadlineGenerator, "batch_input", lambda self, fields, field: seen.append(real(self, fields, field)) or seen[-1])
    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: FakeEngine())
    (tmp_path / "topics.txt").write_text("rooftop bees\n")
    for args, kind in (
        (["batch", "headline", "-i", str(tmp_path / "topics.txt"), "-o", "-"], "topic"),
        (["headline", str(tmp_path / "topics.txt"), "--lines"], "topic"),
        (["batch", "headline", "-i", str(tmp_path / "topics.txt"), "-o", "-", "--field", "article"], "article"),
    ):
        seen.clear()
        result = CliRunner().invoke(app, args)
        assert seen and all(item == {kind: "rooftop bees"} for item in seen), (args, seen, result.output)


def test_a_missing_field_spelt_with_other_capitals_in_the_row_is_named_as_the_one_to_pick(tmp_path):
    (tmp_path / "a.csv").write_text("ID,Text,Review Text\n1,hello,hi\n")
    summarize = get_generator("summarize")
    fields = read_rows(tmp_path / "a.csv")[0].fields
    for field, pick in (("text", "pick field=Text"), ("review text", "pick field='Review Text'"), ("body", "pick one with field")):
        with pytest.raises(BadInputError) as error:
            summarize.batch_input(fields, field)
        assert str(error.value) == f"the row has no {field!r} field (it has 'ID', 'Text', 'Review Text'); {pick}"


def test_i_dash_reads_json_lines_from_stdin_so_batch_runs_chain(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.engine import loading

    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: FakeEngine())
    out = tmp_path / "out.jsonl"
    earlier = json.dumps({"id": "a", "result": {"summary": "Bees make honey."}})  # a line of an earlier run's -o -
    result = CliRunner().invoke(app, ["batch", "summarize", "-i", "-", "-o", str(out), "--field", "result.summary"], input=earlier + "\n")
    assert result.exit_code == 0, result.output
    assert [(r["id"], r["result"]["summary"]) for r in lines(out)] == [("a", "Bees make honey.")]
    result = CliRunner().invoke(app, ["batch", "summarize", "-i", "-", "-o", str(tmp_path / "csv.jsonl")], input="id,text\n1,Bees\n")
    assert result.exit_code == 2 and "Error: rows on stdin are read as JSON Lines (one object a line), and line 1 is not: bad JSON" in result.stderr, result.output
    assert result.stderr.endswith("; for other rows name their format, e.g. --format txt for a text a line (or csv, tsv)\n")
    assert not (tmp_path / "csv.jsonl").exists()


def test_input_format_names_the_format_of_a_file_without_a_suffix_such_as_a_pipe(tmp_path):
    (tmp_path / "lines").write_text("one\n\ntwo\n")
    (tmp_path / "table").write_text('id,text\r\n7,"one,\r\ntwo"\r\n')
    with pytest.raises(BadInputError) as error:
        read_rows(tmp_path / "lines")
    assert str(error.value) == f"{tmp_path / 'lines'}: rows are read from .jsonl, .ndjson, .csv, .tsv, .txt files; input_format=txt (or csv, tsv, jsonl) names the format of a file named otherwise, such as a pipe or <(cut -f1 x.tsv)"
    assert [(r.id, r.fields) for r in read_rows(tmp_path / "lines", input_format="txt")] == [(1, {"text": "one"}), (3, {"text": "two"})]
    assert [(r.id, r.fields["text"]) for r in read_rows(tmp_path / "table", input_format="csv")] == [("7", "one,\r\ntwo")]  # a quoted cell's CRLF kept, as in a .csv
    with pytest.raises(BadInputError, match="names the format of the rows: jsonl, csv, tsv or txt, not 'xml'"):
        read_rows(tmp_path / "lines", input_format="xml")


def test_format_reads_plain_lines_or_a_table_piped_in_and_a_rerun_resumes_by_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.engine import loading

    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: FakeEngine())
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["batch", "summarize", "--format", "txt", "-o", str(out)], input="Bees make honey.\n\nSolar panels.\n")  # cut -f1 x.tsv | aigc batch ...
    assert result.exit_code == 0, result.output
    assert [(r["id"], r["result"]["summary"]) for r in lines(out)] == [(1, "Bees make honey."), (3, "Solar panels.")]
    result = CliRunner().invoke(app, ["batch", "summarize", "-i", "-", "--format", "txt", "-o", str(out)], input="Bees make honey.\n\nSolar panels, edited.\n")
    assert result.exit_code == 0 and "1 row written" in result.stderr and "1 had another input in an earlier run), 1 already done" in result.stderr, result.output
    result = CliRunner().invoke(app, ["batch", "summarize", "-i", "-", "--format", "CSV", "-o", str(tmp_path / "csv.jsonl")], input="id,text\n1,Bees\n")  # in any case
    assert result.exit_code == 0, result.output
    assert [(r["id"], r["result"]["summary"]) for r in lines(tmp_path / "csv.jsonl")] == [("1", "Bees")]
    result = CliRunner().invoke(app, ["batch", "summarize", "-i", "-", "--format", "bullets", "-o", str(tmp_path / "b.jsonl")], input="x\n")
    assert result.exit_code == 2 and result.stderr == "Error: --format names the format of the input rows: jsonl, csv, tsv or txt, not 'bullets'; the summarize task's own format option is given with -O, e.g. -O format=bullets\n"
    (tmp_path / "nosuffix").write_text("x\n")
    result = CliRunner().invoke(app, ["batch", "summarize", "-i", str(tmp_path / "nosuffix"), "-o", str(tmp_path / "n.jsonl")])
    assert result.exit_code == 2 and "; --format txt (or csv, tsv, jsonl) names the format of a file named otherwise" in result.stderr, result.output


def test_rows_given_back_unchanged_get_one_warning_naming_their_ids_in_input_order(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.engine import loading

    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: FakeEngine())
    long = " ".join(["Bees make honey in hives."] * 60)
    rows = [{"id": f"r{n}", "text": long if n == 2 else f"short text {n}"} for n in range(1, 9)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = CliRunner().invoke(app, ["batch", "summarize", "-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--concurrency", "4"])
    assert result.exit_code == 0, result.output
    assert [r["result"]["unchanged"] for r in lines(tmp_path / "out.jsonl")] == [n != 2 for n in range(1, 9)]
    assert result.stderr.splitlines()[-1] == 'Warning: 7 of 8 texts were no longer than the summary asked for and are given back as they are (ids "r1", "r3", "r4", "r5", "r6" and 2 more; their results say "unchanged": true)'
    (tmp_path / "one.jsonl").write_text(json.dumps({"id": "r1", "text": "short text"}) + "\n")
    one = CliRunner().invoke(app, ["batch", "summarize", "-i", str(tmp_path / "one.jsonl"), "-o", str(tmp_path / "one-out.jsonl")])
    assert one.stderr.splitlines()[-1] == 'Warning: 1 of 1 text was no longer than the summary asked for and is given back as it is (id "r1"; its result says "unchanged": true)'


def test_piped_rows_are_read_without_i_as_the_other_commands_read_piped_text(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from aigc.cli import options
    from aigc.cli.app import app
    from aigc.engine import loading

    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: FakeEngine())
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["batch", "summarize", "-o", str(out)], input=json.dumps({"id": "a", "text": "Bees make honey."}) + "\n")  # cat docs.jsonl | aigc batch summarize -o out.jsonl
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in lines(out)] == ["a"]
    monkeypatch.setattr(options, "_piped", lambda: False)  # stdin a terminal: nothing to read
    result = CliRunner().invoke(app, ["batch", "summarize", "-o", str(tmp_path / "other.jsonl")])
    assert result.exit_code == 2 and result.stderr == "Error: give --input FILE with the rows to run (.jsonl, .csv, .tsv or .txt; JSON Lines on stdin) or documents (FILE... or -i DIR), or pipe it in\n"


def test_batch_chat_runs_a_row_of_messages_as_a_conversation_as_openai_batch_files_hold_them(tmp_path):
    source, out = tmp_path / "batchinput.jsonl", tmp_path / "out.jsonl"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Name a bee."}]}
    source.write_text(json.dumps({"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n" + json.dumps({"custom_id": "request-2", "body": {"messages": [{"role": "robot"}]}}) + "\n")
    engine = FakeEngine()
    engine.enqueue("Honeybee.")
    run_batch(get_generator("chat", engine=engine), read_rows(source, "custom_id", "body.messages"), out, {}, field_name="body.messages", id_field="custom_id")
    done, bad = lines(out)
    assert (done["id"], done["result"]["text"], done["result"]["messages"][:2]) == ("request-1", "Honeybee.", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a bee."}])
    assert bad["id"] == "request-2" and bad["error"].startswith("chat message 0 must be")


def test_batch_template_variables_fill_what_no_column_does_and_the_hint_for_one_missing_names_them(tmp_path):
    from typer.testing import CliRunner

    from aigc import templates
    from aigc.cli.app import app
    from aigc.generators.template import TemplateGenerator

    templates.user_dir().mkdir(parents=True, exist_ok=True)
    (templates.user_dir() / "ad.j2").write_text("Write an ad for {{ product }} aimed at {{ audience }}.\n")
    (tmp_path / "a.csv").write_text("product,audience\nTea,\nLamp,campers\n")
    (tmp_path / "b.csv").write_text("product\nTea\n")
    engine = FakeEngine()
    run_batch(TemplateGenerator(engine=engine), read_rows(tmp_path / "b.csv"), tmp_path / "out.jsonl", {"template": "ad", "variables": {"audience": "everyone"}})
    assert lines(tmp_path / "out.jsonl")[0]["result"]["messages"][-1]["content"] == "Write an ad for Tea aimed at everyone."
    run_batch(TemplateGenerator(engine=engine), read_rows(tmp_path / "a.csv"), tmp_path / "a.jsonl", {"template": "ad", "variables": {"audience": "everyone"}})
    assert [r["result"]["messages"][-1]["content"] for r in lines(tmp_path / "a.jsonl")] == ["Write an ad for Tea aimed at .", "Write an ad for Lamp aimed at campers."]  # a column, empty too, wins
    result = CliRunner().invoke(app, ["batch", "template", "-i", str(tmp_path / "b.csv"), "-o", str(tmp_path / "c.jsonl"), "-O", "template=ad"])
    assert result.exit_code == 2 and """'audience' is undefined; give it (-O 'variables={"audience": "..."}')""" in result.stderr, result.output


def test_keep_columns_puts_each_rows_input_in_its_line(tmp_path):
    source, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    source.write_text("id,text,region\n1,Bees make honey.,north\n")
    engine = FakeEngine()
    engine.enqueue("Bees.", "Bees.")
    run_batch(summarizer(engine), read_rows(source), out, {})
    assert "input" not in lines(out)[0]
    run_batch(summarizer(engine), read_rows(source), tmp_path / "kept.jsonl", {}, keep_columns=True)
    assert lines(tmp_path / "kept.jsonl")[0]["input"] == {"id": "1", "text": "Bees make honey.", "region": "north"}


def test_keep_columns_with_a_nested_field_keeps_the_row_as_read(tmp_path):
    from aigc.batch_tables import write_table

    source, out = tmp_path / "nest.jsonl", tmp_path / "out.csv.jsonl"
    source.write_text('{"id": "a", "doc": {"body": "Bees make honey.", "lang": "en"}, "meta": {"n": 1}}\n')
    rows = read_rows(source, "meta.n", "doc.body")
    assert rows[0].fields["doc.body"] == "Bees make honey." and rows[0].id == 1  # read by its dotted name
    engine = FakeEngine()
    engine.enqueue("Bees.")
    run_batch(summarizer(engine), rows, out, {}, field_name="doc.body", id_field="meta.n", keep_columns=True)
    assert lines(out)[0]["input"] == {"id": "a", "doc": {"body": "Bees make honey.", "lang": "en"}, "meta": {"n": 1}}
    write_table(out, rows, tmp_path / "out.csv", "meta.n", keep_columns=True)
    assert (tmp_path / "out.csv").read_text(encoding="utf-8-sig").split("\n")[0] == "id,input.id,doc,meta,summary,words,map_reduce_rounds,parts,cut_off,unchanged"


def test_a_table_holds_the_id_the_kept_columns_the_result_fields_and_errors(tmp_path):
    import csv

    from aigc.batch_tables import write_table

    source, state = tmp_path / "in.jsonl", tmp_path / "out.csv.jsonl"
    source.write_text('{"id": "a", "text": "Bees, \\"busy\\" ones.", "note": "line one\\nline two"}\n{"id": "b", "text": "Ünïcode.", "note": 3}\n{"id": "c", "text": ""}\n')
    rows = read_rows(source)
    state.write_text(
        '{"id": "a", "row": 1, "result": {"summary": "Busy, \\"bees\\".", "text": "shadowed", "tags": ["x", "y"], "scores": {"p": 0.5}}}\n'
        '{"id": "b", "row": 2, "result": {"summary": "Ü."}}\n{"id": "c", "row": 3, "error": "the text is empty"}\n'
    )
    for name, delimiter in (("out.csv", ","), ("out.tsv", "\t")):
        write_table(state, rows, tmp_path / name, keep_columns=True)
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\xef\xbb\xbfid" if name == "out.csv" else b"id\t") and "Ü.".encode() in data  # a .csv with a byte-order mark, as Excel reads UTF-8; a .tsv, for Unix tools, none
        table = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig")), delimiter=delimiter))
        assert list(table[0]) == ["id", "text", "note", "summary", "result.text", "tags", "scores", "error"]
        assert table[0] == {"id": "a", "text": 'Bees, "busy" ones.', "note": "line one\nline two", "summary": 'Busy, "bees".', "result.text": "shadowed", "tags": "x\ny", "scores": '{"p": 0.5}', "error": ""}
        assert (table[1]["note"], table[1]["summary"], table[2]["error"], table[2]["summary"]) == ("3", "Ü.", "the text is empty", "")
        assert [(r.id, r.fields["note"], r.fields["summary"]) for r in read_rows(tmp_path / name)][:2] == [("a", "line one\nline two", 'Busy, "bees".'), ("b", "3", "Ü.")]
    write_table(state, rows, tmp_path / "bare.csv")  # without keep_columns: the id and the result
    assert (tmp_path / "bare.csv").read_text(encoding="utf-8-sig").split("\n")[0] == "id,summary,text,tags,scores,error"


def test_a_tables_byte_order_mark_is_as_asked_else_a_rerun_keeps_what_it_has(tmp_path):
    from aigc.batch_tables import write_table

    source, state = tmp_path / "in.jsonl", tmp_path / "out.csv.jsonl"
    source.write_text('{"id": "a", "text": "x"}\n')
    state.write_text('{"id": "a", "row": 1, "result": "one"}\n')
    rows = read_rows(source)
    starts = {}
    for name, bom in (("a.csv", None), ("b.csv", False), ("a.tsv", None), ("b.tsv", True)):
        write_table(state, rows, tmp_path / name, bom=bom)
        starts[name] = (tmp_path / name).read_bytes()[:3]
    assert starts == {"a.csv": b"\xef\xbb\xbf", "b.csv": b"id,", "a.tsv": b"id\t", "b.tsv": b"\xef\xbb\xbf"}
    for name in starts:  # a rerun without --bom/--no-bom: the table keeps what its header has
        write_table(state, rows, tmp_path / name)
    assert {name: (tmp_path / name).read_bytes()[:3] for name in starts} == starts
    write_table(state, rows, tmp_path / "b.csv", bom=True)  # as asked
    assert (tmp_path / "b.csv").read_bytes()[:3] == b"\xef\xbb\xbf"


def test_kept_input_columns_named_id_or_error_are_kept_beside_the_tables_own(tmp_path):
    import csv

    from aigc.batch_tables import write_table

    source, state = tmp_path / "in.csv", tmp_path / "out.csv.jsonl"
    source.write_text("ticket,id,text,error\nT1,100,hello there,x\nT2,200,,e\n")
    state.write_text('{"id": "T1", "row": 1, "result": {"summary": "hello", "error": "a field"}}\n{"id": "T2", "row": 2, "error": "the text is empty"}\n')
    write_table(state, read_rows(source, "ticket"), tmp_path / "out.csv", "ticket", keep_columns=True)
    table = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_bytes().decode("utf-8-sig"))))
    assert table == [
        ["id", "input.id", "text", "input.error", "summary", "result.error", "error"],
        ["T1", "100", "hello there", "x", "hello", "a field", ""],
        ["T2", "200", "", "e", "", "", "the text is empty"],
    ]


def test_kept_input_columns_error_and_input_error_both_keep_their_values_under_distinct_headers(tmp_path):
    import csv

    from aigc.batch_tables import write_table

    source, state = tmp_path / "in.csv", tmp_path / "out.csv.jsonl"
    source.write_text("text,error,input.error,input.input.error\nbees,x,y,z\n")  # as a kept table read back can be
    state.write_text('{"id": 1, "row": 1, "result": {"summary": "bees"}}\n')
    write_table(state, read_rows(source), tmp_path / "out.csv", keep_columns=True)
    table = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_bytes().decode("utf-8-sig"))))
    assert table == [["id", "text", "input.input.input.error", "input.error", "input.input.error", "summary"], ["1", "bees", "x", "y", "z", "bees"]]


def test_a_table_cell_a_spreadsheet_would_run_as_a_formula_gets_a_quote_before_it(tmp_path):
    import csv

    from aigc.batch_tables import write_table

    source, state = tmp_path / "in.csv", tmp_path / "out.csv.jsonl"
    source.write_text('id,text,=cmd\n=1+1,"=HYPERLINK(""http://x"")",-3.5\n2,@SUM(A1),+1e5\n')
    state.write_text(
        '{"id": "=1+1", "row": 1, "result": {"summary": "-2+3", "score": -0.5, "tags": ["+a", "b"], "n": "-"}}\n'
        '{"id": "2", "row": 2, "result": {"summary": "\\tTab", "score": 1, "tags": [], "n": "a=b"}, "error": "--max-tokens too low"}\n'
    )
    write_table(state, read_rows(source), tmp_path / "out.csv", keep_columns=True)
    table = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_bytes().decode("utf-8-sig"), newline="")))
    assert table == [
        ["id", "text", "'=cmd", "summary", "score", "tags", "n", "error"],
        ["'=1+1", "'=HYPERLINK(\"http://x\")", "-3.5", "'-2+3", "-0.5", "'+a\nb", "'-", ""],
        ["2", "'@SUM(A1)", "+1e5", "'\tTab", "1", "", "a=b", "'--max-tokens too low"],
    ]
    assert '"result": {"summary": "-2+3"' in state.read_text()  # the JSON Lines stay as they are


def test_a_table_cell_holding_a_carriage_return_stays_in_its_cell(tmp_path):
    import csv

    from aigc.batch_tables import write_table

    source, state = tmp_path / "in.jsonl", tmp_path / "out.csv.jsonl"
    source.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n')
    state.write_text('{"id": "a", "row": 1, "result": "one\\rtwo"}\n{"id": "b", "row": 2, "result": "\\rthree"}\n')
    for name, delimiter in (("out.csv", ","), ("out.tsv", "\t")):
        write_table(state, read_rows(source), tmp_path / name)
        table = list(csv.reader(io.StringIO((tmp_path / name).read_bytes().decode("utf-8-sig"), newline=""), delimiter=delimiter))
        assert table == [["id", "result"], ["a", "one\rtwo"], ["b", "'\rthree"]]
    for name in ("out.csv", "out.tsv"):  # a table batch -o writes is read back by batch -i
        assert [(r.id, r.fields["result"]) for r in read_rows(tmp_path / name)] == [("a", "one\rtwo"), ("b", "'\rthree")]


def test_a_quoted_cell_holding_a_windows_line_break_reads_back_as_it_is_and_crlf_line_ends_are_no_text(tmp_path):
    (tmp_path / "a.csv").write_bytes(b'\r\nsep=,\r\nid,text\r\n1,"one\r\ntwo\nthree"\r\n2,plain\r\n')  # as Excel writes a cell with Alt+Enter
    (tmp_path / "a.tsv").write_bytes(b'id\ttext\r\n1\t"one\r\ntwo\nthree"\r\n2\tplain\r\n')  # as pandas writes one
    for name in ("a.csv", "a.tsv"):
        assert [(r.id, r.fields["text"], r.error) for r in read_rows(tmp_path / name)] == [("1", "one\r\ntwo\nthree", None), ("2", "plain", None)]
    (tmp_path / "a.txt").write_bytes(b"one\r\n\r\ntwo\rstill two\r\n")
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "one\\r\\n"}\r\n{"text": "two"}\r\n')
    assert [(r.id, r.fields["text"]) for r in read_rows(tmp_path / "a.txt")] == [(1, "one"), (3, "two\rstill two")]
    assert [(r.id, r.fields["text"]) for r in read_rows(tmp_path / "a.jsonl")] == [(1, "one\r\n"), (2, "two")]


def test_a_carriage_return_in_a_tsv_cell_is_its_text_and_a_file_whose_lines_end_in_one_is_named(tmp_path):
    (tmp_path / "a.tsv").write_bytes(b'id\ttext\r\n1\t"quoted\rcell"\r\n2\tbare\rcell\r\n3\tlast\r\r\n')  # a \r before a line's end ends it
    assert [(r.id, r.fields["text"], r.error) for r in read_rows(tmp_path / "a.tsv")] == [("1", "quoted\rcell", None), ("2", "bare\rcell", None), ("3", "last", None)]
    (tmp_path / "mac.tsv").write_bytes(b"id\ttext\r1\tone\r2\ttwo\r")
    with pytest.raises(BadInputError, match=r"mac.tsv: cannot read it as TSV: its lines end in a lone carriage return"):
        read_rows(tmp_path / "mac.tsv")


def test_batch_to_a_csv_resumes_through_the_json_lines_beside_it(tmp_path, monkeypatch):
    import csv

    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.cli.options import RunOptions

    engine = FakeEngine()
    monkeypatch.setattr(RunOptions, "generator", lambda self, name, **kwargs: get_generator(name, engine=engine))
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    long = " ".join(["word"] * 200)  # longer than a summary: the model summarizes it
    source.write_text(f"id,text,region\n1,Bees {long},north\n2,Cities {long},south\n3,Rivers {long},east\n")
    engine.enqueue("Bees.", "Cities.", "Rivers.")
    command = ["batch", "summarize", "-i", str(source), "-o", str(out), "--keep-columns", "--concurrency", "1"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert f"3 rows written to {out}" in result.stderr
    table = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert [(r["id"], r["region"], r["summary"]) for r in table] == [("1", "north", "Bees."), ("2", "south", "Cities."), ("3", "east", "Rivers.")]
    state = tmp_path / "out.csv.jsonl"
    kept = state.read_text().split("\n")
    state.write_text("\n".join(kept[:2]) + "\n" + kept[2][:30])  # killed while writing row 3
    engine.enqueue("Rivers again.")
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0 and engine.queue == [], again.output  # only row 3 ran again
    assert "1 row written" in again.stderr and "2 already done" in again.stderr
    table = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert [r["summary"] for r in table] == ["Bees.", "Cities.", "Rivers again."]
    bad = CliRunner().invoke(app, ["batch", "summarize", "-i", str(source), "-o", str(tmp_path / "out.xlsx")])
    assert bad.exit_code == 2 and "name it .jsonl, or .csv or .tsv for a table" in bad.stderr


def test_batch_no_bom_writes_a_csv_without_one_and_its_rerun_keeps_it_so(tmp_path, monkeypatch):
    import csv

    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.cli.options import RunOptions

    engine = FakeEngine()
    monkeypatch.setattr(RunOptions, "generator", lambda self, name, **kwargs: get_generator(name, engine=engine))
    source, out = tmp_path / "in.txt", tmp_path / "out.csv"
    long = " ".join(["word"] * 200)  # longer than a summary: the model summarizes it
    source.write_text(f"bees {long}\ncities {long}\n")
    engine.enqueue("Bees.", "Cities.")
    result = CliRunner().invoke(app, ["batch", "summarize", "-i", str(source), "-o", str(out), "--no-bom", "--concurrency", "1"])
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(out.open(encoding="utf-8", newline="")))  # as a Unix tool reads it: no byte-order mark before "id"
    assert [(r["id"], r["summary"]) for r in table] == [("1", "Bees."), ("2", "Cities.")]
    source.write_text(f"bees {long}\ncities {long}\nrivers {long}\n")
    engine.enqueue("Rivers.")
    again = CliRunner().invoke(app, ["batch", "summarize", "-i", str(source), "-o", str(out), "--concurrency", "1"])
    assert again.exit_code == 0 and engine.queue == [], again.output
    assert out.read_bytes().startswith(b"id,") and "Rivers." in out.read_text()
    bad = CliRunner().invoke(app, ["batch", "summarize", "-i", str(source), "-o", str(tmp_path / "out.jsonl"), "--no-bom"])
    assert bad.exit_code == 2 and "--no-bom goes with a .csv or .tsv -o" in bad.stderr


def test_an_openai_batch_rows_body_settings_override_the_commands_for_that_row(tmp_path):
    source, out = tmp_path / "batchinput.jsonl", tmp_path / "out.jsonl"
    messages = [{"role": "user", "content": "Name a bee."}]
    bodies = [
        {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 7, "temperature": 0.5, "top_p": 0.8, "seed": 3, "stop": "END", "response_format": {"type": "text"}},
        {"messages": messages, "max_tokens": 5, "max_completion_tokens": 9, "stop": ["a", "b"], "temperature": None},
        {"messages": messages},
        {"messages": messages, "temperature": "hot"},
    ]
    source.write_text("".join(json.dumps({"custom_id": f"r{i}", "body": body}) + "\n" for i, body in enumerate(bodies)))
    engine = FakeEngine()
    engine.enqueue("One.", "Two.", "Three.")
    chat = get_generator("chat", engine=engine)
    run_batch(chat, read_rows(source, "custom_id", "body.messages"), out, {}, {"temperature": 0.9, "max_tokens": 20}, field_name="body.messages", id_field="custom_id", concurrency=1)
    params = [p for _, p in engine.calls]
    assert [(p.max_tokens, p.temperature, p.top_p, p.seed, p.stop) for p in params] == [(7, 0.5, 0.8, 3, ("END",)), (9, 0.9, 0.9, None, ("a", "b")), (20, 0.9, 0.9, None, ())]
    assert "temperature" in lines(out)[3]["error"]  # a bad setting is its row's error
    source.write_text(source.read_text().replace('"max_tokens": 7', '"max_tokens": 8'))  # an edited setting runs its row again
    engine.enqueue("One again.")
    again = run_batch(chat, read_rows(source, "custom_id", "body.messages"), out, {}, {"temperature": 0.9, "max_tokens": 20}, field_name="body.messages", id_field="custom_id")
    assert (again.changed, engine.calls[-1][1].max_tokens, engine.queue) == (1, 8, [])


def test_a_table_whose_json_lines_would_be_the_input_is_refused(tmp_path):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    source = tmp_path / "out.csv.jsonl"
    source.write_text('{"id": 1, "text": "Bees."}\n')
    result = CliRunner().invoke(app, ["batch", "summarize", "-i", str(source), "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 2 and f"-o {source} is the input file" in result.stderr
    assert source.read_text() == '{"id": 1, "text": "Bees."}\n'


@pytest.mark.parametrize("name", ["scratch.csv", "scratch.tsv"])
def test_an_empty_table_output_made_by_mktemp_or_touch_is_written_as_an_empty_jsonl_is(tmp_path, name):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    source, table = tmp_path / "in.jsonl", tmp_path / name
    source.write_text('{"id": 1, "text": "Bees."}\n')
    table.touch()
    result = CliRunner().invoke(app, ["batch", "summarize", "-m", "echo", "-i", str(source), "-o", str(table)])
    assert result.exit_code == 0, result.output
    assert "Bees." in table.read_text() and (tmp_path / f"{name}.jsonl").exists()


@pytest.mark.parametrize("name", ["customers.csv", "customers.tsv"])
def test_a_table_output_that_aigc_did_not_write_is_refused_as_a_foreign_jsonl_is(tmp_path, name):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    source, table = tmp_path / "in.jsonl", tmp_path / name
    source.write_text('{"id": 1, "text": "Bees."}\n')
    table.write_text("name,email\nAnn,a@x\n")
    result = CliRunner().invoke(app, ["batch", "summarize", "-m", "echo", "-i", str(source), "-o", str(table)])
    assert result.exit_code == 2 and f"{table} exists and was not written by aigc batch (no {name}.jsonl beside it to resume)" in result.stderr
    assert table.read_text() == "name,email\nAnn,a@x\n" and not (tmp_path / f"{name}.jsonl").exists()
    table.unlink()
    for _ in range(2):  # a table aigc wrote, with its JSON Lines beside it, resumes
        result = CliRunner().invoke(app, ["batch", "summarize", "-m", "echo", "-i", str(source), "-o", str(table)])
        assert result.exit_code == 0, result.output
    assert "1 already done" in result.stderr and "Bees." in table.read_text()


def test_a_tilde_the_shell_left_in_input_or_output_is_the_home_directory(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.jsonl").write_text('{"id": 1, "text": "Bees."}\n{"id": 2, "text": "Ants."}\n')
    assert [r.id for r in read_rows("~/m.jsonl")] == [1, 2]
    for output in ("~/t.csv", "~/t.jsonl"):
        result = CliRunner().invoke(app, ["batch", "summarize", "-m", "echo", "--input=~/m.jsonl", f"--output={output}"])
        assert result.exit_code == 0 and f"2 rows written to {tmp_path}/{output[2:]}" in result.stderr, result.output
    assert "Bees." in (tmp_path / "t.csv").read_text(encoding="utf-8-sig") and (tmp_path / "t.csv.jsonl").is_file() and len(lines(tmp_path / "t.jsonl")) == 2
    result = CliRunner().invoke(app, ["batch", "summarize", "-m", "echo", "--input=~/m.jsonl", "--output=~/t.csv"])
    assert result.exit_code == 0 and "2 already done" in result.stderr, result.output


def test_rows_cut_off_at_the_token_limit_are_counted_and_warned_of_once(tmp_path):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    source = tmp_path / "in.jsonl"
    long = " ".join(f"Word{i} is here." for i in range(100))  # longer than a summary: summarized, not given back
    source.write_text(json.dumps({"id": "long", "text": long}) + '\n{"id": "x", "text": "x"}\n')
    rows = read_rows(source)
    summary = run_batch(get_generator("chat", model="echo"), rows, tmp_path / "out.jsonl", {}, {"max_tokens": 1})
    assert [row.id for row in summary.cut_off] == ["long"] and lines(tmp_path / "out.jsonl")[0]["result"]["finish_reason"] == "length"
    for task, extra in (("chat", []), ("summarize", []), ("translate", ["-O", "to=fr"])):
        result = CliRunner().invoke(app, ["batch", task, "-m", "echo", "-i", str(source), "-o", str(tmp_path / f"{task}.jsonl"), "--max-tokens", "1", *extra])
        assert result.exit_code == 0, result.output
        assert result.stderr.count("cut off at --max-tokens 1") == 1 and 'rows was cut off at --max-tokens 1 (id "long";' in result.stderr, (task, result.stderr)
    result = CliRunner().invoke(app, ["batch", "chat", "-m", "echo", "-i", str(source), "-o", str(tmp_path / "whole.jsonl")])
    assert result.exit_code == 0 and "cut off" not in result.stderr


def test_a_stream_whose_reader_went_away_ends_without_waiting_for_the_rows_in_flight(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": ""}\n{"text": "slow"}\n')  # the first row's error is written at once
    release = threading.Event()

    class Slow(FakeEngine):
        def generate(self, prompts, params):
            if "slow" in str(prompts):
                release.wait(10)
            return super().generate(prompts, params)

    engine = Slow()
    engine.enqueue("Two.")
    read, write = os.pipe()
    os.close(read)  # as `| head -1` does once it has its line
    started = time.perf_counter()
    try:
        with pytest.raises(BrokenPipeError):
            run_batch(get_generator("chat", engine=engine), read_rows(source), f"/dev/fd/{write}", {}, concurrency=2)
        assert time.perf_counter() - started < 5 and not release.is_set()
    finally:
        release.set()
        os.close(write)


def test_a_reader_gone_while_workers_still_run_ends_the_command_at_once_with_exit_1(tmp_path, monkeypatch):
    """`aigc batch ... -o - | head -1`: workers that may be inside torch are not waited for, the CLI
    ends the process (os._exit, which conftest's `cli_does_not_end_pytest` turns into LeftProcess)."""
    from typer.testing import CliRunner

    from aigc import batch
    from aigc.cli.app import app
    from cli_exit import LeftProcess

    class GoneReader(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            raise BrokenPipeError(32, "Broken pipe")

    release, retire = threading.Event(), CoalescingEngine.retire
    monkeypatch.setattr(CoalescingEngine, "retire", lambda self: (release.wait(10), retire(self)))  # a worker still alive
    monkeypatch.setattr(batch, "open_stream", lambda output: io.TextIOWrapper(io.BufferedWriter(GoneReader()), encoding="utf-8"))
    (tmp_path / "rows.txt").write_text("good film\nbad film\n", encoding="utf-8")
    try:
        result = CliRunner().invoke(app, ["batch", "classify", "-i", str(tmp_path / "rows.txt"), "-O", "labels=good,bad", "-m", "echo", "-o", "-"])
    finally:
        release.set()
    assert isinstance(result.exception, LeftProcess) and result.exit_code == 1 and result.stderr == ""


def test_a_tsv_table_whose_cells_hold_tabs_line_breaks_and_quotes_reads_back_as_written(tmp_path):
    from aigc.batch_tables import write_table

    results = ['def f():\n\treturn "x"\t# tab', "a\tb", "crlf\r\nline", 'say ""hi""\r\tthen\ngo', 'line\rback\tand "quote"', "plain", '"\tquoted\nstart"', "end\t"]
    source, state = tmp_path / "in.jsonl", tmp_path / "out.tsv.jsonl"
    source.write_text("".join(json.dumps({"id": str(n), "text": "x"}) + "\n" for n in range(1, len(results) + 1)))
    state.write_text("".join(json.dumps({"id": str(n), "row": n, "result": result}) + "\n" for n, result in enumerate(results, 1)))
    write_table(state, read_rows(source), tmp_path / "out.tsv")
    assert [(r.id, r.fields["result"], r.error) for r in read_rows(tmp_path / "out.tsv")] == [(str(n), result, None) for n, result in enumerate(results, 1)]


def test_a_template_row_whose_required_variable_is_empty_is_a_row_error_and_runs_no_model(tmp_path):
    from aigc import templates
    from aigc.generators.template import TemplateGenerator

    templates.user_dir().mkdir(parents=True, exist_ok=True)
    (templates.user_dir() / "intro.j2").write_text("---\nvariables:\n  - {name: topic, required: true}\n  - {name: who, default: everyone}\n---\nAn intro on {{ topic }} for {{ who }}\n")
    (tmp_path / "a.csv").write_text("id,text\n1,hello\n2,\n3,  \n")
    (tmp_path / "t.csv").write_text("id,topic,who\n1,bees,\n2,,kids\n")
    engine = FakeEngine()
    engine.enqueue("one", "two")
    summary = run_batch(TemplateGenerator(engine=engine), read_rows(tmp_path / "a.csv"), tmp_path / "a.jsonl", {"template": "chat"})
    summary_t = run_batch(TemplateGenerator(engine=engine), read_rows(tmp_path / "t.csv", field="topic"), tmp_path / "t.jsonl", {"template": "intro"})
    assert (summary.errors, summary_t.errors) == (2, 1) and sum(len(prompts) for prompts, _ in engine.calls) == 2  # the empty rows reach no model
    assert [r.get("error") for r in lines(tmp_path / "a.jsonl")] == [None, *["the variable input is empty; template 'chat' needs it, so give it some text"] * 2]
    assert [r.get("error") for r in lines(tmp_path / "t.jsonl")] == [None, "the variable topic is empty; template 'intro' needs it, so give it some text"]
    assert lines(tmp_path / "t.jsonl")[0]["result"]["messages"][-1]["content"] == "An intro on bees for"  # an optional one may be empty
    with pytest.raises(BadInputError, match="the variable input is empty"):
        TemplateGenerator(engine=engine)({"input": " "}, template="chat")


def test_a_resume_after_a_built_in_template_changed_says_aigc_changed_it_not_that_it_was_edited(tmp_path):
    from aigc.generators.template import TemplateGenerator

    (tmp_path / "a.csv").write_text("id,text\n1,bees\n2,solar\n")
    out = tmp_path / "out.jsonl"
    run_batch(TemplateGenerator(engine=FakeEngine()), read_rows(tmp_path / "a.csv")[:1], out, {"template": "chat"})
    made = [{**line, "templates": {"chat": "0" * 12}} for line in lines(out)]  # as an older aigc's built-in chat.j2 made it
    out.write_text("".join(json.dumps(line) + "\n" for line in made))
    with pytest.raises(BadInputError) as raised:
        run_batch(TemplateGenerator(engine=FakeEngine()), read_rows(tmp_path / "a.csv"), out, {"template": "chat"})
    assert "template 'chat' as it was then, and aigc's built-in one has changed since (aigc was upgraded" in str(raised.value) and "edited" not in str(raised.value)


def test_a_resume_after_the_template_was_edited_is_refused_and_a_line_made_before_templates_counted_is_taken(tmp_path):
    from aigc import templates
    from aigc.generators.template import TemplateGenerator

    templates.user_dir().mkdir(parents=True, exist_ok=True)
    intro = templates.user_dir() / "intro.j2"
    intro.write_text("Write an intro on {{ input }}\n")
    (tmp_path / "a.csv").write_text("id,text\n1,bees\n2,solar\n")
    out = tmp_path / "out.jsonl"
    engine = FakeEngine()
    run_batch(TemplateGenerator(engine=engine), read_rows(tmp_path / "a.csv")[:1], out, {"template": "intro"})
    intro.write_text("Write an OUTRO on {{ input }}\n")
    with pytest.raises(BadInputError, match=r"made with template 'intro' as it was then, edited since \(its results would not match\); resume it with the template as it was, add retry_failed to run the rows it has no result for with it as it is now \(the results it has are kept\), or give another -o to start a new file"):
        run_batch(TemplateGenerator(engine=engine), read_rows(tmp_path / "a.csv"), out, {"template": "intro"})
    summary = run_batch(TemplateGenerator(engine=engine), read_rows(tmp_path / "a.csv"), out, {"template": "intro"}, retry_failed=True)
    assert (summary.skipped, summary.done) == (1, 1)
    old = [{k: v for k, v in line.items() if k != "templates"} for line in lines(out)]  # lines written before templates were recorded
    out.write_text("".join(json.dumps(line) + "\n" for line in old))
    assert run_batch(TemplateGenerator(engine=engine), read_rows(tmp_path / "a.csv"), out, {"template": "intro"}).skipped == 2


def test_a_plugin_option_named_like_a_template_but_marked_as_none_is_taken_as_text_and_not_recorded(tmp_path):
    import dataclasses

    from aigc.errors import UnknownTemplateError

    @dataclasses.dataclass
    class LinkOptions:
        url_template: str = dataclasses.field(default="https://example.com/{id}", metadata={"template": False})

    @dataclasses.dataclass
    class Unmarked:
        url_template: str = "https://example.com/{id}"

    class Links(Generator):
        name = "links"
        Options = LinkOptions

        def preprocess(self, inputs, opts):
            return inputs

        def forward(self, prepared, opts, sampling):
            return opts.url_template.format(id=prepared)

        def postprocess(self, raw, opts):
            return {"url": raw}

    (tmp_path / "a.csv").write_text("id,text\n1,bees\n")
    summary = run_batch(Links(engine=FakeEngine()), read_rows(tmp_path / "a.csv"), tmp_path / "out.jsonl", {})
    assert summary.done == 1 and "templates" not in lines(tmp_path / "out.jsonl")[0]
    assert lines(tmp_path / "out.jsonl")[0]["result"] == {"url": "https://example.com/bees"}
    Links.Options = Unmarked  # unmarked, the name says template: checked to be one
    with pytest.raises(UnknownTemplateError):
        Links(engine=FakeEngine()).validate({})


def test_batch_translate_ends_with_one_warning_each_for_the_rows_that_missed_glossary_terms_or_placeholders(tmp_path, monkeypatch):
    import re

    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.engine.base import Completion
    from aigc.generators.translate import TranslateGenerator

    class Translating(FakeEngine):  # "cat" as "Mieze", not the glossary's "Katze", and {name} dropped
        def generate(self, prompts, params):
            return [[Completion(re.sub(r"\{\w+\}", "", p[-1]["content"].replace("cat", "Mieze")), 1, 1, "stop")] for p in prompts]

    engine = Translating()
    monkeypatch.setattr(TranslateGenerator, "engine", property(lambda self: engine))
    monkeypatch.setattr("aigc.generators.translate.keeps_markup", lambda source, translation: True)  # no second try putting {name} back
    (tmp_path / "terms.tsv").write_text("cat\tKatze\n")
    texts = {"a": "The cat sleeps.", "b": "Hello {name}.", "c": "A dog.", "d": "My cat and {name}.", "e": "Her cat.", "f": "No cat."}
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()))
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["batch", "translate", "-i", str(tmp_path / "in.jsonl"), "-o", str(out), "-O", "to=de", "-O", f"glossary={tmp_path / 'terms.tsv'}"])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row["result"] for row in lines(out)}
    assert [k for k in texts if rows[k]["glossary_misses"]] == ["a", "d", "e", "f"] and [k for k in texts if rows[k]["missing_placeholders"]] == ["b", "d"]
    warned = [line for line in result.stderr.splitlines() if "glossary" in line or "placeholder" in line]
    assert warned == [
        'Warning: glossary terms were missed in 4 of 6 rows (ids "a", "d", "e", "f"): \'cat\' as \'Katze\' in 4; their results\' "glossary_misses" list them',
        'Warning: placeholders are missing in 2 of 6 rows (ids "b", "d"): \'{name}\' in 2; their results\' "missing_placeholders" list them, and the program that fills them in will fail',
    ], result.stderr


def test_the_note_on_one_row_that_missed_a_glossary_term_names_it_in_the_singular():
    from aigc.cli.lines import missed_note

    assert missed_note("glossary_misses", [('"a"', [{"source": "cat", "target": "Katze", "count": 1}])], 3) == (
        'glossary terms were missed in 1 of 3 rows (id "a"): \'cat\' as \'Katze\' in 1; its result\'s "glossary_misses" lists them'
    )


def test_a_bad_setting_in_an_openai_batch_rows_body_is_named_as_its_field_not_a_flag(tmp_path):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    source, out = tmp_path / "batchinput.jsonl", tmp_path / "out.jsonl"
    messages = [{"role": "user", "content": "Name a bee."}]
    bodies = [{"messages": messages, "temperature": 7}, {"messages": messages, "max_completion_tokens": 0}, {"messages": messages}]
    source.write_text("".join(json.dumps({"custom_id": f"r{i}", "body": body}) + "\n" for i, body in enumerate(bodies)))
    result = CliRunner().invoke(app, ["batch", "chat", "-i", str(source), "--field", "body.messages", "--id-field", "custom_id", "-o", str(out), "-m", "echo", "--temperature", "0.5"])
    errors = [line.get("error") for line in lines(out)]
    assert errors[0] == "the row's body.temperature must be between 0 and 2 (0 = greedy), got 7", result.output
    assert errors[1] == "the row's body.max_completion_tokens must be at least 1, got 0"
    assert errors[2] is None and result.exit_code == 1


def test_the_dtype_a_local_model_runs_in_is_recorded_and_a_resume_in_another_is_refused(tmp_path, tiny_model_dir):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("one\ntwo\n")
    rows = read_rows(source)
    settings = run_settings(get_generator("summarize", model=str(tiny_model_dir), dtype="float32"), {}, {})
    assert settings["dtype"] == "float32"
    assert run_settings(get_generator("summarize", model=str(tiny_model_dir), dtype="bfloat16"), {}, {})["settings"] == settings["settings"]  # fingerprints of older files stand
    out.write_text(json.dumps({"id": 1, "row": 1, **settings, "result": {}}) + "\n")
    assert [r.id for r in pending_rows(rows, out, get_generator("summarize", model=str(tiny_model_dir), dtype="float32"), {}, {})] == [2]
    for retry_failed in (False, True):
        with pytest.raises(BadInputError, match="made in float32, not bfloat16 .*resume it with dtype=float32"):
            pending_rows(rows, out, get_generator("summarize", model=str(tiny_model_dir), dtype="bfloat16"), {}, {}, retry_failed=retry_failed)
    older = {k: v for k, v in settings.items() if k != "dtype"}  # made before dtypes were recorded
    out.write_text(json.dumps({"id": 1, "row": 1, **older, "result": {}}) + "\n")
    assert [r.id for r in pending_rows(rows, out, get_generator("summarize", model=str(tiny_model_dir), dtype="bfloat16"), {}, {})] == [2]
    assert "dtype" not in run_settings(summarizer(FakeEngine()), {}, {})  # a model that does not run here has none


def test_a_loaded_local_engine_names_the_dtype_it_runs_in(tiny_model_dir):
    generator = get_generator("summarize", model=str(tiny_model_dir), dtype="float32")
    assert generator.engine.dtype == "float32" and generator.dtype_used() == "float32"


def _documents(tmp_path):
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    (folder / "page.html").write_text("<html><head><script>var x='SCRIPTTEXT';</script></head><body><nav>Menu</nav><p>Bees make honey on city roofs.</p></body></html>")
    (folder / "notes.md").write_text("Cities plant rooftop gardens.\n")
    (folder / "sub" / "talk.vtt").write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v Ann>Welcome to the meeting.\n")
    (folder / "report.pdf").write_bytes(b"%PDF-1.4 ...")
    (folder / "rows.jsonl").write_text('{"text": "not a document"}\n')
    (folder / ".hidden.txt").write_text("left out\n")
    return folder


def test_batch_over_a_folder_runs_each_document_read_as_summarize_reads_it_resumably(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    folder = _documents(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["batch", "summarize", "-m", "echo", "-i", "inbox", "-o", str(out), "-O", "words=40"])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row["result"]["summary"] for row in lines(out)}
    assert list(rows) == ["inbox/notes.md", "inbox/page.html", "inbox/sub/talk.vtt"]  # by path, subfolders too; hidden files and non-documents left out
    assert rows["inbox/page.html"] == "Bees make honey on city roofs." and "SCRIPTTEXT" not in out.read_text()  # HTML's text, as `aigc summarize FILE` reads it
    assert rows["inbox/sub/talk.vtt"] == "Ann: Welcome to the meeting."
    assert "skipped 2 files that are no documents (1 .jsonl, 1 .pdf): inbox/report.pdf, inbox/rows.jsonl; a folder's .txt, .md, .markdown, .html, .htm, .srt, .vtt, .sbv, .ass, .ssa, .eml and .mbox files are read; name one" in result.stderr
    (folder / "notes.md").write_text("Cities plant more rooftop gardens.\n")  # edited: run again; the others are done
    again = CliRunner().invoke(app, ["batch", "summarize", "-m", "echo", "-i", "./inbox/", "-o", str(out), "-O", "words=40"])
    assert again.exit_code == 0 and "1 row written" in again.stderr and "2 already done" in again.stderr, again.output


def test_batch_takes_documents_as_arguments_each_one_row_a_bad_one_a_row_error(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    _documents(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    result = CliRunner().invoke(app, ["batch", "headline", "-m", "echo", "inbox/notes.md", "inbox/page.html", "empty.txt", "-o", "h.jsonl", "-O", "n=1"])
    rows = lines(tmp_path / "h.jsonl")
    assert [row["id"] for row in rows] == ["inbox/notes.md", "inbox/page.html", "empty.txt"]
    assert rows[0]["result"]["headlines"] == ["Cities plant rooftop gardens"] and rows[1]["result"]["headlines"] == ["Bees make honey on city roofs"]  # articles, not topics
    assert rows[2]["error"] == "empty.txt is empty; give a document with some text in it" and result.exit_code == 1
    quoted = CliRunner().invoke(app, ["batch", "summarize", "-m", "echo", "-i", "inbox/*.md", "-o", "s.jsonl"])  # a glob the shell left as it is
    assert quoted.exit_code == 0 and [row["id"] for row in lines(tmp_path / "s.jsonl")] == ["inbox/notes.md"], quoted.output


@pytest.mark.parametrize(("args", "error"), [
    (["-i", "a.txt", "b.txt"], "-i a.txt is a file of rows, and b.txt is a document; to run each file as one document, name them all without -i"),
    (["inbox", "--field", "body"], "--field goes with a file of rows; each document is one row"),
    (["empty"], "empty holds no documents (.txt, .md"),
    (["missing.md"], "no such file: missing.md"),
])
def test_batch_documents_given_wrongly_are_one_line_errors(tmp_path, monkeypatch, args, error):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    _documents(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("one\n")
    result = CliRunner().invoke(app, ["batch", "summarize", "-m", "echo", *args, "-o", "-"])
    assert result.exit_code == 2 and error in result.stderr and result.stdout == "", result.output


@pytest.mark.parametrize("given", [["inbox"], ["-i", "inbox/**/*.md"]])
def test_a_broken_link_is_skipped_with_a_warning_and_a_link_to_a_file_in_the_run_is_read_once(tmp_path, monkeypatch, given):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    folder = _documents(tmp_path)
    monkeypatch.chdir(tmp_path)
    (folder / "sub" / "c.md").write_text("Bees fly far.\n")
    (folder / "broken.md").symlink_to(tmp_path / "nonexistent.md")
    (folder / "link.md").symlink_to("sub/c.md")  # found first, by its name: the file under sub/ is the same one
    result = CliRunner().invoke(app, ["batch", "summarize", "-m", "echo", *given, "-o", "out.jsonl"])
    assert result.exit_code == 0, result.output
    assert [row["id"] for row in lines(tmp_path / "out.jsonl")] == ["inbox/link.md", "inbox/notes.md"] + (["inbox/page.html", "inbox/sub/talk.vtt"] if given == ["inbox"] else [])
    assert "inbox/broken.md" in result.stderr and "broken" in result.stderr.split("inbox/broken.md")[0].rsplit("Warning:", 1)[-1]


def test_the_skipped_files_warning_counts_broken_links_apart(tmp_path):
    from aigc.cli.batch import _skipped_note

    (tmp_path / "gone.txt").symlink_to(tmp_path / "nowhere")
    (tmp_path / "pic.png").write_bytes(b"\x89PNG")
    gone, pic = str(tmp_path / "gone.txt"), str(tmp_path / "pic.png")
    assert _skipped_note([gone], True) == f"skipped 1 broken symbolic link (to no file): {gone}"
    assert _skipped_note([pic, gone], False).startswith(f"skipped 2 files that are no documents or broken links (1 .png, 1 broken link): {pic}, {gone}; a folder's .txt, .md, ")


def test_the_document_types_are_named_in_full_in_batch_help_and_the_readme():
    from pathlib import Path

    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.textio import DOCUMENT_FILES, DOCUMENT_SUFFIXES

    help_text = " ".join(CliRunner().invoke(app, ["batch", "--help"]).output.replace("│", " ").split())
    assert " ".join(DOCUMENT_FILES.split()) in help_text and ".eml" in DOCUMENT_FILES
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    batch_section = readme[readme.index("Documents run as rows too"):][:1500]
    assert all(f"`{suffix}`" in batch_section for suffix in DOCUMENT_SUFFIXES)
