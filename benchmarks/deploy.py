"""Deploy suite: what pruning and int8 quantization give where a model is served, side by side.

CPU, the built-in MiniLM classifier (dense fine-tuned vs APT at 60% sparsity) and SmolLM2-135M
(LoRA vs APT at 30%), each as

* dense torch fp32 (the baseline), pruned torch fp32,
* pruned ONNX Runtime fp32 and int8 (`aptune export --format onnx --quantize int8`),
* dense ONNX Runtime fp32 and int8 (the "quantize only" alternative),

timed on real test reviews at batch 32 x 64 tokens (throughput) and 1 x 64 (latency), with the
variants interleaved round by round (a short burst each) so that machine noise falls on all of them
alike; torch and onnxruntime use the same number of threads. Accuracy of every variant on the whole test split
(`aptune.evaluate_model`, torch or onnx runtime). Ratios are against dense torch fp32 in the same run.
Each model's rows are kept in results/deploy-rows/<model>.json, so `--only` reruns one model and the
table still shows both.

The models are aptune exports: by default the quality suite's seed-42 MiniLM runs (full-ft and
apt-0.6-no-distill, made by `python benchmarks/quality.py --only full-ft,apt-0.6-no-distill`) and two
SmolLM2 runs of the shipped config:

    aptune train configs/smollm2-rotten-tomatoes.yaml
    aptune train configs/smollm2-rotten-tomatoes.yaml --set pruning.enabled=false tuning.enabled=false \
        --output-dir runs/smollm2-rotten-tomatoes-lora

About 35 minutes on 2 CPU cores (MiniLM 12, SmolLM2 about 20: a dense call at 32 x 64 takes 7 s).

    python benchmarks/deploy.py [--only minilm,smollm2] [--rounds N] \\
        [--minilm-dense DIR --minilm-pruned DIR --smollm2-dense DIR --smollm2-pruned DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers
from common import RESULTS, write_results

from aptune.api import evaluate_model, load_model_dir
from aptune.onnx_export import export_onnx
from aptune.onnx_runtime import ONNX_NAME, OnnxModel, int8_name
from aptune.shrink import base_config
from aptune.train.data import rotten_tomatoes

QUALITY = Path(tempfile.gettempdir()) / "aptune-quality" / "epochs-3" / "seed-42"
DEFAULTS = {
    "minilm": (QUALITY / "full-ft" / "model", QUALITY / "apt-0.6-no-distill" / "model"),
    "smollm2": (
        Path("runs/smollm2-rotten-tomatoes-lora/model"),
        Path("runs/smollm2-rotten-tomatoes/model"),
    ),
}
ROWS = RESULTS / "deploy-rows"
DEFAULT_ROUNDS = {"minilm": 10, "smollm2": 3}  # a dense SmolLM2 call at 32 x 64 takes ~7 s on 2 cores
BURST = 4
SHAPES = {"32x64": (32, 64), "1x64": (1, 64)}
VARIANTS = ("dense torch fp32", "pruned torch fp32", "pruned onnx fp32", "pruned onnx int8",
            "dense onnx fp32", "dense onnx int8")  # fmt: skip


def _texts(model_dir: Path, count: int) -> list[str]:
    """`count` real test reviews, in the prompt the model was trained with (if any)."""
    meta = json.loads((model_dir / "aptune.json").read_text()).get("metadata", {})
    template = meta.get("prompt_template") or "{text}"
    return [template.format(text=e.text, text_pair="") for e in rotten_tomatoes()["test"][:count]]


def _inputs(tokenizer, texts: list[str], length: int) -> dict[str, torch.Tensor]:
    """`texts` padded or cut to exactly `length` tokens: input_ids, attention_mask (B, length)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _onnx(model_dir: Path, work: Path) -> Path:
    """The fp32 + int8 ONNX export of `model_dir` under `work` (made once, reused afterwards)."""
    out = work / f"{model_dir.parent.name}-onnx"
    if not (out / int8_name(ONNX_NAME)).is_file():
        export_onnx(model_dir, out, quantize="int8")
    return out


def _session_model(path: Path, threads: int) -> OnnxModel:
    """An `OnnxModel` of `path` whose session uses `threads` intra-op threads (as torch does)."""
    import onnxruntime

    model = OnnxModel(path, base_config(path.parent))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    model.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return model


def _variants(dense: Path, pruned: Path, work: Path) -> dict[str, tuple[torch.nn.Module, object]]:
    """Each variant's model (callable like a transformers model) and where its accuracy comes from."""
    threads = torch.get_num_threads()
    dense_onnx, pruned_onnx = _onnx(dense, work), _onnx(pruned, work)
    return {
        "dense torch fp32": (load_model_dir(dense)[0].float().eval(), dense),
        "pruned torch fp32": (load_model_dir(pruned)[0].float().eval(), pruned),
        "pruned onnx fp32": (_session_model(pruned_onnx / ONNX_NAME, threads), pruned_onnx / ONNX_NAME),
        "pruned onnx int8": (_session_model(pruned_onnx / int8_name(ONNX_NAME), threads),
                             pruned_onnx / int8_name(ONNX_NAME)),
        "dense onnx fp32": (_session_model(dense_onnx / ONNX_NAME, threads), dense_onnx / ONNX_NAME),
        "dense onnx int8": (_session_model(dense_onnx / int8_name(ONNX_NAME), threads),
                            dense_onnx / int8_name(ONNX_NAME)),
    }  # fmt: skip


@torch.inference_mode()
def time_interleaved(models: dict[str, torch.nn.Module], inputs: dict, rounds: int) -> dict[str, float]:
    """Median milliseconds of one forward per model. Every round runs each model in turn (the order
    rotating from round to round) for a burst of `BURST` calls, of which the first is not timed: a
    model is timed in steady state, as a server calls it, and not while the thread pool of the model
    before it still spins (which made the same int8 graph measure anywhere from 130 to 190 ms)."""
    names = list(models)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            for call in range(BURST):
                start = time.perf_counter()
                models[name](**inputs)
                if call > 0:
                    times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(ms) for name, ms in times.items()}


def _params(model_dir: Path) -> int:
    """Parameters of the torch export in `model_dir`."""
    return sum(p.numel() for p in load_model_dir(model_dir)[0].parameters())


def run_model(name: str, dense: Path, pruned: Path, work: Path, rounds: int) -> list[dict]:
    """One row per variant of the `name` pair: accuracy, parameters, times and speed-ups."""
    for path in (dense, pruned):
        if not (path / "aptune.json").is_file():
            raise SystemExit(f"{path} is not an aptune export; see this script's docstring for the runs")
    variants = _variants(dense, pruned, work)
    tokenizer = transformers.AutoTokenizer.from_pretrained(pruned, config=base_config(pruned))
    texts = _texts(pruned, 32)
    ms = {shape: time_interleaved({v: m for v, (m, _) in variants.items()},
                                  _inputs(tokenizer, texts[:batch], length), rounds)
          for shape, (batch, length) in SHAPES.items()}  # fmt: skip
    params = {"dense": _params(dense), "pruned": _params(pruned)}
    rows = []
    for variant, (_, source) in variants.items():
        runtime = "onnx" if " onnx " in variant else "torch"
        metrics = evaluate_model(source, "rotten_tomatoes", "test", runtime=runtime, batch_size=32)
        row = {"model": name, "variant": variant, "accuracy": metrics["accuracy"],
               "params": params[variant.split()[0]], "rounds": rounds}  # fmt: skip
        for shape in SHAPES:
            row[f"ms_{shape}"] = ms[shape][variant]
            row[f"speedup_{shape}"] = ms[shape]["dense torch fp32"] / ms[shape][variant]
        rows.append(row)
        timings = (f"{s} {row[f'ms_{s}']:.1f} ms ({row[f'speedup_{s}']:.2f}x)" for s in SHAPES)
        print(f"{name} {variant}: acc {row['accuracy']:.4f}, " + ", ".join(timings))
    return rows


def table(rows: list[dict]) -> str:
    """The readable table of `rows`."""
    lines = [
        "| model | variant | test acc | params | 32x64 ms | vs dense torch | 1x64 ms | vs dense torch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['accuracy']:.4f} | {r['params'] / 1e6:.1f}M "
            f"| {r['ms_32x64']:.1f} | {r['speedup_32x64']:.2f}x "
            f"| {r['ms_1x64']:.1f} | {r['speedup_1x64']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="minilm,smollm2", help="comma-separated: minilm, smollm2")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per shape (default 10 for minilm, 3 for smollm2)")  # fmt: skip
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "aptune-deploy"),
                        help="where the ONNX exports are written (reused when present)")  # fmt: skip
    for name, (dense, pruned) in DEFAULTS.items():
        parser.add_argument(f"--{name}-dense", type=Path, default=dense, help=f"default {dense}")
        parser.add_argument(f"--{name}-pruned", type=Path, default=pruned, help=f"default {pruned}")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    ROWS.mkdir(parents=True, exist_ok=True)
    for name in args.only.split(","):
        dense, pruned = getattr(args, f"{name}_dense"), getattr(args, f"{name}_pruned")
        rounds = args.rounds or DEFAULT_ROUNDS[name]
        rows = run_model(name, dense, pruned, Path(args.work), rounds)
        (ROWS / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    rows = [row for name in DEFAULTS if (ROWS / f"{name}.json").is_file()
            for row in json.loads((ROWS / f"{name}.json").read_text())]  # fmt: skip
    rounds = ", ".join(f"{name} {count}" for name, count in {r["model"]: r["rounds"] for r in rows}.items())
    note = (
        f"CPU, {torch.get_num_threads()} threads for torch and onnxruntime; real test reviews; median over "
        f"interleaved rounds ({rounds}) of {BURST - 1} timed calls after one untimed; speed-ups against "
        "dense torch fp32 in the same run."
    )
    payload = {"rows": rows}
    json_path, md_path = write_results("deploy", payload, note + "\n\n" + table(rows))
    print(table(rows))
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
