"""Evaluating classify on labelled data: accuracy, macro- and weighted F1, per-label precision, recall,
F1 and support (as scikit-learn's classification_report), a confusion matrix and throughput; with
multi_label, each text's set of labels: per-label and micro, macro, weighted and samples averages,
subset accuracy and Hamming loss (as scikit-learn computes them)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable

from .errors import AigcError, BadInputError, UnknownLabelError, option

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


@dataclass
class MultiLabelReport:
    """Each text's predicted set of labels (those scoring at least `threshold`) against its true set,
    as scikit-learn's `classification_report`, `accuracy_score` (`subset_accuracy`: the whole set
    right), `hamming_loss` (the share of text-label pairs wrong) and `multilabel_confusion_matrix`
    (`per_label_confusion`: `[[tn, fp], [fn, tp]]`) count them, 0 where undefined (`zero_division=0`).
    micro: over all text-label pairs; macro: each label's mean; weighted: by support; samples: each text's mean."""

    examples: int
    labels: list[str]
    subset_accuracy: float
    hamming_loss: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    samples_precision: float
    samples_recall: float
    samples_f1: float
    per_label_precision: dict[str, float]
    per_label_recall: dict[str, float]
    per_label_f1: dict[str, float]
    per_label_support: dict[str, int]  # the data's texts with each label
    per_label_confusion: dict[str, list[list[int]]]
    examples_per_second: float
    method: str
    calibration: str
    threshold: float
    examples_read: int = 0
    method_reason: str = ""
    multi_label: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_labelled(path: str | Path, field: str | None = None, label_field: str | None = None, labels: Collection[str] = (), one_label: str = "give one label per text", input_format: str | None = None, multi_label: bool = False) -> list[tuple[str, Any]]:
    """`(text, label)` rows of a labelled data file. A .tsv file (or - for stdin) is read as examples are
    (`text<TAB>label` lines, an optional header; `labels`, the names the data may use, tell a
    header), unless `field` or `label_field` names its columns; then, and for .jsonl (.ndjson) and
    .csv, the rows are read by `read_table`, each text from the column (JSON key) `field` and its
    label from `label_field` (known names where not given). `input_format` (tsv, csv or jsonl)
    names the format of stdin or of a file whatever its name (a pipe, `<(cut -f2,3 x.tsv)`). A text
    of several labels is an error saying `one_label` (what to do instead). With `multi_label`, rows
    are `(text, [label, ...])`: a label cell's names comma-separated (a JSON list), none for an empty cell."""
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
        found = load_examples("-" if stdin else path, "" if multi_label else one_label, kind="data file", labels=labels, unlabelled=multi_label)
    else:
        table = read_table("-" if stdin else path, field, label_field, (option("field"), option("label_field")), input_format)
        found = checked(STDIN if stdin else str(path), table, "" if multi_label else one_label, "data file", ROW_FIX, unlabelled=multi_label)
    return found if multi_label else [(text, names[0]) for text, names in found]


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 of these counts, 0 where undefined (as scikit-learn's `zero_division=0`)."""
    return (tp / (tp + fp), tp / (tp + fn), 2 * tp / (2 * tp + fp + fn)) if tp else (0.0, 0.0, 0.0)


def per_label(confusion: list[list[int]]) -> dict[str, list]:
    """Each label's precision, recall, F1 (`prf`) and support (its true texts)."""
    found: dict[str, list] = {"precision": [], "recall": [], "f1": [], "support": []}
    for k in range(len(confusion)):
        tp = confusion[k][k]
        support = sum(confusion[k])
        for name, figure in zip(("precision", "recall", "f1"), prf(tp, sum(row[k] for row in confusion) - tp, support - tp)):
            found[name].append(figure)
        found["support"].append(support)
    return found


def numbered(labels: Iterable[str]) -> list[str]:
    """The labels in number order where all are numbers, as HF datasets store a ClassLabel (0, 1, ...); else []."""
    found = set(labels)
    return sorted(found, key=int) if all(label.isdecimal() for label in found) else []


def row_labels(rows: list[tuple[str, Any]], multi_label: bool) -> list[list[str]]:
    """Each row's label names: its one label, or with `multi_label` its list; a row of the other kind is a `BadInputError`."""
    found = []
    for number, (_, label) in enumerate(rows, 1):
        if multi_label and not isinstance(label, (list, tuple)):
            raise BadInputError(f"text {number}'s labels are a {type(label).__name__}; with {option('multi_label', True)} each text has a list of labels (an empty one where none applies)")
        if not multi_label and not isinstance(label, str):
            raise BadInputError(f"text {number}'s label is a {type(label).__name__}; give one label (a str) per text, or evaluate with {option('multi_label', True)}")
        found.append(list(label) if multi_label else [label])
    return found


def checked_labels(opts, rows: list[tuple[str, Any]]) -> list[str]:
    """The label names `opts` classify into; a row's label not among them is an `UnknownLabelError`."""
    from .generators.classify import case_hint

    labels = [label.name for label in opts.parsed]
    names = [name for found in row_labels(rows, opts.multi_label) for name in found]
    unknown = sorted({name for name in names if name not in labels})
    if unknown:
        numbers = numbered(names)
        names_of = json.dumps(labels, ensure_ascii=False)
        program = f"map({names_of}[tonumber])" if opts.multi_label else f"{names_of}[.]"  # a list's numbers are strings
        hint = (
            f"; its labels are numbers: give each its name, as {option('labels', json.dumps(','.join(f'{n}={name}' for n, name in zip(numbers, labels if len(labels) == len(numbers) else ['NAME'] * len(numbers))), ensure_ascii=False))} does, "
            f"or put the names in the data, for a .jsonl as `jq -c '.label |= {program}'` does (the names in the order of the numbers)"
        ) if numbers else ""
        raise UnknownLabelError(f"the data uses label{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}, not among {', '.join(labels)}{hint}{case_hint(unknown, labels)}")
    return labels


def prediction(number: int, text: str, truth: str, result: dict[str, Any]) -> dict[str, Any]:
    """One row's prediction: its position among the data's texts (1 for the first, as errors name
    it), text, true label, predicted label, whether they match, and the label scores."""
    return {"number": number, "text": text, "label": truth, "predicted": result["label"], "correct": result["label"] == truth, "scores": result.get("scores", {})}


def predicted_set(number: int, text: str, truth: list[str], result: dict[str, Any]) -> dict[str, Any]:
    """`prediction` with multi_label: the true `labels` as the data gives them, the `predicted` ones
    (likeliest first, as classify gives them), and whether the two sets are the same."""
    return {"number": number, "text": text, "labels": truth, "predicted": result["labels"], "correct": set(result["labels"]) == set(truth), "scores": result.get("scores", {})}


def multi_label_scores(labels: list[str], truth: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """`MultiLabelReport`'s figures for each text's true and predicted label names, in `labels` order."""
    ratio = lambda part, whole: part / whole if whole else 0.0  # noqa: E731 - zero_division=0
    texts = len(truth)
    counts = {name: [0, 0, 0] for name in labels}  # tp, fp, fn
    samples = [0.0, 0.0, 0.0]
    for true, guess in zip(map(set, truth), map(set, predicted)):
        for name in true & guess:
            counts[name][0] += 1
        for name in guess - true:
            counts[name][1] += 1
        for name in true - guess:
            counts[name][2] += 1
        hits = len(true & guess)
        samples = [total + figure for total, figure in zip(samples, prf(hits, len(guess) - hits, len(true) - hits))]
    figures = {name: prf(*counted) for name, counted in counts.items()}
    precision, recall, f1 = ({name: found[k] for name, found in figures.items()} for k in range(3))
    support = {name: tp + fn for name, (tp, _, fn) in counts.items()}
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    found: dict[str, Any] = {
        "subset_accuracy": ratio(sum(set(t) == set(p) for t, p in zip(truth, predicted)), texts),
        "hamming_loss": ratio(fp + fn, texts * len(labels)),
        **dict(zip(("micro_precision", "micro_recall", "micro_f1"), prf(tp, fp, fn))),
    }
    for name, figures in (("precision", precision), ("recall", recall), ("f1", f1)):
        found[f"macro_{name}"] = ratio(sum(figures.values()), len(labels))
        found[f"weighted_{name}"] = ratio(sum(figures[label] * support[label] for label in labels), sum(support.values()))
    found.update(samples_precision=ratio(samples[0], texts), samples_recall=ratio(samples[1], texts), samples_f1=ratio(samples[2], texts))
    found.update(per_label_precision=precision, per_label_recall=recall, per_label_f1=f1, per_label_support=support)
    found["per_label_confusion"] = {name: [[texts - tp - fp - fn, fp], [fn, tp]] for name, (tp, fp, fn) in counts.items()}
    return found


def evaluate_classify(generator, rows: list[tuple[str, Any]], options: dict[str, Any], *, predictions: list[dict[str, Any]] | None = None) -> ClassifyReport | MultiLabelReport:
    """Classify each `(text, label)` row with `options` (the generator's `progress` told of the texts
    classified) and compare with its label. `predictions` (keyword only: an older call passing a
    progress callback fourth fails rather than misbinds), a list, receives each row's prediction
    as the figures count it, in order: `prediction`'s fields.
    With `multi_label` in `options`, each row is `(text, [label, ...])` (an empty list: no label
    applies), and the report a `MultiLabelReport` (predictions: `predicted_set`'s fields).

    Fitting on `--examples` happens before the clock starts: texts/s is classification (and calibration) only.
    """
    from .generators.classify_examples import kept_zero_shot

    if not rows:  # else a report of zeros, or with one label per text a ZeroDivisionError
        raise BadInputError("there are no labelled texts to evaluate; give one (text, label) row at least")
    opts = generator.validate(options)
    labels = checked_labels(opts, rows)
    generator.prepare(options)
    model = generator.example_model(opts) if opts.examples else None
    started = time.perf_counter()
    try:
        results = generator.classify_many([t for t, _ in rows], **options)
    except AigcError as exc:
        if exc.index is not None:
            exc.at = f"text {exc.index + 1}"
        raise
    seconds = time.perf_counter() - started
    if predictions is not None:
        made = predicted_set if opts.multi_label else prediction
        predictions += [made(number, text, truth, result) for number, ((text, truth), result) in enumerate(zip(rows, results), 1)]
    common = {
        "examples": len(rows),
        "labels": labels,
        "examples_per_second": len(rows) / seconds if seconds else 0.0,
        "method": results[-1]["method"],
        "calibration": results[-1]["calibration"],
        "examples_read": len(opts.examples or ()),
        "method_reason": kept_zero_shot(model, opts) if model else "",
    }
    if opts.multi_label:
        figures = multi_label_scores(labels, [list(truth) for _, truth in rows], [result["labels"] for result in results])
        return MultiLabelReport(**common, **figures, threshold=opts.threshold)
    confusion = [[0] * len(labels) for _ in labels]
    for (_, truth), result in zip(rows, results):
        confusion[labels.index(truth)][labels.index(result["label"])] += 1
    scores = per_label(confusion)
    return ClassifyReport(
        **common,
        accuracy=sum(confusion[k][k] for k in range(len(labels))) / len(rows),
        macro_f1=sum(scores["f1"]) / len(labels),
        confusion=confusion,
        per_label_f1=dict(zip(labels, scores["f1"])),
        weighted_f1=sum(f * n for f, n in zip(scores["f1"], scores["support"])) / len(rows),
        per_label_precision=dict(zip(labels, scores["precision"])),
        per_label_recall=dict(zip(labels, scores["recall"])),
        per_label_support=dict(zip(labels, scores["support"])),
    )
