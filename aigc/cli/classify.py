"""`aigc classify TEXT|FILE|-` and `aigc eval classify DATA`."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import ui
from ..errors import AigcError, BadInputError
from ..textio import first_words, numbered_lines, read_input
from ..writing import output_target, write_atomic
from . import complete, examples
from .lines import LineResults, check_lines_source, run_lines, warn_of_rows_file
from .command_defaults import DefaultsCommand
from .options import RunOptions, emit, generation_options, source_or_stdin, warn_of_a_word_read_as_a_file, weights_of


Labels = Annotated[Optional[list[str]], typer.Option("--labels", "-l", help="Comma-separated labels (or -l for each); name=alias|alias scores aliases too. Optional with --examples.")]
Examples = Annotated[Optional[str], typer.Option(metavar="FILE", help="Labelled examples (a few or hundreds): a .tsv of 'text<TAB>label' lines, or a .csv or .jsonl with text and label columns.")]
Aspect = Annotated[str, typer.Option(help="What the labels describe (sentiment, topic, ...), named in the prompt; often more accurate.")]
Kind = Annotated[str, typer.Option(help="What the texts are (movie review, news article, ...), named before each text in the prompt.")]
Method = Annotated[str, typer.Option(help="auto (picked by cross-validation on the examples), zero-shot, probe or demos.", autocompletion=complete.classify_methods)]
Calibrate = Annotated[str, typer.Option(help="Divide out a label prior: auto, content-free (N/A, ?, Lorem ipsum), examples (their mean), batch (the texts classified together: --lines, eval) or off.", autocompletion=complete.calibrations)]
Channel = Annotated[bool, typer.Option("--channel/--no-channel", help="Zero-shot, one label per text: add how likely the text is after a line naming each label (more accurate; scores each text once more per label, so slower). --no-channel: label scores alone.")]


def joined(labels: Optional[list[str]]) -> Optional[str]:
    """The labels of every -l, as one comma-separated list (`-l a -l b` is `-l a,b`)."""
    return ",".join(labels) if labels else None


def options(labels, multi_label, threshold, examples, aspect, kind, method, calibrate, truncate: bool = False, channel: bool = True) -> dict:
    return {
        "labels": labels, "multi_label": multi_label, "threshold": threshold, "examples": examples,
        "aspect": aspect, "kind": kind, "method": method, "calibrate": calibrate, **({"truncate": True} if truncate else {}), **({} if channel else {"channel": False}),
    }


def check_threshold(threshold: float | None, multi_label: bool) -> None:
    """`--threshold` without `--multi-label` is a `BadInputError` (the library takes its default, 0.5, as left out)."""
    if threshold is not None and not multi_label:
        raise BadInputError("--threshold picks labels with --multi-label; one label per text is always the likeliest")


def json_record(result: dict, method_reason: str | None = None) -> dict:
    """What `--json` prints of a result: the label(s), the scores, and the method and calibration
    that made them, as `aigc batch classify` and the library give them; with --examples, why
    --method auto kept zero-shot (`method_reason`, "" where it did not), as `eval classify` says."""
    record = {k: result[k] for k in ("label", "labels", "scores", "method", "calibration") if k in result}
    return record if method_reason is None else {**record, "method_reason": method_reason}


def kept_zero_shot(generator, chosen: dict) -> str | None:
    """Why --method auto kept zero-shot on the --examples, shown as a note (which -q hides): "" where
    it did not, None without examples (nothing was picked)."""
    from ..generators.classify_examples import kept_zero_shot as reason_for

    if not chosen["examples"]:
        return None
    opts = generator.validate(chosen)
    reason = reason_for(generator.example_model(opts), opts)
    if reason:
        ui.info(f"--method auto kept zero-shot: {reason}")
    return reason


def describe(result: dict) -> str:
    """One line: the label(s), then every label's probability, likeliest first."""
    chosen = ", ".join(result["labels"]) if "labels" in result else result["label"]
    scores = "  ".join(f"{name} {p:.3f}" for name, p in sorted(result["scores"].items(), key=lambda kv: -kv[1]))
    return f"{chosen or '(none)'}\t{scores}"


@generation_options(sampling=False, logged=True)
def classify(
    source: Annotated[Optional[str], typer.Argument(metavar="TEXT|FILE|-", help="The text, a .txt/.md/.html file or .srt/.vtt/.sbv/.ass/.ssa subtitles (their words), or - for stdin (read when piped and nothing is given).", show_default=False)] = None,
    labels: Labels = None,
    multi_label: Annotated[bool, typer.Option("--multi-label", help="Any number of labels may apply; each gets a score from 0 to 1.")] = False,
    threshold: Annotated[Optional[float], typer.Option(show_default=False, help="With --multi-label (default 0.5): labels scoring at least this are chosen (score: likelihood next to the likeliest label's; with --examples, each label's own probability).")] = None,
    examples: Examples = None,
    aspect: Aspect = "",
    kind: Kind = "",
    method: Method = "auto",
    calibrate: Calibrate = "auto",
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the result (with --lines, every line's) to this file, atomically at the end; - for stdout.")] = None,
    lines: Annotated[bool, typer.Option("--lines", help="Classify each non-empty input line as its own text.")] = False,
    truncate: Annotated[bool, typer.Option("--truncate", help="Classify a text too long for the model's context by its start that fits (a note says how much), instead of refusing it.")] = False,
    channel: Channel = True,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"label", "scores", "method", "calibration", "model", "model_digest"} (with --multi-label "labels" for "label"; with --examples "method_reason", why auto kept zero-shot) as JSON; with --lines one per line, with its "line" number.')] = False,
    *,
    run: RunOptions,
) -> None:
    """Pick the label that fits a text, with calibrated probabilities that sum to 1."""
    labels = joined(labels)
    source = source_or_stdin(source, "the text or a document to classify (TEXT, FILE, or - for stdin)")
    output = output_target(output, source=source, reads={"--examples": examples})
    if lines:
        check_lines_source(source, "classify")
    else:
        warn_of_rows_file(source, "classify")
    warn_of_a_word_read_as_a_file(source, "classify")
    text = read_input(source, lines=lines)
    numbered = numbered_lines(text) if lines else [(None, text)]
    texts = [t for _, t in numbered]
    if not texts:
        raise BadInputError("there is no text to classify")  # the text itself: an empty file or stdin is refused as read
    check_threshold(threshold, multi_label)
    chosen = options(labels, multi_label, threshold, examples, aspect, kind, method, calibrate, truncate, channel)
    if lines and calibrate != "batch":  # each line on its own, scored in merged batches: a bad line is skipped
        reason = {}
        record = lambda result: json_record(result, reason.get("why"))  # noqa: E731
        run_lines(run, "classify", text, chosen, describe, as_json, record=record, output=output, prepared=lambda generator, options: reason.update(why=kept_zero_shot(generator, options)))
        return
    generator = run.generator("classify")
    run.prepare(generator, texts[0], chosen)
    with ui.prints_to_stderr(), ui.progress_bar() as progress:  # what generator code prints goes to stderr
        generator.progress = progress
        try:
            results = generator.classify_many(texts, **chosen)
        except AigcError as exc:
            if exc.index is not None:  # one text's error: its line (the text alone needs no name)
                exc.at = f"line {numbered[exc.index][0]}" if lines else None
            raise
    reason = kept_zero_shot(generator, chosen)
    lined = LineResults(as_json, output)
    for (number, item), result in zip(numbered, results):
        record = json_record(result, reason)
        shown = {**record, "model": generator.engine.name, **weights_of(generator)}  # as summarize, headline and translate give it
        rendered = json.dumps(shown, ensure_ascii=False) if as_json else describe(result)
        if lines:
            lined.show(number, describe(result), shown)
        else:
            emit(rendered, output)
        chosen_labels = ", ".join(result["labels"]) if "labels" in result else result["label"]
        run.keep(generator, "classify", item, chosen_labels, chosen, record, measured=not lines)
    if lines:
        lined.finish(text)
    run.report(generator)


EVAL_EXAMPLES = examples(
    "aigc eval classify data.tsv -l negative,positive --aspect sentiment",
    "aigc eval classify data.tsv --examples train.tsv --json -o predictions.jsonl",
    "aigc eval classify topics.jsonl --field body --label-field tags --multi-label --threshold 0.3",
)


eval_app = typer.Typer(help="Measure a task on labelled data.", no_args_is_help=True)


@eval_app.command("classify", epilog=EVAL_EXAMPLES)
@generation_options(sampling=False)
def eval_classify(
    data: Annotated[str, typer.Argument(metavar="DATA", help="Labelled texts: .tsv (one 'text<TAB>label' per line, an optional header; - for stdin), or .csv or .jsonl (.ndjson) rows as aigc batch reads them.")],
    labels: Annotated[Optional[list[str]], typer.Option("--labels", "-l", help="Comma-separated labels (or -l for each), in the order the report shows them (default: the data's, as they first appear).")] = None,
    input_format: Annotated[Optional[str], typer.Option("--format", metavar="tsv|csv|jsonl", help="The format of DATA when it is - (stdin; default tsv) or a file named otherwise, such as <(cut -f2,3 x.tsv); not of --examples.", show_default=False)] = None,
    field: Annotated[Optional[str], typer.Option(help="The column (JSON key) holding each text (default: text, or the one column of a known name such as review); given for a .tsv file, its first line names the columns.", show_default=False)] = None,
    label_field: Annotated[Optional[str], typer.Option("--label-field", help="The column (JSON key) holding each text's label (default: label, or one such as sentiment); as --field for a .tsv file.", show_default=False)] = None,
    examples: Examples = None,
    aspect: Aspect = "",
    kind: Kind = "",
    method: Method = "auto",
    calibrate: Calibrate = "auto",
    multi_label: Annotated[bool, typer.Option("--multi-label", help="Each text has a set of labels: comma-separated in its label cell (a JSON list in .jsonl), none for an empty cell. Reports per-label and micro, macro, weighted and samples precision, recall and F1, subset accuracy and Hamming loss.")] = False,
    threshold: Annotated[Optional[float], typer.Option(show_default=False, help="With --multi-label (default 0.5): labels scoring at least this are predicted, as classify --threshold.")] = None,
    truncate: Annotated[bool, typer.Option("--truncate", help="Classify a text too long for the model's context by its start that fits (a note says how much), instead of refusing it, as classify --truncate.")] = False,
    channel: Channel = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="PRED.jsonl", help="Also write each text's prediction, one JSON line per text (number, text, label, predicted, correct, scores; with --multi-label the true and predicted label lists: labels, predicted), atomically once the evaluation ends.", show_default=False)] = None,
    *,
    run: RunOptions,
) -> None:
    """Accuracy, macro- and weighted F1, per-label precision, recall, F1 and support, a confusion matrix and texts/s of classify on labelled data (with --multi-label: label sets)."""
    from ..evaluation import checked_labels, evaluate_classify, numbered, read_labelled
    from ..generators.classify_examples import load_examples
    from ..generators.classify import parse_label, parse_labels

    labels = joined(labels)
    check_threshold(threshold, multi_label)
    if output:  # checked before the model loads
        output = output_target(output, reads={"data": data, "--examples": examples})
        if output is None:
            raise BadInputError("-o names standard output, which the report is printed to; give -o a file")
    named = [label.name for label in parse_labels(labels)]  # they tell a header in a .tsv file
    rows = read_labelled(data, field, label_field, named, one_label="eval classify measures one label per text, or a set with --multi-label", input_format=input_format and input_format.lower(), multi_label=multi_label)
    found = list(dict.fromkeys(name for _, label in rows for name in (label if multi_label else [label])))
    if not found and not labels:
        raise BadInputError(f"{data} gives no text a label; list the labels with --labels")
    if len(found) < 2 and not labels and multi_label:
        raise BadInputError(
            f"{data}: texts carry only the label {found[0]!r}; a multi-label evaluation needs two labels or more: "
            f"list them with --labels (to measure whether {found[0]!r} applies, write other on the texts without it and evaluate "
            f"without --multi-label, -l {found[0]},other: then every text has a label, and {found[0]!r}'s F1 is one of the report's)"
        )
    if len(found) < 2 and not labels:
        raise BadInputError(f"{data} holds texts of the label {found[0]!r} only; list every label with --labels, or give texts of two labels or more")
    numbers = numbered(found)
    if numbers and not labels:
        names = "0=negative,1=positive" if numbers == ["0", "1"] else ",".join(f"{n}=NAME" for n in numbers)
        ui.warn(f"the labels of {data} are numbers ({', '.join(numbers)}), so they are scored as the words {', '.join(map(repr, numbers))}; give each its name, as -l \"{names}\" does")
    if examples and method != "zero-shot":  # zero-shot does not learn from the examples' labels
        shared = {same_text(text) for text, _ in rows} & {same_text(text) for text, _ in load_examples(examples, labels=named)}
        if shared:
            ui.warn(f"{len(shared)} of the {len(rows)} texts are also in --examples {examples}, so the figures are not on held-out data")
    chosen = options(labels or [parse_label(name, aliases=False) for name in found], multi_label, threshold, examples, aspect, kind, method, calibrate, truncate, channel)  # as the data writes them
    generator = run.generator("classify")
    absent = [name for name in checked_labels(generator.validate(chosen), rows) if name not in found]  # before the model loads
    if absent:
        ui.warn(f"{data} has no texts of the label{'s' * (len(absent) > 1)} {', '.join(map(repr, absent))}; macro-F1 counts {'each' if len(absent) > 1 else 'it'} as 0")
    run.prepare(generator, rows[0][0], chosen)
    predictions: list[dict] | None = [] if output else None
    with ui.prints_to_stderr(), ui.progress_bar() as progress:
        generator.progress = progress
        try:
            report = evaluate_classify(generator, rows, chosen, predictions=predictions)
        except AigcError as exc:
            if exc.index is not None:  # the text, as the data file holds it
                exc.at = f"{data}: text {exc.index + 1} ({first_words(rows[exc.index][0])!r})"
            raise
    if output:
        ui.info(f"wrote {write_atomic(output, ''.join(json.dumps(row, ensure_ascii=False) + chr(10) for row in predictions))}")
    if as_json:
        ui.result(json.dumps({**report.as_dict(), **_evaluated(generator, data, examples)}, indent=2))
    elif multi_label:
        print_multi_label_report(report)
    else:
        print_report(report)
    run.report(generator)


def _evaluated(generator, data: str, examples: str | None) -> dict:
    """What `eval classify --json` records of what it measured: the model, the data and --examples
    files (by full path; `-` for stdin), the dtype the model ran in (None for one that does not run here) and aigc's version."""
    from .. import __version__

    def path(name: str | None) -> str | None:
        return name if name in (None, "-") else str(Path(name).absolute())

    return {"model": generator.engine.name, **weights_of(generator), "data": path(data), "examples_file": path(examples), "dtype": getattr(generator.engine, "dtype", None), "aigc_version": __version__}


def same_text(text: str) -> str:
    """`text` as the leak check compares it: case and runs of white space do not count."""
    return " ".join(text.split()).casefold()


def _said(report, figures: str, settings: str = "") -> None:
    """The report's first line: its texts, `figures`, the rate and how the texts were classified."""
    from rich.console import Console

    Console(highlight=False).print(
        f"{report.examples} text{'s' * (report.examples != 1)}  {figures}  "  # texts: not --examples
        f"{report.examples_per_second:.1f} texts/s  (method {report.method}, calibration {report.calibration}{settings}"
        + (f"; {report.examples_read} --examples read" if report.examples_read else "")
        + (f"; auto kept zero-shot: {report.method_reason}" if report.method_reason else "")
        + ")",
        markup=False,
        soft_wrap=True,
    )


def _per_label(report):
    """A table of each label's precision, recall, F1 and support."""
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    table.add_column("label")
    for heading in ("precision", "recall", "F1", "support"):
        table.add_column(heading, justify="right")
    for name in report.labels:
        figures = (report.per_label_precision[name], report.per_label_recall[name], report.per_label_f1[name])
        table.add_row(escape(name), *(f"{figure:.3f}" for figure in figures), str(report.per_label_support[name]))
    return table


def print_report(report) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    _said(report, f"accuracy {report.accuracy:.3f}  macro-F1 {report.macro_f1:.3f}  weighted-F1 {report.weighted_f1:.3f}")
    Console(highlight=False).print("confusion matrix (rows: true label, columns: predicted)", soft_wrap=True)
    table = Table()
    table.add_column("true \\ predicted")
    for name in report.labels:
        table.add_column(escape(name), justify="right")
    for name, row in zip(report.labels, report.confusion):
        table.add_row(escape(name), *map(str, row))
    ui.print_table(table)
    ui.print_table(_per_label(report))  # apart from the matrix, so that many labels still fit the width


def print_multi_label_report(report) -> None:
    """The figures of a `MultiLabelReport`, each label's and their averages in one table, as scikit-learn's `classification_report`."""
    _said(
        report,
        f"subset accuracy {report.subset_accuracy:.3f}  Hamming loss {report.hamming_loss:.3f}  micro-F1 {report.micro_f1:.3f}  "
        f"macro-F1 {report.macro_f1:.3f}  weighted-F1 {report.weighted_f1:.3f}  samples-F1 {report.samples_f1:.3f}",
        f", threshold {report.threshold:g}",
    )
    table = _per_label(report)
    table.add_section()
    support = str(sum(report.per_label_support.values()))  # the labels the texts carry, as classification_report counts each average's support
    for average in ("micro", "macro", "weighted", "samples"):
        figures = (getattr(report, f"{average}_{name}") for name in ("precision", "recall", "f1"))
        table.add_row(f"{average} avg", *(f"{figure:.3f}" for figure in figures), support)
    ui.print_table(table)


EXAMPLES = examples(
    'aigc classify "I loved every minute" -l negative,positive',
    "aigc classify - --examples labelled.tsv --lines < texts.txt",
)


def register(app: typer.Typer) -> None:
    app.command(cls=DefaultsCommand, epilog=EXAMPLES)(classify)
    app.add_typer(eval_app, name="eval")
