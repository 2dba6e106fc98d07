"""BERT and RoBERTa encoders (`BertModel`, `RobertaModel` and their `*ForSequenceClassification`).

Post-LayerNorm layers: the embedding LayerNorm and the two LayerNorms of every layer write the
residual stream. Attention reshapes with `-1` heads and a per-module `attention_head_size`, so
per-layer head counts work once the linears are cut; the head size is never derived from the
(pruned) `hidden_size` again.
"""

from __future__ import annotations

from torch import nn

from ..blocks import BlockInventory
from .base import AdapterSlot, AttentionSites, FfnSites, ModelFamily, register_family

_MHA = {
    "query": ("self", "query"),
    "key": ("self", "key"),
    "value": ("self", "value"),
    "output": ("output", "dense"),
}
_FFN = {"intermediate": "intermediate", "output": "output"}


class BertFamily(ModelFamily):
    """BERT / RoBERTa encoders with an optional sequence-classification head."""

    name = "bert"
    model_types = ("bert", "roberta")
    layer_shape_keys = ("num_attention_heads", "intermediate_size")

    def _layers(self, model: nn.Module) -> nn.ModuleList:
        return model.base_model.encoder.layer

    def layer_stack(self, model: nn.Module) -> nn.ModuleList:
        return self._layers(model)

    def num_layers(self, model: nn.Module) -> int:
        return len(self._layers(model))

    def head_dim(self, model: nn.Module) -> int:
        return self._layers(model)[0].attention.self.attention_head_size

    def attention_sites(self, model: nn.Module) -> list[AttentionSites]:
        return [
            AttentionSites(
                q=b.attention.self.query,
                k=b.attention.self.key,
                v=b.attention.self.value,
                o=b.attention.output.dense,
                module=b.attention.self,
            )
            for b in self._layers(model)
        ]

    def ffn_sites(self, model: nn.Module) -> list[FfnSites]:
        return [FfnSites(ffn_in=[b.intermediate.dense], ffn_out=b.output.dense) for b in self._layers(model)]

    def residual_norms(self, model: nn.Module) -> list[nn.Module]:
        norms = [model.base_model.embeddings.LayerNorm]
        for block in self._layers(model):
            norms += [block.attention.output.LayerNorm, block.output.LayerNorm]
        return norms

    def hidden_embeddings(self, model: nn.Module) -> list[nn.Embedding]:
        emb = model.base_model.embeddings
        return [m for m in (emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings) if m]

    def hidden_readers(self, model: nn.Module) -> list[nn.Module]:
        readers = self.block_readers(model)
        pooler = getattr(model.base_model, "pooler", None)
        if pooler is not None:
            readers.append(pooler.dense)
        head = getattr(model, "classifier", None)
        if head is not None and hasattr(head, "dense"):  # RoBERTa classification head reads <s>
            readers.append(head.dense)
        return readers

    def set_heads(self, model: nn.Module, attention: int, heads: int) -> None:
        attn = self._layers(model)[attention].attention.self
        attn.num_attention_heads = heads
        attn.all_head_size = heads * attn.attention_head_size

    def update_config(self, model: nn.Module, inventory: BlockInventory) -> None:
        config = model.config
        config.hidden_size = inventory.hidden
        config.num_attention_heads = max(inventory.heads)
        config.intermediate_size = max(inventory.neurons)

    def adapter_slots(self, model: nn.Module, mha: list[str], ffn: list[str]) -> list[AdapterSlot]:
        slots = []
        for i, block in enumerate(self._layers(model)):
            for comp in mha:
                parent_name, attr = _MHA[comp]
                parent = getattr(block.attention, parent_name)
                slots.append(AdapterSlot(f"layer.{i}.attention.{comp}", parent, attr))
            for comp in ffn:
                slots.append(AdapterSlot(f"layer.{i}.ffn.{comp}", getattr(block, _FFN[comp]), "dense"))
        return slots

    def task_head(self, model: nn.Module) -> list[nn.Module]:
        head = getattr(model, "classifier", None)
        return [head] if head is not None else []


BERT = register_family(BertFamily())
