import torch
from torch import nn

from aptune.blocks import MaskPlan
from aptune.families import family_for
from aptune.masks import MaskState, install_masks, masked_layer_norm

from .conftest import tiny_batch, tiny_model


def _state(model):
    inv = family_for(model).inventory(model)
    return MaskState.ones(list(inv.heads), list(inv.neurons), inv.hidden)


def test_all_ones_masks_change_nothing(kind):
    model = tiny_model(kind)
    batch = tiny_batch()
    ref = model(**batch).logits
    hooks = install_masks(model, family_for(model), _state(model))
    torch.testing.assert_close(model(**batch).logits, ref, rtol=0, atol=0)
    hooks.observer = lambda key, pre, post: None  # observed path must not change values either
    torch.testing.assert_close(model(**batch).logits, ref, rtol=0, atol=0)
    hooks.remove()
    torch.testing.assert_close(model(**batch).logits, ref, rtol=0, atol=0)


def test_observed_sites_of_a_dense_model_copy_no_activation(kind):
    """With full masks an observed site passes a view of its activation on (salience collection
    then costs no copies); a site whose mask is not full hands on a scaled copy."""
    model = tiny_model(kind)
    state = _state(model)
    hooks = install_masks(model, family_for(model), state)
    seen: dict = {}
    hooks.observer = lambda key, pre, post: seen.setdefault(key, (pre, post))
    model(**tiny_batch()).logits.sum().backward()
    assert {k[0] for k in seen} == {"head", "neuron", "hidden"}
    assert all(post.data_ptr() == pre.data_ptr() for pre, post in seen.values())
    seen.clear()
    state.neurons[0][0] = 0.5
    model(**tiny_batch()).logits.sum().backward()
    copied = {k for k, (pre, post) in seen.items() if post.data_ptr() != pre.data_ptr()}
    assert copied == {("neuron", 0)}


def test_masks_change_output_and_disable(kind):
    model = tiny_model(kind)
    batch = tiny_batch()
    ref = model(**batch).logits
    state = _state(model)
    install_masks(model, family_for(model), state)
    state.heads[0][1] = 0.0
    assert not torch.allclose(model(**batch).logits, ref)
    state.enabled = False
    torch.testing.assert_close(model(**batch).logits, ref, rtol=0, atol=0)


def test_masked_layer_norm_matches_norm_on_kept_dims():
    torch.manual_seed(0)
    norm = nn.LayerNorm(10, eps=1e-6)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    keep = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1, 0, 1], dtype=torch.bool)
    x = torch.randn(3, 5, 10)
    out = masked_layer_norm(x, norm, keep)
    expected = nn.functional.layer_norm(x[..., keep], (7,), norm.weight[keep], norm.bias[keep], 1e-6)
    torch.testing.assert_close(out[..., keep], expected, rtol=1e-5, atol=1e-6)


def test_decay_moves_toward_targets_and_becomes_hard():
    state = MaskState.ones([2], [4], 3)
    plan = MaskPlan(
        heads=[torch.tensor([True, False])],
        neurons=[torch.tensor([True, False, True, False])],
        hidden=torch.tensor([True, True, False]),
        params=0,
    )
    state.set_targets(plan)
    state.step(0.3)
    torch.testing.assert_close(state.heads[0], torch.tensor([1.0, 0.7]))
    assert not state.is_hard()
    for _ in range(3):
        state.step(0.3)
    assert state.is_hard()
    torch.testing.assert_close(state.neurons[0], torch.tensor([1.0, 0.0, 1.0, 0.0]))
    # a block re-selected later recovers toward 1 at the same rate
    state.set_targets(MaskPlan([torch.tensor([True, True])], plan.neurons, plan.hidden, 0))
    state.step(0.3)
    torch.testing.assert_close(state.heads[0], torch.tensor([1.0, 0.3]))
    assert torch.equal(state.hard_zero_plan().hidden, torch.tensor([True, True, False]))
    state.keep(state.hard_zero_plan())
    assert state.neurons[0].numel() == 2 and state.hidden.numel() == 2


def test_decay_reaches_target_in_exactly_one_over_rate_steps():
    state = MaskState.ones([3], [1], 1)
    state.set_targets(
        MaskPlan([torch.tensor([True, False, False])], [torch.tensor([True])], torch.tensor([True]), 0)
    )
    for _ in range(39):
        state.step(0.025)
    assert not state.is_hard()
    state.step(0.025)
    assert state.is_hard() and torch.equal(state.heads[0], torch.tensor([1.0, 0.0, 0.0]))
