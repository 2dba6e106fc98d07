"""How every reader fills in missing splits and applies the sample limits: one policy, in one place.

* Labelled tables and text pairs (:func:`fill_splits`): a missing validation split is carved from
  train (10%, shuffled with the seed); a missing test split is the validation split.
* Causal-LM corpora (:func:`corpus_splits`): from one file, validation and test are carved from it
  (5% each, at least one example); given validation / test files stand in for each other.
* Then :func:`limit_splits` keeps at most ``data.max_train_samples`` / ``data.max_eval_samples``
  examples per split: a sample seeded with the run's seed, kept in file order (or the first
  examples, for the built-in classification task whose order is fixed).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ...config import DataConfig
from .examples import DataError

__all__ = ["SPLIT_SEED", "carve_splits", "corpus_splits", "fill_splits", "limit_splits", "subset"]

SPLIT_SEED = 20240122
_VALIDATION_FRACTION = 0.1
_HELD_OUT = 0.05  # validation and test fractions carved from a single instruction / text file


def fill_splits(
    train: list, validation: list | None, test: list | None, seed: int
) -> tuple[dict[str, list], list[str]]:
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


def carve_splits(examples: list, seed: int) -> dict[str, list]:
    """Carve validation and test (5% each, at least one example) out of one file, reproducibly."""
    if len(examples) < 3:
        raise DataError(
            f"need at least 3 examples to carve validation and test splits, got {len(examples)}; "
            "add data or give data.validation_file and data.test_file"
        )
    order = list(range(len(examples)))
    random.Random(SPLIT_SEED + seed).shuffle(order)
    held = max(1, round(_HELD_OUT * len(examples)))
    pick = [examples[i] for i in order]
    return {"train": pick[2 * held :], "validation": pick[:held], "test": pick[held : 2 * held]}


def corpus_splits(
    cfg: DataConfig, seed: int, read: Callable[[str], list]
) -> tuple[dict[str, list], list[str]]:
    """Splits read from data.train_file (+ optional validation / test files), or carved from it."""
    train = read(cfg.train_file)
    if cfg.validation_file is None and cfg.test_file is None:
        return carve_splits(train, seed), ["validation and test splits carved from data.train_file (5% each)"]
    splits, notes = {"train": train}, []
    for split, path in (("validation", cfg.validation_file), ("test", cfg.test_file)):
        if path is not None:
            splits[split] = read(path)
    if "validation" not in splits:
        splits["validation"] = splits["test"]
        notes.append("no data.validation_file: the test split is used for validation")
    if "test" not in splits:
        splits["test"] = splits["validation"]
        notes.append("no data.test_file: the validation split is reported as test")
    return splits, notes


def subset(examples: list, n: int | None, seed: int | None) -> list:
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
        kept = subset(examples, limits.get(split), seed)
        if len(kept) < len(examples):
            key = "data.max_train_samples" if split == "train" else "data.max_eval_samples"
            notes.append(f"{split} split truncated from {len(examples)} to {len(kept)} examples ({key})")
        splits[split] = kept
    return notes
