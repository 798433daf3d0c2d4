"""`aigc run TEMPLATE [FILE|-] [--var key=value ...] [-o FILE]`: render any template and generate with it."""

import contextlib
import json
import sys
from typing import Annotated, Optional

import typer

from .. import config, template_files, templates, ui
from ..engine.models import registered_models
from ..errors import BadInputError, Terminated, UnknownTemplateError
from ..json_schemas import several, shown
from ..markdown_blocks import extract_code
from ..textio import read_document
from ..writing import output_target
from . import complete, examples
from .command_defaults import DefaultsCommand
from .options import LITERAL_HELP, Answers, Extract, ExtractLast, RunOptions, Schema, check_extract, check_vars_used, emit, generation_options, held_stream, parse_vars, read_schema_option, stdin_ready, stdin_text, template_file, weights_of

PLAIN = ("chat", "template")


@generation_options(logged=True)
def run_template(
    template: Annotated[str, typer.Argument(metavar="TEMPLATE", help="Template name (see `aigc templates list`), or a .j2 file.", autocompletion=complete.templates)],
    document: Annotated[Optional[str], typer.Argument(metavar="FILE|-", help="A document for the template's input, or - for stdin (as -i; piped input fills it when it is not given).", show_default=False)] = None,
    var: Annotated[Optional[list[str]], typer.Option("--var", help="A template variable, key=value (repeatable).")] = None,
    no_variable_replacement: Annotated[bool, typer.Option("--no-variable-replacement", help=LITERAL_HELP)] = False,
    source: Annotated[Optional[str], typer.Option("--input", "-i", metavar="FILE|-", help="Read the 'input' variable from a file, or stdin with - (piped input fills it when it is not given).")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the answer to this file (atomically; - for stdout).")] = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="Replace the template's system prompt.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {template, model, text, finish_reason, usage} as JSON (with --schema, data too; choices where the template asks for several answers).")] = False,
    schema: Schema = None,
    n: Answers = None,
    extract: Extract = False,
    extract_last: ExtractLast = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the messages the model would get and stop, without loading it; the options are checked as for a run (--json: {template, messages, defaults}: the sampling settings it would run with, options here over the template's).")] = False,
    *,
    run: RunOptions,
) -> None:
    """Render a template with its variables and generate an answer with it.

    Sampling: the template's front-matter defaults apply unless an option here overrides them.
    """
    check_extract(extract, extract_last, as_json)
    if document is not None and source is not None:
        raise BadInputError(f"give the input as {document} or as -i {source}, not both")
    source = source if document is None else document
    run.json_schema = read_schema_option(schema)
    run.n = n
    found = _template(template)
    values = parse_vars(var or [])
    from ..generators.template import checked_values

    checked_values(found, values)  # a misspelt --var is named before the input it leaves unfilled
    check_vars_used(found, values)
    reads_stdin = source is None and _open_input(found, values) is not None  # piped text fills the input
    output = output_target(output, source="-" if reads_stdin else source, reads={"template": template_file(template), "--schema": schema})
    found.check_filled(values, given_as="--var ")
    _fill_input(found, values, source)
    _check_input_given(found, values)
    if found.generator and found.generator not in PLAIN:
        ui.info(f"(template {found.name!r} is written for `aigc {found.generator}`; running it as one prompt)")
    generator = run.generator("template", template=template)
    options = {"template": template, "system": system, **({"no_variable_replacement": True} if no_variable_replacement else {})}
    with ui.prints_to_stderr():  # what generator code prints goes to stderr
        rendered = generator.preprocess(values, generator.validate(options))  # template errors before any model loads
    run.check(generator, values, options)
    if dry_run:
        shown_messages = "\n\n".join(f"## {m['role'].capitalize()}\n\n{m['content']}" for m in rendered.messages)
        settings = {**generator.sampling_defaults, **rendered.defaults, **run.sampling()}  # as a run would take them
        ui.result(json.dumps({"template": template, "messages": rendered.messages, "defaults": settings}, ensure_ascii=False) if as_json else shown_messages)
        if output is not None:  # where the answer goes: a check of a script must not replace it
            ui.info(f"(--dry-run: {output} is left as it is)")
        return
    run.load(generator)
    run.draw_seed(generator, options)
    one_answer = int(n or rendered.defaults.get("n") or 1) == 1 and "json_schema" not in rendered.defaults
    if not (as_json or extract or extract_last) and run.json_schema is None and one_answer:  # on a terminal as it is written, elsewhere whole (as far as it went where Ctrl-C stops it)
        live = output is None and sys.stdout.isatty()
        write = None if live else lambda text: emit(text, output)
        with ui.prints_to_stderr(), _left_as_it_was(output):  # what generator code prints goes to stderr
            answer, reason = ui.stream_result(generator.stream(values, sampling=run.sampling(), **options), on_stop=run.keeps_stopped(generator, "run", values, options), write=write, cut=None if output is None else ui.result)
        run.warn_cut_off(reason, template=template)
        run.keep(generator, "run", values, answer.strip(), options)
        run.report(generator)
        return
    with ui.prints_to_stderr(), _left_as_it_was(output):
        if as_json and run.json_schema is None and one_answer:  # read as a stream, so that a stop still prints the answer so far
            result = held_stream(generator.stream(values, sampling=run.sampling(), **options), run.keeps_stopped(generator, "run", values, options), lambda partial: ui.result(_json(template, generator, partial, run.drawn_seed())))
        else:
            result = generator(values, sampling=run.sampling(), **options)
    answer = shown(result)
    if as_json:
        emit(_json(template, generator, result, run.drawn_seed()), output)
    else:
        emit(shown(result, lambda text: extract_code(text, last=extract_last)) if extract or extract_last else answer, output)
    run.warn_cut_off(*result.get("finish_reasons", [result["finish_reason"]]), template=template)
    run.keep(generator, "run", values, answer, options, result.get("data"))
    run.report(generator)


def _json(template: str, generator, result: dict, drawn: dict | None = None) -> str:
    """--json's answer: the template, model, text, finish_reason and usage (and choices, data, the seed drawn where there are)."""
    payload = {"template": template, "model": generator.engine.name, **weights_of(generator), "text": result["text"], "finish_reason": result["finish_reason"], "usage": result["usage"]}
    return json.dumps({**payload, **several(result), **(drawn or {}), **({"data": result["data"]} if "data" in result else {})}, ensure_ascii=False)


@contextlib.contextmanager
def _left_as_it_was(output: Optional[str]):
    """Where Ctrl-C or SIGTERM stops the answer (the answer so far went to stdout), say that the -o
    file is left as it was: a half answer must not replace a whole one."""
    try:
        yield
    except (KeyboardInterrupt, Terminated):
        if output is not None:
            ui.info(f"(interrupted: {output} is left as it was)")
        raise


def _fill_input(template: "template_files.Template", values: dict[str, str], source: Optional[str]) -> None:
    """Put the text of `-i FILE|-`, else piped text, in the template's input variable. Where the
    input is given already (`--var input=...`, `-i FILE`) stdin is not read, so `aigc run` works in
    a `while read` loop; piped text a template has no place for at all is an error, not dropped."""
    if source is not None:
        name = template.input_variable(values)
        if name in values:
            raise BadInputError(f"{name} is given twice, by --var and by the input {source}; keep one")
        values[name] = read_document(source, text_hint="give text itself with --var input=TEXT, or pipe it in")
    elif (name := _open_input(template, values)) is not None:
        if (piped := stdin_text()) and piped.strip():  # piped text fills the template's text when it is still to fill
            values[name] = piped.strip()
    elif not values and stdin_ready() and (piped := stdin_text()) and piped.strip():
        template.input_variable(values)  # no place for the text: its error says what to give


def _check_input_given(template: "template_files.Template", values: dict[str, str]) -> None:
    """The input a template needs, not given: say the ways `aigc run` takes it."""
    name = _open_input(template, values)
    if name is not None and (name in template.required or not template.body.strip()):
        names = ", ".join(v["name"] for v in template.variables)
        raise BadInputError(f"{template.label} needs {name}: give it as FILE (or -i FILE), with --var {name}=TEXT, or pipe it in" + (f" (its variables: {names})" if names else ""))


def _template(name: str):
    """The template `name`; one that is a model's alias instead (`ollama run MODEL`) says how to ask that model."""
    try:
        return templates.get_template(name)
    except UnknownTemplateError as exc:
        if name in registered_models() or name in config.model_aliases():
            raise UnknownTemplateError(f"{exc}; {name} is a model: `aigc chat -m {name} \"PROMPT\"` asks it, `aigc chat -m {name}` chats with it") from None
        raise


def _open_input(template: "template_files.Template", values: dict[str, str]) -> Optional[str]:
    """The variable piped text fills, as `-i -` would: the input variable, when it is not given."""
    try:
        name = template.input_variable(values)
    except BadInputError:
        return None
    return name if name not in values else None


EXAMPLES = examples(
    "aigc run summarize article.md --var words=40 -o summary.md",
    'echo "Invent a product" | aigc run chat --dry-run',
)


def register(app: typer.Typer) -> None:
    app.command("run", cls=DefaultsCommand, epilog=EXAMPLES)(run_template)
