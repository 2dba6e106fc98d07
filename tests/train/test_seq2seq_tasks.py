import builtins
import json

import pytest
import torch
import transformers

from aptune.config import DataConfig
from aptune.train.data import DataError, Example, load_pairs_file, load_text_pairs
from aptune.train.lm_tasks import IGNORE_INDEX
from aptune.train.seq2seq_tasks import (
    Seq2SeqExample,
    encode_seq2seq,
    exact_match,
    generate_texts,
    rouge,
    seq2seq_loss,
    shift_right,
    target_loss,
    text_to_label,
)

from ..conftest import needs_minilm, write_csv

PAIRS = [
    Seq2SeqExample("sentiment: a gorgeous, witty and moving film.", "positive", 1),
    Seq2SeqExample("sentiment: dull.", "negative", 0),
    Seq2SeqExample("sentiment: the plot never holds together, and the jokes fall flat.", "negative", 0),
]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return transformers.AutoTokenizer.from_pretrained(minilm_dir)


def test_text_to_label_fills_the_template_and_targets_the_label_word():
    examples = [Example("great fun", 1), Example("a chore", 0, text_pair="really")]
    out = text_to_label(examples, ["negative", "positive"], "sentiment: {text} {text_pair}")
    assert out == [
        Seq2SeqExample("sentiment: great fun ", "positive", 1),
        Seq2SeqExample("sentiment: a chore really", "negative", 0),
    ]


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
    loss = target_loss(model, tokenizer, PAIRS, 32, 8, batch_size=2)
    assert 0 < loss < 2 * torch.log(torch.tensor(float(len(tokenizer))))  # near uniform for random weights


def test_load_text_pairs_from_csv_and_jsonl(tmp_path):
    rows = [(f"review number {i} is long", f"summary {i}") for i in range(30)]
    train = write_csv(tmp_path / "train.csv", rows, header=("article", "highlights"))
    test = tmp_path / "test.jsonl"
    test.write_text("\n".join(json.dumps({"article": "a b c", "highlights": "a"}) for _ in range(4)))
    cfg = DataConfig(
        task="", train_file=train, test_file=str(test), text_column="article", target_column="highlights"
    )
    pairs = load_text_pairs(cfg, seed=1)
    assert len(pairs.splits["validation"]) == 3 and len(pairs.splits["train"]) == 27
    assert pairs.splits["test"] == [("a b c", "a")] * 4
    assert any("no validation split" in n for n in pairs.notes)
    assert load_pairs_file(train, "article", "highlights")[0] == rows[0]
    limited = load_text_pairs(DataConfig(**{**cfg.to_dict(), "max_train_samples": 5}), seed=1)
    assert len(limited.splits["train"]) == 5 and any("truncated" in n for n in limited.notes)


def test_load_text_pairs_errors(tmp_path):
    with pytest.raises(DataError, match=r"reads source/target pairs from data\.train_file"):
        load_text_pairs(DataConfig(task="rotten_tomatoes"))
    train = write_csv(tmp_path / "train.csv", [("text", "")], header=("text", "target"))
    with pytest.raises(DataError, match="empty text in column 'target' at row 1"):
        load_text_pairs(DataConfig(task="", train_file=train))
    train = write_csv(tmp_path / "t.csv", [("text", "x")], header=("text", "summary"))
    with pytest.raises(DataError, match=r"column 'target' not found .* set data.target_column"):
        load_text_pairs(DataConfig(task="", train_file=train))
