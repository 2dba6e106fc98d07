"""Labelled text-classification tasks: local files, the built-in Rotten Tomatoes, hub datasets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...config import DataConfig
from .builtin import ROTTEN_TOMATOES_LABELS, rotten_tomatoes_splits
from .examples import DataError, Example, TaskData
from .hub import HUB_NAME, load_hub
from .labels import Columns, LabelMap, check_classes, derive_labels, table_rows, to_examples
from .splits import fill_splits, limit_splits
from .tables import read_table

__all__ = ["load_labelled_file", "load_task"]


def _load_local(cfg: DataConfig, train_file: str, seed: int) -> TaskData:
    cols = Columns(cfg.text_column, cfg.text_pair_column, cfg.label_column)
    train_rows = table_rows(read_table(train_file, "data.train_file"), cols)
    labels = derive_labels(train_rows)
    train = to_examples(train_rows, labels)
    check_classes(train, labels, train_rows.source, cols.label)
    validation, test = (
        None if file is None else to_examples(table_rows(read_table(file, key), cols), labels)
        for file, key in ((cfg.validation_file, "data.validation_file"), (cfg.test_file, "data.test_file"))
    )
    splits, notes = fill_splits(train, validation, test, seed)
    name = Path(train_file).name  # an export's metadata names the file, not where it lay on this machine
    return TaskData(name, splits, labels.names, cols.pair is not None, notes)


def _load_builtin() -> TaskData:
    return TaskData("rotten_tomatoes", rotten_tomatoes_splits(), list(ROTTEN_TOMATOES_LABELS), is_pair=False)


def _limited(data: TaskData, cfg: DataConfig, seed: int | None) -> TaskData:
    data.notes.extend(limit_splits(data.splits, cfg, seed))
    return data


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
        return _limited(_load_local(cfg, cfg.train_file, seed), cfg, seed)
    if cfg.task == "rotten_tomatoes":
        return _limited(_load_builtin(), cfg, seed=None)
    if not HUB_NAME.fullmatch(cfg.task):
        raise DataError(
            f"data.task {cfg.task!r} is neither a built-in task ('rotten_tomatoes') nor a Hugging Face "
            "dataset name such as 'glue/sst2' or 'imdb'; fix data.task or set data.train_file to a local file"
        )
    return _limited(load_hub(cfg, seed), cfg, seed)


def load_labelled_file(
    file: str,
    label_names: Sequence[str],
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
) -> list[Example]:
    """Examples of one local file, with labels mapped onto a trained model's `label_names`."""
    cols = Columns(text_column, text_pair_column, label_column)
    return to_examples(table_rows(read_table(file, "--data"), cols), LabelMap.of_names(label_names))
