import pytest
import torch
import transformers

from aptune.blocks import MaskPlan
from aptune.families import BERT, family_for
from aptune.shrink import is_stock, load_pruned, save_pruned, shrink_model

from ..conftest import ENCODERS, TINY, needs_minilm, tiny_batch, tiny_model


@pytest.fixture(params=ENCODERS)
def kind(request) -> str:
    return request.param


def test_inventory_reads_shapes_from_config(kind):
    model = tiny_model(kind, num_hidden_layers=2, hidden_size=48, num_attention_heads=6, intermediate_size=40)
    family = family_for(model)
    assert family is BERT
    inv = family.inventory(model)
    assert inv.heads == (6, 6) and inv.neurons == (40, 40) and inv.hidden == 48
    assert inv.head_cost == 4 * 8 and inv.neuron_cost == 2
    assert inv.prunable_params() == 48 * 2 * (4 * 8 * 6 + 2 * 40)


def test_prunable_params_match_the_linear_weights(kind):
    model = tiny_model(kind)
    family = family_for(model)
    weights = 0
    for s in family.attention_sites(model):
        weights += sum(m.weight.numel() for m in (s.q, s.k, s.v, s.o))
    for f in family.ffn_sites(model):
        weights += sum(m.weight.numel() for m in (*f.ffn_in, f.ffn_out))
    assert family.inventory(model).prunable_params() == weights


def test_adapter_slots_name_the_configured_linears(kind):
    model = tiny_model(kind)
    slots = family_for(model).adapter_slots(model, ["query", "value"], ["intermediate"])
    assert len(slots) == 3 * TINY["num_hidden_layers"]
    layer0 = model.base_model.encoder.layer[0]
    assert getattr(slots[0].parent, slots[0].attr) is layer0.attention.self.query
    assert getattr(slots[2].parent, slots[2].attr) is layer0.intermediate.dense


def test_residual_norms_and_hidden_readers(kind):
    model = tiny_model(kind)
    family = family_for(model)
    assert len(family.residual_norms(model)) == 1 + 2 * TINY["num_hidden_layers"]
    readers = family.hidden_readers(model)
    head_reader = model.bert.pooler.dense if kind == "bert" else model.classifier.dense
    assert any(r is head_reader for r in readers)
    assert family.task_head(model) == [model.classifier]


def test_bare_backbone_is_supported():
    model = transformers.BertModel(transformers.BertConfig(**TINY))
    assert family_for(model).inventory(model).heads == (4,) * TINY["num_hidden_layers"]


def test_unsupported_model_type_names_supported_ones():
    model = transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match=r"unsupported model type .gpt2.*bert, llama"):
        family_for(model)


def _shrink_per_layer(model):
    """Layer i keeps i + 1 heads and 8 (i + 1) neurons; 28 of 32 hidden dims (3 heads of 8 do not fill it)."""
    inv = BERT.inventory(model)
    plan = MaskPlan(
        heads=[torch.arange(n) <= i for i, n in enumerate(inv.heads)],
        neurons=[torch.arange(n) < 8 * (i + 1) for i, n in enumerate(inv.neurons)],
        hidden=torch.arange(inv.hidden) < 28,
        params=-1,
    )
    shrink_model(model, plan)
    return model


def test_per_layer_export_sends_stock_loading_to_load_pruned(kind, tmp_path):
    model = _shrink_per_layer(tiny_model(kind))
    assert not is_stock(model)
    save_pruned(model, tmp_path / "m")
    for stock in (transformers.AutoConfig, transformers.AutoModelForSequenceClassification, type(model)):
        with pytest.raises(Exception, match=r"load with aptune\.load_pruned\(model_dir\)"):
            stock.from_pretrained(tmp_path / "m")
    loaded = load_pruned(tmp_path / "m")
    assert BERT.inventory(loaded) == BERT.inventory(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**tiny_batch()).logits, model(**tiny_batch()).logits)


def test_export_with_nothing_cut_stays_a_stock_checkpoint(kind, tmp_path):
    model = tiny_model(kind)  # as after a run with pruning disabled
    save_pruned(model, tmp_path / "m")
    assert is_stock(model)
    stock = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        torch.testing.assert_close(stock(**tiny_batch()).logits, model(**tiny_batch()).logits)


@needs_minilm
def test_per_layer_export_keeps_its_tokenizer_loadable(tiny_model_dir, tmp_path):
    model = _shrink_per_layer(transformers.BertForSequenceClassification.from_pretrained(tiny_model_dir))
    save_pruned(model, tmp_path / "m")
    transformers.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "m")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "m")
    assert tokenizer("a fine film")["input_ids"][0] == tokenizer.cls_token_id
    assert tiny_model_dir not in (tmp_path / "m" / "config.json").read_text()


@needs_minilm
def test_minilm_inventory(minilm):
    inv = family_for(minilm).inventory(minilm)
    assert inv.heads == (12,) * 6 and inv.neurons == (1536,) * 6 and inv.hidden == 384
    assert inv.prunable_params() == 384 * 6 * (4 * 32 * 12 + 2 * 1536)
    assert sum(p.numel() for p in minilm.parameters()) == pytest.approx(22.7e6, rel=0.01)
    assert torch.is_tensor(minilm.bert.pooler.dense.weight)
