"""ONNX export: onnxruntime's logits equal the torch export's for pruned models with different shapes
per layer, at any batch size and length; T5's greedy generation equals `generate()`; int8 keeps the
accuracy; the folder runs without aptune."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
import transformers

from aptune.api import evaluate_model
from aptune.families import family_for
from aptune.onnx_export import export_onnx, model_kind
from aptune.onnx_runtime import (
    ONNX_NAME,
    PAST_NAME,
    OnnxExportError,
    OnnxModel,
    OnnxSeq2Seq,
    int8_name,
    load_onnx_dir,
)
from aptune.shrink import load_pruned, save_pruned, shrink_model

from .conftest import SEQ2SEQ, TINY, needs_minilm, tiny_batch, tiny_model, write_csv
from .test_shrink import _random_plan

ort = pytest.importorskip("onnxruntime")

CLASSIFIER = {"objective": "Classification", "label_names": ["negative", "positive"], "max_length": 64}
TEXT_TO_LABEL = {**CLASSIFIER, "objective": "Seq2Seq", "choices": ["w5", "w6"], "prompt_template": "{text}"}
INT8_NAME = int8_name(ONNX_NAME)


@pytest.fixture(scope="module")
def tiny_tokenizer():
    """A word-level tokenizer over the tiny models' vocabulary (no download, no MiniLM needed)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i for i in range(2, TINY["vocab_size"])}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]"
    )


def _pruned_export(model, path, tokenizer, seed=3, metadata=None):
    """`model` cut by a random plan (different shapes per layer), saved with `tokenizer`."""
    family = family_for(model)
    shrink_model(model, _random_plan(family.inventory(model), seed=seed), family)
    assert len(set(family.inventory(model).heads)) > 1  # non-uniform layers
    save_pruned(model, path, metadata)
    tokenizer.save_pretrained(path)
    return path


def _onnx_logits(session, batch):
    names = {i.name for i in session.get_inputs()}
    feed = {k: v.numpy() for k, v in batch.items() if k in names}
    if "token_type_ids" in names and "token_type_ids" not in feed:
        feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
    return torch.from_numpy(session.run(["logits"], feed)[0])


def _assert_same_logits(model_dir, onnx_file, batches):
    torch_model = load_pruned(model_dir)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for batch in batches:
        with torch.no_grad():
            expected = torch_model(**batch).logits
        scale = float(expected.abs().max())  # 1e-4 relative to the logits' scale (some are near 0)
        torch.testing.assert_close(_onnx_logits(session, batch), expected, rtol=1e-4, atol=1e-4 * scale)


def _no_padding(batch: int, length: int) -> dict[str, torch.Tensor]:
    ids = torch.arange(batch * length).reshape(batch, length) % (TINY["vocab_size"] - 5) + 5  # (B, T)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize("kind", ["bert", "llama-gqa"])
def test_fp32_logits_equal_torch_at_any_batch_and_length(kind, tmp_path, tiny_tokenizer):
    model_dir = _pruned_export(tiny_model(kind), tmp_path / "model", tiny_tokenizer)
    out = export_onnx(model_dir, tmp_path / "onnx")
    batches = [
        tiny_batch(seed=1, batch=3, length=12),
        tiny_batch(seed=2, batch=5, length=7),
        _no_padding(2, 1),
    ]
    _assert_same_logits(model_dir, out / ONNX_NAME, batches)
    session = ort.InferenceSession(str(out / ONNX_NAME), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", "sequence"]


def _cache(outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The `past.*` feed for the next step, from a with-past graph's outputs after the logits."""
    count = len(outputs) // 2
    names = [f"past.{i}.{kv}" for i in range(count) for kv in ("key", "value")]
    return dict(zip(names, outputs, strict=True))


def test_decoder_with_past_continues_a_cache_like_the_full_forward(tmp_path, tiny_tokenizer):
    """`model_with_past.onnx` on a pruned GQA decoder: a prompt with an empty cache, then new tokens
    one and two at a time fed with the returned cache, give the full forward's logits."""
    model_dir = _pruned_export(tiny_model("llama-gqa"), tmp_path / "model", tiny_tokenizer)
    out = export_onnx(model_dir, tmp_path / "onnx")
    torch_model = load_pruned(model_dir)
    ids = _no_padding(2, 9)["input_ids"]  # (B, 9)
    with torch.no_grad():
        expected = torch_model(input_ids=ids).logits.numpy()  # (B, 9, V)
    onnx_model = OnnxModel(out / PAST_NAME, torch_model.config)  # an empty cache: the prompt's logits
    np.testing.assert_allclose(onnx_model(input_ids=ids[:, :6]).logits.numpy(), expected[:, :6], rtol=1e-4,
                               atol=1e-4 * float(np.abs(expected).max()))  # fmt: skip
    session = onnx_model.session
    empty = {n: np.zeros((2, h, 0, d), np.float32) for n, (h, d) in onnx_model.past.items()}
    done, cache = 0, empty
    for width in (6, 1, 2):
        span = slice(done, done + width)
        feed = {"input_ids": ids[:, span].numpy(), "attention_mask": np.ones((2, done + width), np.int64),
                "position_ids": np.arange(done, done + width)[None].repeat(2, 0), **cache}  # fmt: skip
        logits, *present = session.run(None, feed)
        np.testing.assert_allclose(
            logits, expected[:, span], rtol=1e-4, atol=1e-4 * float(np.abs(expected).max())
        )
        assert present[0].shape[2] == done + width
        done, cache = done + width, _cache(present)


def test_export_folder_holds_tokenizer_card_and_description(tmp_path, tiny_tokenizer):
    model_dir = _pruned_export(tiny_model("bert"), tmp_path / "model", tiny_tokenizer, metadata=CLASSIFIER)
    out = export_onnx(model_dir, tmp_path / "onnx", quantize="int8")
    for name in (ONNX_NAME, INT8_NAME, "tokenizer.json", "aptune.json", "config.json", "README.md"):
        assert (out / name).is_file(), name
    assert "model.int8.onnx" in (out / "README.md").read_text()
    assert not list(tmp_path.glob(".onnx*"))  # no temporary folder left behind


def _matmul_ops(path) -> dict[str, str]:
    """Op type of every (integer) matrix product of an ONNX file, by node name."""
    nodes = onnx.load(str(path)).graph.node
    return {n.name: n.op_type for n in nodes if n.op_type in ("MatMul", "MatMulInteger")}


def test_decoder_int8_keeps_the_outlier_projection_in_fp32(tmp_path, tiny_tokenizer):
    model_dir = _pruned_export(tiny_model("llama-gqa"), tmp_path / "model", tiny_tokenizer)
    out = export_onnx(model_dir, tmp_path / "onnx", quantize="int8")
    ops = _matmul_ops(out / INT8_NAME)
    down = {name: op for name, op in ops.items() if "/down_proj/" in name}
    assert down and set(down.values()) == {"MatMul"}
    assert {op for name, op in ops.items() if "/up_proj/" in name or "/q_proj/" in name} == {"MatMulInteger"}


def _card_snippet_output(out, text: str, result: str) -> object:
    """Run the model card's snippet in `out` with `text`, where torch, transformers and aptune cannot
    be imported, and return the value of its variable `result`."""
    snippet = (out / "README.md").read_text().split("```python\n")[-1].split("```")[0]
    code = "import sys\nfor name in ('torch', 'transformers', 'aptune'):\n    sys.modules[name] = None\n"
    code += snippet.replace('"a text"', repr(text)) + f"print(repr({result}))\n"
    run = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, check=True)
    return eval(run.stdout)


def test_the_card_snippet_runs_with_onnxruntime_alone(tmp_path, tiny_tokenizer):
    """The card's snippet (numpy, onnxruntime, tokenizers) gives the torch export's logits."""
    model_dir = _pruned_export(tiny_model("bert"), tmp_path / "model", tiny_tokenizer, metadata=CLASSIFIER)
    logits = _card_snippet_output(export_onnx(model_dir, tmp_path / "onnx"), "w5 w9 w7", "logits.tolist()")
    expected = load_pruned(model_dir)(**tiny_tokenizer(["w5 w9 w7"], return_tensors="pt")).logits
    torch.testing.assert_close(torch.tensor(logits), expected.detach(), rtol=1e-4, atol=1e-6)


def test_the_decoder_card_snippet_generates_like_generate(tmp_path, tiny_tokenizer):
    """The card's greedy loop with the key-value cache (onnxruntime alone) gives `generate()`'s tokens."""
    model_dir = _pruned_export(tiny_model("llama-gqa"), tmp_path / "model", tiny_tokenizer)
    tokens = _card_snippet_output(export_onnx(model_dir, tmp_path / "onnx"), "w5 w9 w7 w11", "tokens")
    model = load_pruned(model_dir)
    inputs = tiny_tokenizer(["w5 w9 w7 w11"], return_tensors="pt")
    expected = model.generate(**inputs, max_new_tokens=32, do_sample=False, num_beams=1)  # (1, 4 + new)
    assert len(tokens) > 5
    assert tokens == expected[0].tolist()


def test_the_t5_card_snippet_generates_like_generate(tmp_path, tiny_tokenizer):
    """The card's greedy loop for T5 (onnxruntime alone) gives `generate()`'s tokens."""
    model_dir = _pruned_export(tiny_model("t5"), tmp_path / "model", tiny_tokenizer)
    tokens = _card_snippet_output(export_onnx(model_dir, tmp_path / "onnx"), "w5 w9 w7 w11", "tokens")
    model = load_pruned(model_dir)
    inputs = tiny_tokenizer(["w5 w9 w7 w11"], return_tensors="pt")
    expected = model.generate(**inputs, max_new_tokens=32, do_sample=False, num_beams=1)  # (1, 1 + 32)
    assert len(tokens) > 2
    assert tokens == expected[0].tolist()


@pytest.mark.parametrize("kind", SEQ2SEQ)
def test_t5_graphs_give_torch_logits_and_greedy_generation(kind, tmp_path, tiny_tokenizer):
    model_dir = _pruned_export(tiny_model(kind), tmp_path / "model", tiny_tokenizer)
    out = export_onnx(model_dir, tmp_path / "onnx", quantize="int8")
    assert sorted(p.name for p in out.glob("*.onnx")) == [
        "decoder.int8.onnx", "decoder.onnx", "encoder.int8.onnx", "encoder.onnx"
    ]  # fmt: skip
    torch_model, (onnx_model, _, _) = load_pruned(model_dir), load_onnx_dir(out)
    assert isinstance(onnx_model, OnnxSeq2Seq)
    g = torch.Generator().manual_seed(0)
    for seed, batch_size, length, target in [(1, 3, 12, 1), (2, 1, 5, 6), (4, 4, 9, 3)]:
        batch = tiny_batch(seed=seed, batch=batch_size, length=length)
        decoder_ids = torch.randint(2, TINY["vocab_size"], (batch_size, target), generator=g)  # (B, S)
        with torch.no_grad():
            expected = torch_model(**batch, decoder_input_ids=decoder_ids).logits  # (B, S, V)
        got = onnx_model(**batch, decoder_input_ids=decoder_ids).logits
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    batch = tiny_batch(seed=3, batch=4, length=10)
    first = torch_model.generate(**batch, max_new_tokens=12, do_sample=False, num_beams=1)  # (B, 13)
    eos = int(first[0, 3])  # so that row 0 ends early and its tail is padding
    torch_model.generation_config.eos_token_id = onnx_model.config.eos_token_id = eos
    expected = torch_model.generate(**batch, max_new_tokens=12, do_sample=False, num_beams=1)
    got = onnx_model.generate(**batch, max_new_tokens=12)
    assert (expected == torch_model.config.pad_token_id)[:, 1:].any()  # a row finished before the others
    assert torch.equal(got, expected)
    _, _, _ = load_onnx_dir(out / "encoder.int8.onnx")  # the int8 pair loads by naming either file
    with pytest.raises(OnnxExportError, match="greedy only"):
        onnx_model.generate(**batch, max_new_tokens=2, num_beams=2)


def test_t5_onnx_export_scores_like_the_torch_export(tmp_path, tiny_tokenizer):
    """`evaluate_model(runtime="onnx")` scores a text-to-label T5 with generation and teacher-forced
    loss as the torch export is scored."""
    model_dir = _pruned_export(tiny_model("t5"), tmp_path / "model", tiny_tokenizer, metadata=TEXT_TO_LABEL)
    out = export_onnx(model_dir, tmp_path / "onnx")
    data = write_csv(tmp_path / "test.csv", _rows(24))
    expected, got = evaluate_model(model_dir, data), evaluate_model(out, data, runtime="onnx")
    assert got.keys() == expected.keys() and "exact_match" in got
    assert got["exact_match"] == expected["exact_match"]
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-4)


def _rows(n: int) -> list[tuple[str, str]]:
    return [(" ".join(f"w{(7 * i + j) % 100 + 2}" for j in range(i % 9 + 1)), ["negative", "positive"][i % 2])
            for i in range(n)]  # fmt: skip


def test_refuses_other_architectures_and_folders_it_would_overwrite(tmp_path, tiny_tokenizer):
    masked_lm = transformers.BertForMaskedLM(transformers.BertConfig(**TINY))
    with pytest.raises(OnnxExportError, match="holds a BertForMaskedLM; ONNX export supports"):
        model_kind(masked_lm, "somewhere")
    model_dir = _pruned_export(tiny_model("bert"), tmp_path / "model", tiny_tokenizer)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("precious")
    with pytest.raises(OnnxExportError, match="is not an ONNX export; choose another --output"):
        export_onnx(model_dir, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "precious"
    export_onnx(model_dir, tmp_path / "onnx")
    export_onnx(model_dir, tmp_path / "onnx")  # an earlier export is replaced


def test_onnx_runtime_model_scores_like_the_torch_export(tmp_path, tiny_tokenizer):
    model_dir = _pruned_export(tiny_model("bert", num_labels=2), tmp_path / "model", tiny_tokenizer,
                               metadata=CLASSIFIER)  # fmt: skip
    out = export_onnx(model_dir, tmp_path / "onnx")
    data = write_csv(tmp_path / "test.csv", _rows(40))
    expected = evaluate_model(model_dir, data)
    got = evaluate_model(out, data, runtime="onnx")
    assert got.keys() == expected.keys()
    assert got["accuracy"] == expected["accuracy"]
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    model, _, meta = load_onnx_dir(out / ONNX_NAME)
    assert meta["family"] == "bert" and model.names[:2] == ["input_ids", "attention_mask"]


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory, minilm_dir):
    """The real MiniLM cut by a random plan, with a classifier head fitted (ridge regression on its
    pooled features of 256 training reviews) so that its predictions mean something."""
    from aptune.train.data import rotten_tomatoes

    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    family = family_for(model)
    shrink_model(model, _random_plan(family.inventory(model), seed=2, hidden=False), family)
    train = rotten_tomatoes()["train"][::32][:256]
    enc = tokenizer(
        [e.text for e in train], padding=True, truncation=True, max_length=64, return_tensors="pt"
    )
    with torch.no_grad():
        pooled = model.bert(**enc).pooler_output  # (N, H)
    features = torch.cat([pooled, torch.ones(len(train), 1)], 1)  # (N, H + 1)
    targets = torch.nn.functional.one_hot(torch.tensor([e.label for e in train]), 2).float() * 2 - 1  # (N, 2)
    gram = features.T @ features + torch.eye(features.shape[1])  # ridge, lambda 1: (H + 1, H + 1)
    solution = torch.linalg.solve(gram, features.T @ targets)  # (H + 1, 2)
    model.classifier.weight.data, model.classifier.bias.data = solution[:-1].T.contiguous(), solution[-1]
    path = tmp_path_factory.mktemp("minilm") / "model"
    save_pruned(model, path, CLASSIFIER)
    tokenizer.save_pretrained(path)
    return path, export_onnx(path, path.parent / "onnx", quantize="int8")


@needs_minilm
def test_minilm_fp32_logits_equal_torch(minilm_export, review_batch):
    model_dir, out = minilm_export
    batch = {k: v for k, v in review_batch.items() if k != "labels"}
    shorter = {k: v[:5, :20] for k, v in batch.items()}
    _assert_same_logits(model_dir, out / ONNX_NAME, [batch, shorter])


@needs_minilm
def test_minilm_int8_keeps_accuracy_within_a_point(minilm_export, tmp_path):
    from aptune.train.data import rotten_tomatoes

    model_dir, out = minilm_export
    test = rotten_tomatoes()["test"][::3][:300]
    data = write_csv(tmp_path / "test.csv", [(e.text, CLASSIFIER["label_names"][e.label]) for e in test])
    torch_acc = evaluate_model(model_dir, data)["accuracy"]
    fp32 = evaluate_model(out, data, runtime="onnx")["accuracy"]
    int8 = evaluate_model(out / INT8_NAME, data, runtime="onnx")["accuracy"]
    assert torch_acc > 0.6  # the fitted head has learned something
    assert fp32 == torch_acc
    assert abs(int8 - fp32) <= 0.01
