"""Memory breakdown of APT training: where each phase's memory goes, against plain LoRA.

Part 1, per phase (each in its own process, the real model of the config, real Rotten Tomatoes
batches of its batch size and length, aptune's own training step): the bytes held by the weights
(frozen and trainable), the optimizer state, the weight copies (teacher, best state), the
salience scores and masks, and the activations autograd keeps for backward (every saved tensor's
storage, counted once), next to the memory in use (the process's resident memory on a CPU, torch's
allocated memory on a GPU): before the step, its peak during the step, after it, and after freed
memory is handed back (`malloc_trim` on a CPU, `empty_cache` on a GPU). Phases:

* lora: adapters and the classifier only (pruning off);
* dense warm-up: APT before salience collection (mask hooks installed, masks 1);
* salience (dense): masks still 1, salience and adapter importance collected;
* pruning window: masks half-way to a 70% target, salience collected;
* after shrink (60% kept): physically shrunk, masks hard, no collection;
* distillation (60% kept): as above with the teacher pass and the layer loss (mu = 1).

Part 2 (`--whole`): the config trained start to finish, and the same config as plain
LoRA, each in its own process: whole-process peak memory, the two memory curves of the history
(memory in use between steps, and the tensor memory of a logged step: weights, optimizer state,
copies and the activations saved for backward) with their level in the dense phase and at the end,
and the median step time of APT's dense phase, LoRA's over the same steps (both from the history
lines' elapsed time, a line every 5 steps; intervals that end on an evaluation or a pruning event
are left out).

    python benchmarks/memory.py [--steps 4] [--whole] [--config configs/smollm2-rotten-tomatoes.yaml]

The built-in MiniLM config by default (results/memory-<date>); another config writes
results/memory-<config's first word>-<date> (e.g. memory-smollm2); on a GPU the name ends in -gpu
(memory-gpu-<date>). On 2 CPU cores: MiniLM part 1 about 3 minutes, part 2 about 12; SmolLM2
part 1 about 8, part 2 about 20.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from accelerate import Accelerator
from common import in_own_processes, run_child, write_results

from aptune.adapter import AptLinear
from aptune.config import apply_overrides, load_config
from aptune.snapshot import WeightSnapshot
from aptune.timing import median_ms
from aptune.train.data import batches
from aptune.train.memory import current_memory_mb, peak_memory_mb, release_freed_memory, tensor_mb
from aptune.train.run import AptRun
from aptune.train.setup import load_model
from aptune.train.tasks import load_objective

CONFIG = Path(__file__).parents[1] / "configs" / "minilm-rotten-tomatoes.yaml"
PHASES = {
    "lora": ["pruning.enabled=false"],
    "dense warm-up": [],
    "salience (dense)": [],
    "pruning window": [],
    "after shrink (60% kept)": [],
    "distillation (60% kept)": ["distill.enabled=true"],
}
NOTE = (
    "Each phase in its own process; step ms is the median of a few steps there, so it is noisy: the "
    "whole runs' dense-phase step time (from their histories) is the figure to compare."
)


def _device() -> torch.device:
    """The device the runs train on (`Accelerator`'s choice), for the parent process's labels."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _in_use_mb(device: torch.device) -> float:
    """Memory in use now: allocated on a GPU, the resident set on a CPU."""
    return current_memory_mb(device)["memory_mb"]


def _reset_peak(device: torch.device) -> None:
    """Reset the peak mark: the allocator's on a GPU, the kernel's peak RSS (Linux:
    /proc/self/clear_refs) on a CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mb(device: torch.device) -> float:
    """The peak since the last `_reset_peak` in MB: allocated on a GPU, VmHWM on a CPU."""
    if device.type == "cuda":
        return peak_memory_mb(device)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _optimizer_tensors(optimizer: torch.optim.Optimizer):
    for state in optimizer.state.values():
        yield from (v for v in state.values() if isinstance(v, torch.Tensor))


def _run_at(phase: str, config: Path) -> tuple[AptRun, int, object]:
    """A run of `config` brought to `phase`, the step it trains at, and its batches."""
    cfg = apply_overrides(load_config(config), [*PHASES[phase], "train.max_steps=1000"])
    torch.manual_seed(0)
    task = load_objective(cfg)
    model, tokenizer = load_model(cfg.model, task)
    run = AptRun(cfg, model, tokenizer, task, Accelerator())
    data = batches(task.splits["train"], cfg.train.batch_size, True, 0, 0)
    if phase in ("lora", "dense warm-up"):
        return run, 0, data
    if phase == "salience (dense)":
        return run, run.collect_from, data
    run.train_step(next(data), run.start)  # one batch of salience to plan from
    if phase == "pruning window":
        run.pruner.replan(0.7)
        run.pruner.masks.step(0.5)
        return run, run.start + 1, data
    run.pruner.masks.set_hard(run.pruner.plan(0.6))
    run.shrink()
    if run.distilling:
        run.distill.teacher.snapshot = WeightSnapshot.take(run.trainable())
    return run, run.end + 1, data


def measure(phase: str, steps: int, config: Path) -> dict:
    """Component sizes, saved activations, memory in use and step time of one phase."""
    run, step, data = _run_at(phase, config)
    device = run.acc.device
    run.train_step(next(data), step)  # optimizer state exists from here on
    release_freed_memory(device)
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    before = _in_use_mb(device)
    _reset_peak(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run.train_step(next(data), step)
    peak, saved_mb = _peak_mb(device), tensor_mb(saved)
    saved.clear()  # the list kept the step's activations alive
    after = _in_use_mb(device)
    release_freed_memory(device)
    trimmed = _in_use_mb(device)
    step_ms = median_ms(lambda: run.train_step(next(data), step), device, warmup=1, runs=steps)
    model = run.model
    trainable = {id(p) for p in run.trainable()}
    adapters = [p for m in model.modules() if isinstance(m, AptLinear) for p in (m.lora_A, m.lora_B)]
    scores = run.pruner.scores.value if run.pruner is not None else None
    return {
        "frozen_mb": tensor_mb(p for p in model.parameters() if id(p) not in trainable),
        "trainable_mb": tensor_mb(run.trainable()),
        "adapters_mb": tensor_mb(adapters),
        "optimizer_mb": tensor_mb(_optimizer_tensors(run.optimizer)),
        "copies_mb": tensor_mb(t for s in run.snapshots() for t in s.values),
        "salience_mb": 0.0 if scores is None else tensor_mb([*scores.heads, *scores.neurons, scores.hidden]),
        "saved_for_backward_mb": saved_mb,
        "rss_before_mb": before,
        "step_peak_mb": peak,
        "rss_after_mb": after,
        "rss_trimmed_mb": trimmed,
        "step_ms": step_ms,
    }


def whole(config: Path, config_overrides: list[str], work: Path) -> dict:
    """Train `config` (with overrides) in its own process; peak, memory curve, time."""
    out = work / ("lora" if config_overrides else "apt")
    cmd = [sys.executable, "-m", "aptune.cli", "train", str(config), "--output-dir", str(out), "--overwrite",
           "--no-progress", "--set", "train.measure_speed=false", "train.log_every=5",
           *config_overrides]  # fmt: skip
    run_child(cmd)
    metrics = json.loads((out / "metrics.json").read_text())
    lines = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["memory_mb"]) for r in lines]
    # the level between training steps: lines written right after an evaluation or a cut read the
    # resident set just after freed memory went back to the system
    released = _after_release(lines)
    level = [(r["step"], r["memory_mb"]) for r, rel in zip(lines, released, strict=True) if not rel]
    tensors = [(r["step"], r["step_memory_mb"]) for r in lines if "step_memory_mb" in r]
    start = metrics["schedule"]["pruning_start"] or curve[-1][0]
    dense = [mb for s, mb in level if s <= start] or [level[0][1]]
    dense_tensors = [mb for s, mb in tensors if s <= start] or [tensors[0][1]]
    timed = [r for r in lines if "elapsed_s" in r]
    step_ms = [(b["step"], (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"]) * 1000)
               for a, b in itertools.pairwise(timed) if not (b.get("eval") or b.get("event"))]  # fmt: skip
    return {
        "pruning_start": metrics["schedule"]["pruning_start"],
        "peak_memory_mb": metrics["peak_memory_mb"],
        "peak_set_at": _peak_set_at(lines, metrics["schedule"]),
        "dense_level_mb": statistics.median(dense),
        "final_level_mb": level[-1][1],
        "after_release_mb": [r["memory_mb"] for r, rel in zip(lines, released, strict=True) if rel],
        "dense_tensors_mb": statistics.median(dense_tensors),
        "final_tensors_mb": tensors[-1][1],
        "step_ms": step_ms,
        "test_accuracy": metrics["test"].get("accuracy"),
        "curve": curve,
        "tensor_curve": tensors,
    }


def with_dense_step_ms(runs: dict[str, dict]) -> dict[str, dict]:
    """Each run with `dense_step_ms`: the median time per step of the intervals that end in APT's
    dense phase (up to its pruning start), so LoRA's figure covers the same steps; None where no
    interval ends there."""
    start = runs["apt"]["pruning_start"]
    out = {}
    for name, run in runs.items():
        times = [ms for step, ms in run["step_ms"] if start is None or step <= start]
        out[name] = {**run, "dense_step_ms": statistics.median(times) if times else None}
    return out


def _peak_set_at(lines: list[dict], schedule: dict) -> str:
    """Where the run's peak was set: the first history line whose running peak is the run's."""
    line = next(r for r in lines if r["peak_memory_mb"] >= lines[-1]["peak_memory_mb"])
    if line.get("final"):
        return "final evaluation"
    start, end, step = schedule["pruning_start"], schedule["pruning_end"], line["step"]
    phase = "dense" if start is None or step <= start else "window" if step <= end else "after"
    return f"step {line['step']} ({phase})"


def _after_release(lines: list[dict]) -> list[bool]:
    """For each history line, whether it was written right after freed memory went back to the
    system: after an evaluation, or after a cut (the physically present share fell)."""
    present = [r.get("physical", 1.0) for r in lines]
    return [
        "eval" in r or bool(r.get("final")) or (i > 0 and present[i] < present[i - 1])
        for i, r in enumerate(lines)
    ]


def _level() -> str:
    """What the memory-in-use columns read on this machine."""
    return "allocated" if _device().type == "cuda" else "RSS"


def _phase_table(rows: dict[str, dict]) -> list[str]:
    lora = rows["lora"]
    release = "after empty_cache" if _device().type == "cuda" else "after trim"
    lines = [
        "| phase | frozen | trainable | optimizer | copies | salience | saved for backward "
        f"| {_level()} before | step peak | vs LoRA | {release} | step ms | vs LoRA |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase, r in rows.items():
        lines.append(
            f"| {phase} | {r['frozen_mb']:.0f} | {r['trainable_mb']:.1f} | {r['optimizer_mb']:.1f} "
            f"| {r['copies_mb']:.1f} | {r['salience_mb']:.2f} | {r['saved_for_backward_mb']:.0f} "
            f"| {r['rss_before_mb']:.0f} | {r['step_peak_mb']:.0f} "
            f"| {r['step_peak_mb'] / lora['step_peak_mb']:.2f}x | {r['rss_trimmed_mb']:.0f} "
            f"| {r['step_ms']:.0f} | {r['step_ms'] / lora['step_ms']:.2f}x |"
        )
    return lines


def _step_ms_cells(ms: float | None, lora_ms: float | None) -> str:
    """The dense-phase step time and its ratio to LoRA's, as two table cells; n/a where a time is
    missing (fewer than two history lines in the dense phase)."""
    if ms is None:
        return "n/a | n/a"
    return f"{ms:.0f} | " + ("n/a" if lora_ms is None else f"{ms / lora_ms:.2f}x")


def _whole_table(runs: dict[str, dict]) -> list[str]:
    lora = runs["lora"]
    lines = [
        f"| run | peak MB | vs LoRA | peak set by | {_level()}: dense phase | end | change "
        "| step tensors: dense phase | end | change | dense step ms | vs LoRA | test acc |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        lines.append(
            f"| {name} | {r['peak_memory_mb']:.0f} | {r['peak_memory_mb'] / lora['peak_memory_mb']:.2f}x "
            f"| {r['peak_set_at']} | {r['dense_level_mb']:.0f} | {r['final_level_mb']:.0f} "
            f"| {r['final_level_mb'] / r['dense_level_mb'] - 1:+.0%} | {r['dense_tensors_mb']:.0f} "
            f"| {r['final_tensors_mb']:.0f} | {r['final_tensors_mb'] / r['dense_tensors_mb'] - 1:+.0%} "
            f"| {_step_ms_cells(r['dense_step_ms'], lora['dense_step_ms'])} "
            f"| {r['test_accuracy']:.4f} |"
        )
    return lines


def _suite(config: Path) -> str:
    """The results' name: `memory` for the built-in config, else `memory-<config's first word>`;
    `-gpu` added on a GPU."""
    name = "memory" if config.resolve() == CONFIG.resolve() else f"memory-{config.stem.split('-')[0]}"
    return f"{name}-gpu" if _device().type == "cuda" else name


BUILTIN_NAMES = {"builtin:minilm": "all-MiniLM-L6-v2", "builtin:smollm2": "SmolLM2-135M-Instruct"}


def _title(config: Path) -> str:
    cfg = load_config(config)
    name = cfg.model.name_or_path
    model = BUILTIN_NAMES.get(name, name)
    shape = f"batch {cfg.train.batch_size} x {cfg.data.max_length}"
    return f"**Memory per phase** ({model}, {shape}, {'GPU' if _device().type == 'cuda' else 'CPU'} fp32, MB)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per phase (default 4)")
    parser.add_argument("--whole", action="store_true", help="also train the config and its LoRA twin")
    parser.add_argument("--config", type=Path, default=CONFIG, help="config (default: built-in MiniLM)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.config)))
        return
    rows = in_own_processes(__file__, PHASES, args.steps, ("--config", str(args.config)))
    lines = [_title(args.config), "", *_phase_table(rows), "", NOTE]
    payload: dict = {"config": str(args.config), "steps": args.steps, "phases": rows}
    json_path, md_path = write_results(_suite(args.config), payload, "\n".join(lines))
    if args.whole:  # part 1 is already on disk, should the whole runs fail
        with tempfile.TemporaryDirectory() as tmp:
            runs = with_dense_step_ms(
                {
                    "lora": whole(args.config, ["pruning.enabled=false"], Path(tmp)),
                    "apt": whole(args.config, [], Path(tmp)),
                }
            )
        payload["whole"] = runs
        lines += ["", "**Whole runs of the config** (export timing off)", "", *_whole_table(runs)]
        json_path, md_path = write_results(_suite(args.config), payload, "\n".join(lines))
    print(md_path.read_text())
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
