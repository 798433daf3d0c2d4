"""Structured answers: --schema values, decoding held to a JSON schema, and what comes back."""

import json
import logging
import re
import sys

import pytest
from typer.testing import CliRunner

from aigc.cli.app import app
from aigc.engine.base import Completion
from aigc.engine.sampling import SamplingParams
from aigc.errors import AigcError, BadInputError, OptionError
from aigc.json_schemas import concise_schema, parse_answers, read_schema

runner = CliRunner()
FLAGS = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "count": {"type": "integer"}, "color": {"enum": ["red", "green"]}},
    "required": ["ok", "count", "color"],
}


def test_concise_schema_reads_names_types_and_descriptions():
    assert concise_schema("name, age int, bio: a short bio") == {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "bio": {"type": "string", "description": "a short bio"}},
        "required": ["name", "age", "bio"],
    }
    lines = concise_schema("title str: the title, with a comma\nscore float\nfinal bool")  # one field per line: commas stay
    assert lines["properties"]["title"]["description"] == "the title, with a comma"
    assert [p["type"] for p in lines["properties"].values()] == ["string", "number", "boolean"]
    for bad in ("name bogus", " , ", "two words here", "name str, name int"):
        with pytest.raises(BadInputError):
            concise_schema(bad)


def test_read_schema_takes_json_text_a_file_or_the_concise_syntax(tmp_path):
    assert read_schema('{"type": "object"}') == {"type": "object"}
    file = tmp_path / "person.json"
    file.write_text(json.dumps(FLAGS))
    assert read_schema(str(file)) == FLAGS
    assert read_schema("name")["required"] == ["name"]
    with pytest.raises(BadInputError, match="not valid JSON"):
        read_schema('{"type": ')
    with pytest.raises(BadInputError, match="cannot read the schema file"):
        read_schema(str(tmp_path / "missing.json"))
    file.write_text("[1, 2]")
    with pytest.raises(BadInputError, match="must hold a JSON object"):
        read_schema(str(file))


def test_sampling_params_take_a_json_object_as_schema():
    assert SamplingParams(json_schema=FLAGS).json_schema == FLAGS
    for bad in (["a"], {"type": object}):  # text is read as --schema reads it (test_sampling)
        with pytest.raises(OptionError, match="json_schema"):
            SamplingParams(json_schema=bad)


def test_a_schema_larger_than_the_decoder_builds_in_bounded_time_is_refused_naming_the_limit():
    from aigc.engine.structured import check_schema

    def strings(n):
        return [{"type": "string", "maxLength": i} for i in range(n)]

    def props(schemas):
        return {"type": "object", "properties": {f"p{i}": s for i, s in enumerate(schemas)}}

    for fits in (props([{"anyOf": strings(256)}]), props([{"type": "string"}] * 5000), props([{"enum": list(range(500))}] * 2),
                 props([{"type": "string", "pattern": "a" * 1000}]), props([{"const": {"anyOf": [1] * 300, "pattern": "a" * 2000}}])):  # data is no schema
        check_schema(fits)
    for schema, words in [
        (props([{"anyOf": strings(257)}]), "/properties/p0/anyOf has 257 branches, more than the 256 the decoder takes"),
        (props([{"oneOf": strings(300)}]), "/properties/p0/oneOf has 300 branches"),
        (props([{"enum": list(range(600))}] * 2), "enums hold more than 1000 values in all"),
        (props([{"type": "string", "pattern": "a" * 1001}]), "/properties/p0/pattern is 1001 characters long, more than the 1000"),
        (props([{"type": "string", "examples": [{}]}] * 5000), "holds more than 10000 objects"),
    ]:
        with pytest.raises(BadInputError, match=re.escape(words)):
            check_schema(schema)


def test_a_pattern_whose_automaton_outgrows_its_bound_is_refused_while_the_parser_is_built():
    """interegular builds `[ab]*a[ab]{N}` with 2^(N+1) states, at a cost quadratic in them (N=13: 45 s):
    the build stops past 1,000 states a pattern (10,000 a schema), outside `schema_parser` it does not."""
    import interegular

    from aigc.engine.structured import schema_parser

    def patterned(*patterns):
        return {"type": "object", "properties": {f"p{i}": {"type": "string", "pattern": p} for i, p in enumerate(patterns)}}

    schema_parser(patterned("^[ab]*a[ab]{8}$", r"^\d{4}-\d{2}-\d{2}$", "^[a-z]{1,500}$"))  # 513, 11 and 501 states
    with pytest.raises(BadInputError, match=re.escape("pattern '[ab]*a[ab]{10}' needs an automaton of more than 1000 states")):
        schema_parser(patterned("^[ab]*a[ab]{10}$"))
    with pytest.raises(BadInputError, match="or the schema's patterns more than 10000 together"):  # each fits, not all
        schema_parser(patterned(*(f"[ab]*a[ab]{{8}}{'c' * i}" for i in range(30))))
    assert len(interegular.parse_pattern("[ab]*a[ab]{10}").to_fsm().states) == 2049


def test_a_pattern_check_that_backtracks_counts_as_not_matching_once_the_answers_time_for_patterns_runs_out(monkeypatch):
    """Python's `re` takes ~2 s to find that `^(a|aa)*$` does not match 34 a's and a b, and twice as long for
    each character or two more; an answer's pattern checks (values and keys) get PATTERN_SECONDS in all, here 0.05."""
    import jsonschema

    from aigc import json_schemas

    monkeypatch.setattr(json_schemas, "PATTERN_SECONDS", 0.05, raising=False)
    slow = "a" * 34 + "b"
    patterned = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a|aa)*$"}}}
    with pytest.raises(BadInputError, match=r"^the answer does not match the schema at the answer: checking 'a+\.\.\.a+b' against the pattern '\^\(a\|aa\)\*\$' took more than 0.05 s, so it counts as not matching"):
        parse_answers([Completion(json.dumps({"s": slow}), 3, 9, "stop")], patterned, 50)
    keyed = {"type": "object", "patternProperties": {"^(a|aa)*$": {"type": "integer"}}, "additionalProperties": False}
    assert "took more than 0.05 s" in json_schemas.schema_problem({slow: 1}, keyed).message
    assert json_schemas.schema_problem({"s": "aaaa"}, patterned) is None and json_schemas.schema_problem({"aa": 1}, keyed) is None
    assert json_schemas.schema_problem({"s": "ab"}, patterned).message == "'ab' does not match '^(a|aa)*$'"
    assert json_schemas.schema_problem({"ab": 1}, keyed).validator == "additionalProperties"
    jsonschema.validate({"s": "aaaa"}, patterned)  # jsonschema's other users check patterns as before


def test_answers_parse_whole_integers_and_cut_answers_say_why():
    whole = Completion('{"ok": true, "count": 1e3, "color": "red"}', 3, 9, "stop")
    assert parse_answers([whole], FLAGS, 50) == [{"ok": True, "count": 1000, "color": "red"}]
    with pytest.raises(BadInputError, match="cut off at max_tokens=50 before its JSON was complete; raise max_tokens"):
        parse_answers([Completion('{"ok": tr', 3, 50, "length")], FLAGS, 50)
    with pytest.raises(AigcError, match="cut off"):
        parse_answers([Completion("12", 3, 50, "length")], {"type": "integer"}, 50)  # "12" of "123" parses too
    with pytest.raises(AigcError, match="too large"):
        parse_answers([Completion('{"ok": true, "count": 1e999, "color": "red"}', 3, 9, "stop")], FLAGS, 50)
    bounded = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 5}}}
    with pytest.raises(BadInputError, match="does not match the schema at age: 109 is greater than the maximum of 5; the decoder holds answers to the schema's shape, not to every rule"):
        parse_answers([Completion('{"age": 109}', 3, 9, "stop")], bounded, 50)
    unheld = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 5000}}}
    with pytest.raises(BadInputError, match="5000; the decoder does not hold answers to minimum: drop it from json_schema, or try again with another seed$"):
        parse_answers([Completion('{"age": 41}', 3, 9, "stop")], unheld, 50)
    with pytest.raises(BadInputError, match=r"^a stop string ended the answer before its JSON was complete; leave stop out"):  # the caller's stop strings
        parse_answers([Completion('{"ok"', 3, 2, "stop")], FLAGS, 50, ("ok",))
    with pytest.raises(AigcError, match="server does not follow JSON schemas") as caught:  # no setting cut it
        parse_answers([Completion("Sure! Here is", 3, 2, "stop")], FLAGS, 50)
    assert not isinstance(caught.value, BadInputError)


@pytest.mark.parametrize("seed", range(4))
def test_a_random_model_held_to_the_schema_writes_only_json_it_allows(tiny_engine, seed):
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=100, seed=seed, n=2, json_schema=FLAGS)
    for completion in tiny_engine.generate(["Give me JSON", "Another, longer prompt for the batch"], params)[0] + tiny_engine.generate(["x"], params)[0]:
        value = json.loads(completion.text)  # whole JSON: the random model is held to the schema
        assert completion.text == completion.text.strip()  # and nothing after it
        assert list(value) == ["ok", "count", "color"]  # in the schema's order
        assert isinstance(value["ok"], bool) and value["color"] in ("red", "green") and isinstance(value["count"], (int, float))
        assert completion.finish_reason == "stop"


def test_streaming_is_held_to_the_schema_too(tiny_engine):
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=100, seed=3, json_schema=FLAGS)
    assert set(json.loads("".join(tiny_engine.stream("Give me JSON", params)))) == {"ok", "count", "color"}


def test_chat_and_template_generators_return_the_json_and_its_value(tiny_engine):
    from aigc.generators.chat import ChatGenerator
    from aigc.generators.template import TemplateGenerator

    sampling = {"json_schema": FLAGS, "temperature": 1.0, "seed": 2, "max_tokens": 100}
    for result in (ChatGenerator(engine=tiny_engine)("Give me JSON", sampling=sampling), TemplateGenerator(engine=tiny_engine)({"input": "JSON"}, sampling=sampling)):
        assert json.loads(result["text"]) == result["data"] and set(result["data"]) == {"ok", "count", "color"}
    with pytest.raises(BadInputError, match="cut off at max_tokens=3"):
        ChatGenerator(engine=tiny_engine)("Give me JSON", sampling={**sampling, "max_tokens": 3})
    with pytest.raises(BadInputError, match="not valid"):
        ChatGenerator(engine=tiny_engine)("Give me JSON", sampling={"json_schema": {"type": "banana"}, "max_tokens": 50})
    with pytest.raises(BadInputError, match="an enum with no values"):
        ChatGenerator(engine=tiny_engine)("Give me JSON", sampling={"json_schema": {"type": "object", "properties": {"x": {"enum": []}}}, "max_tokens": 50})


def test_cli_schema_prints_the_json_and_bad_schemas_fail_before_the_model_loads(tiny_model_dir):
    model = ("-m", str(tiny_model_dir), "--temperature", "1", "--seed", "2", "--max-tokens", "100")
    result = runner.invoke(app, ["chat", "Give me JSON", "--schema", json.dumps(FLAGS), *model])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"ok", "count", "color"}
    as_json = json.loads(runner.invoke(app, ["chat", "Give me JSON", "--schema", "ok bool, count int", *model, "--json"]).stdout)
    assert json.loads(as_json["text"]) == as_json["data"] and list(as_json["data"]) == ["ok", "count"]
    answered = runner.invoke(app, ["run", "chat", "--var", "input=JSON please", "--schema", "ok bool", *model])
    assert answered.exit_code == 0 and isinstance(json.loads(answered.stdout)["ok"], bool)
    for args, words in [
        (["chat", "x", "--schema", '{"type": "banana"}', "-m", "no-such-model"], "is not valid at /type:"),
        (["chat", "x", "--schema", '{"properties": {"a": {"type": "banana"}}}', "-m", "no-such-model"], "is not valid at /properties/a/type:"),
        (["chat", "x", "--schema", '{"type": "string", "pattern": "(("}', "-m", "no-such-model"], "is not valid"),
        (["chat", "x", "--schema", '{"properties": {"a": {"$ref": "#/$defs/nope"}}, "$defs": {}}', "-m", "no-such-model"], "names nothing"),
        (["chat", "x", "--schema", "name bogus"], "cannot read schema field"),
        (["chat", "x", "--schema", '{"items": ' * 200 + "{}" + "}" * 200, "-m", "no-such-model"], "nested more than 64 levels"),
        (["chat", "x", "--schema", "[" * 5000 + "]" * 5000], "nested too deeply"),
        (["chat", "x", "--schema", json.dumps({"anyOf": [{"type": "string", "maxLength": i} for i in range(300)]}), "-m", "no-such-model"], "more than the 256"),
        (["chat", "x", "--schema", '{"type": "string", "pattern": "^[ab]*a[ab]{10}$"}', "-m", "no-such-model"], "more than 1000 states"),
        (["run", "chat", "--var", "input=x", "--schema", "[1]"], "must hold a JSON object"),
    ]:
        failed = runner.invoke(app, args)
        assert failed.exit_code == 2 and words in failed.stderr, failed.output
    cut = runner.invoke(app, ["chat", "Give me JSON", "--schema", json.dumps(FLAGS), *model[:-1], "3"])
    assert cut.exit_code == 2 and "raise --max-tokens" in cut.stderr and cut.stdout == ""  # the caller's --max-tokens: bad input
    for args, words in [
        (["--stop", '"'], "Error: a --stop string ended the answer before its JSON was complete; leave --stop out with a JSON schema"),  # every key starts with one
        (["--schema", json.dumps({**FLAGS, "not": {}})], "; the decoder does not hold answers to not: drop it from --schema, or try again with another --seed"),  # nothing is valid
    ]:
        for command in (["chat", "Give me JSON"], ["run", "chat", "--var", "input=JSON please"]):
            failed = runner.invoke(app, [*command, "--schema", json.dumps(FLAGS), *model, *args])
            assert failed.exit_code == 2 and failed.stdout == "" and words in failed.stderr and len(failed.stderr.splitlines()) == 1, failed.output


def test_a_session_turn_held_to_a_schema_is_checked_and_kept(tiny_model_dir, tmp_path):
    model = ("-m", str(tiny_model_dir), "--temperature", "1", "--seed", "2", "--max-tokens", "100")
    path = tmp_path / "s.json"
    first = runner.invoke(app, ["chat", "-S", str(path), "Hello", *model[:-1], "4"])
    assert first.exit_code == 0, first.output
    turn = json.loads(runner.invoke(app, ["chat", "-S", str(path), "Give me JSON", "--schema", json.dumps(FLAGS), *model, "--json"]).stdout)
    assert set(turn["data"]) == {"ok", "count", "color"} and turn["session"] == str(path)
    messages = json.loads(path.read_text())["messages"]
    assert len(messages) == 4 and json.loads(messages[-1]["content"]) == turn["data"]
    cut = runner.invoke(app, ["chat", "-S", str(path), "More JSON", "--schema", json.dumps(FLAGS), *model[:-1], "3"])
    assert cut.exit_code == 2 and "raise --max-tokens" in cut.stderr
    assert len(json.loads(path.read_text())["messages"]) == 4  # the failed turn is not kept


def test_batch_holds_every_row_to_the_schema(tiny_model_dir, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": f"r{i}", "text": f"Row {i}"}) + "\n" for i in range(5)))
    out = tmp_path / "out.jsonl"
    choices = {"type": "object", "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "green"]}}, "required": ["ok", "color"]}
    args = ["batch", "chat", "-i", str(rows), "-o", str(out), "--schema", json.dumps(choices), "-m", str(tiny_model_dir), "--temperature", "1", "--max-tokens", "100"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in written] == [f"r{i}" for i in range(5)]
    assert all(list(row["result"]["data"]) == ["ok", "color"] for row in written), written
    refused = runner.invoke(app, ["batch", "summarize", "-i", str(rows), "-o", str(tmp_path / "s.jsonl"), "--schema", "name"])
    assert refused.exit_code == 2 and "chat and template" in refused.stderr


def _walk(tokenizer, mask, text: str) -> None:
    """Feed `text`'s tokens to the mask one by one: each must be allowed, and then the end."""
    import torch

    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    seen = [tokenizer.pad_token_id]  # the prompt
    for token in ids:
        scores = mask(torch.tensor([seen]), torch.zeros(1, len(tokenizer)))
        assert scores[0, token] == 0, (text, tokenizer.decode(seen[1:]), tokenizer.decode([token]))
        seen.append(token)


def test_non_ascii_and_byte_token_text_can_be_written_in_strings(tiny_engine):
    from aigc.engine.structured import SchemaMask

    tokenizer = tiny_engine.tokenizer
    named = {"type": "object", "properties": {"name": {"type": "string", "minLength": 1}}, "required": ["name"]}
    for text in ('{"name": "Émile déjà über"}', '{"name": "東京 café 龍"}', '{"name": "über"}'):
        _walk(tokenizer, SchemaMask(tokenizer, named), text)


def test_unreachable_enum_values_are_refused_and_old_states_are_dropped(tiny_engine):
    from aigc.engine.structured import SchemaMask

    with pytest.raises(BadInputError, match="byte tokens"):
        SchemaMask(tiny_engine.tokenizer, {"enum": ["龍", "red"]})
    for schema in ({"enum": ['say "hi"', "no"]}, {"const": "a\nb"}, {"type": "object", "properties": {"a\\b": {"type": "integer"}}}):
        with pytest.raises(BadInputError, match="holds a quote, backslash or control character"):  # the enforcer writes them unescaped
            SchemaMask(tiny_engine.tokenizer, schema)
    mask = SchemaMask(tiny_engine.tokenizer, FLAGS)
    tiny_engine.generate(["a", "bb"], SamplingParams(temperature=1.0, max_tokens=60, seed=1, n=2, json_schema=FLAGS))
    _walk(tiny_engine.tokenizer, mask, '{"ok": true, "count": 3, "color": "red"}')
    assert len(mask.enforcer.prefix_states) == 1  # the latest token's state only, not one per step


def _allowed(tokenizer, schema, text: str) -> set[int]:
    """The tokens the mask allows after `text`'s tokens."""
    import torch

    from aigc.engine.structured import SchemaMask

    mask, seen = SchemaMask(tokenizer, schema), [tokenizer.pad_token_id]  # the prompt
    for token in [None] + tokenizer(text, add_special_tokens=False)["input_ids"]:
        seen += [] if token is None else [token]
        scores = mask(torch.tensor([seen]), torch.zeros(1, len(tokenizer)))
    return set((scores[0] == 0).nonzero().flatten().tolist())


@pytest.mark.parametrize("field", [{"type": "string"}, {"type": "string", "minLength": 3}, {"type": "string", "pattern": "^[a-z\\s]+$"}, {}])
def test_no_string_holds_a_raw_control_character(tiny_engine, field):
    import random

    import torch

    from aigc.engine.structured import SchemaMask

    tokenizer = tiny_engine.tokenizer
    controls = {t for t in range(len(tokenizer)) if any(ord(c) < 0x20 for c in tokenizer.decode([t]))}
    assert {tokenizer.convert_tokens_to_ids(t) for t in ("Ċ", "ĉ", "č", "Ā")} <= controls  # "\n", "\t", "\r", "\x00"
    schema = {"type": "object", "properties": {"text": field}, "required": ["text"]}
    inside = _allowed(tokenizer, schema, '{"text": "ab')
    assert inside and not inside & controls  # JSON allows them in a string only escaped
    assert tokenizer.convert_tokens_to_ids("Ċ") in _allowed(tokenizer, schema, "{")  # between the JSON's parts, as before
    if not field:  # any JSON: escapes are written as before
        _walk(tokenizer, SchemaMask(tokenizer, schema), '{"text": "one\\ntwo\\tthree \\u0001"}')
    pick = random.Random(1)
    for _ in range(3):  # a walk that takes a control character wherever the mask allows one writes JSON a strict reader takes
        mask, seen = SchemaMask(tokenizer, schema), [tokenizer.pad_token_id]
        for _ in range(40):
            allowed = (mask(torch.tensor([seen]), torch.zeros(1, len(tokenizer)))[0] == 0).nonzero().flatten().tolist()
            seen.append(pick.choice(sorted(controls & set(allowed)) or allowed))
            if seen[-1] == tokenizer.eos_token_id:
                break
        text = tokenizer.decode(seen[1:], skip_special_tokens=True)
        if seen[-1] == tokenizer.eos_token_id:
            assert isinstance(json.loads(text)["text"], str) or not field, repr(text)  # strict: no raw control character in a string
        else:
            assert '"text"' not in text or not any(ord(c) < 0x20 for c in text.split('"text"', 1)[1].split('"', 1)[-1]), repr(text)


def test_no_blank_space_follows_json_that_may_end(tiny_engine):
    import torch

    from aigc.engine.structured import SchemaMask

    tokenizer = tiny_engine.tokenizer
    blank = [tokenizer.convert_tokens_to_ids(t) for t in ("Ċ", "Ġ")]  # "\n" and " " in this tokenizer

    def allowed(schema, text):
        mask, seen = SchemaMask(tokenizer, schema), [tokenizer.pad_token_id]  # the prompt
        for token in [None] + tokenizer(text, add_special_tokens=False)["input_ids"]:
            seen += [] if token is None else [token]
            scores = mask(torch.tensor([seen]), torch.zeros(1, len(tokenizer)))
        return set((scores[0] == 0).nonzero().flatten().tolist())

    assert allowed(FLAGS, '{"ok": true, "count": 3, "color": "red"}') == {tokenizer.eos_token_id}
    after_digit = allowed({"type": "integer"}, "7")
    assert tokenizer.eos_token_id in after_digit and tokenizer.convert_tokens_to_ids("8") in after_digit and not after_digit & set(blank)
    assert set(blank) <= allowed(FLAGS, "{")  # inside the JSON, as before
    assert not allowed(FLAGS, "") & set(blank)  # nor before it


def test_a_small_integer_range_is_held_to_its_bounds(tiny_engine):
    ranged = {"type": "object", "properties": {"stars": {"type": "integer", "minimum": 1, "exclusiveMaximum": 6}}, "required": ["stars"]}
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=60, seed=5, n=4, json_schema=ranged)
    values = [json.loads(c.text)["stars"] for c in tiny_engine.generate(["Rate it"], params)[0]]
    assert all(v in range(1, 6) for v in values), values


def test_rules_the_decoder_does_not_hold_are_named():
    from aigc.engine.structured import unheld_rules

    schema = {
        "type": "object",
        "properties": {
            "minimum": {"type": "integer", "minimum": 1, "maximum": 5},  # a property named like a rule; a small range is held
            "n": {"type": "number", "maximum": 9},
            "tags": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}, "uniqueItems": True},
        },
        "patternProperties": {"^x": {"type": "string"}},
    }
    assert unheld_rules(schema) == ["maximum", "oneOf", "patternProperties", "uniqueItems"]
    assert unheld_rules({"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}, "required": ["a"]}) == []


@pytest.mark.parametrize(
    "schema, texts",
    [
        ({"enum": ["a", None]}, ['"a"', "null"]),
        ({"enum": [1, "two", None]}, ["1", '"two"', "null"]),
        ({"enum": [True, False]}, ["true", "false"]),
        ({"const": 5}, ["5"]),
        ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, ['"abc"']),
        ({"type": "object", "properties": {"x": {}, "y": True}, "required": ["x", "y"]}, ['{"x": [1, "a"], "y": null}']),
        ({"type": "object", "properties": {"name": {"type": "string"}, "kids": {"type": "array", "items": {"$ref": "#"}}}, "required": ["name", "kids"]}, ['{"name": "a", "kids": [{"name": "b", "kids": []}]}']),
    ],
)
def test_schemas_the_enforcer_cannot_follow_as_written_are_rewritten_into_ones_it_can(tiny_engine, schema, texts):
    from aigc.engine.structured import SchemaMask, schema_parser, unheld_rules

    schema_parser(schema)
    assert unheld_rules(schema) == []
    for text in texts:
        _walk(tiny_engine.tokenizer, SchemaMask(tiny_engine.tokenizer, schema), text)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=80, seed=2, n=3, json_schema=schema)
    for completion in tiny_engine.generate(["JSON"], params)[0]:
        if completion.finish_reason == "stop":  # a random model may write a long string
            json.loads(completion.text)


def test_what_the_enforcer_cannot_hold_is_refused_before_decoding_or_unheld():
    from aigc.engine.structured import schema_parser, unheld_rules

    for schema, words in [
        ({"type": "object", "properties": {"s": {"type": "string", "pattern": "a+", "maxLength": 3}}}, "pattern and a min/max length"),
        ({"type": "object", "properties": {"on": {"const": True}}}, "enum or const value true"),
        ({"enum": ["a", [1]]}, r"enum or const value \[1\]"),
        ({"properties": {"a": {"type": "string"}}}, "its part / has no type, only properties, which the decoder cannot hold answers to alone; give it a type"),
        ({"type": "object", "properties": {"x": {"description": "d", "if": {"type": "string"}, "then": {"minLength": 2}}}}, "its part /properties/x has no type, only if, then,"),
        ({"type": "array", "items": {"anyOf": [{"type": "string"}, {"not": {"type": "null"}}]}}, "its part /items/anyOf/1 has no type, only not,"),
    ]:
        with pytest.raises(BadInputError, match=words):
            schema_parser(schema)
    clash = {"allOf": [{"type": "string", "maxLength": 3}, {"type": "string", "maxLength": 5}]}
    assert unheld_rules(clash) == ["allOf"] and unheld_rules({"allOf": [{"type": "string"}]}) == []
    assert unheld_rules({"type": "string", "format": "email"}) == ["format"]


def test_a_decoder_that_fails_mid_answer_is_an_error_never_a_short_answer(tiny_engine, tiny_model_dir, monkeypatch, caplog):
    from aigc.engine import structured

    monkeypatch.setattr(structured, "decoder_schema", lambda schema: schema)  # as lm-format-enforcer takes it: it fails at "x"
    monkeypatch.setattr(structured, "_build_every_part", lambda parser: None)
    schema = {"type": "object", "properties": {"x": {"enum": ["a", None]}}, "required": ["x"]}
    with pytest.raises(AigcError, match="decoder failed in the middle of the answer .*Unsupported enum type"):
        tiny_engine.generate(["JSON"], SamplingParams(temperature=1.0, max_tokens=40, seed=1, json_schema=schema))
    failed = runner.invoke(app, ["chat", "JSON", "--schema", json.dumps(schema), "-m", str(tiny_model_dir), "--max-tokens", "40"])
    assert failed.exit_code == 1 and failed.stdout == "" and len(failed.stderr.strip().splitlines()) == 1, failed.output
    assert "Terminating the parser" not in caplog.text
    unsatisfiable = {"type": "object", "properties": {"b": {"type": "string", "minLength": 5, "maxLength": 2}}, "required": ["b"]}
    with pytest.raises(AigcError, match="decoder failed in the middle of the answer .*gave up"):  # the enforcer catches this one itself
        tiny_engine.generate(["JSON"], SamplingParams(temperature=0, max_tokens=40, json_schema=unsatisfiable))
    assert "Unknown LMFormatEnforcer Problem" not in caplog.text and logging.getLogger().filters == []  # the program's root logger untouched


def test_whitespace_runs_are_capped_between_json_parts_and_in_strings(tiny_engine):
    import torch

    from aigc.engine.structured import MAX_BLANK_RUN, MAX_WHITESPACE, SchemaMask

    tokenizer = tiny_engine.tokenizer
    space, newline = tokenizer.convert_tokens_to_ids(["Ġ", "Ċ"])
    named = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}

    def blank_allowed(text: str, blanks: list[int]) -> bool:
        mask, seen = SchemaMask(tokenizer, named), [tokenizer.pad_token_id]
        for token in [None] + tokenizer(text, add_special_tokens=False)["input_ids"] + blanks:
            seen += [] if token is None else [token]
            scores = mask(torch.tensor([seen]), torch.zeros(1, len(tokenizer)))
        return bool(scores[0, space] == 0 or scores[0, newline] == 0)

    assert blank_allowed("{", [newline] + [space] * (MAX_WHITESPACE - 2)) and not blank_allowed("{", [newline] + [space] * (MAX_WHITESPACE - 1))
    assert blank_allowed('{"name": "a', [space] * (MAX_BLANK_RUN - 1)) and not blank_allowed('{"name": "a', [space] * MAX_BLANK_RUN)
    assert blank_allowed('{"name": "a', [space] * MAX_BLANK_RUN + tokenizer("b", add_special_tokens=False)["input_ids"])  # a letter ends the run


def test_an_object_never_ends_right_after_a_comma(tiny_engine):
    import torch

    from aigc.engine.structured import SchemaMask

    tokenizer = tiny_engine.tokenizer
    close = tokenizer.convert_tokens_to_ids("}")
    optional = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}
    for schema, text in ((optional, '{"a": 1,'), ({"type": "object"}, '{"x": 1,'), (optional, "{")):
        mask, seen = SchemaMask(tokenizer, schema), [tokenizer.pad_token_id]
        for token in [None] + tokenizer(text, add_special_tokens=False)["input_ids"]:
            seen += [] if token is None else [token]
            scores = mask(torch.tensor([seen]), torch.zeros(1, len(tokenizer)))
        assert bool(scores[0, close] == 0) == (text == "{"), text  # an empty object may end at once
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=60, seed=0, n=8, json_schema=optional)
    for completion in tiny_engine.generate(["JSON"], params)[0]:
        if completion.finish_reason == "stop":
            json.loads(completion.text)


def _tokenizer_with_blank_line_tokens():
    """A byte-level BPE tokenizer trained on pretty-printed JSON and blank lines: it has tokens such
    as "\n\n", "\n  " and "\n\n\n ", as a real model's has (the tiny model's has none)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [json.dumps({"name": "Ann", "age": 7}, indent=2), '{\n\n\n"name"\n\n:\n\n\n"Bo"\n\n}', "one\n\n\n  two\r\n\r\n  three\n   four, five\n\n"] * 30
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def test_a_whitespace_run_holds_one_line_break_at_most():
    import random

    import torch

    from aigc.engine.structured import SchemaMask

    tokenizer = _tokenizer_with_blank_line_tokens()
    ids = {tokenizer.decode([t]): t for t in range(len(tokenizer))}
    assert {"\n\n", "\n\n\n ", "\n\r", "\r\n\r\n "} <= set(ids)  # tokens that would make a blank line at once
    named = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}

    def allowed(text: str) -> set[str]:
        mask, seen = SchemaMask(tokenizer, named), [tokenizer.pad_token_id]
        for token in [None] + tokenizer(text, add_special_tokens=False)["input_ids"]:
            seen += [] if token is None else [token]
            scores = mask(torch.tensor([seen]), torch.zeros(1, len(tokenizer)))
        return {tokenizer.decode([t]) for t in (scores[0] == 0).nonzero().flatten().tolist()}

    for text in ("{", '{"name"', '{"name":', '{"name": "Ann",'):
        after = allowed(text)
        assert {"\n", "\n  ", " "} <= after and not {"\n\n", "\n\n\n ", "\n\r", "\r\n\r\n "} & after, (text, after)  # pretty-printed JSON, no blank line
        for run in ("\n", " \n", "\n "):  # an indent after the line break, not another
            after = allowed(text + run)
            assert " " in after and not any(token.lstrip(" \t")[:1] in ("\n", "\r") for token in after), (text + run, after)
    _walk(tokenizer, SchemaMask(tokenizer, named), json.dumps({"name": "Ann", "age": 7}, indent=2))  # pretty-printed JSON is written as before

    tokenizer = _tokenizer_with_blank_line_tokens()  # a new one: the token table is kept per tokenizer
    tokenizer.add_tokens([",\n\n"])  # a token that goes on from a run after a part, as some tokenizers have
    assert ",\n\n" not in allowed('{"name": "Ann"') and ",\n\n" not in allowed('{"name": "Ann"\n')
    assert "," in allowed('{"name": "Ann"\n')

    pick = random.Random(0)
    for _ in range(6):  # a random walk over what the mask allows never writes a blank line
        mask, seen = SchemaMask(tokenizer, named), [tokenizer.pad_token_id]
        for _ in range(40):
            scores = mask(torch.tensor([seen]), torch.zeros(1, len(tokenizer)))
            seen.append(pick.choice((scores[0] == 0).nonzero().flatten().tolist()))
            if seen[-1] == tokenizer.eos_token_id:
                break
        text = tokenizer.decode(seen[1:], skip_special_tokens=True)
        assert not any(run.count("\n") + run.count("\r") > 1 for run in re.findall(r"\s+", text.replace("\r\n", "\n"))), repr(text)


def test_a_string_held_to_a_max_length_is_whole_utf8_and_no_longer(tiny_engine):
    """lm-format-enforcer reads a byte token as a character of its own, and blank space after a
    string's opening quote as none: a string ended inside a character (U+FFFD) or ran past its maxLength."""
    import jsonschema
    import torch

    from aigc.engine.structured import SchemaMask

    tokenizer = tiny_engine.tokenizer
    schema = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 3}}, "required": ["s"]}
    quote, lead, follow = (tokenizer.convert_tokens_to_ids(t) for t in ('"', "æ", "Ŀ"))  # bytes 0xE6 0x9D start "東"

    def allowed(ids: list[int]) -> set[int]:
        mask = SchemaMask(tokenizer, schema)
        for end in range(len(ids) + 1):
            scores = mask(torch.tensor([[tokenizer.pad_token_id, *ids[:end]]]), torch.zeros(1, len(tokenizer)))
        return set((scores[0] == 0).nonzero().flatten().tolist())

    opened = tokenizer('{"s": "', add_special_tokens=False)["input_ids"]
    assert lead in allowed(opened) and follow not in allowed(opened)  # a character starts with its first byte
    inside = allowed([*opened, lead])
    assert follow in inside and not {quote, lead} & inside  # and goes on with the next, never ends there
    assert allowed(tokenizer('{"s": " ab', add_special_tokens=False)["input_ids"]) == {quote}  # " ab" is 3 characters
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=40, seed=0, n=8, json_schema=schema)
    for completion in tiny_engine.generate(["Give me JSON"], params)[0]:
        jsonschema.validate(json.loads(completion.text), schema)


def test_without_lm_format_enforcer_it_says_to_rerun_the_setup(monkeypatch):
    from aigc.engine import structured
    from aigc.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "lmformatenforcer", None)  # as if it were not installed
    with pytest.raises(MissingExtraError) as caught:
        structured._enforcer_module()
    assert str(caught.value) == (
        "a JSON schema needs lm-format-enforcer, one of aigc's own dependencies: in the aigc checkout run bash scripts/setup.sh "
        '(or .venv/bin/python -m pip install -c constraints.txt -e ".")'
    )
