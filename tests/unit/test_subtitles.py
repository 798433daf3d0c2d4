"""Subtitle files (.srt, .vtt): parsing, reading their words as prose, and translating only their cue text."""

import codecs
import json

import pytest
from typer.testing import CliRunner

from aigc import subtitles
from aigc.cli.app import app
from aigc.engine.base import Completion
from aigc.errors import AigcWarning, BadInputError
from aigc.generators.translate import TranslateGenerator
from aigc.markdown_blocks import render_blocks
from aigc.textio import read_document
from test_translate import EchoEngine, translate

runner = CliRunner()

SRT = """1
00:00:00,000 --> 00:00:02,500
Hello there.

2
00:00:02,600 --> 00:00:05,100
I went to the store
and bought some milk.

3
00:00:09,000 --> 00:00:11,000 X1:10 X2:20 Y1:5 Y2:8
- Who is it?
- <i>Nobody</i>.
"""

SRT_TRANSLATED = """1
00:00:00,000 --> 00:00:02,500
HELLO THERE.

2
00:00:02,600 --> 00:00:05,100
I WENT TO THE STORE
AND BOUGHT SOME MILK.

3
00:00:09,000 --> 00:00:11,000 X1:10 X2:20 Y1:5 Y2:8
- WHO IS IT?
- <i>NOBODY</i>.
"""

VTT = """WEBVTT - a talk
Kind: captions
Language: en

NOTE written by hand,
over two lines

STYLE
::cue { color: yellow }

intro
00:00.000 --> 00:01.500 align:start position:10%
{\\an8}<i>I went to the store
and bought some milk.</i>

00:01.600 --> 00:03.000
<v Ann>Hi there.

00:03.100 --> 00:04.000
<v Ann>How are you?

3
00:00:05.000 --> 00:00:07.000
<v.loud Bob>Fine, <b>thanks</b>.
"""


@pytest.fixture
def echo(monkeypatch):
    """The command on the echo engine (each text upper-cased) instead of a model."""
    engine = EchoEngine()
    monkeypatch.setattr(TranslateGenerator, "engine", property(lambda self: engine))
    return engine


def lines_without_text(text: str) -> list[str]:
    """The lines of a subtitle file that are not cue text: what a translation keeps byte for byte."""
    parsed = subtitles.parse(text)
    texts = {k for cue in parsed.cues for run in cue.text for k in run}
    return [line for k, line in enumerate(parsed.lines) if k not in texts]


# --- translate -------------------------------------------------------------------------------


def test_translating_an_srt_file_keeps_its_numbers_and_timings_and_translates_only_the_cue_text(echo, tmp_path):
    doc = tmp_path / "talk.srt"
    doc.write_text(SRT)
    result = runner.invoke(app, ["translate", str(doc), "--to", "fr"])
    assert result.exit_code == 0, result.output
    assert result.stdout == SRT_TRANSLATED and result.stderr == ""  # no "read as Markdown" warning
    sent = [prompt[-1]["content"] for call in echo.calls for prompt in call[0]]
    assert sent == ["Hello there.", "I went to the store and bought some milk.", "Who is it?", "<i>Nobody</i>.", "Nobody"]  # a wrapped sentence whole; "Nobody" again alone, as the echo upper-cased its tags
    assert not any("-->" in text or text.strip().isdigit() for text in sent)


def test_translating_a_vtt_file_keeps_its_header_blocks_ids_timings_settings_and_tags(echo):
    result, engine = translate(VTT)
    out = result["translation"]
    assert lines_without_text(out) == lines_without_text(VTT)  # WEBVTT and its header block, NOTE, STYLE, ids, timings with settings: as they were
    assert "{\\an8}<i>I WENT TO THE STORE\nAND BOUGHT SOME MILK.</i>" in out  # two lines stay two, the tags around them kept
    assert "<v Ann>HI THERE.\n" in out and "<v.loud Bob>FINE, <b>THANKS</b>." in out  # a speaker's tag and inline tags kept
    assert len(subtitles.parse(out).cues) == len(subtitles.parse(VTT).cues) == 4
    sent = [prompt[-1]["content"] for call in engine.calls for prompt in call[0]]
    assert not any("WEBVTT" in text or "NOTE" in text or "::cue" in text or "-->" in text or "<v" in text for text in sent)


def test_a_piped_subtitle_file_is_found_by_its_first_cue_and_plain_or_markdown_read_it_as_a_document(echo):
    piped = runner.invoke(app, ["translate", "-", "--to", "fr"], input=SRT)
    assert piped.exit_code == 0 and piped.stdout == SRT_TRANSLATED
    markdown = runner.invoke(app, ["translate", "-", "--to", "fr", "--markdown"], input=SRT)
    assert markdown.exit_code == 0 and "00:00:00,000 --> 00:00:02,500 HELLO THERE." in markdown.stdout  # read as a Markdown paragraph, as asked


def test_a_crlf_srt_file_with_a_bom_is_written_back_with_both(echo, tmp_path):
    doc = tmp_path / "talk.srt"
    doc.write_bytes(codecs.BOM_UTF8 + SRT.replace("\n", "\r\n").encode())
    out = tmp_path / "talk.fr.srt"
    result = runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == codecs.BOM_UTF8 + SRT_TRANSLATED.replace("\n", "\r\n").encode()


def test_a_malformed_srt_file_is_an_error_naming_its_line_not_a_broken_translation(echo, tmp_path):
    doc = tmp_path / "bad.srt"
    doc.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello.\n\n2\nNo timing here.\n")
    result = runner.invoke(app, ["translate", str(doc), "--to", "fr"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        f"Error: {doc} is not a valid subtitle (SubRip or WebVTT) file: line 5: cue 2 has no timing line (a cue is a number or id line, "
        "a `00:00:01,000 --> 00:00:04,000` line, then its text); fix it, or give --plain to translate it line by line as plain text\n"
    )
    assert not echo.calls  # before the model is used
    plain = runner.invoke(app, ["translate", str(doc), "--to", "fr", "--plain"])
    assert plain.exit_code == 0 and plain.stdout == "1\n00:00:00,000 --> 00:00:01,000\nHELLO.\n\n2\nNO TIMING HERE.\n"

    nameless = tmp_path / "subs"  # no extension: found by its text, and named by its path all the same
    nameless.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello.\n\n2\nNo timing here.\n")
    result = runner.invoke(app, ["translate", str(nameless), "--to", "fr"])
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {nameless} is not a valid subtitle (SubRip or WebVTT) file: line 5")


@pytest.mark.parametrize("name", ["notes.md", "talk.sub"])
def test_a_file_is_subtitles_by_its_suffix_for_translate_as_for_reading_commands(echo, tmp_path, name):
    doc = tmp_path / name
    doc.write_text(SRT)
    result = runner.invoke(app, ["translate", str(doc), "--to", "fr"])
    assert result.exit_code == 0, result.output
    assert "00:00:00,000 --> 00:00:02,500 HELLO THERE." in result.stdout  # a Markdown paragraph, as summarize reads it
    assert read_document(str(doc)) == SRT.rstrip("\n")


def test_a_translation_with_an_arrow_cannot_break_the_cue():
    class Arrows(EchoEngine):
        def generate(self, prompts, params):
            return [[Completion(c[0].text.replace(",", " -->"), 1, 1, "stop")] for c in super().generate(prompts, params)]

    result, _ = translate("1\n00:00:00,000 --> 00:00:01,000\nHello, friend.\n", engine=Arrows())
    assert result["translation"] == "1\n00:00:00,000 --> 00:00:01,000\nHELLO -> FRIEND.\n"  # a line with --> would be a timing line


def test_a_wrapped_cue_is_cut_back_into_as_many_lines_at_a_space_near_the_middle_or_between_cjk_characters():
    assert subtitles.rebroken("Je suis allé au magasin et j'ai acheté du lait.", 2) == "Je suis allé au magasin\net j'ai acheté du lait."
    assert subtitles.rebroken("Ich ging zum Laden, und kaufte dort Milch.", 2) == "Ich ging zum Laden,\nund kaufte dort Milch."  # after a comma near the middle
    assert subtitles.rebroken("我们去了商店买了牛奶", 2) == "我们去了商\n店买了牛奶"
    assert subtitles.rebroken('Un <font color="red">mot rouge</font> ici', 2) == 'Un <font color="red">mot\nrouge</font> ici'  # not inside the tag
    assert subtitles.rebroken("Wort", 2) == "Wort"  # nowhere to cut


# --- reading the words ---------------------------------------------------------------------


def test_a_subtitle_file_is_read_as_its_words_in_paragraphs_without_numbers_or_timings(tmp_path):
    srt, vtt = tmp_path / "talk.srt", tmp_path / "talk.vtt"
    srt.write_text(SRT)
    vtt.write_text(VTT)
    assert read_document(str(srt)) == "Hello there. I went to the store and bought some milk.\n\n- Who is it? - Nobody."  # a new paragraph after a pause of 2 s or more
    assert read_document(str(vtt)) == "I went to the store and bought some milk.\n\nAnn: Hi there. How are you?\n\nBob: Fine, thanks."  # one speaker's cues run together
    assert read_document(str(vtt), lines=True) == "I went to the store and bought some milk.\nAnn: Hi there.\nAnn: How are you?\nBob: Fine, thanks."  # --lines: a cue a line
    assert read_document(str(srt), as_is=True) == "Hello there. I went to the store and bought some milk.\n\n- Who is it? - Nobody."  # chat -f: the words too


def test_a_crlf_subtitle_file_with_a_bom_and_no_last_blank_line_reads_alike(tmp_path):
    doc = tmp_path / "talk.srt"
    doc.write_bytes(codecs.BOM_UTF8 + SRT.rstrip("\n").replace("\n", "\r\n").encode())
    assert read_document(str(doc)) == "Hello there. I went to the store and bought some milk.\n\n- Who is it? - Nobody."
    utf16 = tmp_path / "talk.vtt"
    utf16.write_bytes(VTT.replace("\n", "\r\n").encode("utf-16"))
    assert read_document(str(utf16)).startswith("I went to the store and bought some milk.\n\nAnn: Hi there.")


def test_summarize_reads_piped_subtitles_as_their_words(monkeypatch):
    from aigc.generators.summarize import SummarizeGenerator

    seen = []
    monkeypatch.setattr(SummarizeGenerator, "__call__", lambda self, text, **options: seen.append(text) or {"summary": "S."})
    result = runner.invoke(app, ["summarize", "-", "--model", "echo"], input=SRT)
    assert seen == ["Hello there. I went to the store and bought some milk.\n\n- Who is it? - Nobody."], result.output
    assert "00:00" not in seen[0]


def test_a_malformed_subtitle_file_is_read_as_it_is_with_a_warning_that_names_its_line(tmp_path):
    doc = tmp_path / "bad.srt"
    doc.write_text("Some notes first.\n\n1\n00:00:00,000 --> 00:00:01,000\nHello.\n")
    with pytest.warns(AigcWarning, match=r"bad.srt is not a valid subtitle \(SubRip or WebVTT\) file: line 1: 'Some notes first.' is not a cue .*; read as it is, cue numbers and timings too"):
        assert read_document(str(doc)) == "Some notes first.\n\n1\n00:00:00,000 --> 00:00:01,000\nHello."
    empty = tmp_path / "empty.vtt"
    empty.write_text("WEBVTT\n\n00:00.000 --> 00:01.000\n<i></i>\n")
    with pytest.raises(BadInputError, match=r"empty.vtt has no text in its cues; give a document with some text in it"):
        read_document(str(empty))


# --- parsing -------------------------------------------------------------------------------


def test_parsing_takes_what_players_take():
    missing_blank = subtitles.parse("1\n0:00:01.5 --> 0:00:02,250\nOne.\n2\n00:00:03,000 --> 00:00:04,000\nTwo.")  # no blank line between, nor at the end
    assert [(c.start, c.end, [[missing_blank.lines[k] for k in run] for run in c.text]) for c in missing_blank.cues] == [(1.5, 2.25, [["One."]]), (3.0, 4.0, [["Two."]])]
    blank_inside = subtitles.parse("1\n00:00:01,000 --> 00:00:02,000\nOne,\n\nand more.\n\n2\n00:00:03,000 --> 00:00:04,000\nTwo.\n")
    assert [len(c.text) for c in blank_inside.cues] == [2, 1]  # the text after a blank line is the cue's, not a cue
    vtt = subtitles.parse("WEBVTT\n\n01:02.000 --> 01:03.000\nNo id.\n\nid two\n01:04.000 --> 01:05.000 line:0\nAn id.\n")
    assert [(c.start, c.end) for c in vtt.cues] == [(62.0, 63.0), (64.0, 65.0)]
    with pytest.raises(subtitles.SubtitleError, match="it has no cue"):
        subtitles.parse("WEBVTT\n\nNOTE nothing else\n")
    blocks = subtitles.translation_blocks("1\n00:00:01,000 --> 00:00:02,000\nOne,\n\nand more.\n")
    assert render_blocks(blocks, [b.texts for b in blocks]) == "1\n00:00:01,000 --> 00:00:02,000\nOne,\n\nand more.\n"


def test_blank_lines_before_webvtt_are_kept_and_the_file_still_read_as_webvtt():
    text = "\nWEBVTT\n\n00:01.000 --> 00:02.000\nhi\n"
    assert subtitles.looks_like_subtitles(text)
    assert subtitles.to_text(text) == "hi"
    assert translate(text)[0]["translation"] == "\nWEBVTT\n\n00:01.000 --> 00:02.000\nHI\n"


@pytest.mark.parametrize(
    "text, found",
    [("1\n00:00:00,000 --> 00:00:02,500\nHi.", True), ("\ufeffWEBVTT\r\n\r\n00:00.000 --> 00:01.000\r\nHi.", True), ("WEBVTT FILE\n", True),
     ("1\nA list item.", False), ("WEBVTTX\n", False), ("# 1\n00:00:00,000 --> 00:00:02,500", False)],
)
def test_text_that_starts_as_a_subtitle_file_is_one(text, found):
    assert subtitles.looks_like_subtitles(text) is found


def test_rolling_captions_repeating_the_line_before_are_read_once():
    text = "WEBVTT\n\n00:00.000 --> 00:01.000\nthe first line\n\n00:01.000 --> 00:02.000\nthe first line\nthe <00:01.500><c>second</c> line\n"
    assert subtitles.to_text(text) == "the first line the second line"


def test_speakers_show_once_a_paragraph_and_cjk_lines_join_without_a_space():
    text = "WEBVTT\n\n00:00.000 --> 00:01.000\n<v Ann>我们去\n商店\n\n00:01.000 --> 00:02.000\n<v Ann>买牛奶\n\n00:02.000 --> 00:03.000\n<v Bob>好。\n"
    assert subtitles.to_text(text) == "Ann: 我们去商店买牛奶\n\nBob: 好。"
    korean = "WEBVTT\n\n00:00.000 --> 00:01.000\n안녕하세요\n\n00:01.000 --> 00:02.000\n나는 오늘\n학교에 갔다\n"
    assert subtitles.to_text(korean) == "안녕하세요 나는 오늘 학교에 갔다"  # Korean puts spaces between words, across cues and lines too


def test_a_wrapped_korean_cue_is_sent_with_the_space_between_its_lines():
    result, engine = translate("1\n00:00:00,000 --> 00:00:01,000\n나는 오늘\n학교에 갔다\n")
    assert [prompt[-1]["content"] for call in engine.calls for prompt in call[0]] == ["나는 오늘 학교에 갔다"]
    assert result["translation"] == "1\n00:00:00,000 --> 00:00:01,000\n나는 오늘\n학교에 갔다\n"  # cut back at a space


def test_json_output_holds_the_subtitle_file(echo, tmp_path):
    doc = tmp_path / "talk.srt"
    doc.write_text(SRT)
    result = runner.invoke(app, ["translate", str(doc), "--to", "fr", "--json"])
    assert json.loads(result.stdout)["translation"] == SRT_TRANSLATED.rstrip("\n")


# --- YouTube SBV ---------------------------------------------------------------------------

SBV = """0:00:00.599,0:00:02.500
Hello there.

0:00:02.600,0:00:05.100
I went to the store
and bought some milk.

0:00:09.000,0:00:11.000
>> Who is it?
"""


def test_an_sbv_file_is_translated_keeping_its_timings_and_read_as_its_words(echo, tmp_path):
    doc = tmp_path / "captions.sbv"
    doc.write_bytes(codecs.BOM_UTF8 + SBV.replace("\n", "\r\n").encode())
    out = tmp_path / "captions.fr.sbv"
    result = runner.invoke(app, ["translate", str(doc), "--to", "fr", "-o", str(out)])
    assert result.exit_code == 0 and result.stderr == f"wrote {out}\n", result.output  # no "read as Markdown" warning
    expected = SBV.replace("Hello there.", "HELLO THERE.").replace("I went to the store\nand bought some milk.", "I WENT TO THE STORE\nAND BOUGHT SOME MILK.").replace("Who is it?", "WHO IS IT?")
    assert out.read_bytes() == codecs.BOM_UTF8 + expected.replace("\n", "\r\n").encode()
    assert not any("0:00" in prompt[-1]["content"] for call in echo.calls for prompt in call[0])
    assert read_document(str(doc)) == "Hello there. I went to the store and bought some milk.\n\n>> Who is it?"
    piped = runner.invoke(app, ["translate", "-", "--to", "fr"], input=SBV)
    assert piped.exit_code == 0 and piped.stdout == expected


def test_a_malformed_sbv_file_is_an_error_that_says_what_an_sbv_cue_is(echo, tmp_path):
    doc = tmp_path / "bad.sbv"
    doc.write_text("Captions by Jo\n\n0:00:00.000,0:00:01.000\nHello.\n")
    result = runner.invoke(app, ["translate", str(doc), "--to", "fr"])
    assert result.exit_code == 2 and not echo.calls
    assert result.stderr == (
        f"Error: {doc} is not a valid YouTube SBV file: line 1: 'Captions by Jo' is not a cue (a cue is a `0:00:01.000,0:00:04.000` line, then its text); "
        "fix it, or give --plain to translate it line by line as plain text\n"
    )
    with pytest.warns(AigcWarning, match=r"bad.sbv is not a valid YouTube SBV file: line 1"):
        assert read_document(str(doc)) == "Captions by Jo\n\n0:00:00.000,0:00:01.000\nHello."


def test_sbv_cues_without_a_blank_line_between_are_apart_and_a_number_is_text():
    parsed = subtitles.parse("0:00:01.000,0:00:02.000\nOne.\n42\n0:00:03.000,0:00:04.000\nTwo.\n", suffix=".sbv")
    assert [(c.start, c.end, [[parsed.lines[k] for k in run] for run in c.text]) for c in parsed.cues] == [(1.0, 2.0, [["One.", "42"]]), (3.0, 4.0, [["Two."]])]
    assert subtitles.looks_like_subtitles("\ufeff0:00:00.599,0:00:04.160\r\nHi.") and not subtitles.looks_like_subtitles("0:00:00.599\nHi.")
