"""APT inside `transformers.Trainer` (aptune.prepare, AptCallback, AptTrainer): the same run as the
aptune loop, self-distillation and recovery under the Trainer, and the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers
from accelerate.utils import set_seed

import aptune
from aptune.config import AptuneConfig, apply_overrides
from aptune.errors import AptuneError
from aptune.shrink import load_pruned
from aptune.train.loop import train
from aptune.train.setup import load_model
from aptune.train.tasks import load_objective

from ..conftest import SHORT_RUN, needs_minilm, needs_scattertext

pytestmark = [needs_minilm, needs_scattertext]

SCHEDULE = [
    *SHORT_RUN,
    "train.eval_every=1000",  # no evaluation mid-run: the Trainer below evaluates none either
    "train.measure_speed=false",
    "distill.enabled=false",
]  # 192 examples: 24 full batches, so the Trainer's batches are the loop's


def _cfg(model_dir, *extra) -> AptuneConfig:
    return apply_overrides(AptuneConfig(), [f"model.name_or_path={model_dir}", *SCHEDULE, *extra])


class InOrder(torch.utils.data.IterableDataset):
    """The aptune loop's training examples in its batch order (epoch by epoch)."""

    def __init__(self, examples: list, cfg: AptuneConfig):
        self.examples, self.cfg = examples, cfg

    def __iter__(self):
        from aptune.train.data import batches

        t = self.cfg.train
        for epoch in range(t.max_steps):
            for batch in batches(self.examples, t.batch_size, True, t.seed, epoch):
                yield from batch


def _trainer(cfg: AptuneConfig, out: Path, aptune_optimizer: bool = True, **overrides):
    """A model prepared for APT and an AptTrainer over the config's data, built like the loop builds
    its run (same seed before the model and adapters are made)."""
    set_seed(cfg.train.seed)
    objective = load_objective(cfg)
    model, tokenizer = load_model(cfg.model, objective)
    apt = aptune.prepare(model, cfg, tokenizer)
    t = cfg.train
    args = transformers.TrainingArguments(
        output_dir=str(out / "hf"),
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=32,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=t.seed,
        logging_steps=4,
        disable_tqdm=True,
        **overrides,
    )

    def collate(examples):
        return objective.encode(tokenizer, examples, cfg.data.max_length)

    trainer = aptune.AptTrainer(
        model=model,
        args=args,
        train_dataset=InOrder(objective.splits["train"], cfg),
        eval_dataset=list(objective.splits["validation"]) if "validation" in objective.splits else None,
        data_collator=collate,
        callbacks=[apt],
        optimizers=apt.optimizers(t.max_steps) if aptune_optimizer else (None, None),
    )
    return apt, trainer, tokenizer


@pytest.fixture(scope="module")
def minilm_without_dropout(tmp_path_factory, minilm_dir) -> str:
    """The real MiniLM with its dropout off: the Trainer re-seeds torch's generator and its data
    loader draws from it, so dropout masks cannot match the loop's; everything else can."""
    path = tmp_path_factory.mktemp("minilm-no-dropout")
    for item in Path(minilm_dir).iterdir():
        if item.is_file():
            shutil.copy(item, path / item.name)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


@pytest.mark.slow  # two end-to-end runs of the real MiniLM
def test_trainer_export_equals_the_aptune_loop(minilm_without_dropout, tmp_path):
    cfg = _cfg(minilm_without_dropout)
    loop = train(cfg, tmp_path / "loop", progress=False)
    apt, trainer, tokenizer = _trainer(cfg, tmp_path / "trainer")
    trainer.train()
    exported = apt.export(tmp_path / "trainer-model", tokenizer, max_length=cfg.data.max_length)

    ours, theirs = load_pruned(loop.model_dir), load_pruned(exported)
    a, b = ours.state_dict(), theirs.state_dict()
    assert sorted(a) == sorted(b)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert sum(v.numel() for v in b.values()) < 0.9 * sum(
        p.numel() for p in transformers.AutoModel.from_pretrained(minilm_without_dropout).parameters()
    )
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    meta = json.loads((Path(exported) / "aptune.json").read_text())
    assert (
        meta["metadata"]["label_names"]
        == json.loads((loop.model_dir / "aptune.json").read_text())["metadata"]["label_names"]
    )
    assert aptune.predict(exported, ["a gripping, beautifully acted film"])[0][0] in {"negative", "positive"}


def test_distillation_and_recovery_run_under_the_trainer(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, "distill.enabled=true", "distill.after_pruning=0.5")
    apt, trainer, tokenizer = _trainer(
        cfg, tmp_path, aptune_optimizer=False, eval_strategy="steps", eval_steps=100, learning_rate=2e-3
    )
    run = apt.run
    lrs: list[float] = []
    teacher_scores: list[float | None] = []

    class Watch(transformers.TrainerCallback):
        def on_optimizer_step(self, args, state, control, **kwargs):  # the rate the step used
            lrs.append(run.optimizer.param_groups[0]["lr"])
            teacher_scores.append(run.distill.teacher.score)

    trainer.add_callback(Watch())
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]

    assert run.recovery_start is not None and run.recovering
    assert any(score is not None for score in teacher_scores)  # a teacher was chosen by evaluation
    assert any(entry.get("apt/mu", 0) > 0 for entry in logs)  # the loss mixed in the teacher
    assert {"apt/retained", "apt/adapter_params"} <= set(logs[-1])
    # every log (one per 4 steps) carries its step's tensor memory, measured by the aptune run
    assert all(0 < entry["apt/step_memory_mb"] < entry["apt/peak_memory_mb"] for entry in logs)
    assert run.measured_memory[0] == logs[-1]["step"]
    first = run.recovery_start
    # the recovery phase drives the rate: 0.1 x the initial one at most, from a fresh AdamW
    assert max(lrs[first:]) <= 0.1 * 2e-3 + 1e-12 < max(lrs[:first])
    assert logs[-1]["learning_rate"] == pytest.approx(lrs[-1])  # the log shows the rate in use
    model = apt.export(tmp_path / "model", tokenizer)
    assert load_pruned(model).config.hidden_size == run.model.config.hidden_size


def _prepared(model_dir, cfg, tmp_path, trainer_class=aptune.AptTrainer, **kwargs):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir)
    apt = aptune.prepare(model, cfg)
    args = transformers.TrainingArguments(str(tmp_path), max_steps=4, use_cpu=True, report_to=[])
    data = [{"input_ids": [1, 2, 3], "labels": 0}] * 8
    return trainer_class(model=model, args=args, train_dataset=data, callbacks=[apt], **kwargs)


def test_the_callback_needs_apt_trainer(tiny_model_dir, tmp_path):
    trainer = _prepared(tiny_model_dir, _cfg(tiny_model_dir), tmp_path, transformers.Trainer)
    with pytest.raises(AptuneError, match="AptTrainer"):
        trainer.train()


def test_distillation_without_eval_data_is_refused(tiny_model_dir, tmp_path):
    trainer = _prepared(tiny_model_dir, _cfg(tiny_model_dir, "distill.enabled=true"), tmp_path)
    with pytest.raises(AptuneError, match="eval_dataset"):
        trainer.train()


def test_export_before_training_is_refused(tiny_model_dir, tmp_path):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    apt = aptune.prepare(model, _cfg(tiny_model_dir))
    with pytest.raises(AptuneError, match=r"after trainer\.train"):
        apt.export(tmp_path / "model")


def test_a_causal_lm_prunes_under_the_trainer(tiny_llama_dir, tmp_path):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    cfg = apply_overrides(_cfg(tiny_llama_dir), ["pruning.align=1"])
    apt = aptune.prepare(model, cfg)
    before = apt.run.pruner.inventory()
    args = transformers.TrainingArguments(
        str(tmp_path), max_steps=24, use_cpu=True, report_to=[], learning_rate=2e-3, save_strategy="no"
    )
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (64, 16), generator=generator)
    data = [{"input_ids": row, "labels": row} for row in ids]
    aptune.AptTrainer(model=model, args=args, train_dataset=data, callbacks=[apt]).train()

    inventory = apt.run.family.inventory(apt.model)
    assert inventory.prunable_params() < 0.7 * before.prunable_params()
    meta = {"objective": "CausalLM", "task": "tokens"}
    exported = load_pruned(apt.export(tmp_path / "model", metadata=meta))
    batch = ids[:2]
    torch.testing.assert_close(exported(batch).logits, apt.model.eval()(batch).logits, rtol=1e-4, atol=1e-4)


def test_several_processes_are_refused(tiny_model_dir, tmp_path):
    trainer = _prepared(tiny_model_dir, _cfg(tiny_model_dir), tmp_path)
    with pytest.raises(AptuneError, match="one process"):  # as DDP's arguments say: 2 processes
        trainer.apt._check(SimpleNamespace(world_size=2), trainer.state)
