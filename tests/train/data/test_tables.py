"""Local files read into tables: CSV, TSV, JSON, JSON Lines; unreadable and malformed files."""

import json

import pytest

from aptune.config import DataConfig
from aptune.train.data import DataError, Example, load_task

from .helpers import csv_file, local, texts, write


def test_tsv_reads_quotes_literally(tmp_path):
    train = write(tmp_path, "train.tsv", 'text\tlabel\n"quoted" start, 1\t1\nplain\t0\nsay "hi\t2\n')
    data = load_task(local(train, validation_file=train, test_file=train))
    assert texts(data.splits["train"]) == ['"quoted" start, 1', "plain", 'say "hi']
    assert data.label_names == ["0", "1", "2"]
    assert [e.label for e in data.splits["test"]] == [1, 0, 2]


def test_jsonl_integer_labels_four_classes_and_blank_lines(tmp_path):
    lines = [{"text": f"t{i}", "label": i % 4, "extra": True} for i in range(8)]
    body = "\n".join(json.dumps(x) for x in lines[:4]) + "\n\n" + "\n".join(json.dumps(x) for x in lines[4:])
    train = write(tmp_path, "train.jsonl", body + "\n")
    data = load_task(local(train, validation_file=train, test_file=train))
    assert data.label_names == ["0", "1", "2", "3"]
    assert [e.label for e in data.splits["train"]] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert texts(data.splits["validation"]) == [f"t{i}" for i in range(8)]


def test_json_list_and_json_holding_json_lines(tmp_path):
    records = [
        {"text": "great", "label": "pos"},
        {"label": "neg", "text": "poor"},
        {"text": "x", "label": "pos"},
    ]
    as_list = write(tmp_path, "train.json", json.dumps(records, indent=2))
    as_lines = write(tmp_path, "lines.json", "\n".join(map(json.dumps, records)))
    for train in (as_list, as_lines):
        data = load_task(local(train, validation_file=as_list, test_file=as_lines))
        assert data.label_names == ["neg", "pos"]
        assert data.splits["train"] == [Example("great", 1), Example("poor", 0), Example("x", 1)]
        assert data.splits["test"] == data.splits["train"]


def test_quoted_csv_fields_with_commas_quotes_and_newlines(tmp_path):
    body = 'label,text\npos,"one, two"\nneg,"line 1\nline 2"\npos,"she said ""hi"""\r\nneg,plain\r\n'
    train = write(tmp_path, "train.csv", body)
    data = load_task(local(train, validation_file=train, test_file=train))
    assert data.splits["train"] == [
        Example("one, two", 1),
        Example("line 1\nline 2", 0),
        Example('she said "hi"', 1),
        Example("plain", 0),
    ]


@pytest.mark.parametrize("name", ["train.csv", "train.tsv", "train.jsonl"])
def test_utf8_bom_is_ignored(tmp_path, name):
    body = {
        "train.csv": "text,label\ncafé,a\nthé,b\n",
        "train.tsv": "text\tlabel\ncafé\ta\nthé\tb\n",
        "train.jsonl": '{"text": "café", "label": "a"}\n{"text": "thé", "label": "b"}\n',
    }[name]
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    data = load_task(local(str(path), validation_file=str(path), test_file=str(path)))
    assert data.splits["train"] == [Example("café", 0), Example("thé", 1)]


@pytest.mark.parametrize("key", ["train_file", "validation_file", "test_file"])
def test_file_not_found_names_the_config_key(tmp_path, key):
    train = csv_file(tmp_path, "train.csv", [("a", "x"), ("b", "y")])
    files = {"train_file": train, key: str(tmp_path / "nope.csv")}
    with pytest.raises(
        DataError, match=rf"data\.{key}: file not found: '.*nope\.csv'; fix the path in data\.{key}"
    ):
        load_task(DataConfig(task="", **files))


def test_relative_missing_path_mentions_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"'data/train\.csv'.*relative paths start at"):
        load_task(local("data/train.csv"))


def test_unreadable_file(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match=r"data\.train_file: cannot read '.*dir\.csv' .*readable file"):
        load_task(local(str(tmp_path / "dir.csv")))


def test_undecodable_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("text,label\ncafé,a\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"cannot decode '.*train\.csv' as UTF-8 .*save the file with UTF-8"):
        load_task(local(str(path)))


@pytest.mark.parametrize("name", ["train.txt", "train.xlsx", "train"])
def test_unknown_extension(tmp_path, name):
    train = write(tmp_path, name, "text,label\na,x\n")
    with pytest.raises(DataError, match=r"unsupported file extension .*; use \.csv, \.tsv, \.jsonl, \.json"):
        load_task(local(train))


@pytest.mark.parametrize(
    ("name", "body", "problem"),
    [
        ("train.csv", "", "is empty; it needs a header row"),
        ("train.jsonl", " \n\n", "is empty; it needs one JSON object per line"),
        ("train.csv", "text,label\n", "has no examples; it needs a header row"),
        ("train.csv", "text,label\n\n\n", "has no examples"),
        ("train.json", "[]", "has no examples; it needs a JSON list of objects"),
    ],
)
def test_empty_file_or_no_rows(tmp_path, name, body, problem):
    with pytest.raises(DataError, match=rf"data\.train_file: '.*{name}' {problem}"):
        load_task(local(write(tmp_path, name, body)))


def test_malformed_json_line(tmp_path):
    train = write(tmp_path, "train.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": }\n')
    with pytest.raises(DataError, match=r"malformed JSON on line 3 of '.*train\.jsonl' .*JSON Lines"):
        load_task(local(train))


def test_malformed_json_list(tmp_path):
    train = write(tmp_path, "train.json", '[\n  {"text": "a", "label": 1},\n]')
    with pytest.raises(
        DataError, match=r"malformed JSON in '.*train\.json' at line 3, column 1 .*fix the JSON"
    ):
        load_task(local(train))


def test_json_record_that_is_not_an_object(tmp_path):
    train = write(tmp_path, "train.jsonl", '{"text": "a", "label": 1}\n["b", 2]\n')
    with pytest.raises(DataError, match=r"record 2 of '.*train\.jsonl' is a list, not a JSON object"):
        load_task(local(train))
