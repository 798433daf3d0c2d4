"""Classify on the tiny random model: probabilities, label handling, examples and their cache."""

import contextlib
import json
import math
import re
import warnings

import pytest

from aigc import templates
from aigc.errors import AigcNote, AigcWarning, BadInputError, OptionError, UnknownLabelError
from aigc.evaluation import read_labelled
from aigc.generators.classify import CONTENT_FREE, ClassifyGenerator, logsumexp, mean_prior, parse_label
from aigc.generators.classify_examples import load_examples
from aigc.testing import FakeEngine


@pytest.fixture
def classify(tiny_engine):
    return ClassifyGenerator(engine=tiny_engine)


def test_probabilities_sum_to_one_and_the_label_is_the_likeliest(classify):
    result = classify("The match ended in a draw.", labels="sports,politics,science")
    assert set(result["scores"]) == {"sports", "politics", "science"}
    assert math.isclose(sum(result["scores"].values()), 1.0, rel_tol=1e-9)
    assert result["label"] == max(result["scores"], key=result["scores"].get)


def test_label_order_does_not_change_the_answer(classify):
    text = "Shares rose after the earnings report."
    first = classify(text, labels=["business", "sports", "world news"])
    second = classify(text, labels=["world news", "business", "sports"])
    assert first["label"] == second["label"]
    assert first["scores"] == pytest.approx(second["scores"], abs=1e-6)


def test_multi_token_labels_sharing_a_first_token_are_scored_in_full(classify, tiny_engine):
    labels = ["New York", "New Jersey", "日本語"]
    text = "A city by the sea."
    opts = classify.validate({"labels": labels, "calibrate": "off"})
    prompt = classify.prompt(text, opts)
    assert classify.verbalizers(opts) == [" New York", " new york", " New Jersey", " new jersey", " 日本語"]
    york, york_lower, jersey, jersey_lower, japanese = tiny_engine.score(prompt, classify.verbalizers(opts))
    expected = [logsumexp([york, york_lower]), logsumexp([jersey, jersey_lower]), japanese]
    assert len({tuple(tiny_engine.tokenizer(" " + l, add_special_tokens=False)["input_ids"][:1]) for l in labels[:2]}) == 1
    result = classify(text, labels=labels, calibrate="off", channel=False)  # the label scores alone
    total = math.log(sum(math.exp(v) for v in expected))
    assert [result["scores"][l] for l in labels] == pytest.approx([math.exp(v - total) for v in expected], abs=1e-5)


def test_a_label_that_begins_another_is_scored_with_the_line_break_that_ends_it(classify, tiny_engine):
    labels = ["apple", "apple pie", "phone"]
    opts = classify.validate({"labels": labels, "calibrate": "off"})
    assert classify.verbalizers(opts) == [" apple\n", " Apple\n", " apple pie\n", " Apple pie\n", " phone\n", " Phone\n"]  # else P(apple) >= P(apple pie), always
    assert classify.verbalizers(classify.validate({"labels": "Sci/Tech,World"})) == [" Sci/Tech", " sci/tech", " Sci", " sci", " Tech", " tech", " World", " world"]  # a label's own parts: no change
    text = "I baked an apple pie."
    scored = tiny_engine.score(classify.prompt(text, opts), classify.verbalizers(opts))
    expected = [logsumexp(scored[i : i + 2]) for i in range(0, 6, 2)]  # each label as written and capitalised
    result = classify(text, labels=labels, calibrate="off", channel=False)  # the label scores alone
    total = math.log(sum(math.exp(v) for v in expected))
    assert [result["scores"][l] for l in labels] == pytest.approx([math.exp(v - total) for v in expected], abs=1e-5)


def test_the_same_input_gives_the_same_scores(classify):
    runs = [classify("Rain is expected tomorrow.", labels="weather,sports") for _ in range(2)]
    assert runs[0] == runs[1]


def test_aliases_and_split_names_are_scored_for_a_label():
    assert parse_label("Sci/Tech=science|technology").verbalizers == ("Sci/Tech", "science", "technology", "Sci", "Tech")
    assert parse_label(" positive ").verbalizers == ("positive",)


def test_a_part_of_one_letter_is_not_scored_for_its_label():
    assert parse_label("N/A").verbalizers == ("N/A",)  # " A", an article, made N/A the label of most reviews
    assert parse_label("R&D").verbalizers == ("R&D",)
    assert parse_label("AC/DC").verbalizers == ("AC/DC", "AC", "DC") and parse_label("Arts & Culture").verbalizers == ("Arts & Culture", "Arts", "Culture")
    assert parse_label("文/理").verbalizers == ("文/理", "文", "理")  # a Chinese character is a word


def test_the_kind_of_text_names_each_text_and_demonstration_in_the_prompt(classify, tiny_engine):
    opts = classify.validate({"labels": "negative,positive", "aspect": "sentiment", "kind": "movie review"})
    shown = [{"text": "A delight.", "label": "positive"}]
    question = "The sentiment of this movie review is"
    assert classify.prompt("Dull.", opts, shown) == f'Movie review: "A delight."\n{question} positive\n\nMovie review: "Dull."\n{question}'
    assert classify.prompt("Dull.", classify.validate({"labels": "negative,positive"})) == 'Categories: negative, positive\n\n"Dull."\nThe category of this text is'
    assert classify.premise(opts) == question and classify.premise(opts, shown) == f'Movie review: "A delight."\n{question} positive\n\n{question}'
    prior = classify.content_free(opts)  # measured on the content-free inputs named the same way, and on the premise
    scores, _ = classify.score_texts(list(CONTENT_FREE), opts)
    premise = classify.label_scores(tiny_engine.score(question, classify.verbalizers(opts)), opts)
    assert prior == pytest.approx(mean_prior(scores + [premise]))
    assert prior != pytest.approx(classify.content_free(classify.validate({"labels": "negative,positive", "aspect": "sentiment"})))


def test_calibration_divides_out_the_content_free_prior(classify):
    on = classify("Something happened.", labels="alpha,beta", calibrate="content-free")
    off = classify("Something happened.", labels="alpha,beta", calibrate="off")
    assert on["calibration"] == "content-free" and off["calibration"] == "off"
    assert on["scores"] != pytest.approx(off["scores"])


def test_batch_calibration_evens_out_the_mean_prediction(classify):
    texts = ["Rain today.", "Sunny and warm.", "A goal in extra time.", "Snow in the hills.", "The final whistle."]
    results = classify.classify_many(texts, labels="weather,sports", calibrate="batch")
    assert all(r["calibration"] == "batch" for r in results)
    mean = sum(r["scores"]["weather"] for r in results) / len(results)
    raw = classify.classify_many(texts, labels="weather,sports", calibrate="off")
    assert abs(mean - 0.5) <= abs(sum(r["scores"]["weather"] for r in raw) / len(raw) - 0.5) + 1e-9
    with pytest.raises(BadInputError, match=r"so it needs several texts \(1 given\); use content-free for one text$"):
        classify("Rain today.", labels="weather,sports", calibrate="batch")


def test_multi_label_scores_each_label_against_the_likeliest(classify):
    result = classify("Goals and elections.", labels="sports,politics,cooking", multi_label=True, threshold=0.3)
    single = classify("Goals and elections.", labels="sports,politics,cooking", channel=False)  # multi-label scores labels alone
    assert set(result["scores"]) == {"sports", "politics", "cooking"}
    top = max(single["scores"].values())
    assert result["scores"] == pytest.approx({k: v / top for k, v in single["scores"].items()}, abs=1e-5)
    assert result["labels"] == sorted((l for l in ("sports", "politics", "cooking") if result["scores"][l] >= 0.3), key=lambda l: -result["scores"][l])
    only_top = classify("Goals and elections.", labels="sports,politics,cooking", multi_label=True, threshold=1)
    assert only_top["labels"] == [single["label"]]  # 1: only the likeliest (its score is 1)
    assert single["label"] in result["labels"]


def test_multi_label_chosen_labels_are_listed_likeliest_first_as_their_scores_are(classify):
    from aigc.cli.classify import describe, json_record

    opts = classify.validate({"labels": "account,billing,bug", "multi_label": True, "threshold": 0.1})
    result = classify.postprocess({"logits": [-3.0, -1.0, 0.0], "method": "zero-shot", "calibration": "content-free"}, opts)
    assert result["labels"] == ["bug", "billing"]  # not in --labels order
    assert describe(result) == "bug, billing\tbug 1.000  billing 0.368  account 0.050"
    record = json_record(result)
    assert list(record) == ["labels", "scores", "method", "calibration"] and list(record["scores"]) == ["account", "billing", "bug"]  # the documented shape


def test_multi_label_examples_give_each_label_its_own_probability(classify):
    examples = [(f"apple {i}", "fruit") for i in range(3)] + [(f"engine {i}", "machine") for i in range(3)]
    examples += [(f"apple engine {i}", "fruit,machine") for i in range(3)]
    result = classify("apple engine 1", examples=examples, multi_label=True, method="probe")
    assert result["method"] == "probe" and set(result["scores"]) == {"fruit", "machine"}
    assert all(0 < p < 1 for p in result["scores"].values())
    assert result["labels"] == sorted((l for l in ("fruit", "machine") if result["scores"][l] >= 0.5), key=lambda l: -result["scores"][l])


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"labels": "only"}, BadInputError, "labels must name at least two labels"),
        ({"labels": "a,a"}, BadInputError, "given twice"),
        ({"labels": "Billing,bug,billing"}, BadInputError, "^label billing is given twice, as 'Billing' and 'billing', which differ only in case"),
        ({"labels": ["Tech", "TECH=technology"]}, BadInputError, "^label TECH is given twice, as 'Tech' and 'TECH'"),
        ({"labels": "a=,b"}, BadInputError, "^label 'a=' has an empty alias; write labels as name or name=alias\\|alias$"),
        ({"labels": "a=x||y,b"}, BadInputError, "^label 'a=x\\|\\|y' has an empty alias"),
        ({"labels": "good\nbad,neutral"}, BadInputError, "label 'good\\\\nbad' holds a line break"),
        ({"labels": "a,b", "threshold": 1.5}, OptionError, "^threshold must"),
        ({"labels": "a,b", "method": "magic"}, OptionError, "^method must"),
        ({"labels": "a,b", "method": "probe"}, BadInputError, "^method=probe needs examples$"),
        ({"labels": "a,b", "calibrate": "examples"}, BadInputError, "^calibrate=examples needs examples$"),
        ({"labels": "a,b", "calibrate": "on"}, OptionError, "^calibrate must"),
        ({"labels": "a,b", "examples": [("text", "c")]}, UnknownLabelError, "'c'"),
        ({"examples": [("text", "c"), ("more", "c")]}, BadInputError, "only the label 'c'"),
        ({"labels": "a,b", "parsed": "x"}, BadInputError, "parsed: classify has no such option"),
        ({"labels": "a,b", "examples": [("x", "a", 1)]}, BadInputError, r"example 0 must be a \(text, label\) pair"),
        ({"labels": "a,b", "examples": 5}, BadInputError, "examples must be a TSV file or a list"),
        ({"labels": "a,b", "multi_label": True, "examples": [("x", "a"), ("y", "b")], "calibrate": "examples"}, BadInputError, "not examples"),
        ({"labels": "a,b", "method": "demos", "examples": [("x", "a"), ("y", "b")], "calibrate": "examples"}, BadInputError, "not examples"),
        ({"labels": "a,b", "multi_label": True, "calibrate": "batch"}, BadInputError, "^calibrate=batch is for one label per text; with multi_label use content-free or off$"),
        ({"labels": "a,b", "examples": [("x", "a"), ("y", "b")], "calibrate": "batch"}, BadInputError, "^calibrate=batch is for zero-shot classification; with examples use auto or examples$"),
    ],
)
def test_bad_options_say_what_to_do(classify, options, error, words):
    with pytest.raises(error, match=words):
        classify("Some text.", **options)


def test_examples_file_is_read_with_its_header_and_bad_lines_are_located(tmp_path):
    good = tmp_path / "ex.tsv"
    good.write_text("text\tlabel\nI liked it\tpositive\nAwful, both\tnegative,awful\n")
    assert load_examples(good) == [("I liked it", ["positive"]), ("Awful, both", ["negative", "awful"])]
    bad = tmp_path / "bad.tsv"
    bad.write_text("fine\tpositive\nno tab here\n")
    with pytest.raises(BadInputError, match="bad.tsv:2"):
        load_examples(bad)
    few = tmp_path / "few.tsv"
    few.write_text("Bullion hit a record high\tgold\nCrude fell again\toil\n")  # "gold" names no column here
    assert len(load_examples(few)) == 2
    quoted = tmp_path / "quoted.tsv"
    quoted.write_text('"She said ""great"""\tpositive\n')  # as CSV writers quote a TSV cell
    assert load_examples(quoted) == [('She said "great"', ["positive"])]
    named = tmp_path / "named.tsv"
    named.write_text("review\tsentiment\nGreat\tpositive\nbad film\tnegative\n")  # another header; a one-word text
    assert load_examples(named) == [("Great", ["positive"]), ("bad film", ["negative"])]
    wide = tmp_path / "wide.tsv"
    wide.write_text("id\ttext\tlabel\n1\tgood\tpositive\n")
    with pytest.raises(BadInputError, match="wide.tsv:1: 3 columns"):
        load_examples(wide)


def test_unlabelled_takes_an_empty_label_as_no_label_in_pairs_as_in_files(tmp_path):
    pairs = [("nice weather", ""), ("goal", "sports"), ("vote", [])]
    assert load_examples(pairs, unlabelled=True) == [("nice weather", []), ("goal", ["sports"]), ("vote", [])]
    (tmp_path / "ex.tsv").write_text("nice weather\t\ngoal\tsports\n")
    assert load_examples(tmp_path / "ex.tsv", unlabelled=True) == [("nice weather", []), ("goal", ["sports"])]
    with pytest.raises(BadInputError, match="example 0: the label is empty"):
        load_examples(pairs)


@pytest.mark.parametrize("header", ["label\ttext", "Sentiment\treview"])
def test_a_header_naming_the_label_column_first_reads_each_line_label_first(tmp_path, header):
    path = tmp_path / "ex.tsv"
    path.write_text(f"{header}\npositive\tgreat movie\nnegative\tawful, long film\n")
    assert load_examples(path) == [("great movie", ["positive"]), ("awful, long film", ["negative"])]
    path.write_text(f"{header}\n")
    with pytest.raises(BadInputError, match="ex.tsv holds no examples"):
        load_examples(path)
    path.write_text(f"{header}\npositive\tgreat\tmovie\n")
    with pytest.raises(BadInputError, match="ex.tsv:2: 3 columns"):
        load_examples(path)


def test_a_headerless_label_first_file_is_read_label_first_as_examples_and_as_data(tmp_path):
    path = tmp_path / "ex.tsv"
    rows = [("positive", "the movie as a whole"), ("positive", "this orange has some juice ,"), ("negative", "a listless climb down, the social ladder"), ("negative", "awful and long")]
    path.write_text("".join(f"{label}\t{text}\n" for label, text in rows))
    want = [(text, label) for label, text in rows]
    said = rf"read {re.escape(str(path))} as label<TAB>text \(its first column holds the labels\)"  # a note, as nothing in the file says so
    with pytest.warns(AigcNote, match=said):
        assert load_examples(path) == [(text, [label]) for text, label in want]  # told by its columns' values
    with pytest.warns(AigcNote, match=said):
        assert read_labelled(path) == want  # not "the text has several labels" from the comma
    path.write_text("".join(f"{label}\t{text}\n" for label, text in rows[1:3]))  # two lines: told by the labels only
    with pytest.warns(AigcNote, match=said):
        assert read_labelled(path, labels=["positive", "negative"]) == want[1:3]
    with pytest.warns(AigcNote, match=said):
        assert load_examples(path, labels=["negative", "positive"]) == [(text, [label]) for text, label in want[1:3]]



def test_a_note_is_no_problem_that_warnings_made_errors_stop_on(tmp_path):
    path = tmp_path / "ex.tsv"
    path.write_text("pos\tI loved this film so much\nneg\tawful boring plot and acting\npos\twonderful cast, great story\nneg\tterrible waste of my time\n")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", AigcNote)
        warnings.simplefilter("error", AigcWarning)  # the README's strict mode, set last: checked first
        assert load_examples(path)[0] == ("I loved this film so much", ["pos"])
    assert [w.category for w in seen] == [AigcNote] and "as label<TAB>text" in str(seen[0].message)


def test_a_text_first_file_and_a_file_too_small_to_tell_are_read_text_first(tmp_path):
    path = tmp_path / "ex.tsv"
    path.write_text("great movie, really\tpositive\ngood fun\tpositive\nawful film\tnegative\nslow and long\tnegative\n")
    assert load_examples(path)[0] == ("great movie, really", ["positive"])
    assert read_labelled(path, labels=["positive", "negative"])[0] == ("great movie, really", "positive")
    path.write_text("positive\tthe movie as a whole\nnegative\ta listless climb\n")  # no labels given: cannot tell
    assert load_examples(path) == [("positive", ["the movie as a whole"]), ("negative", ["a listless climb"])]


@pytest.mark.parametrize("header", ["x\ty", "sms\tkind", "Review Text\tRating"])
def test_a_header_of_any_column_names_is_skipped_when_the_labels_are_given(tmp_path, header):
    path = tmp_path / "ex.tsv"
    path.write_text(f"{header}\ngreat movie\tpositive\nawful film\tnegative\n")
    told = pytest.warns(AigcWarning, match="is taken as column names") if header != "x\ty" else contextlib.nullcontext()  # x, y: known names
    with told:
        assert load_examples(path, labels=["positive", "negative"]) == [("great movie", ["positive"]), ("awful film", ["negative"])]
        opts = ClassifyGenerator().validate({"labels": "positive,negative", "examples": str(path)})  # not refused for an unknown label
        assert opts.examples == [("great movie", ["positive"]), ("awful film", ["negative"])]
        assert read_labelled(path, labels=["positive", "negative"]) == [("great movie", "positive"), ("awful film", "negative")]


def test_a_first_line_skipped_only_because_its_label_is_none_of_the_labels_is_warned_of(tmp_path):
    path = tmp_path / "ex.tsv"
    path.write_text("ok\tneutral\ngreat movie\tpositive\nawful film\tnegative\n")  # a forgotten label, or a header
    with pytest.warns(AigcWarning, match=r"ex.tsv:1: ok<TAB>neutral is taken as column names, as 'neutral' is none of the labels; if it is an example, list its label"):
        assert len(load_examples(path, labels=["positive", "negative"])) == 2
    path.write_text("text\tlabel\ngreat movie\tpositive\n")  # known column names: no warning
    assert load_examples(path, labels=["positive"]) == [("great movie", ["positive"])]


def test_labelled_data_whose_rows_are_all_bad_json_says_so_not_that_the_column_is_missing(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a" "label": "x"}\n{"text": "b" "label": "y"}\n')  # no row parses, so none has a column
    with pytest.raises(BadInputError, match=r"data.jsonl: row 1: bad JSON: Expecting ',' delimiter"):
        read_labelled(path)


def test_a_dotted_label_field_reads_a_nested_label_as_a_dotted_field_reads_a_nested_text(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"doc": {"body": "great movie"}, "gold": {"label": "positive"}}\n{"doc": {"body": "awful film"}, "gold": {"label": "negative"}, "gold.label": "a key of its own wins"}\n')
    assert read_labelled(path, "doc.body", "gold.label") == [("great movie", "positive"), ("awful film", "a key of its own wins")]


def test_without_labels_only_known_column_names_make_a_header(tmp_path):
    path = tmp_path / "ex.tsv"
    path.write_text("x\ty\ngreat movie\tpositive\nawful film\tnegative\n")
    assert load_examples(path) == [("great movie", ["positive"]), ("awful film", ["negative"])]
    path.write_text("spam\tjunk\nhello there\tham\nhi\tham\n")  # a first example like a header: kept
    assert load_examples(path)[0] == ("spam", ["junk"])


@pytest.mark.parametrize("first", ["Great\tpositive", "Great\tpostive", "Brilliant, really\tnope", "2021\tnope"])
def test_a_first_line_of_a_label_or_a_misspelt_one_or_no_column_names_is_an_example_with_the_labels_given(tmp_path, first):
    path = tmp_path / "ex.tsv"
    path.write_text(f"{first}\nawful film\tnegative\n")
    assert len(load_examples(path, labels=["positive", "negative"])) == 2
    if "positive" not in first:
        with pytest.raises(UnknownLabelError, match="the examples use label"):  # refused, not skipped as a header
            ClassifyGenerator().validate({"labels": "positive,negative", "examples": str(path)})


def test_an_empty_examples_file_asks_for_a_tsv_file_not_a_document(tmp_path):
    path = tmp_path / "ex.tsv"
    path.write_text("\n")
    with pytest.raises(BadInputError) as failed:
        load_examples(path)
    assert str(failed.value) == f"{path} is empty; give a text<TAB>label TSV file"


@pytest.mark.parametrize(
    "line, message",
    [
        ("\tpositive", "ex.tsv:2: the text is empty; give text<TAB>label"),
        ('""\tpositive', "ex.tsv:2: the text is empty; give text<TAB>label"),
        ("Awful\t", "ex.tsv:2: the label is empty; give text<TAB>label"),
        ("Awful\t , ", "ex.tsv:2: the label is empty; give text<TAB>label"),
        ("no tab", "ex.tsv:2: expected text<TAB>label"),
    ],
)
def test_an_empty_text_or_label_cell_is_named_as_such_at_its_line(tmp_path, line, message):
    path = tmp_path / "ex.tsv"
    path.write_text(f"Great\tpositive\n{line}\nBad\tnegative\n")
    with pytest.raises(BadInputError) as failed:
        load_examples(path)
    assert str(failed.value) == f"{tmp_path / message}"


def test_a_json_file_is_said_to_be_read_as_tsv(tmp_path):
    (tmp_path / "d.json").write_text('[{"text": "Great", "label": "positive"}]\n')
    with pytest.raises(BadInputError) as failed:
        load_examples(tmp_path / "d.json", kind="data file")
    assert str(failed.value) == f"{tmp_path / 'd.json'}:1: expected text<TAB>label; the file is read as TSV (a tab between each text and its label), not as JSON (.jsonl: one object a line)"


def test_csv_and_jsonl_examples_are_read_by_their_columns(tmp_path):
    (tmp_path / "ex.csv").write_text('id,review,sentiment\n1,"Great, really",positive\n2,Awful,negative\n')
    assert load_examples(tmp_path / "ex.csv") == [("Great, really", ["positive"]), ("Awful", ["negative"])]
    (tmp_path / "ex.jsonl").write_text('{"text": "Goals and a stadium", "label": ["sports", "money"]}\n{"text": "Rates rise", "label": "money"}\n{"text": "Cup final", "label": 3}\n')
    assert load_examples(tmp_path / "ex.jsonl") == [("Goals and a stadium", ["sports", "money"]), ("Rates rise", ["money"]), ("Cup final", ["3"])]
    with pytest.raises(BadInputError, match=r"row 1: the text has several labels \(sports, money\); give one"):
        load_examples(tmp_path / "ex.jsonl", one_label="give one")
    for body, message in [
        ('{"blurb": "Great", "label": "positive"}\n', "no row has the column 'text'; its columns: 'blurb', 'label'; name it 'text'"),
        ('{"text": "Great", "label": "positive"}\n{"text": " ", "label": "negative"}\n', "row 2: the text is empty; give every row its text and label"),
        ('{"text": "Great", "label": {"name": "positive"}}\n', "row 1: the label ('label') must be a string, a whole number or a list of strings, not an object"),
    ]:
        (tmp_path / "bad.jsonl").write_text(body)
        with pytest.raises(BadInputError) as failed:
            load_examples(tmp_path / "bad.jsonl")
        assert str(failed.value).endswith(message), str(failed.value)


def test_an_example_of_several_labels_without_multi_label_is_named_at_its_line_before_any_model_loads(tmp_path):
    path = tmp_path / "ex.tsv"
    path.write_text("Great\tpositive\nAwful, both\tnegative,awful\n")
    with pytest.raises(BadInputError, match=rf"^{path}:2: the text has several labels \(negative, awful\); give one label per example, or use multi_label \(a comma in a label cell separates labels\)$"):
        ClassifyGenerator(engine=None).validate({"examples": str(path)})
    with pytest.raises(BadInputError, match=r"^example 1: the text has several labels \(b, c\)"):
        ClassifyGenerator(engine=None).validate({"examples": [("x", "a"), ("y", ["b", "c"])]})
    assert ClassifyGenerator(engine=None).validate({"examples": str(path), "multi_label": True}).examples[1] == ("Awful, both", ["negative", "awful"])


EXAMPLES = [(f"{word} {word} {word} number {i}", label) for i in range(6) for word, label in (("apple", "fruit"), ("engine", "machine"))]


def test_labels_come_from_the_examples_and_the_probe_learns_them(classify):
    result = classify("apple apple apple number 2", examples=EXAMPLES, method="probe")
    assert set(result["scores"]) == {"fruit", "machine"}
    assert result["method"] == "probe"
    assert result["label"] == "fruit"
    assert classify("engine engine engine number 4", examples=EXAMPLES, method="probe")["label"] == "machine"


@pytest.mark.parametrize(("options", "stage", "steps"), [({}, "fitting the probe (cross-validation)", 11), ({"multi_label": True, "method": "probe"}, "fitting a probe per label", 2)])
def test_fitting_the_examples_reports_progress_after_embedding_them(classify, monkeypatch, tmp_path, options, stage, steps):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    reported = []
    classify.progress = lambda done, total, what: reported.append((what, done, total))
    classify("apple apple", examples=EXAMPLES, **options)
    fitting = [(done, total) for what, done, total in reported if what == stage]
    assert reported.index((stage, *fitting[0])) > reported.index(("embedding the examples", 12, 12))
    assert fitting[-1] == (steps, steps) and [done for done, _ in fitting] == sorted(done for done, _ in fitting)


def test_the_fitted_examples_are_cached_and_reused(tiny_engine, monkeypatch, tmp_path):
    from aigc.generators import classify_examples

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    first = ClassifyGenerator(engine=tiny_engine)("apple apple", examples=EXAMPLES)
    assert len(list((tmp_path / "classify").glob("*.pt"))) == 1
    monkeypatch.setattr(classify_examples, "_fit", lambda *a: pytest.fail("the examples were fitted again"))
    again = ClassifyGenerator(engine=tiny_engine)("apple apple", examples=EXAMPLES)
    assert again == first
    changed = EXAMPLES + [("one more apple", "fruit")]
    with pytest.raises(pytest.fail.Exception, match="fitted again"):
        ClassifyGenerator(engine=tiny_engine)("apple apple", examples=changed)
    monkeypatch.setattr(tiny_engine, "variant", "cpu float32 int4")  # the same model's weights loaded otherwise
    with pytest.raises(pytest.fail.Exception, match="fitted again"):
        ClassifyGenerator(engine=tiny_engine)("apple apple", examples=EXAMPLES)


def test_a_fit_the_cache_cannot_keep_is_used_and_warned_of(tiny_engine, monkeypatch, tmp_path):
    from aigc.errors import AigcWarning

    (tmp_path / "cache").write_text("")  # no directory can be made in it, as in a read-only cache
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.warns(AigcWarning, match=r"cannot keep the fit of the examples in .*cache/classify .*fitted again on each run; point AIGC_CACHE_DIR"):
        result = ClassifyGenerator(engine=tiny_engine)("apple apple", examples=EXAMPLES)
    assert set(result["scores"]) == {"fruit", "machine"}


def test_a_model_named_in_no_utf8_has_its_fit_cached(tiny_engine, monkeypatch, tmp_path):
    import os

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiny_engine, "name", os.fsdecode(b"/models/caf\xe9.gguf"))  # a model given by such a path, as Python reads argv
    result = ClassifyGenerator(engine=tiny_engine)("apple apple", examples=EXAMPLES)
    assert set(result["scores"]) == {"fruit", "machine"}
    assert len(list((tmp_path / "classify").glob("*.pt"))) == 1


def test_the_fit_cache_is_private_and_keeps_only_the_fits_used_last(tiny_engine, monkeypatch, tmp_path):
    import os

    from aigc.generators import classify, classify_examples

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(classify_examples, "FITS_ON_DISK", 2)
    monkeypatch.setattr(classify, "FITS_IN_MEMORY", 2)
    generator = ClassifyGenerator(engine=tiny_engine)
    sets = [EXAMPLES + [(f"apple number {i}", "fruit")] for i in range(3)]
    for number, examples in enumerate(sets):  # as a server's clients send theirs
        generator("apple apple", examples=examples)
        if number == 0:
            os.utime(next(iter(generator._fitted)), (0, 0))  # used long ago
    files = list((tmp_path / "classify").glob("*"))
    assert len([f for f in files if f.suffix == ".pt"]) == 2 and len(generator._fitted) == 2  # the first set is gone from both
    assert all(file.name.endswith((".pt", ".prior.json")) and file.stat().st_mode & 0o777 == 0o600 for file in files)
    monkeypatch.setattr(classify_examples, "_fit", lambda *a: pytest.fail("the examples were fitted again"))
    generator("apple apple", examples=sets[2])  # kept in memory
    ClassifyGenerator(engine=tiny_engine)("apple apple", examples=sets[1])  # kept on disk
    with pytest.raises(pytest.fail.Exception, match="fitted again"):
        generator("apple apple", examples=sets[0])


def test_demonstrations_are_balanced_and_most_similar_last(classify, tiny_engine):
    from aigc.generators.classify_examples import DEMOS_PER_LABEL, demonstrations

    opts = classify.validate({"examples": EXAMPLES, "method": "demos"})
    model = classify.example_model(opts)
    assert model.method == "demos"
    _, (embedding,) = classify.score_texts(["apple apple apple number 0"], opts, embed=True)
    shown = demonstrations(model, embedding)
    assert len(shown) == 2 * DEMOS_PER_LABEL
    assert sorted(d["label"] for d in shown) == ["fruit"] * DEMOS_PER_LABEL + ["machine"] * DEMOS_PER_LABEL
    assert shown[-1]["text"] == "apple apple apple number 0"
    result = classify("apple apple apple number 0", examples=EXAMPLES, method="demos")
    assert result["method"] == "demos" and math.isclose(sum(result["scores"].values()), 1.0)
    assert result["calibration"] == "content-free"  # the prior measured with the demonstrations shown


def test_the_label_priors_measured_with_demonstrations_are_kept_for_the_last_texts_only(classify, monkeypatch):
    from aigc.generators import classify as module

    monkeypatch.setattr(module, "PRIORS_IN_MEMORY", 3)
    texts = [f"{word} number {i}" for i in range(4) for word in ("apple", "engine", "apple engine")]
    first = classify.classify_many(texts, examples=EXAMPLES, method="demos")
    assert len(classify._content_free) == 3  # one for each set of demonstrations shown: a long batch or a server would keep them all
    assert classify.classify_many(texts, examples=EXAMPLES, method="demos") == first  # those dropped are measured again, alike


@pytest.mark.parametrize("multi_label", [False, True])
def test_eval_of_no_rows_is_refused_with_one_label_per_text_or_many(multi_label):
    from aigc.evaluation import evaluate_classify
    from aigc.generators.base import get_generator

    with pytest.raises(BadInputError, match=r"^there are no labelled texts to evaluate; give one \(text, label\) row at least$"):
        evaluate_classify(get_generator("classify", engine=FakeEngine()), [], {"labels": "a,b", "multi_label": multi_label})


def test_eval_takes_predictions_by_keyword_only_so_an_old_call_with_a_progress_callback_fails_loudly(classify):
    from aigc.evaluation import evaluate_classify

    with pytest.raises(TypeError, match="positional"):  # once (generator, rows, options, progress, predictions)
        evaluate_classify(classify, [("text", "a")], {"labels": "a,b"}, lambda done, total: None)


def test_eval_with_batch_calibration_takes_one_prior_over_all_rows(classify):
    from aigc.evaluation import evaluate_classify

    rows = [(f"text number {i}", "ab"[i % 2]) for i in range(33)]  # one more than an eval chunk
    report = evaluate_classify(classify, rows, {"labels": "a,b", "calibrate": "batch"})
    assert report.examples == 33 and report.calibration == "batch"
    whole = classify.classify_many([t for t, _ in rows], labels="a,b", calibrate="batch")
    predicted = [[sum(1 for (_, truth), r in zip(rows, whole) if truth == t and r["label"] == p) for p in "ab"] for t in "ab"]
    assert report.confusion == predicted


def test_eval_reports_each_labels_precision_recall_f1_and_support_and_the_weighted_f1(classify, capsys):
    from aigc.cli.classify import print_report
    from aigc.evaluation import evaluate_classify, per_label

    # a: 2 true, 3 predicted, 2 right; b: 2 true, 1 predicted, 1 right (as classification_report counts them)
    assert per_label([[2, 0], [1, 1]]) == {"precision": [2 / 3, 1.0], "recall": [1.0, 0.5], "f1": [0.8, 2 / 3], "support": [2, 2]}
    assert per_label([[0, 1], [0, 3]])["precision"][0] == 0.0  # never predicted: 0, not a division by zero
    rows = [(f"text number {i}", "ab"[i % 3 == 0]) for i in range(7)]  # 3 of b, 4 of a
    report = evaluate_classify(classify, rows, {"labels": "a,b"})
    found = per_label(report.confusion)
    assert report.per_label_support == {"a": 4, "b": 3} and report.per_label_recall == dict(zip("ab", found["recall"]))
    assert report.per_label_precision == dict(zip("ab", found["precision"])) and report.per_label_f1 == dict(zip("ab", found["f1"]))
    assert report.weighted_f1 == pytest.approx((4 * found["f1"][0] + 3 * found["f1"][1]) / 7)
    assert {"weighted_f1", "per_label_precision", "per_label_recall", "per_label_support", "per_label_f1", "macro_f1"} <= set(report.as_dict())
    print_report(report)
    table = capsys.readouterr().out
    assert all(heading in table for heading in ("precision", "recall", "F1", "support", "weighted-F1"))
    assert f"{found['recall'][0]:.3f}" in table and f"{found['precision'][1]:.3f}" in table


def test_eval_says_how_many_examples_it_read_and_why_auto_kept_zero_shot(classify, capsys):
    from aigc.cli.classify import print_report
    from aigc.evaluation import evaluate_classify
    from aigc.generators.classify_examples import FEWEST_TO_SWITCH, ExampleModel, kept_zero_shot

    rows = [("apple apple number 9", "fruit"), ("engine engine number 9", "machine")]
    few = EXAMPLES[: FEWEST_TO_SWITCH - 2]
    report = evaluate_classify(classify, rows, {"examples": few})
    assert report.examples == 2 and report.examples_read == len(few) and report.method == "zero-shot"
    assert report.method_reason == f"fewer than {FEWEST_TO_SWITCH} examples, too few to show a probe does better"
    assert evaluate_classify(classify, rows, {"labels": "fruit,machine"}).as_dict()["examples_read"] == 0  # the key is always there
    assert evaluate_classify(classify, rows, {"examples": few, "method": "zero-shot"}).method_reason == ""  # asked for, not picked
    print_report(report)
    assert f"; {len(few)} --examples read; auto kept zero-shot: fewer than" in capsys.readouterr().out.splitlines()[0]
    opts = classify.validate({"examples": EXAMPLES})
    model = ExampleModel("zero-shot", "content-free", [0.0, 0.0], ["fruit", "machine"], [t for t, _ in EXAMPLES], [[0]] * len(EXAMPLES), None)
    assert kept_zero_shot(model, opts) == "the model gives no hidden states to fit a probe on"
    model.embeddings, model.cv = [[0.0]] * len(EXAMPLES), {"zero-shot, calibration content-free": 0.75, "probe(l2=0.1)": 0.8, "probe(l2=1.0)": 0.7}
    model.discordant = (3, 2)
    assert kept_zero_shot(model, opts) == (
        "cross-validated on the examples, a probe (0.800 accuracy) got 3 right that zero-shot (0.750) got wrong "
        "and 2 wrong that it got right, which could be luck (a one-sided sign test at 5%)"
    )
    model.method = "probe"
    assert kept_zero_shot(model, opts) == ""


def test_eval_text_report_counts_texts_not_examples(capsys):
    from aigc.cli.classify import print_report
    from aigc.evaluation import ClassifyReport

    report = ClassifyReport(4, 0.75, 0.7, ["a", "b"], [[2, 0], [1, 1]], {"a": 0.8, "b": 0.6}, 12.5, "zero-shot", "content-free", 0.7, {"a": 0.67, "b": 1.0}, {"a": 1.0, "b": 0.5}, {"a": 2, "b": 2})
    print_report(report)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("4 texts  accuracy 0.750  macro-F1 0.700  weighted-F1 0.700  12.5 texts/s") and "example" not in first
    assert set(report.as_dict()) >= {"examples", "examples_per_second"}  # --json keeps its keys


def test_classify_many_takes_a_list(classify):
    assert classify.classify_many([], labels="a,b") == []
    with pytest.raises(BadInputError, match="list of texts"):
        classify.classify_many("one text", labels="a,b")


def test_classify_many_matches_one_at_a_time(classify):
    texts = ["Short.", "A much longer text about the weather and the sea and the wind.", "Mid length text."]
    batched = classify.classify_many(texts, labels="weather,sports")
    for text, result in zip(texts, batched):
        assert result["scores"] == pytest.approx(classify(text, labels="weather,sports")["scores"], abs=1e-4)


def test_an_edited_template_has_its_label_prior_measured_again(tmp_path, tiny_engine):
    path = tmp_path / "my-classify.j2"
    path.write_text('"{{ text }}"\nSentiment:')
    generator = ClassifyGenerator(engine=tiny_engine)
    generator("great", labels="negative,positive", template=str(path))
    generator("fine", labels="negative,positive", template=str(path))
    assert len(generator._content_free) == 1
    path.write_text('Review: "{{ text }}"\nThe review is')
    generator("great", labels="negative,positive", template=str(path))
    assert len(generator._content_free) == 2


def test_labels_taken_from_examples_or_data_are_names_as_written():
    from aigc.generators.classify import ClassifyOptions

    opts = ClassifyOptions(examples=[("I love it", "good=yes"), ("I hate it", "bad"), ("Fine stuff", "good=yes"), ("Awful", "bad")])
    assert [label.name for label in opts.parsed] == ["good=yes", "bad"]  # not good with the alias yes
    literal = ClassifyOptions(labels=[parse_label("good=yes", aliases=False), parse_label("bad|no", aliases=False)])
    assert [label.name for label in literal.parsed] == ["good=yes", "bad|no"]


def test_batch_settings_are_the_same_for_labels_spelled_or_ordered_otherwise(tiny_model_dir):
    from aigc.batch_output import run_settings
    from aigc.generators.base import get_generator

    generator = get_generator("classify", model=str(tiny_model_dir))
    spellings = ["negative,positive", "negative, positive", ["negative", "positive"], "positive,negative"]
    assert len({run_settings(generator, {"labels": labels})["settings"] for labels in spellings}) == 1
    assert run_settings(generator, {"labels": "negative,neutral"}) != run_settings(generator, {"labels": "negative,positive"})
    assert run_settings(generator, {"labels": "b,a", "aspect": "sentiment"})["made_with"] == {"aspect": "sentiment", "labels": ["a", "b"]}
    shown = run_settings(generator, {"labels": "Sci/Tech, pos=good|great ,World"})["made_with"]["labels"]
    assert shown == ["Sci/Tech", "World", "pos=good|great"]  # as written, sorted; a name's parts are not aliases
    aliased = {run_settings(generator, {"labels": labels})["settings"] for labels in ("pos=good,neg", "neg,pos=good", "pos,neg")}
    assert len(aliased) == 2  # an alias is another run


def test_a_batch_resumed_with_another_aspect_says_so(tiny_model_dir, tmp_path):
    from aigc.batch_inputs import read_rows
    from aigc.batch_output import pending_rows, run_settings
    from aigc.generators.base import get_generator

    generator = get_generator("classify", model=str(tiny_model_dir))
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": 1, "row": 1, **run_settings(generator, {"labels": "a,b", "aspect": "sentiment"}), "result": {}}) + "\n")
    source = tmp_path / "in.txt"
    source.write_text("one\n")
    with pytest.raises(BadInputError, match=r"\(aspect: 'sentiment' then, the default now\)"):
        pending_rows(read_rows(source), out, generator, {"labels": "a,b"})
    with pytest.raises(BadInputError, match=r"\(labels: \['a', 'b'\] then, \['a=x', 'c'\] now\)"):
        pending_rows(read_rows(source), out, generator, {"labels": "c,a=x", "aspect": "sentiment"})


@pytest.mark.parametrize("options", [{"labels": "sports", "multi_label": True}, {"labels": "sports"}])
def test_one_label_is_refused_even_for_multi_label(options):
    with pytest.raises(OptionError, match=r"must name at least two labels.*give it and its opposite \(sports,other\)"):
        ClassifyGenerator(engine=None).validate(options)


def test_a_threshold_is_for_multi_label_in_the_library_too():
    with pytest.raises(BadInputError, match="threshold picks labels with multi_label"):
        ClassifyGenerator(engine=None).validate({"labels": "a,b", "threshold": 0.3})
    assert ClassifyGenerator(engine=None).validate({"labels": "a,b", "threshold": 0.3, "multi_label": True}).threshold == 0.3


def test_a_part_or_alias_another_label_scores_is_left_to_that_label():
    from aigc.generators.classify import parse_labels

    compound, tech, sports = parse_labels("Sci/Tech,Tech,Sports=sport|games")
    assert compound.verbalizers == ("Sci/Tech", "Sci") and tech.verbalizers == ("Tech",) and sports.verbalizers == ("Sports", "sport", "games")
    assert parse_labels("World,Sci/Tech")[1].verbalizers == ("Sci/Tech", "Sci", "Tech")  # no other label scores them


def test_labels_taken_from_examples_leave_a_part_another_label_scores_to_it():
    from aigc.generators.classify import ClassifyOptions

    examples = [("Chips got faster", "Sci/Tech"), ("A new phone", "Tech"), ("Mars rover", "Sci/Tech"), ("Laptops", "Tech")]
    taken = ClassifyOptions(examples=examples).parsed
    assert [label.verbalizers for label in taken] == [("Sci/Tech", "Sci"), ("Tech",)]  # else Sci/Tech scores " Tech" too, and Tech never wins
    assert taken == ClassifyOptions(labels="Sci/Tech,Tech", examples=examples).parsed


def test_each_label_is_also_scored_in_lower_case_and_capitalised_unless_another_label_is_written_so():
    classify = ClassifyGenerator(engine=None)
    assert classify.verbalizers(classify.validate({"labels": "positive,NEGATIVE"})) == [" positive", " Positive", " NEGATIVE", " negative"]
    twins = [parse_label(name, aliases=False) for name in ("yes", "Yes")]  # as taken from data (given with --labels, refused)
    assert classify.verbalizers(classify.validate({"labels": twins})) == [" yes", " Yes"]  # twins: each its own form only


def test_labels_that_differ_only_in_case_are_warned_of(tmp_path):
    from aigc.errors import AigcWarning
    from aigc.generators.classify_examples import load_examples

    data = tmp_path / "data.tsv"
    data.write_text("good movie\tpositive\nbad movie\tnegative\ngreat\tPositive \n")
    with pytest.warns(AigcWarning, match=r"the labels 'positive', 'Positive' differ only in case, so they count as 2 labels"):
        assert [names for _, names in load_examples(data)] == [["positive"], ["negative"], ["Positive"]]


def test_labels_the_examples_have_no_text_of_are_warned_of_as_the_caller_names_the_option():
    import warnings

    from aigc.errors import AigcWarning, options_named

    with pytest.warns(AigcWarning, match=r"^the examples have no text labelled 'sour', 'bitter', so they cannot teach those labels; add examples of them, or leave them out of labels$"):
        ClassifyGenerator(engine=None).validate({"examples": EXAMPLES, "labels": "fruit,sour,machine,bitter"})
    with options_named(lambda name, value: f"--{name}"), pytest.warns(AigcWarning, match=r"^the examples have no text labelled 'sour', so they cannot teach it; add examples of it, or leave it out of --labels$"):
        ClassifyGenerator(engine=None).validate({"examples": EXAMPLES, "labels": "fruit,sour,machine"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every label taught, or the labels taken from the examples: nothing to say
        ClassifyGenerator(engine=None).validate({"examples": EXAMPLES, "labels": "machine,fruit"})
        ClassifyGenerator(engine=None).validate({"examples": EXAMPLES})


def test_a_text_too_long_for_the_context_is_named_among_many(classify):
    from aigc.errors import ContextLengthError

    long = "word " * 600  # past the tiny model's 512 tokens
    with pytest.raises(ContextLengthError, match=r"^input 1: ") as raised:
        classify.classify_many(["short", long, "short too"], labels="a,b", calibrate="batch")
    assert raised.value.index == 1
    with pytest.raises(ContextLengthError) as alone:
        classify(long, labels="a,b")
    assert alone.value.at is None and not str(alone.value).startswith("input")  # one text: no position to name


def test_examples_switch_calibration_or_method_only_on_more_than_a_standard_error():
    from aigc.generators.classify_examples import _beats

    assert not _beats(14 / 16, 13 / 16, 16)  # one lucky example of 16 is no evidence
    assert _beats(16 / 16, 12 / 16, 16)
    assert not _beats(0.81, 0.80, 500) and _beats(0.84, 0.80, 500)  # 500 examples: a smaller gain is
    assert _beats(1.0, 1 - 1 / 500 - 0.5, 500)


def test_auto_switches_to_the_probe_only_when_it_alone_gets_clearly_more_examples_right_than_zero_shot(monkeypatch):
    from types import SimpleNamespace

    from aigc.generators import classify_examples
    from aigc.generators.classify import ClassifyOptions

    def fitted(zero_shot_right: list[bool], probe_right: list[bool]):
        """What `auto` picks where zero-shot gets the examples in `zero_shot_right` right and the
        probe, cross-validated, those in `probe_right`."""
        labels = ["neg", "pos"] * (len(zero_shot_right) // 2)
        scores = [[1.0, 0.0] if (label == "neg") == right else [0.0, 1.0] for label, right in zip(labels, zero_shot_right)]
        generator = SimpleNamespace(engine=SimpleNamespace(can_embed=True), progress=lambda *a: None, content_free=lambda opts: [0.0, 0.0],
                                    score_texts=lambda texts, opts, embed: ([scores[int(t.split()[1])] for t in texts], [[float(t.split()[1])] for t in texts]))

        class Probe:  # right on an example (its embedding: its number) where `probe_right` says, on any fold
            fit = classmethod(lambda cls, *args: cls())

            def predict(self, embeddings, offset):
                return [[1.0, 0.0] if (labels[n] == "neg") == probe_right[n] else [0.0, 1.0] for n in (int(row[0]) for row in embeddings)]

        monkeypatch.setattr(classify_examples, "LinearProbe", Probe)
        opts = ClassifyOptions(labels="neg,pos", examples=[(f"text {i}", label) for i, label in enumerate(labels)], calibrate="content-free")
        return classify_examples._fit(generator, opts)

    zero_shot = [True] * 9 + [False] * 7  # an unlucky draw: zero-shot gets 9 of 16
    lucky = fitted(zero_shot, [True] * 8 + [False] + [True] * 3 + [False] * 4)  # 11 of 16: 3 won, 1 lost, over a standard error better
    assert lucky.cv["probe(l2=0.1)"] == 11 / 16 and lucky.method == "zero-shot"  # 3 heads of 4 coin flips is luck
    assert lucky.discordant == (3, 1)
    assert classify_examples.ExampleModel.from_state(lucky.state()).discordant == (3, 1)  # kept with the fit, for the note
    many = fitted([True] * 160 + [False] * 40, [True] * 150 + [False] * 10 + [True] * 30 + [False] * 10)
    assert many.discordant == (30, 10) and many.method == "probe" and many.probes


def test_a_candidate_beats_the_default_on_more_wins_than_luck_gives():
    from aigc.generators.classify_examples import FEWEST_TO_SWITCH, _clearly_better

    assert not _clearly_better(3, 1, 16) and not _clearly_better(4, 0, 16)  # 1 in 16 by luck
    assert _clearly_better(5, 0, 16) and _clearly_better(9, 2, 16)
    assert _clearly_better(56, 25, 500) and not _clearly_better(40, 30, 500) and not _clearly_better(7, 7, 500)
    assert not _clearly_better(7, 0, FEWEST_TO_SWITCH - 1)


def test_auto_keeps_content_free_calibration_unless_the_examples_own_prior_beats_it_on_eight_or_more():
    from types import SimpleNamespace

    from aigc.generators.classify import ClassifyOptions, mean_prior
    from aigc.generators.classify_examples import _fit

    def fitted(rows: list[tuple[str, list[float]]], free: list[float] | None = None):
        """What `auto` picks for examples with these label scores (neg, pos) and content-free prior
        (by default the examples' own: the two calibrations then score alike)."""
        scores = [row for _, row in rows]
        generator = SimpleNamespace(engine=SimpleNamespace(can_embed=False), progress=lambda *a: None,
                                    content_free=lambda opts: free or mean_prior(scores),
                                    score_texts=lambda texts, opts, embed: ([scores[int(t.split()[1])] for t in texts], [None] * len(texts)))
        opts = ClassifyOptions(labels="neg,pos", examples=[(f"text {i}", label) for i, (label, _) in enumerate(rows)], method="zero-shot")
        return _fit(generator, opts)

    sixteen = [("neg", [3.0, 0.0])] * 4 + [("neg", [0.1, 0.0])] * 4 + [("pos", [0.0, 0.1])] * 8  # a prior shifted to "neg" flips the weak negatives
    model = fitted(sixteen)
    assert model.cv["zero-shot, calibration off"] == 1.0 and model.cv["zero-shot, calibration content-free"] == 0.75
    assert model.calibration == "content-free"  # no calibration only when asked: picked on a few examples it won by luck
    assert fitted(sixteen, free=[0.0, -5.0]).calibration == "examples"  # content-free calls everything "pos": the examples' prior beats it
    four = [("neg", [3.0, 0.0])] * 2 + [("pos", [0.0, 3.0])] * 2
    model = fitted(four, free=[0.0, -10.0])
    assert model.cv["zero-shot, calibration examples"] == 1.0 and model.cv["zero-shot, calibration content-free"] == 0.5
    assert model.calibration == "content-free"  # 4 right of 4 is no evidence


def test_the_content_free_prior_is_kept_on_disk_for_the_next_process(tiny_engine, monkeypatch, tmp_path):
    import os

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    template = tmp_path / "mine.j2"
    template.write_text(templates.get_template("classify").path.read_text())
    first = ClassifyGenerator(engine=tiny_engine)("Something happened.", labels="alpha,beta", template=str(template))
    (kept,) = (tmp_path / "cache" / "classify").glob("*.prior.json")
    assert kept.stat().st_mode & 0o777 == 0o600
    measured = []
    monkeypatch.setattr(ClassifyGenerator, "_measure_prior", lambda self, opts, shown: measured.append(opts.labels) or [0.0, 0.0])
    again = ClassifyGenerator(engine=tiny_engine)("Something happened.", labels="alpha,beta", template=str(template))  # a new process's generator
    assert measured == [] and again["scores"] == first["scores"]  # the same probabilities, from the prior kept
    ClassifyGenerator(engine=tiny_engine)("Something happened.", labels="alpha,gamma", template=str(template))
    template.write_text(template.read_text() + "\n{# edited #}\n")
    os.utime(template, (1, 1))  # edited: it is read again
    ClassifyGenerator(engine=tiny_engine)("Something happened.", labels="alpha,beta", template=str(template))
    assert measured == ["alpha,gamma", "alpha,beta"]  # other labels, an edited template: measured again
    ClassifyGenerator(engine=FakeEngine())("Something happened.", labels="alpha,beta")  # an engine with no variant (a remote API): nothing kept
    assert len(list((tmp_path / "cache" / "classify").glob("*.prior.json"))) == 3


def test_a_read_only_cache_leaves_the_prior_measured_each_time_silently(tiny_engine, monkeypatch, tmp_path, recwarn):
    (tmp_path / "cache").write_text("")  # no directory can be made in it
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    result = ClassifyGenerator(engine=tiny_engine)("Something happened.", labels="alpha,beta")
    assert set(result["scores"]) == {"alpha", "beta"} and not recwarn.list


def test_caches_of_label_scores_tell_apart_models_named_alike(tiny_model_dir, monkeypatch, tmp_path):
    import os
    import shutil

    from aigc.engine.loading import fingerprint, load_model
    from aigc.generators.classify_examples import prior_path

    for project in ("a", "b"):
        shutil.copytree(tiny_model_dir, tmp_path / project / "model")
    engines, paths = [], []
    for project in ("a", "b"):
        monkeypatch.chdir(tmp_path / project)
        engines.append(load_model("./model", device="cpu", dtype="float32"))
        generator = ClassifyGenerator(engine=engines[-1])
        paths.append(prior_path(generator, generator.validate({"labels": "alpha,beta"}), ("N/A",)))
    assert engines[0] is not engines[1]  # `./model` in two projects: two models, two loads
    assert None not in paths and paths[0] != paths[1]  # and two priors
    before = fingerprint(tmp_path / "a" / "model")
    weights = next((tmp_path / "a" / "model").glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1))  # saved again in place
    assert fingerprint(tmp_path / "a" / "model") != before


def test_a_label_too_long_for_the_context_is_named_and_no_text_is_blamed(classify, tiny_engine):
    from aigc.errors import ContinuationLengthError

    long_label = " ".join(["capital"] * 600)
    with pytest.raises(ContinuationLengthError) as raised:
        tiny_engine.score("Paris is", [" city", " " + long_label])
    assert raised.value.continuation == 1
    for texts in (["Bees make honey.", "Paris is the capital of France."], ["Bees make honey."]):
        with pytest.raises(ContinuationLengthError) as raised:
            classify.classify_many(texts, labels=["city", long_label], calibrate="off")
        assert raised.value.index is None and raised.value.at is None
        assert str(raised.value).startswith("the label 'capital capital") and "the text" not in str(raised.value)


def test_a_text_too_long_for_the_context_is_blamed_not_the_labels(classify, tiny_engine):
    from aigc.errors import ContextLengthError, ContinuationLengthError

    long_text = "The quick brown fox jumps over the lazy dog. Bees make honey. " * 40  # over the 512-token context
    with pytest.raises(ContextLengthError) as raised:
        tiny_engine.score(long_text, [" positive", " negative"])
    assert not isinstance(raised.value, ContinuationLengthError) and "the text is longer" in str(raised.value)
    with pytest.raises(ContextLengthError) as raised:
        classify.classify_many(["Bees make honey.", long_text], labels=["positive", "negative"], calibrate="off")
    assert not isinstance(raised.value, ContinuationLengthError) and raised.value.at == "input 1"


def test_the_label_forms_are_worked_out_once_per_label_set_not_once_per_text():
    from aigc.generators.classify import _forms

    _forms.cache_clear()
    classify = ClassifyGenerator(engine=FakeEngine())
    texts = [f"text number {i}" for i in range(5)]
    labels = ["Sci/Tech", "Tech", "World", "world news", "apple", "apple pie"]
    first = classify.classify_many(texts, labels=labels, calibrate="off")
    again = classify.classify_many(texts, labels=labels, calibrate="off")
    assert first == again and _forms.cache_info().misses == 1


def test_labels_are_numbered_only_when_int_reads_them_all():
    from aigc.evaluation import numbered

    assert numbered(["10", "2", "0"]) == ["0", "2", "10"]
    assert numbered(["²", "1"]) == [] and numbered(["①", "1"]) == []  # digits to str.isdigit, not to int()


def test_multi_label_data_reads_each_texts_labels_and_an_empty_label_cell_as_no_label(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("goal scored\tsports,politics\nvote held\tpolitics\nnice weather\t\n")
    assert read_labelled(path, multi_label=True) == [("goal scored", ["sports", "politics"]), ("vote held", ["politics"]), ("nice weather", [])]
    path.write_text("goal scored\tsports\nnice weather\t\n")
    with pytest.raises(BadInputError, match=r"data.tsv:2: the label is empty"):  # one label per text: a text without one is a mistake
        read_labelled(path)
    path.write_text("sports,politics\tgoal scored in the last minute\n\tnice weather for the time of year\npolitics\tvote held\n")  # label first
    with pytest.warns(AigcNote, match="as label<TAB>text"):
        assert read_labelled(path, labels=["sports", "politics"], multi_label=True)[1] == ("nice weather for the time of year", [])
    path.write_text("goal scored\n")
    with pytest.raises(BadInputError, match=r"data.tsv:1: expected text<TAB>label"):  # no cell at all is no empty cell
        read_labelled(path, multi_label=True)
    table = tmp_path / "data.jsonl"
    table.write_text('{"text": "goal scored", "label": ["sports", "politics"]}\n{"text": "nice weather", "label": []}\n{"text": "vote held", "label": "politics"}\n')
    assert read_labelled(table, multi_label=True) == [("goal scored", ["sports", "politics"]), ("nice weather", []), ("vote held", ["politics"])]
    table.write_text('{"text": "goal scored", "label": "sports"}\n{"text": "nice weather", "label": null}\n')
    with pytest.raises(BadInputError, match="row 2 has no 'label'"):
        read_labelled(table, multi_label=True)
    csv = tmp_path / "data.csv"
    csv.write_text('text,label\ngoal scored,"sports,politics"\nnice weather,\n')
    assert read_labelled(csv, multi_label=True) == [("goal scored", ["sports", "politics"]), ("nice weather", [])]


def test_multi_label_scores_follow_scikit_learns_definitions():
    from aigc.evaluation import multi_label_scores

    # a: tp 1; b: tp 1, fn 1; c: tp 1, fp 1. Text 3 has no label and none is predicted: its sample F1 is 0 (zero_division=0)
    truth = [["a", "b"], ["b"], [], ["c"]]
    predicted = [["a"], ["b", "c"], [], ["c"]]
    found = multi_label_scores(["a", "b", "c"], truth, predicted)
    assert found["per_label_precision"] == {"a": 1.0, "b": 1.0, "c": 0.5} and found["per_label_recall"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert found["per_label_f1"] == pytest.approx({"a": 1.0, "b": 2 / 3, "c": 2 / 3}) and found["per_label_support"] == {"a": 1, "b": 2, "c": 1}
    assert found["per_label_confusion"] == {"a": [[3, 0], [0, 1]], "b": [[2, 0], [1, 1]], "c": [[2, 1], [0, 1]]}  # [[tn, fp], [fn, tp]]
    assert (found["micro_precision"], found["micro_recall"], found["micro_f1"]) == pytest.approx((0.75, 0.75, 0.75))
    assert (found["macro_precision"], found["macro_recall"], found["macro_f1"]) == pytest.approx((2.5 / 3, 2.5 / 3, 7 / 9))
    assert found["weighted_f1"] == pytest.approx((1 + 2 * 2 / 3 + 2 / 3) / 4) and found["weighted_recall"] == pytest.approx(3 / 4)
    assert (found["samples_precision"], found["samples_recall"], found["samples_f1"]) == pytest.approx((2.5 / 4, 2.5 / 4, (2 / 3 + 2 / 3 + 1) / 4))
    assert found["subset_accuracy"] == 0.5 and found["hamming_loss"] == pytest.approx(2 / 12)
    # d: never true, predicted once (fp 1); e: never true nor predicted: every figure 0, as zero_division=0
    found = multi_label_scores(["a", "d", "e"], [["a"], []], [["a", "d"], []])
    assert found["per_label_precision"] == {"a": 1.0, "d": 0.0, "e": 0.0} and found["per_label_recall"] == found["per_label_f1"] == {"a": 1.0, "d": 0.0, "e": 0.0}
    assert found["per_label_support"] == {"a": 1, "d": 0, "e": 0} and found["per_label_confusion"]["d"] == [[1, 1], [0, 0]]
    assert (found["micro_precision"], found["micro_recall"], found["macro_f1"], found["weighted_f1"]) == pytest.approx((0.5, 1.0, 1 / 3, 1.0))
    assert (found["samples_precision"], found["samples_recall"], found["samples_f1"]) == pytest.approx((0.25, 0.5, 1 / 3))
    empty = multi_label_scores(["a", "b"], [[], []], [[], []])
    assert empty["micro_f1"] == empty["macro_f1"] == empty["weighted_f1"] == empty["samples_f1"] == 0.0 and empty["subset_accuracy"] == 1.0


def test_eval_multi_label_counts_each_texts_label_set_at_the_threshold(classify):
    from aigc.evaluation import evaluate_classify, multi_label_scores

    rows = [("goals and votes", ["sports", "politics"]), ("a vote", ["politics"]), ("a recipe", []), ("a match", ["sports"]), ("soup", ["cooking"])]
    labels = "sports,politics,cooking"
    predictions = []
    report = evaluate_classify(classify, rows, {"labels": labels, "multi_label": True, "threshold": 0.0}, predictions=predictions)  # 0: every label chosen
    assert report.examples == 5 and report.labels == ["sports", "politics", "cooking"] and report.threshold == 0.0
    assert report.per_label_recall == {"sports": 1.0, "politics": 1.0, "cooking": 1.0} and report.per_label_support == {"sports": 2, "politics": 2, "cooking": 1}
    assert report.per_label_precision == {"sports": 2 / 5, "politics": 2 / 5, "cooking": 1 / 5} and report.subset_accuracy == 0.0
    assert report.hamming_loss == pytest.approx(10 / 15)  # 15 text-label pairs, 5 of them true
    assert [(p["number"], p["text"], p["labels"]) for p in predictions] == [(n, text, names) for n, (text, names) in enumerate(rows, 1)]
    assert all(sorted(p["predicted"]) == sorted(["sports", "politics", "cooking"]) and p["correct"] is False and set(p["scores"]) == set(report.labels) for p in predictions)
    predictions = []
    report = evaluate_classify(classify, rows, {"labels": labels, "multi_label": True, "threshold": 1.0}, predictions=predictions)  # 1: only the likeliest
    assert all(len(p["predicted"]) == 1 and p["correct"] == (p["predicted"] == p["labels"]) for p in predictions)
    figures = multi_label_scores(report.labels, [p["labels"] for p in predictions], [p["predicted"] for p in predictions])
    assert {key: getattr(report, key) for key in figures} == figures and report.method == "zero-shot" and report.calibration == "content-free"
    assert {"subset_accuracy", "hamming_loss", "micro_f1", "macro_f1", "samples_f1", "weighted_f1", "per_label_f1", "examples_per_second", "multi_label"} <= set(report.as_dict())


def test_eval_refuses_a_label_set_without_multi_label_and_a_single_label_with_it(classify):
    from aigc.evaluation import evaluate_classify

    with pytest.raises(BadInputError, match=r"^text 1's label is a list; give one label \(a str\) per text, or evaluate with multi_label=True$"):
        evaluate_classify(classify, [("goals", ["sports"]), ("votes", "politics")], {"labels": "sports,politics"})
    with pytest.raises(BadInputError, match=r"^text 2's labels are a str; with multi_label=True each text has a list of labels \(an empty one where none applies\)$"):
        evaluate_classify(classify, [("goals", ["sports"]), ("votes", "politics")], {"labels": "sports,politics", "multi_label": True})
    with pytest.raises(UnknownLabelError, match="the data uses label 'cooking', not among sports, politics"):
        evaluate_classify(classify, [("goals", ["sports", "cooking"]), ("votes", [])], {"labels": "sports,politics", "multi_label": True})


def test_labels_spelt_composed_and_decomposed_are_one_label(tmp_path):
    import unicodedata

    from aigc.evaluation import checked_labels

    nfc, nfd = (["café", "한국어", "が"], [unicodedata.normalize("NFD", name) for name in ("café", "한국어", "が")])
    assert nfc != nfd  # a Mac writes names decomposed
    mixed = tmp_path / "mixed.tsv"
    mixed.write_text("".join(f"text {i}\t{(nfc if i % 2 else nfd)[i % 3]}\n" for i in range(6)))
    assert [label.name for label in ClassifyGenerator(engine=None).validate({"examples": str(mixed)}).parsed] == ["café", "한국어", "が"]
    decomposed = tmp_path / "nfd.tsv"
    decomposed.write_text("".join(f"text {i}\t{nfd[i % 3]}\n" for i in range(6)))
    opts = ClassifyGenerator(engine=None).validate({"examples": str(decomposed), "labels": ",".join(nfc)})  # no unknown label
    assert [label.name for label in opts.parsed] == nfc
    assert checked_labels(ClassifyGenerator(engine=None).validate({"labels": ",".join(nfd)}), read_labelled(decomposed)) == nfc


def test_truncate_cuts_a_text_to_fit_the_prompt_with_its_demonstrations(classify):
    from aigc.errors import ContextLengthError

    examples = [("Paris is the capital of France. " * 4 + str(i), "fox" if i % 2 else "dog") for i in range(16)]
    text = "The quick brown fox jumps over the lazy dog. " * 100  # past the tiny model's 512-token context
    with pytest.warns(AigcNote, match=r"^classified the text's start, its first \d+ of \d{4} tokens") as noted:
        result = classify(text, labels="fox,dog", truncate=True, examples=examples, method="demos")
    assert result["method"] == "demos" and len([n for n in noted if "classified the text's start" in str(n.message)]) == 1
    fits_alone = "The quick brown fox jumps over the lazy dog. " * 40  # fits without demonstrations, not with them
    assert classify.engine.count_tokens(classify.prompt(fits_alone, classify.validate({"labels": "fox,dog"}))) < 500
    with pytest.raises(ContextLengthError, match="^the text is longer than"):  # not "the prompt takes N tokens ..." with N under the context
        classify(fits_alone, labels="fox,dog", examples=examples, method="demos")


def test_full_width_and_ideographic_commas_separate_labels():
    assert [label.name for label in ClassifyGenerator(engine=None).validate({"labels": "正面，负面、中性"}).parsed] == ["正面", "负面", "中性"]
    with pytest.raises(OptionError, match=r"give it and its opposite \(正面,other\)$"):
        ClassifyGenerator(engine=None).validate({"labels": "正面，"})


def test_a_text_too_long_for_the_context_is_refused_with_its_tokens_or_with_truncate_classified_by_its_start(classify):
    from aigc.errors import ContextLengthError

    text = "Bees make honey in the city. " * 200  # past the tiny model's 512-token context
    with pytest.raises(ContextLengthError, match=r"^the prompt takes \d{4} tokens with the text and its longest label \d+ more, but \S+'s context holds 512; give truncate to classify the text's start, or shorten it$"):
        classify(text, labels="bees,solar")
    with pytest.warns(AigcNote, match=r"^classified the text's start, its first \d+ of \d{4} tokens: what \S+'s 512-token context holds with the prompt and labels$"):
        cut = classify(text, labels="bees,solar", truncate=True)
    start = "Bees make honey in the city. " * 20  # a start that fits
    with pytest.warns(AigcNote):
        kept = classify.start_that_fits(text, classify.validate({"labels": "bees,solar"}))
    assert cut["label"] in ("bees", "solar") and kept.startswith(start.strip()) and text.startswith(kept)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert classify(start, labels="bees,solar", truncate=True) == classify(start, labels="bees,solar")  # a text that fits is classified whole, with no note
    assert "truncate" not in classify.validate({"labels": "a,b"}).settings() and classify.validate({"labels": "a,b", "truncate": True}).settings()["truncate"] is True


def test_zero_shot_adds_each_texts_likelihood_after_a_line_naming_each_label(classify, tiny_engine):
    from aigc.generators.classify import CHANNEL_WEIGHT, log_softmax

    text, labels = "Shares rose after the earnings report.", "business,sports,world news"
    opts = classify.validate({"labels": labels, "aspect": "topic", "kind": "news story", "calibrate": "off"})
    assert classify.channel_prefix("sports", opts) == "The topic of this news story is sports.\nNews story:"
    direct = log_softmax(classify.label_scores(tiny_engine.score(classify.prompt(text, opts), classify.verbalizers(opts)), opts))
    channel = [tiny_engine.score(classify.channel_prefix(label.name, opts), [" " + text])[0] / tiny_engine.count_tokens(" " + text) for label in opts.parsed]
    expected = log_softmax([d + CHANNEL_WEIGHT / (1 - CHANNEL_WEIGHT) * c for d, c in zip(direct, channel)])
    options = {"labels": labels, "aspect": "topic", "kind": "news story", "calibrate": "off"}
    result = classify(text, **options)
    assert [result["scores"][l.name] for l in opts.parsed] == pytest.approx([math.exp(v) for v in expected], abs=1e-5)
    assert math.isclose(sum(result["scores"].values()), 1.0, rel_tol=1e-9) and result["method"] == "zero-shot"
    assert classify(text, **options) == result  # deterministic
    reordered = classify(text, **{**options, "labels": "world news,sports,business"})
    assert reordered["label"] == result["label"] and reordered["scores"] == pytest.approx(result["scores"], abs=1e-6)
    alone = classify(text, **options, channel=False)  # the label scores alone, as before channel
    assert [alone["scores"][l.name] for l in opts.parsed] == pytest.approx([math.exp(v) for v in direct], abs=1e-5)
    assert [math.log(alone["scores"][l.name]) for l in opts.parsed] != pytest.approx([math.log(result["scores"][l.name]) for l in opts.parsed], abs=1e-3)  # the channel scores count
    calibrated = classify.classify_many([text, "The match ended in a draw."], labels=labels)  # content-free, the default, then the channel scores
    assert all(math.isclose(sum(r["scores"].values()), 1.0, rel_tol=1e-9) for r in calibrated)
    assert [r["scores"] for r in calibrated] != [r["scores"] for r in classify.classify_many([text, "The match ended in a draw."], labels=labels, channel=False)]


def test_channel_leaves_multi_label_the_probe_and_demonstrations_as_they_were(classify):
    text = "apple engine number 3"
    for options in ({"labels": "fruit,machine", "multi_label": True}, {"examples": EXAMPLES, "method": "probe"}, {"examples": EXAMPLES, "method": "demos"}):
        assert classify(text, **options) == classify(text, **options, channel=False), options
    settings = lambda **options: classify.validate({"labels": "a,b", **options}).settings()  # noqa: E731 - what aigc batch resumes by
    assert settings()["channel"] is True and "channel" not in settings(channel=False)  # outputs made before channel resume without it
    assert "channel" not in settings(multi_label=True)  # where it changes nothing


def test_a_text_too_long_with_the_channel_line_is_refused_as_for_the_label_prompt_or_cut_with_truncate(classify, monkeypatch):
    from aigc.errors import ContextLengthError

    monkeypatch.setattr(classify, "channel_prefix", lambda label, opts: "Bees. " * 150 + label)  # longer than the label prompt
    text = "Bees make honey in the city. " * 40  # fits the label prompt, not after that prefix
    opts = classify.validate({"labels": "bees,solar"})
    assert classify.engine.count_tokens(classify.prompt(text, opts)) < 500
    with pytest.raises(ContextLengthError, match=r"^input 1: the text takes \d+ tokens, and with the line naming its label \d+ more, but \S+'s context holds 512; give truncate to classify the text's start, or shorten it$") as raised:
        classify.classify_many(["short", text], labels="bees,solar")
    assert raised.value.index == 1
    with pytest.warns(AigcNote, match=r"^classified the text's start, its first \d+ of \d+ tokens"):
        cut = classify(text, labels="bees,solar", truncate=True)
    assert cut["label"] in ("bees", "solar") and classify(text, labels="bees,solar", channel=False)["label"] in ("bees", "solar")
