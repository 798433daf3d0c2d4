"""Running one task over many inputs: reading rows, resuming a run, and writing results in order.

Rows come from JSONL (or NDJSON), CSV, TSV or TXT (one item per non-empty line). Results go to a
JSONL file, one `{"id", "row", "result"}` or `{"id", "row", "error"}` line per input row. Each line is written,
flushed and fsynced as soon as its row is done, so a run killed at any moment leaves every finished
row in whole lines (plus at most one torn last line, which the next run cuts off) and a rerun skips
the ids already there and runs again those that failed; a run that ends puts the lines in input
order. Items run concurrently, and their model calls are merged into batches by `CoalescingEngine`.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from . import locks
from .engine.coalesce import CoalescingEngine
from .engine.models import model_key
from .engine.sampling import SamplingParams
from .errors import AigcError, BadInputError, OptionError, option
from .generators.base import Generator, type_name
from .textio import STDIN, check_writable, decode_text, inherited_fd, numbered_lines, open_stream, parse_json, unquote, write_atomic

FORMATS = (".jsonl", ".ndjson", ".csv", ".tsv", ".txt")
ON_ERROR = ("skip", "stop")
COLUMNS = ("text", "id")  # the columns read by default: the text, the id
WORKER = "aigc batch worker"  # the name of a thread running rows
WINDOW = 64  # rows sorted by length together, so a model batch holds rows of similar length


@dataclass
class Row:
    """One input row: its 1-based number, id, fields, and why it cannot run (if it cannot)."""

    number: int
    id: Any
    fields: dict[str, Any]
    error: str | None = None
    input: Any = dataclasses.field(default=None, repr=False)  # the generator's input itself (`Generator.many`)
    given: bool = False  # whether `input` is set; else the input is built from `fields`
    numbered: bool = False  # whether the row has no id of its own and `id` is its number


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0  # already in the output from an earlier run
    retried: int = 0  # failed in an earlier run, run again
    changed: int = 0  # had a result from an earlier run, run again as its input has changed since
    errors: int = 0
    short: int = 0  # results with fewer items than asked for (their `missing`, as headline's)
    to_raise: dict[tuple[str, ...], int] = dataclasses.field(default_factory=dict)  # rows whose error says to raise these options (any one), by option
    seconds: float = 0.0
    rows: int = 0

    @property
    def items_per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def read_rows(path: str | Path, id_field: str = "id", field: str = "text", unique_ids: bool = True) -> list[Row]:
    """Every row of a .jsonl (.ndjson), .csv, .tsv or .txt file (a .txt line is the column `field`),
    or of JSON Lines on stdin for "-" (as `aigc batch -o -` writes them, so runs chain).
    Ids default to the row number and must be unique strings or numbers (to resume by them) unless `unique_ids` is False."""
    if not isinstance(path, (str, Path)):
        raise BadInputError(f"read_rows takes the path of a file of rows (str or Path), got {type_name(path)}")
    piped = str(path) == "-"
    if piped:
        if sys.stdin is None or sys.stdin.isatty():
            raise BadInputError("-i - reads JSON Lines from stdin, but nothing was piped in; pipe rows in or give a file")
        text, path, suffix = decode_text(sys.stdin.buffer.read(), STDIN, "JSON Lines"), Path(STDIN), ".jsonl"  # named so in errors
    else:
        path = Path(path)
        suffix = path.suffix.lower()
        if not path.exists():  # named first: a missing file's suffix is no news
            raise BadInputError(f"no such file: {path}")
        if suffix not in FORMATS:
            hint = {
                ".json": f"; for a JSON list of objects, `jq -c '.[]' {path} > {path.with_suffix('.jsonl')}` writes them one a line (JSON Lines)",
                ".parquet": f"; `python -c \"import pandas; pandas.read_parquet('{path}').to_json('{path.with_suffix('.jsonl')}', orient='records', lines=True, force_ascii=False)\"` writes its rows as JSON Lines",
                **dict.fromkeys((".xlsx", ".xls", ".ods"), "; save the sheet as CSV (UTF-8) from the spreadsheet and give that file"),
            }.get(suffix, "")
            raise BadInputError(f"{path}: rows are read from {', '.join(FORMATS)} files{hint}")
        if path.is_dir():
            raise BadInputError(f"{path} is a directory; give a file")
        text = decode_text(path.read_bytes(), str(path), f"a {', '.join(FORMATS)} file")  # a named pipe too; cells as they are: no markup read, no space cut
    if suffix == ".txt":
        rows = [Row(n, n, {field: line}, numbered=True) for n, line in numbered_lines(text)]
    elif suffix in (".jsonl", ".ndjson"):
        rows = [_json_row(n, line, id_field, field) for n, line in numbered_lines(text)]
    else:
        tsv = suffix == ".tsv"  # text between tabs; a cell wrapped in quotes is unquoted, as in `eval` and `--examples`
        body = re.sub(r"\A(?:[ \t]*\n)+", "", text)  # the header is the first line with something on it
        named = None if tsv else re.match(r"sep=([^\n])[ \t]*\n", body)  # a `sep=;` line first names the delimiter, as Excel reads it
        body = body[named.end() :] if named else body
        delimiter = "\t" if tsv else named.group(1) if named else _delimiter(body.split("\n", 1)[0])
        if tsv:
            body = _quoted_cells_kept(body)
        if tsv and "\r" in body.split("\n", 1)[0].rstrip("\r"):  # no cell: the header's line goes on after it
            raise BadInputError(f"{path}: cannot read it as TSV: its lines end in a lone carriage return (as old Mac programs write them); save it with line feeds (\\n or \\r\\n)")
        if tsv and RETURN not in text:  # csv ends a line at a lone carriage return; in a cell it is text, as in a quoted .csv cell
            body = re.sub(r"\r(?=[^\n])", RETURN, body)
        reader = csv.DictReader(io.StringIO(body), delimiter=delimiter, quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        skipped = text.count("\n", 0, len(text) - len(body))  # blank lines before the header count in line numbers
        start = 1  # line of the body where the record being read begins
        try:
            if reader.fieldnames:  # `id,text ` names the column text
                reader.fieldnames = [(_tsv_cell(name) if tsv else name).strip() for name in reader.fieldnames]
                twice = sorted({name for name in reader.fieldnames if name and reader.fieldnames.count(name) > 1})
                if twice:  # a row would keep the last of them only
                    raise BadInputError(f"{path}:{1 + skipped}: the header names {', '.join(map(repr, twice))} twice; give each column its own name")
            records = []
            start = reader.line_num + 1
            for record in reader:
                if any((v or "").strip() for v in record.values() if isinstance(v, str)):  # a line of spaces is no row
                    records.append(record)
                last, start = start, reader.line_num + 1
        except csv.Error as exc:
            if not tsv and str(exc).startswith("new-line character seen in unquoted field"):  # Python's hint, universal-newline mode, is no help here
                if "\r" in body.split("\n", 1)[0].rstrip("\r"):  # the header's line goes on after one
                    raise BadInputError(f"{path}: cannot read it as CSV: its lines end in a lone carriage return (as old Mac programs write them); save it with line feeds (\\n or \\r\\n)") from None
                raise BadInputError(f"{path}:{start + skipped}: cannot read it as CSV: a cell holds a carriage return outside quotes; put the cell in double quotes to keep it, or take it out") from None
            raise BadInputError(f"{path}:{start + skipped}: cannot read it as {suffix[1:].upper()}: {exc}") from None
        if not tsv and records and start - 1 > last and _never_closed("\n".join(body.split("\n")[last - 1 :]), delimiter):
            raise BadInputError(f"{path}:{last + skipped}: cannot read it as CSV: a quoted cell opens on this row and is never closed")
        rows = [_table_row(n, record, id_field, field, len(reader.fieldnames or ()), tsv) for n, record in enumerate(records, 1)]
    if not rows:
        raise BadInputError(f"{path} holds no rows")
    if piped and all(row.error for row in rows):  # rows in another format: one error, not one a line
        raise BadInputError(f"-i - reads JSON Lines (one object a line) from stdin, and line {rows[0].number} is not: {rows[0].error}; read a .csv, .tsv or .txt from a file of that name")
    if id_field != "id" and suffix == ".txt":
        raise BadInputError(f"{path}: a .txt file has one text a line and no columns, so no {option('id_field')}; its rows are numbered by line")
    if id_field != "id" and not any(id_field in r.fields for r in rows):
        raise BadInputError(f"{path}: no row has the id column {id_field!r} given with {option('id_field')} (its columns: {', '.join(map(repr, columns(rows))) or 'none'})")
    if not unique_ids:
        return rows
    rows = [_resumable(row, id_field) for row in rows]
    _check_unique(path, rows)
    return rows


def _resumable(row: Row, id_field: str) -> Row:
    """`row`, or a row error without an id (as for bad JSON) when its id is one no run resumes by: a list, an object, true or false."""
    if isinstance(row.id, (bool, list, dict)):
        return Row(row.number, None, {}, f"the id ({id_field!r}) must be a string or number, not {json_kind(row.id)}")
    return row


def _check_unique(path: Path, rows: list[Row]) -> None:
    """Ids must be unique to resume by them, compared as text (a CSV's "2" is the number 2); a row
    without an id gets its row number, which may be another row's id."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row.id is not None:
            groups.setdefault(row.id if isinstance(row.id, str) else _key(row.id), []).append(row)
    repeated = [group for group in groups.values() if len(group) > 1]
    for group in repeated:
        numbered = next((r for r in group if r.numbered), None)
        if numbered:
            other = next(r for r in group if r is not numbered)
            raise BadInputError(
                f"{path}: row {numbered.number} has no id, so it gets its row number, {numbered.number}, which is also row {other.number}'s id; "
                "ids must be unique to resume: give every row an id"
            )
    if repeated:
        named = ", ".join(f"{_key(group[0].id)} (rows {', '.join(str(r.number) for r in group)})" for group in repeated[:5])
        raise BadInputError(f"{path}: id {named} appears more than once; ids must be unique to resume")


def _delimiter(header: str) -> str:
    """A .csv's delimiter: a comma, unless its header has none and is split by semicolons (as
    spreadsheets write CSV where a comma is the decimal mark), tabs or pipes."""
    if "," in header:
        return ","
    try:
        return csv.Sniffer().sniff(header, delimiters=";\t|").delimiter
    except csv.Error:  # one column
        return ","


BREAK = "\x00"  # a line break inside a quoted .tsv cell, while csv reads the lines
RETURN = "\x01"  # a carriage return in a .tsv cell, while csv reads the lines
TAB = "\x02"  # a tab inside a quoted .tsv cell, while csv reads the lines
# a quoted .tsv cell (as pandas, R and Excel write one holding a tab, quote or line break): it opens
# at a line's start or after a tab, `""` in it is a quote, and it closes before a tab or a line's end
QUOTED = re.compile(r'(?:^|(?<=\t)) *"[^"]*(?:""[^"]*)*" *(?=\t|\r?$)', re.M)


def _quoted_cells_kept(body: str) -> str:
    """A .tsv's text with the tabs, line breaks and carriage returns inside its quoted cells made
    `TAB`, `BREAK` and `RETURN` (each unless the text already holds it), so csv reads each such
    cell as one; a quote that does not close as a quoted cell does is text."""
    marks = str.maketrans({char: mark for char, mark in (("\t", TAB), ("\n", BREAK), ("\r", RETURN)) if mark not in body})
    return QUOTED.sub(lambda cell: cell.group().translate(marks), body)


def _tsv_cell(cell: str) -> str:
    """A .tsv cell read with `_quoted_cells_kept`: unquoted, its tabs, line breaks and carriage returns back."""
    return unquote(cell).replace(TAB, "\t").replace(BREAK, "\n").replace(RETURN, "\r")


def _table_row(number: int, record: dict, id_field: str, field: str, width: int, tsv: bool) -> Row:
    """A table's row; cells missing at its end are empty, as csv's DictReader and pandas read them,
    unless the `field` one is (the row has no text), and cells beyond the header are an error."""
    if tsv:
        record = {key: value if key is None or value is None else _tsv_cell(value) for key, value in record.items()}
    row_id = record.get(id_field) or number
    numbered = not record.get(id_field)
    # csv puts the cells beyond the header in a list under None, and None for each cell missing
    cells = width + len(record.get(None, ())) - sum(value is None for key, value in record.items() if key is not None)
    if cells > width or (field in record and record[field] is None):
        missing = f" (no {field!r} cell)" if cells < width else ""
        return Row(number, row_id, {}, f"the row has {cells} cell{'s' * (cells != 1)}; the header has {width}{missing}", numbered=numbered)
    return Row(number, row_id, {key: "" if value is None else value for key, value in record.items()}, numbered=numbered)


def _never_closed(record: str, delimiter: str) -> bool:
    """Whether a CSV record (the last of a file, over several lines) opens a quoted cell it never
    closes: read loosely, such a cell takes in every line after it."""
    try:
        list(csv.reader(io.StringIO(record), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return "end of data" in str(exc)
    return False


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")  # Python's json reads NaN and Infinity, which strict readers (jq) refuse


def _finite(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise ValueError(f"{number} is too large a number")  # it would be written back as Infinity
    return value


def _json_row(number: int, line: str, id_field: str, field: str) -> Row:
    try:
        record = parse_json(line, parse_constant=_not_json, parse_float=_finite)
    except ValueError as exc:
        where = f": column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        return Row(number, None, {}, f"bad JSON: {getattr(exc, 'msg', exc)}{where}")  # no id: it could clash with a real one
    if not isinstance(record, dict):
        return Row(number, None, {}, f"not a JSON object ({json_kind(record)}); each line must be one object")
    for name in (field, id_field):
        add_path(record, name)
    row_id = record.get(id_field)
    return Row(number, number if row_id is None else row_id, record, numbered=row_id is None)  # "id": null is no id


def add_path(record: dict, name: str) -> None:
    """Set `record[name]` for a dotted `name` that is no key of its own to the value at that path in
    nested objects, where there is one (`doc.body` is record["doc"]["body"]): a column of its own, as
    HF datasets' `flatten()` and pandas' `json_normalize` name it."""
    if "." not in name or name in record:
        return
    value: Any = record
    for key in name.split("."):
        if not isinstance(value, dict) or key not in value:
            return
        value = value[key]
    record[name] = value


def json_kind(value: Any) -> str:
    """A JSON value's kind as an error names it: `a list`, `an object`, `a string`, `true`."""
    if isinstance(value, bool):
        return json.dumps(value)
    kinds = {list: "a list", dict: "an object", str: "a string", type(None): "null"}
    return kinds.get(type(value), "a number")


def check_inputs(generator, rows: list[Row], field_name: str, path: str | Path, options: dict[str, Any] | None = None) -> None:
    """A `BadInputError` before any work when no row gives `generator` an input that `options` can
    run (a `field_name` that no row has, a template with nowhere to put the text); else the rows
    that cannot run get their row errors now (`flag_rows`)."""
    opts = generator.validate(options or {})
    problem = None
    for row in rows:
        if not row.error:
            try:
                generator.check_batch_input(generator.batch_input(row.fields, field_name), opts)
                break
            except BadInputError as exc:
                problem = problem or exc
    else:
        if problem:
            raise BadInputError(f"{path}: no row can run: {problem}")
    flag_rows(generator, rows, field_name, opts)


def flag_rows(generator, rows: list[Row], field_name: str, opts: Any) -> None:
    """Give each row whose input cannot run (no `field_name`, empty text, columns that do not fill
    the template) the error it would get running, so that a run left with only such rows loads no model."""
    for row in rows:
        if row.error or row.given:
            continue
        try:
            item = generator.batch_input(row.fields, field_name)
            generator.check_inputs(item)
            generator.check_batch_input(item, opts)
        except BadInputError as exc:
            row.error = str(exc)
        except Exception:  # noqa: BLE001 - a plugin's bug: the row reports it as it runs
            pass


def columns(rows: list[Row]) -> list[str]:
    """Every column name of the rows, in the order they first appear."""
    return list(dict.fromkeys(key for row in rows for key in row.fields))


def _named(row: Row) -> str:
    """`3 (id "a")` in a message: the row number and its id as JSON (`null` for a line without one)."""
    return f"{row.number} (id {json.dumps(row.id, ensure_ascii=False, default=str)})"


def _key(row_id: Any) -> str:
    return json.dumps(row_id)


def read_output(path: str | Path, repair: bool = True) -> list[tuple[str, dict]]:
    """(id as JSON, line) for each line already in an output file. A torn last line from a killed run
    is cut off (with `repair`; else left out and the file left as it is, for a reader that does not
    hold the file); blank lines (added by hand) are skipped; a line that is not a batch row means -o
    names some other file."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    tail = data[keep:]
    whole = _parses(tail)  # a last line without its newline, not torn
    try:
        text = (data if whole else data[:keep]).decode("utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"{path} is not a batch output file (not UTF-8); give another -o or remove the file") from None
    lines = []
    number = 0
    for number, line in enumerate(text.removesuffix("\n").split("\n") if text else [], 1):  # lines end at line feeds (JSON may hold U+2028)
        if not line.strip(" \t\r"):
            continue
        try:
            record = parse_json(line)
            if not isinstance(record, dict) or "id" not in record or not ("result" in record or "error" in record):
                raise ValueError
        except ValueError:
            raise BadInputError(f"{path}:{number} is not a batch output line; give another -o or remove the file") from None
        lines.append((_key(record["id"]), record))
    if tail and repair:  # checked last: only a torn batch line is cut, never another file's text
        if whole:
            with open(path, "ab") as handle:
                handle.write(b"\n")
        elif tail.startswith(b'{"id": ') or b'{"id": '.startswith(tail) or not tail.strip(b" \t\r"):  # torn, or blank
            with open(path, "r+b") as handle:
                handle.truncate(keep)
        else:
            raise BadInputError(f"{path}:{number + 1} is not a batch output line; give another -o or remove the file")
    return lines


def _parses(data: bytes) -> bool:
    try:
        parse_json(data)
    except ValueError:  # empty, torn, or nested too deeply
        return False
    return True


def pending_rows(
    rows: list[Row], output: str | Path, generator, options: dict[str, Any], sampling: dict[str, Any] | None = None, columns: tuple[str, str] = COLUMNS,
    lines: bool = False, retry_failed: bool = False,
) -> list[Row]:
    """The rows without a result in `output` yet (rows that failed before are run again); `lines` and `retry_failed` as for `run_batch`."""
    generator.check_sampled(sampling)  # settings that change nothing would only change the fingerprint, and so block resuming
    with writing(output):  # another run writing it: refused now, before a model loads
        previous = [] if streams(output) else read_output(output, repair=False)  # `run_batch` repairs it, holding it to the end
    _check_made_alike(output, previous, run_settings(generator, options, sampling, columns, lines), retry_failed)
    return _without_results(rows, previous, generator, columns[0])


def streams(output: str | Path) -> bool:
    """Whether `output` is written only, never read back: a descriptor of this process such as
    `/dev/stdout` (whatever it is: a pipe, a file appended to) or anything that is not a regular file."""
    return inherited_fd(output) is not None or (Path(output).exists() and not Path(output).is_file())


def check_output_name(output: str | Path, tables: bool = False) -> None:
    """A `BadInputError` for an output file not named .jsonl (or .ndjson), or .csv or .tsv with
    `tables` (the CLI writes those with `write_table`): `run_batch` writes JSON Lines whatever the
    name. Stdout and devices stream, named as they are."""
    path = Path(output)
    if not streams(output) and path.suffix.lower() not in (".jsonl", ".ndjson", *(TABLES if tables else ())):
        kind = f"a {path.suffix} file" if path.suffix else "a file without a suffix"
        suggested = path.with_name((path.name.split(".", 1)[0] or "results") + ".jsonl")  # out.jsonl.gz -> out.jsonl
        also = ", or .csv or .tsv for a table" if tables else ""
        raise BadInputError(f"-o {output}: aigc batch writes JSON Lines (one JSON object a line), not {kind}; name it .jsonl{also}, e.g. -o {suggested}")


TABLES = (".csv", ".tsv")


def table_state(table: str | Path) -> Path:
    """The JSON Lines file a .csv or .tsv output is run and resumed through: `out.csv.jsonl` beside it."""
    return Path(str(table) + ".jsonl")


def write_table(state: str | Path, rows: list[Row], table: str | Path, id_field: str = "id", keep_columns: bool = False) -> None:
    """Write the results in the batch output `state` (JSON Lines) to `table`, a .csv (a .tsv: tabs
    between cells) in UTF-8 with a byte-order mark, as Excel needs to read UTF-8, in one go (a kill
    leaves the old file or the new one): an id column, with `keep_columns` each row's input columns,
    then the result: a text result in `result`, an object's fields each in its own column (a list
    of texts one a line, other lists and objects as JSON; a field named as an input column is
    `result.NAME`), and `error` for rows that failed. A text cell that a spreadsheet would run as a
    formula gets a `'` before it (`_inert`)."""
    records = [record for _, record in read_output(state, repair=False)]
    fields = {_key(row.id): row.fields for row in rows if row.id is not None}
    inputs = columns(rows) if keep_columns else []
    inputs = [name for name in inputs if name != id_field]
    cells = []
    for record in records:
        result = record.get("result")
        result = result if isinstance(result, dict) else {} if "result" not in record else {"result": result}
        given = fields.get(_key(record["id"]), {}) if keep_columns else {}
        cells.append(({name: _cell(given.get(name)) for name in inputs}, {name: _cell(value) for name, value in result.items()}, record.get("error")))
    taken = {"id", *inputs}
    named = {name: f"result.{name}" if name in taken else name for name in dict.fromkeys(name for _, result, _ in cells for name in result)}
    header = ["id", *inputs, *named.values(), *(["error"] if any(error is not None for *_, error in cells) else [])]
    out = io.StringIO()
    delimiter = "\t" if Path(table).suffix.lower() == ".tsv" else ","
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    quoted = csv.writer(out, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL)  # csv quotes a carriage return only in a "\r\n" file
    table_rows = [header]
    for record, (given, result, error) in zip(records, cells):
        row = {"id": _cell(record["id"]), **given, **{named[name]: value for name, value in result.items()}, "error": error}
        table_rows.append(["" if row.get(name) is None else row[name] for name in header])
    for table_row in table_rows:
        inert = [_inert(cell) for cell in table_row]
        (quoted if any(isinstance(cell, str) and "\r" in cell for cell in inert) else writer).writerow(inert)
    write_atomic(table, out.getvalue(), encoding="utf-8-sig")


def _cell(value: Any) -> Any:
    """A value as a table cell: text and numbers as they are, a list of texts one a line (none: empty), other lists and objects as JSON."""
    if value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n".join(value)
    return json.dumps(value, ensure_ascii=False)


FORMULA = re.compile(r"[=+\-@\t\r]")  # how a cell that Excel, LibreOffice or Google Sheets runs as a formula begins
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _inert(value: Any) -> Any:
    """A table cell that no spreadsheet runs: text beginning as a formula does (`=`, `+`, `-`, `@`,
    a tab or carriage return) with a `'` before it, as OWASP recommends against CSV injection; a
    plain number such as `-3.5` as it is."""
    if isinstance(value, str) and FORMULA.match(value) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


_NO_DEFAULT = object()


def run_settings(generator, options: dict[str, Any], sampling: dict[str, Any] | None = None, columns: tuple[str, str] = COLUMNS, lines: bool = False) -> dict[str, Any]:
    """What every output line records of how it was made: the task, the model, `settings`, a
    fingerprint of the task options and sampling settings as they take effect (`-O n=02` is `n=2`, a
    default given is the default), of the quantization, and of the columns read (text, id), and
    `made_with`, those that are not defaults, by name (a long value by its digest), to say which
    differ. With `lines` (rows that are lines of plain text), the generator's `line_options` are defaults."""
    options = with_line_options(generator, options, lines)
    opts = generator.validate(options)
    params = SamplingParams(**(sampling or {}))
    made = {
        "options": opts.settings() if hasattr(opts, "settings") else {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if f.init},
        "sampling": {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in ((k, getattr(params, k)) for k in sampling or {})},
        "quantize": None if generator.quantize in (None, "none") else generator.quantize,
    }
    if tuple(columns) != COLUMNS:  # the defaults leave the fingerprint of files made before columns counted
        made["columns"] = list(columns)
    digest = hashlib.sha256(json.dumps(made, sort_keys=True, default=str).encode()).hexdigest()
    defaults = {**_defaults(opts), **(generator.line_options if lines else {})}
    shown = {**{k: v for k, v in made["options"].items() if v != defaults.get(k, _NO_DEFAULT)}, **{k: getattr(params, k) for k in made["sampling"]}}
    shown |= {k: made[k] for k in ("quantize", "columns") if made.get(k) is not None}
    if generator.model is not None or generator._engine is None:
        model = model_key(generator.model)
    else:  # an engine handed to the generator
        model = generator._engine.name
    return {"task": generator.name, "model": model, "settings": digest[:12], "made_with": {k: _shown(v) for k, v in sorted(shown.items())}}


def with_line_options(generator, options: dict[str, Any], lines: bool) -> dict[str, Any]:
    """`options` over the generator's defaults for rows that are lines of plain text (`lines`: a .txt file's)."""
    return {**generator.line_options, **options} if lines else options


def _defaults(opts: Any) -> dict[str, Any]:
    """The default of each of a task's options that has one."""
    fields = dataclasses.fields(opts) if dataclasses.is_dataclass(opts) else ()
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory() for f in fields if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}


def _shown(value: Any) -> Any:
    """`value` as an output line records it: as it is, or a long one (a glossary, examples) by its digest."""
    text = json.dumps(value, sort_keys=True, default=str)
    return json.loads(text) if len(text) <= 80 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _differences(then: dict[str, Any], now: dict[str, Any]) -> str:
    """Each setting that differs, with both values: "aspect: 'sentiment' then, the default now";
    the columns as the flags that choose them: "columns: --field 'text' --id-field 'id' then, ..."."""

    def value(made: dict[str, Any], key: str) -> str:
        if key == "columns":  # the text and id columns read, as given (the default ones spelt out too)
            columns = made.get(key, COLUMNS)
            if not (isinstance(columns, list | tuple) and len(columns) == 2):  # a hand-edited line
                return repr(columns)
            return f"--field {columns[0]!r} --id-field {columns[1]!r}"
        return repr(made[key]) if key in made else "the default"

    return "; ".join(f"{key}: {value(then, key)} then, {value(now, key)} now" for key in sorted(then.keys() | now.keys()) if then.get(key, _NO_DEFAULT) != now.get(key, _NO_DEFAULT))


def _check_made_alike(output: str | Path, previous: list[tuple[str, dict]], settings: dict[str, Any], retry_failed: bool = False) -> None:
    """Refuse to add to a file whose results were made by another task, model or settings (lines
    written before aigc recorded them are taken as matching); a failed row's line, replaced as its
    row runs again, counts for none of them. With `retry_failed`, other task options and sampling
    settings are let through (the rows left to run are run with these, each line recording its
    own), but not other columns."""
    failed = sum("error" in record for _, record in previous)
    previous = [(key, record) for key, record in previous if "result" in record]

    def differs(key: str) -> Any:
        return next((record[key] for _, record in previous if record.get(key, settings[key]) != settings[key]), None)

    start_anew = "give another -o to start a new file"
    if task := differs("task"):
        raise BadInputError(f"{output} holds {task} output, not {settings['task']}; {start_anew}")
    columns = _columns(settings["made_with"])
    other_columns = next((record["made_with"] for _, record in previous if isinstance(record.get("made_with"), dict) and _columns(record["made_with"]) != columns), None)
    if retry_failed and other_columns is not None:
        which = _differences({"columns": other_columns.get("columns", COLUMNS)}, {"columns": columns})
        raise BadInputError(f"{output} was made with other columns ({which}); {option('retry_failed')} runs rows with other task options or sampling settings, not other columns: resume it with the same ones, or {start_anew}")
    if differs("settings") and not retry_failed:
        then = next((record["made_with"] for _, record in previous if record.get("settings", settings["settings"]) != settings["settings"] and isinstance(record.get("made_with"), dict)), None)
        which = _differences(then, settings["made_with"]) if then is not None else ""
        which = f" ({which})" if which else ""
        mixed = len({record.get("settings") for _, record in previous}) > 1  # a retry made some: no settings resume it all
        rows = f"its {failed} failed row{'s' * (failed != 1)}" if failed else "the rows it has no result for"
        retry = f", add {option('retry_failed')} to run {rows} with these (the results it has are kept)" if (failed or mixed) and other_columns is None else ""
        raise BadInputError(f"{output} was made with other task options, sampling settings or columns (--field, --id-field){which}; resume it with the same ones{retry}, or {start_anew}")
    if model := differs("model"):
        raise BadInputError(f"{output} was made with model {model}, not {settings['model']}; resume it with that model, or {start_anew}")


def _columns(made_with: dict[str, Any]) -> list:
    """The text and id columns a line's `made_with` says it was made from (the defaults unless listed)."""
    columns = made_with.get("columns", COLUMNS)
    return list(columns) if isinstance(columns, list | tuple) else columns  # a hand-edited line's as it is


def _without_results(rows: list[Row], previous: list[tuple[str, dict]], generator, field_name: str) -> list[Row]:
    """The rows without a result made from their input as it is now (a line written before inputs
    were recorded is taken as made from it)."""
    done = {key: record.get("input_digest") for key, record in previous if "result" in record}
    return [r for r in rows if _key(r.id) not in done or done[_key(r.id)] not in (None, input_digest(generator, r, field_name))]


def input_digest(generator, row: Row, field_name: str) -> str | None:
    """A fingerprint of the input `row` runs with (its text; a template's columns), by which a
    resume runs a row again whose input has changed; None for a row that has none."""
    try:
        item = generator.batch_input(row.fields, field_name)
    except Exception:  # noqa: BLE001 - a bad row, or a plugin's bug: the row reports it as it runs
        return None
    own = row_sampling(row, field_name)  # settings of its own (an OpenAI batch row's), when it has any
    return hashlib.sha256(json.dumps([item, own] if own else item, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:12]


def _rewrite(path: Path, records: list[dict]) -> None:
    """Replace the output file's lines at once (a kill leaves the old file or the new one)."""
    if not records:  # every row is to run again
        path.write_bytes(b"")
        return
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise OptionError("on_error", f"must be skip or stop, got {on_error!r}")


def run_batch(
    generator,
    rows: list[Row],
    output: str | Path,
    options: dict[str, Any],
    sampling: dict[str, Any] | None = None,
    field_name: str = "text",
    on_error: str = "skip",
    concurrency: int = 16,
    progress: Callable[[int, int], None] | None = None,
    id_field: str = "id",
    prepared: bool = False,
    lines: bool = False,
    retry_failed: bool = False,
    keep_columns: bool = False,
) -> BatchSummary:
    """Run `generator` on every row without a result in `output` yet, appending each result as its
    row finishes (in input order when `output` streams or `on_error` is "stop"); rows that failed in
    an earlier run, or whose input has changed since (`input_digest`), are run again (their old lines are dropped first). A run that ends leaves the
    file in input order. An output made by another task, model, or other options, sampling
    settings or columns (`field_name`, `id_field`) is refused (`BadInputError`), and so is an output another run is writing;
    with `retry_failed`, other task options and sampling settings are taken: the rows without a result
    (failed, edited, or not run yet) run with these, and the rows done keep their lines, each saying what made it.

    With `on_error="stop"`, the first bad row stops the run with a `BadInputError` naming it; the
    rows before it are written. `prepared=True`: the caller has called `generator.prepare(options)`
    already (the CLI does, to show the model loading), so it is not called again. `lines=True`:
    the rows are lines of plain text (a .txt file's), run with the generator's `line_options`
    under `options` (which `made_with` does not list: they are the defaults for such rows).
    `keep_columns=True`: each line also holds its row's columns, as `"input"`.
    """
    if not isinstance(generator, Generator):
        raise BadInputError(f"run_batch runs a generator, such as aigc.get_generator('summarize'), got {type_name(generator)}")
    if not isinstance(rows, list) or not all(isinstance(row, Row) for row in rows):
        given = type_name(rows) if not isinstance(rows, list) else f"a list holding {type_name(next(row for row in rows if not isinstance(row, Row)))}"
        raise BadInputError(f"rows must be a list of rows, as read_rows(path) gives them, got {given}; generator.many(inputs) runs a list of inputs in memory")
    if not isinstance(options, dict):
        raise BadInputError(f"options must be a dict of the generator's options, such as {{'words': 40}}, got {type_name(options)}")
    if not isinstance(output, (str, Path)):
        raise BadInputError(f"output must be the path of the file to write (str or Path), got {type_name(output)}")
    check_on_error(on_error)
    options = with_line_options(generator, options, lines)
    generator.check_settings(sampling)  # bad settings fail here, not on every row
    generator.check_sampled(sampling)
    stream = streams(output)
    output = check_writable(output)
    opts = generator.validate(options)
    generator.check_batch(opts)
    generator.check_sampling(opts, sampling)
    with writing(output):
        previous = [] if stream else read_output(output)
        settings = run_settings(generator, options, sampling, (field_name, id_field), lines)
        _check_made_alike(output, previous, settings, retry_failed)
        todo = _without_results(rows, previous, generator, field_name)
        flag_rows(generator, todo, field_name, opts)
        if needs_model(todo) and not prepared:
            generator.prepare(options)
        failed = {key for key, record in previous if "error" in record}
        changed = {_key(r.id) for r in todo} & {key for key, record in previous if "result" in record}
        if failed or changed:
            _rewrite(output, [record for key, record in previous if key not in failed | changed])
        summary = BatchSummary(skipped=len(rows) - len(todo), retried=sum(_key(r.id) in failed for r in todo), changed=len(changed), rows=len(rows))
        report = progress or (lambda done, total: None)
        report(0, len(todo))  # the total is known before the first row finishes
        started = time.perf_counter()
        try:
            with open_stream(output) as sink:
                outcomes = run_rows(generator, todo, options, sampling, field_name, concurrency, in_order=stream or on_error == "stop")
                for row, outcome in outcomes:
                    raised = outcome.pop("exception", None)
                    digest = input_digest(generator, row, field_name)
                    line = {"id": row.id, "row": row.number, **settings, **({"input_digest": digest} if digest else {}), **({"input": row.fields} if keep_columns else {}), **outcome}
                    try:
                        text = json.dumps(line, ensure_ascii=False, allow_nan=False)
                    except (TypeError, ValueError) as exc:  # a plugin's result that JSON cannot hold: this row's error
                        raised = AigcError(f"the {generator.name} generator{generator.by_plugin()} returned what JSON cannot hold: {exc}")
                        line = {"id": row.id, "row": row.number, **settings, "error": str(raised)}
                        text = json.dumps(line, ensure_ascii=False)
                    if "error" in line:
                        if on_error == "stop":
                            if isinstance(raised, AigcError):  # its class kept (exit 2 for bad input), naming the row
                                raised.at = f"row {_named(row)}"
                                raise raised
                            if raised:  # exit 1 as a bug, naming the row; AIGC_DEBUG=1 shows the traceback
                                raise AigcError(f"row {_named(row)}: {line['error']}") from raised
                            raise BadInputError(f"row {_named(row)}: {line['error']}")
                        summary.errors += 1
                        if wanted := _to_raise(raised):
                            summary.to_raise[wanted] = summary.to_raise.get(wanted, 0) + 1
                    try:
                        sink.write(text + "\n")
                        sink.flush()
                    except BrokenPipeError as exc:  # what read the stream went away (`| head`): the rows in flight are not waited for
                        outcomes.throw(exc)
                    if not stream:  # a pipe or device cannot be synced
                        os.fsync(sink.fileno())
                    summary.done += 1
                    summary.short += bool(isinstance(line.get("result"), dict) and line["result"].get("missing"))
                    report(summary.done, len(todo))
        except AigcError:  # stopped at a bad row
            if not stream:
                _restore_order(output, rows)
            raise
        finally:
            summary.seconds = time.perf_counter() - started
        if not stream:
            _restore_order(output, rows)
    return summary


def _to_raise(exc: BaseException | None) -> tuple[str, ...]:
    """The options a row's error says to raise ("cut off at max_tokens 6; raise max_tokens"), by name."""
    if not isinstance(exc, AigcError):
        return ()
    advice = re.search(r"\braise ([^;]*)", exc._text())
    return tuple(re.findall("\x1e([^\x1e\x1f]+)(?:\x1f[^\x1e]*)?\x1e", advice.group(1))) if advice else ()


_held = threading.local()  # the outputs this thread holds


@contextlib.contextmanager
def writing(output: str | Path) -> Iterator[None]:
    """Hold `output` for this run, so that a second `aigc batch` on it fails at once: the CLI holds
    it from before the model loads to the end. Holding it again in the same thread changes nothing."""
    mine = _held.__dict__.setdefault("outputs", set())
    key = str(Path(output).resolve())
    if streams(output) or key in mine:
        yield
        return
    busy = f"{output} is being written by another aigc batch; wait for it to end, or give another -o"
    with locks.held(output, busy):
        mine.add(key)
        try:
            yield
        finally:
            mine.discard(key)


def _restore_order(output: Path, rows: list[Row]) -> None:
    """Put the output lines in input order (a resumed run appends retried rows last), each with its
    row number in the input as it is now (rows added above it move it); lines for ids no longer in
    the input stay at the end."""
    records = [record for _, record in read_output(output)]
    position = {_key(r.id): i for i, r in enumerate(rows) if r.id is not None}
    unnamed = {r.number: i for i, r in enumerate(rows) if r.id is None}  # bad JSON lines: by row number
    ordered = sorted(
        records,
        key=lambda record: position.get(_key(record["id"]), len(rows)) if record["id"] is not None else unnamed.get(record.get("row"), len(rows)),
    )
    renumbered = [{**record, "row": rows[position[_key(record["id"])]].number} if record["id"] is not None and _key(record["id"]) in position else record for record in ordered]
    if renumbered != records:
        _rewrite(output, renumbered)


def _order(rows: list[Row], field_name: str) -> list[Row]:
    """Rows in windows of `WINDOW`, each sorted by text length, so concurrent rows pad little."""
    size = lambda r: len(str(r.fields.get(field_name) or ""))  # noqa: E731
    return [r for start in range(0, len(rows), WINDOW) for r in sorted(rows[start : start + WINDOW], key=size)]


def run_rows(
    generator, rows: list[Row], options: dict[str, Any], sampling: dict[str, Any] | None = None, field_name: str = "text",
    concurrency: int = 16, in_order: bool = True,
) -> Iterator[tuple[Row, dict]]:
    """`(row, {"result": ...} or {"error": ...})` in input order (else as rows finish), while worker
    threads run the rows concurrently and their model calls are merged into batches. A row the
    generator raised on also carries the exception, as `"exception"`."""
    check_concurrency(concurrency)
    if not needs_model(rows):  # only rows that failed when read (bad JSON, no text: `flag_rows`): no model to load
        yield from ((row, {"error": row.error}) for row in rows)
        return
    engine = CoalescingEngine(generator.engine, workers=min(concurrency, len(rows)))
    worker = copy.copy(generator)  # the rows' calls go through the batching engine; the caller's generator is left as it is
    worker._engine = engine
    named = f"the {generator.name} generator{generator.by_plugin()}"  # as a row's error names it
    yield from _outcomes(worker, engine, rows, options, sampling or {}, field_name, in_order, named)


def needs_model(rows: list[Row]) -> bool:
    """Whether any of `rows` reaches the model (a row that failed when it was read does not)."""
    return any(not row.error for row in rows)


def check_concurrency(concurrency: int) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
        raise OptionError("concurrency", f"must be a whole number between 1 and 256, got {concurrency!r}")


def _outcomes(generator, engine: CoalescingEngine, rows: list[Row], options, sampling, field_name, in_order: bool, named: str) -> Iterator[tuple[Row, dict]]:
    queue = _order(rows, field_name)
    position = {id(r): i for i, r in enumerate(rows)}
    results: dict[int, dict] = {}
    ready = threading.Condition()
    stop = threading.Event()
    taken = iter(queue)
    take_lock = threading.Lock()

    def work() -> None:
        try:
            while not stop.is_set():
                with take_lock:
                    row = next(taken, None)
                if row is None:
                    return
                outcome = _run_one(generator, row, options, sampling, field_name, named)
                with ready:
                    results[position[id(row)]] = outcome
                    ready.notify_all()
        finally:
            engine.retire()

    threads = [threading.Thread(target=work, daemon=True, name=WORKER) for _ in range(engine.workers)]
    for thread in threads:
        thread.start()
    try:
        for index in range(len(rows)):
            with ready:
                while not (index in results if in_order else results):
                    ready.wait()
                done = index if in_order else next(iter(results))  # else the first row that finished
                outcome = results.pop(done)
            yield rows[done], outcome
    except (KeyboardInterrupt, SystemExit, BrokenPipeError):  # Ctrl-C, SIGTERM as the CLI raises it, or a reader gone, thrown in by the caller
        threads = []  # leave at once: the process is ending (the workers are daemons)
        raise
    finally:
        stop.set()
        for thread in threads:  # rows in flight finish before the caller gets the engine back
            thread.join()


# an OpenAI batch input row's `body` settings, by the sampling setting each is
BODY_SETTINGS = {"max_tokens": "max_tokens", "max_completion_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed", "stop": "stop", "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty"}


def row_sampling(row: Row, field_name: str) -> dict[str, Any]:
    """The sampling settings a row gives itself: where `field_name` is in the row's `body` object, as
    in OpenAI's batch input files (`--field body.messages`), the body's `max_tokens`
    (`max_completion_tokens`), `temperature`, `top_p`, `seed`, `stop` and penalties that are not null."""
    body = row.fields.get("body")
    if not field_name.startswith("body.") or not isinstance(body, dict):
        return {}
    settings = {BODY_SETTINGS[key]: body[key] for key in BODY_SETTINGS if body.get(key) is not None}  # max_completion_tokens last: it wins
    if isinstance(settings.get("stop"), str):
        settings["stop"] = [settings["stop"]]
    return settings


def _run_one(generator, row: Row, options, sampling, field_name, named: str) -> dict:
    if row.error:
        return {"error": row.error}
    try:
        item = row.input if row.given else generator.batch_input(row.fields, field_name)
        return {"result": generator(item, sampling={**sampling, **row_sampling(row, field_name)}, **options)}
    except AigcError as exc:  # a BadInputError: this row's input, or the model's answer for it; others are
        return {"error": str(exc), "exception": exc}  # not the row's fault (a plugin's filter, a remote that is down)
    except BaseException as exc:  # noqa: BLE001 - a bug (in a plugin's generator, say) on this row; workers get no signals, so a SystemExit or KeyboardInterrupt here is one too
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        return {"error": f"{named} failed: {detail}", "exception": exc}
