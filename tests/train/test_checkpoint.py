import hashlib
import json
import random
import shutil

import numpy as np
import pytest
import torch

from aptune.config import AptuneConfig, apply_overrides
from aptune.train.checkpoint import (
    _flatten,
    _unflatten,
    latest_checkpoint,
    read_state,
    remove_partial,
)
from aptune.train.loop import resume, train

from ..conftest import needs_minilm, needs_scattertext

pytestmark = [needs_minilm, needs_scattertext]

FAST = [
    "train.max_steps=12",
    "train.batch_size=8",
    "train.eval_every=6",
    "data.max_train_samples=96",
    "data.max_eval_samples=16",
    "data.max_length=32",
    "pruning.start_step=2",
    "pruning.end_step=8",
    "pruning.update_frequency=2",
    "pruning.mask_decay_rate=0.5",
    "train.measure_speed=false",
    "train.checkpoint_every=1",
    "train.keep_checkpoints=20",
]


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_json_and_tensors_round_trip_without_pickle():
    state = {
        3: {"step": torch.tensor(4.0), "exp_avg": torch.randn(2, 3)},
        ("head", 1): [torch.ones(2, dtype=torch.bool), None, 1.5, "x", float("inf")],
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    tensors: dict[str, torch.Tensor] = {}
    data = json.loads(json.dumps(_flatten(state, "s", tensors)))
    back = _unflatten(data, tensors)
    assert set(back) == {3, ("head", 1), "python", "numpy"}
    assert torch.equal(back[3]["exp_avg"], state[3]["exp_avg"]) and back[3]["step"].item() == 4.0
    assert back[("head", 1)][1:] == [None, 1.5, "x", float("inf")]
    random.setstate(back["python"])  # the restored states are accepted as they are
    np.random.set_state(back["numpy"])
    assert np.array_equal(back["numpy"][1], state["numpy"][1]) and back["numpy"][1].dtype == np.uint32
    with pytest.raises(TypeError, match="cannot checkpoint a object"):
        _flatten(object(), "s", {})


def _cfg(model_dir, *extra) -> AptuneConfig:
    return apply_overrides(AptuneConfig(), [f"model.name_or_path={model_dir}", *FAST, *extra])


def _resume_from(run, step: int, tmp_path):
    """Copy a finished run, keep its checkpoints up to `step`, drop its outputs, resume it."""
    copy = tmp_path / f"from-{step}"
    shutil.copytree(run, copy)
    for checkpoint in (copy / "checkpoints").glob("step-*"):
        if int(checkpoint.name[5:]) > step:
            shutil.rmtree(checkpoint)
    shutil.rmtree(copy / "model")
    (copy / "metrics.json").unlink()
    return resume(copy, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_t5_dir"])
def test_resume_after_a_shrink_equals_the_uninterrupted_run(fixture, request, tmp_path):
    model_dir = request.getfixturevalue(fixture)
    extra = ["model.head=seq2seq", "data.prompt_template='sentiment: {text}'"] if "t5" in fixture else []
    full = train(_cfg(model_dir, *extra), tmp_path / "run", progress=False)
    steps = sorted(int(p.name[5:]) for p in (tmp_path / "run" / "checkpoints").glob("step-*"))
    assert steps == list(range(1, 12))  # every step but the last (the export follows it)
    saved = {s: read_state(tmp_path / "run" / "checkpoints" / f"step-{s:06d}")["run"] for s in steps}
    shrunk = next(s for s in steps if saved[s]["shapes"] != full.metrics["initial_shapes"])
    again = _resume_from(tmp_path / "run", shrunk, tmp_path)
    assert _digest(again.model_dir / "model.safetensors") == _digest(full.model_dir / "model.safetensors")
    assert again.metrics["test"] == full.metrics["test"] and again.metrics["shapes"] == full.metrics["shapes"]


def test_rotation_keeps_the_newest_and_never_follows_links(tiny_model_dir, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step-000000").symlink_to(outside, target_is_directory=True)
    train(_cfg(tiny_model_dir, "train.keep_checkpoints=2"), run, overwrite=True, progress=False)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step-000000", "step-000010", "step-000011"]
    assert (outside / "data.txt").read_text() == "keep me"
    manifest = json.loads((run / "checkpoints" / "step-000011" / "manifest.json").read_text())
    assert manifest["step"] == 11 and set(manifest["files"]) == {
        "model.safetensors",
        "state.safetensors",
        "state.json",
    }
    (run / "checkpoints" / ".step-000012.tmp-abc").mkdir()
    assert [p.name for p in remove_partial(run)] == [".step-000012.tmp-abc"]
    assert latest_checkpoint(run).name == "step-000011"


def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(tiny_model_dir, tmp_path, caplog):
    run = tmp_path / "run"
    train(_cfg(tiny_model_dir, "train.keep_checkpoints=2"), run, progress=False)
    (run / "checkpoints" / "step-000011" / "state.json").write_text("{}")
    with caplog.at_level("WARNING", logger="aptune"):
        assert latest_checkpoint(run).name == "step-000010"
    assert "skipping checkpoint" in caplog.text and "state.json does not match its checksum" in caplog.text
