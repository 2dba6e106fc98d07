"""Evaluation data for an exported model: a local file, or a split of a named task.

An :class:`EvalSource` says where the data is and which columns hold what; each reader returns the
kind of examples one objective scores (labelled texts, source / target pairs, causal-LM examples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...config import DataConfig, TrainConfig
from .alpaca import read_alpaca
from .classification import load_labelled_file, load_task
from .corpus import load_corpus
from .examples import DataError, Example, LmExample
from .pairs import load_pairs_file, load_text_pairs
from .text import read_text_blocks

__all__ = ["EvalSource", "read_labelled", "read_lm_examples", "read_pairs"]


@dataclass(frozen=True)
class EvalSource:
    """``data``: a local file, or a task name whose ``split`` is read; the columns of a table."""

    data: str
    split: str = "test"
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    target_column: str = "target"


def read_labelled(source: EvalSource, label_names: Sequence[str]) -> list[Example]:
    """Labelled examples of a local file, or of a split of a named task with the model's labels."""
    if Path(source.data).exists():
        return load_labelled_file(
            source.data, label_names, source.text_column, source.text_pair_column, source.label_column
        )
    cfg = DataConfig(
        task=source.data,
        text_column=source.text_column,
        text_pair_column=source.text_pair_column,
        label_column=source.label_column,
    )
    task = load_task(cfg)
    if [str(n) for n in task.label_names] != [str(n) for n in label_names]:
        raise DataError(
            f"the labels of {source.data!r} ({', '.join(task.label_names)}) differ from the model's "
            f"({', '.join(label_names)}); evaluate on data with the labels the model was trained on"
        )
    return task.splits[source.split]


def read_pairs(source: EvalSource) -> list[tuple[str, str]]:
    """Source / target pairs of a local file, or of a split of a Hugging Face dataset."""
    if Path(source.data).exists():
        return load_pairs_file(source.data, source.text_column, source.target_column)
    cfg = DataConfig(task=source.data, text_column=source.text_column, target_column=source.target_column)
    return load_text_pairs(cfg).splits[source.split]


def read_lm_examples(source: EvalSource) -> list[LmExample]:
    """An Alpaca JSON / JSONL file, a text file in blocks, or a split of the built-in ``hamlet`` (split
    with the default ``train.seed``, as a run that kept it)."""
    path = Path(source.data)
    if path.suffix in (".json", ".jsonl"):
        return read_alpaca(path)
    if path.exists():
        return read_text_blocks(path, DataConfig().block_chars)
    cfg = DataConfig(task=source.data, task_type="language-modeling")
    return load_corpus(cfg, seed=TrainConfig().seed).splits[source.split]
