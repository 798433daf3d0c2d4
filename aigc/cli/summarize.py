"""`aigc summarize FILE|-`."""

import json
from typing import Annotated, Optional

import typer

from .. import ui
from ..errors import BadInputError
from ..generators.summarize import LENGTH_WORDS, summary_tokens
from ..textio import read_document
from ..writing import output_target
from . import complete, examples
from .lines import check_lines_source, run_lines
from .command_defaults import DefaultsCommand
from .options import RunOptions, emit, generation_options, not_a_folder, source_or_stdin, template_file, weights_of


@generation_options(logged=True)
def summarize(
    source: Annotated[Optional[str], typer.Argument(metavar="FILE|-", help="A .txt, .md or .html document, .srt/.vtt/.sbv/.ass/.ssa subtitles (their words) or .eml/.mbox e-mail (subjects and text), or - for stdin (read when piped and nothing is given).", show_default=False)] = None,
    length: Annotated[Optional[str], typer.Option(help=f"short (about {LENGTH_WORDS['short']} words), medium ({LENGTH_WORDS['medium']}, the default) or long ({LENGTH_WORDS['long']}).", show_default=False, autocompletion=complete.summary_lengths)] = None,
    words: Annotated[Optional[int], typer.Option(help="Target length in words (instead of --length).")] = None,
    format: Annotated[str, typer.Option("--format", help="paragraph or bullets.", autocompletion=complete.summary_formats)] = "paragraph",
    template: Annotated[str, typer.Option("--template", "-t", help="Template for the final summary.", autocompletion=complete.templates)] = "summarize",
    language: Annotated[Optional[str], typer.Option("--language", "-L", help="Write the summary in this language, whatever the text's: a name or ISO code, as translate's --to takes (French, fr, pt-BR, 日本語); by default, the text's.", show_default=False, autocompletion=complete.languages)] = None,
    chunk_tokens: Annotated[Optional[int], typer.Option("--chunk-tokens", help="Size in tokens of the parts a long document is summarized in (default: the largest the model's context holds with the answer, at most 1500).", show_default=False)] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the summary (with --lines, every line's) to this file, atomically at the end; - for stdout.")] = None,
    lines: Annotated[bool, typer.Option("--lines", help="Summarize each non-empty line as its own text; one summary per line.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {summary, words, map_reduce_rounds, parts, cut_off, unchanged, model} as JSON (parts: how many the document was summarized in; seed too where one was drawn: a sampled summary without --seed; with --lines one per line, with its line number).")] = False,
    *,
    run: RunOptions,
) -> None:
    """Summarize a document; long ones are summarized in parts, then the parts together.

    --max-tokens bounds the final summary; each part's summary takes what its length needs."""
    source = source_or_stdin(source, "a document to summarize (FILE, or - for stdin)")
    not_a_folder(source, "summarize")
    output = output_target(output, source=source, reads={"--template": template_file(template)})
    if length is not None and words is not None:
        raise BadInputError("give --length or --words, not both")
    if lines:
        check_lines_source(source, "summarize")
    text = read_document(source, lines=lines, text_hint="to summarize text itself, pipe it: echo TEXT | aigc summarize")
    options = {"length": length, "words": words, "format": format, "template": template}
    if chunk_tokens is not None:
        options["chunk_tokens"] = chunk_tokens
    if language is not None:
        options["language"] = language
    if lines:
        run_lines(run, "summarize", text, options, lambda r: r["summary"], as_json, notes=lambda result, generator: summary_notes(result, generator, options, run), output=output, given_back=lambda r: r["unchanged"])
        return
    generator = run.generator("summarize", template=template)
    run.prepare(generator, text, options)
    run.draw_seed(generator, options)
    with ui.prints_to_stderr(), ui.progress_bar() as progress:  # what generator code prints goes to stderr
        generator.progress = progress
        result = generator(text, sampling=run.sampling(), **options)
    for note in summary_notes(result, generator, options, run):
        ui.warn(note)
    rendered = json.dumps({**result, "model": generator.engine.name, **weights_of(generator), **run.drawn_seed()}, ensure_ascii=False) if as_json else result["summary"]
    emit(rendered, output)
    run.keep(generator, "summarize", text, result["summary"], options, result)
    run.report(generator, [("parts", str(result["parts"])), ("map-reduce rounds", str(result["map_reduce_rounds"]))])


def summary_notes(result: dict, generator, options: dict, run: RunOptions) -> list[str]:
    """Warnings about a summary cut off (one given back unchanged the generator warns of, and `--lines`
    once, at the end): the token limit in force and where it came from where the user never gave it
    (--length or --words, or the template), and a higher one to try: twice it, at least the length's default."""
    if not result["cut_off"]:
        return []
    tokens = generator.summary_max_tokens(options, run.sampling())
    words = generator.validate(options).target_words
    if run.max_tokens is not None:
        limit = f"--max-tokens {tokens}"
    elif tokens == summary_tokens(words):
        limit = f"max_tokens {tokens}, the default for a summary of {words} words"
    else:  # the summary template's defaults (or a plugin's) set it
        limit = f"max_tokens {tokens}, the summary template's default"
    what = f"the final summary (of the {result['parts']} parts' summaries)" if result["map_reduce_rounds"] else "the summary"
    more = max(2 * tokens, summary_tokens(words))  # at least the default for the length: twice a low one (1) is no whole summary
    return [f"{what} was cut off at {limit} (its unfinished last sentence is left out where it has others); raise --max-tokens (to {more}, say) for a whole one"]


EXAMPLES = examples(
    "aigc summarize article.md --length short",
    "aigc summarize report.html --format bullets -o summary.md",
    "cat notes.txt | aigc summarize -",
)


def register(app: typer.Typer) -> None:
    app.command(cls=DefaultsCommand, epilog=EXAMPLES)(summarize)
