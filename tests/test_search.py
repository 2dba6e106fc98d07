"""Tests for aptune.search: mask plans never exceed the budget, honour minimums and alignment, and
agree with a brute-force linear scan over every prefix length."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aptune.blocks import BlockInventory, BlockScores, MaskPlan
from aptune.search import PlanError, minimal_shape, plan_masks

# --- brute force reference ------------------------------------------------------------------------

HEAD, NEURON, HIDDEN = 0, 1, 2
Group = tuple[int, int]  # (block type, layer); hidden dims use layer 0


@dataclass(frozen=True, eq=False)
class _Block:
    kind: int
    layer: int
    index: int
    score: float
    density: float
    position: int  # position in the flattened list: heads by layer, neurons by layer, hidden


def _blocks(inventory: BlockInventory, scores: BlockScores, cost=None) -> list[_Block]:
    """Every block with its score and density (per parameter, or per unit of `cost`), in flattened order."""
    if cost is None:
        hidden_cost = inventory.head_cost * sum(inventory.heads) + inventory.neuron_cost * sum(
            inventory.neurons
        )
        per_block = [inventory.head_cost * inventory.hidden] * len(inventory.heads)
        per_block += [inventory.neuron_cost * inventory.hidden] * len(inventory.neurons) + [hidden_cost]
    else:
        per_block = cost.block_costs(inventory)
    raw: list[tuple[int, int, list[float], float]] = [
        (HEAD, layer, s.tolist(), per_block[layer]) for layer, s in enumerate(scores.heads)
    ]
    raw += [
        (NEURON, layer, s.tolist(), per_block[len(scores.heads) + layer])
        for layer, s in enumerate(scores.neurons)
    ]
    raw.append((HIDDEN, 0, scores.hidden.tolist(), per_block[-1]))
    blocks: list[_Block] = []
    for kind, layer, values, cost in raw:
        blocks += [
            _Block(kind, layer, j, float(v), float(v) / cost, len(blocks) + j) for j, v in enumerate(values)
        ]
    return blocks


def _preference(blocks: list[_Block]) -> dict[Group, list[_Block]]:
    """Each group's blocks by score descending, lower index first."""
    groups: dict[Group, list[_Block]] = {}
    for block in blocks:
        groups.setdefault((block.kind, block.layer), []).append(block)
    return {g: sorted(members, key=lambda b: (-b.score, b.index)) for g, members in groups.items()}


def _fill(kept: set[_Block], preference: list[_Block], target: int) -> None:
    """Add the group's best unkept blocks to ``kept`` until it holds ``target`` of them."""
    missing = target - sum(b in kept for b in preference)
    for block in [b for b in preference if b not in kept][: max(0, missing)]:
        kept.add(block)


def _round_up(count: int, align: int, cap: int) -> int:
    return min(cap, math.ceil(count / align) * align)


def _prefix_plans(
    inventory: BlockInventory,
    scores: BlockScores,
    *,
    align: int = 8,
    min_heads: int = 1,
    min_neurons: int = 1,
    prune_hidden: bool = True,
    uniform_layers: bool = False,
    cost=None,
) -> tuple[dict[Group, list[_Block]], list[tuple[set[_Block], float]]]:
    """Group preferences and the aligned kept set and params (or `cost`) of every prefix length."""
    blocks = _blocks(inventory, scores, cost)
    preference = _preference(blocks)
    minimum = {HEAD: min_heads, NEURON: min_neurons, HIDDEN: 1 if prune_hidden else inventory.hidden}
    forced = {b for (kind, _), members in preference.items() for b in members[: minimum[kind]]}
    rest = sorted((b for b in blocks if b not in forced), key=lambda b: (-b.density, -b.score, b.position))
    attentions, ffns = range(len(inventory.heads)), range(len(inventory.neurons))
    plans = []
    for i in range(len(rest) + 1):
        kept = forced | set(rest[:i])

        def count(kind: int, layer: int, kept: set[_Block] = kept) -> int:
            return sum(b in kept for b in preference[(kind, layer)])

        head_target = [count(HEAD, a) for a in attentions]
        neuron_target = [_round_up(count(NEURON, f), align, inventory.neurons[f]) for f in ffns]
        if uniform_layers:
            head_target = [max(head_target)] * len(attentions)
            neuron_target = [max(neuron_target)] * len(ffns)
        for a in attentions:
            _fill(kept, preference[(HEAD, a)], head_target[a])
        for f in ffns:
            _fill(kept, preference[(NEURON, f)], neuron_target[f])
        _fill(kept, preference[(HIDDEN, 0)], _round_up(count(HIDDEN, 0), align, inventory.hidden))
        heads = [count(HEAD, a) for a in attentions]
        neurons = [count(NEURON, f) for f in ffns]
        if cost is not None:
            plans.append((kept, cost(heads, neurons, count(HIDDEN, 0))))
            continue
        per_dim = inventory.head_cost * sum(heads) + inventory.neuron_cost * sum(neurons)
        plans.append((kept, count(HIDDEN, 0) * per_dim))
    return preference, plans


def _as_plan(
    inventory: BlockInventory, preference: dict[Group, list[_Block]], kept: set[_Block], params: int
) -> MaskPlan:
    """Bool masks of a kept set."""

    def mask(kind: int, layer: int, size: int) -> torch.Tensor:
        flags = [False] * size
        for b in preference[(kind, layer)]:
            flags[b.index] = b in kept
        return torch.tensor(flags, dtype=torch.bool)

    return MaskPlan(
        heads=[mask(HEAD, layer, n) for layer, n in enumerate(inventory.heads)],
        neurons=[mask(NEURON, layer, n) for layer, n in enumerate(inventory.neurons)],
        hidden=mask(HIDDEN, 0, inventory.hidden),
        params=params,
    )


def _prefix_costs(inventory: BlockInventory, scores: BlockScores, **options) -> list[int]:
    """Reference C(i) for every prefix length."""
    return [params for _, params in _prefix_plans(inventory, scores, **options)[1]]


def plan_masks_bruteforce(inventory: BlockInventory, scores: BlockScores, budget: int, **options) -> MaskPlan:
    """Reference plan: linear scan over every prefix length, keep the longest that fits."""
    preference, plans = _prefix_plans(inventory, scores, **options)
    fitting = [(kept, params) for kept, params in plans if params <= budget]
    if not fitting:
        raise PlanError("budget below the minimal plan")
    return _as_plan(inventory, preference, *fitting[-1])


# --- helpers and strategies -----------------------------------------------------------------------


def _scores(heads: list[list[float]], neurons: list[list[float]], hidden: list[float]) -> BlockScores:
    return BlockScores(
        heads=[torch.tensor(h, dtype=torch.float32) for h in heads],
        neurons=[torch.tensor(n, dtype=torch.float32) for n in neurons],
        hidden=torch.tensor(hidden, dtype=torch.float32),
    )


def _constant_scores(inventory: BlockInventory, value: float) -> BlockScores:
    return _scores(
        [[value] * n for n in inventory.heads],
        [[value] * n for n in inventory.neurons],
        [value] * inventory.hidden,
    )


def _same_masks(a: MaskPlan, b: MaskPlan) -> bool:
    pairs = zip([*a.heads, *a.neurons, a.hidden], [*b.heads, *b.neurons, b.hidden], strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


SCORE = st.one_of(st.sampled_from([0.0, 1.0, 2.0]), st.floats(-1.0, 100.0, width=32))


@st.composite
def search_cases(draw: st.DrawFn, uniform: bool = False) -> tuple[BlockInventory, BlockScores, dict]:
    """A small random inventory (as many or more attention modules than FFNs, like T5's decoder
    layers with self- and cross-attention), matching scores and search options."""
    ffns = draw(st.integers(1, 4))
    attentions = ffns + draw(st.integers(0, 2))
    if uniform:
        heads = [draw(st.integers(1, 6))] * attentions
        neurons = [draw(st.integers(1, 24))] * ffns
    else:
        heads = draw(st.lists(st.integers(1, 6), min_size=attentions, max_size=attentions))
        neurons = draw(st.lists(st.integers(1, 24), min_size=ffns, max_size=ffns))
    inventory = BlockInventory(
        heads=tuple(heads),
        neurons=tuple(neurons),
        hidden=draw(st.integers(1, 24)),
        head_cost=draw(st.integers(1, 8)),
        neuron_cost=draw(st.sampled_from([2, 3])),
    )
    scores = _scores(
        [draw(st.lists(SCORE, min_size=n, max_size=n)) for n in heads],
        [draw(st.lists(SCORE, min_size=n, max_size=n)) for n in neurons],
        draw(st.lists(SCORE, min_size=inventory.hidden, max_size=inventory.hidden)),
    )
    options = {
        "align": draw(st.sampled_from([1, 2, 4, 8])),
        "min_heads": draw(st.integers(0, 2)),
        "min_neurons": draw(st.integers(0, 2)),
        "prune_hidden": draw(st.booleans()),
        "uniform_layers": uniform,
    }
    return inventory, scores, options


def _check_invariants(inventory: BlockInventory, plan: MaskPlan, budget: int, options: dict) -> None:
    """Budget, parameter formula, minimums and alignment of one plan."""
    align = options["align"]
    assert plan.params <= budget
    assert plan.params == inventory.prunable_params(plan.kept_heads, plan.kept_neurons, plan.kept_hidden)
    assert all(m.dtype == torch.bool for m in [*plan.heads, *plan.neurons, plan.hidden])
    assert [m.numel() for m in plan.heads] == list(inventory.heads)
    assert [m.numel() for m in plan.neurons] == list(inventory.neurons)
    assert plan.hidden.numel() == inventory.hidden
    for kept, total in zip(plan.kept_heads, inventory.heads, strict=True):
        assert kept >= min(options["min_heads"], total)
    for kept, total in zip(plan.kept_neurons, inventory.neurons, strict=True):
        assert kept >= min(options["min_neurons"], total)
        assert kept % align == 0 or kept == total
    assert plan.kept_hidden >= 1
    assert plan.kept_hidden % align == 0 or plan.kept_hidden == inventory.hidden
    if not options["prune_hidden"]:
        assert plan.kept_hidden == inventory.hidden


# --- property tests -------------------------------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(case=search_cases(), data=st.data())
def test_plan_matches_bruteforce_and_invariants(case: tuple[BlockInventory, BlockScores, dict], data) -> None:
    inventory, scores, options = case
    costs = _prefix_costs(inventory, scores, **options)
    assert all(a <= b for a, b in itertools.pairwise(costs)), "C(i) must be monotone in the prefix length"
    assert costs[-1] == inventory.prunable_params()
    budget = data.draw(st.integers(costs[0], inventory.prunable_params() + 5), label="budget")

    plan = plan_masks(inventory, scores, budget, **options)
    _check_invariants(inventory, plan, budget, options)
    reference = plan_masks_bruteforce(inventory, scores, budget, **options)
    assert plan.params == reference.params
    assert _same_masks(plan, reference)
    # maximal: the next prefix would not fit
    best = max(i for i, c in enumerate(costs) if c <= budget)
    assert best == len(costs) - 1 or costs[best + 1] > budget
    # monotone in the budget
    assert plan_masks(inventory, scores, budget + 1, **options).params >= plan.params


@dataclass(frozen=True)
class SyntheticLatency:
    """A made-up latency table (ms): non-additive and nonlinear, but monotone in every count."""

    base: float
    head_ms: tuple[float, ...]  # per attention module
    neuron_ms: tuple[float, ...]  # per FFN
    hidden_ms: float
    unit: str = "ms"

    def __call__(self, heads, neurons, hidden) -> float:
        width = (hidden / 8) ** 0.8
        att = sum(c * h**1.3 for c, h in zip(self.head_ms, heads, strict=True))
        ffn = sum(c * math.ceil(n / 4) for c, n in zip(self.neuron_ms, neurons, strict=True))
        return self.base + width * (att + ffn) + self.hidden_ms * hidden

    def block_costs(self, inventory: BlockInventory) -> list[float]:
        return [*self.head_ms, *(c / 4 for c in self.neuron_ms), self.hidden_ms + 0.01]


@settings(max_examples=150, deadline=None)
@given(case=search_cases(), data=st.data())
def test_latency_search_matches_bruteforce(case: tuple[BlockInventory, BlockScores, dict], data) -> None:
    inventory, scores, options = case
    ms = st.floats(0.05, 5.0)
    cost = SyntheticLatency(
        data.draw(ms),
        tuple(data.draw(ms) for _ in inventory.heads),
        tuple(data.draw(ms) for _ in inventory.neurons),
        data.draw(st.floats(0.0, 0.5)),
    )
    totals = [total for _, total in _prefix_plans(inventory, scores, **options, cost=cost)[1]]
    assert all(a <= b for a, b in itertools.pairwise(totals)), "latency must be monotone in the prefix"
    budget = data.draw(st.floats(totals[0], totals[-1] * 1.1), label="budget")

    plan = plan_masks(inventory, scores, budget, **options, cost=cost)
    reference = plan_masks_bruteforce(inventory, scores, budget, **options, cost=cost)
    assert _same_masks(plan, reference)
    assert cost(plan.kept_heads, plan.kept_neurons, plan.kept_hidden) <= budget


def test_latency_budget_below_the_minimal_plan_names_the_speedup() -> None:
    cost = SyntheticLatency(10.0, (1.0,) * len(SMALL.heads), (1.0,) * len(SMALL.neurons), 0.1)
    with pytest.raises(PlanError, match=r"latency budget .* below the minimal plan .* target_speedup"):
        plan_masks(SMALL, _constant_scores(SMALL, 1.0), 5.0, cost=cost)


@settings(max_examples=150, deadline=None)
@given(case=search_cases(uniform=True), data=st.data())
def test_uniform_layers_property(case: tuple[BlockInventory, BlockScores, dict], data) -> None:
    inventory, scores, options = case
    minimal = _prefix_costs(inventory, scores, **options)[0]
    budget = data.draw(st.integers(minimal, inventory.prunable_params()), label="budget")
    plan = plan_masks(inventory, scores, budget, **options)
    _check_invariants(inventory, plan, budget, options)
    assert len(set(plan.kept_heads)) == 1
    assert len(set(plan.kept_neurons)) == 1
    assert _same_masks(plan, plan_masks_bruteforce(inventory, scores, budget, **options))


# --- hand-computed case ---------------------------------------------------------------------------

# 1 layer, 2 heads, 4 neurons, hidden 4, head_cost 2, neuron_cost 2: C = d' * (2 h' + 2 n').
# Costs per block: head 8, neuron 8, hidden dim 2*2 + 2*4 = 12.
# Forced: head 0, neuron 0, hidden 0 (C = 4). Greedy order by density, with the C after each block:
#   hidden 2 (5/12) -> 8, neuron 2 (2/8) -> 12, head 1 (1/8) -> 16,
#   neuron 3 (1/8, ties head 1 and comes later) -> 20, hidden 1 (1/12) -> 30,
#   neuron 1 (0) -> 36, hidden 3 (0) -> 48.
HAND_INVENTORY = BlockInventory(heads=(2,), neurons=(4,), hidden=4, head_cost=2, neuron_cost=2)


def _hand_scores() -> BlockScores:
    return _scores([[8.0, 1.0]], [[4.0, 0.0, 2.0, 1.0]], [10.0, 1.0, 5.0, 0.0])


@pytest.mark.parametrize(
    ("budget", "heads", "neurons", "hidden", "params"),
    [
        (4, [1, 0], [1, 0, 0, 0], [1, 0, 0, 0], 4),
        (11, [1, 0], [1, 0, 0, 0], [1, 0, 1, 0], 8),
        (20, [1, 1], [1, 0, 1, 1], [1, 0, 1, 0], 20),
        (29, [1, 1], [1, 0, 1, 1], [1, 0, 1, 0], 20),
        (30, [1, 1], [1, 0, 1, 1], [1, 1, 1, 0], 30),
        (47, [1, 1], [1, 1, 1, 1], [1, 1, 1, 0], 36),
    ],
)
def test_hand_computed_plan(budget: int, heads: list, neurons: list, hidden: list, params: int) -> None:
    plan = plan_masks(HAND_INVENTORY, _hand_scores(), budget, align=1)
    assert plan.heads[0].tolist() == [bool(x) for x in heads]
    assert plan.neurons[0].tolist() == [bool(x) for x in neurons]
    assert plan.hidden.tolist() == [bool(x) for x in hidden]
    assert plan.params == params


def test_hand_computed_plan_aligned() -> None:
    # align 2: the minimal plan already needs 2 neurons (0, 2) and 2 hidden dims (0, 2): C = 2 * (2 + 4).
    plan = plan_masks(HAND_INVENTORY, _hand_scores(), 15, align=2)
    assert plan.heads[0].tolist() == [True, False]
    assert plan.neurons[0].tolist() == [True, False, True, False]
    assert plan.hidden.tolist() == [True, False, True, False]
    assert plan.params == 12
    with pytest.raises(PlanError, match="12 prunable params"):
        plan_masks(HAND_INVENTORY, _hand_scores(), 11, align=2)


def test_prune_hidden_false_keeps_every_hidden_dim() -> None:
    plan = plan_masks(HAND_INVENTORY, _hand_scores(), 24, align=1, prune_hidden=False)
    assert plan.hidden.all()
    # minimal = 4 * (2 + 2) = 16; next greedy block neuron 2 -> 4 * (2 + 4) = 24
    assert plan.neurons[0].tolist() == [True, False, True, False]
    assert plan.params == 24


def test_density_ties_broken_by_score() -> None:
    # float64 scores one ulp apart whose densities (score / 6) round to the same value:
    # the higher score (index 1) must win, as "top min_neurons by score" promises.
    low, high = 1.9000000000000001, 1.9000000000000004
    assert low < high and low / 6 == high / 6
    inventory = BlockInventory(heads=(1,), neurons=(2,), hidden=3, head_cost=1, neuron_cost=2)
    scores = BlockScores(
        heads=[torch.ones(1, dtype=torch.float64)],
        neurons=[torch.tensor([low, high], dtype=torch.float64)],
        hidden=torch.ones(3, dtype=torch.float64),
    )
    plan = plan_masks(inventory, scores, 3, align=1)  # room for 1 head, 1 neuron, 1 hidden dim
    assert plan.neurons[0].tolist() == [False, True]
    assert plan.params == 3


# --- degenerate salience and errors ---------------------------------------------------------------

SMALL = BlockInventory(heads=(4, 4, 4), neurons=(16, 16, 16), hidden=16, head_cost=4, neuron_cost=2)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_scores_give_valid_deterministic_plan(value: float) -> None:
    scores = _constant_scores(SMALL, value)
    budget = SMALL.prunable_params() // 3
    options = {"align": 4, "min_heads": 1, "min_neurons": 1, "prune_hidden": True, "uniform_layers": False}
    first = plan_masks(SMALL, scores, budget, align=4)
    second = plan_masks(SMALL, _constant_scores(SMALL, value), budget, align=4)
    _check_invariants(SMALL, first, budget, options)
    assert _same_masks(first, second)
    assert first.params == second.params
    assert _same_masks(first, plan_masks_bruteforce(SMALL, scores, budget, **options))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    ("kind", "where"), [("heads", "heads of layer 1"), ("neurons", "neurons of layer 2")]
)
def test_non_finite_layer_scores_raise(bad: float, kind: str, where: str) -> None:
    scores = _constant_scores(SMALL, 1.0)
    layer = int(where[-1])
    getattr(scores, kind)[layer][3] = bad
    label = "nan" if math.isnan(bad) else ("inf" if bad > 0 else "-inf")
    with pytest.raises(PlanError, match=rf"non-finite salience \({label}\) in {where}: 1 of \d+ entries"):
        plan_masks(SMALL, scores, SMALL.prunable_params())


def test_non_finite_hidden_scores_raise() -> None:
    scores = _constant_scores(SMALL, 1.0)
    scores.hidden[0] = math.nan
    scores.hidden[5] = -math.inf
    with pytest.raises(PlanError, match=r"\(nan, -inf\) in hidden dims: 2 of 16 entries, first at index 0"):
        plan_masks(SMALL, scores, SMALL.prunable_params())


def test_shape_mismatch_raises() -> None:
    scores = _constant_scores(SMALL, 1.0)
    scores.neurons[1] = torch.ones(15)
    with pytest.raises(PlanError, match=r"neurons of layer 1 have shape \(15,\), expected \(16,\)"):
        plan_masks(SMALL, scores, 10**9)
    scores = _constant_scores(SMALL, 1.0)
    scores.heads.pop()
    with pytest.raises(PlanError, match=r"scores\.heads covers 2 modules, the inventory has 3"):
        plan_masks(SMALL, scores, 10**9)


def test_budget_below_minimal_raises_with_minimal_count() -> None:
    minimal = 8 * 3 * (4 * 1 + 2 * 8)  # align 8: 8 hidden dims, 1 head and 8 neurons per layer
    scores = _constant_scores(SMALL, 1.0)
    assert plan_masks(SMALL, scores, minimal).params == minimal
    with pytest.raises(PlanError, match=rf"budget {minimal - 1} .*minimal plan \({minimal} prunable params"):
        plan_masks(SMALL, scores, minimal - 1)
    with pytest.raises(PlanError, match="target_sparsity"):
        plan_masks(SMALL, scores, 0)


def test_budget_at_or_above_full_keeps_everything() -> None:
    scores = _constant_scores(SMALL, 0.5)
    for budget in (SMALL.prunable_params(), 10 * SMALL.prunable_params()):
        plan = plan_masks(SMALL, scores, budget)
        assert all(m.all() for m in [*plan.heads, *plan.neurons, plan.hidden])
        assert plan.params == SMALL.prunable_params()
        assert plan.sparsity_vs(SMALL.prunable_params()) == 0.0


def test_uniform_layers_equal_counts() -> None:
    torch.manual_seed(0)
    inventory = BlockInventory(
        heads=(6, 6, 6, 6), neurons=(32, 32, 32, 32), hidden=32, head_cost=8, neuron_cost=2
    )
    scores = BlockScores(
        heads=[torch.rand(6) * (layer + 1) for layer in range(4)],
        neurons=[torch.rand(32) * (layer + 1) ** 2 for layer in range(4)],
        hidden=torch.rand(32),
    )
    budget = inventory.prunable_params() // 4
    plan = plan_masks(inventory, scores, budget, align=4, prune_hidden=False, uniform_layers=True)
    assert len(set(plan.kept_heads)) == 1
    assert len(set(plan.kept_neurons)) == 1
    assert plan.params <= budget
    # without the constraint the skewed scores give unequal layers
    free = plan_masks(inventory, scores, budget, align=4, prune_hidden=False)
    assert len(set(free.kept_neurons)) > 1


def test_uniform_layers_needs_equal_inventory() -> None:
    inventory = BlockInventory(heads=(4, 3), neurons=(8, 8), hidden=8, head_cost=4, neuron_cost=2)
    with pytest.raises(PlanError, match="uniform_layers"):
        plan_masks(inventory, _constant_scores(inventory, 1.0), 10**9, uniform_layers=True)


def test_bad_options_raise() -> None:
    scores = _constant_scores(SMALL, 1.0)
    with pytest.raises(ValueError, match="align"):
        plan_masks(SMALL, scores, 10**9, align=0)
    with pytest.raises(ValueError, match="min_heads"):
        plan_masks(SMALL, scores, 10**9, min_heads=-1)


# --- data types -----------------------------------------------------------------------------------


def test_inventory_prunable_params_formula() -> None:
    three_attentions = BlockInventory(heads=(2, 1, 3), neurons=(8, 4), hidden=4, head_cost=3, neuron_cost=2)
    assert three_attentions.prunable_params() == 4 * (3 * 6 + 2 * 12)
    inventory = BlockInventory(heads=(12, 10), neurons=(3072, 2000), hidden=768, head_cost=256, neuron_cost=2)
    assert inventory.prunable_params() == 768 * (256 * 22 + 2 * 5072)
    assert inventory.prunable_params(heads=(1, 1), neurons=(8, 8), hidden=16) == 16 * (256 * 2 + 2 * 16)
    with pytest.raises(ValueError, match="need 2 head and 2 neuron counts, got 1 and 2"):
        inventory.prunable_params(heads=(1,))


@pytest.mark.parametrize(
    "fields",
    [
        {"heads": (), "neurons": ()},
        {"heads": (1, 2), "neurons": ()},
        {"heads": (-1,), "neurons": (4,)},
        {"hidden": 0},
        {"neuron_cost": 0},
    ],
)
def test_inventory_validation(fields: dict) -> None:
    """Empty module lists, negative counts and zero sizes are rejected (unequal numbers of
    attention modules and FFNs are valid: T5 decoder layers have two attention modules)."""
    base = {"heads": (2,), "neurons": (4,), "hidden": 4, "head_cost": 2, "neuron_cost": 2}
    with pytest.raises(ValueError):
        BlockInventory(**{**base, **fields})


def test_mask_plan_helpers() -> None:
    plan = plan_masks(HAND_INVENTORY, _hand_scores(), 20, align=1)
    assert plan.kept_heads == (2,)
    assert plan.kept_neurons == (3,)
    assert plan.kept_hidden == 2
    assert plan.sparsity_vs(48) == pytest.approx(1 - 20 / 48)
    with pytest.raises(ValueError):
        plan.sparsity_vs(0)


def test_half_precision_scores_and_model_sized_inventory() -> None:
    torch.manual_seed(1)
    inventory = BlockInventory(
        heads=(12,) * 12, neurons=(3072,) * 12, hidden=768, head_cost=256, neuron_cost=2
    )
    scores = BlockScores(
        heads=[torch.rand(12, dtype=torch.bfloat16) for _ in range(12)],
        neurons=[torch.rand(3072, dtype=torch.bfloat16) for _ in range(12)],
        hidden=torch.rand(768, dtype=torch.bfloat16),
    )
    budget = int(0.4 * inventory.prunable_params())
    plan = plan_masks(inventory, scores, budget)
    assert budget - plan.params < plan.params * 0.05  # close to the budget, not far below it
    _check_invariants(
        inventory,
        plan,
        budget,
        {"align": 8, "min_heads": 1, "min_neurons": 1, "prune_hidden": True, "uniform_layers": False},
    )


@settings(max_examples=150, deadline=None)
@given(case=search_cases())
def test_minimal_shape_is_what_the_smallest_plan_costs(
    case: tuple[BlockInventory, BlockScores, dict],
) -> None:
    inventory, scores, options = case
    shape = minimal_shape(inventory, **{k: v for k, v in options.items() if k != "uniform_layers"})
    budget = inventory.prunable_params(*shape)
    assert plan_masks(inventory, scores, budget, **options).params == budget
    with pytest.raises(PlanError, match="below the minimal plan"):
        plan_masks(inventory, scores, budget - 1, **options)
