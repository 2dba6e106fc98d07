"""Functions behind `aptune eval` and `aptune info`, usable from Python."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
import transformers
from torch import nn

from .config import AptuneConfig, DataConfig
from .errors import AptuneError
from .families import family_for
from .shrink import META_NAME, base_config, load_pruned
from .train.data import DataError, load_labelled_file, load_pairs_file, load_task, load_text_pairs
from .train.evaluate import evaluate
from .train.lm_tasks import classification_prompts, perplexity, read_alpaca, read_text_blocks
from .train.objective import CausalLm, Seq2Seq, load_objective
from .train.seq2seq_tasks import Seq2SeqExample, text_to_label


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
    max_length = int(info.get("max_length", 128))
    objective = info.get("objective")
    if objective == "CausalLm" and not info.get("choices"):
        return _evaluate_lm(model, tokenizer, data, split, batch_size, max_length)
    if objective == "Seq2Seq" and not info.get("choices"):
        pairs = _pairs(data, split, text_column, target_column)
        examples = [Seq2SeqExample(info.get("source_prefix", "") + s, t) for s, t in pairs]
        return _evaluate_seq2seq(model, tokenizer, examples, info, batch_size, max_length)
    label_names = info.get("label_names") or [
        model.config.id2label[i] for i in range(model.config.num_labels)
    ]
    examples = _labelled(data, split, label_names, text_column, text_pair_column, label_column)
    if objective == "CausalLm":
        return _evaluate_choices(model, tokenizer, examples, info, batch_size, max_length)
    if objective == "Seq2Seq":
        prompts = text_to_label(examples, info["choices"], info["prompt_template"])
        return _evaluate_seq2seq(model, tokenizer, prompts, info, batch_size, max_length)
    return evaluate(model, tokenizer, examples, batch_size, max_length)


def _labelled(
    data: str,
    split: str,
    label_names: list[str],
    text_column: str,
    text_pair_column: str | None,
    label_column: str,
) -> list:
    """Labelled examples of a local file, or of a split of a named task with the model's labels."""
    if Path(data).exists():
        return load_labelled_file(data, label_names, text_column, text_pair_column, label_column)
    cfg = replace(
        DataConfig(),
        task=data,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
    )
    task = load_task(cfg)
    if [str(n) for n in task.label_names] != [str(n) for n in label_names]:
        raise DataError(
            f"the labels of {data!r} ({', '.join(task.label_names)}) differ from the model's "
            f"({', '.join(label_names)}); evaluate on data with the labels the model was trained on"
        )
    return task.splits[split]


def _pairs(data: str, split: str, text_column: str, target_column: str) -> list[tuple[str, str]]:
    """Source / target pairs of a local file, or of a split of a Hugging Face dataset."""
    if Path(data).exists():
        return load_pairs_file(data, text_column, target_column)
    cfg = replace(DataConfig(), task=data, text_column=text_column, target_column=target_column)
    return load_text_pairs(cfg).splits[split]


def _evaluate_seq2seq(model, tokenizer, examples, info: dict, batch_size: int, max_length: int) -> dict:
    """Exact match (text-to-label) or ROUGE (text pairs) of greedy generations."""
    objective = Seq2Seq(
        "eval",
        {"eval": examples},
        choices=info.get("choices"),
        max_target_length=int(info.get("max_target_length", 64)),
    )
    objective.bind(model)
    return objective.evaluate(model, tokenizer, "eval", batch_size, max_length)


def _evaluate_choices(model, tokenizer, examples, info: dict, batch_size: int, max_length: int) -> dict:
    """Classification as generation: score the label words after the model's prompt template."""
    words = [c[1:] for c in info["choices"]]
    prompts = classification_prompts(examples, words, info["prompt_template"])
    objective = CausalLm("eval", {"eval": prompts}, choices=info["choices"])
    return objective.evaluate(model, tokenizer, "eval", batch_size, max_length)


def _evaluate_lm(model, tokenizer, data: str, split: str, batch_size: int, max_length: int) -> dict:
    """Perplexity on an Alpaca JSON / JSONL file, a text file, or a split of the built-in Hamlet."""
    path = Path(data)
    if path.suffix in (".json", ".jsonl"):
        examples = read_alpaca(path)
    elif path.exists():
        examples = read_text_blocks(path, DataConfig().block_chars)
    else:
        cfg = AptuneConfig.from_dict(
            {"model": {"head": "causal-lm"}, "data": {"task": data, "task_type": "language-modeling"}}
        )
        examples = load_objective(cfg).splits[split]
    return perplexity(model, tokenizer, examples, max_length, batch_size)


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
