"""The records every reader returns, and the one error every data problem raises."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import AptuneError

__all__ = ["Corpus", "DataError", "Example", "LmExample", "TaskData", "TextPairs"]


class DataError(AptuneError):
    """Unusable task data or data settings; the message names the problem and how to fix it."""


@dataclass(frozen=True)
class Example:
    """One labelled example; `text_pair` is set for sentence-pair tasks."""

    text: str
    label: int
    text_pair: str | None = None


@dataclass(frozen=True)
class LmExample:
    """One causal-LM example: the model reads `prompt` and is trained (or scored) on `response`.

    The loss covers the response tokens only (plus EOS); `prompt` is "" for plain language modelling.
    `label` is the gold choice index when a classification task is posed as generation.
    """

    prompt: str
    response: str
    label: int | None = None


@dataclass
class TaskData:
    """A loaded classification task.

    ``splits`` maps ``"train"``, ``"validation"`` and ``"test"`` to examples whose integer labels index
    ``label_names``; ``notes`` records substitutions made while loading (a carved validation split, the
    validation split reused as test, truncation).
    """

    name: str
    splits: dict[str, list[Example]]
    label_names: list[str]
    is_pair: bool
    notes: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        """Number of classes (the length of ``label_names``)."""
        return len(self.label_names)


@dataclass
class TextPairs:
    """Source / target text pairs of a sequence-to-sequence task, split like :class:`TaskData`."""

    name: str
    splits: dict[str, list[tuple[str, str]]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Corpus:
    """Causal-LM examples (instructions or text blocks), split like :class:`TaskData`."""

    name: str
    splits: dict[str, list[LmExample]]
    notes: list[str] = field(default_factory=list)
