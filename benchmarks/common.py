"""Shared helpers for the benchmark scripts: real batches, one-shot plans, machine description, results."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
import transformers

from aptune.assets import builtin_model_path
from aptune.blocks import MaskPlan
from aptune.config import PruningConfig
from aptune.pruner import Pruner
from aptune.shrink import shrink_model
from aptune.train.data import rotten_tomatoes

RESULTS = Path(__file__).parent / "results"
# The built-in MiniLM config's pruning settings until 2026-12-04: the window from 10% to 60% of the
# steps, re-planned every 32 steps with masks fading over 32, no floor on heads. The benchmark rows
# measured with them name them, so that those rows keep their meaning now that the config prunes early.
WINDOW_10_60 = [
    "pruning.start_step=0.1",
    "pruning.end_step=0.6",
    "pruning.update_frequency=32",
    "pruning.mask_decay_rate=0.03125",
    "pruning.min_heads_per_layer=1",
]


def minilm(num_labels: int = 2) -> tuple[torch.nn.Module, object]:
    """The built-in MiniLM as a classifier (eval mode) and its tokenizer."""
    transformers.logging.set_verbosity_error()
    path = builtin_model_path("minilm")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    return model.eval(), transformers.AutoTokenizer.from_pretrained(path)


def review_batches(tokenizer, split: str, count: int, size: int = 32, length: int = 64) -> list[dict]:
    """`count` batches of real Rotten Tomatoes reviews, padded to `length` tokens, with labels."""
    examples = rotten_tomatoes()[split][: count * size]
    out = []
    for start in range(0, len(examples), size):
        chunk = examples[start : start + size]
        enc = tokenizer([e.text for e in chunk], padding="max_length", truncation=True, max_length=length,
                        return_tensors="pt")  # fmt: skip
        enc["labels"] = torch.tensor([e.label for e in chunk])
        out.append(dict(enc))
    return out


def salience_pruner(model: torch.nn.Module, batches: list[dict], **options) -> Pruner:
    """A Pruner whose scores are the mean per-batch salience of `batches` (hooks removed afterwards)."""
    pruner = Pruner(model, PruningConfig(mask_decay_rate=1.0, **options))
    for batch in batches:
        model.zero_grad()
        model(**batch).loss.backward()
        pruner.fold_batch(mean=True)
    pruner.hooks.remove()
    model.zero_grad()
    return pruner


def pruned_copy(model: torch.nn.Module, plan: MaskPlan) -> torch.nn.Module:
    """A physically shrunk deep copy of `model` keeping `plan`'s blocks."""
    clone = copy.deepcopy(model)
    shrink_model(clone, plan)
    return clone.eval()


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


def run_child(cmd: list[str]) -> str:
    """Run `cmd` and return its stdout; on failure, raise with the end of its stderr in the message
    (a benchmark's child process otherwise fails with nothing but its exit status)."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd)} exited with {done.returncode}:\n{tail}")
    return done.stdout


def in_own_processes(script: str, cases, steps: int, extra: tuple[str, ...] = ()) -> dict[str, dict]:
    """Run `python script --one CASE --steps STEPS *extra` once per case, each in a fresh process
    (so its peak memory is its own), and collect the JSON row each prints last."""
    rows = {}
    for case in cases:
        out = run_child([sys.executable, script, "--one", case, "--steps", str(steps), *extra])
        rows[case] = json.loads(out.strip().splitlines()[-1])
        print(case, rows[case], flush=True)
    return rows


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
