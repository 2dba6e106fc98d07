"""Sequence classification with a classifier head: cross-entropy; accuracy, macro-F1, MCC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import nn

from ..data import EvalSource, Example, TaskData, batches, encode, read_labelled
from .evaluation import Shard, classification_part, combine_classification
from .objective import Objective

__all__ = ["Classification", "evaluate_classifier"]


@dataclass
class Classification(Objective):
    """Sequence classification with a classifier head."""

    label_names: list[str] = field(default_factory=list)
    is_pair: bool = False

    @classmethod
    def from_task(cls, task: TaskData) -> Classification:
        """Wrap a loaded classification task."""
        return cls(task.name, task.splits, task.notes, "accuracy", task.label_names, task.is_pair)

    @classmethod
    def restore(cls, metadata: dict[str, Any], label_names: list[str]) -> Classification:
        return cls(
            metadata.get("task", "eval"), {}, label_names=label_names, is_pair=metadata.get("is_pair", False)
        )

    @property
    def auto_class(self) -> type:
        return transformers.AutoModelForSequenceClassification

    def model_kwargs(self) -> dict[str, Any]:
        labels = dict(enumerate(self.label_names))
        return {
            "num_labels": len(labels),
            "id2label": labels,
            "label2id": {v: k for k, v in labels.items()},
            "ignore_mismatched_sizes": True,  # a classifier for another label count gets a new head
        }

    def encode(self, tokenizer: Any, examples: Sequence[Example], max_length: int) -> dict[str, torch.Tensor]:
        return encode(tokenizer, examples, max_length)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels)  # logits (B, K)

    def read_eval(self, source: EvalSource) -> list[Example]:
        return read_labelled(source, self.label_names)

    def score(self, model, tokenizer, examples, batch_size, max_length) -> dict[str, Any]:
        """Gold labels, predictions and per-example cross-entropy of `examples`."""
        device = next(model.parameters()).device
        labels, predictions, losses = [], [], []
        for chunk in batches(examples, batch_size, shuffle=False, seed=0, epoch=0):
            enc = {k: v.to(device) for k, v in encode(tokenizer, chunk, max_length).items()}
            logits = model(**{k: v for k, v in enc.items() if k != "labels"}).logits.float()  # (B, K)
            loss = F.cross_entropy(logits, enc["labels"], reduction="none")  # (B,)
            labels += enc["labels"].tolist()
            predictions += logits.argmax(-1).tolist()
            losses += loss.tolist()
        return classification_part(labels, predictions, losses)

    def combine(self, parts: list[dict[str, Any]]) -> dict[str, float]:
        return combine_classification(parts)

    def timing_inputs(self, tokenizer: Any, count: int, max_length: int) -> dict[str, torch.Tensor]:
        """Real test texts padded to `max_length` (the classifier's worst case)."""
        batch = self.timing_examples(count)
        inputs = tokenizer(
            [e.text for e in batch],
            [e.text_pair for e in batch] if self.is_pair else None,
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        return dict(inputs)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "label_names": self.label_names, "is_pair": self.is_pair}


def evaluate_classifier(
    model: nn.Module,
    tokenizer: Any,
    examples: list[Example],
    batch_size: int = 64,
    max_length: int = 128,
    shard: Shard = (0, 1),
) -> dict[str, float]:
    """Accuracy, macro-F1, MCC and mean cross-entropy of a classifier on `examples` (see
    :meth:`Objective.evaluate`)."""
    objective = Classification("eval", {"eval": examples})
    return objective.evaluate(model, tokenizer, "eval", batch_size, max_length, shard=shard)
