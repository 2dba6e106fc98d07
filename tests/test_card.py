"""Model cards: Hub front matter that parses, and figures equal to the run's metrics."""

import json
import re

import pytest
import yaml

from aptune.card import front_matter, write_model_card
from aptune.config import AptuneConfig, apply_overrides
from aptune.families import family_for
from aptune.shrink import save_pruned, shapes_dict, shrink_model
from aptune.train.loop import train

from .conftest import needs_minilm, needs_scattertext, tiny_model
from .test_shrink import _random_plan


def _export(tmp_path, kind="bert"):
    """A pruned tiny model's export, and metrics shaped like a run's `metrics.json`."""
    model = tiny_model(kind)
    family = family_for(model)
    initial = shapes_dict(model, family)
    before = family.inventory(model).prunable_params()
    shrink_model(model, _random_plan(family.inventory(model), seed=3), family)
    after = family.inventory(model).prunable_params()
    path = save_pruned(
        model, tmp_path / "model", {"objective": "Classification", "label_names": ["a", "b", "c"]}
    )
    metrics = {
        "task": "rotten_tomatoes",
        "model": str(tmp_path / "base"),
        "test": {"accuracy": 0.812345, "macro_f1": 0.80111, "mcc": 0.6234, "loss": 0.4321, "n": 1066},
        "validation": {"accuracy": 0.79},
        "params": {"total_before": 1000, "total_after": 700,
                   "prunable_before": before, "prunable_after": after},
        "sparsity": 1 - after / before,
        "shapes": shapes_dict(model, family),
        "initial_shapes": initial,
        "inference": {"dense_ms": 12.5, "pruned_ms": 5.0, "speedup": 2.5, "ideal_speedup": 2.9,
                      "batch_size": 32, "seq_len": 64, "dtype": "float32", "device": "cpu",
                      "machine": "x86_64, 2 CPU cores, Linux"},
    }  # fmt: skip
    return path, metrics


def _rows(text: str, header: str) -> dict[str, list[str]]:
    """{first cell: other cells} of the Markdown table under the heading `header`."""
    section = text.split(f"## {header}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def test_card_front_matter_and_figures_equal_the_metrics(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "README.md").write_text("---\nlicense: mit\nlanguage: en\n---\n# base\n")
    path, metrics = _export(tmp_path)
    card = write_model_card(path, metrics, AptuneConfig().to_dict(), ranks={"layer.0.query": 8}).read_text()
    header = front_matter(card)
    assert header["license"] == "mit" and header["library_name"] == "transformers"
    assert header["pipeline_tag"] == "text-classification" and {"aptune", "pruning"} <= set(header["tags"])
    assert "base_model" not in header  # a local folder has no hub id
    test = _rows(card, "Test metrics")
    assert set(test) == set(metrics["test"])
    for key, value in metrics["test"].items():
        assert _number(test[key][0]) == pytest.approx(value, abs=5e-5)
    shapes, initial = metrics["shapes"], metrics["initial_shapes"]
    layers = _rows(card, "Sparsity and shapes")
    for i, name in enumerate(shapes["attention_labels"]):
        assert layers[name] == [f"{shapes['heads'][i]} / {initial['heads'][i]}",
                                f"{shapes['neurons'][i]} / {initial['neurons'][i]}"]  # fmt: skip
    sparsity = re.search(r"sparsity: ([0-9.]+)", card).group(1)
    assert float(sparsity) == pytest.approx(metrics["sparsity"], abs=5e-5)
    assert f"hidden size: {shapes['hidden_size']} / {initial['hidden_size']}" in card
    speed = _rows(card, "Inference speed")
    assert _number(speed["dense"][0]) == 12.5 and _number(speed["pruned"][0]) == 5.0
    assert "Speed-up 2.5000x" in card and "x86_64, 2 CPU cores, Linux" in card
    assert _rows(card, "Adapter ranks") == {"layer.0.query": ["8"]}
    assert "aptune.load_pruned" in card and "from_pretrained" not in card  # per-layer shapes
    assert str(tmp_path) not in card  # no local path of this machine


def test_card_of_a_stock_decoder_from_a_hub_model(tmp_path):
    model = tiny_model("llama")
    path = save_pruned(model, tmp_path / "model")  # nothing cut: stock transformers loads it
    card = write_model_card(path, {"model": "org/some-llama"}, {}).read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["base_model"] == "org/some-llama" and header["license"] == "unknown"
    assert header["pipeline_tag"] == "text-generation"
    assert "AutoModelForCausalLM.from_pretrained" in card
    assert "## Test metrics" not in card and "## Inference speed" not in card


@needs_minilm
@needs_scattertext
def test_a_run_writes_the_card_into_its_model_folder(tiny_model_dir, tmp_path):
    sets = [
        *("train.max_steps=3", "train.batch_size=8", "data.max_train_samples=64", "data.max_eval_samples=16"),
        *("data.max_length=32", "pruning.start_step=1", "pruning.end_step=2", "pruning.update_frequency=1"),
    ]
    cfg = apply_overrides(AptuneConfig(), [f"model.name_or_path={tiny_model_dir}", *sets])
    result = train(cfg, tmp_path / "run", progress=False)
    card = (result.model_dir / "README.md").read_text()
    assert front_matter(card)["tags"] == ["aptune", "pruning"]
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert "machine" in metrics["inference"] and metrics["inference"]["machine"] in card
    for key, value in _rows(card, "Test metrics").items():
        assert _number(value[0]) == pytest.approx(metrics["test"][key], abs=5e-5)
    assert set(_rows(card, "Test metrics")) == set(metrics["test"])
    assert _rows(card, "Adapter ranks")
