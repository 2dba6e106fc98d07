import torch

from aptune.blocks import BlockScores


def test_block_scores_cpu_keeps_every_set_in_place():
    scores = BlockScores(
        heads=[torch.tensor([1.0, 2.0]), torch.tensor([3.0])],
        neurons=[torch.tensor([4.0, 5.0, 6.0]), torch.tensor([7.0, 8.0])],
        hidden=torch.tensor([9.0, 10.0, 11.0, 12.0], dtype=torch.float64),
    )
    out = scores.cpu()
    wanted = [*scores.heads, *scores.neurons, scores.hidden]
    for got, want in zip([*out.heads, *out.neurons, out.hidden], wanted, strict=True):
        assert got.device.type == "cpu" and got.dtype == torch.float32
        torch.testing.assert_close(got, want.float(), rtol=0, atol=0)
    assert len(out.heads) == 2 and len(out.neurons) == 2
