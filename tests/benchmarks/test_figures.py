"""How the README's five-seed figures count who reaches 97% first (benchmarks/figures.py)."""

import pytest

from ..conftest import load_benchmark


@pytest.fixture(scope="module")
def figures():
    return load_benchmark("figures")


def _reached(step, time) -> dict:
    return {"step_to_97": step, "time_to_97": time}


def test_a_seed_counts_only_where_apt_reached_97_percent_no_later_than_lora(figures, monkeypatch):
    rows = {
        "42": {"apt": _reached(700, 500.0), "lora": _reached(500, 520.0)},  # later in steps, first in time
        "43": {"apt": _reached(500, 400.0), "lora": _reached(500, 450.0)},  # a tie in steps counts
        "44": {"apt": _reached(900, 600.0), "lora": _reached(None, None)},  # LoRA never: APT first
        "45": {"apt": _reached(None, None), "lora": _reached(None, None)},  # neither: not APT's
        "46": {"apt": _reached(None, None), "lora": _reached(900, 800.0)},
        "47": {"lora": _reached(100, 10.0)},  # no APT row: not counted
    }
    result = {"seeds": [42, 43, 44, 45, 46, 47], "rows": rows}
    monkeypatch.setattr(figures, "latest", lambda suite: result)
    assert figures._no_later_than_lora("apt", "step_to_97") == "2 of 5"
    assert figures._no_later_than_lora("apt", "time_to_97") == "3 of 5"
    assert figures._five_steps("apt") == "700, 500, 900, never, never"
    assert figures._five_times("apt") == "500 s, 400 s, 600 s, never, never"


def _agg(time, reached, seeds) -> dict:
    return {"time_to_97": time, "reached_97": reached, "seeds": seeds}


def test_the_mean_time_to_97_percent_says_how_many_seeds_it_averages(figures):
    assert figures._mean_t97(_agg(441.2, 5, 5)) == "441 s"
    assert figures._mean_t97(_agg(1441.0, 4, 5)) == "1,441 s (4 of 5 seeds)"
    assert figures._mean_t97(_agg(None, 0, 3)) == "not reached (0 of 3 seeds)"
