"""Causal-LM encoding and scoring for decoder models (LLaMA, SmolLM2).

:func:`encode_causal` tokenises :class:`~aptune.train.data.LmExample` with any ``transformers``
tokenizer so that only response tokens carry labels; :func:`causal_lm_loss` is the training loss;
:func:`response_nll`, :func:`perplexity`, :func:`choice_logprobs` and :func:`choice_accuracy` score a
causal LM on examples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import LmExample, padded_width
from .evaluation import eval_mode

__all__ = [
    "IGNORE_INDEX",
    "causal_lm_loss",
    "causal_loss",
    "choice_accuracy",
    "choice_logprobs",
    "encode_causal",
    "perplexity",
    "perplexity_of",
    "response_nll",
]

IGNORE_INDEX = -100
"""Label of the tokens that carry no loss (BOS, prompt and padding), as in ``transformers``."""

_MAX_EXP = 700.0  # math.exp overflows a float beyond ~709.78


# ----------------------------------------------------------------------------------------------------
# Tokenisation and the training loss
# ----------------------------------------------------------------------------------------------------


def _token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


def _truncate(prompt: list[int], target: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Fit ``prompt + target`` into ``budget`` tokens: cut the prompt's start, then the target's end."""
    target = target[:budget]
    return prompt[max(len(prompt) - (budget - len(target)), 0) :], target


def encode_causal(
    tokenizer: Any, examples: Sequence[LmExample], max_length: int, *, add_eos: bool = True
) -> dict[str, torch.Tensor]:
    """Tokenise ``examples`` for a causal LM: ``input_ids``, ``attention_mask`` and ``labels`` (B, T).

    Each row is ``[BOS] + prompt + response + [EOS]``: prompt and response are tokenised separately
    with ``add_special_tokens=False`` (so the boundary is exact), ``tokenizer.bos_token_id`` is
    prepended when it is not None and ``tokenizer.eos_token_id`` appended when it is not None and
    ``add_eos``.  ``labels`` equal ``input_ids`` on the response and EOS and are :data:`IGNORE_INDEX`
    on BOS, prompt and padding.  Rows longer than ``max_length`` lose the start of the prompt first,
    then the end of the response (and its EOS).  Rows are right-padded to the longest one, rounded
    up to a multiple of `PAD_MULTIPLE` (at most ``max_length``), with ``pad_token_id``, else
    ``eos_token_id``, else 0.

    Raises:
        ValueError: if ``examples`` is empty or ``max_length`` leaves no room after BOS.
    """
    if not examples:
        raise ValueError("encode_causal needs at least one example")
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    if max_length <= len(bos):
        raise ValueError(f"max_length must leave room for a token after BOS, got {max_length}")
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []
    prompts = _token_ids(tokenizer, [e.prompt for e in examples])
    responses = _token_ids(tokenizer, [e.response for e in examples])
    rows = [_truncate(p, r + eos, max_length - len(bos)) for p, r in zip(prompts, responses, strict=True)]
    pad = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    width = padded_width(max(len(bos) + len(p) + len(t) for p, t in rows), max_length)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for i, (prompt, target) in enumerate(rows):
        ids = bos + prompt + target
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
        labels[i, len(ids) - len(target) : len(ids)] = input_ids[i, len(ids) - len(target) : len(ids)]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled tokens: logits (B, T, V), labels (B, T)."""
    return F.cross_entropy(
        logits[:, :-1].float().flatten(0, 1),  # (B*(T-1), V)
        labels[:, 1:].flatten(),  # (B*(T-1),)
        ignore_index=IGNORE_INDEX,
    )


# ----------------------------------------------------------------------------------------------------
# Perplexity
# ----------------------------------------------------------------------------------------------------


def _chunks(examples: Sequence[LmExample], batch_size: int) -> Iterator[Sequence[LmExample]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(examples), batch_size):
        yield examples[start : start + batch_size]


def _logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits (B, T, V) of an :func:`encode_causal` batch on the model's device."""
    device = next(model.parameters()).device
    return model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
    ).logits


def _token_nll(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Negative log-likelihood of each next token (B, T-1); 0 where the label is IGNORE_INDEX."""
    logits = _logits(model, batch)  # (B, T, V)
    targets = batch["labels"][:, 1:].to(logits.device)  # (B, T-1)
    nll = F.cross_entropy(
        logits[:, :-1].float().flatten(0, 1),  # (B*(T-1), V)
        targets.flatten(),  # (B*(T-1),)
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )  # (B*(T-1),)
    return nll.view_as(targets)  # (B, T-1)


@torch.no_grad()
def causal_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
    """Summed next-token NLL over the labelled tokens of ``batch`` and their number.

    ``batch`` is an :func:`encode_causal` output; the logit at position t scores the label at t + 1.
    The model runs in its current mode (:func:`perplexity` switches to eval mode).
    """
    nll = _token_nll(model, batch)  # (B, T-1)
    return nll.sum().item(), int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


@torch.no_grad()
def response_nll(
    model: nn.Module, tokenizer: Any, examples: Sequence[LmExample], max_length: int, batch_size: int
) -> tuple[float, int]:
    """Summed NLL of the responses (plus EOS) of ``examples`` and their token count, in the model's
    current mode; every response token counts once whatever the batching (no examples: 0, 0)."""
    nll, tokens = 0.0, 0
    for chunk in _chunks(examples, batch_size):
        chunk_nll, chunk_tokens = causal_loss(model, encode_causal(tokenizer, chunk, max_length))
        nll, tokens = nll + chunk_nll, tokens + chunk_tokens
    return nll, tokens


def perplexity_of(nll: float, tokens: int) -> dict[str, float]:
    """``{"loss": nll / tokens, "perplexity": exp(loss), "tokens": tokens}``.

    Raises:
        ValueError: if there is no token.
    """
    if tokens == 0:
        raise ValueError("perplexity found no response token to score; give examples with responses")
    loss = nll / tokens
    return {"loss": loss, "perplexity": math.exp(loss) if loss < _MAX_EXP else math.inf, "tokens": tokens}


def perplexity(
    model: nn.Module, tokenizer: Any, examples: Sequence[LmExample], max_length: int, batch_size: int
) -> dict[str, float]:
    """Token-weighted NLL of the responses (plus EOS) of ``examples``, in eval mode.

    Returns ``{"loss": mean NLL per response token, "perplexity": exp(loss), "tokens": count}``; every
    response token counts once whatever the batching.  The model's train/eval mode is restored.

    Raises:
        ValueError: if there is no response token to score or ``batch_size`` < 1.
    """
    with eval_mode(model):
        return perplexity_of(*response_nll(model, tokenizer, examples, max_length, batch_size))


# ----------------------------------------------------------------------------------------------------
# Label-word choices
# ----------------------------------------------------------------------------------------------------


def _choice_scores(
    model: nn.Module, tokenizer: Any, chunk: Sequence[LmExample], choices: Sequence[str], max_length: int
) -> torch.Tensor:
    """Summed log-probability (B, C) of each choice after each prompt of ``chunk``.

    When every choice is one token, one forward pass scores them all (same prefix, same numbers).
    """
    ids = _token_ids(tokenizer, list(choices))
    if all(len(i) == 1 for i in ids):
        return _single_token_scores(model, tokenizer, chunk, choices[0], [i[0] for i in ids], max_length)
    columns = []
    for choice in choices:
        batch = encode_causal(
            tokenizer, [LmExample(e.prompt, choice) for e in chunk], max_length, add_eos=False
        )
        columns.append(-_token_nll(model, batch).sum(dim=1))  # (B,)
    return torch.stack(columns, dim=1).cpu()  # (B, C)


def _single_token_scores(
    model: nn.Module,
    tokenizer: Any,
    chunk: Sequence[LmExample],
    first: str,
    token_ids: list[int],
    max_length: int,
) -> torch.Tensor:
    """Log-probabilities (B, C) of one-token choices from the logits just before the choice."""
    batch = encode_causal(tokenizer, [LmExample(e.prompt, first) for e in chunk], max_length, add_eos=False)
    logits = _logits(model, batch)  # (B, T, V)
    before = batch["attention_mask"].sum(1).to(logits.device) - 2  # (B,) position predicting the choice
    rows = logits[torch.arange(len(chunk), device=logits.device), before].float()  # (B, V)
    return rows.log_softmax(-1)[:, token_ids].cpu()  # (B, C)


@torch.no_grad()
def choice_logprobs(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[LmExample],
    choices: Sequence[str],
    max_length: int,
    batch_size: int,
) -> torch.Tensor:
    """Summed log-probability (N, C) of each choice as the continuation of each example's prompt.

    Choices are used verbatim as the response: to match :func:`classification_prompts` pass them with
    the leading space (``[" " + w for w in label_words]``).  Only the choice tokens are scored (no EOS),
    each ``examples`` response is ignored, and long prompts lose their start (:func:`encode_causal`).
    One forward pass per batch and choice, in eval mode; the model's mode is restored.

    Raises:
        ValueError: if ``examples`` or ``choices`` is empty or ``batch_size`` < 1.
    """
    if not examples or not choices:
        raise ValueError("choice_logprobs needs at least one example and one choice")
    with eval_mode(model):
        rows = [
            _choice_scores(model, tokenizer, chunk, choices, max_length)
            for chunk in _chunks(examples, batch_size)
        ]
    return torch.cat(rows)  # (N, C)


def choice_accuracy(scores: torch.Tensor, examples: Sequence[LmExample]) -> float:
    """Fraction of ``examples`` whose ``label`` is the highest-scoring choice (ties: the first one).

    Raises:
        ValueError: if ``scores`` is not (len(examples), C), ``examples`` is empty or a label is None.
    """
    if not examples or scores.dim() != 2 or scores.shape[0] != len(examples):
        raise ValueError(
            f"scores of shape {tuple(scores.shape)} do not match {len(examples)} examples; "
            "pass the (N, C) output of choice_logprobs for the same non-empty examples"
        )
    missing = next((i for i, e in enumerate(examples) if e.label is None), None)
    if missing is not None:
        raise ValueError(f"example {missing} has no label; choice_accuracy needs labelled examples")
    gold = torch.tensor([e.label for e in examples])  # (N,)
    return (scores.argmax(dim=1).cpu() == gold).float().mean().item()
