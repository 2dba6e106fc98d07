"""`aptune` command line: train, eval, info, options. Thin: every command calls the public API."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aptune",
        description="Adaptive Pruning and Tuning: fine-tune a pretrained model while pruning it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="fine-tune and prune a model as configured")
    train.add_argument("config", nargs="?", help="YAML or JSON config file (see configs/)")
    train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (its output directory) from its newest complete checkpoint, "
        "with the run's own config.yaml (give no CONFIG, --set or --output-dir)",
    )
    train.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys (repeatable), e.g. --set pruning.target_sparsity=0.4 train.max_steps=200",
    )
    train.add_argument("--output-dir", help="where to write results (default: train.output_dir)")
    train.add_argument(
        "--num-processes",
        type=int,
        default=1,
        metavar="N",
        help="data-parallel training in N processes on this machine (one per GPU, or CPU processes): "
        "a shortcut for `torchrun --nproc_per_node N -m aptune train ...`",
    )
    train.add_argument("--overwrite", action="store_true", help="replace results in a non-empty output dir")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    ev = sub.add_parser("eval", help="evaluate an exported model on labelled data")
    ev.add_argument("model_dir", help="the model/ directory written by `aptune train`")
    ev.add_argument(
        "--data", required=True, help="a CSV / TSV / JSONL file, 'rotten_tomatoes', or a hub dataset"
    )
    ev.add_argument(
        "--split", default="test", choices=["train", "validation", "test"], help="split of a named task"
    )
    ev.add_argument("--text-column", default="text")
    ev.add_argument("--text-pair-column", default=None)
    ev.add_argument("--label-column", default="label")
    ev.add_argument("--target-column", default="target", help="seq2seq text pairs: the target column")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--output", help="metrics JSON path (default: MODEL_DIR/../eval-<data>-<split>.json)")

    lm = sub.add_parser("lm-eval", help="run lm-evaluation-harness tasks on an exported causal LM")
    lm.add_argument("model_dir", help="the model/ directory written by `aptune train`")
    lm.add_argument(
        "--tasks", required=True, help="comma-separated lm-eval task names, e.g. arc_easy,hellaswag"
    )
    lm.add_argument("--batch-size", type=int, default=8)
    lm.add_argument("--limit", type=float, default=None, help="examples per task (a fraction if < 1)")
    lm.add_argument("--num-fewshot", type=int, default=None)
    lm.add_argument("--device", default="cpu")
    lm.add_argument("--output", help="results JSON path (default: MODEL_DIR/../lm-eval.json)")

    info = sub.add_parser("info", help="show the per-layer shapes and parameter counts of a model")
    info.add_argument("model_dir")

    sub.add_parser("options", help="list every config key with its type, default and meaning")
    return parser


class UsageError(Exception):
    """A command line that combines options which do not go together."""


def _run_training(args: argparse.Namespace):
    from .config import apply_overrides, load_config
    from .train.loop import resume, train

    progress = not args.no_progress
    if args.resume is None:
        if args.config is None:
            raise UsageError("give a CONFIG file to start a run, or --resume RUN_DIR to continue one")
        cfg = apply_overrides(load_config(args.config), args.set)
        return train(cfg, args.output_dir, overwrite=args.overwrite, progress=progress)
    extra = [flag for flag, given in (("CONFIG", args.config), ("--set", args.set),
             ("--output-dir", args.output_dir), ("--overwrite", args.overwrite)) if given]  # fmt: skip
    if extra:
        raise UsageError(
            f"--resume continues a run with its own config.yaml and output directory; drop {', '.join(extra)}"
        )
    return resume(args.resume, progress=progress)


def _launch(args: argparse.Namespace) -> int:
    """Run this command again in `args.num_processes` processes under torchrun; returns its exit code."""
    if args.num_processes < 1:
        raise UsageError(f"--num-processes must be >= 1, got {args.num_processes}")
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    argv += [f"--nproc_per_node={args.num_processes}", "-m", "aptune", "train"]
    argv += [args.config] if args.config else ["--resume", args.resume]
    argv += ["--set", *args.set] if args.set else []
    argv += ["--output-dir", args.output_dir] if args.output_dir else []
    flags = (("--overwrite", args.overwrite), ("--no-progress", args.no_progress))
    argv += [flag for flag, on in flags if on]
    return subprocess.run(argv, check=False).returncode


def _cmd_train(args: argparse.Namespace) -> int:
    if args.num_processes != 1 and "LOCAL_RANK" not in os.environ:
        return _launch(args)
    result = _run_training(args)
    if int(os.environ.get("RANK", "0")) != 0:  # data-parallel: the main process reports
        return 0
    m = result.metrics
    metric = m.get("metric", "accuracy")
    parts = [
        f"test {metric} {m['test'].get(metric, float('nan')):.4f}",
        f"sparsity {m['sparsity']:.3f}",
        f"params {m['params']['total_before']:,} -> {m['params']['total_after']:,}",
    ]
    if "inference" in m:
        speed = m["inference"]
        parts.append(f"speed-up {speed['speedup']:.2f}x (ideal {speed['ideal_speedup']:.2f}x)")
    print(" | ".join([*parts, f"{m['train_seconds']:.0f} s"]))
    out = result.output_dir
    print(f"results in {out} (model: {result.model_dir}, report: {out / 'report.md'})")
    return 0


def eval_output(model_dir: str, data: str, split: str) -> Path:
    """Where `aptune eval` writes its metrics by default: next to the model directory, in a file
    named after the data (a file's stem, or a task name with every other character replaced),
    so a data argument such as '../x' cannot place it elsewhere."""
    name = Path(data).stem if Path(data).exists() else data
    safe = re.sub(r"[^A-Za-z0-9_]+", "-", name).strip("-") or "data"
    return Path(model_dir).resolve().parent / f"eval-{safe}-{split}.json"


def _cmd_eval(args: argparse.Namespace) -> int:
    from .api import evaluate_model

    metrics = evaluate_model(
        args.model_dir,
        args.data,
        split=args.split,
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        label_column=args.label_column,
        batch_size=args.batch_size,
        target_column=args.target_column,
    )
    out = Path(args.output) if args.output else eval_output(args.model_dir, args.data, args.split)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(" | ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    print(f"wrote {out}")
    return 0


def _cmd_lm_eval(args: argparse.Namespace) -> int:
    from .api import run_lm_eval

    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    tasks = [t for t in args.tasks.split(",") if t]
    out = run_lm_eval(args.model_dir, tasks, args.batch_size, limit, args.num_fewshot, args.device)
    results = out.get("results", {})
    for task, metrics in results.items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        print(f"{task}: {shown}")
    path = Path(args.output) if args.output else Path(args.model_dir).resolve().parent / "lm-eval.json"
    path.write_text(json.dumps({"results": results}, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .api import model_info

    print(model_info(args.model_dir))
    return 0


def _cmd_options(_: argparse.Namespace) -> int:
    from .config import describe_options

    for key, type_, default, text in describe_options():
        print(f"{key} ({type_}, default {default!r}): {text}")
    return 0


COMMANDS = {
    "train": _cmd_train,
    "eval": _cmd_eval,
    "lm-eval": _cmd_lm_eval,
    "info": _cmd_info,
    "options": _cmd_options,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `aptune` console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    import transformers

    from .errors import AptuneError

    transformers.logging.set_verbosity_error()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (AptuneError, UsageError) as exc:
        print(f"aptune {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
