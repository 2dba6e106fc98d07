"""Shared helpers for the benchmark scripts: a proper timer, machine description, result files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

RESULTS = Path(__file__).parent / "results"


def median_ms(fn: Callable[[], object], warmup: int = 3, runs: int = 20) -> float:
    """Median wall time of `fn()` in milliseconds after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def write_results(suite: str, payload: dict, table: str) -> tuple[Path, Path]:
    """Write `<suite>-<date>.json` and `.md` under benchmarks/results/; returns both paths."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"{suite}-{dt.date.today().isoformat()}"
    json_path, md_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    payload = {
        "suite": suite,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(table + "\n")
    return json_path, md_path
