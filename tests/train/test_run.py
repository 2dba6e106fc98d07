"""AptRun's step: the kurtosis switch reaches the scores; under fp16 loss scaling (on the CPU,
through torch.amp.GradScaler) gradients are unscaled before salience, adapter importance and
clipping read them, and a step whose gradients overflowed changes no weight, optimizer state, score
or schedule."""

import itertools

import pytest
import torch
from accelerate import Accelerator

from aptune.config import AptuneConfig, apply_overrides
from aptune.train import run as run_module
from aptune.train.data import batches
from aptune.train.run import AptRun
from aptune.train.setup import load_model
from aptune.train.tasks import load_objective

from ..conftest import needs_minilm, needs_scattertext

pytestmark = [needs_minilm, needs_scattertext]

SETTINGS = [
    "train.max_steps=20", "train.batch_size=8", "data.max_train_samples=80", "data.max_eval_samples=16",
    "data.max_length=24", "pruning.update_frequency=4", "pruning.start_step=4", "pruning.end_step=12",
    "train.learning_rate=0.002", "train.measure_speed=false", "train.warmup_ratio=0.0",
]  # fmt: skip


def _run(model_dir, precision: str = "no", *extra: str) -> AptRun:
    cfg = apply_overrides(
        AptuneConfig(),
        [f"model.name_or_path={model_dir}", *SETTINGS, f"train.mixed_precision={precision}", *extra],
    )
    torch.manual_seed(0)
    objective = load_objective(cfg)
    model, tokenizer = load_model(cfg.model, objective)
    return AptRun(cfg, model, tokenizer, objective, Accelerator(cpu=True))


def _batches(run: AptRun):
    return itertools.cycle(batches(run.objective.splits["train"], 8, True, 0, 0))


def _weights(run: AptRun) -> list[torch.Tensor]:
    return [p.detach().clone() for p in run.trainable()]


def test_fp16_scaled_step_reads_unscaled_gradients(tiny_model_dir):
    plain, scaled = _run(tiny_model_dir, "no"), _run(tiny_model_dir, "fp16")
    assert not plain.scaler.is_enabled() and scaled.scaler.get_scale() == 65536.0
    for run in (plain, scaled):
        data = _batches(run)
        for step in range(2):  # inside the collection window: salience and importance are read
            run.train_step(next(data), step)
    a, b = plain.pruner.scores.value, scaled.pruner.scores.value
    for x, y in zip([*a.heads, *a.neurons, a.hidden], [*b.heads, *b.neurons, b.hidden], strict=True):
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-6)
    assert plain.importance.value.keys() == scaled.importance.value.keys()
    for name, value in plain.importance.value.items():
        assert scaled.importance.value[name] == pytest.approx(value, rel=1e-4)
    for x, y in zip(_weights(plain), _weights(scaled), strict=True):
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-6)


def test_fp16_overflowed_step_changes_nothing_and_the_next_one_trains(tiny_model_dir):
    run = _run(tiny_model_dir, "fp16")
    data = _batches(run)
    run.train_step(next(data), 0)
    before, scale = _weights(run), run.scaler.get_scale()
    moments = {id(p): run.optimizer.state[p]["exp_avg"].clone() for p in run.trainable()}
    salience_steps, importance = run.pruner.scores.steps, dict(run.importance.value)
    lr_steps = run.scheduler.last_epoch
    victim = next(iter(run.adapters.values())).lora_B
    hook = victim.register_hook(lambda g: g * float("inf"))  # a forced overflow in one gradient
    terms = run.train_step(next(data), 1)
    hook.remove()
    assert terms["skipped"] == 1.0
    assert run.scaler.get_scale() == scale / 2  # the scaler backs off
    assert all(torch.equal(x, p) for x, p in zip(before, run.trainable(), strict=True))
    assert all(torch.equal(moments[id(p)], run.optimizer.state[p]["exp_avg"]) for p in run.trainable())
    assert run.pruner.scores.steps == salience_steps and run.importance.value == importance
    assert run.scheduler.last_epoch == lr_steps
    terms = run.train_step(next(data), 2)
    assert terms["skipped"] == 0.0 and run.scheduler.last_epoch == lr_steps + 1
    assert run.pruner.scores.steps == salience_steps + 1
    assert all(torch.isfinite(p).all() for p in run.trainable())
    assert not all(torch.equal(x, p) for x, p in zip(before, run.trainable(), strict=True))


def test_the_kurtosis_switch_reaches_the_scores(tiny_model_dir):
    """Same weights and batch: the kurtosis term adds a positive amount to every block's score, so
    the run with it off must score strictly lower wherever the term is non-zero."""
    on, off = _run(tiny_model_dir), _run(tiny_model_dir, "no", "pruning.use_kurtosis=false")
    for run in (on, off):
        run.train_step(next(_batches(run)), 0)
    a, b = on.pruner.scores.value, off.pruner.scores.value
    assert off.pruner.salience.kurtosis_weight == 0 and on.pruner.salience.kurtosis_weight == 1.0
    assert all((x >= y).all() for x, y in zip(a.neurons, b.neurons, strict=True))
    assert any((x > y).any() for x, y in zip([*a.heads, *a.neurons], [*b.heads, *b.neurons], strict=True))


def test_a_schedule_that_cannot_finish_its_decay_is_reported(tiny_model_dir):
    assert _run(tiny_model_dir, "no", "pruning.mask_decay_rate=0.25").schedule_problems() == []
    (problem,) = _run(tiny_model_dir).schedule_problems()  # decay 0.01: 100 steps after step 12 of 20
    assert "does not fit 20 steps" in problem and "pruning.mask_decay_rate" in problem


def test_logged_steps_measure_tensor_memory_and_a_cut_reduces_it(tiny_model_dir):
    run = _run(tiny_model_dir, "no", "train.log_every=2")
    batch = next(_batches(run))
    run.train_step(batch, 0)  # its line is not logged: nothing measured
    assert run.measured_memory == (-1, {})
    run.train_step(batch, 1)
    dense = run.measured_memory[1]["step_memory_mb"]
    weights = sum(p.numel() * p.element_size() for p in run.model.parameters()) / 2**20
    assert dense > weights  # the activations saved for backward come on top of the weights
    assert run.status(2).memory["step_memory_mb"] == dense
    assert "step_memory_mb" not in run.status(3).memory  # a line of another step does not carry it
    run.apply_cut(run.pruner.plan(0.4))
    run.train_step(batch, 3)
    assert run.measured_memory[1]["step_memory_mb"] < 0.8 * dense


@pytest.mark.parametrize("hold", [True, False])
def test_a_cpu_run_holds_freed_memory_only_when_the_config_says(tiny_model_dir, monkeypatch, hold):
    calls = []
    monkeypatch.setattr(run_module, "hold_freed_memory", lambda: calls.append("held"))
    _run(tiny_model_dir, "no", f"train.hold_freed_memory={str(hold).lower()}")
    assert calls == (["held"] if hold else [])
