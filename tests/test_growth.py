import torch
from torch import nn

from aptune.adapter import AptLinear, attach_adapters
from aptune.families import family_for
from aptune.growth import AdapterImportance, adapter_params, apply_growth, plan_growth

from .conftest import tiny_batch, tiny_model


def test_plan_growth_grows_top_half_with_cap():
    ranks = {"a": 8, "b": 8, "c": 8, "d": 40}
    importance = {"a": 3.0, "b": 1.0, "c": 0.5, "d": 9.0}
    new = plan_growth(ranks, importance, budget_old=100, budget_new=160, max_rank=64)
    assert new == {"a": 12, "b": 8, "c": 8, "d": 64}
    assert plan_growth(ranks, importance, 100, 100, 64) == ranks  # no budget increase, no growth


def test_plan_growth_ties_are_deterministic():
    ranks = {name: 8 for name in "dcba"}
    new = plan_growth(ranks, {}, 10, 20, 64)
    assert new == {"a": 16, "b": 16, "c": 8, "d": 8}


def test_importance_is_b_times_grad_and_smoothed():
    torch.manual_seed(0)
    ad = AptLinear(nn.Linear(4, 3), rank=2, alpha=4)
    nn.init.normal_(ad.lora_B)
    ad(torch.randn(5, 4)).sum().backward()
    imp = AdapterImportance(beta=0.5)
    imp.accumulate({"x": ad})
    expected = float((ad.lora_B.detach() * ad.lora_B.grad).abs().sum())
    assert imp.update() == {"x": expected}
    imp.window["x"] = 0.0
    assert imp.update() == {"x": 0.5 * expected}


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
