"""The typed sections of a run's configuration, their options, ranges and cross-field rules."""

from __future__ import annotations

from typing import ClassVar, Literal

from .validation import (
    NON_EMPTY,
    STEP,
    UNIT_CLOSED,
    UNIT_CLOSED_OPEN,
    UNIT_OPEN_CLOSED,
    ConfigError,
    Section,
    ge,
    gt,
    iter_options,
    option,
    section,
)

MhaComponent = Literal["query", "key", "value", "output"]
Tracker = Literal[
    "tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab", "trackio"
]
FfnComponent = Literal["intermediate", "output"]


class AdapterConfig(Section):
    """Where APT adapters go and how they start (``model.adapter``)."""

    _path: ClassVar[str] = "model.adapter"

    mha_components: list[MhaComponent] = option(
        ["query", "value"], "Attention projections that receive adapters."
    )
    ffn_components: list[FfnComponent] = option(
        ["intermediate"], "Feed-forward projections that receive adapters."
    )
    rank: int = option(8, "Initial adapter rank.", ge(1))
    alpha: float = option(16.0, "Adapter scaling numerator (output scaled by alpha / rank).", gt(0))
    dropout: float = option(0.0, "Dropout probability on the adapter input.", UNIT_CLOSED_OPEN)
    init: Literal["kaiming", "gaussian"] = option("kaiming", "Initialisation of the adapter down-projection.")


class ModelConfig(Section):
    """Which pretrained model to load and how (``model``)."""

    _path: ClassVar[str] = "model"

    name_or_path: str = option(
        "builtin:minilm",
        "Hub model name, local model directory, or 'builtin:minilm' (BERT) / 'builtin:smollm2' (LLaMA).",
        NON_EMPTY,
    )
    num_labels: int | None = option(
        None, "Number of classification labels; null infers it from the data.", ge(2)
    )
    trust_remote_code: bool = option(False, "Allow running custom model code shipped with a hub model.")
    head: Literal["classifier", "causal-lm", "seq2seq"] = option(
        "classifier",
        "Model head: 'classifier' (sequence classification), 'causal-lm' (decoder LMs: "
        "classification as generation, instruction tuning, language modelling) or 'seq2seq' "
        "(encoder-decoders such as T5: text-to-label classification, source-to-target generation).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = option(
        "float32",
        "Dtype of the frozen pretrained weights; adapters and the task head stay float32.",
    )
    finetune: Literal["adapters", "full"] = option(
        "adapters",
        "What trains: 'adapters' (APT/LoRA adapters plus the task head) or 'full' (every weight; "
        "the full fine-tuning baseline).",
    )
    adapter: AdapterConfig = section(AdapterConfig, "Adapter settings.")


class PruningConfig(Section):
    """Structured pruning during fine-tuning (``pruning``)."""

    _path: ClassVar[str] = "pruning"

    enabled: bool = option(True, "Prune the model while fine-tuning.")
    target_sparsity: float = option(
        0.6,
        "Fraction of prunable parameters removed by the end of pruning.",
        UNIT_CLOSED_OPEN,
    )
    target_speedup: float | None = option(
        None,
        "Ask for speed instead of sparsity: the exported model's forward pass should run this many "
        "times faster on this device (batch 32 x data.max_length). A latency model of the device is "
        "measured at the start (cached), the schedule runs on predicted latency and the mask search "
        "ranks blocks by salience per millisecond; replaces target_sparsity when set.",
        gt(1),
    )
    speed_checks: int = option(
        3,
        "With target_speedup: how often the pruning window builds the planned final shape (random "
        "weights) and times it against the dense shape on this device, correcting the latency budget "
        "by measured / asked speed-up; spread over the re-plans, the last at the final one, which "
        "measures again (up to 3 times) until the plan is within 3% of the request. Each check takes "
        "a few seconds (about 7 s for MiniLM on 2 CPU cores). 0 trusts the latency model alone.",
        ge(0),
    )
    scheduler: Literal["cubic"] = option("cubic", "Sparsity schedule between start_step and end_step.")
    salience_type: Literal["outlier-aware", "activation-gradient"] = option(
        "outlier-aware",
        "Salience score; 'activation-gradient' never uses the kurtosis term.",
    )
    use_kurtosis: bool = option(True, "Add the activation-kurtosis term to outlier-aware salience.")
    kurtosis_weight: float = option(1.0, "Weight of the kurtosis term in outlier-aware salience.", ge(0))
    update_frequency: int = option(100, "Training steps between pruning-mask updates.", ge(1))
    mask_decay_rate: float = option(
        0.01,
        "Per-step decrease of a pruned structure's mask towards zero.",
        UNIT_OPEN_CLOSED,
    )
    momentum_salience: float = option(
        0.85,
        "Per-step moving-average coefficient of the per-batch salience scores (reference 0.85). "
        "Salience is collected from update_frequency steps before start_step to end_step.",
        UNIT_CLOSED_OPEN,
    )
    start_step: int | float = option(
        0.1,
        "When pruning starts: int = absolute step, float = fraction of total steps.",
        STEP,
    )
    end_step: int | float = option(
        0.5, "When target_sparsity is reached; same convention as start_step.", STEP
    )
    align: int = option(8, "Kept hidden/intermediate sizes are rounded to a multiple of this.", ge(1))
    min_heads_per_layer: int = option(1, "Attention heads every layer keeps at least.", ge(1))
    min_neurons_per_layer: int = option(1, "Feed-forward neurons every layer keeps at least.", ge(1))
    prune_hidden: bool = option(True, "Also prune hidden (model) dimensions.")
    uniform_layers: bool = option(
        False,
        "Keep the same number of heads and neurons in every layer; LLaMA-family results are then "
        "stock checkpoints that transformers loads without aptune.",
    )
    before_tuning: bool = option(
        False,
        "Prune before tuning (the paper's mode for 7B+ models): one-shot salience on "
        "calibration_batches training batches, hard pruning to target_sparsity, then tuning.",
    )
    calibration_batches: int = option(8, "Training batches scored for before_tuning pruning.", ge(1))

    @property
    def kurtosis_enabled(self) -> bool:
        """Whether salience includes the kurtosis term (outlier-aware salience with a positive weight)."""
        return self.use_kurtosis and self.salience_type == "outlier-aware" and self.kurtosis_weight > 0

    def _cross_check(self) -> None:
        start, end = self.start_step, self.end_step
        if isinstance(start, float) == isinstance(end, float) and end <= start:
            raise ConfigError(
                f"pruning.end_step: must be > pruning.start_step ({start!r}), got {end!r}",
                "pruning.end_step",
            )


class TuningConfig(Section):
    """Adaptive adapter-rank growth (``tuning``)."""

    _path: ClassVar[str] = "tuning"

    enabled: bool = option(True, "Grow adapter ranks adaptively during training.")
    max_rank: int = option(64, "Largest rank any adapter may grow to (>= model.adapter.rank).", ge(1))
    max_tuning_ratio: float = option(
        4.0,
        "Largest allowed growth of the tuned-parameter count over its initial value.",
        ge(1),
    )
    momentum_importance: float = option(
        0.85,
        "Per-step moving-average coefficient of adapter importance.",
        UNIT_CLOSED_OPEN,
    )


class DistillConfig(Section):
    """Self-distillation while pruning (``distill``)."""

    _path: ClassVar[str] = "distill"

    enabled: bool = option(True, "Use self-distillation while pruning.")
    teacher: Literal["best", "latest"] = option(
        "best",
        "Which snapshot teaches. 'best' (the reference's): the adapters of the best validation score, "
        "checked at every re-plan of the pruning window (one evaluation each), frozen after it, and "
        "sliced when the model shrinks. 'latest': a new snapshot at every re-plan and shrink.",
    )
    rescore_teacher: bool = option(
        True,
        "With teacher 'best': before each offer, score the held teacher again as it runs now (the "
        "current masks and shapes) and let the student replace it if it beats that score. Off (the "
        "reference): the student must beat the score the teacher had when it was chosen, at a lower "
        "sparsity. Costs one more evaluation per re-plan.",
    )
    teacher_masks: bool = option(
        True,
        "Run the teacher with the current pruning masks (reference) instead of without any.",
    )
    pred_weight: float = option(0.1, "Weight of the prediction (logit) distillation loss.", ge(0))
    layer_weight: float = option(0.9, "Weight of the intermediate-layer distillation loss.", ge(0))
    temperature: float = option(
        2 / 3,
        "Softmax temperature of the prediction distillation loss (reference 2/3).",
        gt(0),
    )
    pred_scale: float = option(
        10.0,
        "Factor on the prediction loss (KL x T^2) before pred_weight (reference 10).",
        ge(0),
    )
    resample_layers: bool = option(
        False,
        "Draw the distilled layer of each quarter of the layers anew every step instead of always "
        "taking the quarter's last layer.",
    )
    after_pruning: float = option(
        0.5,
        "Fraction of the steps after pruning ends that keep distilling (mu = 1); the rest is the "
        "recovery phase (or plain task-loss training when recovery is off).",
        UNIT_CLOSED,
    )
    recovery: bool = option(
        True,
        "When distillation ends, restore the best validation state seen after pruning, reset AdamW "
        "and train on the task loss with a fresh warm-up/decay at recovery_lr_scale x the peak rate.",
    )
    recovery_lr_scale: float = option(
        0.1,
        "Peak learning rate of the recovery phase, as a fraction of train's.",
        gt(0),
    )


class TrainConfig(Section):
    """Optimisation, evaluation and checkpointing (``train``)."""

    _path: ClassVar[str] = "train"

    epochs: float = option(3.0, "Training epochs; ignored when max_steps is set.", gt(0))
    max_steps: int | None = option(None, "Total optimisation steps; overrides epochs when set.", ge(1))
    batch_size: int = option(32, "Training batch size.", ge(1))
    eval_batch_size: int = option(64, "Evaluation batch size.", ge(1))
    learning_rate: float = option(5e-4, "Learning rate of the tuned (adapter) parameters.", gt(0))
    head_learning_rate: float | None = option(
        None, "Learning rate of the task head; null uses learning_rate.", gt(0)
    )
    weight_decay: float = option(0.0, "AdamW weight decay.", ge(0))
    warmup_ratio: float = option(
        0.06,
        "Fraction of total steps spent in learning-rate warm-up.",
        UNIT_CLOSED_OPEN,
    )
    seed: int = option(42, "Random seed.")
    eval_every: int = option(100, "Steps between evaluations.", ge(1))
    log_every: int = option(10, "Steps between log lines.", ge(1))
    mixed_precision: Literal["no", "fp16", "bf16"] = option("no", "Autocast precision used for training.")
    measure_speed: bool = option(
        True,
        "At the end, time the exported model against the dense original on 32 test inputs "
        "(reloads the original model).",
    )
    speed_budget_s: float = option(
        30.0,
        "About how many seconds the measure_speed timing may take: the two models are timed in up "
        "to 6 alternating rounds, fewer (at least 2) when their forward passes are slow.",
        gt(0),
    )
    gradient_checkpointing: bool = option(False, "Recompute activations in the backward pass to save memory.")
    hold_freed_memory: bool = option(
        True,
        "On a CPU, keep the heap pages a step frees in the process (glibc mallopt, process-wide and "
        "permanent) instead of handing them back and faulting them in again at the next step; cuts "
        "and evaluations still hand freed memory back. false leaves the C library's settings alone, "
        "e.g. in a long-lived process that hosts the training (timing the export still sets them).",
    )
    checkpoint_every: int | None = option(
        None,
        "Steps between checkpoints (OUTPUT/checkpoints/step-N, what `aptune train --resume OUTPUT` "
        "continues from); null writes none.",
        ge(1),
    )
    keep_checkpoints: int = option(2, "Number of most recent checkpoints kept on disk.", ge(1))
    report_to: list[Tracker] = option(
        [],
        "Experiment trackers that get every history line (losses, mu, sparsity and its target, kept "
        "heads / neurons per layer, ranks, learning rate, memory, evaluations) through accelerate, "
        "e.g. [tensorboard] (logs under OUTPUT/trackers) or [wandb]; each needs its package installed.",
    )
    output_dir: str = option("runs/aptune", "Directory for checkpoints, logs and results.", NON_EMPTY)


class DataConfig(Section):
    """Task and data loading (``data``)."""

    _path: ClassVar[str] = "data"

    task: str = option(
        "rotten_tomatoes",
        "Built-in task name, HF dataset name such as 'glue/sst2', or '' to use local files.",
    )
    train_file: str | None = option(None, "Local training data file (required when task is '').", NON_EMPTY)
    validation_file: str | None = option(None, "Local validation data file.", NON_EMPTY)
    test_file: str | None = option(None, "Local test data file.", NON_EMPTY)
    text_column: str = option("text", "Column holding the input text.", NON_EMPTY)
    text_pair_column: str | None = option(
        None,
        "Column holding the second text of a pair; null for single-text tasks.",
        NON_EMPTY,
    )
    label_column: str = option("label", "Column holding the label.", NON_EMPTY)
    task_type: Literal["classification", "instruction", "language-modeling", "seq2seq"] = option(
        "classification",
        "What the data is: labelled texts, Alpaca-style instruction JSON (instruction, input, output; "
        "loss on the output only), plain text (perplexity), or source/target text pairs (ROUGE). "
        "'instruction' and 'language-modeling' need model.head causal-lm, 'seq2seq' model.head seq2seq.",
    )
    target_column: str = option(
        "target",
        "Seq2seq: column holding the target text (the source is data.text_column); "
        "'highlights' for CNN/DailyMail.",
        NON_EMPTY,
    )
    source_prefix: str = option("", "Seq2seq: text put before every source, e.g. 'summarize: ' for T5.")
    max_target_length: int = option(
        64,
        "Seq2seq: maximum target length in tokens, also the generation limit.",
        ge(2),
    )
    prompt_template: str = option(
        "Review: {text}\nSentiment:",
        "Classification with a causal LM or a seq2seq model: the prompt, with {text} (and "
        "{text_pair}) placeholders. A causal LM learns to continue it with the label word (scored by "
        "label-word likelihood); a seq2seq model learns to generate the label word from it (scored "
        "by exact match), e.g. 'sentiment: {text}' for T5.",
        NON_EMPTY,
    )
    label_words: list[str] | None = option(
        None,
        "Classification with a causal LM or a seq2seq model: one word per label; null uses the label names.",
    )
    block_chars: int = option(
        1000,
        "Language modelling: characters per text block (lines are never split).",
        ge(16),
    )
    max_length: int = option(128, "Maximum tokenised sequence length.", ge(8))
    max_train_samples: int | None = option(
        None, "Use at most this many training examples; null uses all.", ge(1)
    )
    max_eval_samples: int | None = option(
        None, "Use at most this many evaluation examples; null uses all.", ge(1)
    )

    def _cross_check(self) -> None:
        if self.task == "" and self.train_file is None:
            raise ConfigError(
                "data.train_file: must be set when data.task is '' (or name a task in data.task)",
                "data.train_file",
            )


class AptuneConfig(Section):
    """Configuration of a whole aptune run.

    Build it from a mapping with :meth:`from_dict`, from a file with :func:`load_config`, or directly
    (``AptuneConfig(pruning=PruningConfig(target_sparsity=0.4))``); every route validates.
    """

    model: ModelConfig = section(ModelConfig, "Model and adapters.")
    pruning: PruningConfig = section(PruningConfig, "Structured pruning.")
    tuning: TuningConfig = section(TuningConfig, "Adaptive rank growth.")
    distill: DistillConfig = section(DistillConfig, "Self-distillation.")
    train: TrainConfig = section(TrainConfig, "Training loop.")
    data: DataConfig = section(DataConfig, "Task and data.")

    def _cross_check(self) -> None:
        task_type, head = self.data.task_type, self.model.head
        if task_type in ("instruction", "language-modeling") and head != "causal-lm":
            raise ConfigError(
                f"model.head: data.task_type {task_type!r} needs a causal LM; set model.head to "
                "'causal-lm' (and a decoder model such as builtin:smollm2)",
                "model.head",
            )
        if task_type == "seq2seq" and head != "seq2seq":
            raise ConfigError(
                "model.head: data.task_type 'seq2seq' needs an encoder-decoder; set model.head to "
                "'seq2seq' (and a T5 model such as t5-small)",
                "model.head",
            )
        rank, max_rank = self.model.adapter.rank, self.tuning.max_rank
        if max_rank < rank:
            raise ConfigError(
                f"tuning.max_rank: must be >= model.adapter.rank ({rank}), got {max_rank}",
                "tuning.max_rank",
            )


def describe_options() -> list[tuple[str, str, object, str]]:
    """List every leaf option as ``(dotted key, type, default, help)``, in declaration order.

    The help text ends with the allowed range where one applies, e.g. ``"... Must be in [0, 1)."``.
    """
    return list(iter_options(AptuneConfig, ""))
