"""`aigc translate FILE|- --to LANG`."""

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import subtitles, ui
from ..errors import BadInputError
from ..generators.translate_resume import Checkpoint
from ..json_strings import read_strings
from ..textio import HTML_SUFFIXES, MARKDOWN_SUFFIXES, STDIN, file_style, first_words, read_input
from ..writing import output_target
from . import complete, examples
from .lines import check_lines_source, run_lines
from .command_defaults import DefaultsCommand
from .options import RunOptions, emit, generation_options, source_or_stdin, template_file, warn_of_a_word_read_as_a_file, weights_of


@generation_options(logged=True)
def translate(
    to: Annotated[str, typer.Option("--to", help="Language to translate into: a name or ISO code (French, fr, pt-BR).", autocompletion=complete.languages)],
    source: Annotated[Optional[str], typer.Argument(metavar="TEXT|FILE|-", help="The text, a .txt/.md/.html document or .srt/.vtt/.sbv/.ass/.ssa subtitles (their cue text translated), or - for stdin (read when piped and nothing is given).", show_default=False)] = None,
    from_: Annotated[str, typer.Option("--from", help="Language of the document, or auto to let the model tell.", autocompletion=complete.source_languages)] = "auto",
    glossary: Annotated[Optional[str], typer.Option(metavar="FILE.tsv", help="Terms to translate as given: one 'source<TAB>target' line each (a .csv: 'source,target' rows, read as aigc batch reads a .csv: 'source;target' with semicolons). A first row is a header when both cells name columns (source/target, term/translation, in English, German, French, Spanish, Italian, Portuguese or Dutch: 'Begriff<TAB>Übersetzung') or give this run's --from (or any, with auto) and --to languages ('en<TAB>de', 'en_US<TAB>de_DE', 'English<TAB>German'); any other first row is a term. A line starting '# ' is a comment: write '# source<TAB>target' to be sure.")] = None,
    template: Annotated[str, typer.Option("--template", "-t", help="Prompt template.", autocompletion=complete.templates)] = "translate",
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the translation (with --lines, every line's) to this file, atomically at the end; - for stdout.")] = None,
    plain: Annotated[bool, typer.Option("--plain", help="Read the document as plain text (an indented line is words, not code); by default a .txt file is plain and anything else Markdown.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Read the document as Markdown (for a file that is neither .md nor .txt).")] = False,
    lines: Annotated[bool, typer.Option("--lines", help="Translate each non-empty line as its own plain text (with --markdown, as Markdown); one translation per line.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {translation, source_language, target_language, glossary_misses, missing_placeholders, cut_off, cut_off_texts, untranslated_texts, model} as JSON (seed too where one was drawn: a sampled translation without --seed; with --lines one per line, with its line number).")] = False,
    *,
    run: RunOptions,
) -> None:
    """Translate a document, keeping its paragraphs, lists and Markdown structure.

    A .txt file is read as plain text (an indented line is prose, not code), a .md one as Markdown;
    a .srt, .vtt, .sbv, .ass or .ssa subtitle file (or piped text that starts as one) keeps every line but its cues' text;
    any other file is read as Markdown with a warning, unless --plain or --markdown says which;
    a .json object (or list) of strings, an i18n file, has its values translated, its keys and shape kept
    (a JSON object of strings on stdin too).
    """
    from ..generators.translate import has_text, load_glossary

    if plain and markdown:
        raise BadInputError("give --plain or --markdown, not both: a document is read one way")
    source = source_or_stdin(source, "the text or a document to translate (TEXT, FILE, or - for stdin)")
    output = output_target(output, source=source, reads={"--glossary": glossary, "--template": template_file(template)})
    terms = load_glossary(glossary, (from_, to)) if glossary else None
    if lines:
        check_lines_source(source, "translate")
    warn_of_a_word_read_as_a_file(source, "translate")
    text = read_input(source, lines=lines, links=True, urls_as_text=False, cues=False)  # an HTML page's links as Markdown ones: their targets kept through the translation; a URL alone has nothing to translate
    suffix = Path(source).suffix.lower() if source != "-" and os.path.isfile(os.path.expanduser(source)) else None  # None: text, not a file
    name = STDIN if source == "-" else source if suffix is not None else "the text"
    as_subtitles = False if plain or markdown or lines else None if suffix is None else subtitles.is_subtitle_source(suffix, text)  # None: stdin or text itself, the generator looks
    if as_subtitles or (as_subtitles is None and subtitles.is_subtitle_source(None, text)):
        subtitles.translation_blocks(text, name, suffix or "")  # one not well-formed fails here, named, before the model loads
    i18n = suffix == ".json" or (source == "-" and text.lstrip().startswith("{"))  # stdin: a JSON object only (a list may be words)
    strings = read_strings(text) if i18n and not (plain or markdown or lines) else None  # an i18n file: its values translated
    if i18n and strings is None and not (plain or markdown or lines):
        _check_json(text, name)
    if suffix in HTML_SUFFIXES and not lines:
        named = f"; -o {output} gets Markdown, not HTML: name it .md" if output and Path(output).suffix.lower() in HTML_SUFFIXES else ""
        ui.warn(f"{source}: HTML is translated as Markdown (its text, headings, lists, quotes, tables, links and <pre> code), without its other markup{named}")
    elif suffix in subtitles.SUFFIXES and as_subtitles and output and (written := Path(output).suffix.lower()) in subtitles.SUFFIXES and written != suffix and not {written, suffix} <= {".ass", ".ssa"}:
        ui.warn(f"{source}: -o {output} gets {suffix} subtitles, as the file is, not {written} ones: name it {Path(output).with_suffix(suffix)}")  # a player reads a file by its suffix
    elif strings is None and suffix not in (None, ".txt", *MARKDOWN_SUFFIXES, *HTML_SUFFIXES) and not (plain or markdown or lines or as_subtitles):
        why = "not an object or list of strings" if suffix == ".json" else "neither .md nor .txt"
        ui.warn(f"{source}: read as Markdown ({suffix or 'no extension'}: {why}); give --plain to translate it as plain text, or --markdown to say it is Markdown")
    plain = plain or (suffix == ".txt" and not markdown)  # an indented line is prose, not code (--lines: each line is, unless --markdown)
    options = {"target_language": to, "source_language": from_, "glossary": terms, "template": template, **({"plain": plain} if plain or markdown else {}), **({} if as_subtitles is None else {"subtitles": as_subtitles})}
    generator = run.generator("translate", template=template)
    generator.validate(options)  # a language it does not know, before any work
    if lines:
        crlf, encoding = (False, "utf-8") if as_json else file_style(source)  # a file's line ends, BOM and UTF-16 kept in the -o file, as for a whole file
        run_lines(run, "translate", text, options, lambda r: r["translation"], as_json, notes=lambda result, _: glossary_notes(result), output=output, encoding=encoding, line_end="\r\n" if crlf else "\n")
        return
    if strings is not None:
        _translate_strings(run, generator, strings, text, options, source, output, as_json, glossary)
        return
    run.check(generator, text, options)  # no text at all is an error, not the warning below
    if not has_text(text, plain):
        ui.warn(f"{name} has nothing to translate (only code, markup or numbers); it is given back as it is")
    run.load(generator)
    run.draw_seed(generator, options)
    generator.checkpoint = Checkpoint(on_resume=lambda reused, total: ui.info(f"{reused} of {total} sentences reused from an interrupted run"))
    with _resumable(generator.checkpoint):
        with ui.prints_to_stderr(), ui.progress_bar() as progress:  # what generator code prints goes to stderr
            generator.progress = progress
            result = generator(text, sampling=run.sampling(), **options)
        for note in glossary_notes(result):
            ui.warn(note)
        crlf, encoding = (False, "utf-8") if as_json else file_style(source)  # a Windows file comes back with its line endings (and its BOM and UTF-16, in a file)
        rendered = json.dumps({**result, "model": generator.engine.name, **weights_of(generator), **run.drawn_seed()}, ensure_ascii=False) if as_json else result["translation"].replace("\n", "\r\n") + "\r\n" if crlf else result["translation"]
        emit(rendered, output, encoding)
    generator.checkpoint.finish()
    run.keep(generator, "translate", text, result["translation"], {**options, "glossary": glossary}, result)
    run.report(generator)


@contextlib.contextmanager
def _resumable(checkpoint: Checkpoint):
    """Where Ctrl-C or SIGTERM (or an error) stops a run that kept translations, say that the same
    command again resumes."""
    try:
        yield
    except BaseException:
        if checkpoint.kept:
            ui.info(f"({checkpoint.kept} of {checkpoint.total} sentences translated so far are kept in {checkpoint.directory}: run the same command again to resume)")
        raise


def _translate_strings(run: RunOptions, generator, data, text: str, options: dict, source: str, output: str | None, as_json: bool, glossary: str | None) -> None:
    """An i18n JSON file's string values translated, each as plain text (batched as `aigc batch`
    runs rows), and written back in its shape: keys, other values and their order as they were;
    logged as a document's translation is (not when no value had words to send to the model)."""
    from ..generators.translate import has_text
    from ..json_strings import dumps_like, strings, with_strings

    texts = strings(data)
    todo = [i for i, value in enumerate(texts) if has_text(value, plain=True)]  # "", "{count}" or "42" as they are
    options = {**options, **generator.line_options}
    if todo:
        run.check(generator, texts[todo[0]], options)
        run.load(generator)
    with ui.prints_to_stderr():
        results = generator.many([texts[i] for i in todo], sampling=run.sampling(), **options) if todo else []
    for i, result in zip(todo, results):
        for note in glossary_notes(result):
            ui.warn(f"{first_words(texts[i])!r}: {note}")
        texts[i] = result["translation"]
    translated = dumps_like(with_strings(data, texts), text)
    crlf, encoding = (False, "utf-8") if as_json else file_style(source)
    opts = generator.validate(options)
    summary = {"translation": translated, "source_language": opts.source_language, "target_language": opts.target_language}
    merged = {key: [item for result in results for item in result[key]] for key in ("cut_off_texts", "untranslated_texts")}
    for key, name in (("glossary_misses", ("source", "target")), ("missing_placeholders", ("placeholder",))):  # counted over all values
        counts: dict[tuple, int] = {}
        for item in (item for result in results for item in result[key]):
            counts[tuple(item[n] for n in name)] = counts.get(tuple(item[n] for n in name), 0) + item["count"]
        merged[key] = [{**dict(zip(name, what)), "count": n} for what, n in counts.items()]
    result = {**summary, **merged, "cut_off": bool(merged["cut_off_texts"])}
    rendered = json.dumps({**result, **({"model": generator.engine.name, **weights_of(generator)} if todo else {})}, ensure_ascii=False) if as_json else translated.replace("\n", "\r\n") if crlf else translated
    emit(rendered, output, encoding)
    if todo:  # a model answered: logged (with nothing to translate, none was loaded)
        run.keep(generator, "translate", text, translated, {**options, "glossary": glossary}, result)
    run.report(generator)


def _check_json(text: str, name: str) -> None:
    """A `BadInputError` when `text` looks like a JSON object (`{"...` up to `}`) but does not parse: an
    i18n file with a slip (a trailing comma) would otherwise be translated as Markdown, keys and all."""
    if not (re.match(r'\s*\{\s*["}]', text) and text.rstrip().endswith("}")):
        return
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"{name} looks like a JSON object but is not valid JSON ({exc.msg}: line {exc.lineno}, column {exc.colno}); "
            "fix it to translate its string values, or give --markdown or --plain to translate it as text"
        ) from None


def glossary_notes(result: dict) -> list[str]:
    """A warning for each placeholder and glossary term the translation missed, one if max_tokens cut sentences off,
    and one if the model gave no translation for some (kept in the source language)."""
    notes = []
    cut = result["cut_off_texts"]
    if cut:
        whose = f"the translation of {_named(cut)} was" if len(cut) == 1 else f"the translations of {len(cut)} sentences ({_named(cut)}) were"
        notes.append(f"{whose} cut off at the token limit; raise --max-tokens (default: about 3x the sentence's tokens)")
    empty = result["untranslated_texts"]
    if empty:
        which = _named(empty) if len(empty) == 1 else f"{len(empty)} sentences ({_named(empty)})"
        notes.append(f"the model gave no translation for {which}; {'it is' if len(empty) == 1 else 'they are'} kept in the source language")
    for lost in result["missing_placeholders"]:
        times = "once" if lost["count"] == 1 else f"{lost['count']} times"
        notes.append(f"placeholder {lost['placeholder']!r} is missing from the translation ({times}); the program that fills it in will fail")
    for miss in result["glossary_misses"]:
        times = "once" if miss["count"] == 1 else f"{miss['count']} times"
        notes.append(f"glossary term {miss['source']!r} is not translated as {miss['target']!r} ({times})")
    return notes


def _named(texts: list[str]) -> str:
    """The first words of the first few `texts`, to point at them in a warning."""
    return ", ".join(repr(first_words(text)) for text in texts[:3]) + (f" and {len(texts) - 3} more" if len(texts) > 3 else "")


EXAMPLES = examples(
    "aigc translate notes.md --to French -o notes.fr.md",
    'aigc translate "Where is the station?" --to es',
)


def register(app: typer.Typer) -> None:
    app.command(cls=DefaultsCommand, epilog=EXAMPLES)(translate)
