"""`aptune` command line: train, eval, predict, lm-eval, export, info, options. Thin: every command calls the
public API, imported inside the command so that `aptune --help` and `--version` load no torch."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from . import __version__
from .atomic import write_text

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
COUNTS = ("n", "tokens")
"""Metrics that count examples or tokens: printed as integers."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aptune",
        description="Adaptive Pruning and Tuning: fine-tune a pretrained model while pruning it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="fine-tune and prune a model as configured")
    train.add_argument(
        "config", nargs="?", help="YAML or JSON config file (see configs/); may also follow the --set values"
    )
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
        "--data",
        required=True,
        help="a CSV / TSV / JSON / JSONL / text file, 'rotten_tomatoes', or a hub dataset such as glue/sst2; "
        "a value ending in .csv, .tsv, .json, .jsonl or .txt, or starting with '.', '/' or '~', is a file",
    )
    ev.add_argument(
        "--split", default="test", choices=["train", "validation", "test"], help="split of a named task"
    )
    ev.add_argument("--text-column", default="text")
    ev.add_argument("--text-pair-column", default=None)
    ev.add_argument("--label-column", default="label")
    ev.add_argument("--target-column", default="target", help="seq2seq text pairs: the target column")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument(
        "--runtime",
        default="torch",
        choices=["torch", "onnx"],
        help="onnx: MODEL_DIR is an ONNX export from `aptune export` (the folder, or a .onnx file in it "
        "such as model.int8.onnx; for T5 encoder.int8.onnx picks the int8 pair), run in onnxruntime",
    )
    ev.add_argument(
        "--output",
        help="metrics JSON path in an existing folder (default: MODEL_DIR/../eval-<data>-<split>.json, "
        "with -onnx or -onnx-int8 before .json for --runtime onnx)",
    )

    pr = sub.add_parser("predict", help="label texts with an exported classifier")
    pr.add_argument("model_dir", help="the model/ directory written by `aptune train`")
    pr.add_argument("texts", nargs="*", metavar="TEXT", help="texts to label")
    pr.add_argument("--file", help="a UTF-8 text file with one text per line (blank lines are skipped)")
    pr.add_argument("--batch-size", type=int, default=32)

    lm = sub.add_parser("lm-eval", help="run lm-evaluation-harness tasks on an exported causal LM")
    lm.add_argument("model_dir", help="the model/ directory written by `aptune train`")
    lm.add_argument(
        "--tasks", required=True, help="comma-separated lm-eval task names, e.g. arc_easy,hellaswag"
    )
    lm.add_argument("--batch-size", type=int, default=8)
    lm.add_argument("--limit", type=float, default=None, help="examples per task (a fraction if < 1)")
    lm.add_argument("--num-fewshot", type=int, default=None)
    lm.add_argument("--device", default="cpu")
    lm.add_argument(
        "--output", help="results JSON path in an existing folder (default: MODEL_DIR/../lm-eval.json)"
    )

    ex = sub.add_parser("export", help="export a model for ONNX Runtime (fp32, optionally int8)")
    ex.add_argument("model_dir", help="the model/ directory written by `aptune train`")
    ex.add_argument("--format", required=True, choices=["onnx"], help="the export format")
    ex.add_argument(
        "--quantize",
        choices=["int8"],
        help="also write an int8 twin of each graph (model.int8.onnx; T5: encoder/decoder.int8.onnx), "
        "by dynamic int8 quantization",
    )
    ex.add_argument(
        "--output",
        help="the folder to write (default: MODEL_DIR/../onnx; an earlier export there is replaced)",
    )

    info = sub.add_parser("info", help="show the per-layer shapes and parameter counts of a model")
    info.add_argument("model_dir")

    sub.add_parser("options", help="list every config key with its type, default and meaning")
    return parser


class UsageError(Exception):
    """A command line that combines options which do not go together."""


class Interrupted(Exception):
    """Ctrl-C stopped a run; the message says whether and how it can be continued."""


def _config_after_set(args: argparse.Namespace) -> None:
    """`--set` takes every value up to the next flag, so `aptune train --set k=v CONFIG` parses
    CONFIG as an override: when no CONFIG was given, the one override that is a config file name
    (no '=', ending in .yaml, .yml or .json) becomes the CONFIG."""
    if args.config is not None:
        return
    files = [v for v in args.set if "=" not in v and v.lower().endswith(CONFIG_SUFFIXES)]
    if len(files) == 1:
        args.config = files[0]
        args.set.remove(files[0])


def _interrupted(out: Path) -> Interrupted:
    """What to tell a user who stopped the run writing to `out`."""
    from .train.checkpoint import latest_checkpoint

    checkpoint = latest_checkpoint(out)
    if checkpoint is None:
        return Interrupted(
            f"interrupted; {out} has no checkpoint to resume from "
            "(train.checkpoint_every=N writes one every N steps)"
        )
    step = int(checkpoint.name.removeprefix("step-"))
    return Interrupted(
        f"interrupted; resume from the checkpoint at step {step} with: aptune train --resume {out}"
    )


def _until_interrupted(out: Path, run, *args, **kwargs):
    """`run(*args, **kwargs)`, with Ctrl-C turned into :class:`Interrupted` for the run in `out`."""
    try:
        return run(*args, **kwargs)
    except KeyboardInterrupt:
        raise _interrupted(out) from None


def _run_training(args: argparse.Namespace):
    from .config import apply_overrides, load_config
    from .train.loop import resume, train

    progress = not args.no_progress
    if args.resume is None:
        if args.config is None:
            raise UsageError("give a CONFIG file to start a run, or --resume RUN_DIR to continue one")
        cfg = apply_overrides(load_config(args.config), args.set)
        out = Path(args.output_dir or cfg.train.output_dir)
        return _until_interrupted(out, train, cfg, out, overwrite=args.overwrite, progress=progress)
    extra = [flag for flag, given in (("CONFIG", args.config), ("--set", args.set),
             ("--output-dir", args.output_dir), ("--overwrite", args.overwrite)) if given]  # fmt: skip
    if extra:
        raise UsageError(
            f"--resume continues a run with its own config.yaml and output directory; drop {', '.join(extra)}"
        )
    return _until_interrupted(Path(args.resume), resume, args.resume, progress=progress)


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
    try:
        return subprocess.run(argv, check=False).returncode
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # the main process of the run reports where it stopped


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


def eval_output(model_dir: str, data: str, split: str, runtime: str = "torch") -> Path:
    """Where `aptune eval` writes its metrics by default: next to the model directory, in a file
    named after the data (a file's stem, or a task name with every other character replaced),
    so a data argument such as '../x' cannot place it elsewhere. For an ONNX export the name ends
    in `-onnx`, or `-onnx-int8` when MODEL_DIR is its `model.int8.onnx`."""
    name = Path(data).stem if Path(data).exists() else data
    safe = re.sub(r"[^A-Za-z0-9_]+", "-", name).strip("-") or "data"
    path = Path(model_dir).resolve()
    tag = ""
    if runtime == "onnx":
        stem = path.name.removesuffix(".onnx") if path.suffix == ".onnx" else ""
        stem = stem.removeprefix("model").removeprefix("encoder").removeprefix("decoder")
        variant = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-")
        tag = f"-onnx-{variant}" if variant else "-onnx"
        path = path.parent if path.suffix == ".onnx" else path
    return path.parent / f"eval-{safe}-{split}{tag}.json"


def _output_file(given: str | None, default: Path) -> Path:
    """Where a command writes its JSON: `default`, or the `--output` file, whose folder must exist
    (checked before the command does its work)."""
    if given is None:
        return default
    path = Path(given)
    if path.is_dir():
        raise UsageError(
            f"--output '{given}' is a folder; give a file path such as '{path / 'metrics.json'}'"
        )
    if not path.parent.is_dir():
        raise UsageError(
            f"--output: folder '{path.parent}' does not exist; create it first or choose another --output"
        )
    return path


_EVAL_PHRASES = {
    "set data.train_file (and data.validation_file, data.test_file)": "pass one with --data",
    "use local files via data.train_file": "use a local file via --data",
    "fix data.task or set data.train_file to a local file": "fix --data or give a local file",
}
_EVAL_FLAGS = {
    "text_column": "--text-column",
    "text_pair_column": "--text-pair-column",
    "label_column": "--label-column",
    "target_column": "--target-column",
    "train_file": "--data",
    "task": "--data",
}


def _in_eval_flags(message: str) -> str:
    """A data error met by `aptune eval`, with the config keys it names (`data.text_column`) replaced
    by the eval flags that set the same thing (`--text-column`)."""
    for phrase, flags in _EVAL_PHRASES.items():
        message = message.replace(phrase, flags)
    key = r"(?<![\w./\\-])data\.(\w+)\b"  # a config key, not the end of a file name such as my_data.csv
    return re.sub(key, lambda m: _EVAL_FLAGS.get(m.group(1), m.group(0)), message)


def _shown(key: str, value: object) -> str:
    if key in COUNTS:
        return f"{key} {int(value)}"
    return f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"


def _cmd_eval(args: argparse.Namespace) -> int:
    from .api import evaluate_model
    from .errors import AptuneError

    out = _output_file(args.output, eval_output(args.model_dir, args.data, args.split, args.runtime))
    try:
        metrics = evaluate_model(
            args.model_dir,
            args.data,
            split=args.split,
            text_column=args.text_column,
            text_pair_column=args.text_pair_column,
            label_column=args.label_column,
            batch_size=args.batch_size,
            target_column=args.target_column,
            majority_baseline=True,
            runtime=args.runtime,
        )
    except AptuneError as exc:
        raise AptuneError(_in_eval_flags(str(exc))) from exc
    write_text(out, json.dumps(metrics, indent=2) + "\n")
    print(" | ".join(_shown(k, v) for k, v in metrics.items()))
    print(f"wrote {out}")
    return 0


def _texts(args: argparse.Namespace) -> list[str]:
    """The TEXT arguments, then the non-blank lines of `--file`."""
    texts = list(args.texts)
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            raise UsageError(
                f"--file: file not found: '{args.file}'; give a text file with one text per line"
            )
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"--file '{args.file}' is not UTF-8 text ({exc.reason} at byte offset {exc.start}); "
                "save it as UTF-8"
            ) from exc
        texts += [line.strip() for line in lines if line.strip()]
    if not texts:
        raise UsageError("give the texts to label as TEXT arguments, or --file with one text per line")
    return texts


def _cmd_predict(args: argparse.Namespace) -> int:
    from .api import predict

    texts = _texts(args)
    predictions = predict(args.model_dir, texts, args.batch_size)
    for text, (label, probability) in zip(texts, predictions, strict=True):
        print(f"{label}\t{probability:.4f}\t{text}")
    return 0


def _cmd_lm_eval(args: argparse.Namespace) -> int:
    from .api import run_lm_eval

    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    tasks = [t for t in args.tasks.split(",") if t]
    path = _output_file(args.output, Path(args.model_dir).resolve().parent / "lm-eval.json")
    out = run_lm_eval(args.model_dir, tasks, args.batch_size, limit, args.num_fewshot, args.device)
    results = out.get("results", {})
    for task, metrics in results.items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        print(f"{task}: {shown}")
    write_text(path, json.dumps({"results": results}, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .onnx_export import export_onnx
    from .onnx_runtime import INT8_TAG

    out = export_onnx(args.model_dir, args.output, args.quantize)
    files = sorted((path.name for path in out.glob("*.onnx")), key=lambda name: (INT8_TAG in name, name))
    print(f"wrote {out} ({', '.join(files)}, tokenizer, model card)")
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
    "predict": _cmd_predict,
    "lm-eval": _cmd_lm_eval,
    "export": _cmd_export,
    "info": _cmd_info,
    "options": _cmd_options,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `aptune` console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "train":
        _config_after_set(args)
    import transformers

    from .errors import AptuneError

    transformers.logging.set_verbosity_error()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (AptuneError, UsageError) as exc:
        print(f"aptune {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Interrupted, KeyboardInterrupt) as exc:
        if int(os.environ.get("RANK", "0")) == 0:  # data-parallel: the main process reports
            print(f"\naptune {args.command}: {str(exc) or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
