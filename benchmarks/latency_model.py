"""Latency model accuracy: the speed-up the table predicts for pruned MiniLM shapes that lie on no
grid point, against the speed-up measured side by side.

The table is profiled as a `pruning.target_speedup` run profiles it (the built-in MiniLM, a batch
of 32 real test reviews padded to 64 tokens, CPU fp32). Each held-out shape draws a fraction of the
dense model (20-90%) and, around it, a head count and FFN width per layer and a hidden size that are
no grid point; its first-k shrunk model is timed against the dense model in alternating rounds in
this one process (`timing.paired_ms`). The error is predicted / measured - 1.

    python benchmarks/latency_model.py [--shapes 8] [--seed 0]

Writes results/latency-model-<date>.{json,md}. About 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import statistics

from common import minilm, review_batches, write_results

from aptune.families import family_for
from aptune.latency import LatencyModel, measure
from aptune.shrink import first_k_plan, shrink_model
from aptune.timing import paired_ms

ALIGN = 8


def _off_grid(full: int, grid: list[int], fraction: float, step: int, rng: random.Random) -> int:
    """A count between 0.6x and 1.4x `fraction` of `full` (within [step, full]) that is a multiple of
    `step` and no grid point (the range's low end when every count in it is one)."""
    low = max(step, math.ceil(0.6 * fraction * full / step) * step)
    high = max(low, min(full, math.floor(1.4 * fraction * full / step) * step))
    choices = [v for v in range(low, high + 1, step) if v not in grid]
    return rng.choice(choices or [low])


def held_out_shapes(table: LatencyModel, inv, count: int, seed: int) -> list[dict]:
    """`count` shapes, each around a random fraction (20-90%) of the dense counts, per layer off
    the grid; widths and the hidden size stay multiples of ALIGN."""
    rng = random.Random(seed)
    shapes = []
    for _ in range(count):
        fraction = rng.uniform(0.2, 0.9)
        shapes.append(
            {
                "heads": [_off_grid(h, table.head_grid, fraction, 1, rng) for h in inv.heads],
                "neurons": [_off_grid(n, table.neuron_grid, fraction, ALIGN, rng) for n in inv.neurons],
                "hidden_size": _off_grid(inv.hidden, table.hidden_grid, fraction, ALIGN, rng),
            }
        )
    return shapes


def main() -> None:
    """Profile, time every held-out shape against the dense model, write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=int, default=8, help="held-out shapes to time (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random shapes (default 0)")
    args = parser.parse_args()
    model, tokenizer = minilm()
    inputs = {k: v for k, v in review_batches(tokenizer, "test", 1)[0].items() if k != "labels"}
    family = family_for(model)
    inv = family.inventory(model)
    table = measure(model, inputs, align=ALIGN)
    dense = table(inv.heads, inv.neurons, inv.hidden)
    rows = []
    for shape in held_out_shapes(table, inv, args.shapes, args.seed):
        pruned = copy.deepcopy(model)
        shrink_model(pruned, first_k_plan(inv, shape), family)
        dense_ms, pruned_ms = paired_ms(model, pruned.eval(), inputs)
        predicted = dense / table(shape["heads"], shape["neurons"], shape["hidden_size"])
        measured = dense_ms / pruned_ms
        kept = family.inventory(pruned).prunable_params() / inv.prunable_params()
        rows.append({**shape, "prunable_kept": kept, "predicted": predicted, "measured": measured,
                     "error": predicted / measured - 1})  # fmt: skip
        print(f"kept {kept:.0%}: predicted {predicted:.2f}x, measured {measured:.2f}x", flush=True)
    errors = [abs(r["error"]) for r in rows]
    summary = {"mean_abs_error": statistics.mean(errors), "max_abs_error": max(errors)}
    lines = [
        "**Latency model on held-out shapes** (MiniLM, batch 32 x 64 real test reviews, CPU fp32)",
        "",
        "| kept | hidden | heads per layer | FFN width per layer | predicted | measured | error |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['prunable_kept']:.0%} | {r['hidden_size']} | {r['heads']} | {r['neurons']} | "
            f"{r['predicted']:.2f}x | {r['measured']:.2f}x | {r['error']:+.1%} |"
            for r in rows
        ),
        "",
        f"Mean absolute error {summary['mean_abs_error']:.1%}, largest {summary['max_abs_error']:.1%}. "
        f"Profiling took {table.profile_seconds:.0f} s. Kept: fraction of the prunable (attention and "
        "FFN) weights; measured: dense over pruned forward time, alternating rounds in one process.",
    ]
    payload = {"profile_seconds": table.profile_seconds, "shapes": rows, **summary}
    json_path, md_path = write_results("latency-model", payload, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
