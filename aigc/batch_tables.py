"""A batch run's results written as a .csv or .tsv table that spreadsheets open safely."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from .batch_inputs import Row, columns, id_key
from .batch_output import read_output
from .writing import write_atomic

TABLES = (".csv", ".tsv")
OWN = ("id", "error")  # the table's own columns, which input columns and result fields of these names are kept beside


def table_state(table: str | Path) -> Path:
    """The JSON Lines file a .csv or .tsv output is run and resumed through: `out.csv.jsonl` beside it."""
    return Path(str(table) + ".jsonl")


def write_table(state: str | Path, rows: list[Row], table: str | Path, id_field: str = "id", keep_columns: bool = False, escape_formulas: bool = True, bom: bool | None = None) -> None:
    """Write the results in the batch output `state` (JSON Lines) to `table`, a .csv (a .tsv: tabs
    between cells) in UTF-8, with a byte-order mark as `_with_bom` says, in one go (a kill
    leaves the old file or the new one): an id column, with `keep_columns` each row's input columns
    (one named `id` or `error`, as aigc's own, as `input.id`, `input.error`: `_kept_headers`), then the result: a text
    result in `result`, an object's fields each in its own column (a list of texts one a line, other
    lists and objects as JSON; a field named as a column before it, or `error`, is `result.NAME`),
    and `error` for rows that failed. A text cell that a spreadsheet would run as a
    formula gets a `'` before it (`_inert`)."""
    records = [record for _, record in read_output(state, repair=False)]
    fields = {id_key(row.id): row.as_read for row in rows if row.id is not None}
    inputs = columns(rows, as_read=True) if keep_columns else []
    kept = _kept_headers([name for name in inputs if name != id_field])
    cells = []
    for record in records:
        result = record.get("result")
        result = result if isinstance(result, dict) else {} if "result" not in record else {"result": result}
        given = fields.get(id_key(record["id"]), {}) if keep_columns else {}
        cells.append(({header: _cell(given.get(name)) for name, header in kept.items()}, {name: _cell(value) for name, value in result.items()}, record.get("error")))
    taken = {*OWN, *kept.values()}
    named = {name: f"result.{name}" if name in taken else name for name in dict.fromkeys(name for _, result, _ in cells for name in result)}
    header = ["id", *kept.values(), *named.values(), *(["error"] if any(error is not None for *_, error in cells) else [])]
    out = io.StringIO()
    delimiter = "\t" if Path(table).suffix.lower() == ".tsv" else ","
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    quoted = csv.writer(out, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL)  # csv quotes a carriage return only in a "\r\n" file
    table_rows = [header]
    for record, (given, result, error) in zip(records, cells):
        row = {"id": _cell(record["id"]), **given, **{named[name]: value for name, value in result.items()}, "error": error}
        table_rows.append(["" if row.get(name) is None else row[name] for name in header])
    for table_row in table_rows:
        inert = [_inert(cell) for cell in table_row] if escape_formulas else table_row  # not escaped: a file for a build or TMS, "+ Add" as it is
        (quoted if any(isinstance(cell, str) and "\r" in cell for cell in inert) else writer).writerow(inert)
    write_atomic(table, out.getvalue(), encoding="utf-8-sig" if _with_bom(table, bom) else "utf-8")


def _with_bom(table: str | Path, bom: bool | None) -> bool:
    """Whether `table` starts with a byte-order mark: as `bom` says (--bom/--no-bom); else as it
    already does (a rerun keeps what its header has); else a new .tsv, read by Unix tools, has
    none, and a new .csv has one, as Excel needs to read UTF-8."""
    if bom is not None:
        return bom
    path = Path(table)
    new = path.suffix.lower() != ".tsv"
    if not path.is_file() or not path.stat().st_size:  # none yet (a pipe or device is not read)
        return new
    try:
        with path.open("rb") as handle:
            return handle.read(3) == codecs.BOM_UTF8
    except OSError:  # unreadable: as a new one
        return new


def _kept_headers(names: list[str]) -> dict[str, str]:
    """The header of each kept input column: its name, or for one named as the table's own columns
    (`id`, `error`) `input.` before it, again until no other column has that name (an input with
    both `error` and `input.error`, as a kept table read back may have, keeps both)."""
    taken = {*OWN, *names}
    headers = {}
    for name in names:
        header = name
        if name in OWN:
            while header in taken:
                header = f"input.{header}"
            taken.add(header)
        headers[name] = header
    return headers


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
