"""Columns, texts and labels of labelled tables, and the task names `load_task` accepts."""

import pytest

from aptune.config import DataConfig
from aptune.train.data import DataError, Example, TaskData, load_task

from .helpers import csv_file, local, write


def test_csv_string_labels_sorted_and_shared_by_eval_splits(tmp_path):
    train = csv_file(tmp_path, "train.csv", [("good", "pos"), ("bad", "neg"), ("meh", "neutral")])
    val = csv_file(tmp_path, "val.csv", [("fine", "pos")])
    test = csv_file(tmp_path, "test.csv", [("awful", "neg"), ("ok", "neutral")])
    data = load_task(local(train, validation_file=val, test_file=test))
    assert isinstance(data, TaskData)
    assert data.label_names == ["neg", "neutral", "pos"]
    assert data.num_labels == 3 and not data.is_pair and data.notes == []
    assert data.splits == {
        "train": [Example("good", 2), Example("bad", 0), Example("meh", 1)],
        "validation": [Example("fine", 2)],
        "test": [Example("awful", 0), Example("ok", 1)],
    }


def test_csv_integer_labels_sorted_numerically_and_made_contiguous(tmp_path):
    rows = [("a", "10"), ("b", "2"), ("c", "7"), ("d", "2"), ("e", "-1")]
    train = csv_file(tmp_path, "train.csv", rows)
    val = csv_file(tmp_path, "val.csv", [("f", "02"), ("g", "10")])
    data = load_task(local(train, validation_file=val, test_file=val))
    assert data.label_names == ["-1", "2", "7", "10"]
    assert [e.label for e in data.splits["train"]] == [3, 1, 2, 1, 0]
    assert [e.label for e in data.splits["validation"]] == [1, 3]


def test_mixed_labels_are_strings(tmp_path):
    train = csv_file(tmp_path, "train.csv", [("a", "1"), ("b", "x"), ("c", "10"), ("d", "2")])
    data = load_task(local(train, validation_file=train, test_file=train))
    assert data.label_names == ["1", "10", "2", "x"]


def test_sentence_pairs(tmp_path):
    rows = "A man sleeps.,Someone rests.,entailment\nIt rains.,It is dry.,contradiction\n"
    train = write(tmp_path, "train.csv", "premise,hypothesis,gold\n" + rows)
    cfg = local(train, text_column="premise", text_pair_column="hypothesis", label_column="gold")
    data = load_task(cfg, seed=3)
    assert data.is_pair
    assert data.label_names == ["contradiction", "entailment"]
    every = data.splits["train"] + data.splits["validation"]
    assert sorted(every, key=lambda e: e.text) == [
        Example("A man sleeps.", 1, "Someone rests."),
        Example("It rains.", 0, "It is dry."),
    ]


@pytest.mark.parametrize(
    ("overrides", "key", "missing"),
    [
        ({"text_column": "sentence"}, "data.text_column", "sentence"),
        ({"text_pair_column": "hypothesis"}, "data.text_pair_column", "hypothesis"),
        ({"label_column": "gold"}, "data.label_column", "gold"),
    ],
)
def test_missing_column_lists_columns_and_key(tmp_path, overrides, key, missing):
    train = csv_file(tmp_path, "train.csv", [("a", "x"), ("b", "y")])
    expected = (
        rf"column '{missing}' not found in .*train\.csv \(columns: text, label\); set {key} to one of them"
    )
    with pytest.raises(DataError, match=expected):
        load_task(local(train, **overrides))


def test_missing_column_in_validation_file(tmp_path):
    train = csv_file(tmp_path, "train.csv", [("a", "x"), ("b", "y")])
    val = csv_file(tmp_path, "val.csv", [("a", "x")], header="sentence,label")
    with pytest.raises(
        DataError, match=r"column 'text' not found in .*val\.csv \(columns: sentence, label\)"
    ):
        load_task(local(train, validation_file=val))


@pytest.mark.parametrize(
    ("name", "body", "row"),
    [
        ("train.csv", "text,label\na,x\n,y\n", 2),
        ("train.csv", 'text,label\na,x\nb,y\n"  ",x\n', 3),
        ("train.jsonl", '{"text": "a", "label": 1}\n{"text": null, "label": 2}\n', 2),
        ("train.json", '[{"text": "a", "label": 1}, {"label": 2}]', 2),
    ],
)
def test_empty_text_names_the_row(tmp_path, name, body, row):
    with pytest.raises(
        DataError, match=rf"empty text in column 'text' at row {row} of .*{name}; fill in the text"
    ):
        load_task(local(write(tmp_path, name, body)))


def test_empty_pair_text_names_the_row(tmp_path):
    train = write(tmp_path, "train.csv", "a,b,label\nx,y,1\nz,,0\n")
    with pytest.raises(DataError, match=r"empty text in column 'b' at row 2"):
        load_task(local(train, text_column="a", text_pair_column="b"))


@pytest.mark.parametrize(
    ("name", "body", "row"),
    [
        ("train.csv", "text,label\na,x\nb,\nc,y\n", 2),
        ("train.csv", "text,label\na,x\nb,y\nc\n", 3),
        ("train.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": null}\n', 2),
        ("train.jsonl", '{"text": "a"}\n{"text": "b", "label": 2}\n', 1),
    ],
)
def test_missing_label_names_the_row(tmp_path, name, body, row):
    with pytest.raises(
        DataError, match=rf"missing label in column 'label' at row {row} of .*{name}; give every"
    ):
        load_task(local(write(tmp_path, name, body)))


def test_single_class(tmp_path):
    train = csv_file(tmp_path, "train.csv", [("a", "pos"), ("b", "pos")])
    with pytest.raises(
        DataError, match=r"fewer than 2 classes .*\(found: 'pos'\); classification needs at least 2"
    ):
        load_task(local(train))


@pytest.mark.parametrize("key", ["validation_file", "test_file"])
def test_unseen_labels_are_listed(tmp_path, key):
    train = csv_file(tmp_path, "train.csv", [("a", "x"), ("b", "y")])
    other = csv_file(tmp_path, "other.csv", [("c", y) for y in ["x", "p", "q", "p", "r", "s", "t", "u"]])
    expected = (
        r"labels in .*other\.csv never seen in training: 'p', 'q', 'r', 's', 't' \(and 1 more\); "
        r"the training labels are x, y"
    )
    with pytest.raises(DataError, match=expected):
        load_task(local(train, **{key: other}))


def test_unseen_integer_label(tmp_path):
    train = csv_file(tmp_path, "train.csv", [("a", "0"), ("b", "1")])
    val = csv_file(tmp_path, "val.csv", [("c", "2"), ("d", "one")])
    with pytest.raises(DataError, match=r"never seen in training: '2', 'one'; the training labels are 0, 1"):
        load_task(local(train, validation_file=val))


@pytest.mark.parametrize("task", ["rotten tomatoes", "glue//sst2", "a/b/c/d", "-imdb", "sst2?"])
def test_implausible_task_name(task):
    with pytest.raises(
        DataError, match=r"is neither a built-in task \('rotten_tomatoes'\) nor a Hugging Face"
    ):
        load_task(DataConfig(task=task))


def test_no_task_and_no_train_file():
    cfg = DataConfig()
    cfg.task = ""
    with pytest.raises(DataError, match=r"data\.task '' is neither .*set data\.train_file"):
        load_task(cfg)


def test_a_local_task_is_named_by_its_file_not_by_where_it_lies(tmp_path):
    train = csv_file(tmp_path, "reviews.csv", [("good", "pos"), ("bad", "neg")])
    data = load_task(local(train, validation_file=train, test_file=train))
    assert data.name == "reviews.csv" and str(tmp_path) not in data.name  # exports carry the name
