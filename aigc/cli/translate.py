"""`aigc translate FILE|- --to LANG`."""

import json
import os
from typing import Annotated, Optional

import typer

from .. import ui
from ..errors import BadInputError
from ..textio import output_target, read_input, uses_crlf, write_atomic
from . import complete, examples
from .lines import run_lines
from .options import RunOptions, generation_options


@generation_options(logged=True)
def translate(
    source: Annotated[str, typer.Argument(metavar="TEXT|FILE|-", help="The text, a .txt/.md/.html document, or - for stdin.")],
    to: Annotated[str, typer.Option("--to", help="Language to translate into: a name or ISO code (French, fr, pt-BR).")],
    from_: Annotated[str, typer.Option("--from", help="Language of the document, or auto to let the model tell.")] = "auto",
    glossary: Annotated[Optional[str], typer.Option(metavar="FILE.tsv", help="Terms to translate as given: one 'source<TAB>target' line each.")] = None,
    template: Annotated[str, typer.Option("--template", "-t", help="Prompt template.", autocompletion=complete.templates)] = "translate",
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the translation to this file (atomically; - for stdout).")] = None,
    lines: Annotated[bool, typer.Option("--lines", help="Translate each non-empty line as its own plain text; one translation per line.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {translation, source_language, target_language, glossary_misses, cut_off} as JSON.")] = False,
    *,
    run: RunOptions,
) -> None:
    """Translate a document, keeping its paragraphs, lists and Markdown structure.

    A .txt file is read as plain text: an indented line is prose, not code.
    """
    from ..generators.translate import load_glossary

    output = output_target(output, source=source)
    terms = load_glossary(glossary) if glossary else None
    text = read_input(source, lines=lines)
    if source.lower().endswith((".html", ".htm")) and os.path.isfile(source) and not lines:
        ui.warn(f"{source}: HTML is translated as Markdown (its text, headings, lists and <pre> code), without its other markup or link targets")
    plain = source.lower().endswith(".txt") and os.path.isfile(source)  # an indented line is prose, not code (--lines: each line is)
    options = {"target_language": to, "source_language": from_, "glossary": terms, "template": template, **({"plain": True} if plain else {})}
    run.generator("translate").validate(options)  # a language it does not know, before any work
    if lines:
        if output:
            raise BadInputError("--lines prints one result per line; for a file of results use aigc batch -o")
        run_lines(run, "translate", text, options, lambda r: r["translation"], as_json, notes=glossary_notes)
        return
    generator = run.generator("translate")
    run.prepare(generator, text, options)
    with ui.progress_bar() as progress:
        generator.progress = progress
        result = generator(text, sampling=run.sampling(), **options)
    for note in glossary_notes(result):
        ui.warn(note)
    crlf = not as_json and not lines and uses_crlf(source)  # a Windows file comes back with its line endings
    rendered = json.dumps(result, ensure_ascii=False) if as_json else result["translation"].replace("\n", "\r\n") + "\r\n" if crlf else result["translation"]
    if output:
        ui.info(f"wrote {write_atomic(output, rendered)}")
    else:
        ui.result(rendered)
    run.keep(generator, "translate", text, result["translation"], {**options, "glossary": glossary}, result)
    run.report(generator)


def glossary_notes(result: dict) -> list[str]:
    """A warning for each glossary term the translation missed, and one if max_tokens cut sentences off."""
    notes = []
    if result["cut_off"]:
        notes.append("a sentence's translation was cut off at its token limit (--max-tokens, else about 3x the sentence's tokens: a model that ran on)")
    for miss in result["glossary_misses"]:
        times = "once" if miss["count"] == 1 else f"{miss['count']} times"
        notes.append(f"glossary term {miss['source']!r} is not translated as {miss['target']!r} ({times})")
    return notes


EXAMPLES = examples(
    "aigc translate notes.md --to French -o notes.fr.md",
    'aigc translate "Where is the station?" --to es',
)


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(translate)
