"""Inference timing: warm-up, many runs, median."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def median_ms(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    warmup: int = 3,
    runs: int = 20,
    budget_s: float | None = None,
) -> float:
    """Median wall time of `fn()` in milliseconds after `warmup` untimed calls.

    With `budget_s`, slow calls get fewer runs (at least 5) so the timed runs take about `budget_s`.
    """
    device = torch.device(device)
    first = _timed(fn, device)  # the first warm-up call
    if budget_s is not None:
        runs = max(5, min(runs, int(budget_s / max(first, 1e-9))))
    for _ in range(warmup - 1):
        fn()
    return statistics.median(_timed(fn, device) * 1000 for _ in range(runs))


def inference_ms(
    model: nn.Module, inputs: dict[str, torch.Tensor], runs: int = 20, budget_s: float | None = 20.0
) -> float:
    """Median forward time of `model` on `inputs` (inference mode, model's device); see `median_ms`."""
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        ms = median_ms(lambda: model(**inputs), device, runs=runs, budget_s=budget_s)
    model.train(was_training)
    return ms
