"""Evaluation metrics for text classification."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

__all__ = ["classification_metrics"]


def classification_metrics(
    labels: Iterable[int], predictions: Iterable[int], classes: Iterable[int] | None = None
) -> dict[str, float]:
    """Accuracy, macro-averaged F1 and Matthews correlation of ``predictions`` against ``labels``.

    ``labels`` and ``predictions`` may be any iterables of integer class ids (lists, arrays, tensors).
    ``classes`` restricts the macro-F1 average to those class ids (a generated answer that is no
    label, id -1, then counts as wrong without becoming a class of its own).
    Returns plain floats under ``accuracy``, ``macro_f1`` (classes with no true or predicted example
    count as F1 0), ``mcc`` (0.0 where it is undefined, e.g. when only one class occurs at all) and
    ``n`` (the number of examples).

    Raises:
        ValueError: if the two sequences differ in length or are empty, or ``classes`` is empty.
    """
    labels, predictions = [int(y) for y in labels], [int(p) for p in predictions]
    if len(labels) != len(predictions) or not labels:
        raise ValueError(
            f"classification_metrics needs equally long, non-empty labels and predictions, "
            f"got {len(labels)} labels and {len(predictions)} predictions"
        )
    true, predicted = Counter(labels), Counter(predictions)
    hits = Counter(y for y, p in zip(labels, predictions, strict=True) if y == p)
    averaged = sorted(true | predicted) if classes is None else list(classes)
    if not averaged:
        raise ValueError("classification_metrics needs at least one class to average F1 over, got classes=[]")
    correct = hits.total()
    return {
        "accuracy": correct / len(labels),
        "macro_f1": sum(_f1(hits[k], true[k], predicted[k]) for k in averaged) / len(averaged),
        "mcc": _mcc(correct, len(labels), true, predicted),
        "n": float(len(labels)),
    }


def _f1(hits: int, true: int, predicted: int) -> float:
    """F1 of one class from its true positives and its true and predicted counts (0 if both are 0)."""
    return 2 * hits / (true + predicted) if true + predicted else 0.0


def _mcc(correct: int, total: int, true: Counter, predicted: Counter) -> float:
    """Multi-class Matthews correlation from the confusion matrix's trace and margins (Gorodkin's
    R_K): (c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2)(s^2 - sum_k t_k^2)); 0.0 where undefined."""
    cross = sum(predicted[k] * true[k] for k in true)
    spread_p = total**2 - sum(n * n for n in predicted.values())
    spread_t = total**2 - sum(n * n for n in true.values())
    if spread_p == 0 or spread_t == 0:
        return 0.0
    return (correct * total - cross) / (spread_p * spread_t) ** 0.5
