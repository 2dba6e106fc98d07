"""Task data: readers with one split / limit policy, and batching.

* Classification (:func:`load_task`): local CSV / TSV / JSON / JSONL tables, the built-in offline
  Rotten Tomatoes task, or a Hugging Face dataset, as :class:`TaskData` of :class:`Example`.
* Sequence-to-sequence (:func:`load_text_pairs`): source / target pairs from files or the hub.
* Causal LM (:func:`load_corpus`): Alpaca instruction data or plain text cut into blocks
  (:func:`read_alpaca`, :func:`read_text_blocks`, the built-in :func:`hamlet_text`).
* Evaluation of an exported model (:class:`EvalSource`): a file, or a split of a named task.
* :func:`batches` orders a split into batches; :func:`encode` tokenises labelled examples.

Every problem with the data is raised as a :class:`DataError` before any training starts; its
message names the problem and the fix. How missing splits are filled in and samples limited is
written down once, in :mod:`.splits`.
"""

from .alpaca import ALPACA_PROMPT, ALPACA_PROMPT_NO_INPUT, read_alpaca
from .batching import PAD_MULTIPLE, batches, encode, pad_to_bucket, padded_width
from .builtin import ROTTEN_TOMATOES_LABELS, hamlet_text, rotten_tomatoes
from .classification import load_labelled_file, load_task
from .corpus import load_corpus
from .examples import Corpus, DataError, Example, LmExample, TaskData, TextPairs
from .pairs import load_pairs_file, load_text_pairs
from .sources import EvalSource, read_labelled, read_lm_examples, read_pairs
from .splits import limit_splits
from .text import read_text_blocks

__all__ = [
    "ALPACA_PROMPT",
    "ALPACA_PROMPT_NO_INPUT",
    "PAD_MULTIPLE",
    "ROTTEN_TOMATOES_LABELS",
    "Corpus",
    "DataError",
    "EvalSource",
    "Example",
    "LmExample",
    "TaskData",
    "TextPairs",
    "batches",
    "encode",
    "hamlet_text",
    "limit_splits",
    "load_corpus",
    "load_labelled_file",
    "load_pairs_file",
    "load_task",
    "load_text_pairs",
    "pad_to_bucket",
    "padded_width",
    "read_alpaca",
    "read_labelled",
    "read_lm_examples",
    "read_pairs",
    "read_text_blocks",
    "rotten_tomatoes",
]
