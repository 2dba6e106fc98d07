import json
import os
import sys
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn

from aptune.adapter import attach_adapters
from aptune.blocks import MaskPlan
from aptune.families import family_for
from aptune.masks import MaskState, install_masks
from aptune.shrink import (
    ModelDirError,
    load_pruned,
    own_weights,
    portable_name,
    save_pruned,
    shrink_model,
    slice_optimizer_state,
)

from .conftest import feed_decoder, needs_minilm, tiny_batch, tiny_model


def _first_query(adapters) -> str:
    """The first layer's query adapter ("layer.0..." or T5's "encoder.layer.0...")."""
    return next(name for name in adapters if name.endswith("0.attention.query"))


def _random_plan(inventory, seed, heads=True, neurons=True, hidden=True):
    g = torch.Generator().manual_seed(seed)

    def draw(n, active, p):
        keep = torch.rand(n, generator=g) > p if active else torch.ones(n, dtype=torch.bool)
        keep[torch.randint(n, (1,), generator=g)] = True  # never empty
        return keep

    return MaskPlan(
        heads=[draw(n, heads, 0.4) for n in inventory.heads],
        neurons=[draw(n, neurons, 0.5) for n in inventory.neurons],
        hidden=draw(inventory.hidden, hidden, 0.3),
        params=-1,
    )


def _with_adapters(model):
    family = family_for(model)
    adapters = attach_adapters(family.adapter_slots(model, ["query", "value"], ["intermediate"]), 4, 8)
    torch.manual_seed(1)
    for a in adapters.values():
        nn.init.normal_(a.lora_B, std=0.05)
    return adapters


def _masked_and_shrunk(model, batch, plan):
    family = family_for(model)
    inv = family.inventory(model)
    state = MaskState.ones(list(inv.heads), list(inv.neurons), inv.hidden)
    hooks = install_masks(model, family, state)
    state.set_hard(plan)
    masked = model(**batch).logits
    hooks.remove()
    shrink_model(model, plan, family)
    return masked, model(**batch).logits


@pytest.mark.parametrize("which", ["heads", "neurons", "hidden", "all"])
def test_hard_masks_equal_shrunk_model(kind, which):
    model = tiny_model(kind)
    _with_adapters(model)
    batch = tiny_batch()
    ref = model(**batch).logits
    flags = {k: which in (k, "all") for k in ("heads", "neurons", "hidden")}
    plan = _random_plan(family_for(model).inventory(model), seed=3, **flags)
    masked, shrunk = _masked_and_shrunk(model, batch, plan)
    assert not torch.allclose(masked, ref, atol=1e-4)  # the masks did something
    torch.testing.assert_close(shrunk, masked, rtol=1e-4, atol=1e-5)
    inv = family_for(model).inventory(model)
    assert inv.heads == tuple(int(k.sum()) for k in plan.heads)
    assert inv.neurons == tuple(int(k.sum()) for k in plan.neurons)
    assert inv.hidden == int(plan.hidden.sum())


def test_eager_and_sdpa_attention_both_shrink(kind):
    for eager in (True, False):
        model = tiny_model(kind, eager=eager)
        plan = _random_plan(family_for(model).inventory(model), seed=5)
        masked, shrunk = _masked_and_shrunk(model, tiny_batch(1), plan)
        torch.testing.assert_close(shrunk, masked, rtol=1e-4, atol=1e-5)


def test_save_load_reproduces_logits(kind, tmp_path):
    model = tiny_model(kind)
    _with_adapters(model)
    batch = tiny_batch()
    plan = _random_plan(family_for(model).inventory(model), seed=7)
    _, shrunk = _masked_and_shrunk(model, batch, plan)
    save_pruned(model, tmp_path / "m", metadata={"note": "test"})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "aptune.json",
        "config.json",
        "model.safetensors",
    ]
    loaded = feed_decoder(load_pruned(tmp_path / "m"))
    scale = float(shrunk.detach().abs().max())  # merged adapters round differently; T5 v1.1 logits are large
    torch.testing.assert_close(loaded(**batch).logits, shrunk, rtol=1e-5, atol=1e-6 * scale)
    assert family_for(loaded).inventory(loaded) == family_for(model).inventory(model)


def _strings(value):
    """Every string in a JSON value, keys included."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_export_config_names_the_model_class_and_no_local_path(kind, tmp_path):
    model = tiny_model(kind)
    model.config._name_or_path = str(tmp_path / "base-model")  # as from_pretrained on a local folder
    model.config.architectures = ["BertModel"]  # as a backbone's hub config says
    shrink_model(model, _random_plan(family_for(model).inventory(model), seed=7))
    save_pruned(model, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    base = config["aptune"]["base_config"]
    assert config["architectures"] == base["architectures"] == [type(model).__name__]
    assert base["_name_or_path"] == "base-model"
    for name in ("config.json", "aptune.json"):
        text = (tmp_path / "m" / name).read_text()
        assert str(tmp_path) not in text
        assert not [s for s in _strings(json.loads(text)) if os.path.isabs(s)]


def test_load_reads_exports_whose_config_holds_plain_global_fields(tmp_path):
    """Exports written before `PER_LAYER_NOTE` carry the real model type and the widest layer's shapes."""
    model = tiny_model("bert")
    shrink_model(model, _random_plan(family_for(model).inventory(model), seed=7))
    save_pruned(model, tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **model.config.to_diff_dict()}))
    loaded = load_pruned(tmp_path / "m")
    torch.testing.assert_close(loaded(**tiny_batch()).logits, model(**tiny_batch()).logits)


@pytest.mark.parametrize(
    ("name", "portable"),
    [
        ("google-bert/bert-base-uncased", "google-bert/bert-base-uncased"),
        ("t5-small", "t5-small"),
        ("/home/someone/models/minilm", "minilm"),
        ("~/models/minilm/", "minilm"),
        ("C:\\models\\minilm", "minilm"),
        ("", ""),
    ],
)
def test_portable_name_keeps_hub_ids_and_cuts_local_paths(name, portable):
    assert portable_name(name) == portable


def test_portable_name_cuts_an_existing_relative_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "minilm").mkdir(parents=True)
    assert portable_name("models/minilm") == "minilm"


def test_load_rejects_non_aptune_directory(tmp_path):
    with pytest.raises(ModelDirError, match=r"aptune\.json is missing"):
        load_pruned(tmp_path)
    (tmp_path / "aptune.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="not valid JSON"):
        load_pruned(tmp_path)


def test_plan_shape_mismatch_and_empty_layer_rejected(kind):
    model = tiny_model(kind)
    inv = family_for(model).inventory(model)
    plan = _random_plan(inv, seed=0)
    bad = MaskPlan(plan.heads[:-1], plan.neurons, plan.hidden, -1)
    with pytest.raises(ValueError, match="do not match"):
        shrink_model(model, bad)
    plan.neurons[1][:] = False
    with pytest.raises(ValueError, match="every neuron of FFN 1"):
        shrink_model(model, plan)


def test_optimizer_state_of_surviving_entries_is_kept(kind):
    model = tiny_model(kind)
    adapters = _with_adapters(model)
    params = [p for a in adapters.values() for p in (a.lora_A, a.lora_B)]
    opt = torch.optim.AdamW(params, lr=1e-3)
    batch = tiny_batch()
    model(**batch).logits.sum().backward()
    opt.step()
    a = adapters[_first_query(adapters)]
    before_b = opt.state[a.lora_B]["exp_avg"].clone()  # (d_out, r)
    before_a = opt.state[a.lora_A]["exp_avg_sq"].clone()  # (r, d_in)
    plan = _random_plan(family_for(model).inventory(model), seed=11)
    records = shrink_model(model, plan)
    slice_optimizer_state(opt, records)
    w = family_for(model).head_unit(model).qo
    channels = torch.cat([torch.arange(h * w, h * w + w) for h in plan.heads[0].nonzero().flatten()])
    torch.testing.assert_close(opt.state[a.lora_B]["exp_avg"], before_b[channels])
    torch.testing.assert_close(opt.state[a.lora_A]["exp_avg_sq"], before_a[:, plan.hidden])
    model.zero_grad()
    model(**batch).logits.sum().backward()
    opt.step()  # shapes agree: no error


@needs_minilm
def test_minilm_hard_masks_equal_shrunk_and_reload(minilm, review_batch, tmp_path):
    batch = {k: v for k, v in review_batch.items() if k != "labels"}
    _with_adapters(minilm)
    plan = _random_plan(family_for(minilm).inventory(minilm), seed=2)
    masked, shrunk = _masked_and_shrunk(minilm, batch, plan)
    torch.testing.assert_close(shrunk, masked, rtol=1e-4, atol=1e-5)
    save_pruned(minilm, tmp_path / "m")
    loaded = load_pruned(tmp_path / "m")
    torch.testing.assert_close(loaded(**batch).logits, shrunk, rtol=1e-4, atol=1e-5)


def _mapped(model) -> list[str]:
    """Names of the parameters that lie in a file-backed memory map of this process."""
    maps = [line.split(maxsplit=5) for line in Path("/proc/self/maps").read_text().splitlines()]
    files = [f[0] for f in maps if len(f) == 6 and f[5].startswith("/")]  # "start-end" in hex
    ranges = [tuple(int(x, 16) for x in span.split("-")) for span in files]
    ptrs = {name: p.untyped_storage().data_ptr() for name, p in model.named_parameters()}
    return [name for name, ptr in ptrs.items() if any(lo <= ptr < hi for lo, hi in ranges)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_own_weights_moves_a_mapped_checkpoint_into_the_process(tiny_model_dir):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert _mapped(model)  # from_pretrained leaves the weights in the safetensors file's map
    copied = own_weights(model)
    assert copied > 0 and not _mapped(model)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert own_weights(model) == 0  # owned weights stay where they are
