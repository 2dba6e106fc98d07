"""`aptune train` and `aptune train --resume`: build a run, drive its steps, write its outputs.

The algorithm itself is `AptRun` (run.py); this module feeds it batches epoch by epoch, writes the
history and checkpoints as it goes, and at the end evaluates, times and exports the pruned model.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ..atomic import write_json
from ..card import write_model_card
from ..config import AptuneConfig, load_config, save_config
from ..errors import AptuneError
from .checkpoint import (
    CHECKPOINTS,
    CheckpointError,
    Progress,
    latest_checkpoint,
    read_state,
    remove_partial,
    restore,
    save_checkpoint,
)
from .data import batches
from .outputs import (
    LossWindow,
    StepRecord,
    export,
    final_metrics,
    open_history,
    tracker_config,
    tracker_values,
    write_line,
)
from .run import AptRun, NonFiniteLoss, eval_split
from .setup import SetupError, check_output_dir, load_model, make_accelerator, quiet_transformers
from .tasks import load_objective

__all__ = ["RunResult", "SetupError", "TrainingError", "resume", "train"]

log = logging.getLogger("aptune")


class TrainingError(AptuneError):
    """A run had to stop: the message names the step and how to continue."""


@dataclass
class RunResult:
    """Where a finished run wrote its files, and its metrics."""

    output_dir: Path
    model_dir: Path
    metrics: dict


def train(
    cfg: AptuneConfig,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> RunResult:
    """Run APT fine-tuning as configured and export the pruned model; returns where and how it went.

    Writes `model/`, `metrics.json`, `history.jsonl`, `config.yaml` and `report.md` (+ plots) to the
    output directory (`cfg.train.output_dir` unless `output_dir` is given), and every
    `train.checkpoint_every` steps a checkpoint under `checkpoints/` that `resume` continues from.
    """
    out = check_output_dir(Path(output_dir or cfg.train.output_dir), overwrite)
    return _execute(cfg, out, None, progress)


def resume(run_dir: str | os.PathLike, progress: bool = True) -> RunResult:
    """Continue the run in `run_dir` from its newest complete checkpoint, with the run's own
    `config.yaml`; the result equals that of an uninterrupted run (bit for bit on CPU)."""
    out = Path(run_dir)
    if not (out / "config.yaml").is_file():
        raise CheckpointError(
            f"{out} is not an aptune run directory (config.yaml is missing); pass the output "
            "directory of the run to resume"
        )
    remove_partial(out)
    path = latest_checkpoint(out)
    if path is None:
        found = len(list((out / CHECKPOINTS).glob("step-*")))
        why = f"all {found} failed their checks, see the warnings above" if found else "there is none"
        raise CheckpointError(
            f"cannot resume {out}: no complete checkpoint in {out / CHECKPOINTS} ({why}); runs write "
            "one every train.checkpoint_every steps, so start this run again with that key set"
        )
    cfg = load_config(out / "config.yaml")
    state = read_state(path)
    if state["config"] != cfg.to_dict():
        raise CheckpointError(
            f"{out / 'config.yaml'} differs from the config that {path.name} was written with; "
            "restore the file, or start a new run with the changed config"
        )
    return _execute(cfg, out, (path, state), progress)


def _execute(cfg: AptuneConfig, out: Path, checkpoint: tuple[Path, dict] | None, progress: bool) -> RunResult:
    accelerator = make_accelerator(cfg, out)
    set_seed(cfg.train.seed)
    main = accelerator.is_main_process
    with quiet_transformers(progress and main):
        objective = load_objective(cfg)
        model, tokenizer = load_model(cfg.model, objective)
        run = AptRun(cfg, model, tokenizer, objective, accelerator)
        if checkpoint is not None:
            restore(run, *checkpoint)
        elif main:  # every input is valid: only now is anything written
            out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out / "config.yaml")
        if cfg.train.report_to:
            accelerator.init_trackers("aptune", config=tracker_config(cfg.to_dict()))
        if main:
            for note in [*objective.notes, *run.schedule_problems()]:
                log.warning("aptune: %s", note)
        train_seconds = _loop(run, out, checkpoint, progress)
        say = _say if progress and main else _silent
        run.finish()
        final = run.status(run.total_steps)  # the trained model's memory, before the final timing
        say(
            "evaluating the pruned model"
            + (" and timing it against the dense one" if cfg.train.measure_speed else "")
        )
        metrics = final_metrics(cfg, run, train_seconds)
        model_dir = out / "model"
        if main:
            say(f"writing {model_dir}, metrics.json and report.md")
            _write_outputs(run, out, final, metrics, train_seconds)
    _close(accelerator)
    return RunResult(output_dir=out, model_dir=model_dir, metrics=metrics)


def _say(message: str) -> None:
    tqdm.write(f"aptune: {message}", file=sys.stderr)


def _silent(message: str) -> None:
    """Say nothing (progress output is off, or this is not the main process)."""


def _write_outputs(run: AptRun, out: Path, final: StepRecord, metrics: dict, train_seconds: float) -> None:
    """The final history line (`final`, completed here), the model folder with its card,
    `metrics.json` and the report."""
    final.eval, final.final, final.elapsed_s = metrics["validation"] or metrics["test"], True, train_seconds
    final.memory["peak_memory_mb"] = metrics["peak_memory_mb"]  # the run's, without the speed timing
    with open(out / "history.jsonl", "a", encoding="utf-8") as history:
        write_line(history, final)
    run.acc.log(tracker_values(final), step=run.total_steps)
    model_dir = export(run, out, {**run.objective.metadata(), "max_length": run.cfg.data.max_length})
    write_json(out / "metrics.json", metrics)
    write_model_card(model_dir, metrics, metrics["config"], ranks=final.ranks)
    from .report import write_report

    write_report(out)


def _close(accelerator: Accelerator) -> None:
    accelerator.wait_for_everyone()
    if accelerator.num_processes > 1 or accelerator.trackers:
        # trackers flush and close; a gloo group left to the interpreter's exit may abort the process
        accelerator.end_training()


def _stopped(exc: NonFiniteLoss, out: Path, last: Path | None, every: int | None) -> TrainingError:
    if last is not None:
        where = f"the last good checkpoint is {last} (aptune train --resume {out} continues from it)"
    elif every:
        where = f"no checkpoint was written before it (the first was due at step {every})"
    else:
        where = "no checkpoint was written (set train.checkpoint_every to keep some)"
    return TrainingError(
        f"training stopped: {exc}; {where}. A loss that diverges again needs a lower "
        "train.learning_rate (or mixed_precision: no)"
    )


def _loop(run: AptRun, out: Path, checkpoint: tuple[Path, dict] | None, progress: bool) -> float:
    """The training steps (from the checkpoint's step when resuming); returns the training time."""
    cfg, main, t = run.cfg, run.acc.is_main_process, run.cfg.train
    last, state = checkpoint if checkpoint is not None else (None, None)
    step = state["step"] if state else 0
    last_eval: dict[str, float] = dict(state["last_eval"]) if state else {}
    started = time.perf_counter() - (state["elapsed_s"] if state else 0.0)
    train_split = run.objective.splits["train"]
    if state is None and cfg.pruning.before_tuning and run.pruner is not None:
        first = batches(train_split, t.batch_size, True, t.seed, epoch=-1)
        run.prune_before_tuning(list(itertools.islice(first, cfg.pruning.calibration_batches)))
    bar = tqdm(
        total=run.total_steps, initial=step, disable=not (progress and main), desc="aptune", unit="step"
    )
    cut_at = state["history_bytes"] if state else None
    window = LossWindow(**state["loss_window"]) if state else LossWindow()
    with open_history(out / "history.jsonl", cut_at, main) as history:
        while step < run.total_steps:
            epoch, done = divmod(step, run.steps_per_epoch)  # every epoch has steps_per_epoch batches
            epoch_batches = batches(train_split, t.batch_size, True, t.seed, epoch)
            for examples in itertools.islice(epoch_batches, done, done + run.total_steps - step):
                try:
                    losses = run.train_step(examples, step)
                except NonFiniteLoss as exc:
                    raise _stopped(exc, out, last, t.checkpoint_every) from None
                event = run.after_step(step)
                step += 1
                window.add(losses)
                record, last_eval = _history_record(run, step, event, last_eval)
                if record is not None:
                    record.losses, record.elapsed_s = window.take(), time.perf_counter() - started
                    write_line(history, record)
                    run.acc.log(tracker_values(record), step=step)
                    bar.set_postfix(record.postfix(last_eval, run.objective.metric))
                if t.checkpoint_every and step % t.checkpoint_every == 0 and step < run.total_steps:
                    history.flush()
                    size = os.fstat(history.fileno()).st_size  # where a resumed run cuts the history
                    elapsed = time.perf_counter() - started
                    saved = Progress(step, size, elapsed, last_eval, cfg.to_dict(), asdict(window))
                    last = save_checkpoint(run, out, saved, t.keep_checkpoints) or last
                bar.update(1)
    bar.close()
    return time.perf_counter() - started


def _history_record(
    run: AptRun, step: int, event: str | None, last_eval: dict[str, float]
) -> tuple[StepRecord | None, dict[str, float]]:
    """The history record after `step` steps (None when nothing is due) and the latest evaluation.

    An evaluation the run took between steps (teacher choice at a re-plan) stands in for a due
    one; after the recovery phase restored an older state, a due evaluation is taken anew."""
    t = run.cfg.train
    pending, run.pending_eval = run.pending_eval, None
    due = step % t.eval_every == 0 and step < run.total_steps  # the end has its own final metrics
    if due and (pending is None or event == "recovery"):
        pending = run.evaluate(eval_split(run.objective))
        run.note_evaluation(pending)
    if pending is None and step % t.log_every != 0 and event is None:
        return None, last_eval
    record = run.status(step)
    record.event, record.eval = event, pending
    return record, (last_eval if pending is None else pending)
