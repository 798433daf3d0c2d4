"""Evaluating classify on labelled data: accuracy, macro- and weighted F1, per-label precision, recall,
F1 and support (as scikit-learn's classification_report), a confusion matrix and throughput."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable

from .errors import AigcError, BadInputError, UnknownLabelError, option

BATCH = 32  # texts classified per call, so progress can be reported
FORMATS = (".jsonl", ".ndjson", ".csv", ".tsv")  # labelled data files
INPUT_FORMATS = ("tsv", "csv", "jsonl")  # what `input_format` names


@dataclass
class ClassifyReport:
    """`examples`: the data's texts evaluated (not `--examples`, counted by `examples_read`);
    `examples_per_second`: those classified a second."""

    examples: int
    accuracy: float
    macro_f1: float
    labels: list[str]
    confusion: list[list[int]]  # confusion[true][predicted], in `labels` order
    per_label_f1: dict[str, float]
    examples_per_second: float
    method: str
    calibration: str
    weighted_f1: float = 0.0  # per-label F1 weighted by support
    per_label_precision: dict[str, float] = field(default_factory=dict)
    per_label_recall: dict[str, float] = field(default_factory=dict)
    per_label_support: dict[str, int] = field(default_factory=dict)  # the data's texts of each label
    examples_read: int = 0  # texts read from `--examples` (0 without)
    method_reason: str = ""  # why method auto kept zero-shot on those examples ("" where it did not)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_labelled(path: str | Path, field: str | None = None, label_field: str | None = None, labels: Collection[str] = (), one_label: str = "give one label per text", input_format: str | None = None) -> list[tuple[str, str]]:
    """`(text, label)` rows of a labelled data file. A .tsv file (or - for stdin) is read as examples are
    (`text<TAB>label` lines, an optional header; `labels`, the names the data may use, tell a
    header), unless `field` or `label_field` names its columns; then, and for .jsonl (.ndjson) and
    .csv, the rows are read by `read_table`, each text from the column (JSON key) `field` and its
    label from `label_field` (known names where not given). `input_format` (tsv, csv or jsonl)
    names the format of stdin or of a file whatever its name (a pipe, `<(cut -f2,3 x.tsv)`). A text
    of several labels is an error saying `one_label` (what to do instead)."""
    from .generators.classify_examples import ROW_FIX, TABLES, checked, load_examples, read_table
    from .textio import STDIN

    stdin = str(path) == "-"
    path = Path(path)
    if input_format is not None and input_format not in INPUT_FORMATS:
        raise BadInputError(f"{option('input_format')} names the format of the labelled texts: {', '.join(INPUT_FORMATS)}, not {input_format!r}")
    if not stdin and not path.exists():
        raise BadInputError(f"no such data file: {path}")
    input_format = input_format or ("tsv" if stdin else None)
    suffix = f".{input_format}" if input_format else path.suffix.lower()
    if suffix not in FORMATS:
        given = f"a {suffix} file" if suffix else "a file without a suffix"
        raise BadInputError(f"{path}: labelled texts are read from .tsv, .csv or .jsonl (.ndjson) files, not {given}; rename it so, or give its format with {option('input_format', 'tsv')} (or csv, jsonl)")
    if suffix == ".tsv" and field is None and label_field is None:
        if not stdin and path.suffix.lower() in TABLES:  # read by its name as a table
            raise BadInputError(f"{path} is named as a {path.suffix.lower()} file: give it a name that ends in .tsv to read it as text<TAB>label lines")
        return [(text, names[0]) for text, names in load_examples("-" if stdin else path, one_label, kind="data file", labels=labels)]
    table = read_table("-" if stdin else path, field, label_field, (option("field"), option("label_field")), input_format)
    return [(text, names[0]) for text, names in checked(STDIN if stdin else str(path), table, one_label, "data file", ROW_FIX)]


def per_label(confusion: list[list[int]]) -> dict[str, list]:
    """Each label's precision, recall, F1 and support (its true texts), 0 where undefined (as
    scikit-learn's `zero_division=0`)."""
    found: dict[str, list] = {"precision": [], "recall": [], "f1": [], "support": []}
    for k in range(len(confusion)):
        tp = confusion[k][k]
        predicted = sum(row[k] for row in confusion)
        support = sum(confusion[k])
        found["precision"].append(tp / predicted if tp else 0.0)
        found["recall"].append(tp / support if tp else 0.0)
        found["f1"].append(2 * tp / (predicted + support) if tp else 0.0)
        found["support"].append(support)
    return found


def numbered(labels: Iterable[str]) -> list[str]:
    """The labels in number order where all are numbers, as HF datasets store a ClassLabel (0, 1, ...); else []."""
    found = set(labels)
    return sorted(found, key=int) if all(label.isdecimal() for label in found) else []


def checked_labels(opts, rows: list[tuple[str, str]]) -> list[str]:
    """The label names `opts` classify into; a row's label not among them is an `UnknownLabelError`."""
    from .generators.classify import case_hint

    labels = [label.name for label in opts.parsed]
    unknown = sorted({label for _, label in rows if label not in labels})
    if unknown:
        numbers = numbered(label for _, label in rows)
        hint = (
            f"; its labels are numbers: give each its name, as {option('labels', json.dumps(','.join(f'{n}={name}' for n, name in zip(numbers, labels if len(labels) == len(numbers) else ['NAME'] * len(numbers))), ensure_ascii=False))} does, "
            f"or put the names in the data, for a .jsonl as `jq -c '.label |= {json.dumps(labels, ensure_ascii=False)}[.]'` does (the names in the order of the numbers)"
        ) if numbers else ""
        raise UnknownLabelError(f"the data uses label{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}, not among {', '.join(labels)}{hint}{case_hint(unknown, labels)}")
    return labels


def prediction(number: int, text: str, truth: str, result: dict[str, Any]) -> dict[str, Any]:
    """One row's prediction: its position among the data's texts (1 for the first, as errors name
    it), text, true label, predicted label, whether they match, and the label scores."""
    return {"number": number, "text": text, "label": truth, "predicted": result["label"], "correct": result["label"] == truth, "scores": result.get("scores", {})}


def evaluate_classify(generator, rows: list[tuple[str, str]], options: dict[str, Any], progress: Callable[[int, int, str], None] | None = None, predictions: list[dict[str, Any]] | None = None) -> ClassifyReport:
    """Classify each `(text, label)` row with `options` and compare with its label. `predictions`, a
    list, receives each row's prediction as the figures count it, in order: `prediction`'s fields.

    Fitting on `--examples` happens before the clock starts: texts/s is classification (and calibration) only.
    """
    from .generators.classify_examples import kept_zero_shot

    progress = progress or (lambda done, total, what: None)
    opts = generator.validate(options)
    labels = checked_labels(opts, rows)
    generator.prepare(options)
    model = generator.example_model(opts) if opts.examples else None
    confusion = [[0] * len(labels) for _ in labels]
    started = time.perf_counter()
    result: dict[str, Any] = {}
    step = len(rows) if opts.calibrate == "batch" else BATCH  # batch calibration: one prior over all rows
    for start in range(0, len(rows), step):
        progress(start, len(rows), "classifying")
        batch = rows[start : start + step]
        try:
            results = generator.classify_many([t for t, _ in batch], **options)
        except AigcError as exc:  # its position among all the rows
            if exc.index is not None:
                exc.index += start
                exc.at = f"text {exc.index + 1}"
            raise
        for number, ((text, truth), result) in enumerate(zip(batch, results), start + 1):
            confusion[labels.index(truth)][labels.index(result["label"])] += 1
            if predictions is not None:
                predictions.append(prediction(number, text, truth, result))
    progress(len(rows), len(rows), "classifying")
    seconds = time.perf_counter() - started
    scores = per_label(confusion)
    return ClassifyReport(
        examples=len(rows),
        accuracy=sum(confusion[k][k] for k in range(len(labels))) / len(rows),
        macro_f1=sum(scores["f1"]) / len(labels),
        labels=labels,
        confusion=confusion,
        per_label_f1=dict(zip(labels, scores["f1"])),
        examples_per_second=len(rows) / seconds if seconds else 0.0,
        method=result.get("method", ""),
        calibration=result.get("calibration", ""),
        weighted_f1=sum(f * n for f, n in zip(scores["f1"], scores["support"])) / len(rows),
        per_label_precision=dict(zip(labels, scores["precision"])),
        per_label_recall=dict(zip(labels, scores["recall"])),
        per_label_support=dict(zip(labels, scores["support"])),
        examples_read=len(opts.examples or ()),
        method_reason=kept_zero_shot(model, opts) if model else "",
    )
