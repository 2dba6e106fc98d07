"""The memory suite's device-dependent names and labels (benchmarks/memory.py)."""

import pytest
import torch

from ..conftest import load_benchmark


@pytest.fixture(scope="module")
def memory():
    return load_benchmark("memory")


@pytest.mark.parametrize(("device", "suffix", "level"), [("cpu", "", "RSS"), ("cuda", "-gpu", "allocated")])
def test_results_and_columns_say_which_memory_they_read(memory, monkeypatch, device, suffix, level):
    monkeypatch.setattr(memory, "_device", lambda: torch.device(device))
    smollm2 = memory.CONFIG.parent / "smollm2-rotten-tomatoes.yaml"
    assert memory._suite(memory.CONFIG) == f"memory{suffix}"
    assert memory._suite(smollm2) == f"memory-smollm2{suffix}"
    assert memory._level() == level
    assert ("GPU fp32" if device == "cuda" else "CPU fp32") in memory._title(memory.CONFIG)
