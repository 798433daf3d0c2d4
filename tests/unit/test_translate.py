"""translate: Markdown blocks, chunks, languages, glossary, answer cleaning, and the command."""

import codecs
import io
import itertools
import json
import re
import textwrap
import unicodedata

import pytest
from typer.testing import CliRunner

from aigc.cli.app import app
from aigc.engine.base import Completion
from aigc.errors import BadInputError, OptionError
from aigc.generators.translate import (
    ROWS,
    WINDOW,
    TranslateGenerator,
    TranslateOptions,
    clean_translation,
    group_chunks,
    load_glossary,
    segments,
    parse_glossary,
    without_rambling,
)
from aigc.cli.translate import glossary_notes
from aigc.markdown_blocks import parse_blocks, placeholders, render_blocks
from aigc.sentences import split_sentences
from aigc.languages import lookup
from aigc.testing import FakeEngine
from lazy_imports import imports_after

DOC = """---
title: Notes
---
# Getting started ##

The cat is on the table. It is
asleep.

- First item
- Second item with `code` and a [link](http://example.com).
  - nested item
1. Numbered one
- [ ] a task

> A quote line
> that goes on.

    indented code after a list and a quote

```python
print("The cat")
```

| Name | Description |
|------|-------------|
| cat  | A small animal |

***

<div class="note">Its words, not its tags</div>

<!--
a comment

with a blank line
-->

Name | Role
-----|-----
Ann  | Cook

42"""

EXPECTED = """---
title: NOTES
---
# GETTING STARTED ##

THE CAT IS ON THE TABLE. IT IS ASLEEP.

- FIRST ITEM
- SECOND ITEM WITH `code` AND A [LINK](http://example.com).
  - NESTED ITEM
1. NUMBERED ONE
- [ ] A TASK

> A QUOTE LINE THAT GOES ON.

    indented code after a list and a quote

```python
print("The cat")
```

| NAME | DESCRIPTION |
|------|-------------|
| CAT  | A SMALL ANIMAL |

***

<div class="note">ITS WORDS, NOT ITS TAGS</div>

<!--
a comment

with a blank line
-->

NAME | ROLE
-----|-----
ANN  | COOK

42"""


class EchoEngine(FakeEngine):
    """Answers each prompt with its last message upper-cased (a "translation" that shows where
    each text went), its first `max_tokens` words."""

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        words = [p[-1]["content"].upper().split(" ") for p in prompts]
        return [[Completion(" ".join(w[: params.max_tokens]), 1, 1, "length" if len(w) > params.max_tokens else "stop")] for w in words]


def translate(text, engine=None, **options):
    engine = engine or EchoEngine()
    options.setdefault("target_language", "fr")
    return TranslateGenerator(engine=engine)(text, **options), engine


def test_structure_is_kept_and_only_text_is_translated():
    result, _ = translate(DOC)
    assert result["translation"] == EXPECTED


def test_blocks_render_back_to_the_document_with_paragraph_lines_joined():
    blocks = parse_blocks(DOC)
    assert render_blocks(blocks, [b.texts for b in blocks]) == DOC.replace("It is\nasleep", "It is asleep").replace(
        "line\n> that", "line that"
    )
    kinds = [b.kind for b in blocks if b.kind != "blank"]
    assert kinds[:3] == ["front matter", "heading", "paragraph"] and "code" in kinds and "rule" in kinds


def test_indented_code_is_kept_but_nested_list_items_are_translated():
    result, _ = translate("Text here.\n\n    code = 1\n\n- item\n    - deep item")
    assert result["translation"] == "TEXT HERE.\n\n    code = 1\n\n- ITEM\n    - DEEP ITEM"


@pytest.mark.parametrize(
    "doc, kinds",
    [
        ("1.  First item\n\n    Second paragraph.\n\n    Third paragraph.", ["item", "paragraph", "paragraph"]),
        ("<preview-card>\nHello\n\nNext paragraph here.", ["html", "paragraph"]),
        ("Read the guide at\n<https://example.com/guide> before you start.", ["paragraph"]),
        ("<em>Hi</em> there", ["paragraph"]),
        ("Some text\nName | Role\n--|--\nAnn | Cook", ["paragraph", "table", "table", "table"]),
        ("See [the docs][id].\n\n[id]: http://example.com/x_(y)", ["paragraph", "reference"]),
        ("<!--\na comment\n\nstill it\n-->\nAfter.", ["html", "paragraph"]),
        ("- item\n\n> quote\n\n    code after a list and a quote", ["item", "quote", "code"]),
    ],
)
def test_markdown_blocks_are_recognised(doc, kinds):
    blocks = parse_blocks(doc)
    assert [b.kind for b in blocks if b.kind != "blank"] == kinds
    assert render_blocks(blocks, [b.texts for b in blocks]) == doc.replace("at\n<", "at <")


def test_a_table_inside_a_quote_is_a_table_its_cells_translated_and_pipes_kept():
    doc = "> Prices:\n>\n> | Fruit | Price |\n> |:---|---:|\n> | Red apple | 3 |\n> > | Deep | cell |\n> After."
    result, engine = translate(doc)
    assert [p[-1]["content"] for p in engine.calls[0][0]] == ["Prices:", "Fruit", "Price", "Red apple", "Deep", "cell", "After."]
    assert result["translation"] == "> PRICES:\n>\n> | FRUIT | PRICE |\n> |:---|---:|\n> | RED APPLE | 3 |\n> > | DEEP | CELL |\n> AFTER."


def test_the_text_of_an_html_block_is_translated_its_tags_and_code_kept_byte_for_byte():
    doc = ('<details open>\n<summary>Click <b>here</b></summary>\n\nHidden text.\n</details>\n\n<p align="center">\n  <a href="https://x.org"><img src="logo.png" alt="Logo"></a>\n</p>\n\n'
           '<div class="note">Run <code>aigc help</code> now.<script>var s = "hi";</script></div>\n\n<!-- a comment -->\n\n<pre>\nkeep me\n</pre>')
    result, engine = translate(doc)
    assert [p[-1]["content"] for p in engine.calls[0][0]] == ["Click <b>here</b>", "Hidden text.", "Run <code>aigc help</code> now."]
    assert result["translation"] == doc.replace("Click <b>here", "CLICK <b>HERE").replace("Hidden text", "HIDDEN TEXT").replace("Run", "RUN").replace(" now", " NOW")


def test_hard_line_breaks_and_footnotes_are_kept_and_translated():
    doc = "Anna Smith  \n12 Main Road\\\nLeeds\n\n> one  \n> two\n> three\n\n- item a  \n  more\n\nSee the docs.[^1]\n\n[^1]: The docs are updated weekly."
    result, _ = translate(doc)
    assert result["translation"] == (
        "ANNA SMITH  \n12 MAIN ROAD\\\nLEEDS\n\n> ONE  \n> TWO THREE\n\n- ITEM A  \n  MORE\n\nSEE THE DOCS.[^1]\n\n[^1]: THE DOCS ARE UPDATED WEEKLY."
    )
    assert [b.kind for b in parse_blocks(doc) if b.kind != "blank"] == ["paragraph", "quote", "item", "paragraph", "footnote"]
    escaped = parse_blocks("C:\\\\\nnext line")  # an escaped backslash at the end is no break
    assert [b.texts for b in escaped] == [["C:\\\\ next line"]]


class KeepsCodeEngine(FakeEngine):
    """A "translation" that keeps inline markup: Run -> Lancez, now -> maintenant."""

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        return [[Completion(p[-1]["content"].replace("Run", "Lancez").replace("now", "maintenant"), 1, 1, "stop")] for p in prompts]


def test_a_sentence_with_inline_code_is_one_prompt_when_the_model_keeps_the_code():
    result, engine = translate("Run `make` now, see [the docs](http://x.org/a_(b)).", engine=KeepsCodeEngine())
    assert [p[-1]["content"] for p in engine.calls[0][0]] == ["Run `make` now, see [the docs](http://x.org/a_(b))."]
    assert result["translation"] == "Lancez `make` maintenant, see [the docs](http://x.org/a_(b))."


def test_markup_the_model_lost_is_put_back_and_the_words_translated_in_parts():
    result, engine = translate("Run `make`. Then see [the docs](http://x.org) now.")
    assert result["translation"] == "RUN `make`. THEN SEE [THE DOCS](http://x.org) NOW."
    retried = [p[-1]["content"] for p in engine.calls[-1][0]]
    assert retried == ["Run", "Then see", "the docs", "now."]  # words only: no prompt of bare punctuation


def test_a_bracket_opening_markup_is_no_part_of_the_words_before_it():
    result, engine = translate("CI (`.ci/run`) runs [the tests](http://x.org).")
    assert [p[-1]["content"] for p in engine.calls[-1][0]] == ["runs", "the tests"]  # "CI", not "CI (": a name, kept without the model
    assert result["translation"] == "CI (`.ci/run`) RUNS [THE TESTS](http://x.org)."


def test_html_code_keys_output_and_variables_are_kept_like_inline_code():
    result, _ = translate('Run <code class="sh">make all</code>, press <kbd>Ctrl</kbd>, see <samp>ok</samp> in <var>out</var> <b>now</b>.')
    assert result["translation"] == 'RUN <code class="sh">make all</code>, PRESS <kbd>Ctrl</kbd>, SEE <samp>ok</samp> IN <var>out</var> <b>NOW</b>.'


def test_html_entities_come_back_unchanged_in_an_html_block_and_in_markdown_text():
    doc = "<div>Fish &amp; chips &lt;3, 10&nbsp;km&#8212;far &#x2014; <b>now</b></div>\n\n<td>&nbsp;</td>\n\nSalt &amp; vinegar."
    result, engine = translate(doc)  # the echo engine upper-cases &amp; to &AMP;, as a model may write & or drop it
    assert result["translation"] == "<div>FISH &amp; CHIPS &lt;3, 10&nbsp;KM&#8212;FAR &#x2014; <b>NOW</b></div>\n\n<td>&nbsp;</td>\n\nSALT &amp; VINEGAR."
    assert "&nbsp;" not in [p[-1]["content"] for call in engine.calls for p in call[0]]  # a cell of only an entity has no words to send


class AddsStopEngine(FakeEngine):
    """Upper-cases each prompt's text, dropping its inline code and footnote references and ending it
    with a full stop, as a small model does."""

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        texts = [re.sub(r"`[^`]*`|\[\^\w+\]", "", p[-1]["content"]).upper().rstrip(".") + "." for p in prompts]
        return [[Completion(text, 1, 1, "stop")] for text in texts]


def test_a_full_stop_the_model_adds_to_words_before_markup_is_dropped():
    result, engine = translate("Configure `config.yaml` now. Term with footnote[^1]. Ends in code `x`.", engine=AddsStopEngine())
    assert [p[-1]["content"] for p in engine.calls[-1][0]] == ["Configure", "now.", "Term with footnote", "Ends in code"]
    assert result["translation"] == "CONFIGURE `config.yaml` NOW. TERM WITH FOOTNOTE[^1]. ENDS IN CODE `x`."
    from aigc.generators.translate import _without_added_stop

    assert _without_added_stop("Configure ", "Configurez.") == "Configurez"
    assert _without_added_stop("It ends. ", "Ça finit.") == "Ça finit."  # the source's own stop, before a space
    assert _without_added_stop("Through", "Durch!") == "Durch" and _without_added_stop("Hello", "¡Hola!") == "¡Hola!"
    assert _without_added_stop("Where is it?", "Où est-ce.") == "Où est-ce." and _without_added_stop("Go!", "Va!") == "Va!"


def test_a_heading_table_cell_or_term_gets_no_full_stop_its_source_lacks():
    doc = "# Steps\n\n| Month | Task |\n|---|---|\n| May | Add a box. |\n\nQueen\n: The bee that lays eggs.\n\nSee [the guide](http://x.org)"
    assert translate(doc, engine=AddsStopEngine())[0]["translation"] == (
        "# STEPS\n\n| MONTH | TASK |\n|---|---|\n| MAY | ADD A BOX. |\n\nQUEEN\n: THE BEE THAT LAYS EGGS.\n\nSEE [THE GUIDE](http://x.org)"
    )


class DropsColonEngine(FakeEngine):
    """Upper-cases each prompt's text and drops its colons, as a small model does with `**Tip:**`."""

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        return [[Completion(p[-1]["content"].upper().replace(":", ""), 1, 1, "stop")] for p in prompts]


def test_a_colon_ending_a_bold_or_italic_span_or_a_label_is_put_back_where_the_model_dropped_it():
    doc = "**Tip:** run it twice. _Note:_ it is slow.\n\n# Steps:\n\n- Time: 10:30"
    result, _ = translate(doc, engine=DropsColonEngine())
    assert result["translation"] == "**TIP:** RUN IT TWICE. _NOTE:_ IT IS SLOW.\n\n# STEPS:\n\n- TIME 1030"  # only a colon that ends a span or a text
    from aigc.generators.translate import _with_source_colons

    assert _with_source_colons("**Tip:** a", "**Tipp**: b") == "**Tipp**: b" and _with_source_colons("**Tip:** a", "**Tipp**. b") == "**Tipp**. b"
    assert _with_source_colons("**Tip:** a", "**Tipp!** b") == "**Tipp!** b"  # an ending other than a word's is the model's choice
    assert _with_source_colons("**Tip:** a", "Tipp b") == "Tipp b" and _with_source_colons("Note:", "") == ""


class EmphasisEngine(FakeEngine):
    """Upper-cases each prompt's text, with its emphasis markers changed by `mangle`."""

    def __init__(self, mangle):
        super().__init__()
        self.mangle = mangle

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        return [[Completion(self.mangle(p[-1]["content"].upper()), 1, 1, "stop")] for p in prompts]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda text: text.replace("**", "", 1),  # an opening ** lost: the closing one left unbalanced
        lambda text: "**" + text + "**",  # one added around the whole answer
        lambda text: text.replace("_", ""),  # _italic_ lost
    ],
)
def test_emphasis_the_model_unbalanced_is_put_back_and_the_words_translated_in_parts(mangle):
    result, engine = translate("This is **very** important, _truly_.\n\n- A **bold** item", engine=EmphasisEngine(mangle))
    assert result["translation"] == "THIS IS **VERY** IMPORTANT, _TRULY_.\n\n- A **BOLD** ITEM"
    assert len(engine.calls) == 2 and "very" in [p[-1]["content"] for p in engine.calls[1][0]]  # a second pass, piece by piece


def test_emphasis_kept_by_the_model_is_one_prompt_and_snake_case_or_a_lone_star_is_no_emphasis():
    result, engine = translate("Use **snake_case** names, 2 * 3 of them.", engine=EmphasisEngine(lambda text: text))
    assert len(engine.calls) == 1 and result["translation"] == "USE **SNAKE_CASE** NAMES, 2 * 3 OF THEM."


def test_setext_headings_keep_their_underlines():
    result, _ = translate("Title\n=====\n\nSub title\n---\nText.")
    assert result["translation"] == "TITLE\n=====\n\nSUB TITLE\n---\nTEXT."


def test_each_sentence_is_its_own_prompt_with_example_turns():
    result, engine = translate("One sentence here. Another one here!", source_language="en")
    prompts = engine.calls[0][0]
    assert [p[-1]["content"] for p in prompts] == ["One sentence here.", "Another one here!"]
    assert prompts[0][0]["role"] == "system" and "English into French" in prompts[0][0]["content"]
    assert [m["role"] for m in prompts[0][1:3]] == ["user", "assistant"] and prompts[0][2]["content"] == "Bonjour."
    assert result["translation"] == "ONE SENTENCE HERE. ANOTHER ONE HERE!"


def test_whole_blocks_and_no_examples_on_request():
    _, engine = translate("One sentence here. Another one here!", by_sentence=False, examples=False)
    prompts = engine.calls[0][0]
    assert len(prompts) == 1 and len(prompts[0]) == 2 and prompts[0][-1]["content"] == "One sentence here. Another one here!"
    assert "the user's text into French" in prompts[0][0]["content"]


def test_no_examples_for_languages_without_them():
    _, engine = translate("Hello there.", target_language="ja")
    assert len(engine.calls[0][0][0]) == 2


@pytest.mark.parametrize("language, answers, expected", [("zh", ["一。", "二。"], "一。二。"), ("ja", ["はい。", "いいえ。"], "はい。いいえ。"), ("th", ["หนึ่ง", "สอง"], "หนึ่ง สอง"), ("ko", ["하나.", "둘."], "하나. 둘.")])
def test_chinese_and_japanese_sentences_are_joined_without_spaces_others_with_one(language, answers, expected):
    engine = FakeEngine()
    engine.enqueue(*answers)
    result, _ = translate("One. Two.", engine, target_language=language)
    assert result["translation"] == expected  # Thai puts a space between sentences, as Korean does


def test_group_chunks_packs_whole_blocks_by_token_count():
    assert group_chunks([3, 4, 5, 20, 1, 1], 10) == [[0, 1], [2], [3], [4, 5]]
    assert group_chunks([], 10) == []


def test_long_documents_go_in_chunks_on_paragraph_boundaries_in_batches_with_progress():
    paragraphs = [f"Paragraph {i} has words. " + "word " * 20 + "end." for i in range(10)]
    seen = []
    engine = EchoEngine()
    gen = TranslateGenerator(engine=engine, progress=lambda done, total, what: seen.append((done, total, what)))
    result = gen("\n\n".join(paragraphs), target_language="de", chunk_tokens=60, batch_size=2)
    # FakeEngine counts words: 4 and 21 a sentence; a call holds 2 x 60 tokens (rows x longest): 5 long sentences, or 16 short ones
    assert [len(prompts) for prompts, _ in engine.calls] == [10, 5, 5]
    assert [{p[-1]["content"].split()[0] for p in prompts} for prompts, _ in engine.calls] == [{"Paragraph"}, {"word"}, {"word"}]
    assert seen == [(0, 20, "translating"), (10, 20, "translating"), (15, 20, "translating"), (20, 20, "translating")]
    assert result["translation"].split("\n\n") == [p.upper() for p in paragraphs]


def test_a_paragraph_of_many_sentences_goes_to_the_model_in_bounded_calls_with_progress_for_each():
    sentences = [f"Sentence {i} is {'very ' * (i % 7)}short." for i in range(5 * WINDOW)]
    seen = []
    engine = EchoEngine()
    gen = TranslateGenerator(engine=engine, progress=lambda done, total, what: seen.append((done, total)))
    result = gen(" ".join(sentences), target_language="de")  # one line: one paragraph, one chunk
    sizes = [len(prompts) for prompts, _ in engine.calls]
    assert max(sizes) == ROWS and sum(sizes) == 5 * WINDOW and len(sizes) >= 5 * WINDOW // ROWS
    sent = [[p[-1]["content"] for p in prompts] for prompts, _ in engine.calls]
    assert sorted(s for call in sent for s in call) == sorted(sentences)  # each sentence once
    spreads = [max(len(s.split()) for s in call) - min(len(s.split()) for s in call) for call in sent]
    assert max(spreads) <= 3  # sentences of like length together (ROWS in a row would be 4 to 10 words): little padding
    assert [done for done, _ in seen] == [0, *itertools.accumulate(sizes)] and {total for _, total in seen} == {5 * WINDOW}  # a step a call
    assert result["translation"] == " ".join(sentences).upper()  # in the document's order


def test_sentences_longer_than_a_chunk_are_cut_into_word_runs():
    text = " ".join(f"w{i}" for i in range(100)) + "."
    result, engine = translate(text, chunk_tokens=30)
    assert len(engine.calls[0][0]) >= 4
    assert result["translation"] == text.upper()


def test_a_name_alone_is_kept_as_it_is_without_the_model():
    result, engine = translate("## GitHub\n\n[![PyPI](https://img.shields.io/pypi/v/x.svg)](https://pypi.org/project/x/) Install it.\n\n## Install")
    assert result["translation"] == "## GitHub\n\n[![PyPI](https://img.shields.io/pypi/v/x.svg)](https://pypi.org/project/x/) INSTALL IT.\n\n## INSTALL"
    assert not [p for prompts, _ in engine.calls for p in prompts if p[-1]["content"] in ("GitHub", "PyPI")]


def test_a_word_alone_that_the_document_writes_as_code_or_a_link_target_is_a_name_kept_as_it_is():
    doc = "# aigc\n\n## hello\n\nRun `aigc translate` or see [the site](https://x.org/toolkit).\n\n| toolkit | translate it |\n|---|---|"
    result, engine = translate(doc)
    assert result["translation"] == "# aigc\n\n## HELLO\n\nRUN `aigc translate` OR SEE [THE SITE](https://x.org/toolkit).\n\n| toolkit | TRANSLATE IT |\n|---|---|"
    assert "aigc" not in [p[-1]["content"] for call in engine.calls for p in call[0]]  # never sent to the model


def test_emoji_shortcodes_come_back_unchanged():
    from aigc.markdown_blocks import protected_spans

    result, _ = translate(":warning: Back up first :+1:")
    assert result["translation"] == ":warning: BACK UP FIRST :+1:"
    assert protected_spans("At 10:30:45 a:b and std::map, x : y") == []  # times, ratios and C++ names are words


def test_an_autolink_or_footnote_reference_is_one_span_however_many_openers_come_before_it():
    from aigc.markdown_blocks import protected_spans

    assert protected_spans("<http://" * 3 + "example.org> and [^[^1]") == ["<http://example.org>", "[^1]"]  # no span runs across another's opener


def test_split_sentences_keeps_abbreviations_together():
    assert split_sentences("Dr. Smith came at 5 p.m. and left. He said “hi.” Then e.g. this! 你好。再见。") == [
        "Dr. Smith came at 5 p.m. and left.",
        "He said “hi.”",
        "Then e.g. this!",
        "你好。",
        "再见。",
    ]


@pytest.mark.parametrize(
    "value, code, name",
    [("zh", "zh", "Chinese"), ("Chinese", "zh", "Chinese"), ("de", "de", "German"), ("GERMAN", "de", "German"),
     ("Deutsch", "de", "German"), ("pt-BR", "pt-BR", "Brazilian Portuguese"), ("pt_br", "pt-BR", "Brazilian Portuguese"),
     ("es-AR", "es-AR", "Spanish (es-AR)"), ("Farsi", "fa", "Persian"), ("日本語", "ja", "Japanese"), ("deu", "de", "German"),
     ("ger", "de", "German"), ("fra", "fr", "French"), ("sr-latn", "sr-Latn", "Serbian in Latin script"), ("deu-CH", "de-CH", "German (de-CH)"),
     ("es-419", "es-419", "Spanish (Latin America)"), ("Portuguese (Brazil)", "pt-BR", "Brazilian Portuguese"), ("Chinese (Simplified)", "zh-CN", "Simplified Chinese"), ("chinese (traditional)", "zh-TW", "Traditional Chinese"), ("French (Canada)", "fr-CA", "French (fr-CA)")],
)
def test_languages_by_name_or_code(value, code, name):
    lang = lookup(value)
    assert (lang.code, lang.name) == (code, name)


def test_unknown_language_lists_close_matches():
    with pytest.raises(BadInputError, match=r"unknown language 'Germn'; did you mean German \(de\)"):
        lookup("Germn")
    with pytest.raises(BadInputError, match="unknown language 'xx'"):
        lookup("xx")
    with pytest.raises(BadInputError) as caught:
        lookup("deux")
    assert str(caught.value).count("German (de)") == 1  # German's code and native name suggest it once
    for typo, meant in (("Germna", "German (de)"), ("Frnech", "French (fr)"), ("portugese", "Portuguese (pt)"), ("Ukranian", "Ukrainian (uk)")):
        with pytest.raises(BadInputError, match=rf"unknown language '{typo}'; did you mean {re.escape(meant)}"):
            lookup(typo)
    for far in ("Klingonese", "Klingon", "Dothraki", "Esperanto"):  # no language near: nothing suggested
        with pytest.raises(BadInputError, match=rf"^unknown language '{far}'; give a name or ISO code"):
            lookup(far)


@pytest.mark.parametrize(
    "options, words",
    [({"target_language": None}, "target_language=French or target_language=fr"), ({"target_language": "Klingon"}, "unknown language"),
     ({"target_language": "fr", "source_language": "French"}, "both French"), ({"source_language": "nope"}, "unknown language"),
     ({"chunk_tokens": 2}, "^chunk_tokens must"), ({"glossary": [("a",)]}, "glossary entry"), ({"colour": 1}, "colour: translate has no such option")],
)
def test_bad_options(options, words):
    with pytest.raises(BadInputError, match=words):
        translate("Hello.", **options)


def test_empty_input():
    with pytest.raises(BadInputError, match="no text"):
        translate("   ")


def test_glossary_parsing():
    text = "# terms\nsource\ttarget\n\nhospital\tKrankenhaus\nfront door\tHaustür\nHospital\tKrankenhaus\n"
    assert parse_glossary(text) == [("hospital", "Krankenhaus"), ("front door", "Haustür")]
    assert parse_glossary('"cat"\t"le ""chat"""\n') == [("cat", 'le "chat"')]  # cells quoted as spreadsheets write them
    assert parse_glossary("# a comment\n#no tab: a comment\n# source\ttarget\n#include\t#include\n#hashtag\t#motdièse\n") == [("#include", "#include"), ("#hashtag", "#motdièse")]


def test_a_csv_glossary_is_read_by_its_commas(tmp_path):
    path = tmp_path / "terms.csv"
    path.write_text('source,target\n# a comment\nhospital,Krankenhaus\n"bed, single","Bett, einzeln"\n"le ""chat""", cat\n', encoding="utf-8")
    assert load_glossary(path) == [("hospital", "Krankenhaus"), ("bed, single", "Bett, einzeln"), ('le "chat"', "cat")]
    path.write_text("hospital,Krankenhaus\nfront door\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"terms.csv:2: expected 'source,target', found no comma: 'front door'"):
        load_glossary(path)
    (tmp_path / "terms.tsv").write_text("bed, single\tBett\n", encoding="utf-8")
    assert load_glossary(tmp_path / "terms.tsv") == [("bed, single", "Bett")]  # a .tsv's commas are text


def test_a_csv_glossary_skips_the_space_after_a_comma(tmp_path):
    path = tmp_path / "terms.csv"
    path.write_text('cat, "chat"\ndog, chien\n"a, b", "c, d"\n', encoding="utf-8")
    assert load_glossary(path) == [("cat", "chat"), ("dog", "chien"), ("a, b", "c, d")]
    path.write_text('cat, "chat\n', encoding="utf-8")
    with pytest.raises(BadInputError, match=r"terms.csv:1: .*a quoted cell opens on this row and is never closed"):
        load_glossary(path)


def test_a_csv_glossary_is_read_as_every_other_csv(tmp_path):
    path = tmp_path / "terms.csv"
    path.write_text("source;target\ncat;chat\n", encoding="utf-8")
    assert load_glossary(path) == [("cat", "chat")]  # a header split by semicolons, as a spreadsheet writes it
    path.write_text("# terms\nsep=|\nbed, single|lit, simple\n", encoding="utf-8")
    assert load_glossary(path) == [("bed, single", "lit, simple")]  # `sep=` names the delimiter
    path.write_text('cat,chat\n"hot\ndog",hot-dog\ndog,chien\n', encoding="utf-8")
    assert load_glossary(path) == [("cat", "chat"), ("hot\ndog", "hot-dog"), ("dog", "chien")]  # a quoted cell holds a line break
    path.write_text('"hot\ndog",hot-dog\ndog\n', encoding="utf-8")
    with pytest.raises(BadInputError, match=r"terms.csv:3: expected 'source,target', found no comma: 'dog'"):
        load_glossary(path)  # lines counted in the file, past a cell's line break
    path.write_text("cat;chat\ndog\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"terms.csv:2: expected 'source;target', found no semicolon: 'dog'"):
        load_glossary(path)
    path.write_text('cat,"chat\ndog,chien\n', encoding="utf-8")
    with pytest.raises(BadInputError, match=r"terms.csv:1: cannot read it as CSV: a quoted cell opens on this row and is never closed$"):
        load_glossary(path)


@pytest.mark.parametrize(
    "header",
    ["Source\tTarget", "TERM\tTranslation", "src\ttgt", "Word\tTranslation", "Source term\tTarget term", "source_term\ttarget_term",
     "Source Language\tTarget Language", "Source text\tTranslation", "term\tdefinition", "Original\tÜbersetzung", "en\tde", "English\tGerman", '"en"\t"Deutsch"',
     "English term\tGerman term", "EN text\tDE translation", "Begriff\tÜbersetzung", "Quelle\tZiel", "terme\ttraduction", "Término\tTraducción",
     "bron\tvertaling", "en_US\tde_DE"],
)
def test_a_glossary_header_row_is_skipped_by_its_column_names_or_the_runs_languages(header):
    assert parse_glossary(f"{header}\nhospital\tKrankenhaus\n", languages=("en", "German")) == [("hospital", "Krankenhaus")]
    assert parse_glossary(f"{header}\nhospital\tKrankenhaus\n", languages=("auto", "de")) == [("hospital", "Krankenhaus")]
    assert parse_glossary(f"hospital\tKrankenhaus\n{header}\n", languages=("en", "de"))[0] == ("hospital", "Krankenhaus")  # only a first row is a header
    assert len(parse_glossary(f"hospital\tKrankenhaus\n{header}\n", languages=("en", "de"))) == 2


@pytest.mark.parametrize(("header", "languages"), [("en-US\tde-DE", ("en", "de")), ("en-US\tde-DE", ("auto", "de")), ("en\tzh", ("en", "zh-CN")), ("en\tzh-CN", ("auto", "zh"))])
def test_a_glossary_header_of_the_runs_languages_may_name_them_with_or_without_a_region(header, languages):
    assert parse_glossary(f"{header}\nhospital\tKrankenhaus\n", languages=languages) == [("hospital", "Krankenhaus")]


def test_a_first_glossary_row_of_words_or_other_languages_is_a_term():
    assert parse_glossary("German\tDeutsch\ncat\tKatze\n") == [("German", "Deutsch"), ("cat", "Katze")]
    assert parse_glossary("source code\tQuellcode\n") == [("source code", "Quellcode")]
    assert parse_glossary("Text\ttext\n") == [("Text", "text")]  # one name twice is no pair of columns
    for languages in (("en", "de"), ("auto", "de"), None):  # English "it" is German "es": not Italian and Spanish
        assert parse_glossary("it\tes\nhe\ter\n", languages=languages) == [("it", "es"), ("he", "er")]
    assert parse_glossary("fr\tde\ncat\tKatze\n", languages=("en", "de"))[0] == ("fr", "de")  # not this run's source language
    assert parse_glossary("en\tde\ncat\tKatze\n")[0] == ("en", "de")  # no run's languages to name
    assert parse_glossary("English term\tGerman term\ncat\tKatze\n") == [("cat", "Katze")]  # languages with column words: a header anyway
    assert parse_glossary("German text\tdeutscher Text\ncat\tKatze\n")[0] == ("German text", "deutscher Text")
    assert parse_glossary("Anglais\tAllemand\ncat\tKatze\n", languages=("en", "de"))[0] == ("Anglais", "Allemand")  # not names lookup knows: a term
    assert parse_glossary("# Anglais\tAllemand\ncat\tKatze\n") == [("cat", "Katze")]  # a header written as a comment, as --help says


def test_a_glossary_header_of_the_runs_languages_is_skipped_from_the_command_and_options(echo, tmp_path):
    glossary = tmp_path / "g.tsv"
    glossary.write_text("English\tGerman\n", encoding="utf-8")
    assert TranslateOptions(target_language="fr", source_language="en", glossary=str(glossary)).terms == [("English", "German")]
    with pytest.raises(BadInputError, match="has no entries"):
        TranslateOptions(target_language="German", source_language="en", glossary=str(glossary))
    header_only = runner.invoke(app, ["translate", "-", "--from", "en", "--to", "de", "--glossary", str(glossary)], input="Hi.\n")
    assert header_only.exit_code == 2 and "has no entries" in header_only.stderr
    assert runner.invoke(app, ["translate", "-", "--to", "fr", "--glossary", str(glossary)], input="Hi.\n").exit_code == 0


@pytest.mark.parametrize(
    "text, message",
    [("a\tb\nno tab here\n", r"g.tsv:2: expected 'source<TAB>target', found no tab"),
     ("a\tb\tc\n", "g.tsv:1: .*found 3 columns"),
     ("a\t \n", "g.tsv:1: the target for 'a' is empty; give 'source<TAB>target'"),
     ("a\tb\n\t toit\n", "g.tsv:2: the source for 'toit' is empty; give 'source<TAB>target'"),
     ('""\t""\n', "g.tsv:1: expected 'source<TAB>target', found empty terms"),
     ("cat\tchat\nCat\tminou\n", r"g.tsv:2: 'Cat' is already translated as 'chat' on line 1"),
     ("# only a comment\n\n", "g.tsv has no entries")],
)
def test_bad_glossary_lines_name_the_line(text, message):
    with pytest.raises(BadInputError, match=message):
        parse_glossary(text, "g.tsv")


def test_glossary_files(tmp_path):
    good = tmp_path / "g.tsv"
    good.write_text("\ufeffcat\tchat\n", encoding="utf-8")
    assert load_glossary(good) == [("cat", "chat")]
    latin = tmp_path / "my latin.tsv"
    latin.write_bytes(b"caf\xe9\tcoffee\n")
    with pytest.raises(BadInputError) as failed:
        load_glossary(latin)
    assert str(failed.value).startswith(f"glossary {latin} is not valid UTF-8 (at line 1); ") and f" -t utf-8 '{latin}' > converted.tsv`" in str(failed.value)
    with pytest.raises(BadInputError, match="no such glossary file"):
        load_glossary(tmp_path / "missing.tsv")
    with pytest.raises(BadInputError, match=f"^{tmp_path} is a directory; give a file$"):
        load_glossary(tmp_path)
    assert TranslateOptions(target_language="fr", glossary=str(good)).terms == [("cat", "chat")]  # a path, as `-O glossary=g.tsv` gives it
    with pytest.raises(BadInputError, match="no such glossary file"):
        TranslateOptions(target_language="fr", glossary="missing.tsv")
    with pytest.raises(OptionError, match=r"^glossary must be a TSV file's path, a \{source: target\} dict or a list of \(source, target\) pairs, got int$"):
        TranslateOptions(target_language="fr", glossary=5)


def test_glossary_terms_are_prompted_enforced_and_misses_reported():
    engine = FakeEngine()
    engine.enqueue("Mein Bruder arbeitet im hospital.", "Die Katze schläft.", "Das Haus ist groß.")
    doc = "My brother works in a hospital.\n\nThe cat sleeps on the table.\n\nThe house is big."
    result, _ = translate(doc, engine, target_language="de", glossary={"hospital": "Krankenhaus", "table": "Tisch", "dog": "Hund"})
    assert result["translation"] == "Mein Bruder arbeitet im Krankenhaus.\n\nDie Katze schläft.\n\nDas Haus ist groß."
    assert result["glossary_misses"] == [{"source": "table", "target": "Tisch", "count": 1}]
    systems = [p[0]["content"] for p in engine.calls[0][0]]
    assert "- hospital: Krankenhaus" in systems[0] and "table" not in systems[0]
    assert "- table: Tisch" in systems[1] and "Always translate" not in systems[2]


@pytest.mark.parametrize("glossary_form, text_form", [("NFD", "NFC"), ("NFC", "NFD"), ("NFD", "NFD")])
def test_a_glossary_and_a_text_in_different_unicode_normal_forms_still_match(tmp_path, glossary_form, text_form):
    def form(kind, text):
        return unicodedata.normalize(kind, text)

    path = tmp_path / "mac.tsv"
    path.write_text(form(glossary_form, "café\tKaffeehaus\n서울\t首尔\n"), encoding="utf-8")  # as a Mac saves it
    engine = FakeEngine()
    engine.enqueue(form(text_form, "Das café in 서울 ist offen."))  # the model copies the terms through
    result, _ = translate(form(text_form, "The café in 서울 is open."), engine, target_language="de", source_language="en", glossary=str(path))
    assert result["translation"] == "Das Kaffeehaus in 首尔 ist offen." and result["glossary_misses"] == []
    assert "- café: Kaffeehaus" in engine.calls[0][0][0][0]["content"]  # the terms prompted in NFC


@pytest.mark.parametrize(
    "answer, shown",
    [
        ("東京에서 花見를 합니다.", "도쿄에서 꽃구경을 합니다."),  # 꽃구경 ends in a consonant: 을, not 를
        ("花見가 좋고 東京은 큽니다.", "꽃구경이 좋고 도쿄는 큽니다."),
        ("花見와 東京으로 갑니다.", "꽃구경과 도쿄로 갑니다."),
        ("東京의 花見이다.", "도쿄의 꽃구경이다."),  # 이다 (the copula), not a particle: as it is
    ],
)
def test_a_korean_particle_after_a_replaced_glossary_term_takes_the_form_that_goes_after_it(answer, shown):
    engine = FakeEngine()
    engine.enqueue(answer)  # the model copied the source terms through
    result, _ = translate("東京で花見をします。", engine, target_language="ko", source_language="ja", glossary={"花見": "꽃구경", "東京": "도쿄"})
    assert result["translation"] == shown and result["glossary_misses"] == []


def test_glossary_terms_are_never_enforced_inside_urls_link_targets_or_code():
    engine = FakeEngine()
    engine.enqueue("Ligue para o [bank](https://example.com/bank) hoje.", "Visite https://bank.example.com/bank agora.")
    doc = "Call the [bank](https://example.com/bank) today.\n\nVisit https://bank.example.com/bank now."
    result, _ = translate(doc, engine, target_language="pt-BR", glossary={"bank": "banco"})
    assert result["translation"] == "Ligue para o [banco](https://example.com/bank) hoje.\n\nVisite https://bank.example.com/bank agora."
    assert result["glossary_misses"] == []  # the second paragraph has the term only in its URL
    systems = [p[0]["content"] for p in engine.calls[0][0]]
    assert "- bank: banco" in systems[0] and "bank" not in systems[1]


def test_inflected_glossary_targets_count():
    engine = FakeEngine()
    engine.enqueue("Die Türen des Krankenhauses.")
    result, _ = translate("The doors of the hospital.", engine, target_language="de", glossary=[("hospital", "Krankenhaus")])
    assert result["glossary_misses"] == []


def test_empty_answers_keep_the_source_text_and_are_reported():
    result, _ = translate("Keep me.", FakeEngine())
    assert result["translation"] == "Keep me." and result["untranslated_texts"] == ["Keep me."]
    engine = FakeEngine()
    engine.enqueue("Bonjour.", "", "Lancez", "")  # the second sentence lost its code, then a piece of it came back empty
    result, _ = translate("Hello. Run `make` now.", engine)
    assert result["translation"] == "Bonjour. Lancez `make` now." and result["untranslated_texts"] == ["Run `make` now."]
    assert translate("Hello.")[0]["untranslated_texts"] == []


def test_the_command_warns_about_empty_translations_as_about_glossary_misses(monkeypatch):
    engine = FakeEngine()
    engine.enqueue("Bonjour.", "", "")
    monkeypatch.setattr(TranslateGenerator, "engine", property(lambda self: engine))
    result = runner.invoke(app, ["translate", "-", "--to", "fr", "--json"], input="# Hello.\n\nThe cat sleeps on the mat.\n\n- Bye.\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["translation"] == "# Bonjour.\n\nThe cat sleeps on the mat.\n\n- Bye."
    assert json.loads(result.stdout)["untranslated_texts"] == ["The cat sleeps on the mat.", "Bye."]
    assert result.stderr.rstrip().endswith(
        "Warning: the model gave no translation for 2 sentences ('The cat sleeps on the mat.', 'Bye.'); they are kept in the source language"
    )


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Here is the translation:\n\nLe chat dort.", "Le chat dort."),
        ("Sure! Here's the translation: Le chat dort.", "Le chat dort."),
        ("French: Le chat dort.", "Le chat dort."),
        ('"Le chat dort."', "Le chat dort."),
        ("« Le chat dort. »", "Le chat dort."),
        ("Le chat dort.\n\nIn this context, 'chat' means cat.", "Le chat dort."),
        ("Le chat dort. C'est un chat très mignon qui aime dormir toute la journée au soleil.", "Le chat dort."),
        ("Le chat dort. Il rêve.", "Le chat dort. Il rêve."),
    ],
)
def test_clean_translation(raw, clean):
    assert clean_translation(raw, "The cat sleeps.", lookup("fr")) == clean


@pytest.mark.parametrize(
    "raw, source, cut_off, clean, rambled",
    [
        ("Mai, erstellen wir eine kleine Eindruck über den Verkauf", "May", False, "Mai", True),
        ("Mai, erstellen w", "May", True, "Mai", True),  # max_tokens cut it off after the translation
        ("Mai, erstellen w", "May", False, "Mai, erstellen w", False),
        ("Die Anleitung (die eine lange Anleitung ist) - und so weiter", "the guide", False, "Die Anleitung", True),
        ("Verkäufe und noch viele weitere Wörter ohne jedes Ende hier", "Sales", False, "Verkäufe und noch", True),
        ("Lesen Sie zuerst die Anleitung, bevor Sie beginnen.", "Read the guide first, before you start.", False, "Lesen Sie zuerst die Anleitung, bevor Sie beginnen.", False),
        ("Lesen Sie zuerst die Anleitung, bevor Sie die lange Inst", "Read the guide first before you start the long install.", True, "Lesen Sie zuerst die Anleitung, bevor Sie die lange Inst", False),
    ],
)
def test_what_the_model_wrote_after_a_translation_in_the_same_sentence_is_cut(raw, source, cut_off, clean, rambled):
    assert without_rambling(raw, source, cut_off) == (clean, rambled)


class RamblingEngine(FakeEngine):
    """Answers each prompt with its text upper-cased, then goes on writing (", and then some")
    until `max_tokens` words."""

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        words = [(p[-1]["content"].upper() + ", and then some" * 50).split(" ") for p in prompts]
        return [[Completion(" ".join(w[: params.max_tokens]), 1, 1, "length")] for w in words]


def test_short_pieces_get_a_short_budget_and_come_back_short():
    result, engine = translate("| Month |\n|---|\n| May |\n", RamblingEngine())
    assert result["translation"] == "| MONTH |\n|---|\n| MAY |\n" and result["cut_off_texts"] == []  # said more than enough: not cut off
    assert engine.calls[0][1].max_tokens <= 16
    sentence = "Then a much longer sentence with many words in it that goes on for a while."
    result, engine = translate(sentence, RamblingEngine())
    assert result["translation"] == sentence.upper() and engine.calls[0][1].max_tokens >= 3 * len(sentence.split())
    _, engine = translate("May", RamblingEngine(), sampling={"max_tokens": 300})
    assert engine.calls[0][1].max_tokens == 300  # --max-tokens as asked


def test_result_shape():
    result, _ = translate("Hello.", source_language="English", target_language="pt-BR")
    assert result == {
        "translation": "HELLO.", "source_language": "en", "target_language": "pt-BR", "glossary_misses": [], "missing_placeholders": [], "cut_off": False, "cut_off_texts": [], "untranslated_texts": []
    }


# --- the command -----------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def echo(monkeypatch):
    """The command on the echo engine instead of a model."""
    engine = EchoEngine()
    monkeypatch.setattr(TranslateGenerator, "engine", property(lambda self: engine))
    return engine


def test_command_prints_the_translation(echo, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\n- one\n- two\n")
    result = runner.invoke(app, ["translate", str(doc), "--to", "German"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "# TITLE\n\n- ONE\n- TWO\n"


def test_a_txt_file_and_lines_are_plain_text(echo, tmp_path):
    novel = tmp_path / "novel.txt"
    novel.write_text("    It was a dark night.\n\n    The rain fell.\n")
    assert runner.invoke(app, ["translate", str(novel), "--to", "fr"]).stdout == "    IT WAS A DARK NIGHT.\n\n    THE RAIN FELL.\n"
    lines = runner.invoke(app, ["translate", "-", "--lines", "--to", "fr"], input="    I have a dog.\r\n<div>Good morning.</div>\r\n")
    assert lines.stdout == "    I HAVE A DOG.\n<div>GOOD MORNING.</div>\n"  # each line is text (its tags kept), not code or an HTML block; its indent kept
    as_json = runner.invoke(app, ["translate", "-", "--lines", "--json", "--to", "fr"], input="    I have a dog.\r\n")
    assert json.loads(as_json.stdout)["translation"] == "    I HAVE A DOG."  # as the text output has it
    out = tmp_path / "out.jsonl"
    assert runner.invoke(app, ["batch", "translate", "-i", str(novel), "-o", str(out), "-O", "target_language=fr"]).exit_code == 0
    assert [json.loads(row)["result"]["translation"] for row in out.read_text().splitlines()] == ["    IT WAS A DARK NIGHT.", "    THE RAIN FELL."]
    markdown = runner.invoke(app, ["batch", "translate", "-i", str(novel), "-o", str(tmp_path / "md.jsonl"), "-O", "target_language=fr", "-O", "plain=false"])
    assert markdown.exit_code == 0 and "It was a dark night." in (tmp_path / "md.jsonl").read_text()  # -O plain=false: an indented line is code
    marked = runner.invoke(app, ["translate", "-", "--lines", "--markdown", "--to", "fr"], input="    I have a dog.\n<div>Good morning.</div>\n")
    assert marked.exit_code == 0 and marked.stdout == "    I have a dog.\n<div>GOOD MORNING.</div>\n"  # --markdown: each line is Markdown (code; an HTML block's words), as -O plain=false


def test_a_csv_or_tsv_cell_is_plain_text_so_its_line_breaks_stay_and_a_jsonl_one_is_markdown(echo, tmp_path):
    (tmp_path / "a.csv").write_text('id,text\n1,"Acme Ltd\n12 High St\nLondon"\n')  # a cell with Alt+Enter: an address
    (tmp_path / "a.tsv").write_text('id\ttext\n1\t"Acme Ltd\n12 High St\nLondon"\n')
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": 1, "text": "Acme Ltd\n12 High St\nLondon"}) + "\n")
    for name, translation in (("a.csv", "ACME LTD\n12 HIGH ST\nLONDON"), ("a.tsv", "ACME LTD\n12 HIGH ST\nLONDON"), ("a.jsonl", "ACME LTD 12 HIGH ST LONDON")):
        out = tmp_path / f"{name}.jsonl"
        result = runner.invoke(app, ["batch", "translate", "-i", str(tmp_path / name), "-o", str(out), "-O", "target_language=fr"])
        assert result.exit_code == 0, result.output
        row = json.loads(out.read_text())
        assert (row["result"]["translation"], row["made_with"]) == (translation, {"target_language": "fr"}), name  # plain is a cell's default, not listed
    marked = runner.invoke(app, ["batch", "translate", "-i", str(tmp_path / "a.csv"), "-o", str(tmp_path / "md.jsonl"), "-O", "target_language=fr", "-O", "plain=false"])
    assert marked.exit_code == 0 and json.loads((tmp_path / "md.jsonl").read_text())["result"]["translation"] == "ACME LTD 12 HIGH ST LONDON"  # -O plain=false: a cell of Markdown, its lines one paragraph


def test_a_csv_output_made_when_cells_were_markdown_resumes_as_it_was_made(echo, tmp_path):
    (tmp_path / "a.csv").write_text('id,text\n1,"Hello there.\nSecond line."\n2,"Acme Ltd\n12 High St"\n')
    out = tmp_path / "out.jsonl"
    first = runner.invoke(app, ["batch", "translate", "-i", str(tmp_path / "a.csv"), "-o", str(out), "-O", "target_language=fr"])
    assert first.exit_code == 0, first.output
    old = {**json.loads(out.read_text().split("\n")[0]), "settings": "1c7d23471961"}  # row 1 as aigc dd11bea wrote it, cells read as Markdown
    old.pop("templates")
    out.write_text(json.dumps(old) + "\n")
    resumed = runner.invoke(app, ["batch", "translate", "-i", str(tmp_path / "a.csv"), "-o", str(out), "-O", "target_language=fr"])
    assert resumed.exit_code == 0, resumed.output
    assert "made reading the csv cells as Markdown" in resumed.stderr and "1 already done" in resumed.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["settings"] for r in rows] == ["1c7d23471961"] * 2 and rows[1]["result"]["translation"] == "ACME LTD 12 HIGH ST"  # row 2 read as row 1 was


def test_a_lines_result_is_one_line_with_its_indent_kept():
    from aigc.cli.lines import one_line

    assert one_line("  Le chien.\n\n  Il dort.\r\n") == "  Le chien. Il dort." and one_line("\n\n") == ""


@pytest.mark.parametrize("name", ["notes.rst", "NOTES"])
def test_a_file_neither_md_nor_txt_is_markdown_with_a_warning_and_plain_or_markdown_chooses(echo, tmp_path, name):
    doc = tmp_path / name
    doc.write_text("Title\n\n    indented line\n")
    guessed = runner.invoke(app, ["translate", str(doc), "--to", "fr"])
    assert guessed.exit_code == 0 and guessed.stdout == "TITLE\n\n    indented line\n"  # Markdown: an indented line is code
    assert guessed.stderr.startswith(f"Warning: {doc}: read as Markdown (") and "give --plain" in guessed.stderr
    plain = runner.invoke(app, ["translate", str(doc), "--to", "fr", "--plain"])
    assert plain.stdout == "TITLE\n\n    INDENTED LINE\n" and plain.stderr == ""
    markdown = runner.invoke(app, ["translate", str(doc), "--to", "fr", "--markdown"])
    assert markdown.stdout == guessed.stdout and markdown.stderr == ""
    doc.rename(tmp_path / "notes.md")
    assert runner.invoke(app, ["translate", str(tmp_path / "notes.md"), "--to", "fr"]).stderr == ""
    txt = tmp_path / "notes.txt"
    txt.write_text("    indented line\n")
    assert runner.invoke(app, ["translate", str(txt), "--to", "fr", "--markdown"]).stdout == "    indented line\n"
    both = runner.invoke(app, ["translate", str(txt), "--to", "fr", "--plain", "--markdown"])
    assert both.exit_code == 2 and both.stderr == "Error: give --plain or --markdown, not both: a document is read one way\n"


@pytest.mark.parametrize("doc", ["```\nprint('hi')\n```\n", "    code only\n\n---\n\n| 1 | 2 |\n", "42\n"])
def test_a_document_with_nothing_to_translate_is_given_back_with_a_warning(echo, doc):
    result = runner.invoke(app, ["translate", "-", "--to", "fr"], input=doc)
    assert result.exit_code == 0 and result.stdout == doc and not echo.calls
    assert result.stderr == "Warning: standard input has nothing to translate (only code, markup or numbers); it is given back as it is\n"
    assert runner.invoke(app, ["translate", "-", "--to", "fr"], input=doc + "\nWords.\n").stderr == ""


@pytest.mark.parametrize("text", ["", "   "])
def test_no_text_at_all_is_the_one_error_without_the_nothing_to_translate_warning(echo, text):
    result = runner.invoke(app, ["translate", text, "--to", "fr"])
    assert result.exit_code == 2 and result.stderr == "Error: there is no text to translate\n" and not echo.calls


def test_an_html_file_is_translated_as_markdown_with_its_code_untouched(echo, tmp_path):
    page = tmp_path / "page.html"
    page.write_text('<h1>Hours</h1><ul><li>Open <a href="https://x.org/h">daily</a>.</li></ul><pre><code>hours = "10-21"</code></pre>')
    result = runner.invoke(app, ["translate", str(page), "--to", "fr"])
    assert result.stdout == '# HOURS\n\n- OPEN [DAILY](https://x.org/h).\n\n```\nhours = "10-21"\n```\n'  # the link's target kept
    assert "HTML is translated as Markdown" in result.stderr and "name it .md" not in result.stderr
    out = tmp_path / "page.fr.html"
    written = runner.invoke(app, ["translate", str(page), "--to", "fr", "-o", str(out)])
    assert written.exit_code == 0 and out.read_text().startswith("# HOURS")
    assert f"-o {out} gets Markdown, not HTML: name it .md" in written.stderr  # a browser would show it as one run of text


def test_command_reads_stdin_and_prints_json(echo):
    result = runner.invoke(app, ["translate", "-", "--to", "es", "--from", "en", "--json"], input="Hello there.\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "translation": "HELLO THERE.", "source_language": "en", "target_language": "es", "glossary_misses": [], "missing_placeholders": [], "cut_off": False, "cut_off_texts": [],
        "untranslated_texts": [], "model": "fake",
    }


def test_a_translation_cut_off_by_max_tokens_says_so(echo):
    result = runner.invoke(app, ["translate", "-", "--to", "es", "--max-tokens", "2", "--json"], input="Take the five six train.\n")
    assert result.exit_code == 0 and json.loads(result.stdout)["cut_off"] is True
    assert result.stderr.rstrip().endswith("Warning: the translation of 'Take the five six train.' was cut off at the token limit; raise --max-tokens (default: about 3x the sentence's tokens)")
    assert json.loads(result.stdout)["cut_off_texts"] == ["Take the five six train."]
    doc = "# Title\n\nShort one. Then a much longer sentence with many words in it.\n\n- And an item that runs on too.\n"
    several = runner.invoke(app, ["translate", "-", "--to", "es", "--max-tokens", "3"], input=doc)
    assert several.stderr.rstrip().endswith(
        "Warning: the translations of 2 sentences ('Then a much longer sentence with ...', 'And an item that runs on ...') were cut off at the token limit; "
        "raise --max-tokens (default: about 3x the sentence's tokens)"
    )
    assert "Warning" not in runner.invoke(app, ["translate", "-", "--to", "es"], input="Take the train.\n").stderr


def test_command_writes_the_output_file_atomically(echo, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Hello.")
    out = tmp_path / "out.md"
    out.write_text("old")
    result = runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and out.read_text() == "HELLO.\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["doc.md", "out.md"]  # no temp file left


def test_command_warns_once_per_missed_glossary_term(monkeypatch, tmp_path):
    engine = FakeEngine()
    engine.enqueue("Le chat.", "Le chien.", "Le chat encore.")
    monkeypatch.setattr(TranslateGenerator, "engine", property(lambda self: engine))
    doc = tmp_path / "doc.md"
    doc.write_text("The cat.\n\nThe dog.\n\nThe cat again.")
    glossary = tmp_path / "g.tsv"
    glossary.write_text("cat\tminou\ndog\tchien\n")
    result = runner.invoke(app, ["translate", str(doc), "--to", "fr", "--glossary", str(glossary)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Le chat.\n\nLe chien.\n\nLe chat encore.\n"
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert warnings == ["Warning: glossary term 'cat' is not translated as 'minou' (2 times)"]


@pytest.mark.parametrize(
    "args, words",
    [(["--to", "Klingon"], "--to: unknown language 'Klingon'"), (["--to", "de", "--from", "Germn"], "--from: unknown language 'Germn'; did you mean German"),
     (["--to", "de", "--from", "German"], "both German"),
     (["--to", "ja-JP", "--from", "ja-JP"], "--to and --from are both Japanese (ja-JP); nothing to translate"),
     (["--to", "fr", "--glossary", "BAD"], "g.tsv:2: expected"), (["--to", "fr", "--glossary", "MISSING"], "no such glossary file")],
)
def test_bad_input_is_one_line_with_exit_2_and_no_output_file(echo, tmp_path, args, words):
    doc = tmp_path / "doc.md"
    doc.write_text("Hello.")
    (tmp_path / "g.tsv").write_text("a\tb\nbroken\n")
    args = [str(tmp_path / "g.tsv") if a == "BAD" else str(tmp_path / "none.tsv") if a == "MISSING" else a for a in args]
    out = tmp_path / "out.md"
    result = runner.invoke(app, ["translate", str(doc), *args, "-o", str(out)])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error:") and words in lines[0]
    assert not out.exists() and not echo.calls


def test_command_on_a_tiny_model(tiny_model_dir, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Bees\n\n- Bees make honey.\n- Cities have roofs.\n\n```\ncode\n```\n")
    result = runner.invoke(app, ["translate", str(doc), "--to", "fr", "-m", str(tiny_model_dir), "--max-tokens", "6", "--json"])
    assert result.exit_code == 0, result.output
    lines = json.loads(result.stdout)["translation"].split("\n")
    assert lines[0].startswith("# ") and lines[2].startswith("- ") and lines[3].startswith("- ") and lines[5:] == ["```", "code", "```"]


def test_translate_help_never_imports_torch():
    assert imports_after(["translate", "--help"]) == "False False"


STRUCTURED = """+++
title = "Release notes"
+++
- Install it:

    ```
    pip install foo  # then run it. Done.
    ```

- Or build it:

        make all. Then test.

> ```bash
> rm -rf build. # keep
> ```

> First quoted paragraph.
>
> Second one.
> > Nested deeper.

> [!NOTE]
> Read the [Docs][] first.

| `a \\| b` | Either one. |
|---|---|"""


def test_code_in_list_items_and_quotes_front_matter_and_escaped_pipes_are_kept():
    result, _ = translate(STRUCTURED)
    assert result["translation"] == STRUCTURED.replace("Install it", "INSTALL IT").replace("Or build it", "OR BUILD IT").replace(
        "First quoted paragraph.", "FIRST QUOTED PARAGRAPH."
    ).replace("Second one.", "SECOND ONE.").replace("Nested deeper.", "NESTED DEEPER.").replace("Read the", "READ THE").replace(
        "first.", "FIRST."
    ).replace("Either one.", "EITHER ONE.").replace("Release notes", "RELEASE NOTES")  # the front matter's title too


def test_inline_code_with_a_full_stop_is_never_cut_into_two_sentences():
    engine = KeepsCodeEngine()
    result, engine = translate("Run `git commit -m 'Fix. Done'` now. Then push.", engine)
    assert [p[-1]["content"] for p in engine.calls[0][0]] == ["Run `git commit -m 'Fix. Done'` now.", "Then push."]
    assert "`git commit -m 'Fix. Done'`" in result["translation"]


def test_plain_text_has_no_indented_code_or_html_blocks():
    text = "    An indented first line, as a novel's paragraph starts, wrapped at the margin\nof a paragraph.\n\n<pre>Good morning.</pre>"
    assert translate(text)[0]["translation"] == text.replace("of a paragraph", "OF A PARAGRAPH")  # Markdown: code, a paragraph, an HTML block
    assert translate(text, plain=True)[0]["translation"] == "    AN INDENTED FIRST LINE, AS A NOVEL'S PARAGRAPH STARTS, WRAPPED AT THE MARGIN OF A PARAGRAPH.\n\n<pre>GOOD MORNING.</pre>"


def test_plain_text_keeps_the_line_breaks_no_wrapping_made():
    mail = "From: Ann <ann@example.com>\nSubject: Lunch\n\nEggs\nFlour\n\nBest regards,\nAnn"
    assert translate(mail, plain=True)[0]["translation"] == mail.upper().replace("ANN@EXAMPLE.COM", "ann@example.com")
    assert translate(mail)[0]["translation"].count("\n") == 4  # Markdown: lines of a paragraph are joined
    wrapped = textwrap.fill("The rain fell on the town all night, and the river rose over its banks by morning. " * 3, 72)
    assert translate(wrapped, plain=True)[0]["translation"] == " ".join(wrapped.split("\n")).upper()  # wrapped lines are joined
    lines = "The first paragraph is one long line, as an editor that wraps on screen saves it.\nThe second is one too, and longer than the first, as no wrapping at any usual margin would ever leave a line here.\nThe third."
    assert translate(lines, plain=True)[0]["translation"] == lines.upper()


def test_chinese_plain_text_keeps_a_paragraph_a_line_and_joins_wrapped_lines_without_spaces():
    first, second, third = "城市里的蜜蜂越来越多" * 5 + "。", "专家说这是好事" * 4 + "。", "最后一段。"  # 51, 29 and 5 characters: 102, 58 and 10 columns
    assert translate("\n".join([first, second, third]), plain=True)[0]["translation"] == "\n".join([first, second, third])
    uneven = ["屋顶养蜂" * 6 + "。", "蜜蜂采集花蜜" * 6 + "。", "城市的屋顶上有很多蜂箱" * 4 + "。"]  # 25, 37 and 45 characters: the next line's first character would have fit
    assert translate("\n".join(uneven), plain=True)[0]["translation"] == "\n".join(uneven)
    paragraph = "人工智能正在改变内容创作的方式，许多公司开始使用大型语言模型来撰写新闻稿，但是专家警告说，这些模型可能产生不准确的信息，读者需要提高媒体素养。"
    wrapped = "\n".join(paragraph[at : at + 35] for at in range(0, len(paragraph), 35))  # wrapped at 70 columns
    assert translate(f"{wrapped}\n\n{wrapped}", plain=True)[0]["translation"] == f"{paragraph}\n\n{paragraph}"  # joined, without spaces


@pytest.mark.parametrize(
    "raw, source, clean",
    [
        ("Certainly not!", "Certainement pas !", "Certainly not!"),
        ("Okay, let's go.", "D'accord, allons-y.", "Okay, let's go."),
        ("English: a global language.", "Anglais : une langue mondiale.", "English: a global language."),
        ("Sure! English: The cat sleeps.", "Le chat dort.", "The cat sleeps."),
        ("I have a dog. It is big and it likes to run.", "我有一只狗，它很大，喜欢跑。", "I have a dog. It is big and it likes to run."),
        ("Sure! Good morning to you.", "Bonjour à vous.", "Good morning to you."),
        ("Translation: Time: 10:30", "Heure : 10h30", "Time: 10:30"),
    ],
)
def test_clean_translation_keeps_openings_that_are_the_translation(raw, source, clean):
    assert clean_translation(raw, source, lookup("en")) == clean


@pytest.mark.parametrize("raw", ["Translation: 注意：电池电量低。", "Here is the translation: 注意：电池电量低。", "Chinese: 注意：电池电量低。"])
def test_clean_translation_drops_a_label_before_a_translated_one(raw):
    assert clean_translation(raw, "Note: the battery is low.", lookup("zh")) == "注意：电池电量低。"


def test_glossary_terms_count_in_chinese_and_japanese_without_spaces():
    engine = FakeEngine()
    engine.enqueue("我有一只狗。", "我有一只dog。")
    result, _ = translate("I have a dog.\n\nI have a dog.", engine, target_language="zh", glossary={"dog": "狗"})
    assert result["translation"] == "我有一只狗。\n\n我有一只狗。" and result["glossary_misses"] == []


def test_a_long_sentence_without_spaces_is_cut_into_runs_of_characters():
    from aigc.sentences import word_runs

    sentence = "这是一个很长的句子，" * 60
    runs = word_runs(sentence, size=1200, budget=100)
    assert "".join(runs) == sentence and 12 <= len(runs) <= 20 and all(run.endswith("，") for run in runs)


def test_glossary_replacements_go_longest_first_and_keep_a_capital():
    engine = FakeEngine()
    engine.enqueue("Cat care in New York City.")
    glossary = {"cat": "chat", "New York": "Nueva York", "New York City": "Ciudad de Nueva York"}
    result, _ = translate("Cat care in New York City.", engine, target_language="es", glossary=glossary)
    assert result["translation"] == "Chat care in Ciudad de Nueva York." and result["glossary_misses"] == []


def test_lines_output_lines_up_with_the_input_trailing_blank_lines_included(echo):
    result = runner.invoke(app, ["translate", "-", "--lines", "--to", "fr"], input="one.\n\ntwo.\n\n\n")
    assert result.stdout == "ONE.\n\nTWO.\n\n\n"


def test_heading_ids_mail_autolinks_and_math_blocks_are_kept():
    doc = "## Install {#install}\n\nMail <me@example.com> now.\n\n$$\nE = mc^2. Fine.\n$$"
    assert [b.kind for b in parse_blocks(doc) if b.kind != "blank"] == ["heading", "paragraph", "code"]
    result, _ = translate(doc, KeepsCodeEngine())
    assert "{#install}" in result["translation"] and "<me@example.com>" in result["translation"] and "$$\nE = mc^2. Fine.\n$$" in result["translation"]


def test_a_windows_file_comes_back_with_its_line_endings(echo, tmp_path):
    doc, out = tmp_path / "doc.md", tmp_path / "out.md"
    doc.write_bytes(b"# Title\r\n\r\nSome text.\r\n")
    assert runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)]).exit_code == 0
    assert out.read_bytes() == b"# TITLE\r\n\r\nSOME TEXT.\r\n"


def test_a_long_token_in_a_spaced_language_is_never_cut_inside():
    from aigc.sentences import word_runs

    uri = "data:image/png;base64," + "A" * 400
    assert word_runs(f"See ![d]({uri}) now.", size=300, budget=100) == ["See", f"![d]({uri})", "now."]


@pytest.mark.parametrize(
    "doc, kinds",
    [
        ("Para.\n\n    ```\n    not closed\n\nParagraph after.", ["paragraph", "code", "paragraph"]),  # indented code, not a fence
        ("> Example:\n>\n>     rm -rf build\n\nAfter.", ["quote", "quote", "code", "paragraph"]),
        ("- [ ] Install:\n\n      pip install foo", ["item", "code"]),  # the task box is not the item's indent
    ],
)
def test_fences_and_indented_code_where_markdown_puts_them(doc, kinds):
    assert [b.kind for b in parse_blocks(doc) if b.kind != "blank"] == kinds


def test_plain_text_underlined_with_tildes_opens_no_code():
    blocks = parse_blocks("Chapter One\n~~~~~~~~~~~\n\nIt was a dark night.", plain=True)
    assert "code" not in [b.kind for b in blocks] and blocks[-1].texts == ["It was a dark night."]


def test_a_capitalised_target_keeps_its_own_capitals():
    engine = FakeEngine()
    engine.enqueue("Phone es bueno.")
    result, _ = translate("Phone is nice.", engine, target_language="es", glossary={"phone": "iPhone"})
    assert result["translation"] == "iPhone es bueno."  # not IPhone


def test_sentences_end_at_arabic_hindi_and_french_quoted_stops():
    assert split_sentences("Il a dit « Bonjour. » Puis il est parti.") == ["Il a dit « Bonjour. »", "Puis il est parti."]
    assert split_sentences("كيف حالك؟ أنا بخير.") == ["كيف حالك؟", "أنا بخير."]
    assert split_sentences("मैं ठीक हूँ। तुम कैसे हो?") == ["मैं ठीक हूँ।", "तुम कैसे हो?"]


@pytest.mark.parametrize(
    "doc, expected",
    [
        ("- Steps:\n  - Run:\n    ~~~\n    echo hello\n    ~~~", "- STEPS:\n  - RUN:\n    ~~~\n    echo hello\n    ~~~"),  # no blank line before the code
        ("1. Run:\n    ```\n    make all\n    ```", "1. RUN:\n    ```\n    make all\n    ```"),
        ("```ls``` lists files.\n\nThis is prose.", "```ls``` LISTS FILES.\n\nTHIS IS PROSE."),  # inline code, not a fence
        ("---\n\nIntro text.\n\n---\n\nMore.", "---\n\nINTRO TEXT.\n\n---\n\nMORE."),  # a rule, not front matter
        ("<?php\n\necho 'hi';\n?>\nAfter.", "<?php\n\necho 'hi';\n?>\nAFTER."),
        ("path C:\\  \nnext line", "PATH C:\\  \nNEXT LINE"),  # a backslash before a two-space break stays
        ("[^1]: First para.\n\n    Second para of note.", "[^1]: FIRST PARA.\n\n    SECOND PARA OF NOTE."),  # a footnote's paragraph, not code
        ("Keep `a  b` here, Bonjour\xa0!", "KEEP `a  b` HERE, BONJOUR\xa0!"),
        ('Click <span class="note">here</span>, $x = y$ costs $5 and $10.', 'CLICK <span class="note">HERE</span>, $x = y$ COSTS $5 AND $10.'),
    ],
)
def test_markdown_structure_the_fuzzer_found(doc, expected):
    assert translate(doc)[0]["translation"] == expected


def test_pathological_inputs_take_linear_time():
    import time

    from aigc.markdown_blocks import inline_parts, protected_ranges

    started = time.perf_counter()
    inline_parts("a " + "`" * 20000)
    text = "Run `x`. " * 20000
    assert len(split_sentences(text, protected_ranges(text))) == 20000
    parse_blocks("```x\n" * 10000, plain=True)
    inline_parts("x <!-- " * 20000)
    from aigc.sentences import word_runs

    spans = " ".join(f"`c{i}`" for i in range(8000))
    word_runs(spans, 40000, 100, protected_ranges(spans))
    assert time.perf_counter() - started < 10  # each took seconds to minutes: cubic or quadratic


def test_long_sentences_are_never_cut_inside_code_or_a_url():
    from aigc.sentences import word_runs

    sentence = "w " * 14 + "`Foo Bar` end."
    result, _ = translate(sentence, chunk_tokens=16)
    assert "`Foo Bar`" in result["translation"]
    chinese = "这是一个测试句子" * 5 + "请访问https://example.com/a,b,c了解`代码，内容，逗号`更多。"
    from aigc.markdown_blocks import protected_ranges

    runs = word_runs(chinese, 80, 16, protected_ranges(chinese))
    assert "".join(runs) == chinese and any("https://example.com/a,b,c" in run and "`代码，内容，逗号`" in run for run in runs)


@pytest.mark.parametrize(
    "raw, source, clean",
    [
        ("The translation team: Ann and Bob.", "L'équipe de traduction : Ann et Bob.", "The translation team: Ann and Bob."),
        ("Translation into English: The cat sleeps.", "Le chat dort.", "The cat sleeps."),
    ],
)
def test_clean_translation_strips_preambles_not_sentences_about_translation(raw, source, clean):
    assert clean_translation(raw, source, lookup("en")) == clean


def test_library_text_with_a_bom_or_crlf_keeps_its_front_matter_and_line_endings():
    result, _ = translate("\ufeff---\ntitle: x\n---\r\nHi there.\r\n\r\nBye.\r\n")
    assert result["translation"] == "---\r\ntitle: X\r\n---\r\nHI THERE.\r\n\r\nBYE.\r\n"


@pytest.mark.parametrize(
    "doc, first",
    [
        ("---\nfull name: Ann Smith\n---\nHi.", "front matter"), ("+++\n[params]\n+++\nHi.", "front matter"),
        ("---\n\ntitle: x\n---\nHi.", "front matter"), ("---\n# a comment\n---\nHi.", "front matter"),
        ("---\nTime 10:30 is late\n---\nx", "rule"), ("---\n\nIntro text.\n\n---\n\nMore.", "rule"),
    ],
)
def test_front_matter_is_told_from_a_rule(doc, first):
    assert parse_blocks(doc)[0].kind == first


def test_a_long_fence_a_continuation_indent_and_longer_preambles():
    assert translate("``````\nprint(1)\n``````\nThe cat sleeps.")[0]["translation"] == "``````\nprint(1)\n``````\nTHE CAT SLEEPS."
    assert translate("- Run `make\n  install` now")[0]["translation"].startswith("- RUN `make install`")
    for raw in ("Here's the translation of the text: Bonjour.", "Translation from English to French: Bonjour."):
        assert clean_translation(raw, "Hello.", lookup("fr")) == "Bonjour."
    assert clean_translation("French: Il y a trois options : A, B et C.", "There are three options: A, B and C.", lookup("fr")) == "Il y a trois options : A, B et C."


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_a_utf16_crlf_file_comes_back_with_crlf_and_in_utf16_in_a_file(echo, tmp_path, encoding):
    doc = tmp_path / "doc.txt"
    doc.write_bytes("\ufeffHello.\r\n\r\nBye.\r\n".encode(encoding))
    printed = runner.invoke(app, ["translate", str(doc), "--to", "fr"])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout_bytes == b"HELLO.\r\n\r\nBYE.\r\n"  # stdout stays UTF-8
    out = tmp_path / "out.txt"
    assert runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)]).exit_code == 0
    assert out.read_bytes() == "\ufeffHELLO.\r\n\r\nBYE.\r\n".encode(encoding)
    as_json = tmp_path / "out.json"
    assert runner.invoke(app, ["translate", str(doc), "--to", "fr", "--json", "-o", str(as_json)]).exit_code == 0
    assert json.loads(as_json.read_text(encoding="utf-8"))["translation"] == "HELLO.\n\nBYE."


def test_a_glossary_file_is_recorded_by_its_terms_for_a_batch_resume(tmp_path):
    first, second = tmp_path / "g.tsv", tmp_path / "copy.tsv"
    first.write_text("cat\tKatze\n", encoding="utf-8")
    second.write_text("cat\tKatze\n", encoding="utf-8")
    settings = [TranslateOptions(target_language="de", glossary=str(path)).settings()["glossary"] for path in (first, second)]
    assert settings == [[("cat", "Katze")]] * 2  # one glossary by two paths is the same run
    first.write_text("cat\tMieze\n", encoding="utf-8")
    assert TranslateOptions(target_language="de", glossary=str(first)).settings()["glossary"] != settings[0]  # an edited one is not


class CountsCharacters(EchoEngine):
    """A token a character, as a text in a script without spaces (Thai) or a base64 blob takes many."""

    def count_tokens(self, prompt):
        return len(prompt) if isinstance(prompt, str) else super().count_tokens(prompt)


@pytest.mark.parametrize("by_sentence", [True, False])
@pytest.mark.parametrize(
    "text",
    [
        "ภาษาไทยเป็นภาษาที่มีความซับซ้อน" * 40,  # no spaces between words, and marks that combine with the letter before
        "Look: " + "😀🎉" * 300,
        "Blob: " + "iVBORw0KGgo" * 100 + " ends.",
        "ภาษาไทยเป็นภาษา`1 + 2`ที่มีความซับซ้อน" * 20,  # the inline code in it stays whole
    ],
)
def test_text_with_no_space_to_cut_at_is_cut_between_characters_within_the_chunk_budget(text, by_sentence):
    result, engine = translate(text, CountsCharacters(), target_language="en", chunk_tokens=64, by_sentence=by_sentence)
    sent = [p[-1]["content"] for prompts, _ in engine.calls for p in prompts]
    pieces = segments(text, 64, CountsCharacters().count_tokens, by_sentence)
    assert sorted(sent) == sorted(pieces) and "".join("".join(pieces).split()) == "".join(text.split())  # each piece sent once, no second pass
    assert all(len(s) <= 64 for s in sent) and not any(unicodedata.category(s[0]).startswith("M") for s in sent) and all(s.count("`") % 2 == 0 for s in sent)
    assert "".join(result["translation"].split()) == "".join(text.upper().split())


def test_definition_lists_keep_each_term_and_definition_on_its_line():
    doc = "Term\n: The definition.\n\nOther term\n:   Another definition\n    that continues.\n: Second one.\n\n    More of it.\n\nAfter."
    assert translate(doc)[0]["translation"] == (
        "TERM\n: THE DEFINITION.\n\nOTHER TERM\n:   ANOTHER DEFINITION THAT CONTINUES.\n: SECOND ONE.\n\n    MORE OF IT.\n\nAFTER."
    )
    assert [b.kind for b in parse_blocks(doc) if b.kind != "blank"] == ["paragraph", "definition", "paragraph", "definition", "definition", "paragraph", "paragraph"]
    assert translate("> Term\n> : Its sense.")[0]["translation"] == "> TERM\n> : ITS SENSE."


def test_an_html_pages_quotes_nested_lists_and_definitions_come_back_as_markdown(echo, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<blockquote><p>Said.</p><p>Then.</p></blockquote><ul><li>Top<ul><li>Child</li></ul></li></ul><dl><dt>Term</dt><dd>Its sense.</dd></dl>")
    result = runner.invoke(app, ["translate", str(page), "--to", "fr"])
    assert result.stdout == "> SAID.\n>\n> THEN.\n\n- TOP\n\n  - CHILD\n\nTERM\n: ITS SENSE.\n"


def test_a_utf8_file_with_a_bom_keeps_it_in_the_output_file_but_not_on_stdout(echo, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_bytes(codecs.BOM_UTF8 + b"# Notes\r\n\r\nHello.\r\n")
    out = tmp_path / "out.md"
    assert runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)]).exit_code == 0
    assert out.read_bytes() == codecs.BOM_UTF8 + b"# NOTES\r\n\r\nHELLO.\r\n"  # a Windows file round-trips
    assert runner.invoke(app, ["translate", str(doc), "--to", "fr"]).stdout_bytes == b"# NOTES\r\n\r\nHELLO.\r\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le"])
def test_lines_of_a_file_with_a_bom_and_crlf_keep_both_in_the_output_file_but_not_on_stdout(echo, tmp_path, encoding):
    doc, out = tmp_path / "doc.txt", tmp_path / "out.txt"
    doc.write_bytes("\ufeffHello.\r\n\r\nBye.\r\n".encode(encoding))
    printed = runner.invoke(app, ["translate", str(doc), "--to", "fr", "--lines"])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout_bytes == b"HELLO.\n\nBYE.\n"  # no U+FEFF before the first line's text; lines end in LF, as --lines writes them
    assert runner.invoke(app, ["translate", str(doc), "--to", "fr", "--lines", "-o", str(out)]).exit_code == 0
    assert out.read_bytes() == "\ufeffHELLO.\r\n\r\nBYE.\r\n".encode(encoding)  # the file's encoding, mark and line ends, as translate -o keeps them
    assert runner.invoke(app, ["translate", str(doc), "--to", "fr", "--lines", "--json", "-o", str(out)]).exit_code == 0
    assert [json.loads(line)["line"] for line in out.read_bytes().decode("utf-8").splitlines()] == [1, 3]  # JSON Lines: UTF-8, no mark


def test_lines_of_a_file_in_lf_or_crlf_end_so_in_the_output_file(echo, tmp_path):
    out = tmp_path / "out.txt"
    for written, expected in [(b"Hello.\nBye.\n", b"HELLO.\nBYE.\n"), (b"Hello.\r\nBye.\r\n", b"HELLO.\r\nBYE.\r\n")]:
        doc = tmp_path / "doc.txt"
        doc.write_bytes(written)
        result = runner.invoke(app, ["translate", str(doc), "--to", "fr", "--lines", "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_bytes() == expected


class DroppingEngine(EchoEngine):
    """Upper-cases each prompt's last message, dropping its placeholders ({name}, %s), as a small model does."""

    def generate(self, prompts, params):
        dropped = [[{**m, "content": re.sub(r"\{\w+\}|%\w|\{\{[^}]*\}\}|\$\{\w+\}|:name\b", "", m["content"])} for m in p] for p in prompts]
        return super().generate(dropped, params)


@pytest.mark.parametrize("text", [
    "Hello {name}, you have %s new files.",
    "Delete {0} of {{count}} items in ${folder}?",
    "%1$s shared %(title)s with %d people and :name.",
    "{count, plural, one {# file} other {# files}} left.",
])
def test_placeholders_are_kept_like_inline_code_when_the_model_drops_them(text):
    result, _ = translate(text, engine=DroppingEngine(), plain=True)
    kept = re.findall(r"\{\{[^}]*\}\}|\$\{\w+\}|\{count, plural.*\}\}|\{\w+\}|%\(\w+\)s|%1\$s|%\w|:name\b", text)
    assert kept and all(result["translation"].count(p) == text.count(p) for p in kept), result["translation"]
    assert result["missing_placeholders"] == []


def test_a_percent_sign_a_time_or_a_url_is_no_placeholder():
    assert placeholders("50% done at 10:30, see http://x.org/a:b or :tada: (100 %)") == []


def test_a_placeholder_still_missing_from_a_translation_is_listed_and_warned_about():
    generator = TranslateGenerator(engine=EchoEngine())
    opts = TranslateOptions(target_language="de")
    prepared = generator.preprocess("Hello {name}, %s and %s.", opts)
    for segment in (s for chunk in prepared["chunks"] for s in chunk):
        segment.translation = "Hallo, %s."
    result = generator.postprocess(prepared, opts)
    assert result["missing_placeholders"] == [{"placeholder": "{name}", "count": 1}, {"placeholder": "%s", "count": 1}]
    assert "placeholder '{name}' is missing from the translation (once)" in " ".join(glossary_notes(result))


def test_docs_site_shortcode_and_admonition_lines_are_kept_their_text_and_titles_translated():
    doc = textwrap.dedent('''\
        ## Configure the {{< product >}} agent

        {{< note >}}
        Restart the agent.
        {{% /note %}}

        :::tip Good to know
        Use the flag.
        :::

        !!! note "Read this"
            Restart the agent
            after a change.

            A second one.

        Wait %d seconds.''')
    result, _ = translate(doc, engine=DroppingEngine())
    assert result["translation"] == textwrap.dedent('''\
        ## CONFIGURE THE {{< product >}} AGENT

        {{< note >}}
        RESTART THE AGENT.
        {{% /note %}}

        :::tip Good to know
        USE THE FLAG.
        :::

        !!! note "READ THIS"
            RESTART THE AGENT AFTER A CHANGE.

            A SECOND ONE.

        WAIT %d SECONDS.''')


def test_liquid_highlight_and_comment_blocks_are_kept_as_code_is_and_raw_blocks_translated():
    doc = textwrap.dedent('''\
        Run this:

        {% highlight ruby linenos %}
        puts "Hello world"

        def greet = "hi"
        {% endhighlight %}

        {%- raw -%}
        Use {{ page.title }} here.
        {%- endraw -%}

        {% comment %}
        Remember to update this page.
        {% endcomment %}

        Inline {% raw %}{{ x }}{% endraw %} stays text.''')
    engine = EchoEngine()
    sent = []
    engine.generate = lambda prompts, params, generate=engine.generate: sent.extend(m["content"] for p in prompts for m in p) or generate(prompts, params)
    result, _ = translate(doc, engine=engine)
    parts = doc.split("\n\n")
    assert result["translation"].split("\n\n")[1:5] == [parts[1], parts[2], "{%- raw -%}\nUSE {{ page.title }} HERE.\n{%- endraw -%}", parts[4]]
    assert result["translation"].startswith("RUN THIS:") and result["translation"].endswith("INLINE {% raw %}{{ x }}{% endraw %} STAYS TEXT.")
    assert sent and not any(word in text for text in sent for word in ("Hello world", "Remember"))


def test_a_post_wrapped_in_a_liquid_raw_block_is_translated():
    post = textwrap.dedent('''\
        ---
        title: Using Vue with Jekyll
        ---
        {% raw %}
        Vue templates use double braces, which Liquid also reads.

        So this whole post is wrapped in a raw block.

        ```html
        <p>{{ message }}</p>
        ```

        That is all there is to it.
        {% endraw %}
        ''')
    texts = [t for b in parse_blocks(post) for t in b.texts]
    assert texts == ["Using Vue with Jekyll", "Vue templates use double braces, which Liquid also reads.", "So this whole post is wrapped in a raw block.", "That is all there is to it."]
    result, _ = translate(post, engine=EchoEngine())
    assert "VUE TEMPLATES USE DOUBLE BRACES" in result["translation"] and "{% raw %}\n" in result["translation"] and "<p>{{ message }}</p>" in result["translation"]


def test_an_i18n_json_file_has_its_string_values_translated_and_keeps_its_shape(echo, tmp_path):
    strings = tmp_path / "strings.json"
    strings.write_text('{\n    "greeting": "Hello, {name}!",\n    "count": 3,\n    "empty": "",\n    "nested": {"save": "Save", "on": true, "list": ["Cancel", null]}\n}\n')
    out = tmp_path / "strings.de.json"
    result = runner.invoke(app, ["translate", str(strings), "--to", "de", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "read as Markdown" not in result.stderr
    assert out.read_text() == (
        '{\n    "greeting": "HELLO, {name}!",\n    "count": 3,\n    "empty": "",\n'
        '    "nested": {\n        "save": "SAVE",\n        "on": true,\n        "list": [\n            "CANCEL",\n            null\n        ]\n    }\n}\n'
    )
    shown = json.loads(runner.invoke(app, ["translate", str(strings), "--to", "de", "--json"]).stdout)
    assert json.loads(shown["translation"])["nested"]["save"] == "SAVE" and shown["missing_placeholders"] == []


def test_a_json_file_that_is_not_an_object_of_strings_is_read_as_markdown_as_before(echo, tmp_path):
    numbers = tmp_path / "numbers.json"
    numbers.write_text("[[1, 2], [3, 4]]\n")
    result = runner.invoke(app, ["translate", str(numbers), "--to", "de"])
    assert "read as Markdown (.json" in result.stderr


def test_batch_table_cells_are_escaped_as_formulas_by_default_and_as_they_are_with_no_escape_formulas(echo, tmp_path):
    import csv

    source = tmp_path / "ui.csv"
    source.write_text("id,text\n1,+ Add item\n2,-- Select --\n3,@mention someone\n")
    for flag, mark in (([], "'"), (["--no-escape-formulas"], "")):
        out = tmp_path / f"out{len(flag)}.csv"
        result = runner.invoke(app, ["batch", "translate", "-i", str(source), "-o", str(out), "--keep-columns", "-O", "target_language=de", *flag])
        assert result.exit_code == 0, result.output
        table = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
        assert [(row["text"], row["translation"]) for row in table] == [
            (mark + "+ Add item", mark + "+ ADD ITEM"), (mark + "-- Select --", mark + "-- SELECT --"), (mark + "@mention someone", mark + "@MENTION SOMEONE"),
        ]


def test_front_matter_title_and_description_are_translated_their_keys_and_quoting_kept():
    doc = "---\ntitle: Notes\ndescription: 'It''s \"here\"'\nslug: notes\ntags: [a, b]\n---\nHi.\n"
    assert translate(doc)[0]["translation"] == "---\ntitle: NOTES\ndescription: 'IT''S \"HERE\"'\nslug: notes\ntags: [a, b]\n---\nHI.\n"
    toml = '+++\ntitle = "Say \\"hi\\""\ndraft = true\n+++\nHi.'
    assert translate(toml)[0]["translation"] == '+++\ntitle = "SAY \\"HI\\""\ndraft = true\n+++\nHI.'


class ColonEngine(EchoEngine):
    def generate(self, prompts, params):
        return [[Completion("Remarque : " + p[-1]["content"], 1, 1, "stop")] for p in prompts]


def test_a_translated_front_matter_value_that_plain_yaml_cannot_hold_is_quoted():
    result, _ = translate("---\ntitle: Notes\n---\n", engine=ColonEngine())
    assert result["translation"].startswith('---\ntitle: "Remarque : Notes"\n---')


@pytest.mark.parametrize("given, recorded", [("zh-Hans", "zh-Hans"), ("zh-Hant", "zh-Hant"), ("nb", "nb"), ("EN-us", "en-US"), ("zh_CN", "zh-CN"), ("Deutsch", "de")])
def test_a_language_code_is_recorded_as_given_when_it_is_a_bcp47_tag(given, recorded):
    result, _ = translate("Hello.", target_language=given, source_language="fr" if given == "nb" else "auto")
    assert result["target_language"] == recorded


@pytest.mark.parametrize("tag", ['{% include "note.html" %}', "{%- if page.toc -%}", "{# a comment #}", "{{< shortcode >}}", "{{% notice %}}"])
def test_template_tags_in_a_sentence_come_back_byte_identical_when_the_model_drops_them(tag):
    class Dropping(EchoEngine):  # drops Liquid, Jinja and Hugo tags, as a small model may
        def generate(self, prompts, params):
            dropped = [[{**m, "content": re.sub(r"\{[%#{].*?[%#}]\}", "", m["content"])} for m in p] for p in prompts]
            return super().generate(dropped, params)

    result, _ = translate(f"Read the guide {tag} before you start.", engine=Dropping())
    assert result["translation"].count(tag) == 1, result["translation"]
    assert result["missing_placeholders"] == []


def test_a_template_tag_missing_from_a_translation_is_listed_as_a_missing_placeholder():
    assert placeholders('See {% include "x.html" %}, {%- if a -%} and {# note #}.') == ['{% include "x.html" %}', "{%- if a -%}", "{# note #}"]
    generator = TranslateGenerator(engine=EchoEngine())
    opts = TranslateOptions(target_language="de")
    prepared = generator.preprocess('See {% include "x.html" %} now.', opts)
    for segment in (s for chunk in prepared["chunks"] for s in chunk):
        segment.translation = "Siehe jetzt."
    assert generator.postprocess(prepared, opts)["missing_placeholders"] == [{"placeholder": '{% include "x.html" %}', "count": 1}]


def test_a_line_of_template_tags_alone_is_kept_as_structure_and_not_sent_to_the_model():
    doc = textwrap.dedent('''\
        {% include "header.html" %}

        {% if site.beta %}
        This feature is in beta.
        {% endif %}
        {%- if page.toc -%} {# the table of contents #}
        Read on.''')
    result, engine = translate(doc)
    assert result["translation"] == textwrap.dedent('''\
        {% include "header.html" %}

        {% if site.beta %}
        THIS FEATURE IS IN BETA.
        {% endif %}
        {%- if page.toc -%} {# the table of contents #}
        READ ON.''')
    sent = [p[-1]["content"] for prompts, _ in engine.calls for p in prompts]
    assert sent == ["This feature is in beta.", "Read on."]


@pytest.mark.parametrize("line", [
    "{% capture note %}Remember to save.{% endcapture %}",
    "{%- if page.toc -%}Contents{%- endif -%}",
    "{# say #}Hello there.{# end #}",
    "{{< note >}}Try the beta.{{< /note >}}",
])
def test_text_between_two_template_tags_on_one_line_is_translated_and_the_tags_kept(line):
    result, _ = translate(line)
    text = re.search(r"[%#>]\}(.+?)\{", line)[1]
    assert result["translation"] == line.replace(text, text.upper())


def test_a_stray_brace_percent_does_not_freeze_the_prose_up_to_a_later_tag_end():
    assert placeholders("In Python, {%s} formats, while 50% of {items %} differ.") == ["%s"]
    assert placeholders("Use {#id} for anchors, and the hash #} sign.") == []
    result, _ = translate("Price is {%d} and {% set x = 1 %} ok.")
    assert result["translation"] == "PRICE IS {%d} AND {% set x = 1 %} OK."


def test_mkdocs_admonition_markers_and_types_are_kept_and_their_quoted_titles_and_bodies_translated():
    doc = textwrap.dedent('''\
        !!! note "Custom title"
            This is the body.

        ??? tip "Helpful hint"
            Click the button.

        ???+ warning
            Do not delete it.

        !!! info inline end "Side note"
            Read it.

        !!! danger ""
            No title.''')
    result, engine = translate(doc)
    assert result["translation"] == textwrap.dedent('''\
        !!! note "CUSTOM TITLE"
            THIS IS THE BODY.

        ??? tip "HELPFUL HINT"
            CLICK THE BUTTON.

        ???+ warning
            DO NOT DELETE IT.

        !!! info inline end "SIDE NOTE"
            READ IT.

        !!! danger ""
            NO TITLE.''')
    sent = [p[-1]["content"] for prompts, _ in engine.calls for p in prompts]
    assert "Custom title" in sent and not any("!!!" in text or "???" in text or "warning" in text for text in sent)


def test_an_i18n_json_object_on_stdin_has_its_string_values_translated_as_a_json_file_does(echo):
    result = runner.invoke(app, ["translate", "-", "--to", "de"], input='{\n  "greeting": "Hello, {name}!",\n  "nested": {"save": "Save", "count": 3}\n}\n')
    assert result.exit_code == 0, result.output
    assert result.stdout == '{\n  "greeting": "HELLO, {name}!",\n  "nested": {\n    "save": "SAVE",\n    "count": 3\n  }\n}\n'
    for text in ('[\n  "Hello",\n  "World"\n]\n', "{% include 'x.html' %}\n\nHello there.\n"):  # a list, or a tag: not surely an i18n object, read as Markdown
        shown = runner.invoke(app, ["translate", "-", "--to", "de"], input=text).stdout
        assert "HELLO" in shown and not shown.startswith("[\n"), shown  # a list's lines joined as a paragraph's


def test_an_almost_json_object_is_refused_with_its_parse_error_not_translated_as_markdown(echo, tmp_path):
    slip = '{\n  "greeting": "Hello",\n  "bye": "Goodbye",\n}\n'  # a trailing comma, as hand-edited i18n files have
    file = tmp_path / "en.json"
    file.write_text(slip)
    for args, given in ((["-"], slip), ([str(file)], None)):
        result = runner.invoke(app, ["translate", *args, "--to", "de"], input=given)
        assert result.exit_code == 2 and result.stdout == ""
        assert "not valid JSON" in result.stderr and "line 4, column 1" in result.stderr and "--markdown" in result.stderr, result.stderr
    assert "GOODBYE" in runner.invoke(app, ["translate", "-", "--to", "de", "--markdown"], input=slip).stdout
    liquid = "{% if page.beta %}\nTry the beta.\n{% endif %}\n"  # a template, not JSON
    assert runner.invoke(app, ["translate", "-", "--to", "de"], input=liquid).stdout == liquid.replace("Try the beta.", "TRY THE BETA.")


def test_a_json_file_of_no_strings_is_read_as_markdown_for_that_reason(echo, tmp_path):
    numbers = tmp_path / "numbers.json"
    numbers.write_text("[[1, 2], [3, 4]]\n")
    assert "(.json: not an object or list of strings)" in runner.invoke(app, ["translate", str(numbers), "--to", "de"]).stderr


def test_a_translated_json_file_is_logged_as_a_translated_document_is(echo, tmp_path):
    from aigc import logs

    strings = tmp_path / "en.json"
    strings.write_text('{"greeting": "Hello, {name}!", "count": 3}\n')
    result = runner.invoke(app, ["translate", str(strings), "--to", "de", "--log"])
    assert result.exit_code == 0, result.output
    [entry] = logs.entries(None)
    assert entry.command == "translate" and entry.prompt.strip() == strings.read_text().strip() and entry.response.strip() == '{"greeting": "HELLO, {name}!", "count": 3}'
    assert entry.options["target_language"] == "de" and entry.result["missing_placeholders"] == [] and entry.result["translation"] == entry.response


class StopsAfter(EchoEngine):
    """The echo engine, interrupted (Ctrl-C) as its call number `calls` + 1 starts."""

    def __init__(self, calls):
        super().__init__()
        self.left = calls

    def generate(self, prompts, params):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return super().generate(prompts, params)


def test_an_interrupted_translation_resumes_from_the_sentences_it_kept(tmp_path):
    from aigc.generators.translate_resume import Checkpoint

    text = "\n\n".join(f"Paragraph {i} has words. " + "More words here. " * (i % 5) + "The end." for i in range(40))
    whole, _ = translate(text)
    resumed = []
    stopped = TranslateGenerator(engine=StopsAfter(3))
    stopped.checkpoint = Checkpoint(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        stopped(text, target_language="fr")
    kept = stopped.checkpoint.kept
    assert kept == 3 * ROWS and len(list(tmp_path.glob("*.jsonl"))) == 1  # three calls' sentences
    engine = EchoEngine()
    again = TranslateGenerator(engine=engine)
    again.checkpoint = Checkpoint(tmp_path, on_resume=lambda reused, total: resumed.append((reused, total)))
    result = again(text, target_language="fr")
    sent = [p[-1]["content"] for prompts, _ in engine.calls for p in prompts]
    assert resumed == [(kept, again.checkpoint.total)] and len(sent) == again.checkpoint.total - kept  # the model asked only for the rest
    assert result == whole
    other = TranslateGenerator(engine=EchoEngine())
    other.checkpoint = Checkpoint(tmp_path, on_resume=lambda reused, total: resumed.append((reused, total)))
    other(text, target_language="de")  # another language: another run, nothing reused
    assert len(resumed) == 1 and len(other.engine.calls) > len(engine.calls)


def test_the_command_interrupted_says_how_to_resume_and_the_same_command_resumes(monkeypatch, tmp_path):
    from aigc import config

    doc, out = tmp_path / "doc.md", tmp_path / "out.md"
    doc.write_text("\n\n".join(f"# Part {i}\n\n" + " ".join(f"Sentence {j} of part {i}{'!' * (j % 3)}." for j in range(30)) for i in range(3)))
    engine = StopsAfter(2)
    monkeypatch.setattr(TranslateGenerator, "engine", property(lambda self: engine))
    stopped = runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)])
    assert stopped.exit_code == 130 and not out.exists()
    assert f"({2 * ROWS} of 93 sentences translated so far are kept in {config.cache_dir() / 'translate'}: run the same command again to resume)" in stopped.stderr
    assert stopped.stderr.rstrip().endswith("Error: interrupted")
    engine = EchoEngine()
    resumed = runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)])
    assert resumed.exit_code == 0 and f"{2 * ROWS} of 93 sentences reused from an interrupted run" in resumed.stderr
    assert sum(len(prompts) for prompts, _ in engine.calls) == 93 - 2 * ROWS
    assert out.read_text() == translate(doc.read_text())[0]["translation"] + "\n"  # as an uninterrupted run writes it
    assert list((config.cache_dir() / "translate").iterdir()) == []  # the result written: the checkpoint is gone
    again = runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)])
    assert again.exit_code == 0 and "reused" not in again.stderr


def test_a_second_run_of_the_same_translation_meanwhile_translates_all_and_leaves_the_first_ones_file(tmp_path):
    from aigc.errors import AigcWarning
    from aigc.generators.translate_resume import Checkpoint

    first = Checkpoint(tmp_path)
    assert first.start(["run"], 3) == {}
    first.keep([{"at": 0, "translation": "X", "cut_off": False, "empty": False}])
    kept = first.path.read_text()
    second = Checkpoint(tmp_path, on_resume=lambda reused, total: pytest.fail("resumed from a running translation's file"))
    with pytest.warns(AigcWarning, match="another aigc is translating this text with the same model and settings.*without resuming from or adding to them"):
        assert second.start(["run"], 3) == {}
    second.keep([{"at": 1, "translation": "Y", "cut_off": False, "empty": False}])
    second.finish()
    assert first.path.read_text() == kept and second.kept == 0  # neither written to nor removed
    first.keep([{"at": 2, "translation": "Z", "cut_off": False, "empty": False}])
    first.release()  # the first run stopped: a third resumes from all it kept
    assert sorted(Checkpoint(tmp_path).start(["run"], 3)) == [0, 2]


def test_the_command_run_twice_at_once_warns_and_the_second_neither_resumes_nor_removes_the_file(monkeypatch, tmp_path):
    from aigc import config, locks

    doc, out = tmp_path / "doc.md", tmp_path / "out.md"
    doc.write_text("\n\n".join(" ".join(f"Sentence {j} of part {i}." for j in range(30)) for i in range(2)))
    engine = StopsAfter(1)
    monkeypatch.setattr(TranslateGenerator, "engine", property(lambda self: engine))
    assert runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)]).exit_code == 130
    [kept] = (config.cache_dir() / "translate").glob("*.jsonl")
    before = kept.read_text()
    engine = EchoEngine()
    with locks.held(kept):  # another aigc translating it now
        busy = runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)])
    assert busy.exit_code == 0 and "another aigc is translating this text" in busy.stderr and "reused" not in busy.stderr
    assert sum(len(prompts) for prompts, _ in engine.calls) == 60 and kept.read_text() == before  # all of it; the file as it was
    engine = EchoEngine()
    resumed = runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)])
    assert resumed.exit_code == 0 and f"{ROWS} of 60 sentences reused from an interrupted run" in resumed.stderr and not kept.exists()


def test_the_checkpoints_of_interrupted_runs_are_bounded_and_an_unwritable_one_is_one_warning(tmp_path):
    from aigc.errors import AigcWarning
    from aigc.generators.translate_resume import KEPT_RUNS, Checkpoint

    for run in range(KEPT_RUNS + 4):
        checkpoint = Checkpoint(tmp_path)
        checkpoint.start(["run", run], 2)
        checkpoint.keep([{"at": 0, "translation": "X", "cut_off": False, "empty": False}])
        checkpoint.release()  # the run stopped, as the generator's does
    assert len(list(tmp_path.glob("*.jsonl"))) == KEPT_RUNS
    assert Checkpoint(tmp_path).start(["run", KEPT_RUNS + 3], 2) == {0: {"at": 0, "translation": "X", "cut_off": False, "empty": False}}  # the latest kept
    (tmp_path / "file").write_text("")
    blocked = Checkpoint(tmp_path / "file" / "translate")
    blocked.start(["run"], 2)
    with pytest.warns(AigcWarning, match="cannot keep the translations made so far in .*; point AIGC_CACHE_DIR at a writable directory"):
        blocked.keep([{"at": 0, "translation": "X"}])
    blocked.keep([{"at": 1, "translation": "Y"}])  # warned once: the run goes on without it
    assert blocked.broken and blocked.kept == 0
