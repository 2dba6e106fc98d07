"""Batches of labelled examples: a reproducible order per epoch, and tokenisation into tensors."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .examples import Example

__all__ = ["batches", "encode"]


def batches(
    examples: Sequence[Any], batch_size: int, shuffle: bool, seed: int, epoch: int
) -> Iterator[list[Any]]:
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
