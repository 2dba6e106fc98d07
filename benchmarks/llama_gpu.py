"""LLaMA-2-7B-shaped training step and prefill: APT against plain LoRA, on a CUDA GPU.

A randomly initialised LlamaForCausalLM of LLaMA-2-7B shape (32 layers, d 4096, 32 heads of 128,
gated FFN 11008, vocab 32000) in bf16, batch 4 x 512 tokens, rank-8 adapters on q and v:

* lora: aptune's adapters only (the reference PEFT LoRA figure on an H200 is 156 ms, 26.0 GB);
* apt-hooks: + mask hooks and the per-channel |H| and |dL/dH| sums, not scored (the collection);
* apt-dense: + the per-step salience scores folded into their average (APT's steps up to the end
  of the pruning window);
* apt-pruned: apt-hooks after physically pruning to 70% of the prunable parameters (30% sparsity
  as in the paper's LLaMA runs). APT stops collecting after the pruning window, so this bounds its
  steps there from above;
* prefill: forward time of the exported dense vs pruned model at 30% sparsity, aligned to 8.

Each case reports the median step time and torch's peak allocated memory.

    python benchmarks/llama_gpu.py                 # needs a CUDA GPU (~40 GB)
    python benchmarks/llama_gpu.py --shape tiny    # smoke run on CPU, seconds
"""

from __future__ import annotations

import argparse
import gc

import torch
import transformers
from common import write_results

from aptune.adapter import attach_adapters, merge_adapters
from aptune.config import PruningConfig
from aptune.families import family_for
from aptune.pruner import Pruner
from aptune.timing import median_ms
from aptune.train.tasks import causal_lm_loss

SHAPES = {
    "7b": {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "intermediate_size": 11008,
        "vocab_size": 32000,
        "batch": 4,
        "seq": 512,
    },
    "tiny": {
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "intermediate_size": 688,
        "vocab_size": 1000,
        "batch": 2,
        "seq": 64,
    },
}
RETAIN = 0.7


def build(shape: dict, device: torch.device, dtype: torch.dtype) -> transformers.LlamaForCausalLM:
    """A random LLaMA of `shape` on `device` in `dtype`, frozen."""
    cfg = {k: v for k, v in shape.items() if k not in ("batch", "seq")}
    config = transformers.LlamaConfig(**cfg, max_position_embeddings=shape["seq"])
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(config).to(dtype)
    return model.requires_grad_(False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def train_step_ms(
    model, params, batch, steps: int, device: torch.device, after_backward=None
) -> tuple[float, float | None]:
    """Median time of forward + backward (+ `after_backward()`, e.g. APT's per-step salience) +
    AdamW step, and the peak memory over those steps."""
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step() -> None:
        loss = causal_lm_loss(model(input_ids=batch).logits, batch)
        loss.backward()
        if after_backward is not None:
            after_backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    _peak_reset(device)
    ms = median_ms(step, device, warmup=2, runs=steps)
    return ms, _peak_mb(device)


def prefill_ms(model, batch, device: torch.device) -> float:
    """Median forward time without gradients."""
    with torch.inference_mode():
        return median_ms(lambda: model(input_ids=batch), device, warmup=3, runs=10)


def run(shape_name: str, steps: int) -> dict:
    """Every case of the suite on one shape; returns the results."""
    shape = SHAPES[shape_name]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if shape_name == "7b" and device.type != "cuda":
        raise SystemExit("the 7b shape needs a CUDA GPU (about 40 GB); use --shape tiny on a CPU")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, shape["vocab_size"], (shape["batch"], shape["seq"]), generator=g).to(device)
    model = build(shape, device, dtype)
    family = family_for(model)
    adapters = attach_adapters(family.adapter_slots(model, ["query", "value"], []), 8, 16)
    params = [p for a in adapters.values() for p in (a.lora_A, a.lora_B)]
    rows = {}
    rows["lora"] = train_step_ms(model, params, batch, steps, device)
    pruner = Pruner(model, PruningConfig(align=8, mask_decay_rate=1.0))
    rows["apt-hooks"] = train_step_ms(model, params, batch, steps, device, pruner.collector.reset)
    rows["apt-dense"] = train_step_ms(model, params, batch, steps, device, pruner.fold_batch)
    pruner.masks.set_hard(pruner.plan(RETAIN))
    pruner.shrink()
    rows["apt-pruned"] = train_step_ms(model, params, batch, steps, device, pruner.collector.reset)
    pruner.finalize()
    kept = pruner.prunable_params() / pruner.initial_params
    merge_adapters(model)
    pruned_ms = prefill_ms(model.eval(), batch, device)
    del model, pruner, adapters, params
    dense_ms = prefill_ms(build(shape, device, dtype).eval(), batch, device)
    return {
        "shape": shape_name,
        "config": shape,
        "dtype": str(dtype),
        "device": str(device),
        "train": {k: {"step_ms": ms, "peak_mb": mb} for k, (ms, mb) in rows.items()},
        "prefill": {"dense_ms": dense_ms, "pruned_ms": pruned_ms, "speedup": dense_ms / pruned_ms},
        "kept_prunable": kept,
        "ideal_speedup": 1 / kept,
    }


def table(result: dict) -> str:
    """A readable markdown table of one run, with ratios to LoRA."""
    base = result["train"]["lora"]
    lines = [
        f"LLaMA-2-7B-shaped random model ({result['shape']}), {result['dtype']} on {result['device']}, "
        f"batch {result['config']['batch']} x {result['config']['seq']}, rank-8 adapters on q and v",
        "",
        "| case | step time | vs LoRA | peak memory | vs LoRA |",
        "|---|---|---|---|---|",
    ]
    for name, row in result["train"].items():
        mem = row["peak_mb"]
        mem_txt = f"{mem:,.0f} MiB" if mem is not None else "n/a (CPU)"
        mem_ratio = f"{mem / base['peak_mb']:.2f}x" if mem is not None else "n/a"
        step_ratio = row["step_ms"] / base["step_ms"]
        lines.append(f"| {name} | {row['step_ms']:.1f} ms | {step_ratio:.2f}x | {mem_txt} | {mem_ratio} |")
    p = result["prefill"]
    lines += [
        "",
        f"Prefill of the exported model at {1 - result['kept_prunable']:.0%} sparsity: dense "
        f"{p['dense_ms']:.1f} ms, pruned {p['pruned_ms']:.1f} ms, **{p['speedup']:.2f}x** "
        f"(ideal {result['ideal_speedup']:.2f}x).",
    ]
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run, write results/llama-gpu-<date>.{json,md} (tiny: print only)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per case")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    result = run(args.shape, args.steps)
    text = table(result)
    print(text)
    if args.shape == "7b":
        paths = write_results("llama-gpu", result, text)
        print("wrote", *paths)


if __name__ == "__main__":
    main()
