"""One-shot APT plan on the real MiniLM from salience on real Rotten Tomatoes batches.

Computes outlier-aware salience on a few training batches, plans 60% sparsity (aligned to 8),
checks that the masked and the physically shrunk + reloaded model agree, and times fp32 inference
of the dense and the pruned model side by side (batch 32, sequence 64).

    python benchmarks/prune_minilm.py [--sparsity 0.6] [--batches 8] [--runs 20]
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import transformers
from common import median_ms, write_results

from aptune.assets import builtin_model_path
from aptune.pruner import PruneOptions, Pruner
from aptune.shrink import load_pruned, save_pruned
from aptune.train.data import rotten_tomatoes


def _batches(tokenizer, examples, size, length):
    for start in range(0, len(examples), size):
        chunk = examples[start : start + size]
        enc = tokenizer(
            [e.text for e in chunk],
            padding="max_length",
            truncation=True,
            max_length=length,
            return_tensors="pt",
        )
        enc["labels"] = torch.tensor([e.label for e in chunk])
        yield dict(enc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.6)
    parser.add_argument("--batches", type=int, default=8, help="salience batches of 32 reviews")
    parser.add_argument("--align", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    path = builtin_model_path("minilm")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    data = rotten_tomatoes()
    dense = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    model.load_state_dict(dense.state_dict())

    pruner = Pruner(model, PruneOptions(mask_decay_rate=1.0, align=args.align))
    for batch in list(_batches(tokenizer, data["train"][: 32 * args.batches], 32, 64)):
        model.zero_grad()
        model(**batch).loss.backward()
    plan = pruner.replan(1 - args.sparsity)
    pruner.decay()
    test = next(_batches(tokenizer, data["test"][:32], 32, 64))
    inputs = {k: v for k, v in test.items() if k != "labels"}
    with torch.no_grad():
        masked = model(**inputs).logits
    pruner.finalize()
    with tempfile.TemporaryDirectory() as tmp:
        save_pruned(model, tmp)
        pruned = load_pruned(tmp)
    with torch.no_grad():
        max_diff = float((pruned(**inputs).logits - masked).abs().max())

    with torch.inference_mode():
        dense_ms = median_ms(lambda: dense(**inputs), runs=args.runs)
        pruned_ms = median_ms(lambda: pruned(**inputs), runs=args.runs)
    kept = pruner.prunable_params() / pruner.initial_params
    total_dense = sum(p.numel() for p in dense.parameters())
    total_pruned = sum(p.numel() for p in pruned.parameters())
    result = {
        "model": "all-MiniLM-L6-v2 (builtin:minilm)",
        "target_sparsity": args.sparsity,
        "align": args.align,
        "salience_batches": args.batches,
        "shapes": {"hidden": plan.kept_hidden, "heads": plan.kept_heads, "neurons": plan.kept_neurons},
        "prunable_params": {"before": pruner.initial_params, "after": pruner.prunable_params(), "kept": kept},
        "total_params": {"before": total_dense, "after": total_pruned},
        "max_abs_logit_diff_masked_vs_reloaded": max_diff,
        "inference": {
            "batch_size": 32,
            "seq_len": 64,
            "dtype": "float32",
            "device": "cpu",
            "dense_ms": dense_ms,
            "pruned_ms": pruned_ms,
            "speedup": dense_ms / pruned_ms,
            "ideal_speedup": 1 / kept,
        },
    }
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
