"""The quality suite's time-to-97% bookkeeping (benchmarks/quality.py), on hand-made curves."""

import pytest

from aptune.config import apply_overrides, load_config

from ..conftest import load_benchmark


@pytest.fixture(scope="module")
def quality():
    return load_benchmark("quality")


def _row(*points) -> dict:
    return {"curve": [list(p) for p in points]}


def test_the_first_evaluation_at_97_percent_of_the_seeds_full_fine_tuning_counts(quality):
    per_seed = {
        42: {
            "full-ft": _row((50, 0.70, 100), (100, 0.80, 200)),  # threshold 0.776
            "apt": _row((30, 0.70, 100), (60, 0.776, 200), (90, 0.79, 300)),
            "lora": _row((40, 0.77, 100), (80, 0.775, 200)),
        }
    }
    rows = quality.with_time_to_97(per_seed)[42]
    assert (rows["apt"]["time_to_97"], rows["apt"]["step_to_97"]) == (60, 200)
    assert (rows["lora"]["time_to_97"], rows["lora"]["step_to_97"]) == (None, None)
    assert (rows["full-ft"]["time_to_97"], rows["full-ft"]["step_to_97"]) == (100, 200)
    assert "time_to_97" not in per_seed[42]["apt"]  # copies, the input rows stay as they were


def test_a_seed_without_full_fine_tuning_uses_the_mean_threshold_and_old_rows_have_no_step(quality):
    per_seed = {
        42: {"full-ft": _row((10, 0.80, 100))},
        43: {"full-ft": _row((10, 0.90, 100))},  # thresholds 0.776 and 0.873, mean 0.8245
        44: {"apt": _row((10, 0.82, 100), (20, 0.83))},  # a point without a step: written before steps
    }
    apt = quality.with_time_to_97(per_seed)[44]["apt"]
    assert (apt["time_to_97"], apt["step_to_97"]) == (20, "n/a")


def test_without_any_full_fine_tuning_row_nothing_is_reached(quality):
    rows = quality.with_time_to_97({42: {"apt": _row((10, 0.99, 100))}})[42]
    assert (rows["apt"]["time_to_97"], rows["apt"]["step_to_97"]) == (None, None)


def test_the_mean_curve_reaches_97_percent_where_the_seed_average_does(quality):
    per_seed = {
        42: {"full-ft": _row((9, 0.80, 100)), "apt": _row((10, 0.70, 100), (20, 0.80, 200), (30, 0.80, 300))},
        43: {"full-ft": _row((9, 0.90, 100)), "apt": _row((14, 0.90, 100), (24, 0.80, 200), (34, 0.90, 300))},
    }  # threshold 0.97 x 0.85 = 0.8245; apt's means 0.80, 0.80, 0.85
    reached = quality.mean_curve_to_97(per_seed, "apt")
    assert (reached["step"], reached["time"], reached["seeds"]) == (300, 32, 2)
    assert reached["accuracy"] == pytest.approx(0.85) and reached["threshold"] == pytest.approx(0.8245)
    # seed 43 alone reaches it at step 100, seed 42 never: the mean curve says when the average does
    assert quality.with_time_to_97(per_seed)[43]["apt"]["step_to_97"] == 100
    per_seed[43]["apt"]["curve"][2][1] = 0.84  # means 0.80, 0.80, 0.82: never
    assert quality.mean_curve_to_97(per_seed, "apt") is None
    per_seed[43]["apt"]["curve"][0][2] = 150  # seeds evaluated at different steps: no mean curve
    per_seed[43]["apt"]["curve"][2][1] = 0.99
    assert quality.mean_curve_to_97(per_seed, "apt") is None
    assert quality.mean_curve_to_97({42: {"apt": _row((1, 0.9, 100))}}, "apt") is None  # no full-ft row


def test_a_named_report_writes_under_its_name_with_every_seed(quality, monkeypatch, tmp_path):
    written = {}

    def write(name, payload, text):
        written.update(name=name, payload=payload, text=text)
        return tmp_path / f"{name}.json", tmp_path / f"{name}.md"

    monkeypatch.setattr(quality, "write_results", write)
    monkeypatch.setattr(quality, "_plot", lambda *args: None)
    monkeypatch.setattr(quality, "RESULTS", tmp_path / "results")
    row = {"test_accuracy": 0.8, "prunable_kept": 1.0, "total_params": 10, "train_seconds": 5.0,
           "peak_memory_mb": 1.0, "pruned_ms": 1.0, "dense_ms": 1.0}  # fmt: skip
    per_seed = {s: {"full-ft": {**row, "curve": [[5.0, 0.8, 100]]}} for s in (45, 46)}
    quality.report(per_seed, 3.0, "quality-five-seeds")
    assert written["name"] == "quality-five-seeds"
    assert written["payload"]["seeds"] == [45, 46]
    assert "seeds 45, 46" in written["text"]
    assert written["payload"]["methods"]["full-ft"]["mean_curve_97"]["step"] == 100
    assert "mean curve reaches" not in written["text"]  # no method besides full fine-tuning to show


def _pruning(quality, overrides: list[str]):
    """The pruning section of the built-in MiniLM config with `overrides` applied."""
    return apply_overrides(load_config(quality.CONFIG), overrides).pruning


def test_the_early_heads4_row_is_the_built_in_configs_pruning(quality):
    built_in = _pruning(quality, [])
    row = _pruning(quality, quality.APT["apt-0.6-no-distill-prune-early-heads4"])
    assert row == built_in
    assert (built_in.start_step, built_in.end_step, built_in.min_heads_per_layer) == (0.05, 0.25, 4)


@pytest.mark.parametrize("name", ["apt-0.6", "apt-0.6-rescore", "apt-0.6-no-distill", "apt-0.4-no-distill"])
def test_rows_measured_with_the_earlier_window_name_it(quality, name):
    p = _pruning(quality, quality.APT[name])
    window = (p.start_step, p.end_step, p.update_frequency, p.mask_decay_rate, p.min_heads_per_layer)
    assert window == (0.1, 0.6, 32, 0.03125, 1)
