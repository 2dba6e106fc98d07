"""Hugging Face hub datasets (optional ``datasets`` package): names, GLUE's columns, split tables.

``glue/sst2`` loads as ``load_dataset("glue", "sst2")``, ``owner/name/config`` as
``load_dataset("owner/name", "config")``; every split becomes a :class:`~.tables.Table` named
``task[split]`` in messages.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from ...config import DataConfig
from .examples import DataError, TaskData
from .labels import Columns, LabelMap, Rows, check_classes, derive_labels, table_rows, to_examples
from .splits import fill_splits
from .tables import Table

__all__ = ["HUB_NAME", "hub_pair_tables", "load_hub"]

HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*){0,2}")
_DEFAULTS = DataConfig()
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


def _hub_columns(cfg: DataConfig, path: str, config: str | None) -> Columns:
    """The configured columns, with GLUE's own column names where the user kept the defaults."""
    known = _GLUE_COLUMNS.get(config or "") if path.rsplit("/", 1)[-1] == "glue" else None
    if known is None:
        return Columns(cfg.text_column, cfg.text_pair_column, cfg.label_column)
    text = known[0] if cfg.text_column == _DEFAULTS.text_column else cfg.text_column
    pair = known[1] if cfg.text_pair_column is None else cfg.text_pair_column
    return Columns(text, pair, cfg.label_column)


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


def _found_splits(dataset: Any, task: str) -> dict[str, str | None]:
    """The dataset's train, validation and test split names (None where it has none)."""
    names = list(dataset.keys())
    if "train" not in names:
        raise DataError(
            f"the Hugging Face dataset {task!r} has no 'train' split (splits: {', '.join(names)}); "
            "use local files via data.train_file"
        )
    return {
        "train": "train",
        "validation": next((s for s in _VALIDATION_SPLITS if s in names), None),
        "test": next((s for s in _TEST_SPLITS if s in names), None),
    }


def _hub_table(dataset: Any, task: str, split: str, cols: Columns) -> Table:
    names = list(dataset[split].column_names)
    wanted = [c for c in (cols.text, cols.pair, cols.label) if c in names]
    return Table(f"{task}[{split}]", names, {c: list(dataset[split][c]) for c in wanted})


def _hub_labels(dataset: Any, rows: Rows, label_column: str) -> LabelMap:
    """The dataset's own class names (a ClassLabel feature) when it has them, else derived from rows."""
    feature = getattr(dataset["train"], "features", {}).get(label_column)
    names = getattr(feature, "names", None)
    if not names:
        return derive_labels(rows)
    return LabelMap([str(n) for n in names], {str(i): i for i in range(len(names))}, integer=True)


def load_hub(cfg: DataConfig, seed: int) -> TaskData:
    """A labelled Hugging Face dataset; GLUE's unlabelled test splits are replaced (see `load_task`)."""
    task = cfg.task
    dataset = _load_dataset(task)
    found = _found_splits(dataset, task)
    cols = _hub_columns(cfg, *_hub_args(task))
    train_rows = table_rows(_hub_table(dataset, task, "train", cols), cols)
    labels = _hub_labels(dataset, train_rows, cols.label)
    train = to_examples(train_rows, labels)
    check_classes(train, labels, train_rows.source, cols.label)
    rows = {
        kind: table_rows(_hub_table(dataset, task, s, cols), cols)
        for kind, s in found.items()
        if s and kind != "train"
    }
    notes = []
    if "test" in rows and _UNLABELLED in rows["test"].labels and labels.key(_UNLABELLED) not in labels.ids:
        del rows["test"]
        notes.append(f"the test split of {task} is unlabelled (label -1)")
    evaluation = {kind: to_examples(r, labels) for kind, r in rows.items()}
    split_map, filled = fill_splits(train, evaluation.get("validation"), evaluation.get("test"), seed)
    return TaskData(task, split_map, labels.names, cols.pair is not None, notes + filled)


def hub_pair_tables(cfg: DataConfig) -> dict[str, Table]:
    """The source / target tables (`data.text_column`, `data.target_column`) of each available split."""
    dataset = _load_dataset(cfg.task)
    cols = Columns(cfg.text_column, None, cfg.target_column)
    found = _found_splits(dataset, cfg.task)
    return {kind: _hub_table(dataset, cfg.task, s, cols) for kind, s in found.items() if s}
