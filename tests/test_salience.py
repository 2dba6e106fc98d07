import numpy as np
import pytest
import scipy.stats
import torch

from aptune.blocks import BlockScores, MaskPlan
from aptune.config import PruningConfig
from aptune.families import family_for
from aptune.masks import MaskState, install_masks
from aptune.pruner import Pruner
from aptune.salience import (
    OutlierWeights,
    PowerSumCache,
    SalienceCollector,
    SiteTotals,
    ScoreAverage,
    _channel_sum,
    add_outlier_terms,
    block_scores,
    column_kurtosis_sqrt,
    column_power_sums,
    excess_kurtosis_sqrt,
    outlier_term,
)
from aptune.train.setup import enable_checkpointing

from .conftest import tiny_batch, tiny_model


def _observed(model, allreduce=None):
    """All-ones mask hooks on `model` with a fresh salience collector as their observer."""
    family = family_for(model)
    inv = family.inventory(model)
    hooks = install_masks(model, family, MaskState.ones(list(inv.heads), list(inv.neurons), inv.hidden))
    hooks.observer = SalienceCollector(allreduce=allreduce)
    return hooks


def _collect(model, batches, allreduce=None):
    hooks = _observed(model, allreduce)
    for batch in batches:
        model.zero_grad()
        model(**batch).logits.pow(2).sum().backward()
    hooks.remove()
    return hooks.observer, family_for(model).inventory(model)


def _reference(model, batches):
    """|H| and |dL/dH| summed over the batch and sequence of each batch, from full retained tensors;
    one dict per batch."""
    family = family_for(model)
    captured = []

    def keep_input(key):
        def hook(module, args):
            args[0].retain_grad()
            captured.append((key, args[0]))

        return hook

    def keep_output(key):
        def hook(module, args, out):
            out.retain_grad()
            captured.append((key, out))

        return hook

    handles = []
    for i, sites in enumerate(family.attention_sites(model)):
        handles.append(sites.o.register_forward_pre_hook(keep_input(("head", i))))
    for i, ffn in enumerate(family.ffn_sites(model)):
        handles.append(ffn.ffn_out.register_forward_pre_hook(keep_input(("neuron", i))))
    hidden_sites = (
        family.residual_norms(model) if family.norm_writes_residual else family.residual_writers(model)
    )
    for i, site in enumerate(hidden_sites):
        handles.append(site.register_forward_hook(keep_output(("hidden", i))))
    per_batch = []
    for batch in batches:
        captured.clear()
        model.zero_grad()
        model(**batch).logits.pow(2).sum().backward()
        sums = {}
        for key, t in captured:
            act, grad = sums.get(key, (0, 0))
            sums[key] = (act + t.abs().sum((0, 1)), grad + t.grad.abs().sum((0, 1)))
        per_batch.append(sums)
    for h in handles:
        h.remove()
    return per_batch


def _formula(ref: dict, inv, d_h: int) -> BlockScores:
    """S~ of every block from one batch's full-tensor sums."""
    heads = [(ref[("head", i)][0] * ref[("head", i)][1]).view(n, d_h).sum(1) for i, n in enumerate(inv.heads)]
    neurons = [ref[("neuron", i)][0] * ref[("neuron", i)][1] for i in range(len(inv.neurons))]
    hidden = sum(a * g for key, (a, g) in ref.items() if key[0] == "hidden")
    return BlockScores(heads, neurons, hidden)


def _assert_scores_close(a: BlockScores, b: BlockScores, **tol) -> None:
    for x, y in zip([*a.heads, *a.neurons, a.hidden], [*b.heads, *b.neurons, b.hidden], strict=True):
        torch.testing.assert_close(x, y, **tol)


def test_hook_salience_equals_formula_from_full_tensors(kind):
    model = tiny_model(kind)
    model.requires_grad_(True)  # so that every activation has a gradient in the reference
    batch = tiny_batch(1, batch=2, length=9)
    collector, inv = _collect(model, [batch])
    d_h = family_for(model).head_unit(model).qo
    scores = block_scores(collector.totals(), inv.heads, inv.neurons, inv.hidden, d_h)
    _assert_scores_close(scores, _formula(_reference(model, [batch])[0], inv, d_h), rtol=1e-5, atol=1e-8)
    assert all(s.abs().sum() > 0 for s in scores.heads)


def test_per_step_salience_is_the_smoothed_product_of_each_batch(kind):
    """Two steps: beta * S~(batch 1) + (1 - beta) * S~(batch 2), never a product of sums."""
    model = tiny_model(kind)
    model.requires_grad_(True)
    batches = [tiny_batch(0), tiny_batch(1, batch=2, length=9)]
    pruner = Pruner(model, PruningConfig(use_kurtosis=False, momentum_salience=0.75))
    for batch in batches:
        model.zero_grad()
        model(**batch).logits.pow(2).sum().backward()
        pruner.fold_batch()
    pruner.hooks.remove()
    inv, d_h = pruner.inventory(), pruner.family.head_unit(model).qo
    first, second = (_formula(r, inv, d_h) for r in _reference(model, batches))
    expected = ScoreAverage(beta=0.75)
    expected.update(first)
    _assert_scores_close(pruner.scores.value, expected.update(second), rtol=1e-5, atol=1e-8)


def test_scores_do_not_depend_on_how_many_batches_lie_between_replans(kind):
    """1, 4 or 16 identical batches give the same scores (kurtosis term included) and plans."""
    results = []
    for count in (1, 4, 16):
        model = tiny_model(kind)
        pruner = Pruner(model, PruningConfig(kurtosis_weight=1.0, mask_decay_rate=1.0))
        for _ in range(count):
            model.zero_grad()
            model(**tiny_batch(0)).logits.pow(2).sum().backward()
            pruner.fold_batch()
        results.append((pruner.scores.value, pruner.plan(0.5)))
    for scores, plan in results[1:]:
        _assert_scores_close(scores, results[0][0], rtol=1e-5, atol=1e-7)
        assert plan.kept_heads == results[0][1].kept_heads and plan.kept_neurons == results[0][1].kept_neurons
        assert torch.equal(plan.hidden, results[0][1].hidden)


def test_frozen_model_still_gets_embedding_site_gradient(kind):
    model = tiny_model(kind)
    model.requires_grad_(False)
    for head in family_for(model).task_head(model):
        head.requires_grad_(True)
    collector, _ = _collect(model, [tiny_batch()])
    totals = collector.totals()
    assert totals[("hidden", 0)].grad.abs().sum() > 0
    assert totals[("head", 0)].tokens == 3 * 12


def test_no_grad_passes_are_not_counted(kind):
    model = tiny_model(kind)
    collector = _observed(model).observer
    with torch.no_grad():
        model(**tiny_batch())
    assert collector.totals() == {}


def test_allreduce_hook_sees_every_sum(kind):
    model = tiny_model(kind)
    calls = []

    def double(t):
        calls.append(t.numel())
        return 2 * t

    batches = [tiny_batch()]
    plain, _ = _collect(model, batches)
    reduced, _ = _collect(model, batches, allreduce=double)
    a, b = plain.totals(), reduced.totals()
    assert len(calls) == 2  # one call for all channel sums, one for the token counts
    for key in a:
        torch.testing.assert_close(b[key].act, 2 * a[key].act)
        assert b[key].tokens == 2 * a[key].tokens


def test_channel_sums_of_a_large_activation_add_up_over_row_blocks():
    x = torch.randn(3, 700, 512, generator=torch.Generator().manual_seed(3)) ** 3  # 5 row blocks
    expected = x.double().abs().sum((0, 1))
    torch.testing.assert_close(_channel_sum(x).double(), expected, rtol=1e-6, atol=0)
    assert _channel_sum(x).dtype == torch.float32
    half = _channel_sum(x.half())
    assert half.dtype == torch.float32 and torch.isfinite(half).all()


def test_kurtosis_matches_scipy_and_handles_flat_rows():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 200, generator=g).double() ** 3  # heavy tails
    ours = excess_kurtosis_sqrt(x).numpy()
    theirs = np.sqrt(np.maximum(scipy.stats.kurtosis(x.numpy(), axis=1, fisher=True, bias=True), 0))
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    flat = torch.ones(2, 10)
    assert torch.equal(excess_kurtosis_sqrt(flat), torch.zeros(2))
    assert torch.isfinite(excess_kurtosis_sqrt(torch.zeros(1, 4))).all()


def test_outlier_term_groups_columns_by_block():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 8, generator=g)
    mean_abs = torch.rand(8, generator=g)
    out = outlier_term(w, mean_abs, block=4)
    for b in range(2):
        block = (w[:, 4 * b : 4 * b + 4] * mean_abs[4 * b : 4 * b + 4]).reshape(1, -1)
        torch.testing.assert_close(out[b], excess_kurtosis_sqrt(block)[0])
    w[0, 1] = 50.0  # an outlier raises its block's term
    assert outlier_term(w, mean_abs, 4)[0] > out[0]


def test_column_kurtosis_equals_kurtosis_of_stacked_columns():
    g = torch.Generator().manual_seed(2)
    weights = [torch.randn(5, 6, generator=g) ** 3, torch.randn(9, 6, generator=g)]
    weights[1][3, 2] = 40.0  # an outlier in column 2
    stacked = torch.cat(weights).t().double()  # (6, 14)
    torch.testing.assert_close(column_kurtosis_sqrt(weights), excess_kurtosis_sqrt(stacked).float())
    assert int(column_kurtosis_sqrt(weights).argmax()) == 2


def test_power_sum_cache_keeps_a_parameter_until_it_changes():
    g = torch.Generator().manual_seed(3)
    w = torch.nn.Parameter(torch.randn(7, 5, generator=g), requires_grad=False)
    cache = PowerSumCache()
    first = cache(w)
    torch.testing.assert_close(first, column_power_sums(w), rtol=0, atol=0)
    assert cache(w) is first  # unchanged: kept
    with torch.no_grad():
        w.mul_(2.0)  # in place, as an optimizer step or an adapter merge
    changed = cache(w)
    assert changed is not first
    torch.testing.assert_close(changed, column_power_sums(w), rtol=0, atol=0)
    w.data = w.data[:, :3].contiguous()  # a cut, as shrinking does
    assert cache(w).shape == (4, 3)
    torch.testing.assert_close(cache(w), column_power_sums(w), rtol=0, atol=0)
    plain = w.detach() + 0  # not a parameter (an adapted layer's effective weight): never kept
    assert cache(plain) is not cache(plain)
    assert len(cache.entries) == 1


def test_neuron_outlier_term_is_the_column_kurtosis_of_the_weight():
    """Single-column blocks: the term with a positive mean |X| equals `outlier_term` (a scale does not
    change a kurtosis), 0 where the input was never active, and the same through the cache."""
    g = torch.Generator().manual_seed(4)
    w = torch.nn.Parameter(torch.randn(16, 6, generator=g) ** 3, requires_grad=False)
    act = torch.rand(6, generator=g) + 0.1
    act[4] = 0.0  # a neuron never active in this batch
    totals = {("neuron", 0): SiteTotals(act=act * 10, grad=torch.ones(6), tokens=10.0)}
    base = BlockScores(heads=[], neurons=[torch.zeros(6)], hidden=torch.zeros(3))
    weights = OutlierWeights(heads=[], neurons=[w], hidden=[])
    cache = PowerSumCache()
    for power_sums in (column_power_sums, cache, cache):
        out = add_outlier_terms(base, totals, weights, 1, 1.0, power_sums).neurons[0]
        expected = outlier_term(w, act, 1)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
        assert out[4] == 0 and (out[[0, 1, 2, 3, 5]] > 0).all()


def test_outlier_terms_add_to_heads_neurons_and_hidden_dims(kind):
    model = tiny_model(kind)
    collector, inv = _collect(model, [tiny_batch()])
    family = family_for(model)
    totals = collector.totals()
    width = family.head_unit(model).qo
    base = block_scores(totals, inv.heads, inv.neurons, inv.hidden, width)
    weights = OutlierWeights(
        heads=[s.o.weight for s in family.attention_sites(model)],
        neurons=[f.ffn_out.weight for f in family.ffn_sites(model)],
        hidden=[r.weight for r in family.block_readers(model)],
    )
    full = add_outlier_terms(base, totals, weights, width, 1.0)
    assert all((f >= b).all() for f, b in zip(full.heads, base.heads, strict=True))
    assert any((f > b).any() for f, b in zip(full.neurons, base.neurons, strict=True))
    torch.testing.assert_close(full.hidden, base.hidden + column_kurtosis_sqrt(weights.hidden))
    no_hidden = add_outlier_terms(
        base, totals, OutlierWeights(weights.heads, weights.neurons, []), width, 1.0
    )
    assert torch.equal(no_hidden.hidden, base.hidden)


def test_score_average_smooths_means_and_keeps():
    s1 = BlockScores([torch.tensor([1.0, 0.0])], [torch.tensor([2.0, 4.0, 6.0])], torch.tensor([1.0, 1.0]))
    s2 = BlockScores([torch.tensor([0.0, 1.0])], [torch.tensor([0.0, 0.0, 0.0])], torch.tensor([3.0, 1.0]))
    s3 = BlockScores([torch.tensor([2.0, 2.0])], [torch.tensor([1.0, 1.0, 0.0])], torch.tensor([2.0, 4.0]))
    ema = ScoreAverage(beta=0.75)
    assert ema.update(s1) is s1
    out = ema.update(s2)
    torch.testing.assert_close(out.heads[0], torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(out.hidden, torch.tensor([1.5, 1.0]))
    ema.keep(
        MaskPlan(
            [torch.tensor([True, False])], [torch.tensor([False, True, True])], torch.tensor([True, True]), 0
        )
    )
    torch.testing.assert_close(ema.value.neurons[0], torch.tensor([3.0, 4.5]))
    mean = ScoreAverage(beta=0.75)
    for s in (s1, s2, s3):
        mean.update(s, mean=True)
    torch.testing.assert_close(mean.value.hidden, torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(mean.value.neurons[0], torch.tensor([1.0, 5 / 3, 2.0]))
    assert mean.steps == 3


def test_forward_without_backward_is_not_counted(kind):
    model = tiny_model(kind)
    collector = _observed(model).observer
    model(**tiny_batch())
    assert collector.totals() == {}


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing_counts_each_pass_once(kind, reentrant):
    plain, _ = _collect(tiny_model(kind), [tiny_batch()])
    model = tiny_model(kind).train()  # checkpointing only recomputes in training mode
    enable_checkpointing(model, use_reentrant=reentrant)
    model.get_input_embeddings().weight.requires_grad_(True)  # reentrant checkpoints need an input grad
    checkpointed, _ = _collect(model, [tiny_batch()])
    a, b = plain.totals(), checkpointed.totals()
    assert sorted(a) == sorted(b)
    for key in a:
        torch.testing.assert_close(b[key].act, a[key].act)
        torch.testing.assert_close(b[key].grad, a[key].grad, rtol=1e-4, atol=1e-7)
        assert b[key].tokens == a[key].tokens
