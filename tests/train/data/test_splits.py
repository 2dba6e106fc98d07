"""The split / limit policy: carved validation, test = validation, sample limits."""

import pytest

from aptune.config import DataConfig
from aptune.train.data import DataError, Example, LmExample, load_corpus, load_task

from .helpers import csv_file, local, texts, write


def test_missing_validation_is_carved_deterministically_and_test_reuses_it(tmp_path):
    train = csv_file(tmp_path, "train.csv", [(f"t{i}", "ab"[i % 2]) for i in range(40)])
    data = load_task(local(train), seed=1)
    tr, val = texts(data.splits["train"]), texts(data.splits["validation"])
    assert len(val) == 4 and len(tr) == 36
    assert not set(tr) & set(val) and sorted(tr + val) == sorted(f"t{i}" for i in range(40))
    assert data.splits["test"] == data.splits["validation"]
    assert any("no validation split" in n for n in data.notes)
    assert any("validation split is used as test" in n for n in data.notes)
    assert load_task(local(train), seed=1).splits == data.splits
    assert texts(load_task(local(train), seed=2).splits["validation"]) != val


def test_missing_test_uses_validation(tmp_path):
    train = csv_file(tmp_path, "train.csv", [("a", "x"), ("b", "y")])
    val = csv_file(tmp_path, "val.csv", [("c", "y")])
    data = load_task(local(train, validation_file=val))
    assert data.splits["test"] == data.splits["validation"] == [Example("c", 1)]
    assert data.notes == ["no test split: the validation split is used as test"]


def test_max_samples_truncate_after_the_split(tmp_path):
    rows = [(f"t{i}", "ab"[i % 2]) for i in range(30)]
    train = csv_file(tmp_path, "train.csv", rows)
    evaluation = csv_file(tmp_path, "eval.csv", rows[:12])
    cfg = local(
        train, validation_file=evaluation, test_file=evaluation, max_train_samples=5, max_eval_samples=3
    )
    data = load_task(cfg, seed=4)
    assert [len(data.splits[s]) for s in ("train", "validation", "test")] == [5, 3, 3]
    assert set(texts(data.splits["train"])) <= {t for t, _ in rows}
    assert data.splits["validation"] == data.splits["test"]
    assert load_task(cfg, seed=4).splits == data.splits
    assert sum("truncated" in n for n in data.notes) == 3
    big = local(train, validation_file=evaluation, max_train_samples=100, max_eval_samples=100)
    assert len(load_task(big).splits["train"]) == 30


def test_a_corpus_from_one_file_carves_validation_and_test_then_limits(tmp_path):
    lines = "\n".join(f"line {i} of the play" for i in range(40))
    train = write(tmp_path, "play.txt", lines)
    cfg = DataConfig(task="", task_type="language-modeling", train_file=train, block_chars=20)
    corpus = load_corpus(cfg, seed=3)
    sizes = {k: len(v) for k, v in corpus.splits.items()}
    assert sizes == {"train": 36, "validation": 2, "test": 2}  # 5% each of 40 blocks
    every = [e.response for split in corpus.splits.values() for e in split]
    assert sorted(every) == sorted(f"line {i} of the play" for i in range(40))
    assert corpus.name == "play" and corpus.notes == [
        "validation and test splits carved from data.train_file (5% each)"
    ]
    assert load_corpus(cfg, seed=3).splits == corpus.splits != load_corpus(cfg, seed=4).splits
    limited = load_corpus(DataConfig(**{**cfg.to_dict(), "max_train_samples": 5}), seed=3)
    assert len(limited.splits["train"]) == 5 and set(limited.splits["train"]) <= set(corpus.splits["train"])
    assert limited.notes[-1] == "train split truncated from 36 to 5 examples (data.max_train_samples)"


def test_a_corpus_with_only_a_test_file_validates_on_it(tmp_path):
    train = write(tmp_path, "train.txt", "a\nb\nc")
    test = write(tmp_path, "test.txt", "d")
    cfg = DataConfig(task="", task_type="language-modeling", train_file=train, test_file=test, block_chars=16)
    corpus = load_corpus(cfg)
    assert corpus.splits["validation"] == corpus.splits["test"] == [LmExample("", "d")]
    assert corpus.notes == ["no data.validation_file: the test split is used for validation"]
    with pytest.raises(DataError, match="need at least 3 examples to carve validation and test splits"):
        short = write(tmp_path, "short.txt", "a")
        load_corpus(DataConfig(task="", task_type="language-modeling", train_file=short, block_chars=16))
