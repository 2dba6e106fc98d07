"""Forward-pass timing: the median of many runs after a warm-up, two models in alternating rounds,
and torch.utils.benchmark's blocked measurement (the latency model's grid)."""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import time
from collections.abc import Callable
from functools import cache

import torch
from torch import nn
from torch.utils import benchmark

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@cache
def c_function(name: str):
    """A function of the process's C library (e.g. glibc's `mallopt`, `malloc_trim`), or None where
    the library has none (musl, macOS, Windows)."""
    library = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(library), name, None) if library else None


@cache
def hold_freed_memory() -> bool:
    """Keep memory that a forward pass frees in the process instead of handing it back to the
    system, so that timed passes do not page their activations in again on every call.

    With glibc's defaults a process that has only run inference trims its heap after each forward
    pass that freed enough: a dense MiniLM forward at batch 32 x 64 then took about 30,000 minor page
    faults per call (its export about 6,000), which made the dense model about 20% slower than in a
    training process, where the heap is large and fragmented and no pass faults. Every timing here
    runs with the trim threshold at 1 GiB and the mmap threshold at glibc's 32 MiB maximum, so both
    models are timed alike wherever they run. Training on a CPU sets the same (`AptRun`): with the
    dynamic defaults an APT process handed about 200 MB back after every MiniLM step and faulted
    them in again (45,000-55,000 minor faults per step). Process-wide and permanent (a later
    explicit `malloc_trim` still hands memory back); False where the C library has no `mallopt`.
    """
    mallopt = c_function("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, 1 << 30)) and bool(mallopt(M_MMAP_THRESHOLD, 32 << 20))


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
    hold_freed_memory()
    device = torch.device(device)
    first = _timed(fn, device)  # the first warm-up call
    if budget_s is not None:
        runs = max(5, min(runs, int(budget_s / max(first, 1e-9))))
    for _ in range(warmup - 1):
        fn()
    return statistics.median(_timed(fn, device) * 1000 for _ in range(runs))


def inference_ms(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    runs: int = 20,
    budget_s: float | None = 20.0,
    warmup: int = 3,
) -> float:
    """Median forward time of `model` on `inputs` (inference mode, model's device); see `median_ms`."""
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        ms = median_ms(lambda: model(**inputs), device, warmup=warmup, runs=runs, budget_s=budget_s)
    model.train(was_training)
    return ms


def paired_ms(
    first: nn.Module,
    second: nn.Module,
    inputs: dict[str, torch.Tensor],
    rounds: int = 6,
    budget_s: float = 30.0,
) -> tuple[float, float]:
    """Forward times of two models on `inputs`, measured in alternating rounds (each a median of 5
    runs) and reduced to the median round: drift of the machine (clock, other load, the state the
    process is in) falls on both alike, where two timings one after the other can differ by 20%.
    Each model warms up with 3 calls in the first round and 1 call in every later one (its weights
    are then back in the caches). Slow models get fewer rounds (at least 2) so the whole takes about
    `budget_s`."""
    times: tuple[list[float], list[float]] = ([], [])
    started = time.perf_counter()
    for i in range(rounds):
        for model, out in zip((first, second), times, strict=True):
            out.append(inference_ms(model, inputs, runs=5, budget_s=None, warmup=3 if i == 0 else 1))
        if i >= 1 and (time.perf_counter() - started) * (i + 2) / (i + 1) > budget_s:
            break
    return statistics.median(times[0]), statistics.median(times[1])


def blocked_ms(model: nn.Module, inputs: dict[str, torch.Tensor], min_run_time: float = 0.25) -> float:
    """Forward time in ms of the least disturbed block of runs (torch.utils.benchmark's
    `blocked_autorange`, the process's thread count) after one warm-up call."""
    hold_freed_memory()
    with torch.inference_mode():
        model(**inputs)
        timer = benchmark.Timer(
            stmt="model(**inputs)",
            globals={"model": model, "inputs": inputs},
            num_threads=torch.get_num_threads(),
        )
        return min(timer.blocked_autorange(min_run_time=min_run_time).times) * 1000
