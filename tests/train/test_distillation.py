"""`SelfDistillation` on a tiny random BERT: which layers it distils, the teacher pass (weights and
masks swapped in and back), the loss mix, its maps sliced by a cut, and its state."""

import torch

from aptune.config import DistillConfig
from aptune.distill import teacher_layers
from aptune.families import family_for
from aptune.masks import MaskState, install_masks
from aptune.train.distillation import SelfDistillation

from ..conftest import tiny_batch, tiny_model


def _component(model, enabled: bool = True, **cfg) -> SelfDistillation:
    return SelfDistillation(DistillConfig(**cfg), family_for(model), model, 3, enabled, torch.device("cpu"))


def _trainable(model) -> list[torch.nn.Parameter]:
    model.requires_grad_(False)
    model.classifier.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _randomise_maps(d: SelfDistillation) -> None:
    """Give every map Tr a non-zero low-rank update (a fresh map is the identity)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tr in d.transforms:
            tr.map.lora_B.copy_(torch.randn(tr.map.lora_B.shape, generator=g))


def test_a_disabled_component_holds_nothing():
    d = _component(tiny_model("bert"), enabled=False)
    assert d.layers == [] and len(d.transforms) == 0
    assert d.state_dict()["transforms"] == {} and d.state_dict()["teacher"]["values"] is None


def test_layers_are_fixed_or_drawn_per_step_from_the_seed():
    model = tiny_model("bert", num_hidden_layers=8)
    fixed = _component(model)
    assert fixed.layers == teacher_layers(8) == [1, 3, 5, 7]
    assert all(fixed.layers_at(step) == fixed.layers for step in range(5))
    drawn = _component(model, resample_layers=True)
    draws = [drawn.layers_at(step) for step in range(20)]
    assert draws == [drawn.layers_at(step) for step in range(20)]  # (seed, step) decides
    assert all(layers[k] in (2 * k, 2 * k + 1) for layers in draws for k in range(4))
    assert len({tuple(layers) for layers in draws}) > 1


def _masked_model():
    model = tiny_model("bert")
    family = family_for(model)
    inv = family.inventory(model)
    masks = MaskState.ones(inv.heads, inv.neurons, inv.hidden)
    masks.heads[0][1] = 0.0
    masks.neurons[1][:10] = 0.0
    install_masks(model, family, masks)
    return model, masks


def test_the_teacher_pass_uses_its_weights_and_the_masks_as_configured_then_restores_both():
    batch = tiny_batch()
    for teacher_masks in (True, False):
        model, masks = _masked_model()
        trainable = _trainable(model)
        masks.enabled = teacher_masks
        with torch.no_grad():
            expected = model(**batch).logits  # the weights the teacher is taken from
        masks.enabled = True
        d = _component(model, teacher_masks=teacher_masks)
        d.offer(0.5, trainable)
        with torch.no_grad():
            model.classifier.weight.add_(1.0)  # the student moves on
            student = model.classifier.weight.clone()
        model.train()
        out = d.teacher_outputs(model, masks, batch, torch.no_grad)
        torch.testing.assert_close(out.logits, expected)
        assert len(out.hidden_states) == 4
        assert torch.equal(model.classifier.weight, student) and model.training and masks.enabled


def test_the_loss_mixes_task_and_distillation_by_mu():
    model = tiny_model("bert")
    d = _component(model)
    batch = tiny_batch()
    _randomise_maps(d)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        teacher = model(**batch, output_hidden_states=True)
        teacher.logits.add_(torch.randn_like(teacher.logits))
    task = torch.tensor(0.7)
    keep = torch.ones(32, dtype=torch.bool)
    loss, terms = d.loss(out, teacher, batch, task, step=0, mu=0.0, keep=keep)
    assert loss.item() == task.item() and terms["mu"] == 0.0
    assert terms["distill_pred"] > 0 and terms["distill_layer"] > 0
    loss, terms = d.loss(out, teacher, batch, task, step=0, mu=1.0, keep=keep)
    expected = 0.1 * terms["distill_pred"] + 0.9 * terms["distill_layer"]
    assert abs(loss.item() - expected) < 1e-5 * max(1.0, expected)


def test_a_cut_slices_the_maps_and_their_optimizer_state_to_the_kept_hidden_dims():
    model = tiny_model("bert")
    d = _component(model)
    _randomise_maps(d)
    params = [p for p in d.transforms.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=0.1)
    x = torch.randn(2, 5, 32)
    sum(tr(x).sum() for tr in d.transforms).backward()
    optimizer.step()
    keep = torch.ones(32, dtype=torch.bool)
    d.follow_cut(keep, optimizer)  # keeps every dim: nothing changes
    assert all(p.shape[-1] in (32, 8) for p in params)
    keep[[3, 10, 11, 30]] = False
    x[..., ~keep] = 0.0  # a cut only drops dims whose masks are 0
    with torch.no_grad():
        before = [tr(x)[..., keep] for tr in d.transforms]  # (2, 5, 28)
    d.follow_cut(keep, optimizer)
    with torch.no_grad():
        after = [tr(x[..., keep]) for tr in d.transforms]  # (2, 5, 28)
    for b, a in zip(before, after, strict=True):
        torch.testing.assert_close(a, b)
    for p in d.transforms.parameters():
        assert 28 in p.shape and 32 not in p.shape
    for p in params:
        assert optimizer.state[p]["exp_avg"].shape == p.shape


def test_state_round_trip():
    model = tiny_model("bert")
    trainable = _trainable(model)
    a = _component(model)
    _randomise_maps(a)
    a.offer(0.75, trainable)
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    b = _component(model)
    b.load_state_dict(a.state_dict(), trainable)
    for p, q in zip(a.transforms.parameters(), b.transforms.parameters(), strict=True):
        assert torch.equal(p, q)
    assert b.teacher.score == 0.75
    for v, w in zip(a.teacher.snapshot.values, b.teacher.snapshot.values, strict=True):
        assert torch.equal(v, w)
    assert not torch.equal(b.teacher.snapshot.values[0], model.classifier.weight)


def test_latest_protocol_takes_every_offer_and_best_only_improvements():
    model = tiny_model("bert")
    trainable = _trainable(model)
    best, latest = _component(model), _component(model, teacher="latest")
    assert best.chooses_by_validation and not latest.chooses_by_validation
    assert not _component(model, enabled=False).chooses_by_validation
    latest.take_latest(trainable)
    best.take_latest(trainable)  # not its protocol
    assert latest.teacher.snapshot is not None and best.teacher.snapshot is None
    best.offer(0.6, trainable)
    first = best.teacher.snapshot
    best.offer(0.5, trainable)
    assert best.teacher.snapshot is first and best.teacher.score == 0.6
