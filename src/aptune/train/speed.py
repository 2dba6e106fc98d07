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


def median_ms(
    fn: Callable[[], object], device: torch.device | str = "cpu", warmup: int = 3, runs: int = 20
) -> float:
    """Median wall time of `fn()` in milliseconds after `warmup` untimed calls."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def inference_ms(model: nn.Module, inputs: dict[str, torch.Tensor], runs: int = 20) -> float:
    """Median forward time of `model` on `inputs` (inference mode, model's device)."""
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        ms = median_ms(lambda: model(**inputs), device, runs=runs)
    model.train(was_training)
    return ms
