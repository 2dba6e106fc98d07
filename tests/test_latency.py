"""The latency cost model (latency.py): monotone, cached per device and shape, and on the real MiniLM
its predicted speed-up of a held-out pruned shape is within 15% of the measured one."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from aptune.config import AptuneConfig, ConfigError, apply_overrides
from aptune.families import family_for
from aptune.latency import LatencyError, LatencyModel, latency_model, measure, random_inputs
from aptune.shrink import first_k_plan, shrink_model
from aptune.train.loop import train
from aptune.train.setup import SetupError
from aptune.train.speed import paired_ms

from .conftest import SHORT_RUN, needs_minilm, needs_scattertext, tiny_model


@pytest.fixture(scope="module")
def tiny_table() -> tuple[torch.nn.Module, LatencyModel]:
    model = tiny_model("bert").eval()
    return model, measure(model, random_inputs(model, 4, 16), align=4)


def test_the_cost_model_is_monotone_in_every_dimension(tiny_table):
    model, table = tiny_table
    inv = family_for(model).inventory(model)
    rng = random.Random(0)
    for _ in range(200):
        heads = [rng.randint(1, h) for h in inv.heads]
        neurons = [rng.randint(1, n) for n in inv.neurons]
        hidden = rng.randint(1, inv.hidden)
        at = table(heads, neurons, hidden) * (1 - 1e-12)  # sums of equal curves may differ in the last bit
        layer = rng.randrange(len(heads))
        more_heads = [h + (i == layer) for i, h in enumerate(heads)]
        more_neurons = [n + (i == layer) for i, n in enumerate(neurons)]
        assert table(more_heads, neurons, hidden) >= at
        assert table(heads, more_neurons, hidden) >= at
        assert table(heads, neurons, hidden + 1) >= at
    assert all(c > 0 for c in table.block_costs(inv))


def test_a_measured_table_is_cached_per_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("APTUNE_CACHE_DIR", str(tmp_path))
    model = tiny_model("bert").eval()
    first, cached = latency_model(model, random_inputs(model, 4, 16), 4)
    again, cached_again = latency_model(model, random_inputs(model, 4, 16), 4)
    _, cached_other = latency_model(model, random_inputs(model, 4, 24), 4)  # longer inputs: measured anew
    assert (cached, cached_again, cached_other) == (False, True, False)
    assert again == first
    assert len(list((tmp_path / "latency").glob("*.json"))) == 2


def test_encoder_decoders_are_refused():
    with pytest.raises(LatencyError, match="target_sparsity"):
        model = tiny_model("t5").eval()
        measure(model, random_inputs(model, 2, 8))


@needs_minilm
@pytest.mark.slow  # profiles the real MiniLM (about 15 s) and times two models
def test_predicted_speedup_of_a_held_out_shape_is_within_15_percent(minilm):
    ids = torch.randint(0, minilm.config.vocab_size, (32, 64), generator=torch.Generator().manual_seed(1))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    table = measure(minilm, inputs)
    family = family_for(minilm)
    inv = family.inventory(minilm)
    shape = {"heads": [9, 7, 5, 6, 8, 4], "neurons": [1200, 880, 720, 952, 1040, 608], "hidden_size": 272}
    pruned = copy.deepcopy(minilm)
    shrink_model(pruned, first_k_plan(inv, shape), family)  # no grid point in any dimension
    dense_ms, pruned_ms = paired_ms(minilm, pruned.eval(), inputs)
    predicted = table(inv.heads, inv.neurons, inv.hidden) / table(shape["heads"], shape["neurons"], 272)
    measured = dense_ms / pruned_ms
    assert predicted == pytest.approx(measured, rel=0.15), (predicted, measured)
    assert table.profile_seconds < 60


def test_target_speedup_is_validated():
    cfg = apply_overrides(AptuneConfig(), ["pruning.target_speedup=2.5"])
    assert cfg.pruning.target_speedup == 2.5
    with pytest.raises(ConfigError, match="target_speedup"):
        apply_overrides(AptuneConfig(), ["pruning.target_speedup=0.5"])


@needs_minilm
@needs_scattertext
@pytest.mark.slow  # end to end: a short run of a tiny BERT that asks for 2x
def test_a_run_asked_for_speed_prunes_to_the_predicted_speedup(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("APTUNE_CACHE_DIR", str(tmp_path / "cache"))
    overrides = [f"model.name_or_path={tiny_model_dir}", *SHORT_RUN, "pruning.target_speedup=1.4"]
    result = train(apply_overrides(AptuneConfig(), overrides), tmp_path / "run", progress=False)
    speed = result.metrics["latency_model"]
    assert speed["target_speedup"] == 1.4 and not speed["cached"]
    assert 1.35 <= speed["predicted_speedup"] <= 1.6  # the search fills the latency budget
    assert result.metrics["sparsity"] > 0.1
    report = (result.output_dir / "report.md").read_text()
    assert "speed-up asked / predicted | 1.40x" in report
    with pytest.raises(SetupError, match="out of reach"):  # this tiny model's fixed parts dominate
        train(apply_overrides(AptuneConfig(), [*overrides, "pruning.target_speedup=50"]), tmp_path / "no")
