"""`aigc adcopy --product ... --audience ... [--tone ...] [-n N] [--json]`."""

import json
from typing import Annotated

import typer

from aigc.cli import examples
from aigc.cli.options import RunOptions, generation_options


@generation_options(logged=True)
def adcopy(
    product: Annotated[str, typer.Option(help="What is being advertised.")],
    audience: Annotated[str, typer.Option(help="Who the ad is for.")],
    tone: Annotated[str, typer.Option(help="How it should sound: friendly, playful, luxurious, urgent, ...")] = "friendly",
    n: Annotated[int, typer.Option("-n", help="How many distinct variants (fewer, with a warning, where the model writes no more).")] = 3,
    max_words: Annotated[int, typer.Option("--max-words", help="Most words per headline.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"variants": [{"headline", "body"}, ...], "missing": N, "cut_off": BOOL} as JSON.')] = False,
    *,
    run: RunOptions,
) -> None:
    """Write distinct ad-copy variants: a short headline and a one-line body each."""
    from aigc import ui
    from aigc.generators.base import fewer_advice

    options = {"n": n, "tone": tone, "max_words": max_words}
    inputs = {"product": product, "audience": audience}
    generator = run.generator("adcopy")
    run.prepare(generator, inputs, options)
    result = generator(inputs, sampling=run.sampling(), **options)
    if result["missing"]:
        got = len(result["variants"])
        why = fewer_advice(generator.engine, "some bodies" if result["cut_off"] else None)
        ui.warn(f"only {got} of the {got + result['missing']} variants asked for came out distinct; {why}")
    text = "\n\n".join(f"{v['headline']}\n{v['body']}" for v in result["variants"])
    ui.result(json.dumps(result, ensure_ascii=False) if as_json else text)
    run.keep(generator, "adcopy", inputs, text, options, result)
    run.report(generator)


EXAMPLES = examples(
    'aigc adcopy --product "a reusable bamboo water bottle" --audience hikers -n 3',
    'aigc adcopy --product "a standing desk" --audience "remote workers" --tone playful --json',
)
