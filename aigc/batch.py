"""Running one task over many inputs: reading rows, resuming a run, and writing results in order.

Rows come from JSONL (or NDJSON), CSV, TSV or TXT (one item per non-empty line). Results go to a
JSONL file, one `{"id", "row", "result"}` or `{"id", "row", "error"}` line per input row. Each line is written,
flushed and fsynced as soon as its row is done, so a run killed at any moment leaves every finished
row in whole lines (plus at most one torn last line, which the next run cuts off) and a rerun skips
the ids already there and runs again those that failed; a run that ends puts the lines in input
order. Items run concurrently, and their model calls are merged into batches by `CoalescingEngine`.
Rows are read in `batch_inputs`, the output file is kept in `batch_output`, and `batch_tables`
writes it as a .csv or .tsv.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from . import ui
from .batch_inputs import Row, flag_rows, id_key, row_error, row_sampling
from .batch_inputs import read_rows as read_rows  # re-exported (`as`: for type checkers too): `from aigc.batch import read_rows, run_batch`, as the README shows
from .batch_output import check_made_alike, input_digest, read_output, restore_order, rewrite_output, run_settings, streams, with_line_options, without_results, writing
from .batch_tables import TABLES
from .engine.base import StopSignal, stop_when, stoppable_context
from .engine.coalesce import CoalescingEngine
from .errors import AigcError, BadInputError, OptionError
from .generators.base import Generator, quiet_notes, seed_to_draw, type_name
from .writing import check_writable, open_stream

ON_ERROR = ("skip", "stop")
WORKER = "aigc batch worker"  # the name of a thread running rows
MISSES = ("glossary_misses", "missing_placeholders")  # a result's lists of what its text missed, summed up at the end of a run
WINDOW = 64  # rows sorted by length together, so a model batch holds rows of similar length
STOP_WAIT = 10.0  # seconds a run stopped by Ctrl-C waits for its rows in flight to stop (a local model's at their next decoding step, a remote one's as its connection is shut) before it raises


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0  # already in the output from an earlier run
    retried: int = 0  # failed in an earlier run, run again
    changed: int = 0  # had a result from an earlier run, run again as its input has changed since
    errors: int = 0
    short: int = 0  # results with fewer items than asked for (their `missing`, as headline's)
    unchanged: list[Row] = dataclasses.field(default_factory=list)  # rows whose result is their text given back (`"unchanged": true`, as summarize's)
    cut_off: list[Row] = dataclasses.field(default_factory=list)  # rows whose result the token limit cut off (`cut_off_at_limit`)
    missed: dict[str, list[tuple[Row, list]]] = dataclasses.field(default_factory=dict)  # rows whose result lists what it missed (translate's "glossary_misses", "missing_placeholders"), by that key, with the list
    to_raise: dict[tuple[str, ...], int] = dataclasses.field(default_factory=dict)  # rows whose error says to raise these options (any one), by option
    seconds: float = 0.0
    rows: int = 0

    @property
    def items_per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def _named(row: Row) -> str:
    """`3 (id "a")` in a message: the row number and its id as JSON (`null` for a line without one)."""
    return f"{row.number} (id {json.dumps(row.id, ensure_ascii=False, default=str)})"


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
    stop_wait: float = STOP_WAIT,
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
    the rows are plain text (a .txt file's lines, a .csv or .tsv file's cells), run with the generator's `line_options`
    under `options` (which `made_with` does not list: they are the defaults for such rows).
    `keep_columns=True`: each line also holds its row's columns, as `"input"`. A KeyboardInterrupt
    (or SystemExit) stops the rows in flight at their next decoding step (a local model's; a remote
    model's requests in flight have their connections shut) and is raised again once
    their workers have ended, or after `stop_wait` seconds (0 where the caller ends the process at once, as the CLI does).
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
        check_made_alike(output, previous, settings, retry_failed)
        todo = without_results(rows, previous, generator, field_name)
        flag_rows(generator, todo, field_name, opts)
        if needs_model(todo) and not prepared:
            generator.prepare(options)
        loaded = getattr(generator._engine, "model_digest", None) if needs_model(todo) else None  # which weights, by content: read once, recorded on every line
        weights = {"model_digest": loaded} if isinstance(loaded, str) else {}
        failed = {key for key, record in previous if "error" in record}
        changed = {id_key(r.id) for r in todo} & {key for key, record in previous if "result" in record}
        if failed or changed:
            rewrite_output(output, [record for key, record in previous if key not in failed | changed])
        summary = BatchSummary(skipped=len(rows) - len(todo), retried=sum(id_key(r.id) in failed for r in todo), changed=len(changed), rows=len(rows))
        report = progress or (lambda done, total: None)
        report(0, len(todo))  # the total is known before the first row finishes
        started = time.perf_counter()
        try:
            outcomes = run_rows(generator, todo, options, sampling, field_name, concurrency, in_order=stream, stop_at_error=on_error == "stop", stop_wait=stop_wait, draw_seeds=True)
            with ui.closed_pipe(), open_stream(output) as sink, stopping(outcomes):  # closing flushes again: on Windows, EINVAL where the reader went away
                for row, outcome in outcomes:
                    raised = outcome.pop("exception", None)
                    digest = input_digest(generator, row, field_name)
                    line = {"id": row.id, "row": row.number, **settings, **weights, **({"input_digest": digest} if digest else {}), **({"input": row.as_read} if keep_columns else {}), **outcome}
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
                        with ui.closed_pipe():
                            if not (stream and ui.above_live_display(sink, text)):  # stdout on the terminal of the progress bar: above it
                                sink.write(text + "\n")
                                sink.flush()
                    except BrokenPipeError as exc:  # what read the stream went away (`| head`): the rows in flight are not waited for
                        outcomes.throw(exc)
                    if not stream:  # a pipe or device cannot be synced
                        os.fsync(sink.fileno())
                    summary.done += 1
                    summary.short += bool(isinstance(line.get("result"), dict) and line["result"].get("missing"))
                    if isinstance(line.get("result"), dict) and line["result"].get("unchanged") is True:
                        summary.unchanged.append(row)
                    if cut_off_at_limit(line.get("result")):
                        summary.cut_off.append(row)
                    for key in MISSES:
                        if isinstance(line.get("result"), dict) and isinstance(line["result"].get(key), list) and line["result"][key]:
                            summary.missed.setdefault(key, []).append((row, line["result"][key]))
                    report(summary.done, len(todo))
        except AigcError:  # stopped at a bad row
            if not stream:
                restore_order(output, rows)
            raise
        finally:
            summary.seconds = time.perf_counter() - started
        if not stream:
            restore_order(output, rows)
    return summary


def cut_off_at_limit(result: Any) -> bool:
    """Whether max_tokens cut a result off: `"cut_off": true` (summarize, translate, headline), or a
    `"finish_reason"` (any of `"finish_reasons"`) of `"length"` (chat, template)."""
    if not isinstance(result, dict):
        return False
    reasons = result.get("finish_reasons")
    return result.get("cut_off") is True or result.get("finish_reason") == "length" or (isinstance(reasons, list) and "length" in reasons)


def _to_raise(exc: BaseException | None) -> tuple[str, ...]:
    """The options a row's error says to raise ("cut off at max_tokens 6; raise max_tokens"), by name."""
    if not isinstance(exc, AigcError):
        return ()
    advice = re.search(r"\braise ([^;]*)", exc._text())
    return tuple(re.findall("\x1e([^\x1e\x1f]+)(?:\x1f[^\x1e]*)?\x1e", advice.group(1))) if advice else ()


def _order(rows: list[Row], field_name: str) -> list[Row]:
    """Rows in windows of `WINDOW`, each sorted by text length, so concurrent rows pad little."""
    size = lambda r: len(str(r.fields.get(field_name) or ""))  # noqa: E731
    return [r for start in range(0, len(rows), WINDOW) for r in sorted(rows[start : start + WINDOW], key=size)]


def run_rows(
    generator, rows: list[Row], options: dict[str, Any], sampling: dict[str, Any] | None = None, field_name: str = "text",
    concurrency: int = 16, in_order: bool = True, stop_at_error: bool = False, stop_wait: float = STOP_WAIT, draw_seeds: bool = False, cancel: StopSignal | None = None,
) -> Iterator[tuple[Row, dict]]:
    """`(row, {"result": ...} or {"error": ...})` in input order (else as rows finish), while worker
    threads run the rows concurrently and their model calls are merged into batches. A row the
    generator raised on also carries the exception, as `"exception"`. `stop_at_error` (outcomes in
    input order): rows are started in input order, none once a row has failed, and the outcomes end
    with the first failed row's. Closed early (`stopping` closes it), the rows in flight stop at their
    next decoding step (on a local model; a remote model's requests are cut) and their workers are waited for; a KeyboardInterrupt or SystemExit (while
    it waits for a row, or thrown in) waits for them `stop_wait` seconds at most, a BrokenPipeError not at all.
    `draw_seeds`: a row a local model samples without a seed gets one drawn for it (`seed_to_draw`),
    given back as the outcome's `"seed"`, so that the row alone with that seed gives the same answer:
    in float32 (almost always: but for rounding), in bfloat16 or float16 up to the drift batching
    brings (`CoalescingEngine` merges a local model's seeded rows, each drawn from its own seed, in any dtype).
    Once `cancel` is set (from any thread), the rows in flight stop so and the outcomes end, after their workers have."""
    check_concurrency(concurrency)
    if not needs_model(rows):  # only rows that failed when read (bad JSON, no text: `flag_rows`): no model to load
        yield from ((row, {"error": row.error}) for row in rows)
        return
    engine = CoalescingEngine(generator.engine, workers=min(concurrency, len(rows)))
    worker = copy.copy(generator)  # the rows' calls go through the batching engine; the caller's generator is left as it is
    worker._engine = engine
    named = f"the {generator.name} generator{generator.by_plugin()}"  # as a row's error names it
    yield from _outcomes(worker, engine, rows, options, sampling or {}, field_name, in_order or stop_at_error, named, stop_at_error, stop_wait, draw_seeds, cancel)


@contextlib.contextmanager
def stopping(outcomes: Iterator[tuple[Row, dict]]) -> Iterator[Iterator[tuple[Row, dict]]]:
    """`run_rows(...)` for a `with` around the loop over it: a KeyboardInterrupt or SystemExit raised
    in the loop's body is thrown into it, stopping its workers as one that comes while it waits for a
    row does; any other way out of the loop (an error, a `break`) closes it."""
    try:
        yield outcomes
    except (KeyboardInterrupt, SystemExit) as exc:
        if inspect.getgeneratorstate(outcomes) == inspect.GEN_SUSPENDED:  # else it raised it itself, or had ended
            outcomes.throw(exc)  # raises it again once the workers have stopped
        raise
    finally:
        outcomes.close()


def needs_model(rows: list[Row]) -> bool:
    """Whether any of `rows` reaches the model (a row that failed when it was read does not)."""
    return any(not row.error for row in rows)


def check_concurrency(concurrency: int) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
        raise OptionError("concurrency", f"must be a whole number between 1 and 256, got {concurrency!r}")


def _outcomes(
    generator, engine: CoalescingEngine, rows: list[Row], options, sampling, field_name, in_order: bool, named: str, stop_at_error: bool = False,
    stop_wait: float = STOP_WAIT, draw_seeds: bool = False, cancel: StopSignal | None = None,
) -> Iterator[tuple[Row, dict]]:
    queue = rows if stop_at_error else _order(rows, field_name)  # sorted, a row after a failed one would have run before it
    position = {id(r): i for i, r in enumerate(rows)}
    results: dict[int, dict] = {}
    ready = threading.Condition()
    stop = StopSignal()
    taken = iter(queue)
    take_lock = threading.Lock()
    first_failed = len(rows)  # with stop_at_error, rows after it are not started; every row before it is

    def work() -> None:
        nonlocal first_failed
        stop_when(stop)  # the engine calls of this thread stop decoding once the run is stopped
        try:
            while not stop.is_set():
                with take_lock:
                    row = next(taken, None)
                    while row is not None and position[id(row)] > first_failed:
                        row = next(taken, None)
                if row is None:
                    return
                outcome = _run_one(generator, row, options, sampling, field_name, named, draw_seeds)
                if stop_at_error and "error" in outcome:  # before the caller hears of it
                    with take_lock:
                        first_failed = min(first_failed, position[id(row)])
                with ready:
                    results[position[id(row)]] = outcome
                    ready.notify_all()
        finally:
            engine.retire()

    threads = [threading.Thread(target=work, daemon=True, name=WORKER) for _ in range(engine.workers)]
    started, wait = 0, None
    told_to_stop, _ = stoppable_context(stop)

    def wake() -> None:
        with ready:
            ready.notify_all()

    cancelled = cancel if cancel is not None else StopSignal()
    try:
        with cancelled.calling(stop.set), stop.calling(wake):  # cancelled: the rows in flight stop, and this loop is woken
            for thread in threads:
                thread.start()
                started += 1
            for index in range(len(rows)):
                with ready:
                    while not (index in results if in_order else results) and not cancelled.is_set():
                        ready.wait()
                    if cancelled.is_set():
                        return
                    done = index if in_order else next(iter(results))  # else the first row that finished
                    outcome = results.pop(done)
                yield rows[done], outcome
                if stop_at_error and "error" in outcome:  # the rows after it were not all run
                    return
    except (KeyboardInterrupt, SystemExit, BrokenPipeError, GeneratorExit) as exc:  # Ctrl-C, SIGTERM as the CLI raises it, a reader gone, thrown in by the caller; or closed (it left the loop)
        wait = 0.0 if isinstance(exc, BrokenPipeError) else stop_wait  # a reader gone: the process is ending
        raise
    finally:
        stop.set()  # rows still in flight (after a failed one, or when the caller left) stop at their next decoding step
        for _ in threads[started:]:  # never started (Ctrl-C came as they were): the calls of those started are not held for theirs,
            told_to_stop.run(engine.retire)  # nor run here: told to stop, as the workers are
        _join(threads, wait)  # before the caller gets the engine back; those left after `wait` are daemons, told to stop


def _join(threads: list[threading.Thread], seconds: float | None) -> None:
    """Wait for `threads` to end, `seconds` in all at most (None: however long they take)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    for thread in filter(threading.Thread.is_alive, threads):  # one never started cannot be joined
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


def _run_one(generator, row: Row, options, sampling, field_name, named: str, draw_seeds: bool = False) -> dict:
    if row.error:
        return {"error": row.error}
    try:
        item = row.input if row.given else generator.batch_input(row.fields, field_name)
        settings = {**sampling, **row_sampling(row, field_name)}
        drawn = seed_to_draw(generator, options, settings) if draw_seeds else None  # a sampled row without a seed gets its own, recorded: `--seed` makes it again
        with quiet_notes():  # warned of once for all rows, by the caller
            result = generator(item, sampling=settings if drawn is None else {**settings, "seed": drawn}, **options)
        return {"result": result, **({"seed": drawn} if drawn is not None else {})}
    except AigcError as exc:  # a BadInputError: this row's input, or the model's answer for it; others are
        return {"error": row_error(exc, row, field_name), "exception": exc}  # not the row's fault (a plugin's filter, a remote that is down)
    except BaseException as exc:  # noqa: BLE001 - a bug (in a plugin's generator, say) on this row; workers get no signals, so a SystemExit or KeyboardInterrupt here is one too
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        return {"error": f"{named} failed: {detail}", "exception": exc}
