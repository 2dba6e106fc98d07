"""Forward-pass timing (timing.py): warm-up and run counts, alternating rounds, the blocked timer."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from aptune.timing import blocked_ms, hold_freed_memory, median_ms, paired_ms


class Recorder(nn.Module):
    """A model that sleeps `seconds` per call and writes its name into a shared log."""

    def __init__(self, name: str, log: list[str], seconds: float = 0.0):
        super().__init__()
        self.name, self.log, self.seconds = name, log, seconds
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        time.sleep(self.seconds)
        return input_ids


def test_median_ms_warms_up_then_times_the_runs():
    calls: list[int] = []
    ms = median_ms(lambda: calls.append(1), warmup=3, runs=7)
    assert len(calls) == 10 and ms >= 0


def test_a_time_budget_gives_slow_calls_fewer_runs():
    calls: list[int] = []
    median_ms(lambda: (calls.append(1), time.sleep(0.01)), warmup=1, runs=50, budget_s=0.05)
    assert len(calls) == 1 + 5  # the warm-up, then the minimum of 5 runs


def test_paired_ms_alternates_the_models_and_tells_them_apart():
    log: list[str] = []
    slow, fast = Recorder("slow", log, 0.004), Recorder("fast", log, 0.0)
    slow_ms, fast_ms = paired_ms(slow, fast, {"input_ids": torch.zeros(1)}, rounds=3)
    # the first round: 3 warm-up + 5 timed calls per model; later rounds: 1 warm-up + 5 timed calls
    first, later = (["slow"] * n + ["fast"] * n for n in (8, 6))
    assert log == first + later * 2
    assert slow_ms > 3.5 > fast_ms


def test_a_spent_budget_stops_paired_rounds_after_the_second():
    log: list[str] = []
    paired_ms(Recorder("a", log, 0.0), Recorder("b", log, 0.0), {"input_ids": torch.zeros(1)}, budget_s=0.0)
    assert len(log) == 2 * 8 + 2 * 6  # two rounds of the six asked for


def test_blocked_ms_times_a_forward_pass():
    log: list[str] = []
    ms = blocked_ms(Recorder("m", log, 0.002), {"input_ids": torch.zeros(1)}, min_run_time=0.02)
    assert ms > 1.5 and len(log) > 2


FAULTS = """
import resource, sys, torch
from aptune.timing import hold_freed_memory
if sys.argv[1] == "hold":
    assert hold_freed_memory()
def forward():  # 12 x 8 MB live at once, then freed, as a forward pass's activations are
    return float(sum(t[0] for t in [torch.ones(2 << 20) for _ in range(12)]))
for _ in range(3):
    forward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    forward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator and minor-fault counts")
def test_held_memory_is_not_paged_in_again_on_every_pass():
    def faults(mode: str) -> float:
        run = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
        return float(run.stdout)

    # A trimmed 96 MB is faulted in again on every pass (about 24,500 faults here; CI's full suite
    # saw glibc not trim at all). Held memory is faulted in once; a pass may rarely fault one 8 MB
    # block (2,048 pages) again where the heap's layout shifts.
    assert faults("hold") < 1_000
    assert hold_freed_memory()
