"""Functions behind `aptune eval` and `aptune info`, usable from Python."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import transformers
from torch import nn

from .config import DataConfig
from .families import family_for
from .shrink import META_NAME, load_pruned
from .train.data import DataError, load_labelled_file, load_task
from .train.evaluate import evaluate


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
    """Accuracy, macro-F1, MCC and loss of an exported model on a labelled file or a named task split."""
    model, tokenizer, meta = load_model_dir(model_dir)
    info = meta.get("metadata", {})
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
    return evaluate(model, tokenizer, examples, batch_size, int(info.get("max_length", 128)))


def model_info(model_dir: str | Path) -> str:
    """A per-layer table of kept heads and FFN neurons, the hidden size, and parameter counts."""
    model = load_pruned(model_dir)
    family = family_for(model)
    inv = family.inventory(model)
    base = model.config.aptune["base_config"]
    heads0, neurons0 = base["num_attention_heads"], base["intermediate_size"]
    lines = [
        f"{Path(model_dir)}: {type(model).__name__} ({family.name} family)",
        f"hidden size {inv.hidden} / {base['hidden_size']}, head dim {family.head_dim(model)}",
        "",
        "| layer | heads | FFN neurons |",
        "|---|---|---|",
    ]
    for layer, (h, n) in enumerate(zip(inv.heads, inv.neurons, strict=True)):
        lines.append(f"| {layer} | {h} / {heads0} | {n} / {neurons0} |")
    total = sum(p.numel() for p in model.parameters())
    lines += ["", f"prunable parameters {inv.prunable_params():,}; total parameters {total:,}"]
    return "\n".join(lines)
