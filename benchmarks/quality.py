"""Quality suite: APT against full fine-tuning, LoRA (peft), LoRA+Prune and torch-pruning, side by side.

Every method trains MiniLM on the built-in Rotten Tomatoes split with the same batch size, sequence
length and number of epochs, once per seed, each run in its own process (so that peak memory is its own):

* full fine-tuning and APT run through `aptune.train`, every APT variant with its own complete
  override list (so none depends on what the built-in config sets for distillation): 0.4 / 0.6 / 0.8
  sparsity with self-distillation, and the 0.6 ablations without kurtosis, without rank growth,
  without self-distillation, with the teacher run without masks (the dense model with the selected
  adapters), and with aptune's old distillation protocol (teacher re-snapshotted at every re-plan and
  without masks, T 2, prediction scale 1, no recovery, distilling only while pruning);
* LoRA is PEFT's (r 8 on query/value, classifier trained), in a plain loop written here;
* LoRA+Prune: that seed's LoRA-tuned model, one-shot pruned with aptune's salience to APT 0.6's
  parameter count, then `recovery` steps of adapter tuning;
* torch-pruning: that seed's LoRA-tuned model pruned by torch-pruning (Taylor importance) to the same
  count, with the same recovery budget.

    pip install peft torch-pruning          # the peers (extra `bench`)
    python benchmarks/quality.py [--seeds 42,43,44] [--epochs 3] [--only apt-0.6,lora] [--rerun]
    python benchmarks/quality.py --table-only --seeds 42,43,44   # rebuild the table from the rows

Each finished run is kept as results/quality-rows/epochs-<E>/seed-<S>/<method>.json (committed) and
reused by later invocations unless --rerun; work files (aptune run folders, the LoRA model the pruning
peers start from) go to <--work>/epochs-<E>/seed-<S>/. At 3 epochs on 2 CPU cores APT-0.6 trains
for about 31 minutes with self-distillation and 20 without, full fine-tuning for about 50: about
6 hours per seed for all methods. Writes results/quality-<date>.{json,md,png} (--name N: results/N-<date>,
e.g. a table over other seeds beside the README's): mean ± sample std over the seeds per method, and
every per-seed row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import RESULTS, WINDOW_10_60, minilm, review_batches, salience_pruner, write_results
from safetensors.torch import load_model, save_model

from aptune.adapter import attach_adapters, merge_adapters
from aptune.config import apply_overrides, load_config
from aptune.families import family_for
from aptune.schedule import warmup_linear_factor
from aptune.shrink import shrink_model
from aptune.timing import inference_ms
from aptune.train.data import batches, encode, rotten_tomatoes
from aptune.train.loop import train
from aptune.train.tasks import evaluate_classifier as evaluate

CONFIG = Path(__file__).parents[1] / "configs" / "minilm-rotten-tomatoes.yaml"
ROWS = RESULTS / "quality-rows"
LORA_MODEL = "lora-merged.safetensors"
DISTILL = ["distill.enabled=true", *WINDOW_10_60]
# the reference's teacher choice: a teacher keeps the validation score it had when it was chosen
REFERENCE = [*DISTILL, "distill.rescore_teacher=false"]


def _no_distill(sparsity: float) -> list[str]:
    """The built-in config's protocol until 2026-12-04 (no distillation, the 10%-60% window) at `sparsity`."""
    return ["distill.enabled=false", f"pruning.target_sparsity={sparsity}", *WINDOW_10_60]


NO_DISTILL = _no_distill(0.6)
# the pruning window in the first quarter of the run (steps 5%-25%; the reference prunes SST-2 in the
# first 7.5% of its 40 epochs), re-planned every 16 steps with masks fading over 16 steps
PRUNE_EARLY = [
    "pruning.start_step=0.05",
    "pruning.end_step=0.25",
    "pruning.update_frequency=16",
    "pruning.mask_decay_rate=0.0625",
]
APT = {
    "apt-0.4": [*REFERENCE, "pruning.target_sparsity=0.4"],
    "apt-0.6": [*REFERENCE, "pruning.target_sparsity=0.6"],
    "apt-0.8": [*REFERENCE, "pruning.target_sparsity=0.8"],
    "apt-0.6-no-kurtosis": [*REFERENCE, "pruning.target_sparsity=0.6", "pruning.use_kurtosis=false"],
    "apt-0.6-no-growth": [*REFERENCE, "pruning.target_sparsity=0.6", "tuning.enabled=false"],
    # the teacher is scored again under the current masks before the student is compared with it
    "apt-0.6-rescore": [*DISTILL, "pruning.target_sparsity=0.6"],
    "apt-0.6-no-distill": NO_DISTILL,
    "apt-0.4-no-distill": _no_distill(0.4),
    "apt-0.5-no-distill": _no_distill(0.5),
    "apt-0.6-no-distill-no-kurtosis": [*NO_DISTILL, "pruning.use_kurtosis=false"],
    "apt-0.6-no-distill-no-growth": [*NO_DISTILL, "tuning.enabled=false"],
    # the pruning window ends at 40% of the steps instead of 60%: longer recovery at the final size
    "apt-0.6-no-distill-early": [*NO_DISTILL, "pruning.end_step=0.4"],
    # every layer keeps at least 4 of its 12 heads (the plan otherwise keeps 1-3)
    "apt-0.6-no-distill-heads4": [*NO_DISTILL, "pruning.min_heads_per_layer=4"],
    # adapters on all six linear maps of each layer (the built-in config: query, value, intermediate);
    # those on the attention and FFN output projections see the pruned heads and neurons as inputs
    "apt-0.6-no-distill-all": [
        *NO_DISTILL,
        "model.adapter.mha_components=[query,key,value,output]",
        "model.adapter.ffn_components=[intermediate,output]",
    ],
    "apt-0.6-no-distill-prune-early": [*NO_DISTILL, *PRUNE_EARLY],
    # the built-in config's protocol since 2026-12-04: the early window with at least 4 heads in
    # every layer (without the floor, most layers keep 1-3 heads)
    "apt-0.6-no-distill-prune-early-heads4": [*NO_DISTILL, *PRUNE_EARLY, "pruning.min_heads_per_layer=4"],
    "apt-0.6-teacher-unmasked": [*REFERENCE, "pruning.target_sparsity=0.6", "distill.teacher_masks=false"],
    "apt-0.6-old-distill": [
        *DISTILL,
        "pruning.target_sparsity=0.6",
        "distill.teacher=latest",
        "distill.teacher_masks=false",
        "distill.temperature=2.0",
        "distill.pred_scale=1.0",
        "distill.recovery=false",
        "distill.after_pruning=0.0",
    ],
}
# full fine-tuning needs a learning rate ~20x below the adapters' (at 1e-3 it diverges to chance)
FULL_FT = [
    "model.finetune=full",
    "pruning.enabled=false",
    "distill.enabled=false",
    "train.learning_rate=5e-5",
    "train.head_learning_rate=null",
]
PEERS = ("lora-prune", "torch-pruning")
METHODS = ["full-ft", "lora", *APT, *PEERS]


def _common(args) -> list[str]:
    """Overrides every aptune run shares: epochs, seed, the whole validation split."""
    return [f"train.epochs={args.epochs}", f"train.seed={args.seed}", "data.max_eval_samples=null"]


def _peak_mb() -> float:
    """Peak RSS of this process in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _curve(history_path: Path) -> list[tuple[float, float, int]]:
    """(elapsed seconds, validation accuracy, step) points of an aptune run's history."""
    lines = [json.loads(x) for x in history_path.read_text().splitlines()]
    return [(x["elapsed_s"], x["eval"]["accuracy"], x["step"]) for x in lines if "eval" in x]


def run_aptune(name: str, args, out: Path) -> dict:
    """Full fine-tuning or an APT variant through aptune's own loop."""
    extra = FULL_FT if name == "full-ft" else APT[name]
    cfg = apply_overrides(load_config(CONFIG), [*_common(args), *extra])
    result = train(cfg, out / name, overwrite=True, progress=False)
    m = result.metrics
    return {
        "test_accuracy": m["test"]["accuracy"],
        "prunable_kept": m["params"]["prunable_after"] / m["params"]["prunable_before"],
        "total_params": m["params"]["total_after"],
        "train_seconds": m["train_seconds"],
        "peak_memory_mb": m["peak_memory_mb"],
        "pruned_ms": m["inference"]["pruned_ms"],
        "dense_ms": m["inference"]["dense_ms"],
        "speedup": m["inference"]["speedup"],
        "heads": m["shapes"]["heads"],  # kept per layer in the export
        "neurons": m["shapes"]["neurons"],
        "curve": _curve(out / name / "history.jsonl"),
    }


def tune(model, params, tokenizer, examples, steps, lr, eval_examples, eval_every, seed) -> list:
    """Plain AdamW loop with linear warm-up/decay on `params`; returns (seconds, val accuracy, step)
    points."""
    opt = torch.optim.AdamW(params, lr=lr)
    warmup = round(0.06 * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_linear_factor(s, warmup, steps))
    curve, step, epoch, start = [], 0, 0, time.perf_counter()
    model.train()
    while step < steps:
        for chunk in batches(examples, 32, True, seed, epoch):
            if step >= steps:
                break
            enc = encode(tokenizer, chunk, 64)
            labels = enc.pop("labels")
            loss = F.cross_entropy(model(**enc).logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step % eval_every == 0 or step == steps:
                acc = evaluate(model, tokenizer, eval_examples, 64, 64)["accuracy"]
                curve.append((time.perf_counter() - start, acc, step))
                model.train()
        epoch += 1
    model.eval()
    return curve


def _steps(args, n_train: int) -> int:
    """Optimizer steps of `args.epochs` epochs at batch size 32."""
    return math.ceil(args.epochs * math.ceil(n_train / 32))


def run_lora(args, out: Path) -> dict:
    """PEFT LoRA r 8 on query/value, classifier trained; saves the merged model for the pruning peers."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(args.seed)
    data = rotten_tomatoes()
    model, tokenizer = minilm()
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                                                  task_type="SEQ_CLS"))  # fmt: skip
    params = [p for p in peft_model.parameters() if p.requires_grad]
    cfg = load_config(CONFIG)
    start = time.perf_counter()
    curve = tune(peft_model, params, tokenizer, data["train"], _steps(args, len(data["train"])),
                 cfg.train.learning_rate, data["validation"], cfg.train.eval_every, args.seed)  # fmt: skip
    seconds = time.perf_counter() - start
    merged = peft_model.merge_and_unload()
    save_model(merged, str(out / LORA_MODEL))
    return _final(merged, tokenizer, data, seconds, curve)


def _final(model, tokenizer, data, seconds, curve) -> dict:
    """The row of a model trained here: test accuracy, size, time, memory, inference time."""
    inputs = {k: v for k, v in review_batches(tokenizer, "test", 1)[0].items() if k != "labels"}
    dense_model, _ = minilm()
    family = family_for(model)
    kept = family.inventory(model).prunable_params() / family.inventory(dense_model).prunable_params()
    return {
        "test_accuracy": evaluate(model, tokenizer, data["test"], 64, 64)["accuracy"],
        "prunable_kept": kept,
        "total_params": sum(p.numel() for p in model.parameters()),
        "train_seconds": seconds,
        "peak_memory_mb": _peak_mb(),
        "pruned_ms": inference_ms(model, inputs),
        "dense_ms": inference_ms(dense_model, inputs),
        "curve": curve,
    }


def _lora_tuned(out: Path):
    """This seed's merged LoRA-tuned MiniLM and its tokenizer."""
    model, tokenizer = minilm()
    load_model(model, str(out / LORA_MODEL))
    return model, tokenizer


def _recover(model, tokenizer, data, args, steps) -> tuple[float, list]:
    """`steps` of LoRA tuning (query/value/intermediate, classifier), merged back; (seconds, curve)."""
    adapters = attach_adapters(
        family_for(model).adapter_slots(model, ["query", "value"], ["intermediate"]), 8, 16
    )
    model.requires_grad_(False)
    for a in adapters.values():
        a.lora_A.requires_grad_(True)
        a.lora_B.requires_grad_(True)
    model.classifier.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    start = time.perf_counter()
    curve = tune(model, params, tokenizer, data["train"], steps, load_config(CONFIG).train.learning_rate,
                 data["validation"], 50, args.seed + 1)  # fmt: skip
    merge_adapters(model)
    return time.perf_counter() - start, curve


def _recovery_steps(args, n_train: int) -> int:
    """APT's steps after the 10%-60% pruning window the peer rows were measured against:
    (1 - end_step) x the run's steps."""
    cfg = apply_overrides(load_config(CONFIG), WINDOW_10_60)
    return round((1 - cfg.pruning.end_step) * _steps(args, n_train))


def run_lora_prune(args, out: Path) -> dict:
    """LoRA-tuned model, one-shot aptune salience pruning to 40% of prunable params, then recovery."""
    torch.manual_seed(args.seed)
    data = rotten_tomatoes()
    model, tokenizer = _lora_tuned(out)
    calib = review_batches(tokenizer, "train", 8)
    pruner = salience_pruner(model, calib)
    shrink_model(model, pruner.plan(0.4))
    seconds, curve = _recover(model, tokenizer, data, args, _recovery_steps(args, len(data["train"])))
    return _final(model, tokenizer, data, seconds, curve)


def run_torch_pruning(args, out: Path) -> dict:
    """LoRA-tuned model pruned by torch-pruning (Taylor) to 40% of prunable params, then recovery."""
    from peers import prunable_params, torch_pruning_prune

    torch.manual_seed(args.seed)
    data = rotten_tomatoes()
    model, tokenizer = _lora_tuned(out)
    calib = review_batches(tokenizer, "train", 8)
    example = {k: v for k, v in calib[0].items() if k != "labels"}
    torch_pruning_prune(model, example, int(0.4 * prunable_params(model)), calib)
    seconds, curve = _recover(model, tokenizer, data, args, _recovery_steps(args, len(data["train"])))
    return _final(model, tokenizer, data, seconds, curve)


def _epochs_dir(epochs: float) -> str:
    """`epochs-3` for 3 and 3.0, `epochs-0.5` for 0.5: one folder per number of epochs."""
    return f"epochs-{epochs:g}"


def _work(args, seed: int) -> Path:
    """This seed's work folder (aptune run folders, the merged LoRA model)."""
    return Path(args.work) / _epochs_dir(args.epochs) / f"seed-{seed}"


def _row_path(epochs: float, seed: int, name: str) -> Path:
    """Where the committed row of `name` at `epochs` and `seed` lives."""
    return ROWS / _epochs_dir(epochs) / f"seed-{seed}" / f"{name}.json"


def run_one(name: str, args) -> dict:
    """Run one method for `args.seed` in this process."""
    out = _work(args, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    if name in ("full-ft", *APT):
        return run_aptune(name, args, out)
    return {"lora": run_lora, "lora-prune": run_lora_prune, "torch-pruning": run_torch_pruning}[name](
        args, out
    )


def _write_row(path: Path, row: dict) -> None:
    """Write `row` as JSON to `path` atomically (a temporary file in the same folder, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(row, indent=2) + "\n")
    os.replace(tmp, path)


def _to_run(methods: list[str], seed: int, args) -> list[str]:
    """Methods to run for `seed`: those without a row (all with --rerun), plus lora when a pruning peer
    has to run and this seed's LoRA model or row is missing."""
    run = [m for m in methods if args.rerun or not _row_path(args.epochs, seed, m).is_file()]
    lora_ready = (_work(args, seed) / LORA_MODEL).is_file() and _row_path(args.epochs, seed, "lora").is_file()
    if set(PEERS) & set(run) and "lora" not in run and not lora_ready:
        run.append("lora")
    return sorted(run, key=METHODS.index)


def _with_lora_time(row: dict, lora: dict) -> dict:
    """A pruning peer's row with the LoRA training it starts from added to its time and curve."""
    offset = lora["train_seconds"]
    curve = [(point[0] + offset, *point[1:]) for point in row["curve"]]
    return {**row, "train_seconds": row["train_seconds"] + offset, "curve": curve, "lora_seconds": offset}


def _run(name: str, seed: int, args) -> dict:
    """Run `name` for `seed` in a fresh process and write its row file at once; returns the row."""
    cmd = [sys.executable, __file__, "--one", name, "--epochs", str(args.epochs), "--seed", str(seed),
           "--work", args.work]  # fmt: skip
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if name in PEERS:
        row = _with_lora_time(row, json.loads(_row_path(args.epochs, seed, "lora").read_text()))
    _write_row(_row_path(args.epochs, seed, name), row)
    return row


def run_missing(methods: list[str], seeds: list[int], args) -> None:
    """Run every method without a row (all of them with --rerun) once per seed, seed after seed."""
    for seed in seeds:
        run = _to_run(methods, seed, args)
        for name in sorted({*methods, *run}, key=METHODS.index):
            path = _row_path(args.epochs, seed, name)
            row = _run(name, seed, args) if name in run else json.loads(path.read_text())
            how = "ran" if name in run else "reused"
            print(f"seed {seed} {name}: {how}, test accuracy {row['test_accuracy']:.4f}", flush=True)


def read_rows(methods: list[str], seeds: list[int], epochs: float) -> dict[int, dict[str, dict]]:
    """The committed rows of `methods` at `epochs`, by seed then method; missing ones are left out,
    and so are seeds without any."""
    per_seed = {}
    for seed in seeds:
        paths = {name: _row_path(epochs, seed, name) for name in methods}
        if rows := {name: json.loads(p.read_text()) for name, p in paths.items() if p.is_file()}:
            per_seed[seed] = rows
    return per_seed


def _first_at(curve, threshold: float) -> list | tuple | None:
    """The first evaluation at or above `threshold`, or None. Curve points are (seconds, accuracy) in
    rows written before 2026-12-03, (seconds, accuracy, step) since."""
    return next((point for point in curve if point[1] >= threshold), None)


def _reached(curve, threshold: float | None) -> dict:
    """`time_to_97` (wall time) and `step_to_97` of the first evaluation at `threshold`: None when none
    reaches it or there is no threshold; the step is "n/a" when that point carries none."""
    point = None if threshold is None else _first_at(curve, threshold)
    if point is None:
        return {"time_to_97": None, "step_to_97": None}
    return {"time_to_97": point[0], "step_to_97": point[2] if len(point) > 2 else "n/a"}


def _thresholds(per_seed: dict[int, dict[str, dict]]) -> dict[int, float]:
    """0.97 x each seed's full-ft final validation-curve accuracy; a seed without a full-ft row gets the
    mean over the seeds with one (empty without any full-ft row)."""
    own = {s: 0.97 * rows["full-ft"]["curve"][-1][1] for s, rows in per_seed.items() if "full-ft" in rows}
    if not own:
        return {}
    fallback = statistics.mean(own.values())
    return {s: own.get(s, fallback) for s in per_seed}


def with_time_to_97(per_seed: dict[int, dict[str, dict]]) -> dict[int, dict[str, dict]]:
    """Copies of the rows with `time_to_97` and `step_to_97` added (None when not reached, or without
    any full-ft row)."""
    thresholds = _thresholds(per_seed)
    return {
        s: {n: {**r, **_reached(r["curve"], thresholds.get(s))} for n, r in rows.items()}
        for s, rows in per_seed.items()
    }


def mean_curve_to_97(per_seed: dict[int, dict[str, dict]], method: str) -> dict | None:
    """Where `method`'s validation curve averaged over the seeds first reaches 97% of full fine-tuning's
    final validation-curve accuracy averaged over its seeds: the step, the mean wall time of that
    evaluation, the mean accuracy there, the threshold and the seed count. None without a full-ft row,
    when the seeds' curves were not evaluated at the same steps, or when the mean never reaches it."""
    thresholds = _thresholds(per_seed)  # a seed without full-ft has the mean: the mean is unchanged
    curves = [rows[method]["curve"] for rows in per_seed.values() if method in rows]
    if not thresholds or not curves:
        return None
    threshold = statistics.mean(thresholds.values())
    for points in zip(*curves, strict=False):  # the i-th evaluation of every seed
        steps = {p[2] if len(p) > 2 else None for p in points}
        if len(steps) != 1 or None in steps:
            return None
        accuracy = statistics.mean(p[1] for p in points)
        if accuracy >= threshold:
            time = statistics.mean(p[0] for p in points)
            return {"step": steps.pop(), "time": time, "accuracy": accuracy, "threshold": threshold,
                    "seeds": len(curves)}  # fmt: skip
    return None


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def _summary(rows: list[dict]) -> dict:
    """One method's aggregate over its per-seed rows (each with `time_to_97`)."""
    acc, acc_std = _mean_std([r["test_accuracy"] for r in rows])
    reached = [r["time_to_97"] for r in rows if r["time_to_97"] is not None]
    steps = [r["step_to_97"] for r in rows if r["step_to_97"] is not None]
    keys = ("prunable_kept", "total_params", "train_seconds", "peak_memory_mb", "pruned_ms", "dense_ms")
    return {
        "seeds": len(rows),
        "test_accuracy": acc,
        "test_accuracy_std": acc_std,
        **{k: statistics.mean(r[k] for r in rows) for k in keys},
        "speedup": statistics.mean(r["dense_ms"] / r["pruned_ms"] for r in rows),
        "time_to_97": statistics.mean(reached) if reached else None,
        "reached_97": len(reached),
        "step_to_97": "n/a" if "n/a" in steps else statistics.mean(steps) if steps else None,
    }


def aggregate(per_seed: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per method (in suite order), the mean and spread over the seeds that have its row; the rows must
    carry `time_to_97` (see `with_time_to_97`)."""
    names = [m for m in METHODS if any(m in rows for rows in per_seed.values())]
    return {m: _summary([rows[m] for rows in per_seed.values() if m in rows]) for m in names}


def _cells(name: str, a: dict, ft_acc: float | None) -> list[str]:
    """One table row's cells: `a` is the method's aggregate, `ft_acc` full fine-tuning's mean accuracy."""
    std = a["test_accuracy_std"]
    acc = f"{a['test_accuracy']:.4f}" + ("" if std is None else f" ± {std:.4f}")
    t97 = "-" if a["time_to_97"] is None else f"{a['time_to_97']:.0f}"
    if 0 < a["reached_97"] < a["seeds"]:
        t97 += f" ({a['reached_97']}/{a['seeds']} seeds)"
    step = a["step_to_97"]
    s97 = "-" if step is None else step if isinstance(step, str) else f"{step:.0f}"
    ratio = "-" if ft_acc is None else f"{a['test_accuracy'] / ft_acc:.1%}"
    return [name, str(a["seeds"]), acc, ratio, f"{a['prunable_kept']:.1%}", f"{a['total_params'] / 1e6:.2f}M",
            f"{a['train_seconds']:.0f}", t97, s97, f"{a['peak_memory_mb']:.0f}", f"{a['pruned_ms']:.1f}",
            f"{a['speedup']:.2f}x"]  # fmt: skip


FOOTNOTE = (
    "Test acc: mean ± sample standard deviation over the seeds that have the method's row (seeds column; "
    "no spread for one seed). Every other column is a mean over the same seeds; % of FT is the ratio of "
    "the mean test accuracies. Time to 97%: first validation evaluation at or above 97% of full fine-"
    "tuning's final validation-curve accuracy on the same seed (where a seed has no full fine-tuning row,"
    " the mean over the seeds that have one), wall time with evaluations included, averaged over the "
    "seeds that reach it (k/n seeds when not all do); step: the optimizer step of that evaluation (every "
    "100 steps, at the end and, while distilling, at re-plans; n/a for rows recorded before steps were "
    "kept), the same mean. lora-prune "
    "and torch-pruning start from the same seed's LoRA model and include its training time, but not the "
    "one-shot pruning itself. Peak MB: peak RSS of the method's process (model loading and final timing "
    "included). Speed-up: dense over exported-model inference time."
)


MEAN_CURVE_NOTE = (
    "Mean curve: each method's validation accuracy averaged over its seeds at each evaluation (the seeds "
    "evaluate at the same steps), against 97% of full fine-tuning's final validation accuracy averaged "
    "over its seeds; the time is the mean wall time of that evaluation over the seeds (never: the mean "
    "stays below, or the seeds evaluate at different steps)."
)


def table(agg: dict[str, dict], epochs: float, seeds: list[int]) -> str:
    """The Markdown table of `aggregate`'s output, with its heading and footnote."""
    ft_acc = agg["full-ft"]["test_accuracy"] if "full-ft" in agg else None
    lines = [
        f"# Quality: MiniLM on Rotten Tomatoes, {epochs:g} epoch(s), seeds {', '.join(map(str, seeds))}",
        "",
        "| method | seeds | test acc | % of FT | prunable kept | params | train s | time to 97% FT (s) "
        "| step | peak MB | inference ms | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(_cells(name, a, ft_acc)) + " |" for name, a in agg.items()]
    return "\n".join([*lines, "", FOOTNOTE, *_mean_curve_lines(agg)])


def _mean_curve_lines(agg: dict[str, dict]) -> list[str]:
    """A second table: where each method's seed-averaged validation curve reaches 97% of full
    fine-tuning (`mean_curve_97` of the aggregates); empty for a single seed."""
    rows = [(n, a["mean_curve_97"]) for n, a in agg.items() if a["seeds"] > 1 and n != "full-ft"]
    if not rows:
        return []
    lines = ["", "| method | mean curve reaches 97% FT at step | its mean time (s) | mean val acc there |",
             "|---|---|---|---|"]  # fmt: skip
    for name, m in rows:
        cells = (
            ["never", "-", "-"] if m is None else [str(m["step"]), f"{m['time']:.0f}", f"{m['accuracy']:.4f}"]
        )
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return [*lines, "", MEAN_CURVE_NOTE]


def _plot(per_seed: dict[int, dict[str, dict]], agg: dict[str, dict], path: Path) -> None:
    """Mean test accuracy vs prunable parameters kept (error bars: std), and the first seed's curves."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, a in agg.items():
        x, y = a["prunable_kept"], a["test_accuracy"]
        ax1.errorbar(x, y, yerr=a["test_accuracy_std"] or 0, fmt="o", capsize=3, label=name)
        ax1.annotate(name, (x, y), fontsize=7, xytext=(4, 2), textcoords="offset points")
        seed, curve = next((s, rows[name]["curve"]) for s, rows in per_seed.items() if name in rows)
        if curve:
            ax2.plot([p[0] for p in curve], [p[1] for p in curve], marker=".", label=f"{name} (seed {seed})")
    ax1.set_xlabel("prunable parameters kept")
    ax1.set_ylabel("test accuracy (mean ± std over seeds)")
    ax1.set_title("accuracy vs parameters")
    ax2.set_xlabel("wall time (s)")
    ax2.set_ylabel("validation accuracy")
    ax2.set_title("accuracy vs training time (first seed)")
    ax2.legend(fontsize=7)
    FigureCanvasAgg(fig).print_png(str(path))


def report(per_seed: dict[int, dict[str, dict]], epochs: float, name: str = "quality") -> None:
    """Aggregate the rows, print the table and write results/<name>-<date>.{json,md,png}."""
    per_seed = with_time_to_97(per_seed)
    agg = {m: {**a, "mean_curve_97": mean_curve_to_97(per_seed, m)} for m, a in aggregate(per_seed).items()}
    seeds = list(per_seed)
    text = table(agg, epochs, seeds)
    payload = {"epochs": epochs, "seeds": seeds, "methods": agg, "rows": per_seed}
    json_path, md_path = write_results(name, payload, text)
    _plot(per_seed, agg, md_path.with_suffix(".png"))
    print(text)
    print(f"wrote {json_path.relative_to(RESULTS.parent.parent)}")


def _parser() -> argparse.ArgumentParser:
    """The command line (`--one` and `--seed` run a single method in the suite's subprocesses)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=3.0, help="epochs per run (default 3)")
    parser.add_argument("--seeds", default="42", help="comma-separated (default 42); one run per method each")
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("--rerun", action="store_true", help="run again even where a row is committed")
    parser.add_argument("--table-only", action="store_true",
                        help="run nothing; table, JSON and plot from the committed rows")  # fmt: skip
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "aptune-quality"),
                        help="work files, under epochs-<E>/seed-<S>/")  # fmt: skip
    parser.add_argument("--name", default="quality",
                        help="write results/<name>-<date>.* (default: quality)")  # fmt: skip
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    """Run what is missing (unless --table-only), then report over the committed rows."""
    parser = _parser()
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return
    methods = args.only.split(",") if args.only else METHODS
    if unknown := set(methods) - set(METHODS):
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if not args.table_only:
        run_missing(methods, seeds, args)
    per_seed = read_rows(methods, seeds, args.epochs)
    if not per_seed:
        parser.error(f"no rows under {ROWS / _epochs_dir(args.epochs)} for these methods and seeds")
    report(per_seed, args.epochs, args.name)


if __name__ == "__main__":
    main()
