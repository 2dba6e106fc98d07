"""Classification posed as generation: causal-LM prompts and seq2seq text-to-label examples."""

import pytest

from aptune.train.data import DataError, Example, LmExample
from aptune.train.tasks import Seq2SeqExample, classification_prompts, text_to_label


def test_classification_prompts():
    examples = [Example("great {fun}", 1), Example("bad", 0)]
    prompts = classification_prompts(examples, ["negative", "positive"], "Review: {text}\nSentiment:")
    assert prompts == [
        LmExample("Review: great {fun}\nSentiment:", " positive", 1),
        LmExample("Review: bad\nSentiment:", " negative", 0),
    ]


def test_classification_prompts_pairs():
    prompts = classification_prompts([Example("A", 0, "B")], ["yes", "no"], "{text} ? {text_pair} =")
    assert prompts == [LmExample("A ? B =", " yes", 0)]


@pytest.mark.parametrize(
    ("examples", "words", "template", "expected"),
    [
        ([Example("a", 0)], ["no", "yes"], "Review:", "no {text} placeholder"),
        ([Example("a", 0), Example("b", 2)], ["no", "yes"], "{text}", "example 1 has label 2"),
        ([Example("a", -1)], ["no", "yes"], "{text}", "example 0 has label -1"),
        ([Example("a", 0)], ["yes", "yes"], "{text}", "repeat"),
        ([Example("a", 0)], ["yes", " "], "{text}", "non-empty"),
        ([Example("a", 0, "b")], ["no", "yes"], "{text}", "is a text pair"),
        ([Example("a", 0)], ["no", "yes"], "{text} {text_pair}", "is not a text pair"),
    ],
)
def test_classification_prompt_errors(examples, words, template, expected):
    with pytest.raises(DataError, match=expected):
        classification_prompts(examples, words, template)


def test_text_to_label_fills_the_template_and_targets_the_label_word():
    examples = [Example("great fun", 1), Example("a chore", 0, text_pair="really")]
    out = text_to_label(examples, ["negative", "positive"], "sentiment: {text} {text_pair}")
    assert out == [
        Seq2SeqExample("sentiment: great fun ", "positive", 1),
        Seq2SeqExample("sentiment: a chore really", "negative", 0),
    ]
