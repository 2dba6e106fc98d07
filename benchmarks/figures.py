"""README figures from the committed result files: one source per number.

Every measured number the README quotes sits between `<!-- fig:NAME -->` and `<!-- /fig -->`;
`FIGURES` says which committed result in `results/` (the newest file of a suite) and which value
NAME is, formatted. Rewriting the README from the results keeps the figures from drifting apart;
the test suite checks that none is stale.

    python benchmarks/figures.py           # rewrite README.md from benchmarks/results/
    python benchmarks/figures.py --check   # list stale or unknown figures, exit 1 if any
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path

from common import WINDOW_10_60

from aptune.config import apply_overrides, load_config
from aptune.schedule import phase_steps

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
CONFIG = ROOT / "configs" / "minilm-rotten-tomatoes.yaml"
MARK = re.compile(r"<!-- fig:([\w.-]+) -->(.*?)<!-- /fig -->", re.S)


@cache
def latest(suite: str) -> dict:
    """The newest committed result of `suite` (`results/<suite>-<date>.json`)."""
    files = sorted(RESULTS.glob(f"{suite}-20??-??-??.json"))
    if not files:
        raise FileNotFoundError(f"no committed result of the {suite} suite in {RESULTS}")
    return json.loads(files[-1].read_text(encoding="utf-8"))


def _row(suite: str, **match) -> dict:
    """The row of `suite`'s newest result whose fields equal `match`."""
    rows = latest(suite)["rows"]
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    if len(found) != 1:
        raise KeyError(f"{suite}: {len(found)} rows match {match}")
    return found[0]


def _speed(sparsity: float, align: int) -> float:
    return _row("speed", device="cpu", target_sparsity=sparsity, align=align)["speedup"]


def _of_ideal(align: int) -> list[float]:
    rows = [r for r in latest("speed")["rows"] if r["device"] == "cpu" and r["align"] == align]
    return [r["of_ideal"] for r in rows]


RB = "overhead-roberta-base-cpu"
RB_GPU = "overhead-roberta-base-gpu"
# the GPU suites' first run, before the salience cache (2026-12-04)
LLAMA_BEFORE, RB_GPU_BEFORE, MEMORY_GPU_BEFORE = (
    f"{suite}-before-cache" for suite in ("llama-gpu", RB_GPU, "memory-gpu")
)


def _overhead(name: str, field: str, suite: str = "overhead") -> float:
    """A case's step time or peak memory over LoRA's in an overhead suite (`overhead`: MiniLM on a
    CPU; `overhead-roberta-base-cpu`: benchmarks/overhead.py --shape roberta-base)."""
    rows = latest(suite)["rows"]
    return rows[name][field] / rows["lora"][field]


def _memory(run: str, field: str, suite: str = "memory") -> float:
    """A field of a whole run in a memory suite (benchmarks/memory.py --whole; `memory-smollm2`
    with --config configs/smollm2-rotten-tomatoes.yaml)."""
    return latest(suite)["whole"][run][field]


def _phase_drop(field: str) -> float:
    """How much `field` of the memory suite falls from the LoRA phase to the shrunk one."""
    phases = latest("memory")["phases"]
    return phases["lora"][field] - phases["after shrink (60% kept)"][field]


def _llama(case: str, field: str, suite: str = "llama-gpu") -> float:
    """A case's step time or peak memory over LoRA's in benchmarks/llama_gpu.py's result."""
    train = latest(suite)["train"]
    return train[case][field] / train["lora"][field]


def _step_ms(suite: str, case: str) -> float:
    """A case's step time in an overhead suite, in ms."""
    return latest(suite)["rows"][case]["step_ms"]


def _memory_ratio(field: str, suite: str = "memory") -> str:
    return f"{_memory('apt', field, suite) / _memory('lora', field, suite):.2f}x"


def _memory_change(dense: str, final: str, suite: str = "memory") -> str:
    """How far a figure of the APT run ends below (or above) its dense-phase level."""
    return f"{_memory('apt', final, suite) / _memory('apt', dense, suite) - 1:+.0%}"


def _smollm2(method: str) -> dict:
    return _row("smollm2", method=method)


def _quality_path(method: str, seed: int, epochs: int = 3) -> Path:
    """Where the quality suite commits `method`'s row for `seed` (benchmarks/quality.py)."""
    return RESULTS / "quality-rows" / f"epochs-{epochs}" / f"seed-{seed}" / f"{method}.json"


def _quality(method: str, seed: int = 42, epochs: int = 3) -> dict:
    """The committed quality-suite row of `method`."""
    return json.loads(_quality_path(method, seed, epochs).read_text(encoding="utf-8"))


def _quality_table() -> str:
    """The newest quality table and its legend (the markdown file without its title)."""
    files = sorted(RESULTS.glob("quality-20??-??-??.md"))
    return "\n" + files[-1].read_text(encoding="utf-8").split("\n", 2)[2].strip() + "\n"


SEEDS = (42, 43, 44)  # the README's main table
FIVE_SEEDS = (42, 43, 44, 45, 46)  # the five-seed table (quality-five-seeds)


def _seeds_of(method: str, seeds: tuple[int, ...] = SEEDS) -> list[int]:
    """The seeds (of `seeds`) with a committed 3-epoch row of `method`."""
    return [s for s in seeds if _quality_path(method, s).is_file()]


def _seed_mean(method: str, key: str = "test_accuracy") -> float:
    """Mean of a row field (test accuracy unless `key` says otherwise) of `method` over the seeds that
    have its row."""
    return statistics.mean(_quality(method, s)[key] for s in _seeds_of(method))


def _seed_differences(method: str, base: str, seeds: tuple[int, ...] = SEEDS) -> list[float]:
    """`method`'s test accuracy minus `base`'s on each seed (of `seeds`) with `method`'s row, in points."""
    return [
        100 * (_quality(method, s)["test_accuracy"] - _quality(base, s)["test_accuracy"])
        for s in _seeds_of(method, seeds)
    ]


def _paired_points(method: str, base: str = "apt-0.6-no-distill", seeds: tuple[int, ...] = SEEDS) -> str:
    """Mean ± sample standard deviation of `method`'s seed-by-seed differences from `base`, in points."""
    diffs = _seed_differences(method, base, seeds)
    return f"{statistics.mean(diffs):+.1f} ± {statistics.stdev(diffs):.1f}"


def _each_seed_points(method: str, base: str = "apt-0.6-no-distill", seeds: tuple[int, ...] = SEEDS) -> str:
    """`method`'s seed-by-seed differences from `base` in points, in seed order, e.g. "-1.4, -0.7, +1.2"."""
    return ", ".join(f"{d:+.1f}" for d in _seed_differences(method, base, seeds))


def _latency_kept() -> str:
    """The range of prunable weights the latency benchmark's held-out shapes keep, e.g. "5-66%"."""
    kept = [r["prunable_kept"] for r in latest("latency-model")["shapes"]]
    return f"{100 * min(kept):.0f}-{max(kept):.0%}"


def _acc(method: str) -> float:
    return _quality(method)["test_accuracy"]


def _validation(method: str) -> list[float]:
    return [point[1] for point in _quality(method)["curve"]]


def _reached_97(method: str, seed: int) -> dict:
    """`method`'s row for `seed` in the newest quality result, with the `time_to_97` and `step_to_97`
    that quality.py worked out (None when not reached)."""
    return latest("quality")["rows"][str(seed)][method]


def _seconds(value: float | None) -> str:
    """A wall time in whole seconds, e.g. "1,226 s"; "not reached" for None (a time to 97% never met)."""
    return "not reached" if value is None else f"{value:,.0f} s"


def _time_to_97(method: str, seed: int = 42) -> str:
    """The wall time at which `method` first reached 97% of full fine-tuning, or "not reached"."""
    return _seconds(_reached_97(method, seed)["time_to_97"])


def _step_to_97(method: str, seed: int) -> str:
    """The optimizer step at which `method` first reached 97% of full fine-tuning, or "not reached"."""
    step = _reached_97(method, seed)["step_to_97"]
    return "not reached" if step is None else f"step {step}"


def _steps(seed: int) -> dict[str, Callable[[], str]]:
    """Steps to 97% of full fine-tuning of LoRA and APT at 60% and 40% without distillation (at 60%
    also with at least 4 heads per layer, with adapters on every linear map, and with the pruning
    window in the first quarter of the run)."""
    methods = {
        "lora": "lora",
        "apt06": "apt-0.6-no-distill",
        "apt04": "apt-0.4-no-distill",
        "heads4": "apt-0.6-no-distill-heads4",
        "all": "apt-0.6-no-distill-all",
        "prune_early": "apt-0.6-no-distill-prune-early",
    }
    return {f"quality.steps{seed}.{key}": partial(_step_to_97, m, seed) for key, m in methods.items()}


def _variant(key: str, method: str) -> dict[str, Callable[[], str]]:
    """Figures of a variant of the built-in protocol run on several seeds: its mean test accuracy, its
    seed-by-seed difference from the built-in protocol and its mean export speed-up."""
    return {
        f"quality.{key}.mean": lambda: f"{_seed_mean(method):.4f}",
        f"quality.{key}.diff": partial(_paired_points, method),
        f"quality.{key}.diffs": partial(_each_seed_points, method),
        f"quality.{key}.speedup": lambda: f"{_seed_mean(method, 'speedup'):.2f}x",
    }


def _pair(seed: int) -> dict[str, Callable[[], str]]:
    """Figures of a same-session pair of quality rows: APT-0.6 without distillation, then LoRA."""
    apt, lora = "apt-0.6-no-distill", "lora"

    def field(method: str, key: str) -> float:
        return _quality(method, seed)[key]

    return {
        f"quality.pair{seed}.apt_t97": lambda: _time_to_97(apt, seed),
        f"quality.pair{seed}.lora_t97": lambda: _time_to_97(lora, seed),
        f"quality.pair{seed}.apt_train": lambda: _seconds(field(apt, "train_seconds")),
        f"quality.pair{seed}.lora_train": lambda: _seconds(field(lora, "train_seconds")),
        f"quality.pair{seed}.train_ratio": lambda: (
            f"{field(apt, 'train_seconds') / field(lora, 'train_seconds'):.2f}x"
        ),
        f"quality.pair{seed}.apt_peak": lambda: f"{field(apt, 'peak_memory_mb'):,.0f} MB",
        f"quality.pair{seed}.lora_peak": lambda: f"{field(lora, 'peak_memory_mb'):,.0f} MB",
    }


def _same_day(seed: int) -> dict[str, Callable[[], str]]:
    """Figures of APT-0.6 with the early pruning window against LoRA run again on the same day, alone on
    the machine (`quality-same-day-<date>.json`: quality.py's result of that LoRA run)."""
    apt = "apt-0.6-no-distill-prune-early"

    def lora(key: str) -> float | None:
        return latest("quality-same-day")["rows"][str(seed)]["lora"][key]

    return {
        f"quality.same_day{seed}.apt_t97": lambda: _time_to_97(apt, seed),
        f"quality.same_day{seed}.lora_t97": lambda: _seconds(lora("time_to_97")),
        f"quality.same_day{seed}.apt_train": lambda: _seconds(_quality(apt, seed)["train_seconds"]),
        f"quality.same_day{seed}.lora_train": lambda: _seconds(lora("train_seconds")),
    }


def _early(seed: int) -> dict[str, Callable[[], str]]:
    """Figures of the ablation whose pruning window ends at 40% of the steps."""
    early, base = "apt-0.6-no-distill-early", "apt-0.6-no-distill"
    return {
        f"quality.early{seed}.t97": lambda: _time_to_97(early, seed),
        f"quality.early{seed}.acc": lambda: f"{_quality(early, seed)['test_accuracy']:.4f}",
        f"quality.early{seed}.base_acc": lambda: f"{_quality(base, seed)['test_accuracy']:.4f}",
    }


FIVE = "quality-five-seeds"  # quality.py --name quality-five-seeds --seeds 42,43,44,45,46
# LoRA's seeds 42-44 run again on the day of the early-heads4 rows: quality.py --only lora --rerun
# --name quality-lora-rerun --seeds 42,43,44 in a scratch checkout, then --table-only over seeds 42-46
RERUN = "quality-lora-rerun"
EARLY = "apt-0.6-no-distill-prune-early"
EARLY_HEADS4 = "apt-0.6-no-distill-prune-early-heads4"


def _five_rows(method: str, name: str = FIVE) -> list[dict]:
    """`method`'s rows in the five-seed result `name`, in seed order, each with its time and step to 97%."""
    result = latest(name)
    return [rows[method] for rows in (result["rows"][str(s)] for s in result["seeds"]) if method in rows]


def _five_times(method: str, name: str = FIVE) -> str:
    """The wall time at which `method` first reached 97% of full fine-tuning on each seed of the
    result `name`, e.g. "322 s, never"."""
    times = (r["time_to_97"] for r in _five_rows(method, name))
    return ", ".join("never" if t is None else _seconds(t) for t in times)


def _five_steps(method: str) -> str:
    """The step at which `method` first reached 97% of full fine-tuning on each seed, e.g. "900, never"."""
    return ", ".join("never" if r["step_to_97"] is None else str(r["step_to_97"]) for r in _five_rows(method))


def _no_later_than_lora(method: str, key: str, name: str = FIVE) -> str:
    """On how many seeds of the result `name` `method` reached 97% of full fine-tuning no later than
    LoRA (by `key`: `step_to_97` or `time_to_97`), LoRA not reaching it counting as later: "k of n"."""
    rows = latest(name)["rows"]
    pairs = [(r[method], r["lora"]) for r in rows.values() if method in r and "lora" in r]
    first = [a[key] is not None and (b[key] is None or a[key] <= b[key]) for a, b in pairs]
    return f"{sum(first)} of {len(pairs)}"


def _mean_t97(agg: dict) -> str:
    """A method's mean time to 97% over the seeds that reached it, e.g. "462 s (4 of 5 seeds)"."""
    reached, seeds = agg["reached_97"], agg["seeds"]
    tail = "" if reached == seeds else f" ({reached} of {seeds} seeds)"
    return _seconds(agg["time_to_97"]) + tail


def _mean_curve(method: str, name: str) -> str:
    """Where `method`'s seed-averaged validation curve in the result `name` reaches 97% of full
    fine-tuning, e.g. "step 900, 541 s" (quality.py's mean_curve_97), or "never"."""
    m = latest(name)["methods"][method]["mean_curve_97"]
    return "never" if m is None else f"step {m['step']}, {_seconds(m['time'])}"


def _five_of_ft(method: str) -> str:
    """`method`'s mean test accuracy over the five seeds as a share of full fine-tuning's, e.g. "98.6%"."""
    methods = latest(FIVE)["methods"]
    return f"{methods[method]['test_accuracy'] / methods['full-ft']['test_accuracy']:.1%}"


def _five(key: str, method: str) -> dict[str, Callable[[], str]]:
    """Figures of `method` in the five-seed result: test accuracy, steps to 97%, mean train time and
    (APT only) on how many seeds it reached 97% no later than LoRA, in steps and in wall time."""

    def agg() -> dict:
        return latest(FIVE)["methods"][method]

    out = {
        f"quality5.{key}.acc": lambda: f"{agg()['test_accuracy']:.4f} ± {agg()['test_accuracy_std']:.4f}",
        f"quality5.{key}.steps": partial(_five_steps, method),
        f"quality5.{key}.train": lambda: _seconds(agg()["train_seconds"]),
        f"quality5.{key}.t97": lambda: _mean_t97(agg()),
    }
    if method != "lora":
        out[f"quality5.{key}.first_steps"] = partial(_no_later_than_lora, method, "step_to_97")
        out[f"quality5.{key}.first_time"] = partial(_no_later_than_lora, method, "time_to_97")
    return out


def _low_after_best(method: str) -> float:
    """The lowest validation accuracy after the curve's best point."""
    curve = _validation(method)
    return min(curve[curve.index(max(curve)) :])


@cache
def _logged_phases(total_steps: int) -> tuple[int, int]:
    """Logged steps (optimizer steps done) of the last re-plan of the 10%-60% window the distilling
    rows ran with and of the recovery phase's first evaluation, for a run of `total_steps`."""
    cfg = apply_overrides(load_config(CONFIG), WINDOW_10_60)
    p = cfg.pruning
    _, end, distill_end = phase_steps(p.start_step, p.end_step, cfg.distill.after_pruning, total_steps)
    return end + 1, distill_end + 1


def _distill_phase(method: str) -> dict[str, float]:
    """Mean over seeds of the validation accuracy at the pruning window's last re-plan and the
    lowest one while distilling with mu = 1 after it (the steps before the recovery phase)."""
    ends, lows = [], []
    for seed in _seeds_of(method):
        curve = _quality(method, seed)["curve"]
        window_end, recovery = _logged_phases(curve[-1][2])
        ends.append(next(acc for _, acc, step in curve if step == window_end))
        lows.append(min(acc for _, acc, step in curve if window_end < step < recovery))
    return {"end": statistics.mean(ends), "low": statistics.mean(lows)}


def _deploy(model: str, variant: str, field: str = "speedup_32x64") -> float:
    """A field of the deploy suite's row for `model` / `variant` (benchmarks/deploy.py)."""
    return _row("deploy", model=model, variant=variant)[field]


def _deploy_ratio(model: str, numerator: str, denominator: str, field: str) -> float:
    """The ratio of `field` between two variants of `model` in the deploy suite."""
    return _deploy(model, numerator, field) / _deploy(model, denominator, field)


def _int8_cost(model: str) -> float:
    """Accuracy points the pruned `model` loses from torch fp32 to ONNX int8."""
    return 100 * (
        _deploy(model, "pruned torch fp32", "accuracy") - _deploy(model, "pruned onnx int8", "accuracy")
    )


def _table(suite: str) -> str:
    """The newest markdown table of `suite` with its notes."""
    files = sorted(RESULTS.glob(f"{suite}-20??-??-??.md"))
    return "\n" + files[-1].read_text(encoding="utf-8").strip() + "\n"


def _speed_target(row: str, field: str) -> float:
    """A field of a row of the speed-target suite (benchmarks/speed_target.py)."""
    return latest("speed-target")["rows"][row][field]


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60)} s"


FIGURES: dict[str, Callable[[], str]] = {
    "demo.time": lambda: _minutes(latest("demo")["wall_seconds"]),
    "demo.minutes": lambda: str(round(latest("demo")["wall_seconds"] / 60)),
    "demo.accuracy": lambda: f"{latest('demo')['test_accuracy']:.4f}",
    "demo.sparsity": lambda: f"{latest('demo')['sparsity']:.0%}",
    "demo.speedup": lambda: f"{latest('demo')['speedup']:.2f}x",
    "quality.table": _quality_table,
    "latency_model.shapes": lambda: str(len(latest("latency-model")["shapes"])),
    "latency_model.kept": _latency_kept,
    "latency_model.mean_error": lambda: f"{latest('latency-model')['mean_abs_error']:.1%}",
    "latency_model.max_error": lambda: f"{latest('latency-model')['max_abs_error']:.1%}",
    "quality.ft.acc": lambda: f"{_acc('full-ft'):.4f}",
    "quality.no_distill.of_ft": lambda: f"{_acc('apt-0.6-no-distill') / _acc('full-ft'):.1%}",
    "quality.lora_prune.acc": lambda: f"{_acc('lora-prune'):.4f}",
    "quality.torch_pruning.acc": lambda: f"{_acc('torch-pruning'):.4f}",
    "quality.apt.acc": lambda: f"{_quality('apt-0.6')['test_accuracy']:.4f}",
    "quality.no_distill.acc": lambda: f"{_quality('apt-0.6-no-distill')['test_accuracy']:.4f}",
    "quality.no_distill.kept": lambda: f"{_quality('apt-0.6-no-distill')['prunable_kept']:.0%}",
    "quality.no_distill.speedup": lambda: f"{_quality('apt-0.6-no-distill')['speedup']:.1f}x",
    "quality.distill_cost": lambda: f"{100 * (_acc('apt-0.6-no-distill') - _acc('apt-0.6')):.1f}",
    "quality.distill_cost_mean": lambda: (
        f"{100 * (_seed_mean('apt-0.6-no-distill') - _seed_mean('apt-0.6')):.1f}"
    ),
    "quality.apt.best_val": lambda: f"{max(_validation('apt-0.6')):.3f}",
    "quality.apt.low_val": lambda: f"{min(_validation('apt-0.6')):.3f}",
    "quality.apt.last_val": lambda: f"{_validation('apt-0.6')[-1]:.3f}",
    "quality.unmasked.acc": lambda: f"{_acc('apt-0.6-teacher-unmasked'):.4f}",
    "quality.unmasked.low_val": lambda: f"{_low_after_best('apt-0.6-teacher-unmasked'):.3f}",
    "quality.old_distill.acc": lambda: f"{_acc('apt-0.6-old-distill'):.4f}",
    "quality.no_distill.mean": lambda: f"{_seed_mean('apt-0.6-no-distill'):.4f}",
    "quality.ft.mean": lambda: f"{_seed_mean('full-ft'):.4f}",
    "quality.no_distill.of_ft_mean": lambda: (
        f"{_seed_mean('apt-0.6-no-distill') / _seed_mean('full-ft'):.1%}"
    ),
    **_pair(42),
    **_pair(43),
    **_pair(44),
    **_early(43),
    **_early(44),
    **_same_day(43),
    **_same_day(44),
    **_five("lora", "lora"),
    **_five("builtin", "apt-0.6-no-distill"),
    **_five("early", EARLY),
    **_five("early_heads4", EARLY_HEADS4),
    "quality5.early.diffs": partial(_each_seed_points, EARLY, seeds=FIVE_SEEDS),
    "quality5.early.diff": partial(_paired_points, EARLY, seeds=FIVE_SEEDS),
    "quality5.early_heads4.diffs": partial(_each_seed_points, EARLY_HEADS4, seeds=FIVE_SEEDS),
    "quality5.early_heads4.of_ft": partial(_five_of_ft, EARLY_HEADS4),
    "quality5.early_heads4.speedup": lambda: f"{latest(FIVE)['methods'][EARLY_HEADS4]['speedup']:.2f}x",
    "quality5.early_heads4.diff": partial(_paired_points, EARLY_HEADS4, seeds=FIVE_SEEDS),
    "quality5.early_heads4.vs_early": partial(_paired_points, EARLY_HEADS4, EARLY, seeds=FIVE_SEEDS),
    "quality5.rerun.lora_times": partial(_five_times, "lora", RERUN),
    "quality5.rerun.apt_times": partial(_five_times, EARLY_HEADS4, RERUN),
    "quality5.rerun.lora_t97": lambda: _mean_t97(latest(RERUN)["methods"]["lora"]),
    "quality5.rerun.apt_t97": lambda: _mean_t97(latest(RERUN)["methods"][EARLY_HEADS4]),
    "quality5.rerun.mean_curve.lora": partial(_mean_curve, "lora", RERUN),
    "quality5.rerun.mean_curve.apt": partial(_mean_curve, EARLY_HEADS4, RERUN),
    "quality5.mean_curve.lora": partial(_mean_curve, "lora", FIVE),
    "quality5.mean_curve.builtin": partial(_mean_curve, "apt-0.6-no-distill", FIVE),
    "quality5.rerun.first_time": partial(_no_later_than_lora, EARLY_HEADS4, "time_to_97", RERUN),
    **_steps(42),
    **_steps(43),
    **_steps(44),
    "quality.old43.acc": lambda: f"{_quality('apt-0.6-old-distill', 43)['test_accuracy']:.4f}",
    "quality.old43.base_acc": lambda: f"{_quality('apt-0.6-no-distill', 43)['test_accuracy']:.4f}",
    "quality.old43.step": partial(_step_to_97, "apt-0.6-old-distill", 43),
    "quality.nd04.mean": lambda: f"{_seed_mean('apt-0.4-no-distill'):.4f}",
    "quality.nd04.speedup": lambda: f"{_seed_mean('apt-0.4-no-distill', 'speedup'):.2f}x",
    "quality.nd04.of_ft_mean": lambda: f"{_seed_mean('apt-0.4-no-distill') / _seed_mean('full-ft'):.1%}",
    "quality.no_kurtosis.acc": lambda: f"{_acc('apt-0.6-no-kurtosis'):.4f}",
    "quality.no_growth.acc": lambda: f"{_acc('apt-0.6-no-growth'):.4f}",
    "quality.nd_no_kurtosis.mean": lambda: f"{_seed_mean('apt-0.6-no-distill-no-kurtosis'):.4f}",
    "quality.nd_no_kurtosis.diff": partial(_paired_points, "apt-0.6-no-distill-no-kurtosis"),
    "quality.nd_no_kurtosis.diffs": partial(_each_seed_points, "apt-0.6-no-distill-no-kurtosis"),
    "quality.nd_no_growth.mean": lambda: f"{_seed_mean('apt-0.6-no-distill-no-growth'):.4f}",
    "quality.nd_no_growth.diff": partial(_paired_points, "apt-0.6-no-distill-no-growth"),
    "quality.nd_no_growth.diffs": partial(_each_seed_points, "apt-0.6-no-distill-no-growth"),
    "quality.apt05_43.step": partial(_step_to_97, "apt-0.5-no-distill", 43),
    "quality.apt05_43.acc": lambda: f"{_quality('apt-0.5-no-distill', 43)['test_accuracy']:.4f}",
    "quality.apt05_43.speedup": lambda: f"{_quality('apt-0.5-no-distill', 43)['speedup']:.2f}x",
    **_variant("heads4", "apt-0.6-no-distill-heads4"),
    **_variant("all", "apt-0.6-no-distill-all"),
    **_variant("prune_early", "apt-0.6-no-distill-prune-early"),
    "quality.no_distill.speedup_mean": lambda: f"{_seed_mean('apt-0.6-no-distill', 'speedup'):.2f}x",
    "quality.rescore.mean": lambda: f"{_seed_mean('apt-0.6-rescore'):.4f}",
    "quality.rescore.vs_reference": partial(_paired_points, "apt-0.6-rescore", "apt-0.6"),
    "quality.rescore.vs_no_distill": partial(_paired_points, "apt-0.6-rescore"),
    "quality.rescore.window_end": lambda: f"{_distill_phase('apt-0.6-rescore')['end']:.3f}",
    "quality.rescore.distill_low": lambda: f"{_distill_phase('apt-0.6-rescore')['low']:.3f}",
    "quality.apt04.acc": lambda: f"{_acc('apt-0.4'):.4f}",
    "quality.apt08.acc": lambda: f"{_acc('apt-0.8'):.4f}",
    "deploy.table": lambda: _table("deploy"),
    "speed_target.table": lambda: _table("speed-target"),
    "speed_target.2x": lambda: f"{_speed_target('speedup-2.0', 'retimed'):.2f}x",
    "speed_target.3x": lambda: f"{_speed_target('speedup-3.0', 'retimed'):.2f}x",
    "speed_target.3x.acc": lambda: f"{_speed_target('speedup-3.0', 'test_accuracy'):.4f}",
    "speed_target.2x.run": lambda: f"{_speed_target('speedup-2.0', 'measured'):.2f}x",
    "speed_target.3x.run": lambda: f"{_speed_target('speedup-3.0', 'measured'):.2f}x",
    "speed_target.2x.acc": lambda: f"{_speed_target('speedup-2.0', 'test_accuracy'):.4f}",
    "speed_target.p06": lambda: f"{_speed_target('sparsity-0.6', 'retimed'):.2f}x",
    "speed_target.p06.acc": lambda: f"{_speed_target('sparsity-0.6', 'test_accuracy'):.4f}",
    "speed_target.p08": lambda: f"{_speed_target('sparsity-0.8', 'retimed'):.2f}x",
    "speed_target.p08.acc": lambda: f"{_speed_target('sparsity-0.8', 'test_accuracy'):.4f}",
    "speed_target.p07": lambda: f"{_speed_target('sparsity-0.7', 'retimed'):.2f}x",
    "speed_target.p07.acc": lambda: f"{_speed_target('sparsity-0.7', 'test_accuracy'):.4f}",
    "speed_target.profile": lambda: f"{_speed_target('speedup-2.0', 'profile_seconds'):.0f} s",
    "memory.apt.peak": lambda: f"{_memory('apt', 'peak_memory_mb'):,.0f} MB",
    "memory.lora.peak": lambda: f"{_memory('lora', 'peak_memory_mb'):,.0f} MB",
    "memory.peak_ratio": lambda: _memory_ratio("peak_memory_mb"),
    "memory.step_ratio": lambda: _memory_ratio("dense_step_ms"),
    "memory.apt.dense_level": lambda: f"{_memory('apt', 'dense_level_mb'):,.0f} MB",
    "memory.apt.final_level": lambda: f"{_memory('apt', 'final_level_mb'):,.0f} MB",
    "memory.table": lambda: _table("memory"),
    "memory.apt.dense_tensors": lambda: f"{_memory('apt', 'dense_tensors_mb'):,.0f} MB",
    "memory.apt.final_tensors": lambda: f"{_memory('apt', 'final_tensors_mb'):,.0f} MB",
    "memory.lora.tensors": lambda: f"{_memory('lora', 'final_tensors_mb'):,.0f} MB",
    "memory.tensor_change": lambda: _memory_change("dense_tensors_mb", "final_tensors_mb"),
    "memory.rss_change": lambda: _memory_change("dense_level_mb", "final_level_mb"),
    "memory.fixed": lambda: f"{latest('memory')['phases']['lora']['rss_before_mb']:.0f} MB",
    "memory.lora.frozen": lambda: f"{latest('memory')['phases']['lora']['frozen_mb']:.0f} MB",
    "memory.saved": lambda: f"{latest('memory')['phases']['lora']['saved_for_backward_mb']:.0f} MB",
    "memory.saved_pruned": lambda: (
        f"{latest('memory')['phases']['after shrink (60% kept)']['saved_for_backward_mb']:.0f} MB"
    ),
    "memory.freed": lambda: f"{_phase_drop('frozen_mb'):.0f} MB",
    "memory_smollm2.apt.peak": lambda: f"{_memory('apt', 'peak_memory_mb', 'memory-smollm2'):,.0f} MB",
    "memory_smollm2.lora.peak": lambda: f"{_memory('lora', 'peak_memory_mb', 'memory-smollm2'):,.0f} MB",
    "memory_smollm2.peak_ratio": lambda: _memory_ratio("peak_memory_mb", "memory-smollm2"),
    "memory_smollm2.peak_set_at": lambda: _memory("apt", "peak_set_at", "memory-smollm2"),
    "memory_smollm2.step_ratio": lambda: _memory_ratio("dense_step_ms", "memory-smollm2"),
    "memory_smollm2.tensor_change": lambda: _memory_change(
        "dense_tensors_mb", "final_tensors_mb", "memory-smollm2"
    ),
    "memory.after_cut": lambda: f"{min(mb for _, mb in _memory('apt', 'curve')):.0f} MB",
    **{
        f"deploy.{m}.{key}": figure
        for m in ("minilm", "smollm2")
        for key, figure in {
            "int8": lambda m=m: f"{_deploy(m, 'pruned onnx int8'):.2f}x",
            "int8_1x64": lambda m=m: f"{_deploy(m, 'pruned onnx int8', 'speedup_1x64'):.1f}x",
            "torch": lambda m=m: f"{_deploy(m, 'pruned torch fp32'):.2f}x",
            "over_dense_int8": lambda m=m: (
                f"{_deploy_ratio(m, 'dense onnx int8', 'pruned onnx int8', 'ms_32x64'):.2f}x"
            ),
            "int8_cost": lambda m=m: f"{_int8_cost(m):.1f}",
        }.items()
    },
    "speed.aligned": lambda: " / ".join(f"{_speed(s, 8):.2f}x" for s in (0.4, 0.6, 0.8)),
    "speed.unaligned": lambda: " / ".join(f"{_speed(s, 1):.2f}x" for s in (0.4, 0.6, 0.8)),
    "speed.of_ideal": lambda: f"{min(_of_ideal(8)):.0%}-{max(_of_ideal(8)):.0%}",
    "overhead.hooks_time": lambda: f"{_overhead('apt-hooks', 'step_ms'):.2f}x",
    "overhead.hooks_memory": lambda: f"{_overhead('apt-hooks', 'peak_memory_mb'):.2f}x",
    "overhead.distill_time": lambda: f"{_overhead('apt-full', 'step_ms'):.2f}x",
    "overhead.distill_memory": lambda: f"{_overhead('apt-full', 'peak_memory_mb'):.2f}x",
    "overhead.pruned_time": lambda: f"{_overhead('apt-full-40%', 'step_ms'):.2f}x",
    "overhead_roberta.hooks_time": lambda: f"{_overhead('apt-hooks', 'step_ms', RB):.2f}x",
    "overhead_roberta.hooks_memory": lambda: f"{_overhead('apt-hooks', 'peak_memory_mb', RB):.2f}x",
    "overhead_roberta.distill_time": lambda: f"{_overhead('apt-full', 'step_ms', RB):.2f}x",
    "overhead_roberta.distill_memory": lambda: f"{_overhead('apt-full', 'peak_memory_mb', RB):.2f}x",
    "overhead_roberta.pruned_time": lambda: f"{_overhead('apt-full-40%', 'step_ms', RB):.2f}x",
    "gpu.llama.hooks_time": lambda: f"{_llama('apt-hooks', 'step_ms'):.2f}x",
    "gpu.llama.dense_time": lambda: f"{_llama('apt-dense', 'step_ms'):.2f}x",
    "gpu.llama.dense_time_before": lambda: f"{_llama('apt-dense', 'step_ms', LLAMA_BEFORE):.2f}x",
    "gpu.llama.dense_memory": lambda: f"{_llama('apt-dense', 'peak_mb'):.2f}x",
    "gpu.llama.pruned_time": lambda: f"{_llama('apt-pruned', 'step_ms'):.2f}x",
    "gpu.llama.pruned_memory": lambda: f"{_llama('apt-pruned', 'peak_mb'):.2f}x",
    "gpu.llama.lora_ms": lambda: f"{latest('llama-gpu')['train']['lora']['step_ms']:.0f} ms",
    "gpu.llama.lora_memory": lambda: f"{latest('llama-gpu')['train']['lora']['peak_mb'] / 1024:.1f} GiB",
    "gpu.llama.prefill": lambda: f"{latest('llama-gpu')['prefill']['speedup']:.2f}x",
    "gpu.llama.prefill_ideal": lambda: f"{latest('llama-gpu')['ideal_speedup']:.2f}x",
    "gpu.roberta.hooks_time": lambda: f"{_overhead('apt-hooks', 'step_ms', RB_GPU):.2f}x",
    "gpu.roberta.hooks_time_before": lambda: f"{_overhead('apt-hooks', 'step_ms', RB_GPU_BEFORE):.2f}x",
    "gpu.roberta.distill_time": lambda: f"{_overhead('apt-full', 'step_ms', RB_GPU):.2f}x",
    "gpu.roberta.distill_time_before": lambda: f"{_overhead('apt-full', 'step_ms', RB_GPU_BEFORE):.2f}x",
    "gpu.roberta.lora_ms": lambda: f"{_step_ms(RB_GPU, 'lora'):.0f} ms",
    "gpu.roberta.lora_ms_before": lambda: f"{_step_ms(RB_GPU_BEFORE, 'lora'):.0f} ms",
    "gpu.roberta.hooks_ms": lambda: "-".join(
        f"{_step_ms(s, 'apt-hooks'):.0f}" for s in (RB_GPU_BEFORE, RB_GPU)
    ),
    "gpu.roberta.distill_change": lambda: (
        f"{_step_ms(RB_GPU, 'apt-full') / _step_ms(RB_GPU_BEFORE, 'apt-full') - 1:+.0%}"
    ),
    "gpu.roberta.pruned_memory": lambda: f"{_overhead('apt-full-40%', 'peak_memory_mb', RB_GPU):.2f}x",
    "gpu.roberta.distill_memory": lambda: f"{_overhead('apt-full', 'peak_memory_mb', RB_GPU):.2f}x",
    "gpu.memory.peak_ratio": lambda: _memory_ratio("peak_memory_mb", "memory-gpu"),
    "gpu.memory.step_ratio": lambda: _memory_ratio("dense_step_ms", "memory-gpu"),
    "gpu.memory.step_ratio_before": lambda: _memory_ratio("dense_step_ms", MEMORY_GPU_BEFORE),
    "gpu.memory.dense_level": lambda: f"{_memory('apt', 'dense_level_mb', 'memory-gpu'):,.0f} MB",
    "gpu.memory.final_level": lambda: f"{_memory('apt', 'final_level_mb', 'memory-gpu'):,.0f} MB",
    "gpu.memory.level_change": lambda: _memory_change("dense_level_mb", "final_level_mb", "memory-gpu"),
    "gpu.memory.tensor_change": lambda: _memory_change("dense_tensors_mb", "final_tensors_mb", "memory-gpu"),
    "gpu.memory.frozen": lambda: f"{latest('memory-gpu')['phases']['lora']['frozen_mb']:.0f} MB",
    "gpu.memory.frozen_pruned": lambda: (
        f"{latest('memory-gpu')['phases']['after shrink (60% kept)']['frozen_mb']:.0f} MB"
    ),
    "prune.kept": lambda: f"{latest('prune-minilm')['prunable_params']['kept']:.1%}",
    "prune.logit_diff": lambda: f"{latest('prune-minilm')['max_abs_logit_diff_masked_vs_reloaded']:.0e}",
    "prune.speedup": lambda: f"{latest('prune-minilm')['inference']['speedup']:.2f}x",
    "prune.ideal": lambda: f"{latest('prune-minilm')['inference']['ideal_speedup']:.2f}x",
    "smollm2.lora.acc": lambda: f"{_smollm2('lora')['test_accuracy']:.4f}",
    "smollm2.lora.params": lambda: f"{_smollm2('lora')['total_params'] / 1e6:.1f}M",
    "smollm2.lora.time": lambda: f"{_smollm2('lora')['train_seconds']:.0f} s",
    "smollm2.lora.memory": lambda: f"{_smollm2('lora')['peak_memory_mb']:,.0f} MB",
    "smollm2.lora.speedup": lambda: f"{_smollm2('lora')['speedup']:.2f}x",
    "smollm2.apt.acc": lambda: f"{_smollm2('apt-0.3')['test_accuracy']:.4f}",
    "smollm2.apt.kept": lambda: f"{_smollm2('apt-0.3')['prunable_kept']:.1%}",
    "smollm2.apt.params": lambda: f"{_smollm2('apt-0.3')['total_params'] / 1e6:.1f}M",
    "smollm2.apt.time": lambda: f"{_smollm2('apt-0.3')['train_seconds']:.0f} s",
    "smollm2.apt.memory": lambda: f"{_smollm2('apt-0.3')['peak_memory_mb']:,.0f} MB",
    "smollm2.apt.speedup": lambda: f"{_smollm2('apt-0.3')['speedup']:.2f}x",
    "smollm2.apt.ideal": lambda: f"{_smollm2('apt-0.3')['ideal_speedup']:.2f}x",
    "smollm2.acc_kept": lambda: (
        f"{_smollm2('apt-0.3')['test_accuracy'] / _smollm2('lora')['test_accuracy']:.1%}"
    ),
    "smollm2.fewer_params": lambda: (
        f"{1 - _smollm2('apt-0.3')['total_params'] / _smollm2('lora')['total_params']:.0%}"
    ),
    "smollm2.time_ratio": lambda: (
        f"{_smollm2('apt-0.3')['train_seconds'] / _smollm2('lora')['train_seconds']:.2f}x"
    ),
    "smollm2.memory_ratio": lambda: (
        f"{_smollm2('apt-0.3')['peak_memory_mb'] / _smollm2('lora')['peak_memory_mb']:.2f}x"
    ),
}


def render(text: str) -> str:
    """`text` with every figure replaced by its value from the results."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in FIGURES:
            raise KeyError(f"unknown figure {name!r}; add it to FIGURES in {Path(__file__).name}")
        return f"<!-- fig:{name} -->{FIGURES[name]()}<!-- /fig -->"

    return MARK.sub(value, text)


def stale(text: str) -> list[str]:
    """The figures of `text` whose value differs from the results (as 'name: shown -> measured')."""
    found = []
    for match in MARK.finditer(text):
        name, shown = match.group(1), match.group(2)
        measured = FIGURES[name]() if name in FIGURES else "(unknown figure)"
        if shown != measured:
            found.append(f"{name}: {shown} -> {measured}")
    return found


def main(argv: list[str] | None = None) -> int:
    """Rewrite README.md, or with --check list what is stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list stale figures; exit 1 if any")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    if args.check:
        problems = stale(text)
        print("\n".join(problems) or "every README figure matches the results")
        return 1 if problems else 0
    README.write_text(render(text), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
