"""T5 and mT5 encoder-decoders (`T5ForConditionalGeneration`, `MT5ForConditionalGeneration`,
`T5Model`, `MT5Model`).

Attention modules, in this order: the encoder's self-attention of layers 0..Le-1, the decoder's
self-attention of layers 0..Ld-1, then the decoder's cross-attention of layers 0..Ld-1. FFNs: the
encoder's, then the decoder's; ReLU (`wi` -> `wo`) or gated (`wi_0`, `wi_1` -> `wo`). Layers are
pre-RMSNorm (`T5LayerNorm`: no mean, no bias) and no linear has a bias. One hidden dimension runs
through the shared embedding (tied to both stacks' `embed_tokens` and to the LM head), both stacks,
and the cross-attention keys and values, which read the encoder's output.

Relative position bias. T5 keeps one table `(num_buckets, n_heads)` in the first self-attention of
each stack, and later layers reuse the bias tensor that the first layer computed. That breaks once
layers keep different heads, so `prepare` gives every self-attention its own copy of its stack's
table (frozen like the original) and makes every attention module compute its own bias: the
self-attentions from their own table, the cross-attentions as zeros of their own head count. The
table's columns are cut with the heads (`per_head_params`). Forward pre-hooks do this; no model code
is copied.

LM-head rescale. With `scale_decoder_outputs` (t5-base, not T5 v1.1 / Flan-T5), the decoder output
is multiplied by `model_dim ** -0.5` before the tied LM head. `model_dim` is set from the original
`d_model` when the model is built and pruning never changes it; `load_pruned` rebuilds the model
from the original config. The factor therefore stays the original one after hidden pruning.

Self-distillation matches the decoder's hidden states over the real target tokens. Exports hold
per-layer bias tables and head counts, so they load with `aptune.load_pruned`, not stock
`from_pretrained`.
"""

from __future__ import annotations

from torch import nn

from ..blocks import BlockInventory
from .base import AdapterSlot, AttentionSites, FfnSites, ModelFamily, register_family

_MHA = {"query": "q", "key": "k", "value": "v", "output": "o"}
_OWN_BIAS = "_aptune_own_position_bias"


def _compute_own_bias(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook: drop the position bias passed down from the stack's first layer, so the
    module computes its own (from its own table, or zeros of its own head count)."""
    return args, {**kwargs, "position_bias": None}


class T5Family(ModelFamily):
    """T5 / mT5 encoder-decoders (see the module docstring)."""

    name = "t5"
    model_types = ("t5", "mt5")
    layer_shape_keys = ("num_heads", "d_ff")
    norm_kind = "rms"
    norm_writes_residual = False
    distill_mask_key = "decoder_attention_mask"

    def supports(self, model: nn.Module) -> bool:
        """T5 models with both stacks (the encoder-only `T5EncoderModel` is not supported)."""
        return super().supports(model) and hasattr(model, "decoder") and hasattr(model, "encoder")

    def _stacks(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        return model.encoder, model.decoder

    def num_layers(self, model: nn.Module) -> int:
        """Decoder layers: self-distillation matches the decoder's hidden states."""
        return len(model.decoder.block)

    def distill_states(self, output) -> tuple:
        return output.decoder_hidden_states

    def head_dim(self, model: nn.Module) -> int:
        return self._self_attentions(model.encoder)[0].key_value_proj_dim

    @staticmethod
    def _self_attentions(stack: nn.Module) -> list[nn.Module]:
        return [block.layer[0].SelfAttention for block in stack.block]

    def _attentions(self, model: nn.Module) -> list[nn.Module]:
        encoder, decoder = self._stacks(model)
        cross = [block.layer[1].EncDecAttention for block in decoder.block]
        return self._self_attentions(encoder) + self._self_attentions(decoder) + cross

    def block_labels(self, model: nn.Module) -> tuple[list[str], list[str]]:
        encoder, decoder = (range(len(stack.block)) for stack in self._stacks(model))
        attention = [f"encoder {i} self" for i in encoder] + [f"decoder {i} self" for i in decoder]
        attention += [f"decoder {i} cross" for i in decoder]
        return attention, [f"encoder {i}" for i in encoder] + [f"decoder {i}" for i in decoder]

    def attention_sites(self, model: nn.Module) -> list[AttentionSites]:
        return [AttentionSites(q=a.q, k=a.k, v=a.v, o=a.o, module=a) for a in self._attentions(model)]

    @staticmethod
    def _dense(block: nn.Module) -> nn.Module:
        return block.layer[-1].DenseReluDense

    def ffn_sites(self, model: nn.Module) -> list[FfnSites]:
        sites = []
        for stack in self._stacks(model):
            for block in stack.block:
                dense = self._dense(block)
                ffn_in = [dense.wi_0, dense.wi_1] if hasattr(dense, "wi_0") else [dense.wi]
                sites.append(FfnSites(ffn_in=ffn_in, ffn_out=dense.wo))
        return sites

    def prepare(self, model: nn.Module) -> None:
        """Give every self-attention its own relative-position table and make every attention
        module compute its own position bias (see the module docstring). Idempotent."""
        for stack in self._stacks(model):
            first, *rest = self._self_attentions(stack)
            table = first.relative_attention_bias.weight  # (num_buckets, n_heads)
            for attn in rest:
                if not attn.has_relative_attention_bias:
                    own = nn.Embedding(*table.shape, device=table.device, dtype=table.dtype)
                    own.weight.data.copy_(table.data)
                    own.weight.requires_grad_(table.requires_grad)
                    attn.relative_attention_bias = own
                    attn.has_relative_attention_bias = True
        for attn in self._attentions(model):
            if not getattr(attn, _OWN_BIAS, False):
                attn.register_forward_pre_hook(_compute_own_bias, with_kwargs=True)
                setattr(attn, _OWN_BIAS, True)

    def per_head_params(self, model: nn.Module, attention: int) -> list[tuple[nn.Parameter, int]]:
        """The attention module's own relative-position table: one column per head."""
        attn = self._attentions(model)[attention]
        if not attn.has_relative_attention_bias:
            return []
        return [(attn.relative_attention_bias.weight, 1)]

    def residual_norms(self, model: nn.Module) -> list[nn.Module]:
        norms = []
        for stack in self._stacks(model):
            for block in stack.block:
                norms += [sub.layer_norm for sub in block.layer]
            norms.append(stack.final_layer_norm)
        return norms

    def residual_writers(self, model: nn.Module) -> list[nn.Module]:
        embeddings = [stack.embed_tokens for stack in self._stacks(model)]
        return embeddings + self.hidden_writers(model)

    def hidden_embeddings(self, model: nn.Module) -> list[nn.Embedding]:
        """The shared table and both stacks' token embeddings (tied: one Parameter, cut once)."""
        return [model.shared, *(stack.embed_tokens for stack in self._stacks(model))]

    def _untied_head(self, model: nn.Module) -> nn.Module | None:
        head = getattr(model, "lm_head", None)
        return None if head is None or head.weight is model.shared.weight else head

    def hidden_readers(self, model: nn.Module) -> list[nn.Module]:
        head = self._untied_head(model)
        return self.block_readers(model) + ([head] if head is not None else [])

    def set_heads(self, model: nn.Module, attention: int, heads: int) -> None:
        attn = self._attentions(model)[attention]
        attn.n_heads = heads
        attn.inner_dim = heads * attn.key_value_proj_dim

    def update_config(self, model: nn.Module, inventory: BlockInventory) -> None:
        """Record the widest shapes in the model's and both stacks' configs (`d_kv` is explicit)."""
        for config in (model.config, *(stack.config for stack in self._stacks(model))):
            config.d_model = inventory.hidden
            config.num_heads = max(inventory.heads)
            config.d_ff = max(inventory.neurons)
        head = getattr(model, "lm_head", None)
        if head is not None and self._untied_head(model) is None:
            head.in_features = inventory.hidden

    def adapter_slots(self, model: nn.Module, mha: list[str], ffn: list[str]) -> list[AdapterSlot]:
        slots = []
        for stack_name, stack in zip(("encoder", "decoder"), self._stacks(model), strict=True):
            for i, block in enumerate(stack.block):
                prefix = f"{stack_name}.layer.{i}"
                attentions = [("attention", block.layer[0].SelfAttention)]
                if stack_name == "decoder":
                    attentions.append(("cross_attention", block.layer[1].EncDecAttention))
                for kind, attn in attentions:
                    slots += [AdapterSlot(f"{prefix}.{kind}.{c}", attn, _MHA[c]) for c in mha]
                slots += self._ffn_slots(prefix, self._dense(block), ffn)
        return slots

    @staticmethod
    def _ffn_slots(prefix: str, dense: nn.Module, ffn: list[str]) -> list[AdapterSlot]:
        gated = hasattr(dense, "wi_0")
        names = {"intermediate": ("wi_0", "wi_1") if gated else ("wi",), "output": ("wo",)}
        return [AdapterSlot(f"{prefix}.ffn.{attr}", dense, attr) for comp in ffn for attr in names[comp]]

    def task_head(self, model: nn.Module) -> list[nn.Module]:
        """None: the LM head is the frozen (tied) vocabulary; adapters learn the task."""
        return []


T5 = register_family(T5Family())
