"""Batches of labelled examples: a reproducible order per epoch, and tokenisation into tensors."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .examples import Example

__all__ = ["PAD_MULTIPLE", "batches", "encode", "pad_to_bucket", "padded_width"]

PAD_MULTIPLE = 16
"""Batches are padded to a multiple of this many tokens (at most `max_length`). With padding to the
longest sequence alone, nearly every batch has a new shape, and glibc's allocator, which keeps
freed blocks of one size for the next request, fragments its heap: the built-in run's resident
memory peaked at 2,689 MB (its LoRA twin's at 1,603 MB). With four lengths (16, 32, 48, 64) it
peaks at 1.16x LoRA's (benchmarks/memory.py --whole) for the same time per step. GPUs prefer such
shapes too (docs/gpu-findings.md)."""


def padded_width(longest: int, max_length: int) -> int:
    """The padded length of a batch whose longest row has `longest` tokens: the next multiple of
    `PAD_MULTIPLE`, but no more than `max_length` (nor less than `longest`)."""
    return max(longest, min(-(-longest // PAD_MULTIPLE) * PAD_MULTIPLE, max_length))


def pad_to_bucket(
    batch: dict[str, torch.Tensor], max_length: int, pad_id: int, left: bool = False
) -> dict[str, torch.Tensor]:
    """`batch` (tensors (B, T) padded to the longest row) padded on to `padded_width(T)`: token ids
    with `pad_id`, masks and token types with 0; on the left when `left`."""
    width = batch["input_ids"].shape[1]
    extra = padded_width(width, max_length) - width
    if extra == 0:
        return batch
    side = (extra, 0) if left else (0, extra)
    return {
        k: torch.nn.functional.pad(v, side, value=pad_id if k == "input_ids" else 0)  # (B, T + extra)
        for k, v in batch.items()
    }


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

    Sequences are truncated to ``max_length`` tokens and padded to the longest one in ``examples``,
    rounded up to a multiple of `PAD_MULTIPLE` (at most ``max_length``).

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
    left = getattr(tokenizer, "padding_side", "right") == "left"
    batch = pad_to_bucket(dict(batch), max_length, tokenizer.pad_token_id or 0, left)
    return {**batch, "labels": torch.tensor([e.label for e in examples], dtype=torch.long)}
