"""Source / target text pairs of sequence-to-sequence tasks, from local files or a hub dataset."""

from __future__ import annotations

from ...config import DataConfig
from .examples import DataError, TextPairs
from .hub import HUB_NAME, hub_pair_tables
from .labels import texts
from .splits import fill_splits, limit_splits
from .tables import Table, read_table

__all__ = ["load_pairs_file", "load_text_pairs"]


def _pair_tables(cfg: DataConfig) -> tuple[str, dict[str, Table]]:
    """The task's name and the raw table of each available split, from local files or the hub."""
    if cfg.train_file is not None:
        files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        tables = {k: read_table(f, f"data.{k}_file") for k, f in files.items() if f is not None}
        return cfg.train_file, tables
    if cfg.task == "rotten_tomatoes" or not HUB_NAME.fullmatch(cfg.task):
        raise DataError(
            f"data.task_type 'seq2seq' reads source/target pairs from data.train_file or a Hugging Face "
            f"dataset such as 'abisee/cnn_dailymail/3.0.0', got data.task {cfg.task!r}; for the built-in "
            "reviews use data.task_type 'classification' (text-to-label)"
        )
    return cfg.task, hub_pair_tables(cfg)


def _pairs(table: Table, text_column: str, target_column: str) -> list[tuple[str, str]]:
    sources = texts(table, text_column, "data.text_column")
    return list(zip(sources, texts(table, target_column, "data.target_column"), strict=True))


def load_pairs_file(
    file: str, text_column: str = "text", target_column: str = "target"
) -> list[tuple[str, str]]:
    """The (source, target) pairs of one local file, in file order."""
    return _pairs(read_table(file, "--data"), text_column, target_column)


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
    splits, notes = fill_splits(pairs["train"], pairs.get("validation"), pairs.get("test"), seed)
    return TextPairs(name, splits, notes + limit_splits(splits, cfg, seed))
