"""One-shot APT plan on the real MiniLM from salience on real Rotten Tomatoes batches.

Computes outlier-aware salience on a few training batches, plans 60% sparsity (aligned to 8),
checks that the masked and the physically shrunk + reloaded model agree, and times fp32 inference
of the dense and the pruned model side by side (batch 32, sequence 64). About 2 minutes on 2 cores.

    python benchmarks/prune_minilm.py [--sparsity 0.6] [--batches 8] [--runs 20]
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from common import minilm, review_batches, salience_pruner, write_results

from aptune.masks import MaskState, install_masks
from aptune.shrink import load_pruned, save_pruned, shrink_model
from aptune.timing import inference_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.6)
    parser.add_argument("--batches", type=int, default=8, help="salience batches of 32 reviews")
    parser.add_argument("--align", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = minilm()
    dense, _ = minilm()
    dense.load_state_dict(model.state_dict())
    pruner = salience_pruner(model, review_batches(tokenizer, "train", args.batches), align=args.align)
    plan = pruner.plan(1 - args.sparsity)

    test = review_batches(tokenizer, "test", 1)[0]
    inputs = {k: v for k, v in test.items() if k != "labels"}
    inv = pruner.inventory()
    masks = MaskState.ones(list(inv.heads), list(inv.neurons), inv.hidden)
    hooks = install_masks(model, pruner.family, masks)
    masks.set_hard(plan)
    with torch.no_grad():
        masked = model(**inputs).logits
    hooks.remove()
    shrink_model(model, plan)
    with tempfile.TemporaryDirectory() as tmp:
        save_pruned(model, tmp)
        pruned = load_pruned(tmp)
    with torch.no_grad():
        max_diff = float((pruned(**inputs).logits - masked).abs().max())

    dense_ms = inference_ms(dense, inputs, runs=args.runs)
    pruned_ms = inference_ms(pruned, inputs, runs=args.runs)
    kept = plan.params / pruner.initial_params
    result = {
        "model": "all-MiniLM-L6-v2 (builtin:minilm)",
        "target_sparsity": args.sparsity,
        "align": args.align,
        "salience_batches": args.batches,
        "shapes": {"hidden": plan.kept_hidden, "heads": plan.kept_heads, "neurons": plan.kept_neurons},
        "prunable_params": {"before": pruner.initial_params, "after": plan.params, "kept": kept},
        "total_params": {
            "before": sum(p.numel() for p in dense.parameters()),
            "after": sum(p.numel() for p in pruned.parameters()),
        },
        "max_abs_logit_diff_masked_vs_reloaded": max_diff,
        "inference": {
            "batch_size": 32, "seq_len": 64, "dtype": "float32", "device": "cpu",
            "dense_ms": dense_ms, "pruned_ms": pruned_ms, "speedup": dense_ms / pruned_ms,
            "ideal_speedup": pruner.initial_params / plan.params,
        },
    }  # fmt: skip
    table = "\n".join(
        [
            f"# One-shot {args.sparsity:.0%} APT plan on MiniLM (real Rotten Tomatoes salience)",
            "",
            "| prunable kept | hidden | heads/layer | neurons/layer | dense ms | pruned ms | speed-up "
            "| ideal |",
            "|---|---|---|---|---|---|---|---|",
            f"| {kept:.1%} | {plan.kept_hidden} | {list(plan.kept_heads)} | {list(plan.kept_neurons)} | "
            f"{dense_ms:.1f} | {pruned_ms:.1f} | {dense_ms / pruned_ms:.2f}x | {1 / kept:.2f}x |",
            "",
            f"Masked vs reloaded max |logit diff|: {max_diff:.2e}. "
            f"CPU fp32, batch 32, seq 64, median of {args.runs}.",
        ]
    )
    json_path, _ = write_results("prune-minilm", result, table)
    print(table)
    print(f"\nwrote {json_path}")


if __name__ == "__main__":
    main()
