"""Tables -> labelled examples: column checks, texts, labels and their class ids.

Every table, from a local file or a hub dataset, goes through :func:`table_rows` (checked texts and
labels of one split) and :func:`to_examples` (labels mapped to class ids by a :class:`LabelMap`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .examples import DataError, Example
from .tables import Table

__all__ = [
    "Columns",
    "LabelMap",
    "Rows",
    "check_classes",
    "derive_labels",
    "table_rows",
    "texts",
    "to_examples",
]

_INTEGER = re.compile(r"[+-]?\d+")
_MAX_LISTED = 5


@dataclass(frozen=True)
class Columns:
    """The columns holding the text, the optional second text of a pair, and the label."""

    text: str
    pair: str | None
    label: str


@dataclass(frozen=True)
class Rows:
    """Checked texts and label values (as stripped strings) of one split."""

    source: str
    texts: list[str]
    pairs: list[str] | None
    labels: list[str]


@dataclass(frozen=True)
class LabelMap:
    """Label value (as a string) -> class id; ``integer`` maps ``"01"`` and ``"1"`` to the same class."""

    names: list[str]
    ids: dict[str, int]
    integer: bool

    @classmethod
    def of_names(cls, names: Sequence[str]) -> LabelMap:
        """Class ``i`` is ``names[i]`` (integer keys when every name is an integer)."""
        names = [str(n) for n in names]
        integer = all(_INTEGER.fullmatch(n) for n in names)
        return cls(names, {n: i for i, n in enumerate(names)}, integer=integer)

    def key(self, value: str) -> str:
        """The key of ``value`` in ``ids``."""
        return str(int(value)) if self.integer and _INTEGER.fullmatch(value) else value


def _column(table: Table, name: str, key: str) -> list[Any]:
    if name not in table.columns:
        present = ", ".join(table.names) or "none"
        raise DataError(
            f"column {name!r} not found in {table.source} (columns: {present}); set {key} to one of them"
        )
    return table.columns[name]


def texts(table: Table, name: str, key: str) -> list[str]:
    """The non-empty texts of column ``name``; ``key`` is the config key that names the column."""
    values = ["" if value is None else str(value) for value in _column(table, name, key)]
    for row, text in enumerate(values, 1):
        if not text.strip():
            raise DataError(
                f"empty text in column {name!r} at row {row} of {table.source}; "
                "fill in the text or remove the row"
            )
    return values


def table_rows(table: Table, cols: Columns) -> Rows:
    """The texts (and pairs) and labels of ``table``; every row needs a text and a label."""
    text = texts(table, cols.text, "data.text_column")
    pairs = None if cols.pair is None else texts(table, cols.pair, "data.text_pair_column")
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
    return Rows(table.source, text, pairs, labels)


def derive_labels(rows: Rows) -> LabelMap:
    """Class ids from the training labels: integers in numeric order, otherwise strings alphabetically."""
    values = set(rows.labels)
    if all(_INTEGER.fullmatch(v) for v in values):
        names = [str(v) for v in sorted({int(v) for v in values})]
        return LabelMap(names, {name: i for i, name in enumerate(names)}, integer=True)
    names = sorted(values)
    return LabelMap(names, {name: i for i, name in enumerate(names)}, integer=False)


def to_examples(rows: Rows, labels: LabelMap) -> list[Example]:
    """``rows`` as examples; every label must be one of ``labels``."""
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


def check_classes(train: list[Example], labels: LabelMap, source: str, column: str) -> None:
    """Refuse training data with fewer than two classes."""
    present = sorted({e.label for e in train})
    if len(present) < 2:
        found = ", ".join(repr(labels.names[i]) for i in present) or "none"
        raise DataError(
            f"the training data {source} has fewer than 2 classes in column {column!r} (found: {found}); "
            "classification needs at least 2 classes: check data.label_column or add examples of the "
            "other classes"
        )
