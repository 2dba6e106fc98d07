"""`encode` and `batches`."""

import random

import pytest
import torch

from aptune.train.data import PAD_MULTIPLE, Example, batches, encode, pad_to_bucket, padded_width

from ...conftest import needs_minilm


@pytest.fixture(scope="module")
def tokenizer():
    import transformers

    from aptune.assets import builtin_model_path

    return transformers.AutoTokenizer.from_pretrained(str(builtin_model_path("minilm")))


@needs_minilm
def test_encode_single_texts_pads_to_a_bucket_and_truncates(tokenizer):
    examples = [Example("a fine film", 1), Example("bad", 0), Example("word " * 50, 1)]
    batch = encode(tokenizer, examples, max_length=12)
    assert set(batch) >= {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, 12)
    assert batch["labels"].tolist() == [1, 0, 1] and batch["labels"].dtype == torch.long
    assert batch["attention_mask"].sum(1).tolist() == [5, 3, 12]
    short = encode(tokenizer, examples[:2], max_length=12)
    assert short["input_ids"].shape == (2, 12)  # the longest row (5) rounds up to 16, capped at 12
    wide = encode(tokenizer, examples[:2], max_length=40)
    assert wide["input_ids"].shape == (2, PAD_MULTIPLE)
    assert wide["attention_mask"].sum(1).tolist() == [5, 3]
    assert (wide["input_ids"][:, 5:] == tokenizer.pad_token_id).all()


def test_padded_width_rounds_up_within_max_length():
    assert [padded_width(n, 64) for n in (1, 16, 17, 33, 64)] == [16, 16, 32, 48, 64]
    assert padded_width(17, 20) == 20 and padded_width(20, 20) == 20
    assert padded_width(30, 24) == 30  # never shorter than the rows


def test_pad_to_bucket_pads_ids_with_pad_id_and_masks_with_zero_on_either_side():
    batch = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    right = pad_to_bucket(batch, 64, pad_id=9)
    assert right["input_ids"].tolist() == [[5, 6, 7] + [9] * 13]
    assert right["attention_mask"].tolist() == [[1, 1, 1] + [0] * 13]
    left = pad_to_bucket(batch, 8, pad_id=9, left=True)
    assert left["input_ids"].tolist() == [[9] * 5 + [5, 6, 7]]
    assert left["attention_mask"].tolist() == [[0] * 5 + [1, 1, 1]]


@needs_minilm
def test_encode_pairs(tokenizer):
    examples = [Example("a man sleeps", 0, "someone rests"), Example("it rains", 1, "dry")]
    batch = encode(tokenizer, examples, max_length=32)
    sep = tokenizer.sep_token_id
    assert [(row == sep).sum().item() for row in batch["input_ids"]] == [2, 2]
    assert batch["token_type_ids"][0].tolist().count(1) == 3  # "someone rests" + [SEP]
    assert tokenizer.decode(batch["input_ids"][1], skip_special_tokens=True) == "it rains dry"


@needs_minilm
def test_encode_rejects_empty_and_mixed(tokenizer):
    with pytest.raises(ValueError, match="at least one example"):
        encode(tokenizer, [], max_length=8)
    with pytest.raises(ValueError, match="mix of single texts and text pairs"):
        encode(tokenizer, [Example("a", 0, "b"), Example("c", 1)], max_length=8)


def numbered(n: int) -> list[Example]:
    return [Example(f"t{i}", i % 2) for i in range(n)]


def test_batches_in_order_keep_last_partial_batch():
    examples = numbered(10)
    chunks = list(batches(examples, 4, shuffle=False, seed=0, epoch=0))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert [e for c in chunks for e in c] == examples


def test_batches_shuffle_deterministic_per_seed_and_epoch():
    examples = numbered(23)

    def order(seed: int, epoch: int) -> list[Example]:
        return [e for c in batches(examples, 5, shuffle=True, seed=seed, epoch=epoch) for e in c]

    assert order(3, 1) == order(3, 1)
    assert sorted(order(3, 1), key=examples.index) == examples
    assert order(3, 1) != order(3, 2) and order(3, 1) != order(4, 1) and order(3, 1) != examples
    expected = list(examples)
    random.Random(3 * 1000003 + 1).shuffle(expected)
    assert order(3, 1) == expected
    assert [len(c) for c in batches(examples, 5, shuffle=True, seed=3, epoch=1)] == [5, 5, 5, 5, 3]


def test_batches_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(batches(numbered(3), 0, shuffle=False, seed=0, epoch=0))
