"""`aigc translate` on the real embedded model: the structure is kept and the text changes.

The 135M model translates poorly, so nothing here checks the quality of the translation."""

import json
import re

import pytest

from conftest_integration import aigc

pytestmark = pytest.mark.integration

DOC = """# Our new library

The city opened a new library today. Children can borrow books for free.

- The library is open every day.
- Coffee is not allowed inside.

```
opening_hours = "9-17"
```
"""


def test_markdown_structure_is_kept_and_the_text_is_translated(tmp_path):
    source = tmp_path / "doc.md"
    source.write_text(DOC)
    done = aigc("translate", str(source), "--to", "French", "--from", "en")
    assert done.returncode == 0, done.stderr
    out = done.stdout.rstrip("\n").split("\n")
    src = DOC.rstrip("\n").split("\n")
    assert len(out) == len(src)
    assert out[0].startswith("# ") and out[0][2:].strip()
    assert out[1] == "" and out[2].strip() and out[3] == ""
    assert out[4].startswith("- ") and out[5].startswith("- ") and out[4][2:].strip() and out[5][2:].strip()
    assert out[6:] == src[6:]  # the code block is untouched
    translated = [i for i in (0, 2, 4, 5) if out[i] != src[i]]
    assert len(translated) >= 3


def test_json_from_stdin():
    assert aigc("models", "info", "smollm2").returncode == 0  # its digest known (a copy converted before aigc recorded digests has none beside it; runs never hash)
    done = aigc("translate", "-", "--to", "es", "--json", input="Good morning, my friend.\n")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == {"translation", "source_language", "target_language", "glossary_misses", "missing_placeholders", "cut_off", "cut_off_texts", "untranslated_texts", "model", "model_digest"}
    assert result["model"] == "smollm2"
    assert result["cut_off"] is False
    assert result["translation"].strip() and result["translation"] != "Good morning, my friend."
    assert (result["source_language"], result["target_language"]) == ("auto", "es")


def test_template_tags_come_back_byte_identical_and_admonition_markers_are_kept(tmp_path):
    source = tmp_path / "site.md"
    source.write_text('Read the guide {% include "note.html" %} before you start.\n\n{% if site.beta %}\nThis feature is new.\n{% endif %}\n\n!!! note "Custom title"\n    This is the body of the note.\n')
    done = aigc("translate", str(source), "--to", "de", "--from", "en")
    assert done.returncode == 0, done.stderr
    out = done.stdout.rstrip("\n").split("\n")
    assert len(out) == 8 and out[0].count('{% include "note.html" %}') == 1 and out[2] == "{% if site.beta %}" and out[4] == "{% endif %}", out
    # the marker, type and quotes kept around a title (the model may leave a title as it is: a unit test checks it is sent)
    assert re.fullmatch(r'!!! note "[^"\n]*\S[^"\n]*"', out[6]) and out[7].startswith("    ") and out[7].strip(), out
