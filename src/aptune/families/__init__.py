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
from .t5 import T5

__all__ = [
    "BERT",
    "LLAMA",
    "T5",
    "AdapterSlot",
    "AttentionSites",
    "FfnSites",
    "HeadUnit",
    "ModelFamily",
    "family_for",
    "register_family",
    "supported_model_types",
]
