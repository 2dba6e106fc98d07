"""What a run optimises and reports: sequence classification or a causal-LM objective.

An `Objective` owns the task's splits and knows which model class to load, how to turn examples
into a batch, the task loss, the evaluation metrics, the inputs used to time inference and the
metadata stored with the exported model. `load_objective` builds one from a config:

* `model.head: classifier`: labelled texts -> a sequence classifier (cross-entropy; accuracy, F1, MCC).
* `model.head: causal-lm` with `data.task_type`:
  - `classification`: classification as generation: each text is put in `data.prompt_template`,
    the model learns to continue it with the label word and is scored by label-word likelihood;
  - `instruction`: Alpaca-format JSON, loss on the response only; perplexity of the responses;
  - `language-modeling`: plain text cut into blocks (a file, or the built-in `hamlet`); perplexity.
* `model.head: seq2seq` (encoder-decoders such as T5) with `data.task_type`:
  - `classification`: text-to-label: the prompt is the source, the label word the target; scored
    by exact match of greedy generations;
  - `seq2seq`: source / target text pairs; scored by ROUGE-1/2/L of greedy generations.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import nn

from ..config import AptuneConfig, DataConfig
from .data import DataError, Example, TaskData, _subset, encode, load_task, load_text_pairs
from .evaluate import evaluate
from .lm_tasks import (
    IGNORE_INDEX,
    LmExample,
    choice_logprobs,
    classification_prompts,
    encode_causal,
    hamlet_text,
    perplexity,
    read_alpaca,
    read_text_blocks,
)
from .metrics import classification_metrics
from .seq2seq_tasks import (
    Seq2SeqExample,
    encode_seq2seq,
    exact_match,
    generate_texts,
    rouge,
    seq2seq_loss,
    target_loss,
    text_to_label,
)

_SPLIT_SEED = 20240122
_HELD_OUT = 0.05  # validation and test fractions carved from a single instruction / text file


@dataclass
class Objective(ABC):
    """A task's data and how a model is trained and scored on it."""

    name: str
    splits: dict[str, list]
    notes: list[str] = field(default_factory=list)
    metric: str = "accuracy"
    """The headline metric shown in progress bars and reports."""

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger headline metric is better (perplexity is the one where it is not)."""
        return self.metric != "perplexity"

    @property
    @abstractmethod
    def auto_class(self) -> type:
        """The transformers Auto class that loads a model for this objective."""

    def model_kwargs(self) -> dict[str, Any]:
        """Extra `from_pretrained` arguments (labels of a classifier)."""
        return {}

    def bind(self, model: nn.Module) -> None:
        """Read what batches need from the loaded model (nothing by default)."""
        return None

    @abstractmethod
    def encode(self, tokenizer: Any, examples: Sequence, max_length: int) -> dict[str, torch.Tensor]:
        """Model inputs plus `labels` for a batch of examples."""

    @abstractmethod
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task loss of one batch."""

    @abstractmethod
    def evaluate(
        self, model: nn.Module, tokenizer: Any, split: str, batch_size: int, max_length: int, shard=(0, 1)
    ) -> dict[str, float]:
        """Metrics of `model` on a split. `shard = (process, processes)`: each process may score its
        share of the split and gather the rest; every process returns the metrics of the whole split."""

    def timing_examples(self, count: int) -> list:
        """`count` test examples (cycled; the train split when there is no test split)."""
        examples = self.splits.get("test") or self.splits["train"]
        return [examples[i % len(examples)] for i in range(count)]

    def timing_inputs(self, tokenizer: Any, count: int, max_length: int) -> dict[str, torch.Tensor]:
        """A batch of `count` real test inputs (without labels) for timing inference."""
        inputs = self.encode(tokenizer, self.timing_examples(count), max_length)
        inputs.pop("labels")
        return inputs

    def metadata(self) -> dict[str, Any]:
        """What the exported model records about its task."""
        return {"task": self.name, "objective": type(self).__name__}


@dataclass
class Classification(Objective):
    """Sequence classification with a classifier head."""

    label_names: list[str] = field(default_factory=list)
    is_pair: bool = False

    @classmethod
    def from_task(cls, task: TaskData) -> Classification:
        """Wrap a loaded classification task."""
        return cls(task.name, task.splits, task.notes, "accuracy", task.label_names, task.is_pair)

    @property
    def auto_class(self) -> type:
        return transformers.AutoModelForSequenceClassification

    def model_kwargs(self) -> dict[str, Any]:
        labels = dict(enumerate(self.label_names))
        return {
            "num_labels": len(labels),
            "id2label": labels,
            "label2id": {v: k for k, v in labels.items()},
            "ignore_mismatched_sizes": True,  # a classifier for another label count gets a new head
        }

    def encode(self, tokenizer: Any, examples: Sequence[Example], max_length: int) -> dict[str, torch.Tensor]:
        return encode(tokenizer, examples, max_length)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels)  # logits (B, K)

    def evaluate(self, model, tokenizer, split, batch_size, max_length, shard=(0, 1)) -> dict[str, float]:
        return evaluate(model, tokenizer, self.splits[split], batch_size, max_length, shard=shard)

    def timing_inputs(self, tokenizer: Any, count: int, max_length: int) -> dict[str, torch.Tensor]:
        """Real test texts padded to `max_length` (the classifier's worst case)."""
        batch = self.timing_examples(count)
        inputs = tokenizer(
            [e.text for e in batch],
            [e.text_pair for e in batch] if self.is_pair else None,
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        return dict(inputs)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "label_names": self.label_names, "is_pair": self.is_pair}


def _generation_metadata(objective: Objective) -> dict[str, Any]:
    """What a generative objective's export records so `aptune eval` can score it again."""
    return {
        "choices": objective.choices,
        "label_names": objective.label_names,
        "prompt_template": objective.prompt_template,
    }


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled tokens: logits (B, T, V), labels (B, T)."""
    return F.cross_entropy(
        logits[:, :-1].float().flatten(0, 1),  # (B*(T-1), V)
        labels[:, 1:].flatten(),  # (B*(T-1),)
        ignore_index=IGNORE_INDEX,
    )


@dataclass
class CausalLm(Objective):
    """A causal-LM objective: loss on responses; label-word accuracy (`choices`) or perplexity."""

    choices: list[str] | None = None
    """Label words with their leading space, in label order (classification as generation)."""
    label_names: list[str] = field(default_factory=list)
    prompt_template: str | None = None
    """The classification prompt (classification as generation)."""

    @property
    def auto_class(self) -> type:
        return transformers.AutoModelForCausalLM

    def encode(
        self, tokenizer: Any, examples: Sequence[LmExample], max_length: int
    ) -> dict[str, torch.Tensor]:
        return encode_causal(tokenizer, examples, max_length)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return causal_lm_loss(logits, labels)

    def evaluate(self, model, tokenizer, split, batch_size, max_length, shard=(0, 1)) -> dict[str, float]:
        examples = self.splits[split]
        if self.choices is None:
            return perplexity(model, tokenizer, examples, max_length, batch_size)
        scores = choice_logprobs(model, tokenizer, examples, self.choices, max_length, batch_size)  # (N, C)
        metrics = classification_metrics([e.label for e in examples], scores.argmax(1).tolist())
        gold = torch.tensor([e.label for e in examples])
        metrics["loss"] = float(-scores.log_softmax(1)[torch.arange(len(examples)), gold].mean())
        return metrics

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

    def evaluate(self, model, tokenizer, split, batch_size, max_length, shard=(0, 1)) -> dict[str, float]:
        examples = self.splits[split]
        new_tokens = self.max_target_length
        if self.choices is not None:  # a label word is a few tokens (plus the tokenizer's specials)
            lengths = [len(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in self.choices]
            new_tokens = 4 + max(lengths)
        predictions = generate_texts(
            model, tokenizer, [e.source for e in examples], max_length, new_tokens, batch_size
        )
        targets = [e.target for e in examples]
        if self.choices is None:
            metrics = rouge(predictions, targets)
        else:
            picked = [self.choices.index(p) if p in self.choices else -1 for p in predictions]  # -1: no label
            classes = range(len(self.choices))
            metrics = classification_metrics([e.label for e in examples], picked, classes=classes)
            metrics["exact_match"] = exact_match(predictions, targets)
        target_len = self.max_target_length
        metrics["loss"] = target_loss(model, tokenizer, examples, max_length, target_len, batch_size)
        metrics["n"] = float(len(examples))
        return metrics

    def metadata(self) -> dict[str, Any]:
        extra = {"source_prefix": self.source_prefix, "max_target_length": self.max_target_length}
        return {**super().metadata(), **_generation_metadata(self), **extra}


def _text_to_label(cfg: DataConfig, seed: int) -> Seq2Seq:
    task = load_task(cfg, seed=seed)
    words = _label_words(cfg, task)
    splits = {k: text_to_label(v, words, cfg.prompt_template) for k, v in task.splits.items()}
    names = [str(n) for n in task.label_names]
    return Seq2Seq(
        task.name,
        splits,
        task.notes,
        "exact_match",
        choices=words,
        label_names=names,
        prompt_template=cfg.prompt_template,
        max_target_length=cfg.max_target_length,
    )


def _source_to_target(cfg: DataConfig, seed: int) -> Seq2Seq:
    pairs = load_text_pairs(cfg, seed)
    splits = {
        k: [Seq2SeqExample(cfg.source_prefix + source, target) for source, target in v]
        for k, v in pairs.splits.items()
    }
    return Seq2Seq(
        pairs.name,
        splits,
        pairs.notes,
        "rougeL",
        source_prefix=cfg.source_prefix,
        max_target_length=cfg.max_target_length,
    )


def _split(examples: list[LmExample], seed: int) -> dict[str, list[LmExample]]:
    """Carve validation and test (5% each, at least one example) out of one file, reproducibly."""
    if len(examples) < 3:
        raise DataError(
            f"need at least 3 examples to carve validation and test splits, got {len(examples)}; "
            "add data or give data.validation_file and data.test_file"
        )
    order = list(range(len(examples)))
    random.Random(_SPLIT_SEED + seed).shuffle(order)
    held = max(1, round(_HELD_OUT * len(examples)))
    pick = [examples[i] for i in order]
    return {"train": pick[2 * held :], "validation": pick[:held], "test": pick[held : 2 * held]}


def _lm_splits(cfg: DataConfig, seed: int, read) -> tuple[dict[str, list[LmExample]], list[str]]:
    """Splits from data.train_file (+ optional validation/test files), or carved from the train file."""
    train = read(cfg.train_file)
    if cfg.validation_file is None and cfg.test_file is None:
        return _split(train, seed), ["validation and test splits carved from data.train_file (5% each)"]
    splits, notes = {"train": train}, []
    for split, path in (("validation", cfg.validation_file), ("test", cfg.test_file)):
        if path is not None:
            splits[split] = read(path)
    if "validation" not in splits:
        splits["validation"] = splits["test"]
        notes.append("no data.validation_file: the test split is used for validation")
    if "test" not in splits:
        splits["test"] = splits["validation"]
        notes.append("no data.test_file: the validation split is reported as test")
    return splits, notes


def _instruction(cfg: DataConfig, seed: int) -> CausalLm:
    if cfg.train_file is None:
        raise DataError(
            "data.task_type 'instruction' needs data.train_file: an Alpaca-format JSON list of "
            "{instruction, input, output} records"
        )
    splits, notes = _lm_splits(cfg, seed, read_alpaca)
    return CausalLm(Path(cfg.train_file).stem, splits, notes, metric="perplexity")


def _language_modeling(cfg: DataConfig, seed: int) -> CausalLm:
    def read(path: str) -> list[LmExample]:
        return read_text_blocks(Path(path), cfg.block_chars)

    if cfg.train_file is not None:
        splits, notes = _lm_splits(cfg, seed, read)
        return CausalLm(Path(cfg.train_file).stem, splits, notes, metric="perplexity")
    if cfg.task != "hamlet":
        raise DataError(
            f"data.task_type 'language-modeling' needs data.train_file (a text file) or the built-in "
            f"data.task 'hamlet', got data.task {cfg.task!r}"
        )
    blocks = read_text_blocks(hamlet_text(), cfg.block_chars)
    return CausalLm(
        "hamlet", _split(blocks, seed), ["built-in Hamlet text, 5% validation / 5% test"], "perplexity"
    )


def _label_words(cfg: DataConfig, task: TaskData) -> list[str]:
    """`data.label_words`, or the label names; one per label."""
    words = list(cfg.label_words) if cfg.label_words is not None else [str(n) for n in task.label_names]
    if len(words) != task.num_labels:
        raise DataError(
            f"data.label_words has {len(words)} words but the task has {task.num_labels} labels "
            f"({', '.join(map(str, task.label_names))}); give one word per label, in that order"
        )
    return words


def _generation_classification(cfg: DataConfig, seed: int) -> CausalLm:
    task = load_task(cfg, seed=seed)
    words = _label_words(cfg, task)
    splits = {k: classification_prompts(v, words, cfg.prompt_template) for k, v in task.splits.items()}
    choices = [" " + w for w in words]
    names = [str(n) for n in task.label_names]
    return CausalLm(task.name, splits, task.notes, "accuracy", choices, names, cfg.prompt_template)


def _limit(objective: Objective, cfg: DataConfig, seed: int) -> Objective:
    limits = {
        "train": cfg.max_train_samples,
        "validation": cfg.max_eval_samples,
        "test": cfg.max_eval_samples,
    }
    for split, examples in objective.splits.items():
        kept = _subset(examples, limits.get(split), seed)
        if len(kept) < len(examples):
            objective.notes.append(f"{split} split truncated from {len(examples)} to {len(kept)} examples")
        objective.splits[split] = kept
    return objective


def load_objective(cfg: AptuneConfig) -> Objective:
    """The objective and data of a run (see the module docstring); data problems raise DataError."""
    seed, data = cfg.train.seed, cfg.data
    if cfg.model.head == "classifier":
        return Classification.from_task(load_task(data, seed=seed))
    if cfg.model.head == "seq2seq":  # load_task / load_text_pairs apply the sample limits
        return (_text_to_label if data.task_type == "classification" else _source_to_target)(data, seed)
    loaders = {
        "classification": _generation_classification,
        "instruction": _instruction,
        "language-modeling": _language_modeling,
    }
    objective = loaders[data.task_type](data, seed)
    if data.task_type == "classification":
        return objective  # load_task already applied the sample limits
    return _limit(objective, data, seed)
