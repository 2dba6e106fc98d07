"""Evaluation metrics for text classification."""

from __future__ import annotations

from collections.abc import Iterable

from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

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
        ValueError: if the two sequences differ in length or are empty.
    """
    labels, predictions = [int(y) for y in labels], [int(p) for p in predictions]
    if len(labels) != len(predictions) or not labels:
        raise ValueError(
            f"classification_metrics needs equally long, non-empty labels and predictions, "
            f"got {len(labels)} labels and {len(predictions)} predictions"
        )
    single_class = len(set(labels) | set(predictions)) < 2
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(
            f1_score(
                labels,
                predictions,
                labels=None if classes is None else list(classes),
                average="macro",
                zero_division=0,
            )
        ),
        "mcc": 0.0 if single_class else float(matthews_corrcoef(labels, predictions)),
        "n": float(len(labels)),
    }
