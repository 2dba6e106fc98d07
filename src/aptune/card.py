"""Model cards: the `README.md` of every export folder, in the Hugging Face Hub's model-card format.

A card has YAML front matter (`base_model`, `license`, `library_name`, `pipeline_tag`, `tags`) and
says what the model is and how it was made: base model, task and data, the key config options, the
sparsity and the kept heads / FFN neurons / hidden size per layer, adapter ranks, test metrics, the
measured speed-up with the machine it was measured on, and how to load it. Every figure comes from
the run's `metrics.json` (or the export's `aptune.json`), so the card and the metrics agree. Local
paths appear as their last component only (`shrink.portable_name`), as in the rest of an export.
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path

import yaml

from .atomic import write_text
from .shrink import portable_name

CARD_NAME = "README.md"
BUILTIN_HUB_IDS = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
"""The hub ids of the built-in models (`builtin:NAME`), for the card's `base_model`."""
PIPELINE_TAGS = {
    "ForSequenceClassification": "text-classification",
    "ForCausalLM": "text-generation",
    "ForConditionalGeneration": "text2text-generation",
}
AUTO_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "text-generation": "AutoModelForCausalLM",
    "text2text-generation": "AutoModelForSeq2SeqLM",
}
KEY_OPTIONS = (
    "model.finetune",
    "model.adapter.rank",
    "model.dtype",
    "pruning.enabled",
    "pruning.target_sparsity",
    "pruning.salience_type",
    "pruning.start_step",
    "pruning.end_step",
    "pruning.prune_hidden",
    "pruning.uniform_layers",
    "tuning.enabled",
    "tuning.max_rank",
    "distill.enabled",
    "train.epochs",
    "train.max_steps",
    "train.batch_size",
    "train.learning_rate",
    "train.seed",
    "data.max_length",
)
"""The config options a card lists (those present in the run's config)."""
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def machine_description(device: str = "cpu") -> str:
    """This machine in a few words: the GPU's name for a CUDA device, else the CPU and its cores."""
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA)"
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPU cores, {platform.system()}"


def _base_folder(name: str) -> Path | None:
    """The local folder of the base model `name` (a `builtin:` model or a path), if there is one."""
    from .assets import BUILTIN_PREFIX, builtin_model_path
    from .errors import AptuneError

    if name.startswith(BUILTIN_PREFIX):
        try:
            return builtin_model_path(name.removeprefix(BUILTIN_PREFIX))
        except AptuneError:  # an uninstalled built-in: the card then says the licence is unknown
            return None
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def front_matter(text: str) -> dict:
    """The YAML front matter of a Markdown model card (an empty dict when it has none)."""
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def base_license(name: str) -> str:
    """The licence of base model `name` from its folder's model card, or ``unknown``."""
    folder = _base_folder(name) if name else None
    card = folder / CARD_NAME if folder else None
    if card is None or not card.is_file():
        return "unknown"
    licence = front_matter(card.read_text(encoding="utf-8", errors="replace")).get("license")
    return str(licence) if licence else "unknown"


def base_hub_id(name: str) -> str | None:
    """The hub id of base model `name`: a built-in's id, a hub id as it is, or None for a local path."""
    from .assets import BUILTIN_PREFIX

    if name.startswith(BUILTIN_PREFIX):
        return BUILTIN_HUB_IDS.get(name.removeprefix(BUILTIN_PREFIX))
    if _HUB_ID.fullmatch(name) and not Path(name).expanduser().exists():
        return name
    return None


def _pipeline_tag(architecture: str) -> str | None:
    return next((tag for suffix, tag in PIPELINE_TAGS.items() if architecture.endswith(suffix)), None)


def _header(meta: dict, metrics: dict) -> str:
    """The YAML front matter."""
    base = str(metrics.get("model", ""))
    header: dict[str, object] = {}
    hub_id = base_hub_id(base)
    if hub_id:
        header["base_model"] = hub_id
    header["license"] = base_license(base)
    header["library_name"] = "transformers"
    tag = _pipeline_tag(meta.get("architecture", ""))
    if tag:
        header["pipeline_tag"] = tag
    header["tags"] = ["aptune", "pruning"]
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n"


def _fmt(value: object) -> str:
    """A figure as the card shows it: floats with 4 decimals, integers with thousands separators."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _option(config: dict, key: str) -> object:
    """The value of dotted `key` in a nested config dict (KeyError when absent)."""
    value: object = config
    for part in key.split("."):
        value = value[part]  # type: ignore[index]
    return value


def _data_lines(metrics: dict, config: dict, meta: dict) -> list[str]:
    data = config.get("data", {})
    info = meta.get("metadata", {})
    source = data.get("train_file") or data.get("task") or metrics.get("task") or info.get("task", "unknown")
    lines = [
        "## Base model, task and data",
        "",
        f"- base model: `{portable_name(str(metrics.get('model', 'unknown')))}`",
        f"- task: {metrics.get('task') or info.get('task', 'unknown')} ({info.get('objective', 'unknown')})",
        f"- training data: `{portable_name(str(source))}`",
    ]
    if info.get("label_names"):
        lines.append(f"- labels: {', '.join(map(str, info['label_names']))}")
    return [*lines, ""]


def _method_lines(config: dict) -> list[str]:
    lines = [
        "## Method and configuration",
        "",
        "Fine-tuned with adapters while blocks (attention heads, FFN neurons, hidden dimensions) were "
        "pruned away by salience (APT: Adaptive Pruning and Tuning); the adapters are merged into the "
        "weights.",
        "",
    ]
    options = []
    for key in KEY_OPTIONS:
        try:
            options.append(f"| `{key}` | {_fmt(_option(config, key))} |")
        except (KeyError, TypeError):
            continue
    if options:
        lines += ["| option | value |", "|---|---|", *options, ""]
    return lines


def _shape_table(shapes: dict, initial: dict | None) -> list[str]:
    """Kept heads and FFN neurons per layer (of the initial counts when known)."""

    def kept(key: str, i: int) -> str:
        now = shapes[key][i]
        return f"{now} / {initial[key][i]}" if initial else str(now)

    attention, ffn = shapes.get("attention_labels", []), shapes.get("ffn_labels", [])
    if attention == ffn:
        rows = [f"| {name} | {kept('heads', i)} | {kept('neurons', i)} |" for i, name in enumerate(attention)]
        return ["| layer | heads | FFN neurons |", "|---|---|---|", *rows]
    heads = [f"| {name} | {kept('heads', i)} |" for i, name in enumerate(attention)]
    neurons = [f"| {name} | {kept('neurons', i)} |" for i, name in enumerate(ffn)]
    return ["| attention | heads |", "|---|---|", *heads, "", "| FFN | neurons |", "|---|---|", *neurons]


def _shape_lines(metrics: dict, meta: dict) -> list[str]:
    shapes = metrics.get("shapes") or meta.get("shapes")
    if not shapes:
        return []
    initial = metrics.get("initial_shapes")
    lines = ["## Sparsity and shapes", ""]
    if "sparsity" in metrics:
        lines.append(f"- sparsity: {_fmt(metrics['sparsity'])} of the prunable parameters")
    params = metrics.get("params", {})
    if params:
        lines.append(
            f"- parameters: {_fmt(params['total_before'])} -> {_fmt(params['total_after'])} in all, "
            f"prunable {_fmt(params['prunable_before'])} -> {_fmt(params['prunable_after'])}"
        )
    hidden = f"{shapes['hidden_size']} / {initial['hidden_size']}" if initial else str(shapes["hidden_size"])
    lines += [f"- hidden size: {hidden}, head dim {shapes.get('head_dim')}", ""]
    return [*lines, *_shape_table(shapes, initial), ""]


def _rank_lines(ranks: dict[str, int] | None) -> list[str]:
    if not ranks:
        return []
    rows = [f"| {name} | {rank} |" for name, rank in ranks.items()]
    return ["## Adapter ranks", "", "At the end of training (merged into the weights).", "",
            "| adapter | rank |", "|---|---|", *rows, ""]  # fmt: skip


def _metric_lines(metrics: dict) -> list[str]:
    lines = []
    for split in ("test", "validation"):
        scores = metrics.get(split) or {}
        if scores:
            rows = [f"| {key} | {_fmt(value)} |" for key, value in scores.items()]
            lines += [f"## {split.capitalize()} metrics", "", "| metric | value |", "|---|---|", *rows, ""]
    return lines


def _speed_lines(metrics: dict) -> list[str]:
    speed = metrics.get("inference")
    if not speed:
        return []
    where = speed.get("machine") or speed.get("device", "unknown device")
    return [
        "## Inference speed",
        "",
        f"Measured at the end of training on {where} ({speed.get('device')}, {speed.get('dtype')}), "
        f"batch {speed.get('batch_size')} x {speed.get('seq_len')} tokens:",
        "",
        "| model | ms per batch |",
        "|---|---|",
        f"| dense | {_fmt(speed['dense_ms'])} |",
        f"| pruned | {_fmt(speed['pruned_ms'])} |",
        "",
        f"Speed-up {_fmt(speed['speedup'])}x (ideal, from the parameter counts: "
        f"{_fmt(speed['ideal_speedup'])}x).",
        "",
    ]


def _load_lines(meta: dict) -> list[str]:
    lines = [
        "## How to load it",
        "",
        "With aptune (any pruned shape):",
        "",
        "```python",
        "import aptune",
        "model, tokenizer, meta = aptune.load_model_dir('MODEL_DIR')",
        "```",
        "",
    ]
    if meta.get("stock_checkpoint"):
        auto = AUTO_CLASSES.get(_pipeline_tag(meta.get("architecture", "")), "AutoModel")
        lines += [
            "Its layers all have the same shapes, so stock transformers loads it too:",
            "",
            "```python",
            f"from transformers import {auto}, AutoTokenizer",
            f"model = {auto}.from_pretrained('MODEL_DIR')",
            "```",
            "",
        ]
    else:
        lines += ["Its layers have different shapes, which stock transformers cannot describe: load it with "
                  "`aptune.load_pruned`.", ""]  # fmt: skip
    lines += [
        "For ONNX Runtime (no aptune or torch at inference), export it with "
        "`aptune export MODEL_DIR --format onnx [--quantize int8]`.",
        "",
    ]
    return lines


def model_card(model_dir: str | os.PathLike, metrics: dict, config: dict, ranks: dict | None = None) -> str:
    """The model card of the export in `model_dir` (its `aptune.json`), with the figures of `metrics`
    (a run's `metrics.json`, possibly empty), the options of `config` and the adapter `ranks`."""
    meta_path = Path(model_dir) / "aptune.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    base = portable_name(str(metrics.get("model") or "a pretrained model"))
    intro = (
        f"A {meta.get('architecture', 'model')} ({meta.get('family', 'unknown')} family) fine-tuned from "
        f"`{base}` and structurally pruned with aptune."
    )
    body = [
        _header(meta, metrics),
        f"# {base.split('/')[-1]} pruned with aptune",
        "",
        intro,
        "",
        *_data_lines(metrics, config, meta),
        *_method_lines(config),
        *_shape_lines(metrics, meta),
        *_rank_lines(ranks),
        *_metric_lines(metrics),
        *_speed_lines(metrics),
        *_load_lines(meta),
    ]
    return "\n".join(body).rstrip("\n") + "\n"


def write_model_card(
    model_dir: str | os.PathLike, metrics: dict, config: dict, ranks: dict | None = None
) -> Path:
    """Write `model_dir/README.md` (see :func:`model_card`) atomically; returns its path."""
    path = Path(model_dir) / CARD_NAME
    write_text(path, model_card(model_dir, metrics, config, ranks))
    return path


def run_card(model_dir: str | os.PathLike) -> str:
    """The card of an export: its `README.md` when it has one, else one made from the run's
    `metrics.json` next to the folder (or from `aptune.json` alone)."""
    folder = Path(model_dir)
    if (folder / CARD_NAME).is_file():
        return (folder / CARD_NAME).read_text(encoding="utf-8")
    metrics_path = folder.resolve().parent / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    return model_card(folder, metrics, metrics.get("config", {}))
