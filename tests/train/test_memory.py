"""Memory figures of a training process: the current level and handing freed memory back."""

import ctypes.util

import pytest
import torch

from aptune.train.memory import current_memory_mb, peak_memory_mb, release_freed_memory

CPU = torch.device("cpu")


def _in_use() -> float:
    return current_memory_mb(CPU)["memory_mb"]


def test_current_memory_follows_allocations_and_stays_below_the_peak():
    before = _in_use()
    block = torch.ones(64, 2**20)  # 256 MB, written so its pages are resident
    grown = _in_use()
    assert grown - before > 200
    assert peak_memory_mb(CPU) >= 0.99 * grown  # the kernel updates its high-water mark lazily
    del block
    assert _in_use() < grown - 200  # a block this large is returned to the system when freed


@pytest.mark.skipif(ctypes.util.find_library("c") is None, reason="no C library to trim")
def test_release_hands_back_memory_freed_in_holes():
    """Small tensors freed between live ones stay in the heap (RSS does not fall) until released;
    this is what a cut leaves behind."""
    tensors = [torch.ones(4096) for _ in range(20000)]  # 16 KB each, 320 MB
    del tensors[::2]  # 160 MB freed in holes between live tensors
    held = _in_use()
    release_freed_memory(CPU)
    assert _in_use() < held - 80
    assert len(tensors) == 10000
