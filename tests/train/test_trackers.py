"""`train.report_to`: the history reaches experiment trackers (TensorBoard, read back offline)."""

from __future__ import annotations

import json

import pytest

from aptune.config import AptuneConfig, apply_overrides
from aptune.train.loop import train
from aptune.train.outputs import StepRecord, tracker_values
from aptune.train.setup import SetupError, check_trackers

from ..conftest import needs_minilm, needs_scattertext


def test_tracker_values_flatten_a_history_line():
    record = StepRecord(step=3, epoch=0.5, lr=1e-3, adapter_params=100, ranks={"layer.0.query": 8})
    record.eval, record.event, record.memory = {"accuracy": 0.75}, "replan", {"memory_mb": 512.0}
    values = tracker_values(record)
    assert values["ranks/layer.0.query"] == 8 and values["eval/accuracy"] == 0.75
    assert values["lr"] == 1e-3 and values["memory_mb"] == 512.0
    assert "event" not in values and all(isinstance(v, int | float) for v in values.values())


def test_a_tracker_that_is_not_installed_is_refused():
    with pytest.raises(SetupError, match="pip install swanlab"):
        check_trackers(["swanlab"])


@needs_minilm
@needs_scattertext
def test_tensorboard_gets_every_history_line(tiny_model_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = [
        f"model.name_or_path={tiny_model_dir}",
        "train.max_steps=12",
        "train.batch_size=8",
        "train.eval_every=6",
        "train.log_every=3",
        "train.measure_speed=false",
        "data.max_train_samples=96",
        "data.max_eval_samples=32",
        "data.max_length=32",
        "pruning.update_frequency=2",
        "pruning.mask_decay_rate=0.5",
        "pruning.start_step=2",
        "pruning.end_step=6",
        "train.report_to=[tensorboard]",
    ]
    out = tmp_path / "run"
    train(apply_overrides(AptuneConfig(), overrides), out, progress=False)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]

    events = EventAccumulator(str(next((out / "trackers").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"loss", "lr", "retained", "retain_target", "heads/0", "neurons/2", "memory_mb"}
    expected.add("eval/accuracy")
    assert expected <= tags
    assert any(tag.startswith("ranks/") for tag in tags)
    logged = {e.step: e.value for e in events.Scalars("retained")}
    assert logged == pytest.approx({line["step"]: line["retained"] for line in history})
