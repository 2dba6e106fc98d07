"""Evaluation of a (possibly masked or pruned) classifier on labelled examples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
    gather=None,
) -> dict[str, float]:
    """Accuracy, macro-F1, MCC and mean cross-entropy of `model` on `examples`.

    `gather` (e.g. `accelerator.gather_for_metrics`) collects predictions across processes.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    labels, preds, losses = [], [], []
    for chunk in batches(examples, batch_size, shuffle=False, seed=0, epoch=0):
        enc = {k: v.to(device) for k, v in encode(tokenizer, chunk, max_length).items()}
        logits = model(**{k: v for k, v in enc.items() if k != "labels"}).logits.float()  # (B, K)
        loss = F.cross_entropy(logits, enc["labels"], reduction="none")  # (B,)
        pred, gold = logits.argmax(-1), enc["labels"]
        if gather is not None:
            pred, gold, loss = gather(pred), gather(gold), gather(loss)
        labels += gold.tolist()
        preds += pred.tolist()
        losses += loss.tolist()
    model.train(was_training)
    metrics = classification_metrics(labels, preds)
    metrics["loss"] = sum(losses) / max(1, len(losses))
    return metrics
