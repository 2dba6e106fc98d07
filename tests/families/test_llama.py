import json

import pytest
import torch
import transformers

from aptune.blocks import MaskPlan
from aptune.config import PruningConfig
from aptune.families import LLAMA, family_for
from aptune.masks import MaskState, install_masks
from aptune.pruner import Pruner
from aptune.shrink import is_stock, load_pruned, save_pruned, shrink_model

from ..conftest import DECODERS, needs_smollm2, tiny_batch, tiny_model

REVIEWS = [
    "A quiet, moving portrait of a family that never once rings false.",
    "The plot is a mess and the jokes land with a thud.",
    "An uneven but often delightful comedy.",
    "Two hours I will never get back.",
]


@pytest.fixture(params=DECODERS)
def kind(request) -> str:
    return request.param


def _weights(model):
    family = family_for(model)
    total = 0
    for s in family.attention_sites(model):
        total += sum(m.weight.numel() for m in (s.q, s.k, s.v, s.o))
    for f in family.ffn_sites(model):
        total += sum(m.weight.numel() for m in (*f.ffn_in, f.ffn_out))
    return total


def test_inventory_counts_kv_groups_and_gated_neurons(kind):
    model = tiny_model(kind)
    family = family_for(model)
    assert family is LLAMA
    cfg = model.config
    inv = family.inventory(model)
    groups = cfg.num_attention_heads // cfg.num_key_value_heads
    d_h = family.head_dim(model)
    assert inv.heads == (cfg.num_key_value_heads,) * cfg.num_hidden_layers
    assert family.head_unit(model).qo == groups * d_h and family.head_unit(model).kv == d_h
    assert inv.head_cost == 2 * (groups + 1) * d_h and inv.neuron_cost == 3
    assert inv.prunable_params() == _weights(model)


def test_adapter_slots_and_residual_sites(kind):
    model = tiny_model(kind)
    family = family_for(model)
    slots = family.adapter_slots(model, ["query", "value"], ["intermediate"])
    block = model.base_model.layers[0]
    targets = [getattr(s.parent, s.attr) for s in slots[:4]]
    assert targets == [block.self_attn.q_proj, block.self_attn.v_proj, block.mlp.gate_proj, block.mlp.up_proj]
    layers = model.config.num_hidden_layers
    assert len(family.residual_norms(model)) == 2 * layers + 1
    assert family.residual_writers(model)[0] is model.base_model.embed_tokens
    assert len(family.residual_writers(model)) == 1 + 2 * layers


def test_tied_embedding_and_lm_head_are_sliced_together():
    model = tiny_model("llama")
    assert model.lm_head.weight is model.base_model.embed_tokens.weight
    inv = family_for(model).inventory(model)
    keep = torch.arange(inv.hidden) % 4 != 0
    plan = MaskPlan(
        heads=[torch.ones(n, dtype=torch.bool) for n in inv.heads],
        neurons=[torch.ones(n, dtype=torch.bool) for n in inv.neurons],
        hidden=keep,
        params=-1,
    )
    shrink_model(model, plan)
    assert model.lm_head.weight is model.base_model.embed_tokens.weight
    assert model.lm_head.weight.shape == (model.config.vocab_size, int(keep.sum()))
    assert model.lm_head.in_features == int(keep.sum()) == model.config.hidden_size
    assert model(**tiny_batch()).logits.shape[-1] == model.config.vocab_size


def _observe(model, pruner, batches):
    for batch in batches:
        model.zero_grad()
        model(**batch).logits.pow(2).mean().backward()
        pruner.fold_batch()


def _uniform_prune(model, batches, retain):
    """Plan with uniform layers from salience, make it hard and cut it out; returns masked logits."""
    pruner = Pruner(model, PruningConfig(align=8, uniform_layers=True, mask_decay_rate=1.0))
    _observe(model, pruner, batches)
    plan = pruner.replan(retain)
    pruner.decay()
    with torch.no_grad():
        masked = model(**batches[0]).logits
    pruner.finalize()
    return plan, masked


def _auto_class(model):
    return (
        transformers.AutoModelForCausalLM
        if hasattr(model, "lm_head")
        else transformers.AutoModelForSequenceClassification
    )


def test_uniform_export_is_a_stock_checkpoint(kind, tmp_path):
    model = tiny_model(kind, hidden_size=64, intermediate_size=64)
    batches = [tiny_batch(0), tiny_batch(1)]
    plan, masked = _uniform_prune(model, batches, 0.5)
    assert len(set(plan.kept_heads)) == 1 and len(set(plan.kept_neurons)) == 1
    assert plan.kept_hidden < 64  # the hidden size was pruned too
    assert is_stock(model)
    with torch.no_grad():
        shrunk = model(**batches[0]).logits
    torch.testing.assert_close(shrunk, masked, rtol=1e-4, atol=1e-5)
    save_pruned(model, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architectures"] == [type(model).__name__]
    assert config["model_type"] == model.config.model_type
    stock = _auto_class(model).from_pretrained(tmp_path / "m").eval()
    assert type(stock) is type(model)
    with torch.no_grad():
        torch.testing.assert_close(stock(**batches[0]).logits, shrunk, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(load_pruned(tmp_path / "m")(**batches[0]).logits, shrunk)


def test_llama_uniform_hidden_is_a_multiple_of_the_query_heads():
    model = tiny_model(
        "llama-gqa", hidden_size=96, intermediate_size=64, num_attention_heads=6, num_key_value_heads=3
    )
    _uniform_prune(model, [tiny_batch(0)], 0.45)
    cfg = model.config
    assert cfg.hidden_size % cfg.num_attention_heads == 0 and cfg.hidden_size % 8 == 0
    transformers.LlamaConfig(**cfg.to_dict())  # transformers' own validation accepts it


def test_non_uniform_export_is_not_stock_but_reloads(tmp_path):
    model = tiny_model("llama-gqa")
    inv = family_for(model).inventory(model)
    plan = MaskPlan(
        heads=[torch.tensor([True, layer != 1]) for layer in range(len(inv.heads))],
        neurons=[torch.arange(n) % (layer + 2) != 0 for layer, n in enumerate(inv.neurons)],
        hidden=torch.ones(inv.hidden, dtype=torch.bool),
        params=-1,
    )
    shrink_model(model, plan)
    assert not is_stock(model)
    save_pruned(model, tmp_path / "m")
    with pytest.raises(ValueError, match=r"load with aptune\.load_pruned"):
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    loaded = load_pruned(tmp_path / "m")
    assert family_for(loaded).inventory(loaded) == family_for(model).inventory(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**tiny_batch()).logits, model(**tiny_batch()).logits)


@needs_smollm2
def test_smollm2_inventory(smollm2):
    inv = family_for(smollm2).inventory(smollm2)
    assert inv.heads == (3,) * 30 and inv.neurons == (1536,) * 30 and inv.hidden == 576
    assert inv.prunable_params() == _weights(smollm2)


@pytest.fixture(scope="module")
def smollm2_batch(smollm2_tokenizer):
    return dict(smollm2_tokenizer(REVIEWS, padding=True, return_tensors="pt"))


def _assert_same_logits(actual, expected, batch):
    """Equal within 1e-4 of the logits' scale, at real (non-padding) tokens only: padded positions
    attend to nothing and are noise. Through 30 layers fp32 rounding reaches ~1e-3 on logits of ~30."""
    real = batch["attention_mask"].bool()
    scale = float(expected[real].abs().max())
    torch.testing.assert_close(actual[real], expected[real], rtol=1e-4, atol=1e-4 * scale)


@needs_smollm2
def test_smollm2_hard_masks_equal_shrunk_and_reload(smollm2, smollm2_batch, tmp_path):
    family = family_for(smollm2)
    inv = family.inventory(smollm2)
    g = torch.Generator().manual_seed(0)
    plan = MaskPlan(
        heads=[torch.rand(n, generator=g) > 0.3 for n in inv.heads],
        neurons=[torch.rand(n, generator=g) > 0.4 for n in inv.neurons],
        hidden=torch.rand(inv.hidden, generator=g) > 0.2,
        params=-1,
    )
    for keep in plan.heads:
        keep[0] = True
    state = MaskState.ones(list(inv.heads), list(inv.neurons), inv.hidden)
    hooks = install_masks(smollm2, family, state)
    state.set_hard(plan)
    with torch.no_grad():
        masked = smollm2(**smollm2_batch).logits
        hooks.remove()
        shrink_model(smollm2, plan, family)
        shrunk = smollm2(**smollm2_batch).logits
    _assert_same_logits(shrunk, masked, smollm2_batch)
    save_pruned(smollm2, tmp_path / "m")
    with torch.no_grad():
        reloaded = load_pruned(tmp_path / "m")(**smollm2_batch).logits
    torch.testing.assert_close(reloaded, shrunk, rtol=1e-5, atol=1e-5)


@needs_smollm2
def test_smollm2_uniform_export_loads_with_stock_transformers(smollm2, smollm2_batch, tmp_path):
    batch = {**smollm2_batch, "labels": smollm2_batch["input_ids"]}
    pruner = Pruner(smollm2, PruningConfig(align=8, uniform_layers=True, mask_decay_rate=1.0))
    smollm2(**batch).loss.backward()
    pruner.fold_batch()
    plan = pruner.replan(0.7)
    pruner.decay()
    with torch.no_grad():
        masked = smollm2(**smollm2_batch).logits
    pruner.finalize()
    assert plan.params <= 0.7 * pruner.initial_params
    save_pruned(smollm2, tmp_path / "m")
    stock = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        logits = stock(**smollm2_batch).logits
    _assert_same_logits(logits, masked, smollm2_batch)
    assert stock.config.num_attention_heads == 3 * stock.config.num_key_value_heads
