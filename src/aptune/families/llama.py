"""LLaMA-style decoders: LLaMA, Qwen2, Mistral (and SmolLM, which is LLaMA).

Pre-RMSNorm layers with a gated FFN (`gate_proj`, `up_proj` -> activation -> `down_proj`) and RoPE.
The residual stream is written by the token embedding and by every `o_proj` and `down_proj`, so the
hidden mask acts there; the RMSNorms only read it and take their mean square over retained dims.

Head unit: grouped-query attention shares one key/value head among `G = n_heads / n_kv_heads`
query heads, stored contiguously (query head h reads KV head h // G). aptune prunes **whole KV
groups**: one unit is a KV head with its G query heads (`G * d_h` channels of `q_proj`/`o_proj`,
`d_h` of `k_proj`/`v_proj`). Every layer then keeps exactly G query heads per KV head, which is
what transformers' attention kernels (`repeat_kv`, SDPA `enable_gqa`) require, and
`num_key_value_groups` never changes. For multi-head attention (G = 1) a unit is one head.
RoPE acts within a head, and hidden pruning never changes `head_dim`.

Tied input/output embeddings share one Parameter: slicing the embedding's hidden columns slices the
LM head too. With equal shapes in every layer the pruned model is a stock checkpoint: the config
records `hidden_size`, `head_dim`, head counts and `intermediate_size` explicitly.
"""

from __future__ import annotations

from torch import nn

from ..blocks import BlockInventory
from .base import AdapterSlot, AttentionSites, FfnSites, HeadUnit, ModelFamily, register_family

_MHA = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "output": "o_proj"}
_FFN = {"intermediate": ("gate_proj", "up_proj"), "output": ("down_proj",)}


class LlamaFamily(ModelFamily):
    """LLaMA / Qwen2 / Mistral decoders (`*ForCausalLM`, `*ForSequenceClassification`, bare model)."""

    name = "llama"
    model_types = ("llama", "qwen2", "mistral")
    norm_kind = "rms"
    norm_writes_residual = False
    stock_export = True
    layer_shape_keys = ("num_attention_heads", "num_key_value_heads", "intermediate_size")
    # measured on SmolLM2-135M (300 test reviews, fp32 0.877): every MatMul in int8 with per-channel
    # scales 0.623 (one class for every review), per-tensor 0.753, per-tensor with down_proj in
    # fp32 0.867; down_proj reads the gate * up product, where decoders' massive activations live
    int8_per_channel = False
    int8_fp32 = ("down_proj",)

    def _layers(self, model: nn.Module) -> nn.ModuleList:
        return model.base_model.layers

    def _attention(self, model: nn.Module, layer: int = 0) -> nn.Module:
        return self._layers(model)[layer].self_attn

    def layer_stack(self, model: nn.Module) -> nn.ModuleList:
        return self._layers(model)

    def num_layers(self, model: nn.Module) -> int:
        return len(self._layers(model))

    def head_dim(self, model: nn.Module) -> int:
        return self._attention(model).head_dim

    def group_size(self, model: nn.Module) -> int:
        """Query heads per KV head (1 for multi-head attention)."""
        return self._attention(model).num_key_value_groups

    def head_unit(self, model: nn.Module) -> HeadUnit:
        d_h = self.head_dim(model)
        return HeadUnit(qo=self.group_size(model) * d_h, kv=d_h)

    def stock_hidden_multiple(self, model: nn.Module, head_units: int) -> int:
        """transformers 5 `LlamaConfig` rejects a hidden size that is not a multiple of the query
        head count (even with an explicit `head_dim`); Qwen2 and Mistral configs do not."""
        if model.config.model_type != "llama":
            return 1
        return head_units * self.group_size(model)

    def attention_sites(self, model: nn.Module) -> list[AttentionSites]:
        return [
            AttentionSites(q=a.q_proj, k=a.k_proj, v=a.v_proj, o=a.o_proj, module=a)
            for a in (block.self_attn for block in self._layers(model))
        ]

    def ffn_sites(self, model: nn.Module) -> list[FfnSites]:
        return [
            FfnSites(ffn_in=[m.gate_proj, m.up_proj], ffn_out=m.down_proj)
            for m in (block.mlp for block in self._layers(model))
        ]

    def residual_norms(self, model: nn.Module) -> list[nn.Module]:
        norms = []
        for block in self._layers(model):
            norms += [block.input_layernorm, block.post_attention_layernorm]
        return [*norms, model.base_model.norm]

    def residual_writers(self, model: nn.Module) -> list[nn.Module]:
        writers: list[nn.Module] = [model.base_model.embed_tokens]
        return writers + self.hidden_writers(model)

    def hidden_embeddings(self, model: nn.Module) -> list[nn.Embedding]:
        return [model.base_model.embed_tokens]

    def _output_head(self, model: nn.Module) -> nn.Module | None:
        head = getattr(model, "lm_head", None)
        return head if head is not None else getattr(model, "score", None)

    def _tied(self, model: nn.Module) -> bool:
        head = self._output_head(model)
        return head is not None and head.weight is model.base_model.embed_tokens.weight

    def hidden_readers(self, model: nn.Module) -> list[nn.Module]:
        readers = self.block_readers(model)
        head = self._output_head(model)
        if head is not None and not self._tied(model):
            readers.append(head)
        return readers

    def set_heads(self, model: nn.Module, attention: int, heads: int) -> None:
        """Nothing to update: attention views with -1 heads and the group size is unchanged."""

    def update_config(self, model: nn.Module, inventory: BlockInventory) -> None:
        config, groups = model.config, self.group_size(model)
        config.head_dim = self.head_dim(model)  # explicit: no longer hidden_size // heads
        config.hidden_size = inventory.hidden
        config.num_key_value_heads = max(inventory.heads)
        config.num_attention_heads = max(inventory.heads) * groups
        config.intermediate_size = max(inventory.neurons)
        head = self._output_head(model)
        if head is not None and self._tied(model):
            head.in_features = inventory.hidden

    def adapter_slots(self, model: nn.Module, mha: list[str], ffn: list[str]) -> list[AdapterSlot]:
        slots = []
        for i, block in enumerate(self._layers(model)):
            for comp in mha:
                slots.append(AdapterSlot(f"layer.{i}.attention.{comp}", block.self_attn, _MHA[comp]))
            for comp in ffn:
                for attr in _FFN[comp]:
                    slots.append(AdapterSlot(f"layer.{i}.ffn.{attr}", block.mlp, attr))
        return slots

    def task_head(self, model: nn.Module) -> list[nn.Module]:
        """The classification head (`score`); a causal LM's head is the frozen (tied) vocabulary."""
        head = getattr(model, "score", None)
        return [head] if head is not None else []


LLAMA = register_family(LlamaFamily())
