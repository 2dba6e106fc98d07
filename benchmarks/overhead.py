"""Overhead suite: per-step time and peak memory of APT's machinery against plain LoRA.

On the real MiniLM with real Rotten Tomatoes batches (32 x 64 tokens), each configuration runs in its
own process (so its peak memory is its own) through aptune's own training step:

* lora: adapters (r 8, query/value/intermediate) and the classifier, no pruning machinery;
* apt-hooks: + mask hooks with decaying masks and salience collection;
* apt-full: + self-distillation (teacher pass and layer loss) and importance tracking;
* apt-full at 80%, 60% and 40% of the prunable parameters (physically shrunk): how the step
  time falls as the model shrinks.

    python benchmarks/overhead.py [--steps 12]

About 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from common import in_own_processes, write_results

from aptune.config import apply_overrides, load_config
from aptune.snapshot import WeightSnapshot
from aptune.train.data import batches
from aptune.train.run import AptRun
from aptune.train.setup import load_model
from aptune.train.tasks import load_objective

CONFIG = Path(__file__).parents[1] / "configs" / "minilm-rotten-tomatoes.yaml"
CASES = {
    "lora": (["pruning.enabled=false"], 1.0),
    "apt-hooks": (["distill.enabled=false", "tuning.enabled=false"], 1.0),
    "apt-full": (["distill.enabled=true"], 1.0),
    "apt-full-80%": (["distill.enabled=true"], 0.8),
    "apt-full-60%": (["distill.enabled=true"], 0.6),
    "apt-full-40%": (["distill.enabled=true"], 0.4),
}


def measure(case: str, steps: int) -> dict:
    """Median step time and process peak memory of one case."""
    overrides, keep = CASES[case]
    cfg = apply_overrides(load_config(CONFIG), [*overrides, "train.max_steps=1000"])
    torch.manual_seed(0)
    task = load_objective(cfg)
    model, tokenizer = load_model(cfg.model, task)
    run = AptRun(cfg, model, tokenizer, task, Accelerator())
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
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        run.train_step(next(data), step)
        times.append((time.perf_counter() - start) * 1000)
    kept = run.pruner.prunable_params() / run.pruner.initial_params if run.pruner else 1.0
    return {
        "step_ms": statistics.median(times[2:]),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "prunable_kept": kept,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps)))
        return
    rows = in_own_processes(__file__, CASES, args.steps)
    lora = rows["lora"]
    lines = [
        "# Training-step overhead: APT machinery vs plain LoRA (MiniLM, batch 32 x 64, CPU fp32)",
        "",
        "| configuration | prunable kept | step ms | vs LoRA | peak MB | vs LoRA |",
        "|---|---|---|---|---|---|",
    ]
    for case, r in rows.items():
        lines.append(
            f"| {case} | {r['prunable_kept']:.0%} | {r['step_ms']:.0f} | "
            f"{r['step_ms'] / lora['step_ms']:.2f}x | {r['peak_memory_mb']:.0f} | "
            f"{r['peak_memory_mb'] / lora['peak_memory_mb']:.2f}x |"
        )
    lines += [
        "",
        f"Median of {args.steps} steps after 2 warm-up steps; peak memory is the process's peak RSS, which "
        "for the shrunk cases includes the one full-size step that collects their salience.",
    ]
    json_path, md_path = write_results("overhead", {"steps": args.steps, "rows": rows}, "\n".join(lines))
    print(md_path.read_text())
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
