"""Every bad input listed in docs/bad-inputs.md gives exactly the message the table shows.

The table is the source of truth: each row's id names a scenario below, which builds the bad input
under a temporary directory and returns the command line. The command must fail with exit code 2
and its last line on stderr must be the row's message, with `{tmp}` standing for the directory.
"""

import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import transformers
import yaml

from aptune.cli import EXIT_BAD_INPUT, main
from aptune.shrink import save_pruned

from .conftest import TINY, needs_minilm, needs_scattertext, tiny_model, write_csv

DOC = Path(__file__).parents[1] / "docs" / "bad-inputs.md"
CONFIG = str(Path(__file__).parents[1] / "configs" / "minilm-rotten-tomatoes.yaml")
ROWS = [("a fine film", "pos"), ("a dull film", "neg"), ("great fun", "pos"), ("boring mess", "neg")]


def _train(tmp: Path, *sets: str, config: str = CONFIG) -> list[str]:
    return ["train", config, "--output-dir", str(tmp / "out"), "--no-progress", "--set", *sets]


def _data(tmp: Path, name: str, rows=ROWS, header=("text", "label")) -> str:
    return write_csv(tmp / name, rows, header)


def _file(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text, encoding="utf-8")
    return str(tmp / name)


def _bytes(tmp: Path, name: str, data: bytes) -> str:
    (tmp / name).write_bytes(data)
    return str(tmp / name)


def _tiny_run(tmp: Path, ctx: dict, *sets: str) -> list[str]:
    """Train the tiny random BERT for a few steps (fast), writing checkpoints."""
    return _train(
        tmp,
        f"model.name_or_path={ctx['tiny']}",
        "train.max_steps=3",
        "train.batch_size=8",
        "data.max_train_samples=64",
        "data.max_eval_samples=16",
        "data.max_length=32",
        "train.measure_speed=false",
        "train.checkpoint_every=1",
        *sets,
    )


def _checkpointed_run(tmp: Path, ctx: dict) -> Path:
    """A copy of a finished tiny run whose outputs were removed, as if it had been killed."""
    run = tmp / "run"
    shutil.copytree(ctx["run"], run)
    shutil.rmtree(run / "model")
    return run


def _damaged(tmp: Path, ctx: dict) -> list[str]:
    run = _checkpointed_run(tmp, ctx)
    for checkpoint in (run / "checkpoints").glob("step-*"):
        (checkpoint / "state.json").unlink()
    return ["train", "--resume", str(run)]


def _edited(tmp: Path, ctx: dict) -> list[str]:
    run = _checkpointed_run(tmp, ctx)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["learning_rate"] = 0.1
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return ["train", "--resume", str(run)]


def _no_checkpoints(tmp: Path, ctx: dict) -> list[str]:
    run = _checkpointed_run(tmp, ctx)
    shutil.rmtree(run / "checkpoints")
    return ["train", "--resume", str(run)]


def _gpt2(tmp: Path) -> str:
    transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2).save_pretrained(tmp / "gpt2")
    return str(tmp / "gpt2")


def _existing_output(tmp: Path) -> list[str]:
    (tmp / "out").mkdir()
    (tmp / "out" / "keep.txt").write_text("precious")
    return _train(tmp, "train.max_steps=2")


def _export(tmp: Path, ctx: dict) -> str:
    """A copy of the tiny run's exported classifier."""
    shutil.copytree(ctx["run"] / "model", tmp / "model")
    return str(tmp / "model")


def _other_export(tmp: Path, ctx: dict, kind: str, metadata: dict) -> str:
    """A tiny `kind` model exported with `metadata` and the tiny run's tokenizer."""
    out = save_pruned(tiny_model(kind), tmp / kind, metadata)
    transformers.AutoTokenizer.from_pretrained(ctx["tiny"]).save_pretrained(out)
    return str(out)


def _masked_lm_export(tmp: Path) -> str:
    """A tiny BERT masked LM saved like an aptune export (an architecture ONNX export refuses)."""
    return str(save_pruned(transformers.BertForMaskedLM(transformers.BertConfig(**TINY)), tmp / "mlm"))


def _eval(ctx: dict, data: str, *flags: str) -> list[str]:
    return ["eval", str(ctx["run"] / "model"), "--data", data, *flags]


def _onnx_export(tmp: Path, ctx: dict) -> str:
    """An ONNX export of the tiny run's classifier."""
    from aptune.onnx_export import export_onnx

    return str(export_onnx(_export(tmp, ctx), tmp / "onnx"))


def _damaged_model_dir(tmp: Path) -> list[str]:
    (tmp / "model").mkdir()
    (tmp / "model" / "aptune.json").write_text('{"format": "aptune.pruned", "version": 1')
    return ["info", str(tmp / "model")]


SCENARIOS: dict[str, Callable[[Path, dict], list[str]]] = {
    # config files and keys
    "config-missing": lambda tmp, ctx: ["train", str(tmp / "nope.yaml")],
    "config-bad-yaml": lambda tmp, ctx: ["train", _file(tmp, "c.yaml", "pruning: [1, 2\n")],
    "config-not-a-mapping": lambda tmp, ctx: ["train", _file(tmp, "c.yaml", "- 1\n- 2\n")],
    "key-misspelt": lambda tmp, ctx: _train(tmp, "pruning.target_sparsty=0.4"),
    "value-out-of-range": lambda tmp, ctx: _train(tmp, "pruning.target_sparsity=1.5"),
    "value-wrong-type": lambda tmp, ctx: _train(tmp, "train.batch_size=many"),
    "value-not-a-choice": lambda tmp, ctx: _train(tmp, "model.head=decoder"),
    "window-reversed": lambda tmp, ctx: _train(tmp, "pruning.start_step=0.6", "pruning.end_step=0.2"),
    "max-rank-below-rank": lambda tmp, ctx: _train(tmp, "model.adapter.rank=16", "tuning.max_rank=8"),
    "task-needs-other-head": lambda tmp, ctx: _train(tmp, "data.task_type=seq2seq"),
    # command-line flags
    "set-without-equals": lambda tmp, ctx: _train(tmp, "pruning.target_sparsity"),
    "no-config-no-resume": lambda tmp, ctx: ["train"],
    "resume-with-config": lambda tmp, ctx: ["train", CONFIG, "--resume", str(tmp)],
    "output-dir-not-empty": lambda tmp, ctx: _existing_output(tmp),
    # data
    "data-file-missing": lambda tmp, ctx: _train(tmp, f"data.train_file={tmp / 'x.csv'}"),
    "data-extension": lambda tmp, ctx: _train(tmp, f"data.train_file={_file(tmp, 'x.xlsx', 'a')}"),
    "data-column-missing": lambda tmp, ctx: _train(
        tmp, f"data.train_file={_data(tmp, 't.csv', header=('sentence', 'label'))}"
    ),
    "data-empty-text": lambda tmp, ctx: _train(
        tmp, f"data.train_file={_data(tmp, 't.csv', [*ROWS, ('  ', 'pos')])}"
    ),
    "data-one-class": lambda tmp, ctx: _train(
        tmp, f"data.train_file={_data(tmp, 't.csv', [(t, 'pos') for t, _ in ROWS])}"
    ),
    "data-bad-json-line": lambda tmp, ctx: _train(
        tmp,
        f"data.train_file={_file(tmp, 't.jsonl', json.dumps({'text': 'a', 'label': 1}) + chr(10) + '{oops')}",
    ),
    "label-words-count": lambda tmp, ctx: _train(
        tmp, "model.head=causal-lm", "data.label_words=[bad, so-so, good]", "data.max_train_samples=8"
    ),
    # models and model directories
    "model-unsupported": lambda tmp, ctx: _train(tmp, f"model.name_or_path={_gpt2(tmp)}"),
    "num-labels-mismatch": lambda tmp, ctx: _train(tmp, "model.num_labels=3", "data.max_train_samples=8"),
    "model-dir-not-aptune": lambda tmp, ctx: ["eval", str(tmp), "--data", "rotten_tomatoes"],
    "model-dir-damaged": lambda tmp, ctx: _damaged_model_dir(tmp),
    # aptune eval, predict and lm-eval
    "eval-data-missing": lambda tmp, ctx: _eval(ctx, str(tmp / "test.csv")),
    "eval-data-unknown": lambda tmp, ctx: _eval(ctx, "not a dataset"),
    "eval-column-missing": lambda tmp, ctx: _eval(ctx, _data(tmp, "t.csv", header=("sentence", "label"))),
    "eval-output-folder-missing": lambda tmp, ctx: _eval(
        ctx, _data(tmp, "t.csv"), "--output", str(tmp / "missing" / "x.json")
    ),
    "eval-output-is-folder": lambda tmp, ctx: _eval(ctx, _data(tmp, "t.csv"), "--output", str(tmp)),
    "predict-no-texts": lambda tmp, ctx: ["predict", _export(tmp, ctx)],
    "predict-file-missing": lambda tmp, ctx: ["predict", _export(tmp, ctx), "--file", str(tmp / "texts.txt")],
    "predict-file-not-utf8": lambda tmp, ctx: [
        "predict",
        _export(tmp, ctx),
        "--file",
        _bytes(tmp, "texts.txt", b"caf\xe9\n"),
    ],
    "predict-causal-lm": lambda tmp, ctx: [
        "predict",
        _other_export(tmp, ctx, "llama", {"objective": "CausalLm", "choices": None}),
        "a text",
    ],
    "predict-pair-classifier": lambda tmp, ctx: [
        "predict",
        _other_export(tmp, ctx, "bert", {"objective": "Classification", "is_pair": True}),
        "a text",
    ],
    "lm-eval-classifier": lambda tmp, ctx: ["lm-eval", _export(tmp, ctx), "--tasks", "arc_easy"],
    # aptune export and ONNX Runtime
    "export-not-aptune": lambda tmp, ctx: ["export", str(tmp), "--format", "onnx"],
    "export-unsupported-architecture": lambda tmp, ctx: [
        "export",
        _masked_lm_export(tmp),
        "--format",
        "onnx",
    ],
    "export-output-not-empty": lambda tmp, ctx: [
        "export",
        _export(tmp, ctx),
        "--format",
        "onnx",
        "--output",
        str(tmp),
    ],
    "onnx-not-installed": lambda tmp, ctx: ["export", _export(tmp, ctx), "--format", "onnx"],
    "eval-onnx-not-exported": lambda tmp, ctx: [
        "eval",
        _export(tmp, ctx),
        "--runtime",
        "onnx",
        "--data",
        "rotten_tomatoes",
    ],
    "eval-onnx-without-runtime": lambda tmp, ctx: [
        "eval",
        _onnx_export(tmp, ctx),
        "--data",
        "rotten_tomatoes",
    ],
    # checkpoints and resuming
    "resume-not-a-run": lambda tmp, ctx: ["train", "--resume", str(tmp)],
    "resume-no-checkpoint": _no_checkpoints,
    "resume-all-damaged": _damaged,
    "resume-config-edited": _edited,
    # training
    "loss-not-finite": lambda tmp, ctx: _tiny_run(tmp, ctx, "train.learning_rate=1e30"),
}

BLOCKED = {"onnx-not-installed": ("onnx", "onnxruntime")}
"""Scenarios run as if these modules were not installed (imports of them fail)."""
NEEDS_ONNX = {"export-output-not-empty", "eval-onnx-without-runtime", "export-unsupported-architecture"}
"""Scenarios that reach their check only with onnx and onnxruntime installed."""


def _table() -> dict[str, str]:
    """{id: message} from the rows of the doc's table."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\| `([a-z0-9-]+)` \| .* \| `(aptune [a-z-]+: error: .*)` \|", line)
        if match:
            rows[match.group(1)] = match.group(2).replace("\\|", "|")
    return rows


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, tiny_model_dir) -> dict:
    """The tiny model, and a finished tiny run with checkpoints (copied by the resume scenarios)."""
    tmp = tmp_path_factory.mktemp("bad-inputs")
    assert main(_tiny_run(tmp, {"tiny": tiny_model_dir})) == 0
    return {"tiny": tiny_model_dir, "run": tmp / "out"}


def test_the_table_lists_every_scenario_and_at_least_20():
    assert sorted(_table()) == sorted(SCENARIOS)
    assert len(SCENARIOS) >= 20


@needs_minilm
@needs_scattertext
@pytest.mark.parametrize("case", sorted(SCENARIOS))
def test_bad_input_gives_the_documented_message(case, ctx, tmp_path, capsys, monkeypatch):
    if case in NEEDS_ONNX and importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime not installed (pip install 'aptune[onnx]')")
    argv = SCENARIOS[case](tmp_path, ctx)
    for module in BLOCKED.get(case, ()):
        monkeypatch.setitem(sys.modules, module, None)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    assert "Traceback" not in err
    expected = _table()[case].replace("{tmp}", str(tmp_path))
    assert err.strip().splitlines()[-1] == expected
