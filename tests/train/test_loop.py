"""The training loop on a tiny random BERT (fast) with real review text."""

import json
import os
import stat

import pytest
import torch
import transformers

from aptune.config import AptuneConfig, apply_overrides
from aptune.shrink import load_pruned
from aptune.train.loop import train
from aptune.train.tasks import evaluate_classifier, load_objective

from ..conftest import SHORT_RUN, needs_minilm, needs_scattertext

pytestmark = [needs_minilm, needs_scattertext, pytest.mark.slow]  # end to end


def _cfg(model_dir, *extra) -> AptuneConfig:
    return apply_overrides(AptuneConfig(), [f"model.name_or_path={model_dir}", *SHORT_RUN, *extra])


def test_apt_run_prunes_grows_distils_and_exports(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir)
    result = train(cfg, tmp_path / "run", progress=False)
    m = result.metrics
    assert m["sparsity"] >= 0.5
    assert m["params"]["prunable_after"] <= 0.5 * m["params"]["prunable_before"]
    assert m["params"]["total_after"] < m["params"]["total_before"]
    assert m["inference"]["speedup"] > 0
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert any(line.get("mu", 0) > 0 and line.get("distill_layer") is not None for line in history)
    ranks = [sum(line["ranks"].values()) for line in history]
    assert ranks[-1] > ranks[0]  # adapters grew
    during = [line for line in history if not line.get("final")]
    assert during[-1]["physical"] < 1.0  # blocks were removed during training, not only at the end
    assert history[-1]["final"] and history[-1]["eval"] == m["validation"]
    assert all(0 < line["memory_mb"] <= 1.01 * m["peak_memory_mb"] for line in history)  # current RSS
    peaks = [line["peak_memory_mb"] for line in history]  # the peak so far: it only rises, to the run's
    assert peaks == sorted(peaks) and peaks[-1] == m["peak_memory_mb"]
    assert all(line["memory_mb"] <= 1.01 * line["peak_memory_mb"] for line in history)
    measured = [line for line in history if "step_memory_mb" in line]  # every log_every (4) steps
    assert sorted({line["step"] for line in measured}) == list(range(4, 25, 4))  # the final line too
    assert all(0 < line["step_memory_mb"] < line["memory_mb"] for line in measured)
    loaded = load_pruned(result.model_dir)
    assert sum(p.numel() for p in loaded.parameters()) == m["params"]["total_after"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(result.model_dir)
    test = load_objective(cfg).splits["test"]
    assert len(test) == 48 and m["test"]["n"] == 48
    assert evaluate_classifier(loaded, tokenizer, test, 16, 32) == m["test"]  # the export scores the same
    for name in ("metrics.json", "report.md", "retained.png", "config.yaml", "model/tokenizer.json"):
        assert (tmp_path / "run" / name).is_file(), name
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("metrics.json", "config.yaml", "model/model.safetensors", "model/config.json"):
        mode = stat.S_IMODE((tmp_path / "run" / name).stat().st_mode)
        assert mode == 0o666 & ~umask, f"{name} is {oct(mode)}: another user's server could not read it"
    assert stat.S_IMODE((tmp_path / "run" / "model").stat().st_mode) == 0o777 & ~umask


@pytest.mark.parametrize(
    "switch",
    ["distill.enabled=false", "tuning.enabled=false", "pruning.use_kurtosis=false", "pruning.enabled=false"],
)
def test_ablation_switches(tiny_model_dir, tmp_path, switch):
    result = train(_cfg(tiny_model_dir, switch), tmp_path / "run", progress=False)
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    if switch.startswith("distill"):
        assert all(line.get("distill_layer") is None for line in history)
    if switch.startswith("tuning"):
        assert {sum(line["ranks"].values()) for line in history} == {sum(history[0]["ranks"].values())}
    if switch.startswith("pruning.enabled"):
        assert result.metrics["sparsity"] == 0
    else:
        assert result.metrics["sparsity"] >= 0.5


def test_full_finetune_updates_every_weight(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, "model.finetune=full", "pruning.enabled=false", "train.max_steps=4")
    result = train(cfg, tmp_path / "run", progress=False)
    model = load_pruned(result.model_dir)
    original = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    changed = not torch.equal(
        model.bert.encoder.layer[0].attention.self.key.weight,
        original.bert.encoder.layer[0].attention.self.key.weight,
    )
    assert changed  # key is never adapted: only full fine-tuning changes it


def test_data_notes_and_schedule_problems_are_printed_before_training(tiny_model_dir, tmp_path, caplog):
    cfg = _cfg(
        tiny_model_dir, "train.max_steps=4", "pruning.mask_decay_rate=0.01", "train.measure_speed=false"
    )
    with caplog.at_level("WARNING", logger="aptune"):
        result = train(cfg, tmp_path / "run", progress=False)
    printed = [r.getMessage() for r in caplog.records]
    assert result.metrics["notes"] and all(f"aptune: {n}" in printed for n in result.metrics["notes"])
    assert any("does not fit 4 steps" in m for m in printed)
