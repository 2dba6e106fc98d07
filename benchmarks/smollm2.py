"""SmolLM2 suite: APT at 30% sparsity against plain LoRA on the built-in causal-LM config.

Both runs use `configs/smollm2-rotten-tomatoes.yaml` (SmolLM2-135M-Instruct, Rotten Tomatoes
classification as generation, 160 steps of 16 reviews, the same 600 validation / 600 test reviews);
LoRA is the same run with `pruning.enabled=false` (same adapters, learning rate and steps). Each
run is its own `aptune train` process, so its peak memory (peak RSS on the CPU) is its own.

    python benchmarks/smollm2.py            # both runs, then the table (about 40 min on 2 CPU cores)
    python benchmarks/smollm2.py --reuse    # only read runs/smollm2-{apt,lora}/metrics.json if present
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import write_results

ROOT = Path(__file__).parents[1]
CONFIG = ROOT / "configs" / "smollm2-rotten-tomatoes.yaml"
RUNS = {"apt-0.3": [], "lora": ["pruning.enabled=false", "tuning.enabled=false"]}


def run_dir(name: str) -> Path:
    """Where the run of `name` writes its results."""
    return ROOT / "runs" / f"smollm2-{name.split('-')[0]}"


def train(name: str, reuse: bool) -> dict:
    """Run (or, with `reuse`, read) one configuration; returns its metrics."""
    out = run_dir(name)
    if not (reuse and (out / "metrics.json").is_file()):
        cmd = [sys.executable, "-m", "aptune", "train", str(CONFIG), "--output-dir", str(out), "--overwrite"]
        if RUNS[name]:
            cmd += ["--set", *RUNS[name]]
        subprocess.run(cmd, check=True)
    return json.loads((out / "metrics.json").read_text())


def row(name: str, m: dict) -> dict:
    """The figures of one run."""
    inference = m.get("inference", {})
    return {
        "method": name,
        "test_accuracy": m["test"]["accuracy"],
        "validation_accuracy": m["validation"]["accuracy"],
        "sparsity": m["sparsity"],
        "total_params": m["params"]["total_after"],
        "prunable_kept": m["params"]["prunable_after"] / m["params"]["prunable_before"],
        "train_seconds": m["train_seconds"],
        "peak_memory_mb": m["peak_memory_mb"],
        "speedup": inference.get("speedup"),
        "ideal_speedup": inference.get("ideal_speedup"),
        "pruned_ms": inference.get("pruned_ms"),
        "dense_ms": inference.get("dense_ms"),
    }


def table(rows: list[dict]) -> str:
    """Markdown table with ratios to LoRA."""
    lora = next(r for r in rows if r["method"] == "lora")
    lines = [
        "SmolLM2-135M-Instruct, Rotten Tomatoes as generation, 160 steps x 16 reviews, CPU fp32; "
        "600 test reviews. Speed-up (ideal in brackets): exported model vs dense, 32 real test prompts.",
        "",
        "| method | test acc | params kept | train time | vs LoRA | peak memory | vs LoRA | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speed = f"{r['speedup']:.2f}x ({r['ideal_speedup']:.2f}x)" if r["speedup"] else "n/a"
        lines.append(
            f"| {r['method']} | {r['test_accuracy']:.4f} | {r['prunable_kept']:.1%} of prunable, "
            f"{r['total_params'] / 1e6:.1f}M total | {r['train_seconds']:.0f} s | "
            f"{r['train_seconds'] / lora['train_seconds']:.2f}x | {r['peak_memory_mb']:,.0f} MB | "
            f"{r['peak_memory_mb'] / lora['peak_memory_mb']:.2f}x | {speed} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run or read both configurations and write results/smollm2-<date>.{json,md}."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reuse", action="store_true", help="read finished runs instead of training again")
    args = parser.parse_args()
    rows = [row(name, train(name, args.reuse)) for name in RUNS]
    text = table(rows)
    print(text)
    print("wrote", *write_results("smollm2", {"config": str(CONFIG.relative_to(ROOT)), "rows": rows}, text))


if __name__ == "__main__":
    main()
