"""Classification posed as generation: a prompt made from each text, answered by its label word.

:func:`classification_prompts` builds causal-LM examples (the label word follows the prompt after a
space); :func:`text_to_label` builds seq2seq examples (the label word is the target).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..data import DataError, Example, LmExample
from .seq2seq import Seq2SeqExample

__all__ = ["classification_prompts", "text_to_label"]

_PLACEHOLDER = re.compile(r"\{(text|text_pair)\}")


def _check_label_words(label_words: Sequence[str]) -> None:
    if len(label_words) < 2 or any(not w.strip() for w in label_words):
        raise DataError(f"label words {list(label_words)!r}: give one non-empty word per class (at least 2)")
    if len(set(label_words)) != len(label_words):
        raise DataError(
            f"label words {list(label_words)!r} repeat a word; give each class its own word so the "
            "answers can be told apart"
        )


def _fill(template: str, example: Example, index: int, n_labels: int) -> str:
    if not 0 <= example.label < n_labels:
        raise DataError(
            f"example {index} has label {example.label}, outside 0..{n_labels - 1} of the label words; "
            "give one label word per class"
        )
    pair = example.text_pair is not None
    if ("{text_pair}" in template) != pair:
        raise DataError(
            f"example {index} {'is' if pair else 'is not'} a text pair but the template {template!r} "
            f"{'lacks' if pair else 'has'} a "
            "{text_pair} placeholder; use {text_pair} in the template exactly for pair tasks"
        )
    return _PLACEHOLDER.sub(lambda m: example.text if m[1] == "text" else str(example.text_pair), template)


def classification_prompts(
    examples: Sequence[Example], label_words: Sequence[str], template: str
) -> list[LmExample]:
    """Classification as generation: the prompt asks, the label word answers.

    ``template`` holds a ``{text}`` placeholder (and ``{text_pair}`` for sentence-pair tasks), as in
    ``"Review: {text}\\nSentiment:"``; other braces are kept literally.  The response is
    ``" " + label_words[example.label]`` (note the leading space) and ``label`` is ``example.label``.

    Raises:
        DataError: if the template lacks ``{text}`` (or ``{text_pair}`` does not match the examples), the
            label words are fewer than 2, empty or repeated, or a label does not index ``label_words``.
    """
    if "{text}" not in template:
        raise DataError(
            f"the template {template!r} has no {{text}} placeholder; add {{text}} where the example "
            "text goes, as in 'Review: {text}\\nSentiment:'"
        )
    _check_label_words(label_words)
    return [
        LmExample(_fill(template, e, i, len(label_words)), " " + label_words[e.label], e.label)
        for i, e in enumerate(examples)
    ]


def text_to_label(examples: Sequence[Example], words: Sequence[str], template: str) -> list[Seq2SeqExample]:
    """Classification examples as prompts whose target is the label word."""
    return [
        Seq2SeqExample(template.format(text=e.text, text_pair=e.text_pair or ""), words[e.label], e.label)
        for e in examples
    ]
