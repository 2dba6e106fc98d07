"""Overhead suite: per-step time and peak memory of APT's machinery against plain LoRA.

On real Rotten Tomatoes batches (32 x 64 tokens) through aptune's own training step, each
configuration in its own process (so its peak memory is its own). The model is the real MiniLM
(`--shape minilm`, the default) or a randomly initialised RoBERTa of roberta-base's shape
(`--shape roberta-base`: 12 layers, d 768, 12 heads, FFN 3072, vocabulary 50,265; the paper's
RoBERTa-base runs), fed the MiniLM tokenizer's ids. Configurations:

* lora: adapters (r 8, query/value/intermediate) and the classifier, no pruning machinery;
* apt-hooks: + mask hooks with decaying masks and salience collection;
* apt-full: + self-distillation (teacher pass and layer loss) and importance tracking;
* apt-full at 80%, 60% and 40% of the prunable parameters (physically shrunk): how the step
  time falls as the model shrinks.

    python benchmarks/overhead.py [--steps 12] [--shape roberta-base]

Runs on the GPU where one is visible: peak memory is then torch's peak allocation over the steps
after the first, else the process's peak RSS. Writes results/overhead-<date> (MiniLM on a CPU) or
results/overhead-<shape>-<cpu|gpu>-<date>. MiniLM: about 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import transformers
from accelerate import Accelerator
from common import in_own_processes, minilm, write_results

from aptune.config import apply_overrides, load_config
from aptune.snapshot import WeightSnapshot
from aptune.timing import median_ms
from aptune.train.data import batches
from aptune.train.memory import peak_memory_mb
from aptune.train.run import AptRun
from aptune.train.setup import load_model
from aptune.train.tasks import load_objective

CONFIG = Path(__file__).parents[1] / "configs" / "minilm-rotten-tomatoes.yaml"
ROBERTA_BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "vocab_size": 50265,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
}
CASES = {
    "lora": (["pruning.enabled=false"], 1.0),
    "apt-hooks": (["distill.enabled=false", "tuning.enabled=false"], 1.0),
    "apt-full": (["distill.enabled=true"], 1.0),
    "apt-full-80%": (["distill.enabled=true"], 0.8),
    "apt-full-60%": (["distill.enabled=true"], 0.6),
    "apt-full-40%": (["distill.enabled=true"], 0.4),
}


def roberta_base(folder: Path) -> Path:
    """Save a randomly initialised roberta-base-shaped classifier with the MiniLM tokenizer to
    `folder` (the tokenizer's ids all fall inside RoBERTa's vocabulary); returns `folder`."""
    _, tokenizer = minilm()
    config = transformers.RobertaConfig(**ROBERTA_BASE, num_labels=2, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    transformers.RobertaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def measure(case: str, steps: int, model_dir: str | None) -> dict:
    """Median step time and peak memory of one case (the model in `model_dir`, else MiniLM)."""
    overrides, keep = CASES[case]
    source = [f"model.name_or_path={model_dir}"] if model_dir else []
    cfg = apply_overrides(load_config(CONFIG), [*overrides, *source, "train.max_steps=1000"])
    torch.manual_seed(0)
    task = load_objective(cfg)
    model, tokenizer = load_model(cfg.model, task)
    run = AptRun(cfg, model, tokenizer, task, Accelerator())
    device = run.acc.device
    data = batches(task.splits["train"], 32, True, 0, 0)
    step = run.end  # inside the distillation phase (mu = 1)
    if run.pruner is not None:
        run.train_step(next(data), step)  # one batch of salience
        run.pruner.replan(keep if keep < 1 else 0.7)
        if keep < 1:
            run.pruner.masks.set_hard(run.pruner.plan(keep))
            run.shrink()
        else:
            run.pruner.masks.step(0.5)  # masks part-way: the masked code path is active
        run.distill.teacher.snapshot = WeightSnapshot.take(run.trainable())
    run.train_step(next(data), step)  # the first of two warm-up steps
    if device.type == "cuda":  # the GPU peak covers the second warm-up step and the timed ones
        torch.cuda.reset_peak_memory_stats(device)
    step_ms = median_ms(lambda: run.train_step(next(data), step), device, warmup=1, runs=steps)
    kept = run.pruner.prunable_params() / run.pruner.initial_params if run.pruner else 1.0
    return {
        "step_ms": step_ms,
        "peak_memory_mb": peak_memory_mb(device),
        "prunable_kept": kept,
        "device": str(device),
    }


def _suite(shape: str, device: str) -> str:
    """`overhead` for MiniLM on a CPU (the series so far), else `overhead-<shape>-<cpu|gpu>`."""
    kind = "gpu" if device.startswith("cuda") else "cpu"
    return "overhead" if (shape, kind) == ("minilm", "cpu") else f"overhead-{shape}-{kind}"


def _table(rows: dict[str, dict], shape: str, steps: int) -> list[str]:
    lora = rows["lora"]
    gpu = lora["device"].startswith("cuda")
    model = "MiniLM" if shape == "minilm" else "random roberta-base-shaped RoBERTa"
    lines = [
        f"# Training-step overhead: APT machinery vs plain LoRA ({model}, batch 32 x 64, "
        f"{'GPU' if gpu else 'CPU'} fp32)",
        "",
        "| configuration | prunable kept | step ms | vs LoRA | peak MB | vs LoRA |",
        "|---|---|---|---|---|---|",
    ]
    for case, r in rows.items():
        lines.append(
            f"| {case} | {r['prunable_kept']:.0%} | {r['step_ms']:.{1 if gpu else 0}f} | "
            f"{r['step_ms'] / lora['step_ms']:.2f}x | {r['peak_memory_mb']:.0f} | "
            f"{r['peak_memory_mb'] / lora['peak_memory_mb']:.2f}x |"
        )
    peak = (
        "torch's peak allocation over the steps after the first"
        if gpu
        else "the process's peak RSS, which for the shrunk cases includes the one full-size step "
        "that collects their salience"
    )
    return [*lines, "", f"Median of {steps} steps after 2 warm-up steps; peak memory is {peak}."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--shape", choices=["minilm", "roberta-base"], default="minilm")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.model_dir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        extra = ("--model-dir", str(roberta_base(Path(tmp)))) if args.shape == "roberta-base" else ()
        rows = in_own_processes(__file__, CASES, args.steps, extra)
    payload = {"shape": args.shape, "steps": args.steps, "rows": rows}
    table = "\n".join(_table(rows, args.shape, args.steps))
    json_path, md_path = write_results(_suite(args.shape, rows["lora"]["device"]), payload, table)
    print(md_path.read_text())
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
