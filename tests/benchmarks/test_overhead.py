"""The overhead suite's model shapes, result names and table (benchmarks/overhead.py)."""

import pytest
import transformers

from aptune.families import family_for

from ..conftest import load_benchmark


@pytest.fixture(scope="module")
def overhead():
    return load_benchmark("overhead")


def test_results_keep_the_minilm_cpu_series_and_name_every_other_shape_and_device(overhead):
    assert overhead._suite("minilm", "cpu") == "overhead"
    assert overhead._suite("minilm", "cuda:0") == "overhead-minilm-gpu"
    assert overhead._suite("roberta-base", "cpu") == "overhead-roberta-base-cpu"
    assert overhead._suite("roberta-base", "cuda") == "overhead-roberta-base-gpu"


def test_the_roberta_base_stand_in_loads_as_a_roberta_classifier_that_takes_minilm_ids(
    overhead, monkeypatch, tmp_path
):
    assert overhead.ROBERTA_BASE["hidden_size"] == 768 and overhead.ROBERTA_BASE["num_hidden_layers"] == 12
    small = {**overhead.ROBERTA_BASE, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 128}  # fmt: skip
    monkeypatch.setattr(overhead, "ROBERTA_BASE", small)
    folder = overhead.roberta_base(tmp_path / "roberta")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert model.config.model_type == "roberta" and model.config.num_labels == 2
    assert family_for(model) is not None
    ids = tokenizer(["a fresh, funny film", "rotten"], padding=True, return_tensors="pt")
    assert int(ids["input_ids"].max()) < small["vocab_size"]
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model(**ids).logits.shape == (2, 2)


def _row(step_ms: float, peak: float, device: str) -> dict:
    return {"step_ms": step_ms, "peak_memory_mb": peak, "prunable_kept": 1.0, "device": device}


def test_the_table_names_the_gpu_and_its_peak_and_gives_ratios_to_lora(overhead):
    rows = {"lora": _row(20.0, 1000, "cuda:0"), "apt-hooks": _row(25.0, 1500, "cuda:0")}
    lines = overhead._table(rows, "roberta-base", 30)
    assert "roberta-base-shaped" in lines[0] and "GPU fp32" in lines[0]
    assert "| apt-hooks | 100% | 25.0 | 1.25x | 1500 | 1.50x |" in lines
    assert "peak allocation" in lines[-1]
    cpu = overhead._table({"lora": _row(900.0, 1200, "cpu")}, "minilm", 12)
    assert "MiniLM" in cpu[0] and "CPU fp32" in cpu[0] and "peak RSS" in cpu[-1]
