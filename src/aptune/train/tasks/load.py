"""The objective of a run, from its config:

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

The readers of :mod:`aptune.train.data` split the data and apply the sample limits.
"""

from __future__ import annotations

from ...config import AptuneConfig, DataConfig
from ..data import DataError, TaskData, load_corpus, load_task, load_text_pairs
from .classification import Classification
from .generative import CausalLm, Seq2Seq
from .objective import Objective
from .prompts import classification_prompts, text_to_label
from .seq2seq import Seq2SeqExample

__all__ = ["load_objective"]


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


def _causal_corpus(cfg: DataConfig, seed: int) -> CausalLm:
    corpus = load_corpus(cfg, seed)
    return CausalLm(corpus.name, corpus.splits, corpus.notes, "perplexity")


def _text_to_label(cfg: DataConfig, seed: int) -> Seq2Seq:
    task = load_task(cfg, seed=seed)
    words = _label_words(cfg, task)
    splits = {k: text_to_label(v, words, cfg.prompt_template) for k, v in task.splits.items()}
    return Seq2Seq(
        task.name,
        splits,
        task.notes,
        "exact_match",
        choices=words,
        label_names=[str(n) for n in task.label_names],
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


def load_objective(cfg: AptuneConfig) -> Objective:
    """The objective and data of a run (see the module docstring); data problems raise DataError."""
    seed, data = cfg.train.seed, cfg.data
    if cfg.model.head == "classifier":
        return Classification.from_task(load_task(data, seed=seed))
    classification = data.task_type == "classification"
    if cfg.model.head == "seq2seq":
        return (_text_to_label if classification else _source_to_target)(data, seed)
    return (_generation_classification if classification else _causal_corpus)(data, seed)
