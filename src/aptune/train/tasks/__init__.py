"""What a run optimises and reports: objectives, with the encoders and metrics of their models.

* :class:`Objective` (:mod:`.objective`): the interface; :meth:`Objective.evaluate` scores a split in
  eval mode, each process its shard (:mod:`.evaluation`); :meth:`Objective.from_metadata` rebuilds
  the objective of an exported model.
* :class:`Classification`, :class:`CausalLm`, :class:`Seq2Seq`: sequence classifiers, causal LMs
  (:mod:`.causal_lm`) and encoder-decoders (:mod:`.seq2seq`); classification posed as generation
  builds its prompts in :mod:`.prompts`.
* :func:`load_objective` builds the objective of a run from its config.
"""

from .causal_lm import (
    IGNORE_INDEX,
    causal_lm_loss,
    causal_loss,
    choice_accuracy,
    choice_logprobs,
    encode_causal,
    perplexity,
)
from .classification import Classification, evaluate_classifier
from .generative import CausalLm, Seq2Seq
from .load import load_objective
from .objective import Objective
from .prompts import classification_prompts, text_to_label
from .seq2seq import Seq2SeqExample, encode_seq2seq, exact_match, generate_texts, rouge, seq2seq_loss

__all__ = [
    "IGNORE_INDEX",
    "CausalLm",
    "Classification",
    "Objective",
    "Seq2Seq",
    "Seq2SeqExample",
    "causal_lm_loss",
    "causal_loss",
    "choice_accuracy",
    "choice_logprobs",
    "classification_prompts",
    "encode_causal",
    "encode_seq2seq",
    "evaluate_classifier",
    "exact_match",
    "generate_texts",
    "load_objective",
    "perplexity",
    "rouge",
    "seq2seq_loss",
    "text_to_label",
]
