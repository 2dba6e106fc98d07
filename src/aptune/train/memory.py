"""Memory of a training process: the peak (for metrics), the current level and a step's tensor
memory (for the history lines, so the report shows memory falling as the model shrinks), and
handing memory freed by a cut back.

On a GPU the figures are torch's allocator statistics (allocated, and reserved by the caching
allocator). On a CPU they are the process's resident set size: the peak from `getrusage`, the current
level from `/proc/self/statm` (Linux; elsewhere no current figure is recorded). A CPU process's
resident set falls little when the model shrinks: a training process keeps the pages of freed
activations for the next step (`timing.hold_freed_memory`; they go back after a cut or an
evaluation), and libraries and data take a fixed share. `StepMemory` therefore also counts what a
step's tensors need, the figure that shrinking reduces (on a GPU: the step's peak allocation).
"""

from __future__ import annotations

import gc
import os
import resource
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from ..timing import c_function

_STATM = Path("/proc/self/statm")


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory (since the last `torch.cuda.reset_peak_memory_stats`), or the
    process's peak RSS on CPU, in MB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tensor_mb(tensors: Iterable[torch.Tensor]) -> float:
    """MB held by the storages of `tensors`, each storage counted once."""
    return sum(_storage_bytes(tensors).values()) / 2**20


def _storage_bytes(tensors: Iterable[torch.Tensor]) -> dict[int, int]:
    """Bytes of each distinct storage of `tensors`, by address (sound among live storages)."""
    return {(s := t.untyped_storage()).data_ptr(): s.nbytes() for t in tensors}


class StepMemory:
    """The tensor memory of the training steps it measures, and the run's peak (see `peak_mb`).

    On a GPU a measured step's figure is its peak allocation (the allocator's peak statistics are
    reset before the step; the peak before the reset is kept for `peak_mb`). On a CPU it is the
    storages alive when the forward pass ends (the caller says when, with `forward_ended`), each
    counted once: the tensors `held` returns as the step begins (weights, optimizer state, weight
    copies: all alive through the forward pass) and the activations autograd saved for backward that
    are still alive then (seen by a `saved_tensors_hooks` pack hook, which keeps only a weak
    reference). Activations saved by a graph that was dropped during the forward pass are freed by
    then, and their addresses may already hold new tensors: they do not count. Temporaries of the
    forward and backward passes are not counted on a CPU.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.gpu_peak_mb = 0.0
        """The largest GPU peak allocation before the latest reset (GPU only)."""
        self._measuring: _ForwardCount | None = None

    @contextmanager
    def step(self, held: Callable[[], Iterable[torch.Tensor]]) -> Iterator[dict[str, float]]:
        """Measure the step run inside; the yielded dict holds ``step_memory_mb`` afterwards (on a
        CPU only if the step called `forward_ended`)."""
        result: dict[str, float] = {}
        if self.device.type == "cuda":
            self.gpu_peak_mb = max(self.gpu_peak_mb, peak_memory_mb(self.device))
            torch.cuda.reset_peak_memory_stats(self.device)
            yield result
            result["step_memory_mb"] = peak_memory_mb(self.device)
            return
        self._measuring = count = _ForwardCount(held(), result)
        try:
            with torch.autograd.graph.saved_tensors_hooks(count.pack, _unpack):
                yield result
        finally:
            self._measuring = None

    def forward_ended(self) -> None:
        """Mark the end of the measured step's forward pass (call it before backward); nothing
        happens when no CPU step is being measured."""
        if self._measuring is not None:
            self._measuring.close()

    def peak_mb(self) -> float:
        """The run's peak: GPU allocation over all steps, or the process's peak RSS on a CPU."""
        return max(self.gpu_peak_mb, peak_memory_mb(self.device))


class _ForwardCount:
    """The storages a CPU step's forward pass keeps: `held` tensors plus saved activations."""

    def __init__(self, held: Iterable[torch.Tensor], result: dict[str, float]):
        self.held = _storage_bytes(held)
        self.saved: dict[int, tuple[StorageWeakRef, int]] | None = {}  # address -> (ref, bytes)
        self.result = result

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if self.saved is not None:
            storage = t.untyped_storage()
            self.saved[storage.data_ptr()] = (StorageWeakRef(storage), storage.nbytes())
        return t.detach()  # `t` itself would tie a saved output to its own grad_fn, a cycle that
        # would keep a graph dropped without backward alive

    def close(self) -> None:
        if self.saved is None:
            return
        alive = dict(self.held)
        alive.update((ptr, size) for ptr, (ref, size) in self.saved.items() if not ref.expired())
        self.result["step_memory_mb"] = sum(alive.values()) / 2**20
        self.saved = None


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


def current_memory_mb(device: torch.device) -> dict[str, float]:
    """The memory in use now, in MB: ``memory_mb`` (GPU: allocated; CPU: RSS) and, on a GPU,
    ``memory_reserved_mb``; empty where the platform does not tell."""
    if device.type == "cuda":
        return {
            "memory_mb": torch.cuda.memory_allocated(device) / 2**20,
            "memory_reserved_mb": torch.cuda.memory_reserved(device) / 2**20,
        }
    try:
        resident_pages = int(_STATM.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return {}
    return {"memory_mb": resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20}


def release_freed_memory(device: torch.device) -> None:
    """Hand memory that a cut freed back to the system: recent reference cycles are collected, the
    CUDA caching allocator empties its free blocks, and on glibc `malloc_trim` returns the heap's free
    pages (without it, freed CPU tensors stay in the process and RSS never falls).

    A cut frees its tensors by reference count; only the young generations are collected, because a
    full collection walks every object the imports created (about 0.3 s each time with transformers
    loaded) and, in a probe of a distilling run, found nothing to free at 21 of its 22 calls."""
    gc.collect(1)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return
    trim = c_function("malloc_trim")
    if trim is not None:
        trim(0)
