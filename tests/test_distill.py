import pytest
import torch
import torch.nn.functional as F

from aptune.distill import prediction_loss, sample_teacher_layers, teacher_layers


@pytest.mark.parametrize("layers", [1, 3, 6, 12, 32])
def test_sampled_layers_come_one_from_each_block(layers):
    fixed = teacher_layers(layers)
    g = torch.Generator().manual_seed(0)
    draws = [sample_teacher_layers(layers, g) for _ in range(200)]
    starts = [0, *[f + 1 for f in fixed[:-1]]]
    for draw in draws:
        assert len(draw) == len(fixed)
        assert all(lo <= d <= hi for d, lo, hi in zip(draw, starts, fixed, strict=True))
    seen = {d for draw in draws for d in draw}
    assert seen == set(range(layers))  # every layer of every block is drawn


def test_prediction_loss_scales_kl_by_t_squared_and_scale():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    t = 2 / 3
    kl = F.kl_div(F.log_softmax(student / t, -1), F.softmax(teacher / t, -1), reduction="batchmean")
    torch.testing.assert_close(prediction_loss(student, teacher, t, scale=10.0), kl * t * t * 10)
    assert prediction_loss(teacher, teacher, t, 10.0) == pytest.approx(0.0, abs=1e-6)
