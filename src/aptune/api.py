"""Functions behind `aptune eval` and `aptune info`, usable from Python."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import transformers
from torch import nn

from .config import AptuneConfig, DataConfig
from .errors import AptuneError
from .families import family_for
from .shrink import META_NAME, load_pruned
from .train.data import DataError, load_labelled_file, load_task
from .train.evaluate import evaluate
from .train.lm_tasks import classification_prompts, perplexity, read_alpaca, read_text_blocks
from .train.objective import CausalLm, load_objective


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
) -> dict[str, float]:
    """Metrics of an exported model on a labelled file or a named task split.

    Classifiers and causal LMs trained for classification report accuracy, macro-F1, MCC and loss;
    causal LMs trained on instructions or text report perplexity on an Alpaca JSON/JSONL file, a
    text file, or a split of the built-in `hamlet` task.
    """
    model, tokenizer, meta = load_model_dir(model_dir)
    info = meta.get("metadata", {})
    if info.get("objective") == "CausalLm" and not info.get("choices"):
        return _evaluate_lm(model, tokenizer, data, split, batch_size, int(info.get("max_length", 128)))
    label_names = info.get("label_names") or [
        model.config.id2label[i] for i in range(model.config.num_labels)
    ]
    if Path(data).exists():
        examples = load_labelled_file(data, label_names, text_column, text_pair_column, label_column)
    else:
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
        examples = task.splits[split]
    max_length = int(info.get("max_length", 128))
    if info.get("objective") == "CausalLm":
        return _evaluate_choices(model, tokenizer, examples, info, batch_size, max_length)
    return evaluate(model, tokenizer, examples, batch_size, max_length)


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


def _group_note(base: dict) -> list[str]:
    kv, heads = base.get("num_key_value_heads"), base["num_attention_heads"]
    if not kv or kv == heads:
        return []
    return [f"grouped-query attention: each head unit is one KV head with its {heads // kv} query heads"]


def model_info(model_dir: str | Path) -> str:
    """A per-layer table of kept heads and FFN neurons, the hidden size, and parameter counts."""
    model = load_pruned(model_dir)
    family = family_for(model)
    inv = family.inventory(model)
    base = model.config.aptune["base_config"]
    heads0 = base.get("num_key_value_heads") or base["num_attention_heads"]
    neurons0 = base["intermediate_size"]
    lines = [
        f"{Path(model_dir)}: {type(model).__name__} ({family.name} family)",
        f"hidden size {inv.hidden} / {base['hidden_size']}, head dim {family.head_dim(model)}",
        *_group_note(base),
        "",
        "| layer | heads | FFN neurons |",
        "|---|---|---|",
    ]
    for layer, (h, n) in enumerate(zip(inv.heads, inv.neurons, strict=True)):
        lines.append(f"| {layer} | {h} / {heads0} | {n} / {neurons0} |")
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
