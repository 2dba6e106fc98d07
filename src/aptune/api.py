"""The functions behind `aptune eval`, `predict`, `info` and `lm-eval`, usable from Python."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
import transformers
from torch import nn

from .errors import AptuneError
from .families import family_for
from .onnx_runtime import is_onnx_export
from .shrink import META_NAME, WEIGHTS_NAME, base_config, load_pruned
from .train.data import DataError, EvalSource, Example, batches
from .train.setup import quiet_transformers
from .train.tasks import Classification, Objective

RUNTIMES = ("torch", "onnx")
"""What `evaluate_model` runs a model with: the torch export, or an ONNX export in onnxruntime."""
DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt")
"""File extensions that make a `data` value a local file (see :func:`is_path_like`)."""


def load_model_dir(model_dir: str | Path, device: str = "cpu") -> tuple[nn.Module, object, dict]:
    """The pruned model, its tokenizer and its `aptune.json` description, from a `model/` directory."""
    with quiet_transformers():
        model = load_pruned(model_dir, device=device)
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, config=model.config)
    meta = json.loads((Path(model_dir) / META_NAME).read_text(encoding="utf-8"))
    return model, tokenizer, meta


def is_path_like(data: str) -> bool:
    """Whether an evaluation `data` value names a local file rather than a task or hub dataset.

    It does when it exists, ends in a data-file extension (:data:`DATA_SUFFIXES`), starts with
    ``.``, ``/`` or ``~``, or holds a backslash. Task and hub dataset names (``rotten_tomatoes``,
    ``imdb``, ``glue/sst2``, ``owner/name/config``) do none of these.
    """
    return (
        Path(data).exists()
        or data.lower().endswith(DATA_SUFFIXES)
        or data.startswith((".", "/", "~"))
        or "\\" in data
    )


def _check_data_file(data: str) -> None:
    """Refuse a path-like `data` value whose file does not exist."""
    path = Path(data)
    if is_path_like(data) and not path.exists():
        where = "" if path.is_absolute() else f" (relative paths start at {Path.cwd()})"
        raise DataError(f"--data: file not found: '{data}'; fix the path in --data{where}")


def _with_baseline(metrics: dict[str, float], examples: Sequence) -> dict[str, float]:
    """`metrics` with ``majority_baseline`` after ``accuracy``: the accuracy of always predicting
    the most frequent label of `examples`."""
    counts = Counter(e.label for e in examples)
    baseline = max(counts.values()) / len(examples)
    out: dict[str, float] = {}
    for key, value in metrics.items():
        out[key] = value
        if key == "accuracy":
            out["majority_baseline"] = baseline
    return out


def evaluate_model(
    model_dir: str | Path,
    data: str,
    split: str = "test",
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    batch_size: int = 64,
    target_column: str = "target",
    majority_baseline: bool = False,
    runtime: str = "torch",
) -> dict[str, float]:
    """Metrics of an exported model on a data file or a named task split.

    Classifiers, causal LMs trained for classification and seq2seq models trained text-to-label
    report accuracy, macro-F1, MCC and loss (seq2seq: and exact match); causal LMs trained on
    instructions or text report perplexity on an Alpaca JSON/JSONL file, a text file, or a split of
    the built-in `hamlet` task; seq2seq models trained on text pairs report ROUGE on a file or a
    Hugging Face dataset split (`text_column` -> `target_column`). With `majority_baseline`, an
    accuracy is followed by ``majority_baseline``: the fraction of the most frequent label in the
    evaluated data, the accuracy of always predicting that label.

    `data` is a local file when :func:`is_path_like` says so (a leading ``~`` is expanded); such a
    file must exist.

    With ``runtime="onnx"``, `model_dir` is an ONNX export written by `aptune export --format onnx`
    (its `model.onnx`, or a `.onnx` file in it such as `model.int8.onnx`), run in onnxruntime and
    scored with the same code and data as the torch export.
    """
    data = os.path.expanduser(data)
    _check_data_file(data)
    model, tokenizer, meta = _load_for(model_dir, runtime)
    info = meta.get("metadata", {})
    objective = Objective.from_metadata(info, model.config)
    objective.bind(model)
    source = EvalSource(data, split, text_column, text_pair_column, label_column, target_column)
    examples = objective.splits[split] = objective.read_eval(source)
    metrics = objective.evaluate(model, tokenizer, split, batch_size, int(info.get("max_length", 128)))
    return _with_baseline(metrics, examples) if majority_baseline and "accuracy" in metrics else metrics


def _load_for(model_dir: str | Path, runtime: str) -> tuple[nn.Module, object, dict]:
    """The model, tokenizer and `aptune.json` of an export, for `runtime` (see :data:`RUNTIMES`)."""
    if runtime not in RUNTIMES:
        raise AptuneError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "onnx":
        from .onnx_runtime import load_onnx_dir

        return load_onnx_dir(model_dir)
    if is_onnx_export(Path(model_dir)) and not (Path(model_dir) / WEIGHTS_NAME).is_file():
        raise AptuneError(f"{model_dir} holds an ONNX export; evaluate it with --runtime onnx")
    return load_model_dir(model_dir)


def _check_single_text_classifier(model_dir: str | Path, meta: dict, objective: Objective) -> None:
    """Refuse exports that `predict` cannot label: generative models and text-pair classifiers."""
    if not isinstance(objective, Classification):
        raise AptuneError(
            f"{model_dir} holds a {meta.get('architecture', 'model')} ({type(objective).__name__} "
            "objective), not the sequence classifier (model.head classifier) that predict needs; score it "
            "with aptune eval, or load it with aptune.load_model_dir and call model.generate"
        )
    if objective.is_pair:
        raise AptuneError(
            f"{model_dir} classifies text pairs and predict labels single texts; score pair data with "
            "aptune eval --text-pair-column"
        )


def predict(
    model_dir: str | Path, texts: Sequence[str], batch_size: int = 32, device: str = "cpu"
) -> list[tuple[str, float]]:
    """The most probable label of each text and its probability, from an exported classifier.

    Texts are tokenised as in training (truncated to the export's ``max_length``). Causal LMs and
    encoder-decoders are refused: they generate text (load them with :func:`load_model_dir`).
    """
    model, tokenizer, meta = load_model_dir(model_dir, device=device)
    info = meta.get("metadata", {})
    objective = Objective.from_metadata(info, model.config)
    _check_single_text_classifier(model_dir, meta, objective)
    max_length = int(info.get("max_length", 128))
    predictions: list[tuple[str, float]] = []
    examples = [Example(text, 0) for text in texts]
    with torch.no_grad():
        for chunk in batches(examples, batch_size, shuffle=False, seed=0, epoch=0):
            enc = objective.encode(tokenizer, chunk, max_length)
            enc = {k: v.to(device) for k, v in enc.items() if k != "labels"}
            probs = model(**enc).logits.float().softmax(-1)  # (B, K)
            best = probs.max(-1)
            for label, prob in zip(best.indices.tolist(), best.values.tolist(), strict=True):
                predictions.append((objective.label_names[label], prob))
    return predictions


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
    Task data comes from the Hugging Face hub unless lm-eval is pointed at local copies. The model
    type is checked before lm-eval is imported.
    """
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
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError as exc:
        raise AptuneError(
            "lm-eval integration needs the lm-evaluation-harness: pip install 'lm-eval[hf]'"
        ) from exc
    model, tokenizer, _ = load_model_dir(model_dir, device=device)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    return lm_eval.simple_evaluate(model=lm, tasks=list(tasks), limit=limit, num_fewshot=num_fewshot)
