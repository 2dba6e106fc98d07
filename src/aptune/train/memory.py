"""Memory of a training process: the peak (for metrics), the current level (for every history line, so
the report shows memory falling as the model shrinks), and handing memory freed by a cut back.

On a GPU the figures are torch's allocator statistics (allocated, and reserved by the caching
allocator). On a CPU they are the process's resident set size: the peak from `getrusage`, the current
level from `/proc/self/statm` (Linux; elsewhere no current figure is recorded).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import resource
from functools import cache
from pathlib import Path

import torch

_STATM = Path("/proc/self/statm")


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory, or the process's peak RSS on CPU, in MB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


@cache
def _malloc_trim():
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    return getattr(ctypes.CDLL(name), "malloc_trim", None)


def release_freed_memory(device: torch.device) -> None:
    """Hand memory that a cut freed back to the system: unreferenced tensors are collected, the CUDA
    caching allocator empties its free blocks, and on glibc `malloc_trim` returns the heap's free
    pages (without it, freed CPU tensors stay in the process and RSS never falls)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
