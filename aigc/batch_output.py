"""A batch run's JSON Lines output: reading and repairing it, what made it, the rows it has no result for, holding and rewriting it."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from . import locks
from .batch_inputs import Row, id_key, row_sampling
from .engine.models import model_key
from .engine.sampling import SamplingParams
from .errors import AigcError, BadInputError, BusyError, option
from .textio import parse_json
from .writing import inherited_fd, write_atomic

COLUMNS = ("text", "id")  # the columns read by default: the text, the id


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
            if not _is_batch_line(record):
                raise ValueError
        except ValueError:
            raise BadInputError(f"{path}:{number} is not a batch output line; give another -o or remove the file") from None
        lines.append((id_key(record["id"]), record))
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


def _is_batch_line(record: Any) -> bool:
    """Whether `record` is a line aigc batch writes (every version has): an `id`, an integer `row`,
    and a `result` or a text `error`; other JSON Lines (an OpenAI batch output's `"error": null`, a
    JSON-RPC log) are some other file."""
    if not isinstance(record, dict) or "id" not in record:
        return False
    row = record.get("row")
    if not isinstance(row, int) or isinstance(row, bool):
        return False
    return isinstance(record["error"], str) if "error" in record else "result" in record


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
    check_made_alike(output, previous, run_settings(generator, options, sampling, columns, lines), retry_failed)
    return without_results(rows, previous, generator, columns[0])


def streams(output: str | Path) -> bool:
    """Whether `output` is written only, never read back: a descriptor of this process such as
    `/dev/stdout` (whatever it is: a pipe, a file appended to) or anything that is not a regular file."""
    return inherited_fd(output) is not None or (Path(output).exists() and not Path(output).is_file())


_NO_DEFAULT = object()


def run_settings(generator, options: dict[str, Any], sampling: dict[str, Any] | None = None, columns: tuple[str, str] = COLUMNS, lines: bool = False) -> dict[str, Any]:
    """What every output line records of how it was made: the task, the model, `settings`, a
    fingerprint of the task options and sampling settings as they take effect (`-O n=02` is `n=2`, a
    default given is the default), of the quantization, and of the columns read (text, id), and
    `made_with`, those that are not defaults, by name (a long value by its digest), to say which
    differ. With `lines` (rows of plain text: a .txt file's lines, a .csv or .tsv file's cells), the generator's `line_options` are defaults."""
    options = with_line_options(generator, options, lines)
    opts = generator.validate(options)
    params = SamplingParams(**(sampling or {}))
    made = {
        "options": opts.settings() if hasattr(opts, "settings") else {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if f.init},
        "sampling": {k: _folded(getattr(params, k)) for k in sampling or {}},
        "quantize": None if generator.quantize in (None, "none") else generator.quantize,
    }
    if tuple(columns) != COLUMNS:  # the defaults leave the fingerprint of files made before columns counted
        made["columns"] = list(columns)
    digest = hashlib.sha256(json.dumps(made, sort_keys=True, default=str).encode()).hexdigest()
    defaults = {**_defaults(opts), **(generator.line_options if lines else {})}
    given = {k: v for k, v in made["options"].items() if getattr(opts, k, v) != defaults.get(k, _NO_DEFAULT)}  # an option left at its default is not, however recorded
    shown = {**given, **{k: getattr(params, k) for k in made["sampling"]}}
    shown |= {k: made[k] for k in ("quantize", "columns") if made.get(k) is not None}
    if generator.model is not None or generator._engine is None:
        model = model_key(generator.model)
    else:  # an engine handed to the generator
        model = generator._engine.name
    used = _templates_used(opts)
    dtype = generator.dtype_used()  # outside `settings`, as `templates`: the fingerprints of files made before it was recorded stand
    return {
        "task": generator.name, "model": model, **({"dtype": dtype} if dtype else {}), "settings": digest[:12],
        "made_with": {k: _recorded(v) for k, v in sorted(shown.items())}, **({"templates": used} if used else {}),
    }


def _templates_used(opts: Any) -> dict[str, str]:
    """A digest of each template the options name (`template`, `chunk_template`) as it is now (its
    text, system prompt, defaults and variables), so that a resume after it was edited is caught:
    outside `settings`, so the fingerprints of files made before it was recorded stand."""
    from . import templates
    from .generators.base import template_options

    used = {}
    for option in template_options(type(opts)):
        name = getattr(opts, option)
        if isinstance(name, str):
            templates.get_template(name)  # its warnings, once
            used[name] = templates.digest(name)
    return used


def made_from_cells_as_markdown(output: str | Path, generator, options: dict[str, Any], sampling: dict[str, Any] | None = None, columns: tuple[str, str] = COLUMNS) -> bool:
    """Whether the results in `output` were made from a .csv or .tsv file's cells read without the
    generator's `line_options` (as aigc read them before it took cells for plain text): their
    fingerprint is that one's, not the plain text one's. Such a file resumes as it was made."""
    if not generator.line_options or streams(output):
        return False
    made = {record.get("settings") for _, record in read_output(output, repair=False) if "result" in record}
    try:
        then, now = (run_settings(generator, options, sampling, columns, lines)["settings"] for lines in (False, True))
    except AigcError:  # bad options: the run reports them as it checks them
        return False
    return then != now and then in made and now not in made


def _folded(value: Any) -> Any:
    """A sampling setting as the fingerprint takes it: a whole number as the float it equals, so that
    `temperature` 1 is 1.0, where a float holds it exactly (below 2**53: the fingerprints of files made
    before larger numbers counted); a larger one (a 64-bit seed) as it is, so that no two collide."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53 else value


def with_line_options(generator, options: dict[str, Any], lines: bool) -> dict[str, Any]:
    """`options` over the generator's defaults for rows of plain text (`lines`: a .txt file's lines, a .csv or .tsv file's cells)."""
    return {**generator.line_options, **options} if lines else options


def _defaults(opts: Any) -> dict[str, Any]:
    """The default of each of a task's options that has one."""
    fields = dataclasses.fields(opts) if dataclasses.is_dataclass(opts) else ()
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory() for f in fields if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}


def _recorded(value: Any) -> Any:
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


def check_made_alike(output: str | Path, previous: list[tuple[str, dict]], settings: dict[str, Any], retry_failed: bool = False) -> None:
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
        if then is not None and not which:  # the same settings by name: aigc fingerprinted them otherwise when it wrote the file (before 64-bit seeds counted)
            raise BadInputError(
                f"{output} records the same task options, sampling settings and columns (made_with), fingerprinted otherwise (settings) by another version of aigc; "
                f"add {option('retry_failed')} to run the rows it has no result for with these (the results it has are kept), or {start_anew}"
            )
        which = f" ({which})" if which else ""
        mixed = len({record.get("settings") for _, record in previous}) > 1  # a retry made some: no settings resume it all
        rows = f"its {failed} failed row{'s' * (failed != 1)}" if failed else "the rows it has no result for"
        retry = f", add {option('retry_failed')} to run {rows} with these (the results it has are kept)" if (failed or mixed) and other_columns is None else ""
        raise BadInputError(f"{output} was made with other task options, sampling settings or columns (--field, --id-field){which}; resume it with the same ones{retry}, or {start_anew}")
    edited = next((name for _, record in previous if isinstance(record.get("templates"), dict) for name, made in record["templates"].items() if made != settings.get("templates", {}).get(name, made)), None)
    if edited is not None and not retry_failed:  # a line made before templates were recorded is taken as made with them as they are
        raise BadInputError(
            f"{output} was made with template {edited!r} as it was then, {_changed_since(edited)} (its results would not match); resume it with the template as it was, "
            f"add {option('retry_failed')} to run the rows it has no result for with it as it is now (the results it has are kept), or {start_anew}"
        )
    if model := differs("model"):
        raise BadInputError(f"{output} was made with model {model}, not {settings['model']}; resume it with that model, or {start_anew}")
    if "dtype" in settings and (dtype := differs("dtype")):  # a line made before dtypes were recorded is taken as made in this one
        raise BadInputError(f"{output} was made in {dtype}, not {settings['dtype']} (its results would not match); resume it with {option('dtype', dtype)}, or {start_anew}")


def _changed_since(name: str) -> str:
    """How the template `name` came to differ from the one a batch output was made with: edited, or,
    where it is aigc's or a plugin's own now, changed by an upgrade (the user may have edited nothing)."""
    from . import templates

    source = getattr(templates.scan()[0].get(name), "source", "user")
    if source == "builtin":
        return "and aigc's built-in one has changed since (aigc was upgraded, or an override of yours was removed)"
    if source not in ("user", "env", "config"):
        return f"and plugin {source!r}'s has changed since (the plugin was upgraded, or an override of yours was removed)"
    return "edited since"


def _columns(made_with: dict[str, Any]) -> list:
    """The text and id columns a line's `made_with` says it was made from (the defaults unless listed)."""
    columns = made_with.get("columns", COLUMNS)
    return list(columns) if isinstance(columns, list | tuple) else columns  # a hand-edited line's as it is


def without_results(rows: list[Row], previous: list[tuple[str, dict]], generator, field_name: str) -> list[Row]:
    """The rows without a result made from their input as it is now (a line written before inputs
    were recorded is taken as made from it)."""
    done = {key: record.get("input_digest") for key, record in previous if "result" in record}
    return [r for r in rows if id_key(r.id) not in done or done[id_key(r.id)] not in (None, input_digest(generator, r, field_name))]


def input_digest(generator, row: Row, field_name: str) -> str | None:
    """A fingerprint of the input `row` runs with (its text; a template's columns), by which a
    resume runs a row again whose input has changed; None for a row that has none."""
    try:
        item = generator.batch_input(row.fields, field_name)
    except Exception:  # noqa: BLE001 - a bad row, or a plugin's bug: the row reports it as it runs
        return None
    own = row_sampling(row, field_name)  # settings of its own (an OpenAI batch row's), when it has any
    return hashlib.sha256(json.dumps([item, own] if own else item, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:12]


def rewrite_output(path: Path, records: list[dict]) -> None:
    """Replace the output file's lines at once (a kill leaves the old file or the new one)."""
    if not records:  # every row is to run again
        path.write_bytes(b"")
        return
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


_held = threading.local()  # the outputs this thread holds


@contextlib.contextmanager
def writing(output: str | Path, waiting: Callable[[], None] | None = None, timeout: float | None = None) -> Iterator[None]:
    """Hold `output` for this run, so that a second `aigc batch` on it fails at once (a `BusyError`):
    the CLI holds it from before the model loads to the end. With `waiting`, it calls `waiting()` and
    waits its turn instead, for at most `timeout` seconds where given (then a `BusyError` too).
    Holding it again in the same thread changes nothing."""
    mine = _held.__dict__.setdefault("outputs", set())
    key = str(Path(output).resolve())
    if streams(output) or key in mine:
        yield
        return
    busy = f"{output} is being written by another aigc batch; wait for it to end (--wait), or give another -o"

    def still(waited: float) -> str:
        return f"{output} is still being written by another aigc batch after waiting {waited:g} s; wait longer (a higher --wait-timeout, or none), or give another -o"

    with locks.held_or_waited(output, busy, still, BusyError, waiting, timeout):
        mine.add(key)
        try:
            yield
        finally:
            mine.discard(key)


def restore_order(output: Path, rows: list[Row]) -> None:
    """Put the output lines in input order (a resumed run appends retried rows last), each with its
    row number in the input as it is now (rows added above it move it); lines for ids no longer in
    the input stay at the end."""
    records = [record for _, record in read_output(output)]
    position = {id_key(r.id): i for i, r in enumerate(rows) if r.id is not None}
    unnamed = {r.number: i for i, r in enumerate(rows) if r.id is None}  # bad JSON lines: by row number
    ordered = sorted(
        records,
        key=lambda record: position.get(id_key(record["id"]), len(rows)) if record["id"] is not None else unnamed.get(record.get("row"), len(rows)),
    )
    renumbered = [{**record, "row": rows[position[id_key(record["id"])]].number} if record["id"] is not None and id_key(record["id"]) in position else record for record in ordered]
    if renumbered != records:
        rewrite_output(output, renumbered)
