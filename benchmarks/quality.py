"""Quality suite: APT against full fine-tuning, LoRA (peft), LoRA+Prune and torch-pruning, side by side.

Every method trains MiniLM on the built-in Rotten Tomatoes split with the same seed, batch size,
sequence length and number of epochs, in its own process (so that peak memory is its own):

* full fine-tuning and APT (0.4 / 0.6 / 0.8 sparsity, and the 0.6 ablations without kurtosis,
  rank growth or self-distillation) run through `aptune.train`;
* LoRA is PEFT's (r 8 on query/value, classifier trained), in a plain loop written here;
* LoRA+Prune: the LoRA-tuned model, one-shot pruned with aptune's salience to APT 0.6's parameter
  count, then `recovery` steps of adapter tuning;
* torch-pruning: the LoRA-tuned model pruned by torch-pruning (Taylor importance) to the same
  count, with the same recovery budget.

    pip install peft torch-pruning          # the peers (extra `bench`)
    python benchmarks/quality.py [--epochs 1] [--only apt-0.6,lora]

About 60 minutes on 2 CPU cores at one epoch. Writes results/quality-<date>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import RESULTS, minilm, review_batches, salience_pruner, write_results
from safetensors.torch import load_model, save_model

from aptune.adapter import attach_adapters, merge_adapters
from aptune.config import apply_overrides, load_config
from aptune.families import family_for
from aptune.schedule import warmup_linear_factor
from aptune.shrink import shrink_model
from aptune.train.data import batches, encode, rotten_tomatoes
from aptune.train.evaluate import evaluate
from aptune.train.loop import train
from aptune.train.speed import inference_ms

CONFIG = Path(__file__).parents[1] / "configs" / "minilm-rotten-tomatoes.yaml"
APT = {
    "apt-0.4": ["pruning.target_sparsity=0.4"],
    "apt-0.6": [],
    "apt-0.8": ["pruning.target_sparsity=0.8"],
    "apt-0.6-no-kurtosis": ["pruning.use_kurtosis=false"],
    "apt-0.6-no-growth": ["tuning.enabled=false"],
    "apt-0.6-no-distill": ["distill.enabled=false"],
}
# full fine-tuning needs a learning rate ~20x below the adapters' (at 1e-3 it diverges to chance)
FULL_FT = [
    "model.finetune=full",
    "pruning.enabled=false",
    "train.learning_rate=5e-5",
    "train.head_learning_rate=null",
]
METHODS = ["full-ft", "lora", *APT, "lora-prune", "torch-pruning"]


def _common(args) -> list[str]:
    return [f"train.epochs={args.epochs}", f"train.seed={args.seed}", "data.max_eval_samples=null"]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _curve(history_path: Path) -> list[tuple[float, float]]:
    lines = [json.loads(x) for x in history_path.read_text().splitlines()]
    return [(x["elapsed_s"], x["eval"]["accuracy"]) for x in lines if "eval" in x]


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
        "curve": _curve(out / name / "history.jsonl"),
    }


def tune(model, params, tokenizer, examples, steps, lr, eval_examples, eval_every, seed) -> list:
    """Plain AdamW loop with linear warm-up/decay on `params`; returns (seconds, val accuracy) points."""
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
                curve.append((time.perf_counter() - start, acc))
                model.train()
        epoch += 1
    model.eval()
    return curve


def _steps(args, n_train: int) -> int:
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
    save_model(merged, str(out / "lora-merged.safetensors"))
    return _final(merged, tokenizer, data, seconds, curve)


def _final(model, tokenizer, data, seconds, curve) -> dict:
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
    model, tokenizer = minilm()
    load_model(model, str(out / "lora-merged.safetensors"))
    return model, tokenizer


def _recover(model, tokenizer, data, args, steps) -> tuple[float, list]:
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
    cfg = load_config(CONFIG)
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


def run_one(name: str, args) -> dict:
    """Run one method in this process."""
    out = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    if name in ("full-ft", *APT):
        return run_aptune(name, args, out)
    return {"lora": run_lora, "lora-prune": run_lora_prune, "torch-pruning": run_torch_pruning}[name](
        args, out
    )


def _time_to(curve, threshold) -> float | None:
    return next((t for t, acc in curve if acc >= threshold), None)


def _table(rows: dict, args) -> str:
    ft = rows["full-ft"]["test_accuracy"]
    lines = [
        f"# Quality: MiniLM on Rotten Tomatoes, {args.epochs} epoch(s), seed {args.seed}",
        "",
        "| method | test acc | % of FT | prunable kept | params | train s | time to 97% FT (s) | peak MB "
        "| inference ms | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        t97 = "-" if r.get("time_to_97") is None else f"{r['time_to_97']:.0f}"
        acc = r["test_accuracy"]
        lines.append(
            f"| {name} | {acc:.4f} | {acc / ft:.1%} | {r['prunable_kept']:.1%} | "
            f"{r['total_params'] / 1e6:.2f}M | "
            f"{r['train_seconds']:.0f} | {t97} | {r['peak_memory_mb']:.0f} | {r['pruned_ms']:.1f} | "
            f"{r['dense_ms'] / r['pruned_ms']:.2f}x |"
        )
    lines += ["", "Time to 97%: first validation evaluation at or above 97% of full fine-tuning's final "
              "validation-curve accuracy (wall time, evaluations included). lora-prune and torch-pruning "
              "include the LoRA training they start from, but not the one-shot pruning itself. "
              "Peak MB: peak RSS of the method's process (model loading and final timing included)."
              ]  # fmt: skip
    return "\n".join(lines)


def _plot(rows: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, r in rows.items():
        ax1.scatter(r["prunable_kept"], r["test_accuracy"], label=name)
        ax1.annotate(name, (r["prunable_kept"], r["test_accuracy"]), fontsize=7, xytext=(4, 2),
                     textcoords="offset points")  # fmt: skip
        if r["curve"]:
            ax2.plot([t for t, _ in r["curve"]], [a for _, a in r["curve"]], marker=".", label=name)
    ax1.set_xlabel("prunable parameters kept")
    ax1.set_ylabel("test accuracy")
    ax1.set_title("accuracy vs parameters")
    ax2.set_xlabel("wall time (s)")
    ax2.set_ylabel("validation accuracy")
    ax2.set_title("accuracy vs training time")
    ax2.legend(fontsize=7)
    FigureCanvasAgg(fig).print_png(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "aptune-quality"))
    parser.add_argument("--reuse", action="store_true", help="reuse finished methods' rows from --work")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return
    methods = args.only.split(",") if args.only else METHODS
    rows = {}
    cache = Path(args.work) / f"rows-{args.epochs}-{args.seed}"
    cache.mkdir(parents=True, exist_ok=True)
    for name in methods:
        row_file = cache / f"{name}.json"
        if not (args.reuse and row_file.is_file()):
            cmd = [sys.executable, __file__, "--one", name, "--epochs", str(args.epochs),
                   "--seed", str(args.seed), "--work", args.work]  # fmt: skip
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            row_file.write_text(done.stdout.strip().splitlines()[-1])
        rows[name] = json.loads(row_file.read_text())
        print(f"{name}: test accuracy {rows[name]['test_accuracy']:.4f}", flush=True)
    if "lora" in rows:  # the pruning peers start from the LoRA model: count its training time too
        for name in ("lora-prune", "torch-pruning"):
            if name in rows and not rows[name].get("includes_lora"):
                offset = rows["lora"]["train_seconds"]
                rows[name]["train_seconds"] += offset
                rows[name]["curve"] = [(t + offset, a) for t, a in rows[name]["curve"]]
                rows[name]["includes_lora"] = True
    if "full-ft" in rows:
        threshold = 0.97 * rows["full-ft"]["curve"][-1][1]
        for r in rows.values():
            r["time_to_97"] = _time_to(r["curve"], threshold)
    table = _table(rows, args) if "full-ft" in rows else json.dumps(rows, indent=2)
    json_path, md_path = write_results(
        "quality", {"epochs": args.epochs, "seed": args.seed, "rows": rows}, table
    )
    _plot(rows, md_path.with_suffix(".png"))
    print(table)
    print(f"wrote {json_path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
