"""What a run optimises and reports: the :class:`Objective` every task implements.

An objective owns a task's splits and knows which model class to load, how to turn examples into a
batch, the task loss, how to score a share of a split and combine the shares into metrics, the
inputs used to time inference and the metadata stored with the exported model.
:meth:`Objective.from_metadata` rebuilds the objective of an export from that metadata.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..data import EvalSource
from .evaluation import Shard, eval_mode, gather, shard_of

__all__ = ["Objective"]


@dataclass
class Objective(ABC):
    """A task's data and how a model is trained and scored on it."""

    name: str
    splits: dict[str, list]
    notes: list[str] = field(default_factory=list)
    metric: str = "accuracy"
    """The headline metric shown in progress bars and reports."""

    kinds: ClassVar[dict[str, type[Objective]]] = {}
    """Every objective class by name, as exports record it in ``metadata["objective"]``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Objective.kinds[cls.__name__] = cls

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], config: Any = None) -> Objective:
        """The objective an exported model was trained with, with no splits, ready to evaluate it.

        ``metadata`` is what :meth:`metadata` recorded (a classifier when it names no objective);
        a model whose export records no label names takes them from its ``config.id2label``.
        """
        kind = cls.kinds.get(metadata.get("objective", ""), cls.kinds["Classification"])
        labels = metadata.get("label_names") or _config_labels(config)
        return kind.restore(metadata, [str(n) for n in labels])

    @classmethod
    @abstractmethod
    def restore(cls, metadata: dict[str, Any], label_names: list[str]) -> Objective:
        """This objective from an export's ``metadata`` (see :meth:`from_metadata`)."""

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger headline metric is better (perplexity is the one where it is not)."""
        return self.metric != "perplexity"

    @property
    @abstractmethod
    def auto_class(self) -> type:
        """The transformers Auto class that loads a model for this objective."""

    def model_kwargs(self) -> dict[str, Any]:
        """Extra `from_pretrained` arguments (labels of a classifier)."""
        return {}

    def bind(self, model: nn.Module) -> None:
        """Read what batches need from the loaded model (nothing by default)."""
        return None

    @abstractmethod
    def encode(self, tokenizer: Any, examples: Sequence, max_length: int) -> dict[str, torch.Tensor]:
        """Model inputs plus `labels` for a batch of examples."""

    @abstractmethod
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task loss of one batch."""

    @abstractmethod
    def read_eval(self, source: EvalSource) -> list:
        """The examples this objective scores, read from an evaluation source."""

    def evaluate(
        self,
        model: nn.Module,
        tokenizer: Any,
        split: str,
        batch_size: int,
        max_length: int,
        shard: Shard = (0, 1),
    ) -> dict[str, float]:
        """Metrics of `model` on a split, in eval mode (the model's train / eval mode is restored).

        With `shard = (process, processes)` each process scores every `processes`-th example and the
        parts are gathered, so every process returns the metrics of the whole split.
        """
        examples = shard_of(self.splits[split], shard)
        with eval_mode(model), torch.no_grad():
            part = self.score(model, tokenizer, examples, batch_size, max_length)
        return self.combine(gather(part, shard))

    @abstractmethod
    def score(
        self, model: nn.Module, tokenizer: Any, examples: list, batch_size: int, max_length: int
    ) -> dict[str, Any]:
        """The part of the metrics of `examples` (possibly none) that :meth:`combine` sums up."""

    @abstractmethod
    def combine(self, parts: list[dict[str, Any]]) -> dict[str, float]:
        """The metrics of a split from the :meth:`score` parts of all its shards."""

    def timing_examples(self, count: int) -> list:
        """`count` test examples (cycled; the train split when there is no test split)."""
        examples = self.splits.get("test") or self.splits["train"]
        return [examples[i % len(examples)] for i in range(count)]

    def timing_inputs(self, tokenizer: Any, count: int, max_length: int) -> dict[str, torch.Tensor]:
        """A batch of `count` real test inputs (without labels) for timing inference."""
        inputs = self.encode(tokenizer, self.timing_examples(count), max_length)
        inputs.pop("labels")
        return inputs

    def metadata(self) -> dict[str, Any]:
        """What the exported model records about its task."""
        return {"task": self.name, "objective": type(self).__name__}


def _config_labels(config: Any) -> list[str]:
    """The class names of a model config (``id2label``), or none without a config."""
    if config is None:
        return []
    return [config.id2label[i] for i in range(config.num_labels)]
