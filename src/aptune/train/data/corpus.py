"""Causal-LM corpora: Alpaca instruction data (``data.task_type: instruction``) and plain text cut
into blocks (``language-modeling``: a file, or the built-in ``hamlet``), split and limited."""

from __future__ import annotations

from pathlib import Path

from ...config import DataConfig
from .alpaca import read_alpaca
from .builtin import hamlet_text
from .examples import Corpus, DataError, LmExample
from .splits import carve_splits, corpus_splits, limit_splits
from .text import read_text_blocks

__all__ = ["load_corpus"]


def _instructions(cfg: DataConfig, seed: int) -> Corpus:
    if cfg.train_file is None:
        raise DataError(
            "data.task_type 'instruction' needs data.train_file: an Alpaca-format JSON list of "
            "{instruction, input, output} records"
        )
    splits, notes = corpus_splits(cfg, seed, read_alpaca)
    return Corpus(Path(cfg.train_file).stem, splits, notes)


def _text_blocks(cfg: DataConfig, seed: int) -> Corpus:
    def read(path: str) -> list[LmExample]:
        return read_text_blocks(Path(path), cfg.block_chars)

    if cfg.train_file is not None:
        splits, notes = corpus_splits(cfg, seed, read)
        return Corpus(Path(cfg.train_file).stem, splits, notes)
    if cfg.task != "hamlet":
        raise DataError(
            f"data.task_type 'language-modeling' needs data.train_file (a text file) or the built-in "
            f"data.task 'hamlet', got data.task {cfg.task!r}"
        )
    blocks = read_text_blocks(hamlet_text(), cfg.block_chars)
    return Corpus("hamlet", carve_splits(blocks, seed), ["built-in Hamlet text, 5% validation / 5% test"])


def load_corpus(cfg: DataConfig, seed: int = 0) -> Corpus:
    """The instruction or language-modelling data of ``cfg`` (``data.task_type``), split as in
    :mod:`.splits` and limited by ``data.max_train_samples`` / ``data.max_eval_samples``.

    Raises:
        DataError: for a missing train file, unreadable or empty data, or too few examples to split.
    """
    corpus = (_instructions if cfg.task_type == "instruction" else _text_blocks)(cfg, seed)
    corpus.notes.extend(limit_splits(corpus.splits, cfg, seed))
    return corpus
