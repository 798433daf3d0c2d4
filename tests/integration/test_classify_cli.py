"""`aigc classify` and `aigc eval classify` on the real embedded model.

Accuracy is measured by `python -m benchmarks.classify_eval`, not asserted here; these tests check
behaviour: valid probabilities, label order, examples, --lines, the eval report and errors."""

import json
import math

import pytest

from conftest_integration import aigc

pytestmark = pytest.mark.integration

EXAMPLES = """text\tlabel
The striker scored twice in the second half.\tsports
The coach praised the goalkeeper after the win.\tsports
The team lost the final on penalties.\tsports
The new phone has a faster chip and a better camera.\ttechnology
The software update fixes a security flaw.\ttechnology
Engineers built a smaller, cheaper battery.\ttechnology
"""


def classify_json(*args: str) -> dict:
    done = aigc("classify", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_probabilities_sum_to_one_and_label_order_does_not_matter():
    text = "The film was a joy from start to finish, warm and funny."
    first = classify_json(text, "--labels", "negative,positive", "--aspect", "sentiment")
    second = classify_json(text, "--labels", "positive,negative", "--aspect", "sentiment")
    assert set(first) == {"label", "scores", "method", "calibration", "model", "model_digest"} and set(first["scores"]) == {"negative", "positive"}
    assert math.isclose(sum(first["scores"].values()), 1.0, rel_tol=1e-6)
    assert first["label"] == second["label"] == max(first["scores"], key=first["scores"].get)
    assert first["scores"]["positive"] == pytest.approx(second["scores"]["positive"], abs=1e-6)
    named = classify_json(text, "--labels", "negative,positive", "--aspect", "sentiment", "--kind", "movie review")
    assert math.isclose(sum(named["scores"].values()), 1.0, rel_tol=1e-6)
    assert named["scores"]["positive"] != pytest.approx(first["scores"]["positive"], abs=1e-6)  # the prompt names the text a movie review


def test_examples_give_the_labels_and_lines_classify_each_line(tmp_path):
    examples = tmp_path / "examples.tsv"
    examples.write_text(EXAMPLES)
    texts = tmp_path / "texts.txt"
    texts.write_text("The goalkeeper saved a penalty.\n\nA chip maker released a faster processor.\n")
    done = aigc("classify", str(texts), "--lines", "--examples", str(examples), "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert set(row["scores"]) == {"sports", "technology"}
        assert math.isclose(sum(row["scores"].values()), 1.0, rel_tol=1e-6)


def test_multi_label_gives_independent_probabilities():
    assert aigc("models", "info", "smollm2").returncode == 0  # its digest known (a copy converted before aigc recorded digests has none beside it; runs never hash)
    result = classify_json("The team's new stadium runs on solar panels.", "-l", "sports,technology,cooking", "--multi-label", "--threshold", "0.3")
    assert set(result) == {"labels", "scores", "method", "calibration", "model", "model_digest"}
    assert set(result["labels"]) == {label for label, p in result["scores"].items() if p >= 0.3}


def test_eval_reports_accuracy_f1_confusion_and_speed(tmp_path):
    data = tmp_path / "data.tsv"
    data.write_text(EXAMPLES)
    done = aigc("eval", "classify", str(data), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["examples"] == 6 and report["labels"] == ["sports", "technology"]
    assert sum(map(sum, report["confusion"])) == 6
    assert report["accuracy"] == sum(report["confusion"][i][i] for i in range(2)) / 6
    assert 0 <= report["macro_f1"] <= 1 and report["examples_per_second"] > 0
    table = aigc("eval", "classify", str(data))
    assert table.returncode == 0 and "confusion matrix" in table.stdout and "macro-F1" in table.stdout


def test_an_example_label_missing_from_labels_is_a_one_line_error(tmp_path):
    examples = tmp_path / "examples.tsv"
    examples.write_text(EXAMPLES)
    done = aigc("classify", "some text", "--labels", "sports,politics", "--examples", str(examples))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "technology" in done.stderr
