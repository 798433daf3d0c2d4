import pytest

from aigc.engine.sampling import SamplingParams, TextAssembler, build_processors
from aigc.errors import BadInputError


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("temperature", 2.5, "between 0 and 2"),
        ("temperature", -0.1, "greedy"),
        ("top_p", 0, "(0, 1]"),
        ("top_k", -1, "top_k must be 0"),
        ("max_tokens", 0, "at least 1"),
        ("n", 0, "between 1 and 128"),
        ("n", 129, "between 1 and 128 (for more, make several calls), got 129"),  # n rows of KV cache at once
        ("seed", 2**63, "must be an int64, from -9223372036854775808 to 9223372036854775807"),
        ("seed", "seven", "must be an integer"),
        ("max_tokens", "ten", "whole number"),
        ("max_tokens", "2.5", "whole number"),
        ("max_tokens", 2.5, "whole number"),
        ("temperature", "hot", "a number"),
        ("top_k", True, "whole number"),
        ("stop", ["ok", 3], "list of strings"),
        ("stop", 5, "list of strings"),
        ("min_p", 1, "[0, 1) (0 = off)"),
        ("frequency_penalty", 2.5, "between -2 and 2"),
        ("presence_penalty", -3, "between -2 and 2"),
        ("logit_bias", {"a": 1}, "keys must be token ids"),
        ("logit_bias", {"5": 101}, "values must be numbers from -100 to 100"),
        ("logit_bias", [5], "must map token ids to numbers"),
    ],
)
def test_params_reject_out_of_range_values_with_a_fix(field, value, words):
    with pytest.raises(BadInputError, match="must") as info:
        SamplingParams(**{field: value})
    assert words in str(info.value)


def test_numbers_and_a_schema_may_be_given_as_text():
    params = SamplingParams(max_tokens="10", temperature=" 0.7", seed="7", json_schema="name, age int")
    assert (params.max_tokens, params.temperature, params.seed) == (10, 0.7, 7)
    assert params.json_schema == {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}
    assert SamplingParams(json_schema='{"type": "integer"}').json_schema == {"type": "integer"}
    with pytest.raises(BadInputError, match="^json_schema is not valid JSON: .*; give a JSON schema object, or the fields in short form"):
        SamplingParams(json_schema="{oops")


def test_a_pydantic_model_class_is_taken_as_its_json_schema_as_llm_and_the_openai_sdk_take_it():
    import pydantic

    import aigc

    class Pet(pydantic.BaseModel):
        name: str
        age: int

    assert SamplingParams(json_schema=Pet).json_schema == Pet.model_json_schema()
    result = aigc.generate("chat", '{"name": "Rex", "age": 3}', model="echo", sampling={"json_schema": Pet})
    assert result["data"] == {"name": "Rex", "age": 3}
    with pytest.raises(BadInputError, match="json_schema must be a JSON Schema"):
        SamplingParams(json_schema=Pet(name="Rex", age=3))  # an instance is no schema


def test_one_stop_string_is_one_stop_and_whole_floats_are_counts():
    params = SamplingParams(stop="END", max_tokens=8.0)
    assert params.stop == ("END",) and params.max_tokens == 8 and isinstance(params.max_tokens, int)
    assert SamplingParams(stop=["a", "", "b"]).stop == ("a", "b")


def test_processors_hold_only_non_neutral_steps():
    names = lambda p: [type(step).__name__ for step in build_processors(p)]  # noqa: E731
    assert names(SamplingParams(temperature=0)) == []
    assert names(SamplingParams(temperature=1.0, top_p=1.0, top_k=0)) == []
    assert names(SamplingParams(temperature=0.5, top_p=0.9, top_k=5, repetition_penalty=1.2, min_p=0.1, presence_penalty=0.5)) == [
        "RepetitionPenaltyLogitsProcessor",
        "OccurrencePenalty",
        "TemperatureLogitsWarper",
        "TopKLogitsWarper",
        "TopP",
        "MinPLogitsWarper",
    ]
    assert names(SamplingParams(temperature=0, min_p=0.1, frequency_penalty=1)) == ["OccurrencePenalty"]  # greedy draws nothing to filter


def test_frequency_and_presence_penalties_count_the_generated_tokens_not_the_prompt():
    import torch

    from aigc.engine.sampling import OccurrencePenalty

    penalty = OccurrencePenalty(frequency=0.5, presence=1.0)
    prompt = torch.tensor([[3, 3, 1], [0, 2, 2]])
    scores = torch.zeros(2, 5)
    assert penalty(prompt, scores).equal(scores)  # the first step sees only the prompt
    generated = torch.cat([prompt, torch.tensor([[4, 4, 1], [2, 0, 0]])], dim=1)
    assert penalty(generated, scores).tolist() == [[0, -1.5, 0, 0, -2.0], [-2.0, 0, -1.5, 0, 0]]


def test_replace_ignores_none_and_keeps_validation():
    base = SamplingParams(temperature=0.3)
    assert base.replace(temperature=None, n=2) == SamplingParams(temperature=0.3, n=2)
    with pytest.raises(BadInputError):
        base.replace(top_p=2)
    with pytest.raises(BadInputError, match=r"^unknown sampling setting max_token \(did you mean max_tokens\?\); known: frequency_penalty, json_schema, logit_bias, max_tokens, "):
        base.replace(max_token=32)  # a misspelt setting, named, not dataclasses' TypeError
    with pytest.raises(BadInputError, match=r"^unknown sampling setting max_new_tokens \(did you mean max_tokens\?\); known: "):
        base.replace(max_new_tokens=32)  # as transformers names it


def test_the_constructor_names_an_unknown_setting_as_replace_does():
    import copy
    import pickle

    with pytest.raises(BadInputError, match="unknown sampling setting foo; known: frequency_penalty, json_schema, logit_bias, max_tokens, "):
        SamplingParams(foo=1)
    with pytest.raises(BadInputError, match=r"unknown sampling setting max_token, temprature \(did you mean max_tokens, temperature\?\); known: "):
        SamplingParams(max_token=32, temprature=0.5, top_k=3)
    params = SamplingParams(0.5, 0.8, max_tokens=7)  # positional fields, in their order, as before
    assert (params.temperature, params.top_p, params.max_tokens) == (0.5, 0.8, 7)
    assert copy.copy(params) == pickle.loads(pickle.dumps(params)) == params
    with pytest.raises(TypeError):
        SamplingParams(0.5, temperature=0.3)  # a setting given twice stays Python's error


class CharTokenizer:
    """One token per character; ids are code points."""

    def decode(self, ids, **_):
        return "".join(chr(i) for i in ids)


def feed(assembler, text):
    return [assembler.push(ord(ch)) for ch in text] + [assembler.flush()]


def test_stop_string_is_cut_and_never_shown():
    assembler = TextAssembler(CharTokenizer(), stops=("END",))
    pieces = feed(assembler, "hello ENDmore")
    assert "".join(pieces) == "hello "
    assert assembler.stopped and assembler.text == "hello "


def test_partial_stop_is_held_back_then_released():
    assembler = TextAssembler(CharTokenizer(), stops=("STOP",))
    shown = [assembler.push(ord(ch)) for ch in "a ST"]
    assert "".join(shown) == "a "  # "ST" might become STOP
    shown.append(assembler.push(ord("x")))
    assert "".join(shown) == "a STx" and not assembler.stopped


def test_what_is_held_back_is_the_longest_start_of_a_stop_string_the_text_ends_with():
    import random

    rng = random.Random(0)
    for _ in range(300):
        stops = tuple("".join(rng.choice("ab") for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 3)))
        text = "".join(rng.choice("abc") for _ in range(rng.randint(1, 30)))
        assembler = TextAssembler(CharTokenizer(), stops=stops)
        for i, char in enumerate(text):
            assembler.push(ord(char))
            if assembler.stopped:
                break
            seen = text[: i + 1]
            held = max((size for stop in stops for size in range(1, len(stop)) if seen.endswith(stop[:size])), default=0)
            assert assembler.shown == len(seen) - held, (stops, seen)


def test_earliest_of_several_stops_wins():
    assembler = TextAssembler(CharTokenizer(), stops=("##", "\n\n"))
    assert "".join(feed(assembler, "one\n\ntwo ## three")) == "one"


@pytest.mark.parametrize(
    "text, stops, shown",
    [
        ("Plan: ab then", ("b", "ab"), "Plan: "),
        ("Plan: ab then", ("ab", "b"), "Plan: "),
        ("Sure thing.\nUser: hi", ("User:", "\nUser:"), "Sure thing."),
        ("Sure thing.\nUser: hi", ("\nUser:", "User:"), "Sure thing."),
    ],
)
def test_overlapping_stops_cut_before_the_first_whichever_is_listed_first(text, stops, shown):
    assembler = TextAssembler(CharTokenizer(), stops=stops)
    assert "".join(feed(assembler, text)) == assembler.text == shown


@pytest.mark.parametrize("stops", [("b", "ab"), ("ab", "b")])
def test_a_kept_stop_string_is_the_first_whichever_is_listed_first(stops):
    assembler = TextAssembler(CharTokenizer(), stops=stops, keep_stops=True)
    assert "".join(feed(assembler, "Plan: ab then")) == assembler.text == "Plan: ab"


def test_the_repetition_penalty_counts_a_rows_own_tokens_not_its_left_padding():
    import torch

    params = SamplingParams(temperature=0, repetition_penalty=1.5)
    scores = torch.tensor([[1.0, -1.0, 4.0, 2.0, 3.0]])
    alone = build_processors(params)(torch.tensor([[1, 3]]), scores.clone())
    seen = torch.tensor([[2, 2, 1, 3], [4, 0, 1, 3]])  # row 0 left-padded with id 2 (an EOS as pad)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    batched = build_processors(params, prompt_mask=mask)(seen, scores.repeat(2, 1))
    assert batched[0].tolist() == alone[0].tolist()
    assert (alone[0, 1], alone[0, 2], alone[0, 4]) == (-1.5, 4.0, 3.0)  # ids 1 and 3 penalized, the pad id not
    assert batched[1].tolist() == build_processors(params)(seen[1:], scores.clone())[0].tolist()  # an unpadded row as before
    generated = torch.cat([seen, torch.tensor([[2], [2]])], dim=-1)  # once generated, a token counts
    assert build_processors(params, prompt_mask=mask)(generated, scores.repeat(2, 1))[0, 2] == 4.0 / 1.5


def test_a_whole_number_repetition_penalty_works():
    import torch

    assert build_processors(SamplingParams(temperature=0, repetition_penalty=2))(torch.tensor([[1]]), torch.tensor([[1.0, 2.0]])).tolist() == [[1.0, 1.0]]


def test_a_stop_string_that_is_a_control_token_stops_at_it(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assembler = TextAssembler(tokenizer, stops=("<|im_start|>",), special_ids=tokenizer.all_special_ids)
    ids = tokenizer("Bees make honey", add_special_tokens=False)["input_ids"] + [start] + tokenizer("user", add_special_tokens=False)["input_ids"]
    pieces = [assembler.push(token) for token in ids] + [assembler.flush()]
    assert "".join(pieces) == assembler.text == "Bees make honey" and assembler.stopped
    kept = TextAssembler(tokenizer, stops=("<|im_start|>",), special_ids=tokenizer.all_special_ids, keep_stops=True)
    assert "".join([kept.push(token) for token in ids] + [kept.flush()]) == kept.text == "Bees make honey<|im_start|>"
    other = TextAssembler(tokenizer, stops=("<|im_start|>",), special_ids=tokenizer.all_special_ids)
    assert "".join([other.push(token) for token in ids if token != start] + [other.flush()]) == "Bees make honeyuser"  # no control token, no stop


def test_a_stop_string_that_holds_a_control_token_and_text_stops_where_the_tokens_spell_it(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    start, end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])

    def words(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def written(ids, stops, keep_stops=False):
        assembler = TextAssembler(tokenizer, stops=stops, special_ids=tokenizer.all_special_ids, keep_stops=keep_stops)
        pieces = [assembler.push(token) for token in ids] + [assembler.flush()]
        assert "".join(pieces) == assembler.text
        return assembler.text, assembler.stopped

    ids = words("Bees make honey") + [end] + words("\nuser")
    assert written(ids, ("<|im_end|>\n",)) == ("Bees make honey", True)
    assert written(ids, ("<|im_end|>\n",), keep_stops=True) == ("Bees make honey<|im_end|>\n", True)
    assert written(ids, ("honey<|im_end|>",)) == ("Bees make ", True)  # text before the control token
    assert written(ids, ("\nuser", "<|im_end|>\n"), keep_stops=True) == ("Bees make honey<|im_end|>\n", True)  # the one that starts first
    assert written(words("Bees") + [start] + words(" END"), ("<|im_start|> END",)) == ("Bees", True)
    assert written([t for t in ids if t != end], ("<|im_end|>\n",)) == ("Bees make honey\nuser", False)  # no control token, no stop
    assert written(words("Bees") + [end] + words("user"), ("<|im_end|>\n",)) == ("Beesuser", False)  # another text after it


def test_a_calls_stop_strings_are_tokenized_once_for_all_its_rows(tiny_model_dir):
    from transformers import AutoTokenizer

    from aigc.engine.sampling import StopStrings

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    calls = []

    class Counting:
        def __call__(self, text, **kwargs):
            calls.append(text)
            return tokenizer(text, **kwargs)

        def __getattr__(self, name):
            return getattr(tokenizer, name)

    stops = StopStrings(Counting(), ("<|im_end|>\n", "bee"), tokenizer.all_special_ids)
    rows = [TextAssembler(tokenizer, stops) for _ in range(4)]
    assert calls == ["<|im_end|>\n", "bee"] and all(row.stop_strings is stops for row in rows)
    assert stops.controlled == ("<|im_end|>\n",) and stops.plain == ("bee",)
    with pytest.raises(TypeError, match="give special_ids to the StopStrings"):  # one set of control tokens, not two that could differ
        TextAssembler(tokenizer, stops, special_ids=[0])


def test_special_tokens_are_not_shown():
    assembler = TextAssembler(CharTokenizer(), special_ids=[ord("|")])
    assert "".join(feed(assembler, "a|b")) == "ab"


class ByteTokenizer:
    """One token per UTF-8 byte; a sequence cut short decodes to U+FFFD."""

    def decode(self, ids, **_):
        return bytes(ids).decode("utf-8", "replace")

    def convert_ids_to_tokens(self, token):
        return f"<0x{token:02X}>"  # as SentencePiece's byte fallback


def feed_bytes(assembler, text):
    return [assembler.push(byte) for byte in text.encode("utf-8")] + [assembler.flush()]


@pytest.mark.parametrize(
    "text, stops, shown",
    [
        ("a \ufffd", (), "a \ufffd"),  # a real U+FFFD ends the answer
        ("ok\ufffd", ("k\ufffdz",), "ok\ufffd"),  # with a start of a stop string held back before it
        ("ok \ufffd", ("\ufffd",), "ok "),  # a stop string still cuts what the end releases
    ],
)
def test_the_end_decodes_the_tokens_still_waiting_for_the_rest_of_a_character(text, stops, shown):
    assembler = TextAssembler(ByteTokenizer(), stops=stops)
    assert "".join(feed_bytes(assembler, text)) == assembler.text == shown
    assert assembler.stopped == (shown != text)


def test_a_character_cut_off_at_the_end_is_dropped_rather_than_shown_as_u_fffd():
    assembler = TextAssembler(ByteTokenizer())
    pieces = [assembler.push(byte) for byte in "x 🐝".encode("utf-8")[:-2]]
    assert "".join(pieces) == "x "  # its first bytes wait for the rest
    assert assembler.flush() == "" and assembler.text == "x "


@pytest.mark.parametrize(
    "data, shown",
    [
        (b"ok \xff\xf0\x9f", "ok \ufffd"),  # a byte that is no UTF-8 stays U+FFFD; the cut character goes
        (b"ok \xf0\x41", "ok \ufffdA"),  # a character's start followed by no continuation is no cut
        ("好".encode("utf-8") + "世".encode("utf-8")[:1], "好"),
    ],
)
def test_only_the_incomplete_last_character_is_dropped_at_the_end(data, shown):
    assembler = TextAssembler(ByteTokenizer())
    assert "".join([assembler.push(byte) for byte in data] + [assembler.flush()]) == assembler.text == shown


def test_a_byte_level_tokenizers_answer_cut_anywhere_ends_at_its_last_whole_character(tiny_model_dir):
    from transformers import AutoTokenizer

    from aigc.engine.token_bytes import TokenBytes

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer("東京 🐝 café", add_special_tokens=False)["input_ids"]
    spell = TokenBytes(tokenizer)
    for cut in range(1, len(ids) + 1):
        assembler = TextAssembler(tokenizer)
        shown = "".join([assembler.push(token) for token in ids[:cut]] + [assembler.flush()])
        data = b"".join(spell(token)[1] for token in ids[:cut])
        assert shown == assembler.text == data.decode("utf-8", "ignore") and "\ufffd" not in shown


@pytest.mark.parametrize("temperature", [1e-45, 5e-324])
def test_a_temperature_too_small_to_divide_the_logits_by_picks_greedily(temperature):
    import torch

    from aigc.engine.sampling import make_generator, pick_tokens

    params = SamplingParams(temperature=temperature, seed=1)
    scores = torch.tensor([[30.0, 31.0, -5.0]])
    assert params.greedy and pick_tokens(build_processors(params)(None, scores), params, make_generator(1, "cpu")).tolist() == [1]


def test_a_repetition_penalty_near_0_that_makes_a_seen_tokens_logit_infinite_samples_it():
    import torch

    from aigc.engine.sampling import make_generator, pick_tokens

    params = SamplingParams(temperature=0.7, repetition_penalty=1e-40, seed=1)
    scores = build_processors(params)(torch.tensor([[1]]), torch.tensor([[30.0, 31.0, -5.0]]))  # 31 / 1e-40 is inf
    assert pick_tokens(scores, params, make_generator(1, "cpu")).tolist() == [1]


def test_logit_bias_adds_to_the_given_tokens_and_names_an_id_out_of_the_vocabulary():
    import torch

    from aigc.engine.sampling import LogitBias
    from aigc.errors import OptionError

    params = SamplingParams(logit_bias={"1": -100, 3: "2.5"})  # ids as OpenAI's JSON sends them (text)
    assert params.logit_bias == {1: -100.0, 3: 2.5} and SamplingParams(logit_bias={}).logit_bias is None
    assert [type(step).__name__ for step in build_processors(params.replace(temperature=0))] == ["LogitBias"]
    scores = torch.zeros(2, 4)
    assert LogitBias(params.logit_bias)(torch.zeros(2, 1, dtype=torch.long), scores).tolist() == [[0, -100, 0, 2.5]] * 2
    with pytest.raises(OptionError, match=r"^logit_bias token id 9 is not in the model's vocabulary \(0-3\)"):
        LogitBias({9: 1.0})(torch.zeros(1, 1, dtype=torch.long), scores[:1])


@pytest.mark.parametrize("temperature", [0.3, 1.0, 5.0])
def test_top_p_keeps_the_tokens_transformers_keeps(temperature):
    import torch
    from transformers import TopPLogitsWarper

    from aigc.engine.sampling import TOP_P_CANDIDATES, TopP

    logits = torch.randn(4, 5000, generator=torch.Generator().manual_seed(3)) * 4 / temperature  # 5.0: flat, past the candidates
    logits[1, :2] = 30.0  # two tokens hold nearly all the mass
    for top_p in (0.05, 0.5, 0.9, 0.999, 1e-9):
        ours, theirs = TopP(top_p)(None, logits), TopPLogitsWarper(top_p)(None, logits)
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
        assert torch.equal(ours[~torch.isinf(ours)], logits[~torch.isinf(ours)])
    assert torch.isfinite(TopP(0.999)(None, logits / 100)).sum() > TOP_P_CANDIDATES  # a nucleus wider than the candidates is whole


def test_a_derived_seed_is_the_seed_for_the_first_part_and_one_of_its_own_below_the_bound_after():
    from aigc.engine.remote import REMOTE_SEED_BOUND
    from aigc.engine.sampling import SEED_BOUND, derived_seed

    assert derived_seed(None, 3, SEED_BOUND) is None and derived_seed(7, 0, REMOTE_SEED_BOUND) == 7
    for bound in (SEED_BOUND, REMOTE_SEED_BOUND):
        seeds = [derived_seed(7, part, bound) for part in range(1, 50)]
        assert len(set(seeds)) == 49 and all(0 <= seed < bound for seed in seeds)
        assert seeds == [derived_seed(7, part, bound) for part in range(1, 50)]  # the same each time
