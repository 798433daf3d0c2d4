"""`aigc headline --topic ...` or `aigc headline FILE|-`."""

import json
from typing import Annotated, Optional

import typer

from .. import ui
from ..errors import BadInputError
from ..textio import DOCUMENT_KINDS, read_document
from ..writing import output_target
from . import complete, examples
from .lines import check_lines_source, run_lines
from .command_defaults import DefaultsCommand
from .options import RunOptions, emit, generation_options, not_a_folder, source_or_stdin, template_file, weights_of

ARTICLE = f"an article with some text in it ({DOCUMENT_KINDS}), or a topic with --topic TEXT"  # in place of an empty or binary one


@generation_options(logged=True)
def headline(
    source: Annotated[Optional[str], typer.Argument(metavar="FILE|-", help="An article to write headlines for (from its lead: its first 250 words, with a note when it has more), or - for stdin (read when piped and no --topic is given).")] = None,
    topic: Annotated[Optional[str], typer.Option(help="Write headlines about this topic instead.")] = None,
    n: Annotated[int, typer.Option("-n", help="How many distinct headlines (fewer, with a warning, where the model writes no more).")] = 3,
    style: Annotated[str, typer.Option(help="news, seo, question or catchy.", autocompletion=complete.headline_styles)] = "news",
    tone: Annotated[Optional[str], typer.Option(help="How it should sound: playful, urgent, luxurious, ... (by default, the style's own).", show_default=False)] = None,
    language: Annotated[Optional[str], typer.Option("--language", "-L", help="Write the headlines in this language, whatever the topic's or article's: a name or ISO code, as translate's --to takes (French, fr, pt-BR, 日本語); by default, theirs.", show_default=False, autocompletion=complete.languages)] = None,
    max_words: Annotated[int, typer.Option("--max-words", help="Most words per headline, counted as summarize counts them (a Chinese or Japanese character is one).")] = 12,
    template: Annotated[str, typer.Option("--template", "-t", help="Prompt template.", autocompletion=complete.templates)] = "headline",
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the headlines (with --lines, every line's) to this file, atomically at the end; - for stdout.")] = None,
    lines: Annotated[bool, typer.Option("--lines", help="Each non-empty line of the input (or of --topic) is one topic; one line of headlines (joined by ' | ') per topic.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"headlines": [...], "missing": N, "cut_off": BOOL, "model": NAME} as JSON (missing: how many fewer than -n came out; "seed" too where one was drawn: without --seed; with --lines one per line, with its "line" number).')] = False,
    *,
    run: RunOptions,
) -> None:
    """Write distinct headlines for a topic or an article."""
    options = {"n": n, "style": style, "tone": tone or "", "max_words": max_words, "template": template, **({"language": language} if language is not None else {})}
    if topic is None:  # an article piped in, when none is named
        source = source_or_stdin(source, "a topic (--topic TEXT) or an article (FILE, or - for stdin) to write headlines for")
    not_a_folder(source, "headline")
    output = output_target(output, source=source, reads={"--template": template_file(template)})
    if lines:
        if topic is not None and source is not None:
            raise BadInputError("give either --topic or an input (FILE or -) for --lines, not both")
        check_lines_source(source, "headline")
        text = topic if topic is not None else read_document(source or "-", lines=True)
        run_lines(run, "headline", text, options, lambda r: " | ".join(r["headlines"]), as_json, notes=lambda result, generator: headline_notes(result, generator, options), output=output)
        return
    if topic is not None and source is not None:
        raise BadInputError("give either a topic (--topic TEXT) or an article (FILE, or - for stdin), not both")
    article = read_document(source, text_hint="for headlines about a topic, give it with --topic TEXT", expected=ARTICLE) if source is not None else None
    generator = run.generator("headline", template=template)
    inputs = {"topic": topic, "article": article}
    run.prepare(generator, inputs, options)
    run.draw_seed(generator, options)
    with ui.prints_to_stderr(), ui.progress_bar() as progress:  # what generator code prints goes to stderr
        generator.progress = progress
        result = generator(inputs, sampling=run.sampling(), **options)  # fewer headlines than -n: the generator warns
    rendered = json.dumps({**result, "model": generator.engine.name, **weights_of(generator), **run.drawn_seed()}, ensure_ascii=False) if as_json else "\n".join(result["headlines"])
    emit(rendered, output)
    run.keep(generator, "headline", topic if article is None else article, "\n".join(result["headlines"]), options, result)
    run.report(generator)


def headline_notes(result: dict, generator, options: dict) -> list[str]:
    """The generator's warnings about a line's headlines (fewer than -n asked for)."""
    return generator.notes(result, generator.validate(options))


EXAMPLES = examples(
    "aigc headline article.md -n 5 --style question",
    'aigc headline --topic "rooftop beekeeping" --json',
)


def register(app: typer.Typer) -> None:
    app.command(cls=DefaultsCommand, epilog=EXAMPLES)(headline)
