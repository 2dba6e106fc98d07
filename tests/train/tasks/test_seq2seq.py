"""Seq2seq encoding, loss, generation and scores."""

import builtins

import pytest
import torch
import transformers

from aptune.train.data import DataError
from aptune.train.tasks import IGNORE_INDEX
from aptune.train.tasks.seq2seq import (
    Seq2SeqExample,
    encode_seq2seq,
    exact_match,
    generate_texts,
    rouge,
    seq2seq_loss,
    shift_right,
    target_nll,
)

from ...conftest import needs_minilm

PAIRS = [
    Seq2SeqExample("sentiment: a gorgeous, witty and moving film.", "positive", 1),
    Seq2SeqExample("sentiment: dull.", "negative", 0),
    Seq2SeqExample("sentiment: the plot never holds together, and the jokes fall flat.", "negative", 0),
]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return transformers.AutoTokenizer.from_pretrained(minilm_dir)


def test_shift_right_puts_the_start_token_first():
    ids = torch.tensor([[5, 6, 7], [8, 9, 0]])
    assert torch.equal(shift_right(ids, 0), torch.tensor([[0, 5, 6], [0, 8, 9]]))


@needs_minilm
def test_encode_seq2seq_shifts_targets_and_ignores_padding(tokenizer):
    batch = encode_seq2seq(tokenizer, PAIRS, max_length=12, max_target_length=6, start_id=0)
    assert batch["input_ids"].shape[0] == 3 and batch["input_ids"].shape[1] <= 12
    labels, dec = batch["labels"], batch["decoder_input_ids"]  # (3, T)
    assert labels.shape == dec.shape == batch["decoder_attention_mask"].shape
    target = tokenizer(text_target="positive")["input_ids"]  # [CLS] positive [SEP]
    assert labels[0, : len(target)].tolist() == target
    assert dec[0, 0] == 0 and dec[0, 1 : len(target)].tolist() == target[:-1]
    assert (labels == IGNORE_INDEX).sum() == 0  # one-word targets: equal lengths, no padding
    long = [Seq2SeqExample("x", "one two three four five six seven"), PAIRS[1]]
    batch = encode_seq2seq(tokenizer, long, max_length=12, max_target_length=6, start_id=0)
    assert batch["labels"].shape[1] == 6  # truncated
    padded = batch["labels"][1]
    assert (padded == IGNORE_INDEX).sum() == 6 - len(tokenizer(text_target="negative")["input_ids"])
    assert batch["decoder_attention_mask"][1].sum() == len(tokenizer(text_target="negative")["input_ids"])


def test_seq2seq_loss_ignores_padded_targets():
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[1, 2, IGNORE_INDEX], [4, IGNORE_INDEX, IGNORE_INDEX]])
    expected = torch.nn.functional.cross_entropy(logits[[0, 0, 1], [0, 1, 0]], torch.tensor([1, 2, 4]))
    torch.testing.assert_close(seq2seq_loss(logits, labels), expected)


def test_exact_match_and_rouge():
    assert exact_match(["positive", " negative ", "neutral"], ["positive", "negative", "negative"]) == 2 / 3
    scores = rouge(["the cat sat on the mat", "hello"], ["the cat is on the mat", "hello"])
    # rouge1 F1: 5/6 and 1; rouge2: 3/5 and 0 (no bigram in one word)
    assert scores["rouge1"] == pytest.approx(100 * (5 / 6 + 1) / 2)
    assert scores["rouge2"] == pytest.approx(100 * (3 / 5 + 0) / 2)
    assert set(scores) == {"rouge1", "rouge2", "rougeL"}


def test_rouge_without_the_package_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_rouge(name, *args, **kwargs):
        if name.startswith("rouge_score"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rouge)
    monkeypatch.delitem(__import__("sys").modules, "rouge_score.rouge_scorer", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "rouge_score", raising=False)
    with pytest.raises(DataError, match=r"pip install 'aptune\[seq2seq\]'"):
        rouge(["a"], ["a"])


@needs_minilm
def test_generation_and_target_loss_of_a_tiny_t5(tiny_t5_dir, tokenizer):
    model = transformers.T5ForConditionalGeneration.from_pretrained(tiny_t5_dir).eval()
    texts = generate_texts(model, tokenizer, [p.source for p in PAIRS], 32, max_new_tokens=3, batch_size=2)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    nll, tokens = target_nll(model, tokenizer, PAIRS, 32, 8, batch_size=2)
    loss = nll / tokens
    assert 0 < loss < 2 * torch.log(torch.tensor(float(len(tokenizer))))  # near uniform for random weights
    batch = encode_seq2seq(tokenizer, PAIRS, 32, 8, start_id=model.config.decoder_start_token_id)
    assert tokens == int((batch["labels"] != IGNORE_INDEX).sum())
    with torch.no_grad():
        assert loss == pytest.approx(model(**batch).loss.item(), rel=1e-5)  # one batch: the HF mean
