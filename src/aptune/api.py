"""Functions behind `aptune eval` and `aptune info`, usable from Python."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from torch import nn

from .errors import AptuneError
from .families import family_for
from .shrink import META_NAME, base_config, load_pruned
from .train.data import EvalSource
from .train.tasks import Objective


def load_model_dir(model_dir: str | Path, device: str = "cpu") -> tuple[nn.Module, object, dict]:
    """The pruned model, its tokenizer and its `aptune.json` description, from a `model/` directory."""
    model = load_pruned(model_dir, device=device)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    meta = json.loads((Path(model_dir) / META_NAME).read_text(encoding="utf-8"))
    return model, tokenizer, meta


def evaluate_model(
    model_dir: str | Path,
    data: str,
    split: str = "test",
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    batch_size: int = 64,
    target_column: str = "target",
) -> dict[str, float]:
    """Metrics of an exported model on a data file or a named task split.

    Classifiers, causal LMs trained for classification and seq2seq models trained text-to-label
    report accuracy, macro-F1, MCC and loss (seq2seq: and exact match); causal LMs trained on
    instructions or text report perplexity on an Alpaca JSON/JSONL file, a text file, or a split of
    the built-in `hamlet` task; seq2seq models trained on text pairs report ROUGE on a file or a
    Hugging Face dataset split (`text_column` -> `target_column`).
    """
    model, tokenizer, meta = load_model_dir(model_dir)
    info = meta.get("metadata", {})
    objective = Objective.from_metadata(info, model.config)
    objective.bind(model)
    source = EvalSource(data, split, text_column, text_pair_column, label_column, target_column)
    objective.splits[split] = objective.read_eval(source)
    return objective.evaluate(model, tokenizer, split, batch_size, int(info.get("max_length", 128)))


def _unpruned(model_dir: Path, model: nn.Module) -> nn.Module:
    """The unpruned architecture of an exported model, on the meta device (shapes only)."""
    with torch.device("meta"):
        return type(model)(base_config(model_dir))


def _group_note(config) -> list[str]:
    kv, heads = getattr(config, "num_key_value_heads", None), config.num_attention_heads
    if not kv or kv == heads:
        return []
    return [f"grouped-query attention: each head unit is one KV head with its {heads // kv} query heads"]


def model_info(model_dir: str | Path) -> str:
    """Tables of kept heads and FFN neurons (per layer, or per attention module and per FFN for
    encoder-decoders), the hidden size, and parameter counts."""
    model = load_pruned(model_dir)
    family = family_for(model)
    inv = family.inventory(model)
    full = family.inventory(_unpruned(Path(model_dir), model))
    attention, ffn = family.block_labels(model)
    lines = [
        f"{Path(model_dir)}: {type(model).__name__} ({family.name} family)",
        f"hidden size {inv.hidden} / {full.hidden}, head dim {family.head_dim(model)}",
        *_group_note(base_config(Path(model_dir))),
        "",
    ]
    if attention == ffn:
        lines += ["| layer | heads | FFN neurons |", "|---|---|---|"]
        rows = zip(attention, inv.heads, full.heads, inv.neurons, full.neurons, strict=True)
        lines += [f"| {name.split()[-1]} | {h} / {h0} | {n} / {n0} |" for name, h, h0, n, n0 in rows]
    else:
        lines += ["| attention | heads |", "|---|---|"]
        lines += [f"| {a} | {h} / {h0} |" for a, h, h0 in zip(attention, inv.heads, full.heads, strict=True)]
        lines += ["", "| FFN | neurons |", "|---|---|"]
        lines += [f"| {f} | {n} / {n0} |" for f, n, n0 in zip(ffn, inv.neurons, full.neurons, strict=True)]
    total = sum(p.numel() for p in model.parameters())
    lines += ["", f"prunable parameters {inv.prunable_params():,}; total parameters {total:,}"]
    return "\n".join(lines)


def run_lm_eval(
    model_dir: str | Path,
    tasks: list[str],
    batch_size: int = 8,
    limit: int | float | None = None,
    num_fewshot: int | None = None,
    device: str = "cpu",
) -> dict:
    """Evaluate an exported causal LM with EleutherAI's lm-evaluation-harness (`pip install lm-eval[hf]`).

    The model is loaded with aptune's loader (any pruned shape, not only stock checkpoints) and
    handed to lm-eval's `HFLM` wrapper; returns `simple_evaluate`'s results (``results[task][metric]``).
    Task data comes from the Hugging Face hub unless lm-eval is pointed at local copies.
    """
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError as exc:
        raise AptuneError(
            "lm-eval integration needs the lm-evaluation-harness: pip install 'lm-eval[hf]'"
        ) from exc
    meta_path = Path(model_dir) / META_NAME
    architecture = (
        json.loads(meta_path.read_text(encoding="utf-8")).get("architecture", "")
        if meta_path.is_file()
        else ""
    )
    if not architecture.endswith("ForCausalLM"):
        raise AptuneError(
            f"{model_dir} does not hold an exported causal LM (architecture {architecture or 'unknown'}); "
            "lm-eval evaluates causal language models trained with model.head causal-lm"
        )
    model, tokenizer, _ = load_model_dir(model_dir, device=device)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    return lm_eval.simple_evaluate(model=lm, tasks=list(tasks), limit=limit, num_fewshot=num_fewshot)
