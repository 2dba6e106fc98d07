"""The lm-evaluation-harness integration of `aptune.api` (lm-eval itself is optional)."""

import json
import subprocess
import sys
import types

import pytest
import torch
import transformers

from aptune.api import evaluate_model, is_path_like, run_lm_eval
from aptune.blocks import MaskPlan
from aptune.cli import main
from aptune.errors import AptuneError
from aptune.families import family_for
from aptune.shrink import load_pruned, save_pruned, shrink_model
from aptune.train.data import DataError, Example, read_text_blocks
from aptune.train.tasks import evaluate_classifier, perplexity

from .conftest import needs_minilm, write_csv

pytestmark = needs_minilm


@pytest.fixture
def pruned_llama_dir(tiny_llama_dir, tmp_path):
    """The tiny LLaMA with every second FFN neuron of layer 0 removed, exported with its tokenizer."""
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    inv = family_for(model).inventory(model)
    plan = MaskPlan(
        heads=[torch.ones(n, dtype=torch.bool) for n in inv.heads],
        neurons=[
            torch.arange(n) % 2 == 0 if i == 0 else torch.ones(n, dtype=torch.bool)
            for i, n in enumerate(inv.neurons)
        ],
        hidden=torch.ones(inv.hidden, dtype=torch.bool),
        params=-1,
    )
    shrink_model(model, plan)
    out = save_pruned(model, tmp_path / "model")
    transformers.AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(out)
    return out


@pytest.fixture
def fake_lm_eval(monkeypatch):
    """A stand-in lm_eval package recording what aptune hands to it."""
    calls = {}

    class HFLM:
        def __init__(self, pretrained, tokenizer, batch_size, device):
            calls["hflm"] = {"model": pretrained, "tokenizer": tokenizer, "batch_size": batch_size}

    def simple_evaluate(model, tasks, limit, num_fewshot):
        calls["evaluate"] = {"model": model, "tasks": tasks, "limit": limit, "num_fewshot": num_fewshot}
        return {"results": {t: {"acc,none": 0.25} for t in tasks}}

    package = types.ModuleType("lm_eval")
    package.simple_evaluate = simple_evaluate
    models = types.ModuleType("lm_eval.models")
    huggingface = types.ModuleType("lm_eval.models.huggingface")
    huggingface.HFLM = HFLM
    for name, module in (
        ("lm_eval", package),
        ("lm_eval.models", models),
        ("lm_eval.models.huggingface", huggingface),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_public_api_exports_the_decoder_helpers():
    import aptune

    assert aptune.run_lm_eval is run_lm_eval and callable(aptune.is_stock)


def test_import_aptune_loads_no_torch_and_keeps_train_a_function():
    code = (
        "import sys, aptune; heavy = {'torch', 'transformers'} & set(sys.modules); "
        "import aptune.train.loop; print(sorted(heavy), callable(aptune.train), aptune.predict.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "True", "aptune.api"]


def test_missing_lm_eval_names_the_install_command(pruned_llama_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(AptuneError, match=r"pip install 'lm-eval\[hf\]'"):
        run_lm_eval(pruned_llama_dir, ["arc_easy"])


def test_pruned_model_is_handed_to_lm_eval(pruned_llama_dir, fake_lm_eval):
    out = run_lm_eval(pruned_llama_dir, ["arc_easy", "hellaswag"], batch_size=4, limit=10)
    model = fake_lm_eval["hflm"]["model"]
    assert isinstance(model, transformers.LlamaForCausalLM)
    assert model.model.layers[0].mlp.down_proj.in_features == 48  # the pruned shape, rebuilt by aptune
    assert fake_lm_eval["hflm"]["batch_size"] == 4
    assert fake_lm_eval["evaluate"]["tasks"] == ["arc_easy", "hellaswag"]
    assert fake_lm_eval["evaluate"]["limit"] == 10
    assert out["results"]["hellaswag"]["acc,none"] == 0.25


def test_cli_lm_eval_writes_results(pruned_llama_dir, fake_lm_eval, tmp_path, capsys):
    assert main(["lm-eval", str(pruned_llama_dir), "--tasks", "arc_easy", "--limit", "0.5"]) == 0
    assert fake_lm_eval["evaluate"]["limit"] == 0.5
    written = json.loads((pruned_llama_dir.parent / "lm-eval.json").read_text())
    assert written["results"]["arc_easy"]["acc,none"] == 0.25
    assert "arc_easy: acc,none 0.2500" in capsys.readouterr().out


def test_classifier_is_refused(tmp_path, fake_lm_eval):
    from .conftest import tiny_model

    save_pruned(tiny_model("bert"), tmp_path / "m")
    with pytest.raises(AptuneError, match="does not hold an exported causal LM"):
        run_lm_eval(tmp_path / "m", ["arc_easy"])


def test_classifier_is_refused_for_its_type_before_lm_eval_is_needed(tmp_path, monkeypatch):
    from .conftest import tiny_model

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # not installed
    save_pruned(tiny_model("bert"), tmp_path / "m")
    with pytest.raises(AptuneError, match=r"does not hold an exported causal LM \(architecture Bert"):
        run_lm_eval(tmp_path / "m", ["arc_easy"])


def _export(model_dir, out, metadata) -> str:
    """A fresh copy of the tiny model in `model_dir`, exported with `metadata` and its tokenizer."""
    if "objective" in metadata:
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    else:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir)
    save_pruned(model, out, metadata)
    transformers.AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return str(out)


def test_evaluate_model_scores_a_classifier_export_as_its_objective(tiny_model_dir, tmp_path):
    out = _export(tiny_model_dir, tmp_path / "m", {"task": "reviews", "max_length": 16})  # no objective
    rows = [("a witty film", "LABEL_1"), ("dull", "LABEL_0"), ("flat jokes", "LABEL_0")]
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    metrics = evaluate_model(out, str(tmp_path / "d.csv"), batch_size=2)
    model, tokenizer = load_pruned(out), transformers.AutoTokenizer.from_pretrained(out)
    examples = [Example(t, int(y[-1])) for t, y in rows]
    assert metrics == evaluate_classifier(model, tokenizer, examples, 2, 16) and metrics["n"] == 3


def test_majority_baseline_follows_accuracy_when_asked(tiny_model_dir, tmp_path):
    out = _export(tiny_model_dir, tmp_path / "m", {"task": "reviews", "max_length": 16})
    rows = [("a witty film", "LABEL_1"), ("dull", "LABEL_0"), ("flat jokes", "LABEL_0")]
    data = write_csv(tmp_path / "d.csv", rows)
    plain = evaluate_model(out, data, batch_size=2)
    metrics = evaluate_model(out, data, batch_size=2, majority_baseline=True)
    keys = list(metrics)
    assert keys[keys.index("accuracy") + 1] == "majority_baseline"
    assert metrics.pop("majority_baseline") == pytest.approx(2 / 3) and metrics == plain


@pytest.mark.parametrize(
    ("data", "path_like"),
    [
        ("test.csv", True),
        ("data/dev.JSONL", True),
        ("./reviews", True),
        ("/tmp/x", True),
        ("~/x", True),
        ("rotten_tomatoes", False),
        ("imdb", False),
        ("glue/sst2", False),
        ("owner/name/config", False),
    ],
)
def test_eval_data_is_a_file_by_extension_or_leading_path_character(data, path_like):
    assert is_path_like(data) is path_like


def test_a_missing_data_file_is_reported_before_the_model_is_loaded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = r"--data: file not found: 'test.csv'; fix the path in --data \(relative paths start at"
    with pytest.raises(DataError, match=message):
        evaluate_model(tmp_path / "no-model", "test.csv")


def test_evaluate_model_reports_perplexity_of_a_causal_lm_export(tiny_llama_dir, tmp_path):
    metadata = {"objective": "CausalLm", "choices": None, "max_length": 24}
    out = _export(tiny_llama_dir, tmp_path / "m", metadata)
    text = tmp_path / "play.txt"
    text.write_text("To be, or not to be, that is the question.\nWhether tis nobler in the mind to suffer\n")
    metrics = evaluate_model(out, str(text), batch_size=1)
    model, tokenizer = load_pruned(out), transformers.AutoTokenizer.from_pretrained(out)
    expected = perplexity(model, tokenizer, read_text_blocks(text, 1000), 24, 1)
    assert metrics == pytest.approx(expected) and metrics["tokens"] > 10
