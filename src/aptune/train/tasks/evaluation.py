"""How every objective evaluates: in eval mode, each process on its shard, the parts gathered.

:meth:`Objective.evaluate <.objective.Objective.evaluate>` takes a process's share of a split with
:func:`shard_of`, scores it under :func:`eval_mode` (dropout off, the previous mode restored after)
and combines the :func:`gather`-ed parts of all processes, so every process returns the metrics of
the whole split. A part holds sums and per-example values, never means, so combining is exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from accelerate.utils import gather_object
from torch import nn

from ..metrics import classification_metrics

__all__ = ["classification_part", "combine_classification", "eval_mode", "gather", "shard_of"]

Shard = tuple[int, int]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode, then restore its train / eval mode."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def shard_of(examples: Sequence[Any], shard: Shard) -> list[Any]:
    """Every ``processes``-th example from ``process`` on: the share of one process of ``shard``."""
    process, processes = shard
    return list(examples[process::processes])


def gather(part: dict[str, Any], shard: Shard) -> list[dict[str, Any]]:
    """The parts of all processes, in process order (just ``[part]`` for one process)."""
    return gather_object([part]) if shard[1] > 1 else [part]


def classification_part(labels: list[int], predictions: list[int], losses: list[float]) -> dict[str, Any]:
    """The part of one process: gold labels, predicted labels and per-example losses."""
    return {"labels": labels, "predictions": predictions, "losses": losses}


def combine_classification(parts: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy, macro-F1, MCC and ``n`` of all parts, and their mean per-example ``loss``."""
    labels = [y for part in parts for y in part["labels"]]
    predictions = [p for part in parts for p in part["predictions"]]
    losses = [loss for part in parts for loss in part["losses"]]
    metrics = classification_metrics(labels, predictions)
    metrics["loss"] = sum(losses) / max(1, len(losses))
    return metrics
