"""Objectives of generative models: causal LMs (:class:`CausalLm`) and encoder-decoders
(:class:`Seq2Seq`), each either classification posed as generation (``choices``: the label words) or
open text (instructions or plain text; source / target pairs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers
from torch import nn

from ..data import DataError, EvalSource, LmExample, read_labelled, read_lm_examples, read_pairs
from ..metrics import classification_metrics
from .causal_lm import causal_lm_loss, choice_logprobs, encode_causal, perplexity_of, response_nll
from .evaluation import classification_part, combine_classification
from .objective import Objective
from .prompts import classification_prompts, text_to_label
from .seq2seq import (
    Seq2SeqExample,
    encode_seq2seq,
    exact_match,
    generate_texts,
    rouge,
    seq2seq_loss,
    target_nll,
)

__all__ = ["CausalLm", "Seq2Seq"]


def _generation_metadata(objective: CausalLm | Seq2Seq) -> dict[str, Any]:
    """What a generative objective's export records so `aptune eval` can score it again."""
    return {
        "choices": objective.choices,
        "label_names": objective.label_names,
        "prompt_template": objective.prompt_template,
    }


@dataclass
class CausalLm(Objective):
    """A causal-LM objective: loss on responses; label-word accuracy (`choices`) or perplexity."""

    choices: list[str] | None = None
    """Label words with their leading space, in label order (classification as generation)."""
    label_names: list[str] = field(default_factory=list)
    prompt_template: str | None = None
    """The classification prompt (classification as generation)."""

    @classmethod
    def restore(cls, metadata: dict[str, Any], label_names: list[str]) -> CausalLm:
        choices = metadata.get("choices") or None
        return cls(
            metadata.get("task", "eval"),
            {},
            metric="accuracy" if choices else "perplexity",
            choices=choices,
            label_names=label_names,
            prompt_template=metadata.get("prompt_template"),
        )

    @property
    def auto_class(self) -> type:
        return transformers.AutoModelForCausalLM

    def encode(
        self, tokenizer: Any, examples: Sequence[LmExample], max_length: int
    ) -> dict[str, torch.Tensor]:
        return encode_causal(tokenizer, examples, max_length)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return causal_lm_loss(logits, labels)

    def read_eval(self, source: EvalSource) -> list[LmExample]:
        if self.choices is None:
            return read_lm_examples(source)
        words = [c[1:] for c in self.choices]
        return classification_prompts(read_labelled(source, self.label_names), words, self.prompt_template)

    def score(self, model, tokenizer, examples, batch_size, max_length) -> dict[str, Any]:
        """Summed response NLL and token count, or each example's label, best choice and choice loss."""
        if self.choices is None:
            nll, tokens = response_nll(model, tokenizer, examples, max_length, batch_size)
            return {"nll": nll, "tokens": tokens}
        if not examples:
            return classification_part([], [], [])
        scores = choice_logprobs(model, tokenizer, examples, self.choices, max_length, batch_size)  # (N, C)
        gold = torch.tensor([e.label for e in examples])  # (N,)
        losses = -scores.log_softmax(1)[torch.arange(len(examples)), gold]  # (N,)
        return classification_part(gold.tolist(), scores.argmax(1).tolist(), losses.tolist())

    def combine(self, parts: list[dict[str, Any]]) -> dict[str, float]:
        if self.choices is None:
            return perplexity_of(sum(p["nll"] for p in parts), sum(p["tokens"] for p in parts))
        return combine_classification(parts)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), **_generation_metadata(self)}


@dataclass
class Seq2Seq(Objective):
    """An encoder-decoder objective: text-to-label (`choices`, exact match) or source-to-target
    generation (ROUGE)."""

    choices: list[str] | None = None
    """Label words in label order (text-to-label classification)."""
    label_names: list[str] = field(default_factory=list)
    prompt_template: str | None = None
    source_prefix: str = ""
    max_target_length: int = 64
    decoder_start_token_id: int | None = None

    @classmethod
    def restore(cls, metadata: dict[str, Any], label_names: list[str]) -> Seq2Seq:
        choices = metadata.get("choices") or None
        return cls(
            metadata.get("task", "eval"),
            {},
            metric="exact_match" if choices else "rougeL",
            choices=choices,
            label_names=label_names,
            prompt_template=metadata.get("prompt_template"),
            source_prefix=metadata.get("source_prefix", ""),
            max_target_length=int(metadata.get("max_target_length", 64)),
        )

    @property
    def auto_class(self) -> type:
        return transformers.AutoModelForSeq2SeqLM

    def bind(self, model: nn.Module) -> None:
        start = getattr(model.config, "decoder_start_token_id", None)
        if start is None:
            raise DataError(
                f"the model's config has no decoder_start_token_id, which seq2seq training needs to "
                f"shift targets right; set it in {type(model).__name__}'s config.json (T5: the pad id, 0)"
            )
        self.decoder_start_token_id = int(start)

    def encode(
        self, tokenizer: Any, examples: Sequence[Seq2SeqExample], max_length: int
    ) -> dict[str, torch.Tensor]:
        if self.decoder_start_token_id is None:
            raise RuntimeError("Seq2Seq.bind(model) must run before batches are encoded")
        return encode_seq2seq(
            tokenizer, examples, max_length, self.max_target_length, self.decoder_start_token_id
        )

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return seq2seq_loss(logits, labels)

    def read_eval(self, source: EvalSource) -> list[Seq2SeqExample]:
        if self.choices is None:
            return [Seq2SeqExample(self.source_prefix + s, t) for s, t in read_pairs(source)]
        return text_to_label(read_labelled(source, self.label_names), self.choices, self.prompt_template)

    def _new_tokens(self, tokenizer: Any) -> int:
        """The generation limit: the target length, or a few tokens beyond the longest label word."""
        if self.choices is None:
            return self.max_target_length
        lengths = [len(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in self.choices]
        return 4 + max(lengths)  # a label word is a few tokens (plus the tokenizer's specials)

    def score(self, model, tokenizer, examples, batch_size, max_length) -> dict[str, Any]:
        """Greedy generations with their targets and labels, and the summed teacher-forced target NLL."""
        sources = [e.source for e in examples]
        predictions = generate_texts(
            model, tokenizer, sources, max_length, self._new_tokens(tokenizer), batch_size
        )
        nll, tokens = target_nll(model, tokenizer, examples, max_length, self.max_target_length, batch_size)
        return {
            "predictions": predictions,
            "targets": [e.target for e in examples],
            "labels": [e.label for e in examples],
            "nll": nll,
            "tokens": tokens,
        }

    def combine(self, parts: list[dict[str, Any]]) -> dict[str, float]:
        predictions = [p for part in parts for p in part["predictions"]]
        targets = [t for part in parts for t in part["targets"]]
        if self.choices is None:
            metrics = rouge(predictions, targets)
        else:
            labels = [y for part in parts for y in part["labels"]]
            picked = [self.choices.index(p) if p in self.choices else -1 for p in predictions]  # -1: no label
            metrics = classification_metrics(labels, picked, classes=range(len(self.choices)))
            metrics["exact_match"] = exact_match(predictions, targets)
        metrics["loss"] = sum(p["nll"] for p in parts) / max(sum(p["tokens"] for p in parts), 1)
        metrics["n"] = float(len(targets))
        return metrics

    def metadata(self) -> dict[str, Any]:
        extra = {"source_prefix": self.source_prefix, "max_target_length": self.max_target_length}
        return {**super().metadata(), **_generation_metadata(self), **extra}
