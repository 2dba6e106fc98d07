"""Model families: the only place that knows transformers' module names."""

from .base import AdapterSlot, LayerSites, ModelFamily, family_for, register_family
from .bert import BERT

__all__ = ["BERT", "AdapterSlot", "LayerSites", "ModelFamily", "family_for", "register_family"]
