import pytest
import torch
from torch import nn

from aptune.adapter import AptLinear, attach_adapters
from aptune.families import family_for
from aptune.growth import AdapterImportance, adapter_params, apply_growth, plan_growth

from .conftest import tiny_batch, tiny_model


def test_top_half_absorbs_the_whole_budget_increase():
    ranks = {"a": 8, "b": 8, "c": 8, "d": 8}
    per_rank = {"a": 10, "b": 10, "c": 20, "d": 20}  # d_in + d_out
    importance = {"a": 3.0, "b": 1.0, "c": 0.5, "d": 9.0}
    current = sum(ranks[n] * per_rank[n] for n in ranks)  # 480
    new = plan_growth(ranks, importance, per_rank, budget=current + 600, max_rank=1000)
    # top half {d, a}: 240 parameters share the 600 more: factor 1 + 600 / 240 = 3.5
    assert new == {"a": 28, "b": 8, "c": 8, "d": 28}
    assert sum(new[n] * per_rank[n] for n in new) == current + 600
    assert plan_growth(ranks, importance, per_rank, current, 1000) == ranks  # no increase, no growth


def test_growth_stays_within_one_rank_step_of_the_budget():
    ranks = {"a": 7, "b": 9, "c": 8, "d": 5, "e": 12}
    per_rank = {"a": 13, "b": 29, "c": 17, "d": 31, "e": 11}
    importance = {"a": 0.3, "b": 0.9, "c": 0.1, "d": 0.7, "e": 0.2}
    for budget in (900, 1234, 2000, 5321):
        new = plan_growth(ranks, importance, per_rank, budget, max_rank=1000)
        total = sum(new[n] * per_rank[n] for n in new)
        grown = [n for n in new if new[n] > ranks[n]]
        assert set(grown) == {"b", "d"}  # the top half (2 of 5) by importance
        assert 0 <= budget - total < sum(per_rank[n] for n in grown)


def test_growth_caps_ranks_and_skips_adapters_at_the_cap():
    ranks = {"a": 64, "b": 8, "c": 8, "d": 8}
    per_rank = dict.fromkeys(ranks, 10)
    importance = {"a": 9.0, "b": 3.0, "c": 2.0, "d": 1.0}
    new = plan_growth(ranks, importance, per_rank, budget=2000, max_rank=64)
    assert new == {"a": 64, "b": 64, "c": 64, "d": 8}  # "a" is full: the next two grow, capped


def test_plan_growth_ties_are_deterministic():
    ranks = {name: 8 for name in "dcba"}
    new = plan_growth(ranks, {}, dict.fromkeys(ranks, 1), 64, 64)
    assert new == {"a": 24, "b": 24, "c": 8, "d": 8}  # the 32 more go to "a" and "b"


def test_importance_is_b_times_grad_smoothed_every_step():
    torch.manual_seed(0)
    ad = AptLinear(nn.Linear(4, 3), rank=2, alpha=4)
    nn.init.normal_(ad.lora_B)
    imp = AdapterImportance(beta=0.5)
    scores = []
    for x in (torch.randn(5, 4), torch.randn(5, 4)):
        ad.zero_grad()
        ad(x).sum().backward()
        scores.append(float((ad.lora_B.detach() * ad.lora_B.grad).abs().sum()))
        imp.accumulate({"x": ad})
    assert imp.value["x"] == pytest.approx(0.5 * scores[0] + 0.5 * scores[1])
    assert scores[0] != scores[1]


def test_growth_keeps_model_output_and_pads_optimizer_state(kind):
    model = tiny_model(kind)
    family = family_for(model)
    adapters = attach_adapters(family.adapter_slots(model, ["query", "value"], []), 4, 8)
    params = [p for a in adapters.values() for p in (a.lora_A, a.lora_B)]
    opt = torch.optim.AdamW(params, lr=1e-2)
    batch = tiny_batch()
    for _ in range(2):
        opt.zero_grad()
        model(**batch).logits.pow(2).sum().backward()
        opt.step()
    with torch.no_grad():  # no autograd graph may hold the parameters while their shapes change
        before = model(**batch).logits
    name = next(n for n in adapters if n.endswith("0.attention.query"))  # T5: "encoder.layer.0..."
    old_b = opt.state[adapters[name].lora_B]["exp_avg"].clone()
    n_before = adapter_params(adapters)
    grown = apply_growth(adapters, {name: 10}, opt)
    assert grown == 1 and adapters[name].rank == 10
    base = adapters[name].base
    d_out = base.out_features
    assert adapter_params(adapters) == n_before + 6 * (base.in_features + d_out)
    scale = float(before.detach().abs().max())  # fp32 rounding grows with the logits (T5 v1.1: no rescale)
    torch.testing.assert_close(model(**batch).logits, before, rtol=1e-5, atol=1e-6 * scale)
    state_b = opt.state[adapters[name].lora_B]["exp_avg"]
    assert state_b.shape == (d_out, 10)
    torch.testing.assert_close(state_b[:, :4], old_b)
    assert torch.count_nonzero(state_b[:, 4:]) == 0
    opt.zero_grad()
    model(**batch).logits.pow(2).sum().backward()
    opt.step()  # shapes agree with the padded state
