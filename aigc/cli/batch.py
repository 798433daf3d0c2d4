"""`aigc batch TASK --input FILE -o OUT.jsonl`."""

import json
import os
from pathlib import Path
from typing import Annotated, Any, Collection, Optional

import typer

from .. import ui
from ..errors import BadInputError, ItemsFailedError, OptionError, Terminated, UnknownGeneratorError, did_you_mean, option
from ..textio import DOCUMENT_FILES, DOCUMENT_SUFFIXES, STDIN, check_utf8, parse_json
from ..writing import STDOUT, output_target
from . import complete, examples
from ..generators.base import coerce_value
from .lines import first_few, given_back_note, missed_note
from .options import PARAMETERS, InputFormat, RunOptions, Schema, Wait, WaitTimeout, generation_options, read_schema_option, source_or_stdin, waiting_limit
from .command_defaults import DefaultsCommand


def parse_options(pairs: list[str], known: Collection[str] = ()) -> dict[str, Any]:
    """`key=value` pairs. Values stay text, which the generator converts to each option's type
    ("3" -> 3 for a number, "3" for text); a JSON list or object (or null) is parsed. A key that
    is none of the task's `known` options but its command's flag for one (`to` for
    target_language, as `aigc translate --to`) sets that option; a key given twice is an error."""
    flags = {parameter.rstrip("_"): name for name, parameter in PARAMETERS.items()}
    options: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInputError(f"-O {pair or repr(pair)} must look like key=value")
        name = key.strip().replace("-", "_")
        if name not in known and flags.get(name) in known:
            name = flags[name]
        if name in options:
            twice = f"-O {name} is given twice" if spelled[name] == key.strip() else f"-O {spelled[name]} and -O {key.strip()} both set {name}"
            raise BadInputError(f"{twice}; keep one")
        spelled[name] = key.strip()
        options[name] = value
        if value.strip().startswith(("[", "{")) or value.strip() == "null":
            try:
                options[name] = parse_json(value)
            except ValueError:  # kept as text
                pass
    return options


@generation_options
def batch(
    task: Annotated[str, typer.Argument(metavar="TASK", help="The task to run: summarize, headline, translate, classify, embed, chat, template, or a plugin's (images: aigc image, once per prompt).", autocompletion=complete.generators)],
    output: Annotated[str, typer.Option("--output", "-o", metavar="OUT.jsonl", help="Results, one JSON line per row; rerunning skips rows already done and runs failed or edited ones again (- for stdout). A .csv or .tsv is a table for a spreadsheet (UTF-8, a .csv with a byte-order mark for Excel: --bom/--no-bom; text beginning with = + - @, a tab or CR gets a ' before it, so it is not run as a formula), written whole as the run ends or stops, from OUT.csv.jsonl beside it, which a rerun resumes.")],
    documents: Annotated[Optional[list[str]], typer.Argument(metavar="DOCUMENT", help="Documents to run instead of rows: files (inbox/*.html, as the shell expands it) or folders (their " + DOCUMENT_FILES + ", subfolders too), each one row, read as `aigc summarize FILE` reads it, its id its path; -i DIR (or a quoted 'GLOB') does the same.", show_default=False)] = None,
    input: Annotated[Optional[str], typer.Option("--input", "-i", metavar="FILE", help="Rows to run: .jsonl (or .ndjson), .csv (comma, semicolon, tab or pipe between cells), .tsv, or .txt (one item per line); - for stdin (read when piped and no -i is given): JSON Lines, or the --format named.", show_default=False)] = None,
    input_format: InputFormat = None,
    field: Annotated[Optional[str], typer.Option(help="The column (JSON key; doc.body for a nested one) holding each row's text (default: text). headline reads --field topic as topics, any other column as articles, and a .txt line as a topic (--field article: an article a line).", show_default=False)] = None,
    id_field: Annotated[str, typer.Option("--id-field", help="The column holding each row's id; rows without it are numbered.")] = "id",
    option_pairs: Annotated[Optional[list[str]], typer.Option("--option", "-O", metavar="KEY=VALUE", help="A task option as key=value, e.g. -O labels=a,b or -O target_language=French (repeatable; an unknown key lists the task's options).")] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="skip: record a bad row's error and go on; stop: stop at it.", autocompletion=complete.on_error)] = "skip",
    concurrency: Annotated[int, typer.Option(help="Rows in flight at once; their model calls are batched together (a sampled row is drawn from its own seed, --seed or one recorded as its \"seed\"; in bfloat16/float16 an answer, greedy or seeded, can change with its batch: --dtype float32 for answers that do not depend on batching).")] = 16,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Resume -o with other task options or sampling settings (a higher --max-tokens, say): its failed rows, and rows not yet run, run with these; rows done keep their results, each line recording what made it.")] = False,
    keep_columns: Annotated[bool, typer.Option("--keep-columns", help="Keep each row's input columns in the output: as \"input\" in a JSON line, as columns of a .csv or .tsv (input columns named id or error as input.id, input.error: the table's own id and error columns are the run's).")] = False,
    schema: Schema = None,
    escape_formulas: Annotated[bool, typer.Option("--escape-formulas/--no-escape-formulas", help="In a .csv or .tsv -o, put a ' before text beginning with = + - @, a tab or CR, so a spreadsheet runs no formula; --no-escape-formulas writes every cell as it is, for a table that goes back into a build or translation system (\"+ Add item\", \"@mention\"), not into a spreadsheet.")] = True,
    bom: Annotated[Optional[bool], typer.Option("--bom/--no-bom", help="Start a .csv or .tsv -o with a UTF-8 byte-order mark, which Excel needs to read UTF-8, or not, for awk, cut and csv readers (default: a new .csv has one, a .tsv none; a rerun keeps what the table has).", show_default=False)] = None,
    wait: Wait = False,
    wait_timeout: WaitTimeout = None,
    *,
    run: RunOptions,
) -> None:
    """Run a task over every row of a file, or every document of a folder or list, resumably, with rows batched through the model."""
    from ..batch import MISSES, check_concurrency, check_on_error, check_output_name, needs_model, run_batch
    from ..batch_inputs import INPUT_FORMATS, check_inputs, read_rows
    from ..batch_output import made_from_cells_as_markdown, pending_rows, streams, with_line_options, writing
    from ..batch_tables import TABLES, table_state, write_table
    from ..engine.sampling import SamplingParams
    from ..generators.base import registered_generators, same_every_time

    from ..batch_inputs import document_paths, document_rows

    documents = _documents(input, documents or [], input_format, field, id_field)  # None: rows
    if documents is None:
        input = source_or_stdin(input, "--input FILE with the rows to run (.jsonl, .csv, .tsv or .txt; JSON Lines on stdin) or documents (FILE... or -i DIR)")
    check_on_error(on_error)
    check_concurrency(concurrency)
    reads = {"--schema": schema, **{f"-O {key.strip()}": value for key, _, value in (pair.partition("=") for pair in option_pairs or [])}}  # an -O value may name a file: examples, a glossary, a template
    target = output_target(output, source=None if documents else input, reads=reads)  # checked writable; None: stdout (-, /dev/stdout)
    output, shown = target or STDOUT, target or "stdout"  # `shown`: how messages name it
    check_output_name(output, tables=True)
    table = output if target and output.lower().endswith(TABLES) else None  # written from the JSON Lines run through
    if table:
        output = str(table_state(table))
        output_target(output, source=None if documents else input, reads=reads)  # the JSON Lines beside it, which may not be the input either
        if Path(table).exists() and Path(table).stat().st_size and not Path(output).exists():  # a table of the user's, as a foreign .jsonl is refused (an empty one, from mktemp or touch, holds nothing)
            raise BadInputError(f"{table} exists and was not written by aigc batch (no {Path(output).name} beside it to resume); give another -o, or remove it")
    if bom is not None and not table:
        raise BadInputError(f"{'--bom' if bom else '--no-bom'} goes with a .csv or .tsv -o (JSON Lines have no byte-order mark)")
    if retry_failed and target is None:
        raise BadInputError(f"{option('retry_failed')} resumes an output file, and stdout keeps no rows to retry: give -o FILE")
    if schema is not None and task not in ("chat", "template"):
        raise BadInputError(f"--schema goes with the chat and template tasks, not {task}")
    run.json_schema = read_schema_option(schema)
    try:
        generator = run.generator(task)
    except UnknownGeneratorError:  # the command calls it a task
        raise BadInputError(f"unknown task {task!r}{did_you_mean([task], registered_generators())}; tasks: {', '.join(sorted(registered_generators()))}") from None
    options = parse_options(option_pairs or [], generator.option_names())
    if task in ("chat", "template") and "n" in options:  # several answers: the sampling setting (as headline's -O n is its option), which has no flag here
        run.n = coerce_value("-O n", options.pop("n"), int)
    input_format = input_format and input_format.lower()  # --format CSV
    if input_format not in (None, *INPUT_FORMATS):  # `--format bullets`, meant for the summary
        own = f"; the {task} task's own format option is given with -O, e.g. -O format={input_format}" if "format" in generator.option_names() else ""
        raise BadInputError(f"--format names the format of the input rows: jsonl, csv, tsv or txt, not {input_format!r}{own}")
    if "template" in options:  # its front matter may name the model
        generator = run.generator(task, template=options["template"])
    check_utf8(options, "-O value")
    SamplingParams(**run.sampling())  # bad values fail here, not on every row
    suffix = "" if documents else input_format or Path(input).suffix.lower().lstrip(".")
    field = (generator.line_field if suffix == "txt" else "text") if field is None else field  # a .txt row is a line
    plain = suffix in ("txt", "csv", "tsv")  # its rows are plain text: lines, or a spreadsheet's cells (a line break in one is the writer's)
    if documents:
        paths, skipped = document_paths(documents)
        input = documents[0] if len(documents) == 1 else "the documents"  # how messages name them
        if skipped:
            ui.warn(_skipped_note(skipped, not paths))
        if not paths:
            raise BadInputError(f"{input} holds no documents ({DOCUMENT_FILES})")
        rows = document_rows(paths)
    else:
        rows = read_rows(input, id_field, field, input_format=input_format)
    generator.check_sampled(run.sampling())
    if suffix in ("csv", "tsv") and made_from_cells_as_markdown(output, generator, options, run.sampling(), (field, id_field)):
        plain = False  # made before cells were plain text: resumed as it was made, its rows all read alike
        ui.warn(f"{shown} was made reading the {suffix} cells as Markdown, as aigc did before it read them as plain text; its rows left are read so too (start a new -o to read them as plain text)")
    options = with_line_options(generator, options, plain)
    try:
        opts = generator.validate(options)
    except OptionError as exc:  # given with -O: named as given, not as the command flag of that name
        raise BadInputError(exc.naming(f"-O {exc.option}")) from None
    generator.check_batch(opts)
    generator.check_sampling(opts, run.sampling())
    generator.warn_greedy(opts, run.sampling())
    check_inputs(generator, rows, field, STDIN if input == "-" else input, options)
    wait, limit = waiting_limit(wait, wait_timeout)
    waiting = (lambda: ui.info(f"(waiting for another aigc batch to finish writing {shown})")) if wait and target else None
    with writing(output, waiting, limit), ui.prints_to_stderr():  # held while the model loads: a second run on it is refused at once; what generator code prints goes to stderr
        pending = pending_rows(rows, output, generator, options, run.sampling(), (field, id_field), plain, retry_failed)
        prepared = needs_model(pending)
        if prepared:
            with ui.stage_status() as stage:
                generator.load_progress = stage
                generator.prepare(options)
        with ui.items_progress(task, len(pending)) as progress:
            reached = [0, len(pending)]  # rows done of those to run, as the progress last had them

            def counted(done: int, total: int) -> None:
                reached[:] = done, total
                progress(done, total)

            try:
                summary = run_batch(
                    generator, rows, output, options, run.sampling(), field, on_error, concurrency, counted, id_field,
                    prepared=prepared, lines=plain, retry_failed=retry_failed, keep_columns=keep_columns,
                    stop_wait=0,  # Ctrl-C: the rows in flight are told to stop, not waited for; the process ends at once (`app._leave`)
                )
            except (KeyboardInterrupt, Terminated):
                if not streams(output):
                    ui.info(_stopped_note(*reached, output))
                raise
            finally:
                if table and Path(output).is_file():  # the rows done so far, even when stopped
                    write_table(output, rows, table, id_field, keep_columns, escape_formulas, bom)
    again = f"; {summary.retried} had failed in an earlier run" if summary.retried else ""
    again += f"; {summary.changed} had another input in an earlier run" if summary.changed else ""
    done_before = "" if streams(output) else f", {summary.skipped} already done"  # a stream is never resumed
    ui.info(
        f"{summary.done} row{'s' * (summary.done != 1)} written to {shown} ({summary.errors} with errors{again}){done_before}"
        + (f"; {summary.items_per_second:.2f} rows/s" if summary.done else "")
    )
    if summary.short:
        what = f"the model {generator.engine.name} gives the same answer to every sample; ask for fewer" if same_every_time(generator.engine) else "raise --temperature, or ask for fewer"
        ui.warn(f"{summary.short} row{'s' * (summary.short != 1)} came out with fewer results than asked for (each result's \"missing\" says how many); {what}")
    if summary.unchanged:
        ids = _ids(summary.unchanged)
        ui.warn(given_back_note("id", ids, summary.done, f'; {"its result says" if len(ids) == 1 else "their results say"} "unchanged": true'))
    if summary.cut_off:
        ui.warn(_cut_off_note(summary.cut_off, summary.done, run.token_limit(options.get("template") if isinstance(options.get("template"), str) else None)))
    for key in MISSES:
        if summary.missed.get(key):
            missed = sorted(summary.missed[key], key=lambda pair: pair[0].number)
            ui.warn(missed_note(key, [(_id(row), items) for row, items in missed], summary.done))
    run.report(generator)
    if summary.errors:
        where = "recorded in the output" if streams(output) else f"in {table or output}; {_rerun(summary.to_raise)}"
        raise ItemsFailedError(f"{summary.errors} of {summary.rows} rows failed; their errors are {where}")


def _documents(input: str | None, documents: list[str], input_format: str | None, field: str | None, id_field: str) -> list[str] | None:
    """The documents to run, each one row (`-i DIR`, `-i 'GLOB'`, `-i page.html` and the DOCUMENT
    arguments), or None where `-i` names rows (a .jsonl, .csv, .tsv or .txt file, or stdin)."""
    from ..batch_inputs import FORMATS

    sources = list(documents)
    if input is not None and input != "-":
        path = Path(input).expanduser()
        pattern = not path.exists() and any(char in input for char in "*?[")
        if pattern or path.is_dir() or (path.suffix.lower() in DOCUMENT_SUFFIXES and path.suffix.lower() not in FORMATS):
            sources.insert(0, input)
        elif sources:  # `-i notes/*.txt`, which the shell expanded: the first is taken as a file of rows
            raise BadInputError(
                f"-i {input} is a file of rows, and {first_few(documents)} {'is a document' if len(documents) == 1 else 'are documents'}; "
                "to run each file as one document, name them all without -i (aigc batch TASK FILE... -o OUT.jsonl), or give -i a folder"
            )
    elif sources and input == "-":
        raise BadInputError(f"give rows on stdin (-i -) or documents ({first_few(documents)}), not both")
    if not sources:
        return None
    for given, name in ((input_format, option("input_format")), (field, "--field"), (None if id_field == "id" else id_field, option("id_field"))):
        if given is not None:
            raise BadInputError(f"{name} goes with a file of rows; each document is one row, its text the document's and its id its path")
    return sources


def _skipped_note(skipped: list[str], only: bool) -> str:
    """The files of the folders given that are no documents, and the broken symbolic links of folders and
    patterns, left out (`only`: they were all the documents given)."""
    kinds: dict[str, int] = {}
    broken = 0
    for path in skipped:
        if os.path.islink(path) and not os.path.exists(path):
            broken += 1
            continue
        kind = Path(path).suffix.lower() or "no suffix"
        kinds[kind] = kinds.get(kind, 0) + 1
    counted = ", ".join([f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda item: (-item[1], item[0]))] + [f"{broken} broken link{'s' * (broken != 1)}"] * bool(broken))
    one = len(skipped) == 1
    if broken == len(skipped):
        return f"skipped {broken} broken symbolic link{'s' * (not one)} (to no file): {first_few(skipped, 3)}"
    rest = "" if only else "; name one with its path to run it too"
    what = ("is no document" if one else "are no documents") if not broken else "are no documents or broken links"
    return f"skipped {len(skipped)} file{'s' * (not one)} that {what} ({counted}): {first_few(skipped, 3)}; a folder's {DOCUMENT_FILES} are read{rest}"


def _stopped_note(done: int, total: int, output: str) -> str:
    """What a batch stopped midway tells: how many of its rows finished, and that they are kept."""
    if not done:
        return f"none of the {total} row{'s' * (total != 1)} to run finished; the same command runs {'them' if total != 1 else 'it'} again"
    return f"{done} of the {total} row{'s' * (total != 1)} to run finished and {'are' if done != 1 else 'is'} kept in {output}; the same command goes on from there"


def _id(row) -> str:
    """How a warning names a row: its id as JSON."""
    return json.dumps(row.id, ensure_ascii=False)


def _ids(rows: list) -> list[str]:
    """The rows' ids as JSON (`_id`), in the rows' order."""
    return [_id(row) for row in sorted(rows, key=lambda row: row.number)]


def _cut_off_note(rows: list, total: int, limit: str) -> str:
    """One warning for the rows of `total` whose results the token `limit` cut off, naming the first few by id."""
    ids = _ids(rows)
    one = len(ids) == 1
    return (
        f"{len(ids)} of {total} row{'s' * (total != 1)} {'was' if one else 'were'} cut off at {limit} (id{'s' * (not one)} {first_few(ids)}; "
        f'{"its result says" if one else "their results say"} "cut_off": true or "finish_reason": "length"); {"it counts" if one else "they count"} as done, so '
        f"--retry-failed does not run {'it' if one else 'them'} again: a new -o with a higher --max-tokens runs {'it' if one else 'them'} whole"
    )


def _rerun(to_raise: dict[tuple[str, ...], int]) -> str:
    """How to finish the run: --retry-failed with the settings the rows' errors say to raise, if any."""
    if not to_raise:
        return f"rerunning the same command retries them (fix bad rows first; {option('retry_failed')} runs them with other settings, keeping the rows done)"
    wanted = ", ".join(f"{' or '.join(map(option, names))} ({count} row{'s' * (count != 1)})" for names, count in sorted(to_raise.items(), key=lambda item: -item[1]))
    return f"rerun with {option('retry_failed')} and a higher {wanted} to run them again, keeping the rows done"


EXAMPLES = examples(
    "aigc batch summarize -i docs.jsonl -o summaries.jsonl -O words=40",
    "aigc batch headline -i topics.txt -o headlines.jsonl -O n=5",
    "aigc batch classify -i - --format txt -O labels=neg,pos -o labels.jsonl",
)


def register(app: typer.Typer) -> None:
    app.command(cls=DefaultsCommand, epilog=EXAMPLES)(batch)
