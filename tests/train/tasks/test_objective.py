"""Every objective evaluates in eval mode, scores only its shard, and comes back from its metadata.

The tiny models get dropout 0.5 here (the shared fixtures have none), so a forward pass in train
mode gives other numbers and an evaluation that forgets `eval()` cannot pass.
"""

import pytest
import torch
import torch.nn.functional as F
import transformers

from aptune.train.data import Example, LmExample, encode
from aptune.train.tasks import CausalLm, Classification, Objective, Seq2Seq, Seq2SeqExample
from aptune.train.tasks import evaluation as evaluation_module

from ...conftest import needs_minilm

pytestmark = needs_minilm

REVIEWS = [
    ("a gorgeous, witty and moving film", 1),
    ("dull", 0),
    ("the plot never holds together, and the jokes fall flat", 0),
    ("fine fun for the whole family", 1),
    ("an utter mess from start to finish", 0),
]  # 5 examples: the two shards differ in size
WORDS = ["negative", "positive"]


def _classification() -> Classification:
    return Classification("reviews", {"eval": [Example(t, y) for t, y in REVIEWS]}, label_names=WORDS)


def _choices() -> CausalLm:
    prompts = [LmExample(f"Review: {t}\nSentiment:", " " + WORDS[y], y) for t, y in REVIEWS]
    return CausalLm("reviews", {"eval": prompts}, choices=[" " + w for w in WORDS], label_names=WORDS)


def _perplexity() -> CausalLm:
    return CausalLm("text", {"eval": [LmExample("", t) for t, _ in REVIEWS]}, metric="perplexity")


def _text_to_label() -> Seq2Seq:
    pairs = [Seq2SeqExample(f"sentiment: {t}", WORDS[y], y) for t, y in REVIEWS]
    return Seq2Seq("reviews", {"eval": pairs}, metric="exact_match", choices=WORDS, label_names=WORDS)


def _pairs() -> Seq2Seq:
    pairs = [Seq2SeqExample(f"open: {t}", " ".join(t.split()[:2])) for t, _ in REVIEWS]
    return Seq2Seq("openings", {"eval": pairs}, metric="rougeL", max_target_length=8)


OBJECTIVES = {
    "classification": (_classification, "bert"),
    "causal-lm-choices": (_choices, "llama"),
    "causal-lm-perplexity": (_perplexity, "llama"),
    "seq2seq-text-to-label": (_text_to_label, "t5"),
    "seq2seq-pairs": (_pairs, "t5"),
}


@pytest.fixture(scope="module")
def models(tiny_model_dir, tiny_llama_dir, tiny_t5_dir):
    """Each tiny model with dropout 0.5, and its tokenizer."""
    loaded = {
        "bert": transformers.AutoModelForSequenceClassification.from_pretrained(
            tiny_model_dir, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5
        ),
        "llama": transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attention_dropout=0.5),
        "t5": transformers.AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_dir, dropout_rate=0.5),
    }
    dirs = {"bert": tiny_model_dir, "llama": tiny_llama_dir, "t5": tiny_t5_dir}
    return {k: (m, transformers.AutoTokenizer.from_pretrained(dirs[k])) for k, m in loaded.items()}


def _setup(name: str, models) -> tuple[Objective, torch.nn.Module, object]:
    make, kind = OBJECTIVES[name]
    model, tokenizer = models[kind]
    objective = make()
    objective.bind(model)
    return objective, model, tokenizer


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_evaluate_runs_in_eval_mode_and_restores_the_mode(name, models):
    objective, model, tokenizer = _setup(name, models)
    torch.manual_seed(0)
    model.eval()
    reference = objective.evaluate(model, tokenizer, "eval", batch_size=2, max_length=32)
    modes = []
    handle = model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    model.train()
    try:
        torch.manual_seed(1)
        in_training = objective.evaluate(model, tokenizer, "eval", batch_size=2, max_length=32)
        assert model.training  # the mode is restored
    finally:
        handle.remove()
        model.eval()
    assert modes and not any(modes)  # every forward pass ran with dropout off
    assert in_training == pytest.approx(reference, rel=1e-6, abs=1e-6)


def _two_processes(objective: Objective, model, tokenizer, monkeypatch) -> tuple[dict, list[list]]:
    """Process 0's metrics of a two-process evaluation (the gather simulated in one process), and the
    examples each process scored."""
    scored: list[list] = []
    score = objective.score

    def recording_score(model, tokenizer, examples, batch_size, max_length):
        scored.append(list(examples))
        return score(model, tokenizer, examples, batch_size, max_length)

    monkeypatch.setattr(objective, "score", recording_score)
    process_1: list = []
    monkeypatch.setattr(evaluation_module, "gather_object", lambda parts: process_1.extend(parts) or parts)
    objective.evaluate(model, tokenizer, "eval", batch_size=2, max_length=32, shard=(1, 2))
    monkeypatch.setattr(evaluation_module, "gather_object", lambda parts: parts + process_1)
    metrics = objective.evaluate(model, tokenizer, "eval", batch_size=2, max_length=32, shard=(0, 2))
    return metrics, scored[::-1]  # process 0 first


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_each_process_scores_its_shard_and_the_gathered_parts_give_the_whole_split(name, models, monkeypatch):
    objective, model, tokenizer = _setup(name, models)
    whole = objective.evaluate(model, tokenizer, "eval", batch_size=2, max_length=32)
    combined, scored = _two_processes(objective, model, tokenizer, monkeypatch)
    examples = objective.splits["eval"]
    assert scored == [examples[0::2], examples[1::2]]  # disjoint shares of 3 and 2 examples
    assert combined == pytest.approx(whole, rel=1e-5, abs=1e-6)
    if "tokens" in whole:
        assert combined["tokens"] == whole["tokens"] > 0
    else:
        assert combined["n"] == whole["n"] == len(examples)


def test_one_process_gathers_nothing_and_scores_the_whole_split(models, monkeypatch):
    objective, model, tokenizer = _setup("classification", models)
    monkeypatch.setattr(evaluation_module, "gather_object", lambda parts: pytest.fail("gathered"))
    metrics = objective.evaluate(model, tokenizer, "eval", batch_size=2, max_length=32)
    batch = encode(tokenizer, objective.splits["eval"], max_length=32)
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model.eval()(**batch).logits  # (5, 2)
    assert metrics["n"] == 5
    assert metrics["accuracy"] == pytest.approx((logits.argmax(-1) == labels).float().mean().item())
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-4)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_from_metadata_rebuilds_the_objective_of_an_export(name, models):
    objective, _, _ = _setup(name, models)
    restored = Objective.from_metadata(objective.metadata())
    assert type(restored) is type(objective) and restored.splits == {}
    assert restored.metric == objective.metric and restored.metadata() == objective.metadata()


def test_from_metadata_without_an_objective_is_a_classifier_labelled_by_the_config():
    config = transformers.BertConfig(id2label={0: "bad", 1: "good"})
    restored = Objective.from_metadata({}, config)
    assert type(restored) is Classification and restored.label_names == ["bad", "good"]
    generative = Objective.from_metadata({"objective": "CausalLm", "choices": []}, config)
    assert type(generative) is CausalLm and generative.choices is None
    assert generative.metric == "perplexity" and not generative.higher_is_better
