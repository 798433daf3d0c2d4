"""`--lines`: a single-input command run on each line of its input, results one per line, in order."""

import json
import os
from pathlib import Path
from typing import Any, Callable

from .. import ui
from ..errors import BadInputError, ItemsFailedError
from ..textio import numbered_lines
from .options import RunOptions, emit, weights_of


ROW_FILES = (".csv", ".tsv", ".jsonl", ".ndjson")


def _rows_file(source: str | None) -> bool:
    """Whether `source` is a file of rows (.csv, .tsv, .jsonl), as `aigc batch` reads them."""
    return bool(source) and source != "-" and Path(source).suffix.lower() in ROW_FILES and os.path.isfile(os.path.expanduser(source))


def _rows_note(source: str, task: str) -> str:
    """What of the file would be text, and the `aigc batch` command that runs over its rows instead."""
    raw = "JSON and all" if "json" in Path(source).suffix.lower() else "its header and separators too"
    return f"({raw}) as a text; `aigc batch {task} -i {source} --field COLUMN -o OUT.jsonl` runs over the text column of its rows (task options as -O KEY=VALUE)"


def check_lines_source(source: str | None, task: str) -> None:
    """Refuse `--lines` on a file of rows (.csv, .tsv, .jsonl), whose raw lines (a header, separators,
    JSON) would each be taken as a text, naming the `aigc batch` command that reads its rows."""
    if _rows_file(source):
        raise BadInputError(f"{source} is a file of rows: --lines would take each raw line {_rows_note(source, task)}")


def warn_of_rows_file(source: str | None, task: str) -> None:
    """Warn that a file of rows given as one text (to classify, to embed) is taken whole."""
    if _rows_file(source):
        ui.warn(f"{source} is a file of rows, taken whole {_rows_note(source, task)}")


class LineResults:
    """`--lines` results, one per input line in order: as JSON lines carrying their `line` number, or
    as text where a blank input line gets a blank line, so the output lines up with the input (`paste`).
    Lines on stdout end in a line feed, whatever the input's line ends (CRLF too). With an `output`
    file (`-o`), the lines stdout would get are written to it at the end, atomically, in `encoding`,
    each ending in `line_end` (`finish`)."""

    def __init__(self, as_json: bool, output: str | None = None, encoding: str = "utf-8", line_end: str = "\n"):
        self.as_json, self.output, self.encoding, self.line_end, self.last, self.failed = as_json, output, encoding, line_end, 0, 0
        self.kept: list[str] = []  # the lines for `output`

    def _put(self, line: str) -> None:
        if self.output:
            self.kept.append(line)
        else:
            ui.result(line)

    def show(self, number: int, text: str, record: dict) -> None:
        self.failed += "error" in record
        if self.as_json:
            self._put(json.dumps({"line": number, **record}, ensure_ascii=False))
            return
        for _ in range(self.last + 1, number):
            self._put("")
        self.last = number
        self._put(text)

    def finish(self, text: str) -> None:
        """Blank lines for the blank lines that end the input `text` (as text), then the `-o` file written."""
        if not self.as_json:
            for _ in range(self.last + 1, text.count("\n") + (not text.endswith("\n")) + 1):
                self._put("")
        if self.output:
            emit("".join(line + self.line_end for line in self.kept), self.output, self.encoding)

    def check(self, total: int) -> None:
        """An `ItemsFailedError` (exit 1) at the end when any of the `total` lines failed."""
        if self.failed:
            rest = f"; the others' results are {f'in {self.output}' if self.output else 'printed'}" if self.failed < total else ""
            raise ItemsFailedError(f"{self.failed} of {total} lines failed (warned above){rest}")


def first_few(names: list[str], most: int = 5) -> str:
    """`names` joined, the first `most` of them and how many more: "1, 2, 3, 4, 5 and 7 more"."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def given_back_note(kind: str, places: list[str], total: int, marked: str = "") -> str:
    """One warning for the texts of `total` no longer than the summary asked for (`"unchanged": true`),
    naming the first few of them (`kind` "line", `places` its numbers) and then `marked`, where a
    warning each would bury the others."""
    shown = f"{kind}{'s' * (len(places) > 1)} {first_few(places)}"
    one = len(places) == 1
    return f"{len(places)} of {total} text{'s' * (total != 1)} {'was' if one else 'were'} no longer than the summary asked for and {'is' if one else 'are'} given back as {'it is' if one else 'they are'} ({shown}{marked})"


def missed_note(key: str, missed: list[tuple[str, list]], total: int, kind: str = "row") -> str:
    """One warning for the texts of `total` whose results list glossary terms or placeholders (`key`) their
    translation missed, naming the first few and the terms missed most, where a warning each would scroll by;
    `missed`: each text's place with that list, `kind` "row" (`aigc batch`: an id, as JSON; the results
    list them) or "line" (`--lines`: a line number; each line's warning is above)."""
    places = [place for place, _ in missed]
    rows: dict[str, int] = {}  # each term (placeholder): the texts missing it
    for _, items in missed:
        for what in dict.fromkeys(f"{item['source']!r} as {item['target']!r}" if key == "glossary_misses" else repr(item["placeholder"]) for item in items):
            rows[what] = rows.get(what, 0) + 1
    most = sorted(rows.items(), key=lambda kv: -kv[1])
    terms = first_few([f"{what} in {n}" for what, n in most], 3)
    one = len(places) == 1
    listed = (f'its result\'s "{key}" lists them' if one else f'their results\' "{key}" list them') if kind == "row" else "each line's warning is above"
    named = "id" if kind == "row" else "line"
    where = f"{len(places)} of {total} {kind}{'s' * (total != 1)} ({named}{'s' * (not one)} {first_few(places)}): {terms}; {listed}"
    if key == "glossary_misses":
        return f"glossary terms were missed in {where}"
    return f"placeholders are missing in {where}, and the program that fills them in will fail"


def one_line(text: str) -> str:
    """`text` on one line, as `--lines` prints a result: its lines joined by single spaces, the
    first one's leading white space (an indented line's translation) kept as `--json` has it."""
    parts = [part for part in text.splitlines() if part.strip()]
    indent = parts[0][: len(parts[0]) - len(parts[0].lstrip())] if parts else ""
    return indent + " ".join(part.strip() for part in parts)


def run_lines(
    run: RunOptions, task: str, text: str, options: dict[str, Any], render: Callable[[dict], str], as_json: bool,
    notes: Callable[[dict, Any], list[str]] = lambda result, generator: [], record: Callable[[dict], dict] = lambda result: result, output: str | None = None,
    encoding: str = "utf-8", line_end: str = "\n", given_back: Callable[[dict], bool] = lambda result: False, fields: dict[str, str] | None = None,
    prepared: Callable[[Any, dict], None] = lambda generator, options: None,
) -> None:
    """Each non-empty line is one input (the generator's `line_field` column for `batch_input`), batched like `aigc batch`.

    A line that fails prints an empty line (or `{"line", "error"}` with `--json`) and a warning, and
    the command exits 1 at the end;
    `notes(result, generator)` are warnings about a line that did not fail; `record(result)` is what `--json` prints of it
    (with its `line` number and the `model`, as a single text's `--json` has it; no seed is drawn for lines);
    with `output` (`-o`), the results go to that file, written at the end in `encoding`, lines ending in `line_end` (warnings stay on stderr);
    the lines whose result is `given_back` unchanged get one warning at the end (`given_back_note`), as do
    those whose result lists glossary terms or placeholders it missed (`missed_note`, as `aigc batch` ends);
    `fields` are the other columns every line's row gets (adcopy's audience, given once by its flag);
    `prepared(generator, options)` runs once the generator is prepared, before the first line."""
    from ..batch import MISSES, run_rows, stopping
    from ..batch_inputs import Row

    numbered = numbered_lines(text)
    if not numbered:
        raise BadInputError("the input has no non-empty lines")
    generator = run.generator(task, template=options.get("template"))
    field = generator.line_field
    rows = [Row(n, n, {**(fields or {}), field: line}) for n, line in numbered]
    options = {**generator.line_options, **options}
    run.prepare(generator, generator.batch_input(rows[0].fields, field), options)
    generator.prepare(options)
    prepared(generator, options)
    shown = LineResults(as_json, output, encoding, line_end)
    unchanged: list[int] = []
    missed: dict[str, list[tuple[str, list]]] = {}  # by key of MISSES: the lines whose result lists what it missed, with the list
    outcomes = run_rows(generator, rows, options, run.sampling(), field, stop_wait=0, draw_seeds=True)  # Ctrl-C ends the process at once (`app._leave`)
    with ui.prints_to_stderr(), ui.items_progress(task, len(rows)) as progress, stopping(outcomes):  # what generator code prints goes to stderr
        progress(0, len(rows))  # the clock starts with the first row
        for done, (row, outcome) in enumerate(outcomes, 1):
            if "error" in outcome:
                ui.warn(f"line {row.number}: {outcome['error']}")
                shown.show(row.number, "", {"error": outcome["error"]})
            else:
                result = outcome["result"]
                for note in notes(result, generator):
                    ui.warn(f"line {row.number}: {note}")
                if given_back(result):
                    unchanged.append(row.number)
                for key in MISSES:
                    if result.get(key):
                        missed.setdefault(key, []).append((str(row.number), result[key]))
                drawn = {"seed": outcome["seed"]} if "seed" in outcome else {}  # the seed this line was sampled with: --seed makes it again
                shown.show(row.number, one_line(render(result)), {**record(result), "model": generator.engine.name, **weights_of(generator), **drawn})  # the keys a single text's --json has
                run.keep(generator, task, row.fields[field], render(result), options, result, measured=False, sampling={**run.sampling(), **drawn})
            progress(done, len(rows))
    if unchanged:
        ui.warn(given_back_note("line", [str(number) for number in unchanged], len(rows)))
    for key in MISSES:
        if missed.get(key):
            ui.warn(missed_note(key, sorted(missed[key], key=lambda pair: int(pair[0])), len(rows), "line"))
    shown.finish(text)
    run.report(generator)
    shown.check(len(rows))
