"""Speed suite: inference of dense vs pruned models at several sparsities, aligned vs unaligned plans.

CPU, fp32: the real MiniLM, plans from outlier-aware salience on real Rotten Tomatoes batches
(one-shot), batch 32 x 64 tokens. CUDA (when present), bf16: a roberta-base-shaped random model,
batch 128 x 128 tokens, plans from random scores. Measured speed-up is reported next to the ideal
one (the ratio of prunable parameters). About 4 minutes on 2 CPU cores.

    python benchmarks/speed.py [--runs 20]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
import transformers
from common import RESULTS, minilm, pruned_copy, review_batches, salience_pruner, write_results

from aptune.blocks import BlockScores
from aptune.families import family_for
from aptune.search import plan_masks
from aptune.timing import inference_ms

SPARSITIES = (0.4, 0.6, 0.8)
ALIGNS = (8, 1)


def cpu_rows(runs: int) -> list[dict]:
    """MiniLM fp32 on the CPU: one row per (sparsity, align)."""
    model, tokenizer = minilm()
    pruner = salience_pruner(model, review_batches(tokenizer, "train", 4))
    inputs = {k: v for k, v in review_batches(tokenizer, "test", 1)[0].items() if k != "labels"}
    rows = []
    for sparsity in SPARSITIES:
        for align in ALIGNS:
            pruner.options = dataclasses.replace(pruner.options, align=align)
            plan = pruner.plan(1 - sparsity)
            dense_ms = inference_ms(model, inputs, runs=runs)  # re-timed next to each pruned model
            pruned_ms = inference_ms(pruned_copy(model, plan), inputs, runs=runs)
            rows.append(
                _row("cpu", "float32", sparsity, align, plan, pruner.initial_params, dense_ms, pruned_ms)
            )
    return rows


def gpu_rows(runs: int) -> list[dict]:
    """roberta-base shape, random weights, bf16 on CUDA: one row per (sparsity, align)."""
    config = transformers.RobertaConfig(num_labels=2)  # 12 layers, d 768, 12 heads, FFN 3072
    model = transformers.RobertaForSequenceClassification(config).to("cuda", torch.bfloat16).eval()
    family = family_for(model)
    inv = family.inventory(model)
    g = torch.Generator().manual_seed(0)
    scores = BlockScores(
        heads=[torch.rand(n, generator=g) for n in inv.heads],
        neurons=[torch.rand(n, generator=g) for n in inv.neurons],
        hidden=torch.rand(inv.hidden, generator=g),
    )
    inputs = {"input_ids": torch.randint(5, 50000, (128, 128), device="cuda")}
    total = inv.prunable_params()
    rows = []
    for sparsity in SPARSITIES:
        for align in ALIGNS:
            plan = plan_masks(inv, scores, int((1 - sparsity) * total), align=align)
            dense_ms = inference_ms(model, inputs, runs=runs)
            pruned_ms = inference_ms(pruned_copy(model, plan), inputs, runs=runs)
            rows.append(_row("cuda", "bfloat16", sparsity, align, plan, total, dense_ms, pruned_ms))
    return rows


def _row(device, dtype, sparsity, align, plan, total, dense_ms, pruned_ms) -> dict:
    return {
        "device": device,
        "dtype": dtype,
        "target_sparsity": sparsity,
        "align": align,
        "kept": plan.params / total,
        "hidden": plan.kept_hidden,
        "neurons": list(plan.kept_neurons),
        "heads": list(plan.kept_heads),
        "dense_ms": dense_ms,
        "pruned_ms": pruned_ms,
        "speedup": dense_ms / pruned_ms,
        "ideal_speedup": total / plan.params,
        "of_ideal": (dense_ms / pruned_ms) / (total / plan.params),
    }


def _table(rows: list[dict], gpu_note: str) -> str:
    lines = [
        "# Inference speed: dense vs pruned",
        "",
        "| device | dtype | sparsity | align | params kept | hidden | dense ms | pruned ms | speed-up "
        "| ideal | % of ideal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['dtype']} | {r['target_sparsity']:.0%} | {r['align']} | {r['kept']:.1%} | "
            f"{r['hidden']} | {r['dense_ms']:.1f} | {r['pruned_ms']:.1f} | {r['speedup']:.2f}x | "
            f"{r['ideal_speedup']:.2f}x | {r['of_ideal']:.0%} |"
        )
    lines += ["", gpu_note]
    return "\n".join(lines)


def _plot(rows: list[dict], path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for (device, align), marker in zip(
        [(d, a) for d in ("cpu", "cuda") for a in ALIGNS], "os^v", strict=True
    ):
        sel = [r for r in rows if r["device"] == device and r["align"] == align]
        if sel:
            ax.plot(
                [r["kept"] for r in sel],
                [r["speedup"] for r in sel],
                marker=marker,
                label=f"{device} align {align}",
            )
    kept = sorted({r["kept"] for r in rows})
    ax.plot(kept, [1 / k for k in kept], "k--", label="ideal (1 / params kept)")
    ax.set_xlabel("prunable parameters kept")
    ax.set_ylabel("inference speed-up vs dense")
    ax.legend()
    FigureCanvasAgg(fig).print_png(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = cpu_rows(args.runs)
    if torch.cuda.is_available():
        rows += gpu_rows(args.runs)
        gpu_note = (
            f"CUDA: {torch.cuda.get_device_name(0)}, roberta-base shape, random weights, batch 128 x 128."
        )
    else:
        gpu_note = "CUDA: no GPU on this machine; the bf16 GPU rows were not measured."
    note = (
        "CPU: all-MiniLM-L6-v2, salience from 4 batches of real reviews, batch 32 x 64; dense and pruned "
        f"timed back to back for every row, median of {args.runs} runs each."
    )
    json_path, md_path = write_results(
        "speed",
        {"rows": rows, "runs": args.runs, "gpu_measured": torch.cuda.is_available()},
        _table(rows, f"{note}\n{gpu_note}"),
    )
    _plot(rows, md_path.with_suffix(".png"))
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path.with_suffix('.png').relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
