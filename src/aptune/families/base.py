"""What aptune needs to know about a model family, in one interface.

A `ModelFamily` names the modules of one transformers architecture: its attention modules (whose
heads are pruned) and its FFNs (whose neurons are pruned), where the hidden dimension lives, which
linears read or write it, where adapters go, and how to update module attributes and the config
after physical pruning. Everything else in aptune works on these answers and never on module names.

An encoder or decoder layer has one attention module and one FFN; an encoder-decoder's decoder
layer has two attention modules (self and cross) and one FFN, so the two lists need not pair up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import nn

from ..blocks import BlockInventory


@dataclass
class AttentionSites:
    """The projections of one attention module (plain or adapted linears) and the module itself."""

    q: nn.Module
    k: nn.Module
    v: nn.Module
    o: nn.Module
    module: nn.Module


@dataclass
class FfnSites:
    """The projections of one FFN: into the neurons (`ffn_in`, gated FFNs have two) and out."""

    ffn_in: list[nn.Module]
    ffn_out: nn.Module


@dataclass(frozen=True)
class HeadUnit:
    """Channels of one prunable attention unit.

    `qo` channels in the query projection's output and the attention output projection's input,
    `kv` channels in the key and value projections' outputs. Multi-head attention: both are the
    head size. Grouped-query attention prunes whole KV groups: `qo = group_size * head_dim`,
    `kv = head_dim`, so every layer keeps the same number of query heads per KV head.
    """

    qo: int
    kv: int


@dataclass
class AdapterSlot:
    """A linear layer that can receive an adapter: `getattr(parent, attr)`."""

    name: str
    parent: nn.Module
    attr: str


class ModelFamily(ABC):
    """Module-name knowledge of one architecture family."""

    name: str = ""
    model_types: tuple[str, ...] = ()
    norm_kind: str = "layer"
    """Statistics of the hidden-dimension norms: "layer" (mean and variance) or "rms"."""
    norm_writes_residual: bool = True
    """True for post-norm models (BERT): the norms' outputs are the residual stream, so the hidden
    mask scales them. False for pre-norm models: `residual_writers` carry the hidden mask."""
    stock_export: bool = False
    """True when a pruned model with equal shapes in every layer is a stock transformers checkpoint."""
    layer_shape_keys: tuple[str, ...] = ()
    """The `config.json` fields that `update_config` sets from one layer's shape (head counts, FFN
    width): in an export that is not a stock checkpoint they cannot describe every layer, and
    `save_pruned` writes a pointer to `aptune.load_pruned` in their place."""
    int8_per_channel: bool = True
    """Dynamic int8 export (`aptune export --quantize int8`) with one weight scale per output
    channel; False: one scale per weight matrix."""
    int8_fp32: tuple[str, ...] = ()
    """Linears (by attribute name) that an int8 export keeps in fp32: their inputs carry outlier
    activations that one dynamic scale per batch cannot represent."""

    def supports(self, model: nn.Module) -> bool:
        """True when this family knows `model`'s architecture."""
        return getattr(getattr(model, "config", None), "model_type", None) in self.model_types

    def layer_stack(self, model: nn.Module) -> nn.ModuleList | None:
        """The single stack of layers of an encoder-only or decoder-only model; None when the model
        has several (encoder-decoders)."""
        return None

    def truncate_layers(self, model: nn.Module, n: int) -> None:
        """Keep only the first `n` layers of `model` (a copy made for timing), its config with them."""
        stack = self.layer_stack(model)
        if stack is None:
            raise NotImplementedError(f"{self.name} models have no single stack of layers")
        del stack[n:]
        model.config.num_hidden_layers = n
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = model.config.layer_types[:n]

    @abstractmethod
    def num_layers(self, model: nn.Module) -> int:
        """Number of layers whose hidden states self-distillation matches (`distill_states`)."""

    @abstractmethod
    def head_dim(self, model: nn.Module) -> int:
        """Size of one attention head (never changed by pruning)."""

    @abstractmethod
    def attention_sites(self, model: nn.Module) -> list[AttentionSites]:
        """Every attention module, in forward order (head masks and head counts follow it)."""

    @abstractmethod
    def ffn_sites(self, model: nn.Module) -> list[FfnSites]:
        """Every FFN, in forward order (neuron masks and counts follow it)."""

    def prepare(self, model: nn.Module) -> None:
        """Make attention modules prunable independently of each other (idempotent). Called before
        every physical cut, so models rebuilt by `load_pruned` are prepared too. Nothing to do
        for families whose attention modules share no per-head state."""
        return None

    def per_head_params(self, model: nn.Module, attention: int) -> list[tuple[nn.Parameter, int]]:
        """Parameters besides q/k/v/o holding one entry per head unit of attention module
        `attention` along the given dim (sliced with the heads); none by default."""
        return []

    def distill_states(self, output) -> tuple:
        """The per-layer hidden states self-distillation matches: (embeddings, layer 1, ...)."""
        return output.hidden_states

    distill_mask_key: str = "attention_mask"
    """The batch entry marking the real tokens of `distill_states`."""

    def head_unit(self, model: nn.Module) -> HeadUnit:
        """Channels of one prunable attention unit (one head for multi-head attention)."""
        return HeadUnit(qo=self.head_dim(model), kv=self.head_dim(model))

    @abstractmethod
    def residual_norms(self, model: nn.Module) -> list[nn.Module]:
        """Norms over the hidden dimension, in forward order: sliced with it, and computing their
        statistics over the retained dimensions while hidden dimensions are masked."""

    def residual_writers(self, model: nn.Module) -> list[nn.Module]:
        """Modules whose outputs are added to the residual stream (hidden-mask and hidden-salience
        sites of pre-norm models: embedding, attention and FFN output projections)."""
        return []

    @abstractmethod
    def hidden_embeddings(self, model: nn.Module) -> list[nn.Embedding]:
        """Embeddings whose vectors live in the hidden dimension."""

    @abstractmethod
    def hidden_readers(self, model: nn.Module) -> list[nn.Module]:
        """Linears whose input is the hidden dimension (sliced by columns)."""

    def block_labels(self, model: nn.Module) -> tuple[list[str], list[str]]:
        """Names of the attention modules and of the FFNs, for tables ("layer 3" by default)."""
        return (
            [f"layer {i}" for i in range(len(self.attention_sites(model)))],
            [f"layer {i}" for i in range(len(self.ffn_sites(model)))],
        )

    def hidden_writers(self, model: nn.Module) -> list[nn.Module]:
        """Linears whose output is the hidden dimension (sliced by rows): every attention and FFN
        output projection."""
        return [s.o for s in self.attention_sites(model)] + [f.ffn_out for f in self.ffn_sites(model)]

    def block_readers(self, model: nn.Module) -> list[nn.Module]:
        """The q, k, v projections and FFN input projections: linears reading the hidden dim."""
        readers = [m for s in self.attention_sites(model) for m in (s.q, s.k, s.v)]
        return readers + [m for f in self.ffn_sites(model) for m in f.ffn_in]

    @abstractmethod
    def set_heads(self, model: nn.Module, attention: int, heads: int) -> None:
        """Update attention module `attention`'s head-count attributes after heads were removed."""

    @abstractmethod
    def update_config(self, model: nn.Module, inventory: BlockInventory) -> None:
        """Record the new shapes in `model.config` after physical pruning."""

    @abstractmethod
    def adapter_slots(self, model: nn.Module, mha: list[str], ffn: list[str]) -> list[AdapterSlot]:
        """Linears named by the config's `mha_components` / `ffn_components`, in every layer."""

    @abstractmethod
    def task_head(self, model: nn.Module) -> list[nn.Module]:
        """Task-specific modules trained in full (classifier); empty for a bare backbone."""

    def stock_hidden_multiple(self, model: nn.Module, head_units: int) -> int:
        """What a stock checkpoint's hidden size must be a multiple of when every layer keeps
        `head_units` head units (1: no constraint)."""
        return 1

    def inventory(self, model: nn.Module) -> BlockInventory:
        """Current prunable blocks of `model`, read from its modules."""
        unit = self.head_unit(model)
        ffns = self.ffn_sites(model)
        return BlockInventory(
            heads=tuple(s.o.in_features // unit.qo for s in self.attention_sites(model)),
            neurons=tuple(f.ffn_out.in_features for f in ffns),
            hidden=self.hidden_embeddings(model)[0].embedding_dim,
            head_cost=2 * (unit.qo + unit.kv),
            neuron_cost=len(ffns[0].ffn_in) + 1,  # 2 for up/down, 3 for gated
        )


_FAMILIES: list[ModelFamily] = []


def register_family(family: ModelFamily) -> ModelFamily:
    """Make `family` available to `family_for`."""
    _FAMILIES.append(family)
    return family


def supported_model_types() -> list[str]:
    """Every `config.model_type` some registered family handles."""
    return sorted(t for f in _FAMILIES for t in f.model_types)


def family_for(model: nn.Module) -> ModelFamily:
    """The family that knows `model`, or a ValueError listing the supported model types."""
    for family in _FAMILIES:
        if family.supports(model):
            return family
    supported = supported_model_types()
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    raise ValueError(
        f"unsupported model type {model_type!r}: aptune supports {', '.join(supported)}. "
        "Pick a model of one of these types."
    )
