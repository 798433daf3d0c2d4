"""`aigc embed TEXT|FILE|-` and `aigc similar QUERY -i FILE`."""

import json
from typing import Annotated, Optional

import typer

from .. import ui
from ..errors import BadInputError
from ..textio import check_utf8, numbered_lines, read_input
from ..writing import output_target
from . import examples
from .lines import LineResults, check_lines_source, warn_of_rows_file
from .options import InputFormat, RunOptions, emit, generation_options, source_or_stdin, warn_of_a_word_read_as_a_file
from .command_defaults import DefaultsCommand


@generation_options(sampling=False)
def embed(
    source: Annotated[Optional[str], typer.Argument(metavar="TEXT|FILE|-", help="The text, a .txt/.md/.html file or .srt/.vtt/.sbv/.ass/.ssa subtitles (their words), or - for stdin (read when piped and nothing is given).", show_default=False)] = None,
    lines: Annotated[bool, typer.Option("--lines", help="Embed each non-empty input line as its own text; one result per line.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"embedding", "dimensions"} (with --lines, and "line") instead of the bare list.')] = False,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the embedding (with --lines, every line's) to this file, atomically at the end; - for stdout.")] = None,
    *,
    run: RunOptions,
) -> None:
    """Print a text's embedding: a JSON list of numbers, a unit vector (so cosine similarity = dot product)."""
    source = source_or_stdin(source, "the text or a document to embed (TEXT, FILE, or - for stdin)")
    output = output_target(output, source=source)
    if lines:
        check_lines_source(source, "embed")
    else:
        warn_of_rows_file(source, "embed")
    warn_of_a_word_read_as_a_file(source, "embed")
    text = read_input(source, lines=lines)
    numbered = numbered_lines(text) if lines else [(None, text)]
    if not numbered:
        raise BadInputError("there is no text to embed")  # the text itself: an empty file or stdin is refused as read
    generator = run.generator("embed")
    run.prepare(generator, text, {})  # every line's text checked before the model loads
    failed: dict[int, str] = {}

    def skip(index: int, exc: BadInputError) -> None:  # with --lines a line that fails is skipped, and said
        if not lines:
            raise exc
        failed[index] = str(exc)
        ui.warn(f"line {numbered[index][0]}: {exc}")

    with ui.prints_to_stderr(), ui.progress_bar() as progress:  # what generator code prints goes to stderr
        generator.progress = progress
        vectors = generator.embed_many([t for _, t in numbered], on_error=skip)
    shown = LineResults(as_json, output)
    for index, ((number, _), vector) in enumerate(zip(numbered, vectors)):
        record = {"error": failed[index]} if vector is None else {"embedding": vector, "dimensions": len(vector)}
        if lines:
            shown.show(number, "" if vector is None else json.dumps(vector), record)
        else:
            emit(json.dumps(record) if as_json else json.dumps(vector), output)
    if lines:
        shown.finish(text)
    run.report(generator)
    shown.check(len(numbered))


@generation_options(sampling=False)
def similar(
    query: Annotated[str, typer.Argument(metavar="QUERY", help="The text to find the most similar items to.")],
    input: Annotated[Optional[str], typer.Option("--input", "-i", metavar="FILE", help="The items: .txt (one per line), .jsonl (.ndjson), .csv or .tsv, as `aigc batch` reads them; - for stdin (read when piped and no -i is given): JSON Lines, a text a line where no line is a JSON object, or the --format named.", show_default=False)] = None,
    input_format: InputFormat = None,
    field: Annotated[str, typer.Option(help="The column (or JSON key) that holds an item's text (a .txt file has none: its lines are the texts).")] = "text",
    id_field: Annotated[str, typer.Option("--id-field", help="The column that holds an item's id (rows without one: their row number).")] = "id",
    number: Annotated[int, typer.Option("-n", help="How many items to show.")] = 10,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse embeddings of texts seen before (~/.cache/aigc/embeddings.db), and keep the new ones.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help='One {"id", "score", "text", "fields"} per line ("fields": the row\'s other columns).')] = False,
    *,
    run: RunOptions,
) -> None:
    """The items of a file most similar in meaning to QUERY, by the cosine similarity of embeddings."""
    from ..batch_inputs import columns, read_rows
    from ..similarity import EmbeddingCache, embed_cached, rank

    input = source_or_stdin(input, "-i FILE with the items (.txt, .jsonl, .csv or .tsv)")
    if number < 1:
        raise BadInputError(f"-n must be at least 1, got {number}")
    generator = run.generator("embed")
    run.check(generator, query, {})  # a bad query is the one error, before any row is read or warned about
    items: list[tuple[int, object, str, dict]] = []  # row number, id, text, the other columns
    input_format = input_format and input_format.lower()  # --format CSV
    rows = read_rows(input, id_field, field, unique_ids=False, input_format=input_format, lines_unless_json=True)
    if field != "text" and (input_format == "txt" if input_format else input.lower().endswith(".txt")):  # its lines are the texts whatever the column is called
        raise BadInputError(f"{input}: a .txt file has one text a line and no columns, so no --field; leave it out, or give a .jsonl, .csv or .tsv file")
    if not any(field in row.fields for row in rows):  # one error, not a warning for every row
        raise BadInputError(f"{input}: no row has the column {field!r} (its columns: {', '.join(map(repr, columns(rows))) or 'none'}); name the one with the text with --field")
    for row in rows:
        try:
            if row.error:
                raise BadInputError(row.error)
            text = generator.batch_input(row.fields, field)
            generator.check_inputs(text)
            check_utf8(text, "text")
        except BadInputError as exc:
            ui.warn(f"row {row.number} skipped: {exc}")
            continue
        items.append((row.number, row.id, text, {k: v for k, v in row.fields.items() if k not in (field, id_field)}))
    if not items:
        raise BadInputError(f"{input} holds no text to compare with (field {field!r})")
    run.load(generator)

    def skip(index: int, exc: BadInputError) -> None:  # index 0 is the query: its error is the command's
        if not index:
            raise exc
        ui.warn(f"row {items[index - 1][0]} skipped: {exc}")

    with ui.prints_to_stderr(), ui.progress_bar() as progress:
        generator.progress = progress
        texts = [query] + [item[2] for item in items]
        vectors = embed_cached(generator, texts, EmbeddingCache(), skip) if cache else generator.embed_many(texts, on_error=skip)
    found = [(item, vector) for item, vector in zip(items, vectors[1:]) if vector is not None]
    if not found:
        raise BadInputError(f"no row of {input} could be embedded (warned above); there is nothing to compare with")
    for index, score in rank(vectors[0], [vector for _, vector in found], number):
        (_, item_id, text, fields), _ = found[index]
        if as_json:
            ui.result(json.dumps({"id": item_id, "score": round(score, 4), "text": text, "fields": fields}, ensure_ascii=False))
        else:
            shown_id = item_id if isinstance(item_id, str) and item_id.isprintable() else json.dumps(item_id, ensure_ascii=False)  # one line, tab-separated
            ui.result(f"{score:.3f}\t{shown_id}\t{' '.join(text.split())}")
    run.report(generator)


EMBED_EXAMPLES = examples(
    'aigc embed "rooftop beekeeping"',
    "aigc embed - --lines --json -o vectors.jsonl < notes.txt",
)
SIMILAR_EXAMPLES = examples(
    'aigc similar "bees in cities" -i notes.txt -n 5',
    'aigc similar "refund request" -i tickets.csv --field body --id-field ticket --json',
)


def register(app: typer.Typer) -> None:
    app.command(cls=DefaultsCommand, epilog=EMBED_EXAMPLES)(embed)
    app.command(cls=DefaultsCommand, epilog=SIMILAR_EXAMPLES)(similar)
