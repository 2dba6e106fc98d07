"""Tests of the run report: plots and Markdown written from a synthetic run directory."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from aptune.train import report as report_module
from aptune.train.report import write_report

PNGS = ("retained.png", "metric.png", "shapes.png", "ranks.png", "memory.png")
COMPONENTS = ("attention.query", "attention.value", "ffn.intermediate")
CONFIG = {
    "task": "rotten_tomatoes",
    "model": "minilm",
    "prune": {"target_sparsity": 0.6, "schedule": "cubic"},
    "adapter": {"rank": 2, "alpha": 16.0, "targets": ["query", "value", "intermediate"]},
    "seed": 7,
}


def history_lines(n: int = 20, with_eval: bool = True) -> list[dict]:
    """Three layers whose heads and neurons shrink linearly; ranks grow every 5 lines."""
    lines = []
    for i in range(n):
        frac = i / max(n - 1, 1)
        line = {
            "step": 10 * (i + 1),
            "epoch": i / 10,
            "lr": 1e-4,
            "loss": 1.0 - 0.03 * i,
            "task_loss": 0.9 - 0.03 * i,
            "distill_pred": None,
            "mu": 0.5,
            "retain_target": 1.0 - 0.6 * frac,
            "retained": 1.0 - 0.55 * frac,
            "physical": 1.0 - 0.3 * frac,
            "heads": [4 - round(frac * d) for d in (1, 2, 3)],
            "neurons": [48 - round(frac * d) for d in (8, 24, 40)],
            "hidden": 32 - round(frac * 8),
            "ranks": {
                f"layer.{layer}.{comp}": 2 + (4 if comp.startswith("ffn") else 2) * (i // 5)
                for layer in range(3)
                for comp in COMPONENTS
            },
            "adapter_params": 1000 + 100 * i,
            "elapsed_s": 1.5 * i,
            "memory_mb": 2000.0 - 50 * i,
        }
        if i % 2 == 0:
            line["step_memory_mb"] = 400.0 - 10 * i
        if i in (8, 14):
            line["event"] = "shrink"
        if with_eval and i % 5 == 4:
            line["eval"] = {"accuracy": 0.6 + 0.05 * i / 5, "macro_f1": 0.55 + 0.05 * i / 5, "mcc": 0.2}
        lines.append(line)
    return lines


def metrics_dict() -> dict:
    return {
        "task": "rotten_tomatoes",
        "model": "all-MiniLM-L6-v2",
        "test": {"accuracy": 0.876543, "macro_f1": 0.87},
        "validation": {"accuracy": 0.81234},
        "params": {
            "total_before": 22_713_216,
            "total_after": 15_000_000,
            "prunable_before": 10_000_000,
            "prunable_after": 4_000_000,
        },
        "sparsity": 0.6,
        "train_seconds": 3725.4,
        "peak_memory_mb": 2048.7,
        "inference": {
            "dense_ms": 12.345,
            "pruned_ms": 6.67,
            "speedup": 1.851,
            "ideal_speedup": 2.4,
            "batch_size": 32,
            "seq_len": 128,
            "device": "cpu",
        },
        "shapes": {"hidden_size": 24, "head_dim": 8, "heads": [3, 2, 1], "neurons": [40, 24, 8]},
        "initial_shapes": {"hidden_size": 32, "head_dim": 8, "heads": [4, 4, 4], "neurons": [48, 48, 48]},
        "config": CONFIG,
    }


def make_run(directory: Path, history: list[dict], metrics: dict | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in history))
    if metrics is not None:
        (directory / "metrics.json").write_text(json.dumps(metrics))
    return directory


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:4] == b"\x89PNG", path
    assert len(data) > 5000, path


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> tuple[Path, str]:
    run_dir = make_run(tmp_path_factory.mktemp("run"), history_lines(), metrics_dict())
    report = write_report(run_dir)
    assert report == run_dir / "report.md"
    return run_dir, report.read_text()


def test_writes_five_valid_pngs_and_nothing_else(full_run):
    run_dir, _ = full_run
    for name in PNGS:
        assert_png(run_dir / name)
    assert sorted(os.listdir(run_dir)) == sorted([*PNGS, "history.jsonl", "metrics.json", "report.md"])


def test_summary_table(full_run):
    _, text = full_run
    assert text.startswith("# APT report: rotten_tomatoes / all-MiniLM-L6-v2\n")
    assert "| test accuracy | 0.8765 |" in text
    assert "| validation accuracy | 0.8123 |" in text
    assert "| sparsity | 60.00% |" in text
    assert "22,713,216 → 15,000,000" in text
    assert "| prunable params | 10,000,000 → 4,000,000 (40.0% kept) |" in text
    assert "1:02:05" in text
    assert "2,049 MB" in text
    assert "| memory in use, first → last logged step | 2,000 MB → 1,050 MB (-48%) |" in text
    assert "| a step's tensor memory, first → last measured | 400 MB → 220 MB (-45%) |" in text
    assert "12.35 ms / 6.67 ms" in text
    assert "| speed-up measured / ideal | 1.85x / 2.40x |" in text


def test_layer_rows_and_hidden_size(full_run):
    _, text = full_run
    assert "| 0 | 3 / 4 | 40 / 48 | attention.query 8, attention.value 8, ffn.intermediate 14 |" in text
    assert "| 1 | 2 / 4 | 24 / 48 |" in text
    assert "| 2 | 1 / 4 | 8 / 48 |" in text
    assert "| 3 |" not in text
    assert "Hidden size: 32 → 24" in text


def test_plot_links_and_yaml_config(full_run):
    _, text = full_run
    for name in PNGS:
        stem = name.removesuffix(".png")
        assert f"![{stem}]({name})" in text
    block = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    assert yaml.safe_load(block.group(1)) == CONFIG
    assert block.group(1).startswith("task: rotten_tomatoes\n")  # key order kept


@pytest.mark.parametrize("missing", ["metrics.json", "history.jsonl"])
def test_missing_input_raises(tmp_path, missing):
    run_dir = make_run(tmp_path, history_lines(3), metrics_dict())
    (run_dir / missing).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        write_report(run_dir)
    assert not (run_dir / "report.md").exists()


def test_history_without_eval(tmp_path):
    run_dir = make_run(tmp_path, history_lines(8, with_eval=False), metrics_dict())
    text = write_report(run_dir).read_text()
    assert_png(run_dir / "metric.png")
    assert "| 0 | 3 / 4 | 40 / 48 |" in text


def test_single_sparse_line_and_shapes_from_history(tmp_path):
    metrics = metrics_dict()
    del metrics["initial_shapes"], metrics["shapes"], metrics["inference"]
    history = [{"step": 1, "loss": 0.7, "heads": [4, 3], "neurons": [10, 9], "hidden": 16}]
    run_dir = make_run(tmp_path, history, metrics)
    text = write_report(run_dir).read_text()
    for name in PNGS:
        assert_png(run_dir / name)
    assert "| 1 | 3 / 3 | 9 / 9 | n/a |" in text
    assert "Hidden size: 16 → 16" in text
    assert "| speed-up measured / ideal | n/a / n/a |" in text
    assert "| inference dense / pruned | n/a / n/a |" in text


def test_without_matplotlib(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    run_dir = make_run(tmp_path, history_lines(4), metrics_dict())
    text = write_report(run_dir).read_text()
    assert "plots skipped: pip install matplotlib" in text
    assert "![retained](retained.png)" not in text
    assert not any((run_dir / name).exists() for name in PNGS)


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, history_lines(4), metrics_dict())
    (run_dir / "report.md").write_text("old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report_module.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(run_dir)
    assert sorted(os.listdir(run_dir)) == ["history.jsonl", "metrics.json", "report.md"]
    assert (run_dir / "report.md").read_text() == "old"
