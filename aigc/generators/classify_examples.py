"""Labelled examples for classify: reading them, and what is fitted on them (cached per examples file).

`auto` fits a linear probe on the model's own hidden-state embeddings that learns a correction to
the label scores, where cross-validation on the examples themselves shows it clearly more accurate
than plain zero-shot label scoring: of the examples only one of the two gets right, the probe must
get more than luck would (`_clearly_better`; what the rule costs is measured in the README). The
calibration is picked on the examples by a standard error:
the content-free prior, unless the examples' own mean label distribution (an in-domain prior that
needs no labels) clearly does better. No calibration is used only when
asked: picked on a few examples, it won small draws by luck and lost up to 0.13 on the rest. `demos` instead shows
the examples most similar to each input (balanced per label, most similar last) in the prompt.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import math
import os
import re
import stat as stat_module
import time
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection

from .. import config
from ..errors import AigcError, AigcNote, AigcWarning, BadInputError, option
from ..probe import LinearProbe, load_state, matrix, save_state, similarities
from ..textio import STDIN, numbered_lines, read_document, unquote
from ..writing import write_atomic

if TYPE_CHECKING:
    from .classify import ClassifyGenerator, ClassifyOptions

METHODS = ("auto", "zero-shot", "probe", "demos")
DEMOS_PER_LABEL = 2
FOLDS = 5
L2 = (0.1, 1.0)  # probe regularization strengths tried by cross-validation
AUTO_CALIBRATIONS = ("content-free", "examples")  # what `auto` picks from (the first unless the other beats it)
FEWEST_TO_SWITCH = 8  # examples below which `auto` keeps content-free label scoring: 4 right of 4 is luck
SIGNIFICANCE = 0.05  # the sign test's level at which the probe's wins over zero-shot are no luck
CHUNK = 32  # examples scored per progress step
PROBE_STAGE = "fitting the probe (cross-validation)"  # reported as each probe is fitted, as embedding is
PROBES_STAGE = "fitting a probe per label"  # the same, for multi-label
VERSION = 10  # bump when what is cached changes (9: auto's calibration rule; 10: its probe rule)
FITS_ON_DISK = 64  # cached fits kept on disk (a fit is about 20 KB per example)
PRIORS_ON_DISK = 256  # cached content-free priors kept on disk (a few hundred bytes each)

Example = tuple[str, list[str]]  # text, label names


def load_examples(source: str | Path | list, one_label: str = "", kind: str = "examples file", labels: Collection[str] = (), unlabelled: bool = False) -> list[Example]:
    """Examples from a TSV file (`text<TAB>label`, labels comma-separated for multi-label; an optional
    header line, see `_is_header`, or `label<TAB>text` for a file with the label first), from a .csv
    or .jsonl (.ndjson) file (`read_table`'s columns) or from `(text, label)` pairs. An empty text or label is an error naming its line; so is a text of several
    labels when `one_label` is given (it says what to do instead); `unlabelled`: an empty label cell
    (a JSON `[]`) is a text of no label, not an error; `kind` names the file in errors;
    `labels`, the label names the examples may use, tells a header of any column names. A file is
    read once while its size and modification time stay the same (`aigc batch` validates the options
    on every row)."""
    return read_examples(source, one_label, kind, labels, unlabelled)[0]


def read_examples(source: str | Path | list, one_label: str = "", kind: str = "examples file", labels: Collection[str] = (), unlabelled: bool = False) -> tuple[list[Example], str | None]:
    """`load_examples`, and for a file kept read, the examples as JSON (as the fit's cache key holds them), made once."""
    if not isinstance(source, (str, Path)):
        return _examples(source, one_label, kind, unlabelled), None
    key = _file_key(source, one_label, kind, tuple(labels), unlabelled)
    entry = _read.get(key)
    if entry is None:
        examples = _read_file(source, one_label, kind, labels, unlabelled)
        if key is None or not _settled(key):
            return examples, None
        entry = _read[key] = examples, json.dumps(examples, ensure_ascii=False)
        for old in list(_read)[:-FILES_IN_MEMORY]:
            _read.pop(old, None)
    return [(text, list(names)) for text, names in entry[0]], entry[1]


def _examples(source: Any, one_label: str, kind: str, unlabelled: bool = False) -> list[Example]:
    """Examples given as `(text, label)` pairs."""
    if not isinstance(source, (list, tuple)):
        raise BadInputError(f"examples must be a TSV file or a list of (text, label) pairs, got {type(source).__name__}")
    for number, row in enumerate(source):
        if not (isinstance(row, (list, tuple)) and len(row) == 2 and isinstance(row[0], str) and (isinstance(row[1], str) or (isinstance(row[1], (list, tuple)) and all(isinstance(n, str) for n in row[1])))):
            shown = repr(row) if len(repr(row)) <= 60 else repr(row)[:57] + "..."
            raise BadInputError(f"example {number} must be a (text, label) pair of strings (label: a string or a list of them), got {shown}")
    return checked("the examples", [(f"example {number}", text, label) for number, (text, label) in enumerate(source)], one_label, kind, unlabelled=unlabelled)


FILES_IN_MEMORY = 8  # examples files kept read
_read: dict[tuple, tuple[list[Example], str]] = {}


def _file_key(source: str | Path, *read_as: Any) -> tuple | None:
    """What identifies a regular file's contents as read (None for stdin, a pipe or a missing file)."""
    try:
        stat = os.stat(source)
    except (OSError, ValueError):  # missing, or a name no file can have: reading it says so
        return None
    if str(source) == "-" or not stat_module.S_ISREG(stat.st_mode):
        return None
    return (os.path.abspath(source), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, *read_as)


def _settled(key: tuple) -> bool:
    """Whether the file `key` names was last changed over two seconds ago: a change within the file
    system's timestamp resolution of the one read could leave its size and modification time as they were."""
    return time.time_ns() - key[4] > 2_000_000_000  # key[4]: its modification time


def _read_file(source: str | Path, one_label: str, kind: str, labels: Collection[str], unlabelled: bool = False) -> list[Example]:
    if str(source) != "-" and Path(source).suffix.lower() in TABLES:
        return checked(str(source), read_table(source), one_label, kind, ROW_FIX, unlabelled)
    rows = []
    lines = list(numbered_lines(read_document(str(source), lines=True, expected="a text<TAB>label TSV file", kind=kind)))
    named = bool(lines) and _label_first(lines[0][1])  # a header says so
    label_first = named or (bool(lines) and _labels_lead([line for _, line in lines], labels))
    if label_first and not named:
        warnings.warn(f"read {STDIN if str(source) == '-' else source} as label<TAB>text (its first column holds the labels)", AigcNote, stacklevel=2)
    for number, line in lines:
        label, tab, text = line.partition("\t") if label_first else line.rpartition("\t")[::-1]
        if not tab:
            raise BadInputError(f"{source}:{number}: expected text<TAB>label{_read_as_tsv(source)}")
        if "\t" in text:
            raise BadInputError(f"{source}:{number}: {line.count(chr(9)) + 1} columns; give two, text<TAB>label (e.g. `cut -f2,3` drops an id column)")
        rows.append((f"{source}:{number}", unquote(text), unquote(label)))
    if rows and _is_header(rows[0][1], rows[0][2], [label for _, _, label in rows[1:]], labels):
        where, text, label = rows.pop(0)
        if not _named_columns(text, label):  # told apart from an example only by its label
            warnings.warn(f"{where}: {text}<TAB>{label} is taken as column names, as {label!r} is none of the labels; if it is an example, list its label", AigcWarning, stacklevel=2)
    return checked(str(source), rows, one_label, kind, unlabelled=unlabelled)


def _column(path: str | Path, found: list[str], given: str | None, default: str, known: set[str], flag: str | None) -> str:
    """The column `given`, else `default` or the one known name (`known`) among the columns `found`."""
    how = f"choose one with {flag}" if flag else f"name it {default!r}"
    if given or default in found:
        if (given or default) in found:
            return given or default
        raise BadInputError(f"{path}: no row has the column {given!r}; its columns: {', '.join(map(repr, found)) or 'none'}; {how}")
    others = [name for name in found if name.strip().lower() in known]
    if len(others) == 1:
        return others[0]
    which = f"{' and '.join(map(repr, others))} could each be it" if others else f"its columns: {', '.join(map(repr, found)) or 'none'}"
    raise BadInputError(f"{path}: no row has the column {default!r}; {which}; {how}")


TABLES = (".csv", ".jsonl", ".ndjson")  # labelled files read by their columns


def read_table(path: str | Path, field: str | None = None, label_field: str | None = None, flags: tuple[str, str] | None = None, input_format: str | None = None) -> list[tuple[str, str, str | list[str]]]:
    """`(where, text, label)` of each row of a .csv or .jsonl (.ndjson) file, read as `aigc batch` reads
    rows: the text from the column (JSON key) `field` and the label from `label_field`. A column not
    given is `text` (`label`) where a row has it, else the one other known name of such a column the
    rows have (`review`, `sentiment`). A label is a string, a whole number or a JSON list of strings.
    `flags` are the options that choose the columns, named in errors (else: rename the columns);
    `input_format` as for `read_rows` (stdin, a file named otherwise)."""
    from ..batch_inputs import add_path, columns, json_kind, read_rows

    rows = read_rows(path, field=field or "text", unique_ids=False, input_format=input_format)
    for row in rows if label_field else ():  # a dotted name reads a nested label, as `field` does a text
        add_path(row.fields, label_field)
    bad = next((row for row in rows if row.error), None)
    if bad:  # first: a row that does not parse has no columns to look for
        raise BadInputError(f"{path}: row {bad.number}: {bad.error}")
    found = columns(rows)
    field = _column(path, found, field, "text", TEXT_COLUMNS, flags and flags[0])
    label_field = _column(path, found, label_field, "label", LABEL_COLUMNS, flags and flags[1])
    table = []
    for row in rows:
        where = f"{path}: row {row.number}"
        text, label = row.fields.get(field), row.fields.get(label_field)
        for name, value in ((field, text), (label_field, label)):
            if value is None:
                raise BadInputError(f"{where} has no {name!r}; give every row its text and label")
        if not isinstance(text, str):
            raise BadInputError(f"{where}: the text ({field!r}) must be a string, not {json_kind(text)}")
        if isinstance(label, bool) or not (isinstance(label, (str, int)) or (isinstance(label, list) and all(isinstance(name, str) for name in label))):
            raise BadInputError(f"{where}: the label ({label_field!r}) must be a string, a whole number or a list of strings, not {json_kind(label)}")
        table.append((where, text, label if isinstance(label, list) else str(label)))
    return table


ROW_FIX = "give every row its text and label"  # for an empty cell of a table (`read_table`)


def checked(name: str, rows: list[tuple[str, str, Any]], one_label: str, kind: str, fix: str = "give text<TAB>label", unlabelled: bool = False) -> list[Example]:
    """The examples of `(where, text, label)` rows; an empty text, or label unless `unlabelled`, is an error saying `fix`."""
    examples = [_example(where, text, label, one_label, fix, unlabelled) for where, text, label in rows]
    if not examples:
        raise BadInputError(f"{name} holds no {'examples' if kind == 'examples file' else 'texts'}; write one text<TAB>label per line")
    _warn_of_case_twins(name, [n for _, names in examples for n in names])
    return examples


def _warn_of_case_twins(source: str, labels: list[str]) -> None:
    """Labels that differ only in case (`positive`, `Positive`) are two labels: most likely a typo."""
    spellings: dict[str, list[str]] = {}
    for label in dict.fromkeys(labels):
        spellings.setdefault(label.casefold(), []).append(label)
    for twins in (found for found in spellings.values() if len(found) > 1):
        warnings.warn(f"{source}: the labels {', '.join(map(repr, twins))} differ only in case, so they count as {len(twins)} labels; spell them alike if they are one", AigcWarning, stacklevel=2)


TEXT_COLUMNS = {"text", "sentence", "review", "document", "content", "body", "tweet", "comment", "message", "input", "question", "title", "headline", "article", "utterance", "query", "x"}
LABEL_COLUMNS = {"label", "labels", "class", "category", "categories", "sentiment", "topic", "target", "intent", "tag", "tags", "gold", "y"}


def _is_header(text: str, label: str, other_labels: list[str], labels: Collection[str] = ()) -> bool:
    """A first line that names the columns, with a label no other line uses: one word on the text
    side and a known column name on either side (`text<TAB>label`, `review<TAB>sentiment`, `x<TAB>y`);
    or, given the `labels` the examples may use, cells of one to three words that read as column
    names (`sms<TAB>kind`) and a label that is none of them nor a likely misspelling of one (which
    is left to be refused as an unknown label). Without `labels`, other first lines are examples."""
    if label in other_labels:
        return False
    if _named_columns(text, label):
        return True
    column = label.strip().lower()
    known = [known.casefold() for known in labels]
    return bool(known) and all(COLUMN_NAME.fullmatch(cell.strip()) for cell in (text, label)) and not difflib.get_close_matches(column, known, n=1, cutoff=0.75)


def _named_columns(text: str, label: str) -> bool:
    """One word on the text side and a known column name on either side (`text<TAB>label`, `x<TAB>y`)."""
    name, column = text.strip().lower(), label.strip().lower()
    return len(name.split()) == 1 and (name in TEXT_COLUMNS or column in LABEL_COLUMNS)


COLUMN_NAME = re.compile(r"[^\W\d][\w.-]*(?: [\w.-]+){0,2}")  # up to three words, the first not a number


def _read_as_tsv(source: str | Path) -> str:
    """For a file named as JSON, that it is read as TSV all the same."""
    suffix = Path(source).suffix.lower()
    return "; the file is read as TSV (a tab between each text and its label), not as JSON (.jsonl: one object a line)" if suffix == ".json" else ""


def _label_first(line: str) -> bool:
    """A first line that names the label column first (`label<TAB>text`, `sentiment<TAB>review`)."""
    cells = [cell.strip().lower() for cell in line.split("\t")]
    return len(cells) == 2 and cells[0] in LABEL_COLUMNS and cells[1] in TEXT_COLUMNS


FEWEST_TO_TELL = 4  # lines (after a possible header) below which a file without --labels is read text first


def _labels_lead(lines: list[str], labels: Collection[str] = ()) -> bool:
    """A headerless file of `label<TAB>text` lines: given the `labels`, the first cells are all among
    them and the last cells are not; without, the first cells are a few short values, each on several
    lines, and the last cells varied, longer texts that are not so. The first line may be a header;
    a file it cannot tell is read text first."""
    rows = [line.split("\t") for line in lines]
    if any(len(row) != 2 for row in rows[1:] or rows):
        return False
    if labels:
        known = {name.casefold() for name in labels}
        body = rows[1:] or rows
        return _all_named([first for first, _ in body], known) and not _all_named([last for _, last in body], known)
    return any(_looks_label_first(body) for body in (rows, rows[1:]) if len(body) >= FEWEST_TO_TELL and all(len(row) == 2 for row in body))


def _looks_label_first(rows: list[list[str]]) -> bool:
    firsts, lasts = [row[0].strip() for row in rows], [row[1].strip() for row in rows]
    return _label_like(firsts) and not _label_like(lasts) and _words(lasts) > _words(firsts)


def _all_named(cells: list[str], known: set[str]) -> bool:
    """Whether every name in `cells` is `known` (an empty cell: a text of no label, `unlabelled`)."""
    return all(label_name(name).casefold() in known for cell in cells for name in cell.split(",") if name.strip())


def _label_like(cells: list[str]) -> bool:
    """Cells of a few short values (three words at most), each used at least twice."""
    counts = Counter(cells)
    return len(counts) <= len(cells) / 2 and all(count >= 2 and len(cell.split()) <= 3 for cell, count in counts.items())


def _words(cells: list[str]) -> float:
    return sum(len(cell.split()) for cell in cells) / len(cells)


def label_name(text: str) -> str:
    """A label's name as labels are compared and keyed: stripped, in Unicode's composed form (NFC),
    so a name typed on Linux and one a Mac wrote decomposed (NFD: "e" and a combining accent) are one."""
    return unicodedata.normalize("NFC", text.strip())


def _names(label: str | list[str]) -> list[str]:
    return label.split(",") if isinstance(label, str) else list(label)


def _example(where: str, text: str, label: str | list[str], one_label: str, fix: str, unlabelled: bool = False) -> Example:
    """One example, its text and label names stripped; `where` names it in errors (`file.tsv:3`)."""
    names = [label_name(n) for n in _names(label) if n.strip()]
    if not text.strip():
        raise BadInputError(f"{where}: the text is empty; {fix}")
    if not names and not unlabelled:
        raise BadInputError(f"{where}: the label is empty; {fix}")
    if one_label and len(names) > 1:
        raise BadInputError(f"{where}: the text has several labels ({', '.join(names)}); {one_label} (a comma in a label cell separates labels)")
    return text.strip(), names


@dataclass
class ExampleModel:
    """What classify learned from the examples."""

    method: str  # zero-shot, probe or demos
    calibration: str  # off, content-free or examples
    prior: list[float]  # the examples' mean label distribution (log-probabilities)
    names: list[str]
    texts: list[str]
    targets: list[list[int]]  # label indices per example
    embeddings: Any  # tensor [examples, width]
    cv: dict[str, float] = field(default_factory=dict)  # cross-validated accuracy per candidate
    discordant: tuple[int, int] = (0, 0)  # examples only the probe kept got right (cross-validated), and only zero-shot
    probes: list[LinearProbe] = field(default_factory=list)  # one, or one per label (multi-label)

    def predict(self, embeddings: list[list[float]], logits: list[list[float]]) -> list[list[float]]:
        """The probe's logits, starting from the label scores."""
        return self.probes[0].predict(embeddings, logits)

    def predict_multi(self, embeddings: list[list[float]], logits: list[list[float]]) -> list[list[float]]:
        """Per label: the probe's log-odds, starting from the zero-shot log-odds."""
        columns = []
        for j, probe in enumerate(self.probes):
            pairs = probe.predict(embeddings, [[0.0, row[j]] for row in logits])
            columns.append([yes - no for no, yes in pairs])
        return [list(row) for row in zip(*columns)]

    def state(self) -> dict:
        return {
            "method": self.method, "calibration": self.calibration, "prior": self.prior, "names": self.names, "texts": self.texts,
            "targets": self.targets, "embeddings": self.embeddings, "cv": self.cv, "discordant": list(self.discordant),
            "probes": [p.state() for p in self.probes],
        }

    @classmethod
    def from_state(cls, state: dict) -> "ExampleModel":
        return cls(**{**state, "discordant": tuple(state["discordant"]), "probes": [LinearProbe(**p) for p in state["probes"]]})


def demonstrations(model: ExampleModel, embedding: list[float]) -> list[dict]:
    """The `DEMOS_PER_LABEL` examples of each label most similar to the input, least similar first."""
    similarity = similarities(model.embeddings, embedding)
    picked = []
    for label in range(len(model.names)):
        members = [i for i, targets in enumerate(model.targets) if label in targets]
        picked += sorted(members, key=lambda i: -similarity[i])[:DEMOS_PER_LABEL]
    picked.sort(key=lambda i: similarity[i])
    return [{"text": model.texts[i], "label": model.names[model.targets[i][0]]} for i in picked]


def _scoring_key(generator: "ClassifyGenerator", opts: "ClassifyOptions") -> tuple:
    """What the label scores depend on: the model as loaded, the prompt, the labels."""
    from .. import templates

    return (VERSION, generator.engine.name, getattr(generator.engine, "variant", ""), templates.get_template(opts.template).body, [(l.name, l.verbalizers) for l in opts.parsed], opts.aspect, opts.kind)


def cache_path(generator: "ClassifyGenerator", opts: "ClassifyOptions") -> Path:
    before = _scoring_key(generator, opts)
    examples = opts.examples_json or json.dumps(opts.examples, ensure_ascii=False)  # a file's made once
    values = [*(json.dumps(value, ensure_ascii=False) for value in before), examples, *(json.dumps(value, ensure_ascii=False) for value in (opts.method, opts.calibrate, opts.multi_label))]
    key = "[" + ", ".join(values) + "]"  # the list's JSON
    return config.cache_dir() / "classify" / (hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".pt")  # a file name in no UTF-8 as its bytes


def fit_examples(generator: "ClassifyGenerator", opts: "ClassifyOptions", path: Path) -> ExampleModel:
    """The example model for these options, from the cache file `path` when it was fitted before.
    The cache keeps the `FITS_ON_DISK` used last (a server fits every client's examples); a cache that
    cannot be written (read-only, full) is warned of, and the fit used uncached."""
    if path.exists():
        try:
            model = ExampleModel.from_state(load_state(path))
        except Exception:  # a cache file from a crashed run: fit again
            path.unlink(missing_ok=True)
        else:
            with contextlib.suppress(OSError):  # a read-only or shared cache: used as it is
                os.utime(path)  # used now: kept longest
                os.chmod(path, 0o600)  # a fit an older aigc wrote readable by all
            return model
    model = _fit(generator, opts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_state(model.state(), path)
        _prune(path.parent, "*.pt", FITS_ON_DISK)
    except OSError as exc:  # a read-only or full cache: the fit is used, not kept
        warnings.warn(
            f"cannot keep the fit of the examples in {path.parent} ({exc.strerror or exc}), so they are fitted again on each run; "
            "point AIGC_CACHE_DIR at a writable directory to keep it", AigcWarning, stacklevel=2,
        )
    return model


def prior_path(generator: "ClassifyGenerator", opts: "ClassifyOptions", inputs: tuple[str, ...]) -> Path | None:
    """The cache file of the content-free prior on `inputs` for these options; None for an engine
    whose scores are not this machine's to keep (no `variant`: a remote API, whose model can change
    behind its name; `echo` and test engines, which need none)."""
    if not getattr(generator.engine, "variant", ""):
        return None
    key = json.dumps([*_scoring_key(generator, opts), list(inputs)], ensure_ascii=False)
    return config.cache_dir() / "classify" / (hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".prior.json")


def cached_prior(path: Path | None, size: int, measure: Callable[[], list[float]]) -> list[float]:
    """The prior kept in `path` (`size` numbers), else `measure()`, then kept there (owner-readable,
    the `PRIORS_ON_DISK` used last); a cache that cannot be written is used as it is, silently: the
    prior costs a fraction of a second to measure again."""
    if path is None:
        return measure()
    try:
        prior = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(prior, list) and len(prior) == size and all(isinstance(x, float) for x in prior):
            with contextlib.suppress(OSError):  # a read-only or shared cache: used as it is
                os.utime(path)  # used now: kept longest
            return prior
    except (OSError, ValueError):  # none yet, or a damaged file: measured again
        pass
    prior = measure()
    with contextlib.suppress(OSError, AigcError):  # AigcError: write_atomic's word for a failed write
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(prior), private=True)
        _prune(path.parent, "*.prior.json", PRIORS_ON_DISK)
    return prior


def _prune(directory: Path, pattern: str, kept: int) -> None:
    """Remove all but the `kept` cache files matching `pattern` used last."""
    def used(file: Path) -> float:
        try:
            return file.stat().st_mtime
        except OSError:  # removed meanwhile
            return 0.0

    for old in sorted(directory.glob(pattern), key=used, reverse=True)[kept:]:
        old.unlink(missing_ok=True)
    for left in directory.glob("*.part"):  # a write that was killed, an hour ago or more
        if used(left) < time.time() - 3600:
            left.unlink(missing_ok=True)


def _fit(generator: "ClassifyGenerator", opts: "ClassifyOptions") -> ExampleModel:
    from .classify import log_softmax, mean_prior

    names = [label.name for label in opts.parsed]
    texts = [text for text, _ in opts.examples]
    targets = [[names.index(n) for n in labels] for _, labels in opts.examples]
    embed = getattr(generator.engine, "can_embed", True)  # a remote model's API gives no hidden states
    if not embed and opts.method in ("probe", "demos"):
        raise BadInputError(
            f"{option('method', opts.method)} needs the model's hidden states, which {generator.engine.name} does not give over its API; "
            f"use a local model, or {option('method', 'auto')} (label scores, calibrated on the examples)"
        )
    scores, embeddings = [], []
    stage = "embedding the examples" if embed else "scoring the examples"
    for start in range(0, len(texts), CHUNK):
        generator.progress(start, len(texts), stage)
        chunk_scores, chunk_embeddings = generator.score_texts(texts[start : start + CHUNK], opts, embed=embed)
        scores += chunk_scores
        embeddings += chunk_embeddings
    generator.progress(len(texts), len(texts), stage)
    prior = mean_prior(scores)
    model = ExampleModel("zero-shot", "content-free", prior, names, texts, targets, matrix(embeddings) if embed else None)
    if opts.multi_label:
        if embed:  # one probe per label; without embeddings, label scores alone
            free = generator.content_free(opts) if opts.calibrate != "off" else None
            _fit_multi(generator, opts, model, [log_softmax([s - c for s, c in zip(row, free)] if free else row) for row in scores])
        return model
    priors = {"off": None, "content-free": generator.content_free(opts), "examples": prior}
    candidates = {
        mode: [log_softmax([s - c for s, c in zip(row, base)] if base else row) for row in scores] for mode, base in priors.items()
    }
    labels = [t[0] for t in targets]
    for mode, logits in candidates.items():
        model.cv[f"zero-shot, calibration {mode}"] = _accuracy(logits, labels)
    if opts.calibrate != "auto":
        model.calibration = opts.calibrate
    else:
        best = max(AUTO_CALIBRATIONS, key=lambda m: model.cv[f"zero-shot, calibration {m}"])
        beats = _beats(model.cv[f"zero-shot, calibration {best}"], model.cv["zero-shot, calibration content-free"], len(labels))
        model.calibration = best if beats else "content-free"
    offset = candidates[model.calibration]
    if opts.method == "demos":  # its prior is measured with the demonstrations in the prompt
        model.method, model.calibration = "demos", "off" if opts.calibrate == "off" else "content-free"
    elif opts.method in ("auto", "probe") and embed and min(labels.count(i) for i in range(len(names))) >= 2:
        folds, fits = _folds(labels), len(L2) * FOLDS + 1  # a probe per fold and strength, then the one kept
        right = {}
        for done, l2 in enumerate(L2):
            step = lambda fold, before=done * FOLDS: generator.progress(before + fold, fits, PROBE_STAGE)  # noqa: E731
            right[l2] = _cross_validate(embeddings, labels, offset, len(names), l2, folds, step)
            model.cv[f"probe(l2={l2})"] = sum(right[l2]) / len(labels)
        l2 = max(L2, key=lambda value: model.cv[f"probe(l2={value})"])
        zero_shot = [_argmax(row) == label for row, label in zip(offset, labels)]
        model.discordant = (sum(p and not z for p, z in zip(right[l2], zero_shot)), sum(z and not p for p, z in zip(right[l2], zero_shot)))
        if opts.method == "probe" or _clearly_better(*model.discordant, len(labels)):
            generator.progress(fits - 1, fits, PROBE_STAGE)
            model.method = "probe"
            model.probes = [LinearProbe.fit(embeddings, labels, len(names), l2, offset)]
        generator.progress(fits, fits, PROBE_STAGE)
    elif opts.method == "probe":
        raise BadInputError(f"{option('method', 'probe')} needs at least two examples of every label")
    return model


def kept_zero_shot(model: ExampleModel, opts: "ClassifyOptions") -> str:
    """Why `auto` kept zero-shot label scoring rather than fit a probe on these examples ("" where it
    did not keep it, or was not asked to pick)."""
    if opts.method != "auto" or opts.multi_label or model.method != "zero-shot":
        return ""
    if len(model.texts) < FEWEST_TO_SWITCH:
        return f"fewer than {FEWEST_TO_SWITCH} examples, too few to show a probe does better"
    probes = [accuracy for name, accuracy in model.cv.items() if name.startswith("probe")]
    if not probes:
        return "the model gives no hidden states to fit a probe on" if model.embeddings is None else "a probe needs at least two examples of every label"
    zero_shot = model.cv[f"zero-shot, calibration {model.calibration}"]
    wins, losses = model.discordant
    return (
        f"cross-validated on the examples, a probe ({max(probes):.3f} accuracy) got {wins} right that zero-shot ({zero_shot:.3f}) got wrong "
        f"and {losses} wrong that it got right, which could be luck (a one-sided sign test at {SIGNIFICANCE:.0%})"
    )


def _fit_multi(generator: "ClassifyGenerator", opts: "ClassifyOptions", model: ExampleModel, raw: list[list[float]]) -> None:
    """One probe per label (does it apply or not), starting from its label score, when every label
    has two examples with and two without it; each fit reported to `generator.progress`."""
    if opts.method == "zero-shot":
        return
    embeddings = model.embeddings.tolist()
    probes = []
    for j in range(len(model.names)):
        present = [int(j in t) for t in model.targets]
        if min(present.count(0), present.count(1)) < 2:
            if opts.method == "probe":
                raise BadInputError(f"{option('method', 'probe')} needs two examples with and two without label {model.names[j]!r}")
            return
        generator.progress(j, len(model.names), PROBES_STAGE)
        probes.append(LinearProbe.fit(embeddings, present, 2, L2[0], [[0.0, row[j]] for row in raw]))
    generator.progress(len(model.names), len(model.names), PROBES_STAGE)
    model.method, model.probes = "probe", probes


def _folds(labels: list[int]) -> list[int]:
    """A stratified fold number for each example."""
    seen: dict[int, int] = {}
    folds = []
    for label in labels:
        folds.append(seen.get(label, 0) % FOLDS)
        seen[label] = seen.get(label, 0) + 1
    return folds


def _cross_validate(embeddings, labels, offset, classes: int, l2: float, folds: list[int], step: Callable[[int], None]) -> list[bool]:
    """Per example, whether the probe fitted on the other folds gets it right; `step(fold)` as each fold's fit starts."""
    right = [False] * len(labels)
    for fold in range(FOLDS):
        step(fold)
        train = [i for i, f in enumerate(folds) if f != fold]
        test = [i for i, f in enumerate(folds) if f == fold]
        if not test:
            continue
        probe = LinearProbe.fit([embeddings[i] for i in train], [labels[i] for i in train], classes, l2, [offset[i] for i in train])
        predicted = probe.predict([embeddings[i] for i in test], [offset[i] for i in test])
        for row, i in zip(predicted, test):
            right[i] = _argmax(row) == labels[i]
    return right


def _beats(accuracy: float, default: float, count: int) -> bool:
    """Whether an accuracy measured on `count` examples beats the default's by more than a standard
    error (the one-standard-error rule): with 16 examples, one or two lucky ones are no evidence, and
    the default (content-free calibrated label scores) cannot overfit them. Fewer than
    `FEWEST_TO_SWITCH` examples never beat it."""
    return count >= FEWEST_TO_SWITCH and accuracy > default + math.sqrt(max(default * (1 - default), 1 / count) / count)


def _clearly_better(wins: int, losses: int, count: int) -> bool:
    """Whether a candidate that alone got `wins` of `count` examples right, and the default alone
    `losses`, is better by more than luck: the examples both got right or wrong say nothing between
    them, and `wins` or more of `wins + losses` fair coin flips must be rarer than `SIGNIFICANCE`
    (a one-sided sign test). Comparing the two accuracies instead took 3 wins to 1 on 16 examples
    (and such a probe lost 0.09 on the rest); a probe 0.06 better on 500 wins 56 to 25. Fewer than
    `FEWEST_TO_SWITCH` examples never beat the default."""
    flips = wins + losses
    return count >= FEWEST_TO_SWITCH and wins > losses and sum(math.comb(flips, k) for k in range(wins, flips + 1)) / 2**flips < SIGNIFICANCE


def _argmax(row: list[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)


def _accuracy(logits: list[list[float]], labels: list[int]) -> float:
    return sum(_argmax(row) == label for row, label in zip(logits, labels)) / len(labels)
