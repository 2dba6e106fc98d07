import pytest
import torch
import transformers

from aptune.adapter import attach_adapters
from aptune.blocks import MaskPlan
from aptune.families import T5, family_for
from aptune.masks import MaskState, install_masks
from aptune.shrink import is_stock, load_pruned, save_pruned, shrink_model

from ..conftest import SEQ2SEQ, feed_decoder, tiny_batch, tiny_model


@pytest.fixture(params=SEQ2SEQ)
def kind(request) -> str:
    return request.param


def _plan(inv, seed: int) -> MaskPlan:
    """Different heads in every attention module (so the bias tables must follow each one's heads),
    a few neurons and hidden dims dropped."""
    g = torch.Generator().manual_seed(seed)

    def drop(n: int, count: int) -> torch.Tensor:
        keep = torch.ones(n, dtype=torch.bool)
        keep[torch.randperm(n, generator=g)[:count]] = False
        return keep

    return MaskPlan(
        heads=[drop(n, 1 + i % 2) for i, n in enumerate(inv.heads)],
        neurons=[drop(n, n // 3) for n in inv.neurons],
        hidden=drop(inv.hidden, inv.hidden // 4),
        params=-1,
    )


def _masked(model, plan: MaskPlan):
    family = family_for(model)
    inv = family.inventory(model)
    state = MaskState.ones(list(inv.heads), list(inv.neurons), inv.hidden)
    hooks = install_masks(model, family, state)
    state.set_hard(plan)
    return hooks


def _adapted(model):
    family = family_for(model)
    adapters = attach_adapters(family.adapter_slots(model, ["query", "value"], ["intermediate"]), 4, 8)
    torch.manual_seed(1)
    for a in adapters.values():
        torch.nn.init.normal_(a.lora_B, std=0.05)
    return adapters


def test_inventory_counts_three_head_sets_and_both_ffn_variants(kind):
    model = tiny_model(kind)
    family = family_for(model)
    assert family is T5
    inv = family.inventory(model)
    # encoder self-attention x3, decoder self-attention x2, decoder cross-attention x2
    assert inv.heads == (4,) * 7 and inv.neurons == (48,) * 5 and inv.hidden == 32
    assert inv.head_cost == 4 * 8 and inv.neuron_cost == (3 if kind == "t5-gated" else 2)
    weights = sum(m.weight.numel() for s in family.attention_sites(model) for m in (s.q, s.k, s.v, s.o))
    weights += sum(m.weight.numel() for f in family.ffn_sites(model) for m in (*f.ffn_in, f.ffn_out))
    assert inv.prunable_params() == weights
    decoder = model.decoder.block
    sites = family.attention_sites(model)
    assert sites[3].module is decoder[0].layer[0].SelfAttention
    assert sites[5].module is decoder[0].layer[1].EncDecAttention


def test_prepare_gives_each_layer_its_own_bias_table_and_keeps_outputs(kind):
    model = tiny_model(kind)
    batch = tiny_batch()
    ref = model(**batch).logits
    T5.prepare(model)
    T5.prepare(model)  # idempotent: one table copy and one hook per module
    for stack in (model.encoder, model.decoder):
        table = stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight
        for block in stack.block[1:]:
            own = block.layer[0].SelfAttention.relative_attention_bias.weight
            assert own is not table and torch.equal(own, table)
    assert len(model.encoder.block[1].layer[0].SelfAttention._forward_pre_hooks) == 1
    torch.testing.assert_close(model(**batch).logits, ref, rtol=0, atol=0)


def test_masked_equals_shrunk_for_encoder_and_decoder(kind):
    model = tiny_model(kind)
    _adapted(model)
    batch = tiny_batch()
    inv = T5.inventory(model)
    plan = _plan(inv, seed=0)
    hooks = _masked(model, plan)
    masked = model(**batch)
    hooks.remove()
    first = model.encoder.block[0].layer[0].SelfAttention
    table = first.relative_attention_bias.weight.clone()  # (buckets, heads)
    shrink_model(model, plan)
    shrunk = model(**batch)
    keep = plan.hidden
    torch.testing.assert_close(
        shrunk.encoder_last_hidden_state, masked.encoder_last_hidden_state[..., keep], rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(shrunk.logits, masked.logits, rtol=1e-4, atol=1e-5)
    assert torch.equal(first.relative_attention_bias.weight, table[:, plan.heads[0]])
    assert T5.inventory(model).heads == tuple(int(k.sum()) for k in plan.heads)
    assert model.config.d_model == int(keep.sum()) and model.config.d_kv == 8


def test_rescale_keeps_the_original_model_dim_after_hidden_pruning(tmp_path):
    model = tiny_model("t5")
    assert model.config.scale_decoder_outputs
    batch = tiny_batch()
    inv = T5.inventory(model)
    plan = MaskPlan(
        heads=[torch.ones(n, dtype=torch.bool) for n in inv.heads],
        neurons=[torch.ones(n, dtype=torch.bool) for n in inv.neurons],
        hidden=torch.arange(inv.hidden) % 4 != 0,
        params=-1,
    )
    hooks = _masked(model, plan)
    masked = model(**batch).logits
    hooks.remove()
    shrink_model(model, plan)
    assert model.model_dim == 32 and model.config.d_model == 24
    torch.testing.assert_close(model(**batch).logits, masked, rtol=1e-4, atol=1e-5)
    save_pruned(model, tmp_path / "m")
    with pytest.raises(ValueError, match=r"load with aptune\.load_pruned"):
        transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "m")
    loaded = feed_decoder(load_pruned(tmp_path / "m"))
    assert loaded.model_dim == 32  # rebuilt from the original config: the original factor
    torch.testing.assert_close(loaded(**batch).logits, masked, rtol=1e-4, atol=1e-5)
    assert not is_stock(loaded)


def test_generate_after_shrinking_matches_the_masked_model_and_reloads(kind, tmp_path):
    model = tiny_model(kind)
    _adapted(model)
    batch = tiny_batch()
    plan = _plan(T5.inventory(model), seed=1)
    options = {"max_new_tokens": 8, "do_sample": False, "num_beams": 1, "min_new_tokens": 8}
    hooks = _masked(model, plan)
    masked = model.generate(**batch, **options)
    hooks.remove()
    shrink_model(model, plan)
    shrunk = model.generate(**batch, **options)
    assert shrunk.shape == (3, 9)
    assert torch.equal(shrunk, masked)
    save_pruned(model, tmp_path / "m")
    loaded = load_pruned(tmp_path / "m")
    assert torch.equal(loaded.generate(**batch, **options), masked)


def test_layers_keep_their_own_head_counts_and_tables(kind):
    """Cutting a head of the first layer only: the later layers keep all their heads and their
    own full tables (T5 alone would hand them the first layer's 3-head bias)."""
    model = tiny_model(kind)
    inv = T5.inventory(model)
    heads = [torch.ones(n, dtype=torch.bool) for n in inv.heads]
    heads[0][0] = False  # encoder layer 0 keeps 3 heads, encoder layer 1 all 4
    plan = MaskPlan(
        heads=heads,
        neurons=[torch.ones(n, dtype=torch.bool) for n in inv.neurons],
        hidden=torch.ones(inv.hidden, dtype=torch.bool),
        params=-1,
    )
    shrink_model(model, plan)
    second = model.encoder.block[1].layer[0].SelfAttention
    assert second.n_heads == 4 and second.relative_attention_bias.weight.shape == (8, 4)
    assert model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight.shape == (8, 3)
    assert model(**tiny_batch()).logits.isfinite().all()


def test_adapter_slots_cover_self_and_cross_attention(kind):
    model = tiny_model(kind)
    slots = T5.adapter_slots(model, ["query", "value"], ["intermediate"])
    names = [s.name for s in slots]
    ffn_in = ("wi_0", "wi_1") if kind == "t5-gated" else ("wi",)
    assert names[: 2 + len(ffn_in)] == [
        "encoder.layer.0.attention.query",
        "encoder.layer.0.attention.value",
        *(f"encoder.layer.0.ffn.{a}" for a in ffn_in),
    ]
    assert "decoder.layer.1.cross_attention.value" in names
    cross = next(s for s in slots if s.name == "decoder.layer.1.cross_attention.query")
    assert getattr(cross.parent, cross.attr) is model.decoder.block[1].layer[1].EncDecAttention.q
    assert len(slots) == 3 * (2 + len(ffn_in)) + 2 * (4 + len(ffn_in))


def test_without_own_bias_hooks_later_layers_get_the_wrong_bias(monkeypatch):
    """The pre-hook is what makes masked == shrunk hold: with it disabled, later layers reuse the
    first layer's (now differently sliced) bias and the outputs drift."""
    import aptune.families.t5 as t5

    monkeypatch.setattr(t5, "_compute_own_bias", lambda module, args, kwargs: (args, kwargs))
    model = tiny_model("t5")
    batch = tiny_batch()
    inv = T5.inventory(model)
    heads = [torch.ones(n, dtype=torch.bool) for n in inv.heads]
    heads[0][1] = heads[1][2] = heads[2][0] = False  # every encoder layer keeps 3 heads, different ones
    plan = MaskPlan(
        heads=heads,
        neurons=[torch.ones(n, dtype=torch.bool) for n in inv.neurons],
        hidden=torch.ones(inv.hidden, dtype=torch.bool),
        params=-1,
    )
    hooks = _masked(model, plan)
    masked = model(**batch).logits
    hooks.remove()
    shrink_model(model, plan)
    assert not torch.allclose(model(**batch).logits, masked, atol=1e-4)
