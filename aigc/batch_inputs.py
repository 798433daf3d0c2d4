"""Reading a batch's input rows from .jsonl (.ndjson), .csv, .tsv and .txt files, and checking that they can run."""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AigcError, BadInputError, OptionError, option
from .generators.base import type_name
from .textio import STDIN, decode_text, numbered_lines, parse_json, unquote

FORMATS = (".jsonl", ".ndjson", ".csv", ".tsv", ".txt")
INPUT_FORMATS = ("jsonl", "csv", "tsv", "txt")  # what `input_format` names


def check_input_format(input_format: str | None) -> None:
    """A `BadInputError` for an `input_format` that is none of `INPUT_FORMATS`."""
    if input_format is not None and input_format not in INPUT_FORMATS:
        raise BadInputError(f"{option('input_format')} names the format of the rows: jsonl, csv, tsv or txt, not {input_format!r}")


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
    flattened: tuple[str, ...] = ()  # the dotted names (`doc.body`) `add_path` set in `fields`, which the row as read has not

    @property
    def as_read(self) -> dict[str, Any]:
        """The row's columns as read: `fields` without the nested values `--field doc.body` set beside them (`--keep-columns` keeps these)."""
        return {key: value for key, value in self.fields.items() if key not in self.flattened}


def read_rows(path: str | Path, id_field: str = "id", field: str = "text", unique_ids: bool = True, input_format: str | None = None, lines_unless_json: bool = False) -> list[Row]:
    """Every row of a .jsonl (.ndjson), .csv, .tsv or .txt file (a .txt line is the column `field`),
    or of JSON Lines on stdin for "-" (as `aigc batch -o -` writes them, so runs chain).
    `input_format` (jsonl, csv, tsv or txt) names the format of stdin or of a file whatever its
    name (a pipe, `<(cut -f1 x.tsv)`); with `lines_unless_json`, stdin of which no line is a JSON
    object is read as a text a line, as txt, unless the columns are named otherwise
    than `text` and `id`. Ids default to the row number and must be unique strings or
    numbers (to resume by them) unless `unique_ids` is False."""
    if not isinstance(path, (str, Path)):
        raise BadInputError(f"read_rows takes the path of a file of rows (str or Path), got {type_name(path)}")
    check_input_format(input_format)
    piped = str(path) == "-"
    if piped:
        if sys.stdin is None or sys.stdin.isatty():
            raise BadInputError(f"-i - reads rows ({'JSON Lines' if input_format is None else input_format}) from stdin, but nothing was piped in; pipe rows in or give a file")
        suffix = f".{input_format or 'jsonl'}"
        kind = "JSON Lines" if suffix == ".jsonl" else f"a {suffix} file"
        text, path = decode_text(sys.stdin.buffer.read(), STDIN, kind, keep_crlf=suffix in (".csv", ".tsv")), Path(STDIN)  # named so in errors
        if lines_unless_json and input_format is None and (field, id_field) == ("text", "id") and all(_json_row(n, line, id_field, field).error for n, line in numbered_lines(text)):
            suffix = ".txt"  # `grep bees notes.txt | aigc similar ...`
    else:
        path = Path(path).expanduser()  # `--input=~/x`, which the shell leaves as it is, as documents are read
        suffix = f".{input_format}" if input_format else path.suffix.lower()
        if not path.exists():  # named first: a missing file's suffix is no news
            raise BadInputError(f"no such file: {path}")
        if suffix not in FORMATS:
            hint = {
                ".json": f"; for a JSON list of objects, `jq -c '.[]' {path} > {path.with_suffix('.jsonl')}` writes them one a line (JSON Lines);"
                f" for an object of strings (an i18n file), `aigc translate {path} --to LANG -o OUT.json` translates its values, keeping its keys and shape",
                ".parquet": f"; `python -c \"import pandas; pandas.read_parquet('{path}').to_json('{path.with_suffix('.jsonl')}', orient='records', lines=True, force_ascii=False)\"` writes its rows as JSON Lines",
                **dict.fromkeys((".xlsx", ".xls", ".ods"), "; save the sheet as CSV (UTF-8) from the spreadsheet and give that file"),
            }.get(suffix, f"; {option('input_format', 'txt')} (or csv, tsv, jsonl) names the format of a file named otherwise, such as a pipe or <(cut -f1 x.tsv)")
            raise BadInputError(f"{path}: rows are read from {', '.join(FORMATS)} files{hint}")
        if path.is_dir():
            raise BadInputError(f"{path} is a directory; give a file")
        # a named pipe too; cells as they are: no markup read, no space cut, a quoted cell's CRLF kept
        text = decode_text(path.read_bytes(), str(path), f"a {', '.join(FORMATS)} file", keep_crlf=suffix in (".csv", ".tsv"))
    if suffix == ".txt":
        rows = [Row(n, n, {field: line}, numbered=True) for n, line in numbered_lines(text)]
    elif suffix in (".jsonl", ".ndjson"):
        rows = [_json_row(n, line, id_field, field) for n, line in numbered_lines(text)]
    else:
        tsv = suffix == ".tsv"  # text between tabs; a cell wrapped in quotes is unquoted, as in `eval` and `--examples`
        body, delimiter, skipped = table_body(text, tsv)
        if tsv:
            body = _quoted_cells_kept(body)
        if tsv and "\r" in body.split("\n", 1)[0].rstrip("\r"):  # no cell: the header's line goes on after it
            raise BadInputError(f"{path}: cannot read it as TSV: its lines end in a lone carriage return (as old Mac programs write them); save it with line feeds (\\n or \\r\\n)")
        if tsv and RETURN not in text:  # csv ends a line at a lone carriage return; in a cell it is text, as in a quoted .csv cell
            body = re.sub(r"\r(?!\r*\n)", RETURN, body)  # those before a line feed end the line
        table = table_records(body, delimiter, path, skipped, tsv)
        names = [(_tsv_cell(name) if tsv else name).strip() for name in table[0][1]] if table else []  # `id,text ` names the column text
        twice = sorted({name for name in names if name and names.count(name) > 1})
        if twice:  # a row would keep the last of them only
            raise BadInputError(f"{path}:{1 + skipped}: the header names {', '.join(map(repr, twice))} twice; give each column its own name")
        records = [_record(names, cells) for _, cells in table[1:] if any(cell.strip() for cell in cells[: len(names)])]  # a line of spaces is no row
        rows = [_table_row(n, record, id_field, field, len(names), tsv) for n, record in enumerate(records, 1)]
    if not rows:
        raise BadInputError(f"{path} holds no rows")
    if piped and suffix == ".jsonl" and all(row.error for row in rows):  # rows in another format: one error, not one a line
        raise BadInputError(f"rows on stdin are read as JSON Lines (one object a line), and line {rows[0].number} is not: {rows[0].error}; for other rows name their format, e.g. {option('input_format', 'txt')} for a text a line (or csv, tsv)")
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
            groups.setdefault(row.id if isinstance(row.id, str) else id_key(row.id), []).append(row)
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
        named = ", ".join(f"{id_key(group[0].id)} (rows {', '.join(str(r.number) for r in group)})" for group in repeated[:5])
        raise BadInputError(f"{path}: id {named} appears more than once; ids must be unique to resume")


def table_body(text: str, tsv: bool = False) -> tuple[str, str, int]:
    """A .csv's (`tsv`: a .tsv's) text from its header, the first line with something on it, and
    after a first `sep=;` line, which names the delimiter, as Excel reads it (a .csv's); its
    delimiter (else `_delimiter`'s pick from the header); and how many lines came before it."""
    body = re.sub(r"\A(?:[ \t]*\r?\n)+", "", text)
    named = None if tsv else re.match(r"sep=([^\r\n])[ \t]*\r?\n", body)
    body = body[named.end() :] if named else body
    delimiter = "\t" if tsv else named.group(1) if named else _delimiter(body.split("\n", 1)[0].rstrip("\r"))
    return body, delimiter, text.count("\n", 0, len(text) - len(body))


def table_records(
    body: str, delimiter: str, path: str | Path, skipped: int = 0, tsv: bool = False, skipinitialspace: bool = False
) -> list[tuple[int, list[str]]]:
    """Each record of a table's `body` (`table_body`'s) as (the line of the file it starts on, its
    cells; none for a blank line), quoted .csv cells holding delimiters, quotes and line breaks; one
    that cannot be read, a quoted cell never closed too, is a `BadInputError` naming its line.
    `skipinitialspace`: spaces after a delimiter are left out (`cat, "chat"` is cat and chat)."""
    reader = csv.reader(io.StringIO(body), delimiter=delimiter, quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL, skipinitialspace=skipinitialspace)
    records: list[tuple[int, list[str]]] = []
    start = 1  # line of the body where the record being read begins
    try:
        for cells in reader:
            records.append((start + skipped, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        if not tsv and str(exc).startswith("new-line character seen in unquoted field"):  # Python's hint, universal-newline mode, is no help here
            if "\r" in body.split("\n", 1)[0].rstrip("\r"):  # the header's line goes on after one
                raise BadInputError(f"{path}: cannot read it as CSV: its lines end in a lone carriage return (as old Mac programs write them); save it with line feeds (\\n or \\r\\n)") from None
            raise BadInputError(f"{path}:{start + skipped}: cannot read it as CSV: a cell holds a carriage return outside quotes; put the cell in double quotes to keep it, or take it out") from None
        raise BadInputError(f"{path}:{start + skipped}: cannot read it as {'TSV' if tsv else 'CSV'}: {exc}") from None
    if not tsv and records and _never_closed("\n".join(body.split("\n")[records[-1][0] - skipped - 1 :]), delimiter, skipinitialspace):
        raise BadInputError(f"{path}:{records[-1][0]}: cannot read it as CSV: a quoted cell opens on this row and is never closed")
    return records


def _record(names: list[str], cells: list[str]) -> dict:
    """A row's cells by column name, as `csv.DictReader` gives them: those beyond the header in a
    list under None, None for each missing at the end."""
    record: dict = dict(zip(names, cells))
    if len(cells) > len(names):
        record[None] = cells[len(names) :]
    record.update(dict.fromkeys(names[len(cells) :]))
    return record


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


def _never_closed(record: str, delimiter: str, skipinitialspace: bool = False) -> bool:
    """Whether a CSV record (the last of a file) opens a quoted cell it never closes: read loosely,
    such a cell takes in every line after it (on the last line, its line break)."""
    try:
        list(csv.reader(io.StringIO(record), delimiter=delimiter, strict=True, skipinitialspace=skipinitialspace))
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
    flattened = tuple(name for name in dict.fromkeys((field, id_field)) if add_path(record, name))
    row_id = record.get(id_field)
    return Row(number, number if row_id is None else row_id, record, numbered=row_id is None, flattened=flattened)  # "id": null is no id


def add_path(record: dict, name: str) -> bool:
    """Set `record[name]` for a dotted `name` that is no key of its own to the value at that path in
    nested objects, where there is one (`doc.body` is record["doc"]["body"]): a column of its own, as
    HF datasets' `flatten()` and pandas' `json_normalize` name it. Whether it was set."""
    if "." not in name or name in record:
        return False
    value: Any = record
    for key in name.split("."):
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    record[name] = value
    return True


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


def columns(rows: list[Row], as_read: bool = False) -> list[str]:
    """Every column name of the rows, in the order they first appear (`as_read`: without the nested ones `--field doc.body` names)."""
    return list(dict.fromkeys(key for row in rows for key in (row.as_read if as_read else row.fields)))


def id_key(row_id: Any) -> str:
    """A row id as the key of its output line (JSON, so the id 1 and the id "1" differ)."""
    return json.dumps(row_id)


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


def row_error(exc: AigcError, row: Row, field_name: str) -> str:
    """`exc`'s message for the row it failed; a setting the row's `body` gave (`row_sampling`) is
    named as that field (`the row's body.temperature`), not as the flag of the same setting."""
    own = row.fields["body"] if isinstance(exc, OptionError) and row_sampling(row, field_name) else {}
    given = [key for key in BODY_SETTINGS if own.get(key) is not None and BODY_SETTINGS[key] == exc.option]
    if not given:
        return str(exc)
    return exc.located(exc.naming(f"the row's body.{given[-1]}"))  # max_completion_tokens, given with max_tokens, is the one taken


def document_paths(sources: list[str]) -> tuple[list[str], list[str]]:
    """The document files `sources` name, each once, in order: a file as given, a folder's files with a
    document suffix (`DOCUMENT_SUFFIXES`), found in it and its subfolders in name order, hidden ones left out,
    and a quoted glob pattern's (`'inbox/*.html'`, `**` for subfolders) as the shell would expand it;
    and the files the folders hold that are no documents, and the broken symbolic links folders and
    patterns hold (skipped). Paths are as given (`./inbox/a.html`: `inbox/a.html`), a folder's joined to it;
    a file found again by another path (a symbolic link to it) is read once, by the path first found."""
    from .textio import DOCUMENT_SUFFIXES

    found: dict[str, None] = {}
    real_paths: set[str] = set()
    skipped: list[str] = []

    def add(file: str) -> None:
        if os.path.islink(file) and not os.path.exists(file):
            skipped.append(file)  # a link to nothing
        elif (real := os.path.realpath(file)) not in real_paths:
            real_paths.add(real)
            found[file] = None

    for source in sources:
        path = Path(source).expanduser()
        if not path.exists() and any(char in source for char in "*?["):
            matches = sorted(glob.glob(str(path), recursive=True))
            if not matches:
                raise BadInputError(f"no file matches {source}")
            for match in matches:
                if not os.path.isdir(match):
                    add(os.path.normpath(match))
        elif path.is_dir():
            for folder, folders, names in os.walk(path):
                folders[:] = sorted(name for name in folders if not name.startswith("."))
                for name in sorted(names):
                    if not name.startswith("."):
                        file = os.path.normpath(os.path.join(folder, name))
                        if Path(name).suffix.lower() in DOCUMENT_SUFFIXES:
                            add(file)
                        else:
                            skipped.append(file)
        elif path.exists():
            add(os.path.normpath(path))
        else:
            raise BadInputError(f"no such file: {source}")
    return list(found), skipped


def document_rows(paths: list[str]) -> list[Row]:
    """A row for each document file of `paths`, its `text` read as `aigc summarize FILE` reads it
    (`textio.read_document`: HTML's text, subtitles' words, a `<meta>` charset, UTF-16 with a BOM) and its
    id the path; one that cannot be read (binary, empty, not UTF-8) is a row error saying why."""
    from .textio import read_document

    rows = []
    for number, path in enumerate(paths, 1):
        try:
            rows.append(Row(number, path, {"text": read_document(path)}))
        except BadInputError as exc:
            rows.append(Row(number, path, {}, str(exc)))
    return rows
