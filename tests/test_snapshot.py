import torch
from torch import nn

from aptune.adapter import AptLinear
from aptune.shrink import slice_linear
from aptune.snapshot import BestWeights, WeightSnapshot


def _adapted(seed: int = 0) -> AptLinear:
    torch.manual_seed(seed)
    layer = AptLinear(nn.Linear(6, 5), rank=2, alpha=4)
    nn.init.normal_(layer.lora_B)
    return layer


def test_snapshot_follows_cuts_like_the_parameters():
    layer = _adapted()
    params = [layer.lora_A, layer.lora_B]
    snap = WeightSnapshot.take(params)
    expected_delta = layer.delta_weight().detach()
    records = []
    slice_linear(layer, torch.tensor([0, 2, 4]), "out", records)
    slice_linear(layer, torch.tensor([1, 5]), "in", records)
    snap.follow_cuts(records)
    assert [v.shape for v in snap.values] == [p.shape for p in params]
    snap.swap()
    torch.testing.assert_close(layer.delta_weight().detach(), expected_delta[[0, 2, 4]][:, [1, 5]])


def test_snapshot_follows_growth_without_changing_its_product():
    layer = _adapted()
    snap = WeightSnapshot.take([layer.lora_A, layer.lora_B])
    delta = layer.delta_weight().detach()
    with torch.no_grad():
        layer.grow(5)
    snap.follow_growth()
    assert snap.values[0].shape == (5, 6) and snap.values[1].shape == (5, 5)
    snap.swap()
    torch.testing.assert_close(layer.delta_weight().detach(), delta)


def test_restore_copies_values_back():
    layer = _adapted()
    snap = WeightSnapshot.take([layer.lora_B])
    saved = layer.lora_B.detach().clone()
    with torch.no_grad():
        layer.lora_B.add_(1.0)
    snap.restore()
    assert torch.equal(layer.lora_B.detach(), saved)


def test_best_weights_take_only_improvements():
    layer = _adapted()
    best = BestWeights()
    assert best.offer(0.5, [layer.lora_B])
    first = best.snapshot
    assert not best.offer(0.5, [layer.lora_B]) and not best.offer(0.4, [layer.lora_B])
    assert best.snapshot is first
    assert best.offer(0.7, [layer.lora_B]) and best.snapshot is not first and best.score == 0.7
    best.clear()
    assert best.snapshot is None and best.score is None
