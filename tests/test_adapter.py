import pytest
import torch
from torch import nn

from aptune.adapter import AptLinear, attach_adapters, find_adapters, merge_adapters
from aptune.families import family_for

from .conftest import DECODERS, ENCODERS, needs_minilm, tiny_batch, tiny_model


def _linear(seed=0, d_in=12, d_out=10):
    torch.manual_seed(seed)
    return nn.Linear(d_in, d_out)


def test_init_is_noop_and_base_frozen():
    lin = _linear()
    x = torch.randn(4, 7, 12)
    ref = lin(x)
    ad = AptLinear(lin, rank=4, alpha=8)
    assert torch.equal(ad(x), ref)
    assert not ad.base.weight.requires_grad and ad.lora_A.requires_grad and ad.lora_B.requires_grad
    assert ad.scaling == 2.0


def test_growth_keeps_output_and_scaling():
    ad = AptLinear(_linear(), rank=4, alpha=8)
    nn.init.normal_(ad.lora_B)
    x = torch.randn(5, 12)
    before = ad(x)
    ad.grow(11)
    assert ad.rank == 11 and ad.lora_A.shape == (11, 12) and ad.lora_B.shape == (10, 11)
    assert ad.scaling == 2.0
    torch.testing.assert_close(ad(x), before, rtol=0, atol=1e-6)
    assert torch.count_nonzero(ad.lora_B[:, 4:]) == 0 and torch.count_nonzero(ad.lora_A[4:]) > 0


def test_growth_rejects_shrinking():
    ad = AptLinear(_linear(), rank=4, alpha=8)
    with pytest.raises(ValueError, match="cannot shrink"):
        ad.grow(2)


def test_merge_equals_unmerged_and_unmerge_restores():
    lin = _linear()
    w0 = lin.weight.detach().clone()
    ad = AptLinear(lin, rank=3, alpha=6)
    nn.init.normal_(ad.lora_B)
    x = torch.randn(6, 12)
    unmerged = ad(x)
    assert not torch.allclose(unmerged, nn.functional.linear(x, w0, lin.bias))
    ad.merge()
    torch.testing.assert_close(ad(x), unmerged, rtol=1e-5, atol=1e-6)
    ad.merge()  # idempotent
    torch.testing.assert_close(ad(x), unmerged, rtol=1e-5, atol=1e-6)
    ad.unmerge()
    torch.testing.assert_close(ad.base.weight, w0, rtol=0, atol=1e-6)
    torch.testing.assert_close(ad(x), unmerged, rtol=1e-5, atol=1e-6)


def _adapted_outputs(model, batch, components=("query", "value"), ffn=("intermediate",)):
    family = family_for(model)
    ref = model(**batch).logits
    adapters = attach_adapters(family.adapter_slots(model, list(components), list(ffn)), rank=4, alpha=8)
    init = model(**batch).logits
    for a in adapters.values():
        nn.init.normal_(a.lora_B, std=0.05)
    trained = model(**batch).logits
    for a in adapters.values():
        a.grow(9)
    grown = model(**batch).logits
    merged_count = merge_adapters(model)
    merged = model(**batch).logits
    return ref, init, trained, grown, merged, merged_count, len(adapters)


def test_model_adapters_init_growth_merge(kind):
    model = tiny_model(kind)
    ref, init, trained, grown, merged, n_merged, n = _adapted_outputs(
        model, tiny_batch(), ("query", "key", "value", "output"), ("intermediate", "output")
    )
    expected = {  # 3 layers; T5: 3 encoder layers and 2 decoder layers with cross-attention too
        **dict.fromkeys(ENCODERS, 3 * 6),
        **dict.fromkeys(DECODERS, 3 * 7),  # gate and up for "intermediate"
        "t5": 3 * 6 + 2 * 10,
        "t5-gated": 3 * 7 + 2 * 11,  # wi_0 and wi_1 for "intermediate"
    }
    assert n == expected[kind] and n_merged == n
    torch.testing.assert_close(init, ref, rtol=0, atol=0)
    assert not torch.allclose(trained, ref)
    torch.testing.assert_close(grown, trained, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(merged, trained, rtol=1e-4, atol=1e-5)
    assert not find_adapters(model)


@needs_minilm
def test_minilm_adapters_init_growth_merge(minilm, review_batch):
    batch = {k: v for k, v in review_batch.items() if k != "labels"}
    ref, init, trained, grown, merged, _, n = _adapted_outputs(minilm, batch)
    assert n == 6 * 3
    torch.testing.assert_close(init, ref, rtol=0, atol=0)
    assert not torch.allclose(trained, ref)
    torch.testing.assert_close(grown, trained, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged, trained, rtol=1e-4, atol=1e-5)
