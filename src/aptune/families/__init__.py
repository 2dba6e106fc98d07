"""Model families: the only place that knows transformers' module names."""

from .base import (
    AdapterSlot,
    AttentionSites,
    FfnSites,
    HeadUnit,
    ModelFamily,
    family_for,
    register_family,
    supported_model_types,
)
from .bert import BERT
from .llama import LLAMA

__all__ = [
    "BERT",
    "LLAMA",
    "AdapterSlot",
    "AttentionSites",
    "FfnSites",
    "HeadUnit",
    "ModelFamily",
    "family_for",
    "register_family",
    "supported_model_types",
]
