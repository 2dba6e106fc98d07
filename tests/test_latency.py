"""The latency cost model (latency.py): monotone, cached per device and shape, speed checks and their
corrections. How close its predictions come to measured speed-ups is a benchmark
(benchmarks/latency_model.py), not a timed test."""

from __future__ import annotations

import json
import random

import pytest
import torch

from aptune import latency
from aptune.blocks import BlockInventory, BlockScores
from aptune.config import AptuneConfig, ConfigError, apply_overrides
from aptune.families import family_for
from aptune.latency import (
    LatencyError,
    LatencyModel,
    SpeedCalibration,
    SpeedProbe,
    latency_model,
    measure,
    random_inputs,
)
from aptune.search import minimal_shape, plan_masks
from aptune.train.loop import train
from aptune.train.setup import SetupError

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
    # the cache is under test, not the clock: a timing that grows with the twin's size
    monkeypatch.setattr(latency, "blocked_ms", lambda twin, _: sum(p.numel() for p in twin.parameters()))
    model = tiny_model("bert").eval()
    first, cached = latency_model(model, random_inputs(model, 4, 16), 4)
    again, cached_again = latency_model(model, random_inputs(model, 4, 16), 4)
    _, cached_other = latency_model(model, random_inputs(model, 4, 24), 4)  # longer inputs: measured anew
    assert (cached, cached_again, cached_other) == (False, True, False)
    assert again == first
    assert len(list((tmp_path / "latency").glob("*.json"))) == 2


def test_a_disturbed_timing_does_not_blow_the_table_up(monkeypatch):
    model = tiny_model("bert").eval()
    inv = family_for(model).inventory(model)
    heads, neurons = inv.heads[0], inv.neurons[0]

    def fake_ms(twin, inputs) -> float:  # neurons alone timed below the minimal shape: parts sum to ~0
        h, n = family_for(twin).inventory(twin).heads[0], family_for(twin).inventory(twin).neurons[0]
        if (h, n) == (heads, neurons):
            return 20.0
        return 10.0 + 5.0 * (h - 1) / (heads - 1) - (5.0 - 1e-6) * (n - 4) / (neurons - 4)

    monkeypatch.setattr(latency, "blocked_ms", fake_ms)
    table = measure(model, random_inputs(model, 2, 8), align=4)
    assert table(inv.heads, inv.neurons, inv.hidden) == pytest.approx(20.0)
    assert table(inv.heads, [4] * len(inv.neurons), inv.hidden) <= 20.0 + 1e-9  # heads scaled 2x at most


def test_encoder_decoders_are_refused():
    with pytest.raises(LatencyError, match="target_sparsity"):
        model = tiny_model("t5").eval()
        measure(model, random_inputs(model, 2, 8))


def _table(head_scale: float) -> LatencyModel:
    """A made-up table of 4 layers x 8 heads x 64 neurons, hidden 32; heads cost `head_scale` x."""
    return LatencyModel(
        layers=4,
        hidden_grid=[16, 32],
        head_grid=[1, 4, 8],
        neuron_grid=[8, 32, 64],
        base=[2.0, 4.0],
        heads=[[0.0, 3.0 * head_scale, 7.0 * head_scale], [0.0, 6.0 * head_scale, 14.0 * head_scale]],
        neurons=[[0.0, 3.0, 7.0], [0.0, 6.0, 14.0]],
    )


class TableDevice:
    """A probe whose 'measurements' are another latency table: the device the model gets wrong."""

    def __init__(self, truth: LatencyModel, inventory: BlockInventory):
        self.truth, self.dense = truth, truth(inventory.heads, inventory.neurons, inventory.hidden)

    def speedup(self, shapes: dict) -> float:
        return self.dense / self.truth(shapes["heads"], shapes["neurons"], shapes["hidden_size"])


def test_speed_checks_bring_the_measured_speedup_to_the_request():
    inv = BlockInventory(heads=(8,) * 4, neurons=(64,) * 4, hidden=32, head_cost=32, neuron_cost=2)
    g = torch.Generator().manual_seed(0)
    scores = BlockScores(
        heads=[torch.rand(8, generator=g) for _ in range(4)],
        neurons=[torch.rand(64, generator=g) for _ in range(4)],
        hidden=torch.rand(32, generator=g),
    )
    believed = _table(1.0)  # the latency model: heads cheap
    device = TableDevice(_table(4.0), inv)  # on the device they cost 4x as much
    dense = believed(inv.heads, inv.neurons, inv.hidden)
    speed = SpeedCalibration(device, target=2.0, floor=0.1)

    def measured_plan() -> float:
        plan = plan_masks(inv, scores, speed.retain * dense, cost=believed, prune_hidden=False)
        shapes = {"heads": plan.kept_heads, "neurons": plan.kept_neurons, "hidden_size": plan.kept_hidden}
        return device.speedup(shapes), shapes

    for _ in range(4):  # the final re-plan: one step, so the checks combine
        _, shapes = measured_plan()
        if speed.met(speed.check(7, shapes, dense / believed(*shapes.values()))):
            break
    assert abs(speed.checks[0].measured / 2.0 - 1) > 0.1  # the latency model alone misses by > 10%
    assert measured_plan()[0] == pytest.approx(2.0, rel=0.05)
    assert speed.scale != 1.0 and 2 <= len(speed.checks) <= 4


class ConstantDevice:
    def __init__(self, value: float):
        self.value = value

    def speedup(self, shapes: dict) -> float:
        return self.value


def test_a_speed_check_moves_the_budget_by_at_most_its_step_limit_within_bounds():
    shapes = {"heads": [1], "neurons": [8], "hidden_size": 8}
    faster = SpeedCalibration(ConstantDevice(10.0), target=2.0, floor=0.2)
    faster.check(0, shapes, 2.0)
    assert faster.retain == pytest.approx(0.75)  # 0.5 x 1.5 (limited), not 0.5 x 5
    faster.check(1, shapes, 2.0)
    assert faster.retain == 1.0  # never above the dense model
    slower = SpeedCalibration(ConstantDevice(0.1), target=2.0, floor=0.4)
    slower.check(0, shapes, 2.0)
    assert slower.retain == pytest.approx(0.4)  # 0.5 / 1.5 is below the smallest allowed plan
    close = SpeedCalibration(ConstantDevice(2.05), target=2.0, floor=0.1)
    assert close.met(close.check(0, shapes, 2.0)) and close.retain == 0.5  # within 3%: kept
    again = SpeedCalibration(None, target=2.0, floor=0.4)
    again.load_state_dict(faster.state_dict())
    assert (again.scale, again.checks) == (faster.scale, faster.checks)


def test_checks_of_earlier_steps_do_not_bracket_the_request():
    shapes = {"heads": [1], "neurons": [8], "hidden_size": 8}
    device = ConstantDevice(3.3)
    speed = SpeedCalibration(device, target=3.0, floor=0.1)
    speed.check(0, shapes, 3.0)  # fast at 1/3: the budget grows 1.1x
    device.value = 2.7  # the scores moved on: the plan for the larger budget is slower
    speed.check(1, shapes, 3.0)
    assert speed.retain == pytest.approx(1 / 3 * 1.1 * 0.9)  # measured / asked, not a stale bracket


def test_the_speed_probe_times_a_twin_cut_to_the_shape():
    model = tiny_model("bert")
    probe = SpeedProbe(model, random_inputs(model, 2, 8), budget_s=0.5)
    family = family_for(model)
    inv = family.inventory(model)
    shapes = {"heads": [1] * len(inv.heads), "neurons": [8] * len(inv.neurons), "hidden_size": 8}
    twin = probe.build(shapes)
    cut = family.inventory(twin)
    assert (list(cut.heads), list(cut.neurons), cut.hidden) == (shapes["heads"], shapes["neurons"], 8)
    assert family.inventory(probe.build()) == inv and not twin.training
    assert probe.speedup(shapes) > 0


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
    checks = speed["speed_checks"]
    assert 3 <= len(checks) <= 5 and all(c["measured"] > 0 for c in checks)  # 3, the last up to 3 times
    assert speed["budget_scale"] == checks[-1]["scale"]
    final = 1.4 / speed["budget_scale"]  # the predicted speed-up of the final latency budget
    assert speed["predicted_speedup"] >= final * (1 - 1e-9)  # the export is within that budget
    assert result.metrics["sparsity"] > 0.1
    report = (result.output_dir / "report.md").read_text()
    assert "speed-up asked / predicted | 1.40x" in report
    assert "speed checks of the plan (measured)" in report
    (cached,) = (tmp_path / "cache" / "latency").glob("*.json")
    table = LatencyModel(**json.loads(cached.read_text())["table"])
    inv = BlockInventory(heads=(4,) * 3, neurons=(48,) * 3, hidden=32, head_cost=32, neuron_cost=2)
    p = AptuneConfig().pruning
    smallest = minimal_shape(
        inv, align=p.align, min_heads=p.min_heads_per_layer, min_neurons=p.min_neurons_per_layer
    )
    reach = table(inv.heads, inv.neurons, inv.hidden) / table(*smallest)
    beyond = f"pruning.target_speedup={reach * 1.2:.3f}"  # embeddings and the head do not shrink
    with pytest.raises(SetupError, match="out of reach"):
        train(apply_overrides(AptuneConfig(), [*overrides, beyond]), tmp_path / "no")
