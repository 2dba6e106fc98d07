"""The step record behind history.jsonl and the progress bar."""

import json

import pytest

from aptune.train.outputs import (
    DistillStatus,
    LossWindow,
    PruningStatus,
    StepRecord,
    open_history,
    write_line,
)


def _record(**extra) -> StepRecord:
    return StepRecord(step=8, epoch=0.5, lr=1e-3, adapter_params=100, ranks={"q": 8}, **extra)


def test_a_record_is_one_flat_line_with_absent_parts_left_out():
    plain = _record(losses={"loss": 0.5, "task_loss": 0.5}).to_json()
    assert plain == {
        "step": 8, "epoch": 0.5, "lr": 1e-3, "adapter_params": 100, "ranks": {"q": 8},
        "loss": 0.5, "task_loss": 0.5, "elapsed_s": 0.0,
    }  # fmt: skip
    pruning = PruningStatus(0.6, 0.7, 0.9, [2, 3], [10, 12], 32)
    full = _record(
        pruning=pruning, distill=DistillStatus(None, False), event="replan", eval={"accuracy": 0.8}
    )
    line = full.to_json()
    assert line["retained"] == 0.7 and line["heads"] == [2, 3] and line["hidden"] == 32
    assert "teacher_score" in line and line["teacher_score"] is None and line["recovery"] is False
    assert line["event"] == "replan" and line["eval"] == {"accuracy": 0.8} and "final" not in line
    assert _record(memory={"memory_mb": 812.5}).to_json()["memory_mb"] == 812.5


def test_postfix_shows_loss_sparsity_and_the_latest_validation_score():
    record = _record(pruning=PruningStatus(0.6, 0.75, 0.9, [2], [10], 32), losses={"loss": 0.1234})
    assert record.postfix({}, "accuracy") == {"loss": "0.123", "sparsity": "0.25"}
    assert record.postfix({"accuracy": 0.81}, "accuracy")["val_accu"] == "0.810"  # says it is validation


def test_a_line_logs_the_mean_loss_of_the_steps_it_covers():
    window = LossWindow()
    for loss in (0.3, 0.6, 0.9):
        window.add({"loss": loss, "task_loss": 2 * loss})
    assert window.take() == pytest.approx({"loss": 0.6, "task_loss": 1.2})
    window.add({"loss": 1.0})
    assert window.take() == {"loss": 1.0}  # a new window


def test_history_is_cut_back_to_where_a_checkpoint_left_it(tmp_path):
    path = tmp_path / "history.jsonl"
    with open_history(path, None, True) as history:
        write_line(history, _record(losses={"loss": 1.0}))
        size = history.tell()
        write_line(history, _record(losses={"loss": 2.0}))
    with open_history(path, size, True) as history:
        write_line(history, _record(losses={"loss": 3.0}))
    assert [json.loads(line)["loss"] for line in path.read_text().splitlines()] == [1.0, 3.0]
