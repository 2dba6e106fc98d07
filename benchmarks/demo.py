"""The built-in default job, timed as a user runs it: `aptune train configs/minilm-rotten-tomatoes.yaml`
in a fresh process (imports, data, training, evaluation, timing and export included; the install
check of `make demo` is not).

    python benchmarks/demo.py

Writes results/demo-<date>.{json,md}: wall time of the command, training time, test accuracy,
sparsity and the exported model's measured CPU speed-up. The README's demo figures come from it
(benchmarks/figures.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_results

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "minilm-rotten-tomatoes.yaml"


def main() -> None:
    """Run the built-in job once and write its figures."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "run"
        argv = [
            sys.executable,
            "-m",
            "aptune",
            "train",
            str(CONFIG),
            "--output-dir",
            str(out),
            "--no-progress",
        ]
        started = time.perf_counter()
        subprocess.run(argv, check=True)
        wall = time.perf_counter() - started
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    row = {
        "config": CONFIG.name,
        "wall_seconds": wall,
        "train_seconds": metrics["train_seconds"],
        "test_accuracy": metrics["test"]["accuracy"],
        "sparsity": metrics["sparsity"],
        "speedup": metrics["inference"]["speedup"],
        "ideal_speedup": metrics["inference"]["ideal_speedup"],
        "peak_memory_mb": metrics["peak_memory_mb"],
    }
    table = "\n".join(
        [
            f"# Built-in job: aptune train configs/{CONFIG.name}",
            "",
            "| wall time | train time | test accuracy | sparsity | CPU speed-up (ideal) | peak RSS |",
            "|---|---|---|---|---|---|",
            f"| {wall:.0f} s | {row['train_seconds']:.0f} s | {row['test_accuracy']:.4f} "
            f"| {row['sparsity']:.1%} | {row['speedup']:.2f}x ({row['ideal_speedup']:.2f}x) "
            f"| {row['peak_memory_mb']:,.0f} MB |",
        ]
    )
    json_path, _ = write_results("demo", row, table)
    print(table)
    print(f"written: {json_path}")


if __name__ == "__main__":
    main()
