"""Source / target pairs of sequence-to-sequence tasks."""

import json

import pytest

from aptune.config import DataConfig
from aptune.train.data import DataError, load_pairs_file, load_text_pairs

from ...conftest import write_csv


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
