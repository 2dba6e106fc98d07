"""Evaluation of a (possibly masked or pruned) classifier on labelled examples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from accelerate.utils import gather_object
from torch import nn

from .data import Example, batches, encode
from .metrics import classification_metrics


@torch.no_grad()
def evaluate(
    model: nn.Module,
    tokenizer,
    examples: list[Example],
    batch_size: int = 64,
    max_length: int = 128,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, float]:
    """Accuracy, macro-F1, MCC and mean cross-entropy of `model` on `examples`.

    With `shard = (process, processes)` each process scores every `processes`-th example and the
    results are gathered, so every process returns the metrics of all `examples`.
    """
    rank, world = shard
    examples = examples[rank::world]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    labels, preds, losses = [], [], []
    for chunk in batches(examples, batch_size, shuffle=False, seed=0, epoch=0):
        enc = {k: v.to(device) for k, v in encode(tokenizer, chunk, max_length).items()}
        logits = model(**{k: v for k, v in enc.items() if k != "labels"}).logits.float()  # (B, K)
        loss = F.cross_entropy(logits, enc["labels"], reduction="none")  # (B,)
        labels += enc["labels"].tolist()
        preds += logits.argmax(-1).tolist()
        losses += loss.tolist()
    model.train(was_training)
    if world > 1:
        labels, preds, losses = (gather_object(values) for values in (labels, preds, losses))
    metrics = classification_metrics(labels, preds)
    metrics["loss"] = sum(losses) / max(1, len(losses))
    return metrics
