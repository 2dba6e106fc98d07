"""`aptune predict` and `aptune.predict`: the label and probability of each text, from a classifier export."""

import pytest
import torch
import transformers

from aptune.api import load_model_dir, predict
from aptune.cli import main
from aptune.shrink import save_pruned

from .conftest import needs_minilm

pytestmark = needs_minilm

TEXTS = ["a witty, moving film", "dull and far too long", "fine"]


@pytest.fixture
def classifier_dir(tiny_model_dir, tmp_path) -> str:
    """The tiny BERT classifier exported with its labels and tokenizer."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    metadata = {"task": "reviews", "objective": "Classification", "label_names": ["negative", "positive"]}
    out = save_pruned(model, tmp_path / "model", {**metadata, "max_length": 16})
    transformers.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return str(out)


def _expected(model_dir: str, texts: list[str]) -> list[tuple[str, float]]:
    """The most probable label and its probability, computed directly from the model."""
    model, tokenizer, _ = load_model_dir(model_dir)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        probs = model.eval()(**enc).logits.softmax(-1)  # (N, 2)
    return [(["negative", "positive"][int(p.argmax())], float(p.max())) for p in probs]


def test_predict_gives_each_text_its_label_and_probability(classifier_dir):
    got = predict(classifier_dir, TEXTS, batch_size=2)
    expected = _expected(classifier_dir, TEXTS)
    assert [label for label, _ in got] == [label for label, _ in expected]
    assert [p for _, p in got] == pytest.approx([p for _, p in expected], abs=1e-5)


def test_cli_labels_texts_from_arguments_and_a_file(classifier_dir, tmp_path, capsys):
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text(f"{TEXTS[1]}\n\n  {TEXTS[2]}  \n", encoding="utf-8")
    assert main(["predict", classifier_dir, TEXTS[0], "--file", str(texts_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = _expected(classifier_dir, TEXTS)
    assert len(lines) == 3  # the blank line is skipped
    for line, text, (label, probability) in zip(lines, TEXTS, expected, strict=True):
        shown_label, shown_probability, shown_text = line.split("\t")
        assert (shown_label, shown_text) == (label, text)
        assert float(shown_probability) == pytest.approx(probability, abs=1e-4)
