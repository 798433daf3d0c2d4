"""`aigc adcopy [FILE|-] --product ... --audience ... [--tone ...] [-n N] [-o FILE] [--lines] [--json]`."""

import json
from typing import Annotated, Optional

import typer

from aigc.cli import examples
from aigc.cli.lines import check_lines_source, run_lines
from aigc.cli.options import RunOptions, emit, generation_options, source_or_stdin

PRODUCT = "--product TEXT, or a document describing the product"  # in place of an empty or binary one


@generation_options(logged=True)
def adcopy(
    source: Annotated[Optional[str], typer.Argument(metavar="FILE|-", help="A file describing the product, or - for stdin (read when piped and no --product is given); with --lines, products one a line.")] = None,
    product: Annotated[Optional[str], typer.Option(help="What is being advertised.")] = None,
    audience: Annotated[str, typer.Option(help="Who the ad is for.")] = ...,
    tone: Annotated[str, typer.Option(help="How it should sound: friendly, playful, luxurious, urgent, ...")] = "friendly",
    n: Annotated[int, typer.Option("-n", help="How many distinct variants (fewer, with a warning, where the model writes no more).")] = 3,
    max_words: Annotated[int, typer.Option("--max-words", help="Most words per headline.")] = 8,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the variants (with --lines, every line's) to this file, atomically at the end; - for stdout.")] = None,
    lines: Annotated[bool, typer.Option("--lines", help="Each non-empty line of the input (or of --product) is one product, all for the one --audience; one line of variants (joined by ' | ') per product.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"variants": [{"headline", "body"}, ...], "missing": N, "cut_off": BOOL} as JSON.')] = False,
    *,
    run: RunOptions,
) -> None:
    """Write distinct ad-copy variants: a short headline and a one-line body each."""
    from aigc import ui
    from aigc.errors import BadInputError
    from aigc.textio import read_document
    from aigc.writing import output_target

    options = {"n": n, "tone": tone, "max_words": max_words}
    if product is None:  # a product piped in, when none is named
        source = source_or_stdin(source, "a product (--product TEXT, or FILE, or - for stdin) to write ad copy for")
    elif source is not None:
        raise BadInputError("give either --product TEXT or a product's FILE (or - for stdin), not both")
    output = output_target(output, source=source)
    if lines:
        check_lines_source(source, "adcopy")
        text = product if product is not None else read_document(source, lines=True, expected=PRODUCT)
        run_lines(run, "adcopy", text, options, lambda r: " | ".join(f"{v['headline']} — {v['body']}" for v in r["variants"]), as_json, notes=lambda result, generator: generator.notes(result, generator.validate(options)), output=output, fields={"audience": audience})
        return
    inputs = {"product": product if product is not None else read_document(source, text_hint="to give the product itself, use --product TEXT", expected=PRODUCT), "audience": audience}
    generator = run.generator("adcopy")
    run.prepare(generator, inputs, options)
    with ui.prints_to_stderr():  # what generator code prints goes to stderr
        result = generator(inputs, sampling=run.sampling(), **options)  # fewer variants than -n: the generator warns
    text = "\n\n".join(f"{v['headline']}\n{v['body']}" for v in result["variants"])
    emit(json.dumps(result, ensure_ascii=False) if as_json else text, output)
    run.keep(generator, "adcopy", inputs, text, options, result)
    run.report(generator)


EXAMPLES = examples(
    'aigc adcopy --product "a reusable bamboo water bottle" --audience hikers -n 3',
    'aigc adcopy --product "a standing desk" --audience "remote workers" --tone playful --json',
    "aigc adcopy products.txt --lines --audience hikers -n 2 -o ads.txt",
)
