"""Hugging Face datasets through a fake `datasets` module (no network)."""

import sys
import types
from typing import Any

import pytest

from aptune.config import DataConfig
from aptune.train.data import DataError, Example, load_task


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
