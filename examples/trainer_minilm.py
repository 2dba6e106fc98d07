"""APT in a plain `transformers.Trainer` script: MiniLM on Rotten Tomatoes, 60% of the attention and
FFN weights pruned while LoRA-style adapters train, exported in `aptune train`'s format.

    python examples/trainer_minilm.py                      # 1 epoch, about 5 minutes on 2 CPU cores
    python examples/trainer_minilm.py --max-steps 40 --train-samples 1280   # a quick look

The lines marked `# APT` are all that differ from the same script without pruning. The model and the
reviews ship inside PyPI packages (aptune's built-in assets); with the network, any hub name works.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import transformers

import aptune  # APT
from aptune.assets import builtin_model_path
from aptune.train.data import rotten_tomatoes

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "minilm-rotten-tomatoes.yaml"


class Reviews(torch.utils.data.Dataset):
    """Tokenised reviews with their labels."""

    def __init__(self, examples, tokenizer, limit: int | None):
        examples = examples[:limit]
        self.enc = tokenizer([e.text for e in examples], truncation=True, max_length=64)
        self.labels = [e.label for e in examples]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {
            "input_ids": self.enc["input_ids"][i],
            "attention_mask": self.enc["attention_mask"][i],
            "labels": self.labels[i],
        }


def accuracy(prediction: transformers.EvalPrediction) -> dict[str, float]:
    return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs/trainer-minilm")
    parser.add_argument(
        "--max-steps", type=int, default=-1, help="stop after this many steps (-1: one epoch)"
    )
    parser.add_argument("--train-samples", type=int, default=None, help="use the first N training reviews")
    parser.add_argument(
        "--eval-samples", type=int, default=None, help="use the first N validation/test reviews"
    )
    args = parser.parse_args()

    name = str(builtin_model_path("minilm"))  # or "sentence-transformers/all-MiniLM-L6-v2"
    tokenizer = transformers.AutoTokenizer.from_pretrained(name)
    labels = {0: "negative", 1: "positive"}
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        name, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    apt = aptune.prepare(model, CONFIG)  # APT: adapters, masks and salience (60% sparsity)

    data = rotten_tomatoes()
    train = Reviews(data["train"], tokenizer, args.train_samples)
    dev = Reviews(data["validation"], tokenizer, args.eval_samples)
    test = Reviews(data["test"], tokenizer, args.eval_samples)
    training = transformers.TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=1,
        max_steps=args.max_steps,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=1e-3,
        warmup_steps=0.06,  # a fraction of the steps
        eval_strategy="steps",
        eval_steps=100,
        metric_for_best_model="accuracy",
        save_strategy="no",
        logging_steps=20,
        report_to=["tensorboard"],  # APT's sparsity, ranks and memory are logged as apt/...
    )
    trainer = aptune.AptTrainer(  # APT: instead of transformers.Trainer
        model=model,
        args=training,
        train_dataset=train,
        eval_dataset=dev,
        data_collator=transformers.DataCollatorWithPadding(tokenizer, pad_to_multiple_of=16),
        compute_metrics=accuracy,
        callbacks=[apt],  # APT
    )
    trainer.train()
    metrics = trainer.evaluate(test, metric_key_prefix="test")  # the pruned model
    print(metrics)
    model_dir = apt.export(Path(args.output_dir) / "model", tokenizer, max_length=64, metrics=metrics)  # APT
    print(aptune.model_info(model_dir))


if __name__ == "__main__":
    main()
