"""Memory figures of a training process: the current level, a step's tensor memory and handing
freed memory back."""

import ctypes.util

import pytest
import torch

from aptune.timing import hold_freed_memory
from aptune.train.memory import StepMemory, current_memory_mb, peak_memory_mb, release_freed_memory, tensor_mb

CPU = torch.device("cpu")


def _in_use() -> float:
    return current_memory_mb(CPU)["memory_mb"]


def _prepare_heap_as_the_full_suite_leaves_it() -> None:
    """Hold freed memory (as every timing does) and leave 2 GB of freed, trimmed room in the heap,
    from which glibc then serves a large block instead of mapping it, and keeps it when it is freed
    (CI's failure: RSS stayed at 1,175 MB)."""
    hold_freed_memory()
    pieces = [torch.ones(2**18) for _ in range(2048)]  # 1 MB each
    del pieces
    release_freed_memory(CPU)


def test_current_memory_follows_allocations_and_stays_below_the_peak():
    _prepare_heap_as_the_full_suite_leaves_it()
    before = _in_use()
    block = torch.ones(64, 2**20)  # 256 MB, written so its pages are resident
    grown = _in_use()
    assert grown - before > 200
    assert peak_memory_mb(CPU) >= 0.99 * grown  # the kernel updates its high-water mark lazily
    del block
    # Freed, the block may stay in the heap: in a process whose heap has room (and after
    # `hold_freed_memory`, as in the full suite) glibc serves it from there and keeps it. Released,
    # it is handed back wherever it came from.
    release_freed_memory(CPU)
    assert _in_use() < grown - 200


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


def _mb(*tensors: torch.Tensor) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def _measured_step(meter: StepMemory, model: torch.nn.Module, x: torch.Tensor) -> float:
    with meter.step(model.parameters) as measured:
        loss = model(x).sum()
        meter.forward_ended()
        loss.backward()
    return measured["step_memory_mb"]


def test_step_memory_counts_saved_activations_and_held_tensors_once():
    model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512))
    x = torch.randn(1024, 512)
    meter = StepMemory(CPU)
    # saved: x (for the first weight's gradient), the ReLU output (its own backward and the second
    # layer's weight gradient, one storage) and the weights, which count once with the held ones
    expected = _mb(x, x) + _mb(*model.parameters())
    assert _measured_step(meter, model, x) == pytest.approx(expected, rel=1e-6)
    quarter = x[:256].clone()  # its own storage (a view would keep all of x saved)
    expected = _mb(quarter, quarter) + _mb(*model.parameters())
    assert _measured_step(meter, model, quarter) == pytest.approx(expected, rel=1e-6)
    assert meter.peak_mb() == peak_memory_mb(CPU)


def test_step_memory_counts_only_what_is_alive_when_the_forward_pass_ends():
    """Activations of a graph dropped during the forward pass, and tensors made after it (as AdamW's
    state is in a first step), do not count, though they may take the addresses of counted ones."""
    model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512))
    x = torch.randn(1024, 512)
    state: list[torch.Tensor] = []
    meter = StepMemory(CPU)
    with meter.step(lambda: [*model.parameters(), *state]) as measured:
        model(x * 2).sum()  # its graph, and the activations it saved, are dropped at once
        loss = model(x).sum()
        meter.forward_ended()
        loss.backward()
        state.append(torch.zeros(1024, 256))
        model(x).sum()
    assert measured["step_memory_mb"] == pytest.approx(_mb(x, x) + _mb(*model.parameters()), rel=1e-6)
    with meter.step(model.parameters) as unmarked:
        model(x).sum().backward()
    assert "step_memory_mb" not in unmarked


def test_tensor_mb_counts_a_storage_once():
    block = torch.ones(2**18)  # 1 MB
    assert tensor_mb([block, block[:10], block.view(512, 512)]) == pytest.approx(1.0)
