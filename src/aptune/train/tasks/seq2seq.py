"""Sequence-to-sequence encoding and scoring for encoder-decoder models (T5).

Targets are tokenised as the tokenizer does it (T5's appends ``</s>``); the decoder reads them
shifted right behind the model's ``decoder_start_token_id``, and padded target positions are
ignored. Greedy generations are scored by exact match (text-to-label) or by ROUGE-1/2/L F1 (x100)
with the optional ``rouge-score`` package.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataError, pad_to_bucket
from .causal_lm import IGNORE_INDEX

__all__ = [
    "ROUGE_TYPES",
    "Seq2SeqExample",
    "encode_seq2seq",
    "exact_match",
    "generate_texts",
    "rouge",
    "seq2seq_loss",
    "shift_right",
    "target_nll",
]

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class Seq2SeqExample:
    """One source / target pair; `label` is the class id of a text-to-label example."""

    source: str
    target: str
    label: int | None = None


def shift_right(ids: torch.Tensor, start_id: int) -> torch.Tensor:
    """Decoder inputs: `start_id` followed by `ids` without its last position. (B, T) -> (B, T)."""
    start = torch.full_like(ids[:, :1], start_id)  # (B, 1)
    return torch.cat([start, ids[:, :-1]], dim=1)  # (B, T)


def encode_seq2seq(
    tokenizer: Any, examples: Sequence[Seq2SeqExample], max_length: int, max_target_length: int, start_id: int
) -> dict[str, torch.Tensor]:
    """Encoder inputs, decoder inputs and `labels` (-100 at padded target positions). Sources are
    padded to their longest row rounded up to a multiple of `PAD_MULTIPLE`; targets to their
    longest row only (labels are often a few tokens, which a bucket of 16 would multiply)."""
    sources = [e.source for e in examples]
    inputs = tokenizer(sources, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    inputs = pad_to_bucket(dict(inputs), max_length, tokenizer.pad_token_id)
    targets = tokenizer(
        text_target=[e.target for e in examples],
        padding=True,
        truncation=True,
        max_length=max_target_length,
        return_tensors="pt",
    )
    ids, mask = targets["input_ids"], targets["attention_mask"]  # (B, T)
    return {
        "input_ids": inputs["input_ids"],
        "attention_mask": inputs["attention_mask"],
        "decoder_input_ids": shift_right(ids, start_id),
        "decoder_attention_mask": mask,  # position t reads target t - 1 and predicts target t
        "labels": ids.masked_fill(mask == 0, IGNORE_INDEX),
    }


def seq2seq_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over target tokens: logits (B, T, V), labels (B, T)."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


@torch.no_grad()
def target_nll(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[Seq2SeqExample],
    max_length: int,
    max_target_length: int,
    batch_size: int,
) -> tuple[float, int]:
    """Teacher-forced cross-entropy summed over the target tokens of `examples`, and their number."""
    device = next(model.parameters()).device
    start = model.config.decoder_start_token_id
    total, tokens = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = encode_seq2seq(tokenizer, examples[i : i + batch_size], max_length, max_target_length, start)
        labels = batch.pop("labels").to(device)  # (B, T)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits  # (B, T, V)
        nll = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        total += float(nll)
        tokens += int((labels != IGNORE_INDEX).sum())
    return total, tokens


@torch.no_grad()
def generate_texts(
    model: nn.Module,
    tokenizer: Any,
    sources: Sequence[str],
    max_length: int,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy generations for `sources`, decoded without special tokens and stripped."""
    device = next(model.parameters()).device
    texts: list[str] = []
    for i in range(0, len(sources), batch_size):
        inputs = tokenizer(
            list(sources[i : i + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        out = model.generate(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
        )  # (B, T_out)
        texts += [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
    return texts


def exact_match(predictions: Sequence[str], targets: Sequence[str]) -> float:
    """Fraction of predictions equal to their target (both stripped)."""
    if not targets:
        raise ValueError("exact_match needs at least one target")
    return sum(p.strip() == t.strip() for p, t in zip(predictions, targets, strict=True)) / len(targets)


def rouge(predictions: Sequence[str], targets: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (x100, Porter stemming) of predictions against targets."""
    try:
        scorer_module = importlib.import_module("rouge_score.rouge_scorer")
    except ImportError as err:
        raise DataError(
            "ROUGE needs the optional rouge-score package: pip install 'aptune[seq2seq]' "
            "(or pip install rouge-score)"
        ) from err
    scorer = scorer_module.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    sums = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, target in zip(predictions, targets, strict=True):
        scores = scorer.score(target, prediction)
        for key in ROUGE_TYPES:
            sums[key] += scores[key].fmeasure
    return {key: 100 * total / max(len(targets), 1) for key, total in sums.items()}
