"""Model families: the only place that knows transformers' module names."""

from .base import AdapterSlot, LayerSites, ModelFamily, family_for, register_family, supported_model_types
from .bert import BERT

__all__ = [
    "BERT",
    "AdapterSlot",
    "LayerSites",
    "ModelFamily",
    "family_for",
    "register_family",
    "supported_model_types",
]
