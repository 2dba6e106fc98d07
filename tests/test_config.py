"""Tests for aptune.config: schema defaults, validation, files, overrides and fuzzed input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aptune.config import (
    AdapterConfig,
    AptuneConfig,
    ConfigError,
    ModelConfig,
    PruningConfig,
    apply_overrides,
    describe_options,
    load_config,
    save_config,
)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        *sections, leaf = dotted.split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return nested


def _from_flat(**flat: Any) -> AptuneConfig:
    """Build a config from dotted keys written with ``__`` for ``.``, e.g. ``pruning__align=4``."""
    return AptuneConfig.from_dict(_nest({k.replace("__", "."): v for k, v in flat.items()}))


LEAF_KEYS = sorted(_flatten(AptuneConfig().to_dict()))

NON_DEFAULT = {
    "model": {
        "name_or_path": "bert-base-uncased",
        "num_labels": 3,
        "trust_remote_code": True,
        "dtype": "bfloat16",
        "adapter": {
            "mha_components": ["query", "key", "value", "output"],
            "ffn_components": ["intermediate", "output"],
            "rank": 16,
            "alpha": 32.0,
            "dropout": 0.1,
            "init": "gaussian",
        },
    },
    "pruning": {
        "target_sparsity": 0.4,
        "salience_type": "activation-gradient",
        "update_frequency": 50,
        "mask_decay_rate": 0.05,
        "start_step": 100,
        "end_step": 2000,
        "align": 1,
        "prune_hidden": False,
        "uniform_layers": True,
    },
    "tuning": {"enabled": False, "max_rank": 16, "max_tuning_ratio": 2.5, "momentum_importance": 0.5},
    "distill": {"enabled": False, "pred_weight": 0.5, "layer_weight": 0.0, "temperature": 1.0},
    "train": {
        "epochs": 1.5,
        "max_steps": 5000,
        "learning_rate": 1e-5,
        "head_learning_rate": 2e-3,
        "mixed_precision": "no",
        "checkpoint_every": 500,
        "output_dir": "runs/1e5",
    },
    "data": {
        "task": "",
        "train_file": "train.jsonl",
        "validation_file": "dev.jsonl",
        "text_pair_column": "hypothesis",
        "max_length": 256,
        "max_train_samples": 1000,
    },
}


# ----------------------------------------------------------------------------------------------------
# Defaults and derived values
# ----------------------------------------------------------------------------------------------------


def test_defaults_match_schema() -> None:
    cfg = AptuneConfig()
    assert cfg.model.name_or_path == "builtin:minilm"
    assert cfg.model.num_labels is None
    assert cfg.model.dtype == "float32"
    assert cfg.model.adapter.mha_components == ["query", "value"]
    assert cfg.model.adapter.ffn_components == ["intermediate"]
    assert (cfg.model.adapter.rank, cfg.model.adapter.alpha) == (8, 16.0)
    assert cfg.model.adapter.init == "kaiming"
    p = cfg.pruning
    assert p.enabled and p.target_sparsity == 0.6 and p.scheduler == "cubic"
    assert p.salience_type == "outlier-aware" and p.use_kurtosis and p.kurtosis_weight == 1.0
    assert (p.update_frequency, p.mask_decay_rate, p.momentum_salience) == (100, 0.01, 0.85)
    assert (p.start_step, p.end_step, p.align) == (0.1, 0.5, 8)
    assert (p.min_heads_per_layer, p.min_neurons_per_layer) == (1, 1)
    assert p.prune_hidden and not p.uniform_layers
    assert (cfg.tuning.enabled, cfg.tuning.max_rank, cfg.tuning.max_tuning_ratio) == (True, 64, 4.0)
    assert cfg.tuning.momentum_importance == 0.85
    d = cfg.distill
    assert (d.pred_weight, d.layer_weight, d.temperature, d.pred_scale) == (0.1, 0.9, 2 / 3, 10.0)
    assert (d.teacher, d.teacher_masks, d.resample_layers) == ("best", True, False)
    assert (d.after_pruning, d.recovery, d.recovery_lr_scale) == (0.5, True, 0.1)
    t = cfg.train
    assert (t.epochs, t.max_steps, t.batch_size, t.eval_batch_size) == (3.0, None, 32, 64)
    assert (t.learning_rate, t.warmup_ratio, t.seed, t.mixed_precision) == (5e-4, 0.06, 42, "no")
    assert (t.keep_checkpoints, t.output_dir) == (2, "runs/aptune")
    assert (cfg.data.task, cfg.data.max_length, cfg.data.text_column) == ("rotten_tomatoes", 128, "text")


def test_empty_dict_gives_defaults_and_sections_are_independent() -> None:
    a, b = AptuneConfig.from_dict({}), AptuneConfig()
    assert a == b
    a.model.adapter.mha_components.append("key")
    assert b.model.adapter.mha_components == ["query", "value"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, True),
        ({"use_kurtosis": False}, False),
        ({"salience_type": "activation-gradient"}, False),
        ({"kurtosis_weight": 0.0}, False),
    ],
)
def test_kurtosis_enabled(overrides: dict[str, Any], expected: bool) -> None:
    assert PruningConfig(**overrides).kurtosis_enabled is expected


def test_config_error_is_value_error_with_key() -> None:
    with pytest.raises(ValueError) as info:
        AptuneConfig.from_dict({"pruning": {"align": 0}})
    assert isinstance(info.value, ConfigError)
    assert info.value.key == "pruning.align"


# ----------------------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------------------


def test_dict_round_trip_and_json_serialisable() -> None:
    cfg = AptuneConfig.from_dict(NON_DEFAULT)
    data = cfg.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert AptuneConfig.from_dict(data) == cfg
    assert cfg != AptuneConfig()


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json", ".YAML"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    cfg = AptuneConfig.from_dict(NON_DEFAULT)
    path = tmp_path / "sub" / f"run{suffix}"
    save_config(cfg, path)
    loaded = load_config(path)
    assert loaded == cfg
    assert isinstance(loaded.pruning.start_step, int)
    assert loaded.data.task == "" and loaded.train.output_dir == "runs/1e5"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_saved_yaml_reads_back_with_plain_safe_load(tmp_path: Path) -> None:
    cfg = AptuneConfig.from_dict(NON_DEFAULT)
    path = tmp_path / "run.yaml"
    save_config(cfg, path)
    assert yaml.safe_load(path.read_text()) == cfg.to_dict()


def test_save_config_replaces_existing_file_and_refuses_invalid(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    save_config(AptuneConfig(), path)
    cfg = AptuneConfig.from_dict({"pruning": {"target_sparsity": 0.3}})
    save_config(cfg, path)
    assert load_config(path) == cfg
    cfg.pruning.target_sparsity = 1.5
    with pytest.raises(ConfigError, match=r"pruning\.target_sparsity"):
        save_config(cfg, path)
    assert load_config(path).pruning.target_sparsity == 0.3
    with pytest.raises(ConfigError, match="extension"):
        save_config(AptuneConfig(), tmp_path / "run.toml")


def test_yaml_exponent_floats_and_yes_no(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  learning_rate: 5e-4\n  head_learning_rate: 1E3\n  mixed_precision: no\n")
    cfg = load_config(path)
    assert cfg.train.learning_rate == 5e-4 and cfg.train.head_learning_rate == 1000.0
    assert cfg.train.mixed_precision == "no"


def test_empty_and_comment_only_files_give_defaults(tmp_path: Path) -> None:
    for name, text in [("a.yaml", ""), ("b.yml", "# nothing\n"), ("c.json", "  \n"), ("d.yaml", "---\n")]:
        path = tmp_path / name
        path.write_text(text)
        assert load_config(path) == AptuneConfig()


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("\ufeffmodel:\n  adapter:\n    rank: 4\n")
    cfg = load_config(path)
    assert cfg.model.adapter.rank == 4 and cfg.model.adapter.alpha == 16.0 and cfg.pruning == PruningConfig()


# ----------------------------------------------------------------------------------------------------
# Unknown keys
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "key", "suggestion"),
    [
        ({"pruning": {"target_sparsty": 0.5}}, "pruning.target_sparsty", "'pruning.target_sparsity'"),
        ({"prunning": {}}, "prunning", "'pruning'"),
        ({"model": {"adapter": {"rnak": 4}}}, "model.adapter.rnak", "'model.adapter.rank'"),
        ({"train": {"rank": 4}}, "train.rank", "'model.adapter.rank'"),
    ],
)
def test_unknown_key_suggests_closest(doc: dict[str, Any], key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as info:
        AptuneConfig.from_dict(doc)
    assert info.value.key == key
    assert f"unknown key '{key}'" in str(info.value)
    assert f"did you mean {suggestion}" in str(info.value)


def test_unknown_key_without_close_match_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        AptuneConfig.from_dict({"distill": {"zzz": 1}})
    message = str(info.value)
    assert "'distill.zzz'" in message and "did you mean" not in message
    assert "pred_weight" in message and "temperature" in message
    with pytest.raises(ConfigError, match=r"top level.*model, pruning, tuning"):
        AptuneConfig.from_dict({"qqqqq": {}})


def test_first_problem_in_input_order_is_reported() -> None:
    doc = {"train": {"batch_size": 0}, "pruning": {"align": "x", "target_sparsty": 1}}
    with pytest.raises(ConfigError) as info:
        AptuneConfig.from_dict(doc)
    assert info.value.key == "train.batch_size"  # sections in the order given
    with pytest.raises(ConfigError) as info:
        AptuneConfig.from_dict({"pruning": doc["pruning"]})
    assert info.value.key == "pruning.target_sparsty"  # unknown keys before bad values
    with pytest.raises(ConfigError) as info:
        AptuneConfig.from_dict({"distill": {"recovery": {}, "after_pruning": 38}})
    assert info.value.key == "distill.after_pruning"  # then options in declaration order


def test_direct_construction_names_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'pruning\.target_sparsty'; did you mean"):
        PruningConfig(target_sparsty=0.5)


# ----------------------------------------------------------------------------------------------------
# Ranges, choices, types
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("pruning.target_sparsity", 1.0, "in [0, 1)"),
        ("pruning.target_sparsity", -0.1, "in [0, 1)"),
        ("pruning.update_frequency", 0, ">= 1"),
        ("pruning.mask_decay_rate", 0.0, "in (0, 1]"),
        ("pruning.momentum_salience", 1, "in [0, 1)"),
        ("pruning.kurtosis_weight", -1, ">= 0"),
        ("pruning.start_step", -5, "int step >= 0"),
        ("pruning.end_step", 1.5, "fraction of total steps in [0, 1]"),
        ("model.num_labels", 1, ">= 2 or null"),
        ("model.adapter.rank", 0, ">= 1"),
        ("model.adapter.alpha", 0.0, "> 0"),
        ("model.adapter.dropout", 1.0, "in [0, 1)"),
        ("model.name_or_path", " ", "non-empty string"),
        ("tuning.max_tuning_ratio", 0.5, ">= 1"),
        ("tuning.momentum_importance", 1.0, "in [0, 1)"),
        ("distill.temperature", 0, "> 0"),
        ("train.epochs", 0, "> 0"),
        ("train.max_steps", 0, ">= 1 or null"),
        ("train.head_learning_rate", 0.0, "> 0 or null"),
        ("train.warmup_ratio", 1.0, "in [0, 1)"),
        ("train.keep_checkpoints", 0, ">= 1"),
        ("data.max_length", 7, ">= 8"),
        ("data.max_eval_samples", 0, ">= 1 or null"),
    ],
)
def test_out_of_range_names_key_and_range(key: str, value: Any, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        AptuneConfig.from_dict(_nest({key: value}))
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")
    assert allowed in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "choices"),
    [
        ("train.mixed_precision", "fp32", "'no', 'fp16', 'bf16'"),
        ("model.dtype", "float64", "'float32', 'bfloat16', 'float16'"),
        ("pruning.scheduler", "linear", "'cubic'"),
        ("pruning.salience_type", "magnitude", "'outlier-aware', 'activation-gradient'"),
        ("model.adapter.init", "zeros", "'kaiming', 'gaussian'"),
        ("model.adapter.mha_components", ["query", "intermediate"], "'query', 'key', 'value', 'output'"),
        ("model.adapter.ffn_components", ["query"], "'intermediate', 'output'"),
    ],
)
def test_literal_fields_name_choices(key: str, value: Any, choices: str) -> None:
    with pytest.raises(ConfigError) as info:
        AptuneConfig.from_dict(_nest({key: value}))
    assert info.value.key == key
    assert f"one of {choices}" in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("train.batch_size", True, "expected int, got bool"),
        ("pruning.target_sparsity", "0.5", "expected float, got str"),
        ("pruning.target_sparsity", False, "expected float, got bool"),
        ("pruning.align", 8.0, "expected int, got float"),
        ("pruning.start_step", True, "expected int | float, got bool"),
        ("pruning.enabled", 1, "expected bool, got int"),
        ("model.name_or_path", 3, "expected str, got int"),
        ("model.adapter.mha_components", "query", "expected list["),
        ("model.adapter.mha_components", [1], "got 1"),
        ("model.adapter.mha_components", ["query", "query"], "duplicates"),
        ("train.learning_rate", None, "must not be null"),
        ("train.learning_rate", math.nan, "finite"),
        ("train.epochs", math.inf, "finite"),
        ("train.epochs", 10**400, "finite"),
        ("train.max_steps", [1], "expected int | None, got list"),
        ("train.head_learning_rate", "1e-3", "expected float | None, got str"),
    ],
)
def test_type_errors(key: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        AptuneConfig.from_dict(_nest({key: value}))
    assert info.value.key == key
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"pruning": 0.5}, "pruning"),
        ({"model": {"adapter": None}}, "model.adapter"),
        ({"train": ["batch_size"]}, "train"),
        ({1: {}}, ""),
        ({"data": {None: 1}}, "data"),
    ],
)
def test_structure_errors(doc: Any, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        AptuneConfig.from_dict(doc)
    assert info.value.key == key


@pytest.mark.parametrize("doc", [[], "model: {}", None, 3])
def test_top_level_must_be_mapping(doc: Any) -> None:
    with pytest.raises(ConfigError, match="top-level config must be a mapping"):
        AptuneConfig.from_dict(doc)


def test_int_accepted_for_float_and_normalised() -> None:
    cfg = _from_flat(train__learning_rate=1, distill__temperature=3, pruning__target_sparsity=0)
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert isinstance(cfg.distill.temperature, float) and isinstance(cfg.pruning.target_sparsity, float)


def test_step_fields_keep_int_and_float_kinds() -> None:
    cfg = _from_flat(pruning__start_step=0, pruning__end_step=1.0)
    assert type(cfg.pruning.start_step) is int and type(cfg.pruning.end_step) is float


def test_direct_construction_and_validate_check_values() -> None:
    with pytest.raises(ConfigError) as info:
        PruningConfig(target_sparsity=2.0)
    assert info.value.key == "pruning.target_sparsity"
    with pytest.raises(ConfigError, match=r"model\.adapter\.rank"):
        ModelConfig(adapter=AdapterConfig(rank=-1))
    cfg = AptuneConfig()
    cfg.train.batch_size = 0
    with pytest.raises(ConfigError, match=r"train\.batch_size: must be >= 1"):
        cfg.validate()


# ----------------------------------------------------------------------------------------------------
# Cross-field checks
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end"), [(0.5, 0.5), (0.6, 0.2), (100, 100), (200, 50)])
def test_end_step_must_follow_start_step(start: float, end: float) -> None:
    with pytest.raises(ConfigError) as info:
        _from_flat(pruning__start_step=start, pruning__end_step=end)
    assert info.value.key == "pruning.end_step"
    assert "must be > pruning.start_step" in str(info.value)


@pytest.mark.parametrize(("start", "end"), [(0.0, 1.0), (0, 1), (500, 0.5), (0.9, 10)])
def test_valid_step_windows(start: float, end: float) -> None:
    cfg = _from_flat(pruning__start_step=start, pruning__end_step=end)
    assert (cfg.pruning.start_step, cfg.pruning.end_step) == (start, end)


def test_max_rank_must_cover_initial_rank() -> None:
    with pytest.raises(ConfigError) as info:
        _from_flat(model__adapter__rank=16, tuning__max_rank=8)
    assert info.value.key == "tuning.max_rank"
    assert "must be >= model.adapter.rank (16), got 8" in str(info.value)
    assert _from_flat(model__adapter__rank=16, tuning__max_rank=16).tuning.max_rank == 16


@pytest.mark.parametrize(
    ("task_type", "head", "fragment"),
    [
        ("instruction", "classifier", "'instruction' needs a causal LM"),
        ("language-modeling", "seq2seq", "'language-modeling' needs a causal LM"),
        ("seq2seq", "causal-lm", "'seq2seq' needs an encoder-decoder; set model.head to 'seq2seq'"),
    ],
)
def test_task_type_needs_a_matching_head(task_type: str, head: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        _from_flat(data__task_type=task_type, model__head=head)
    assert info.value.key == "model.head" and fragment in str(info.value)


@pytest.mark.parametrize(("task_type", "head"), [("seq2seq", "seq2seq"), ("classification", "seq2seq")])
def test_seq2seq_head_combinations(task_type: str, head: str) -> None:
    cfg = _from_flat(data__task_type=task_type, model__head=head)
    assert (cfg.data.task_type, cfg.model.head) == (task_type, head)


def test_empty_task_requires_train_file() -> None:
    with pytest.raises(ConfigError) as info:
        _from_flat(data__task="")
    assert info.value.key == "data.train_file"
    assert _from_flat(data__task="", data__train_file="t.csv").data.train_file == "t.csv"


# ----------------------------------------------------------------------------------------------------
# Overrides
# ----------------------------------------------------------------------------------------------------


def test_apply_overrides_values() -> None:
    base = AptuneConfig()
    cfg = apply_overrides(
        base,
        [
            "model.adapter.rank=16",
            "model.adapter.mha_components=[query, key, value]",
            "model.num_labels=3",
            "model.num_labels=null",
            "pruning.target_sparsity = 0.5",
            "pruning.enabled=false",
            "train.learning_rate=1e-4",
            "train.mixed_precision=no",
            "data.task=glue/sst2",
            "train.output_dir=runs/a=b",
        ],
    )
    assert cfg.model.adapter.rank == 16
    assert cfg.model.adapter.mha_components == ["query", "key", "value"]
    assert cfg.model.num_labels is None
    assert cfg.pruning.target_sparsity == 0.5 and cfg.pruning.enabled is False
    assert cfg.train.learning_rate == 1e-4 and cfg.train.mixed_precision == "no"
    assert cfg.data.task == "glue/sst2" and cfg.train.output_dir == "runs/a=b"
    assert base == AptuneConfig()  # input untouched
    assert apply_overrides(base, []) == base and apply_overrides(base, []) is not base


def test_apply_overrides_validate_only_the_final_result() -> None:
    cfg = apply_overrides(AptuneConfig(), ["pruning.start_step=0.7", "pruning.end_step=0.9"])
    assert (cfg.pruning.start_step, cfg.pruning.end_step) == (0.7, 0.9)
    with pytest.raises(ConfigError, match=r"tuning\.max_rank"):
        apply_overrides(AptuneConfig(), ["model.adapter.rank=128"])


@pytest.mark.parametrize(
    "override", ["model.adapter.rank", "=3", "  =3", "model..rank=3", ".rank=3", "model.adapter.=3"]
)
def test_malformed_overrides(override: str) -> None:
    with pytest.raises(ConfigError, match="malformed override"):
        apply_overrides(AptuneConfig(), [override])


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("pruning.target_sparsty=0.5", "pruning.target_sparsty", "did you mean 'pruning.target_sparsity'"),
        ("prunning.target_sparsity=0.5", "prunning", "did you mean 'pruning'"),
        ("model.adaptor.rank=4", "model.adaptor", "did you mean 'model.adapter'"),
        ("pruning.align.x=4", "pruning.align", "is an option, not a section"),
        ("model.adapter=4", "model.adapter", "is a section"),
        ("train.batch_size=[1", "train.batch_size", "cannot parse"),
        ("train.batch_size=big", "train.batch_size", "expected int, got str"),
    ],
)
def test_bad_overrides(override: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(AptuneConfig(), [override])
    assert info.value.key == key
    assert fragment in str(info.value)


# ----------------------------------------------------------------------------------------------------
# load_config errors
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("bad.yaml", "pruning: [unclosed\n", "invalid YAML"),
        ("bad.yaml", "a: 1\n---\nb: 2\n", "invalid YAML"),
        ("bad.yaml", "train: !!python/object/apply:os.system [echo]\n", "invalid YAML"),
        ("bad.yaml", "data:\n  task: 2020-13-45\n", "invalid YAML"),
        ("bad.yaml", "[" * 1500, "invalid YAML"),
        ("bad.json", '{"pruning": ', "invalid JSON"),
        ("bad.json", "[" * 100000, "invalid JSON"),
        ("list.yaml", "- model\n- pruning\n", "top-level config must be a mapping"),
        ("scalar.json", "3", "top-level config must be a mapping"),
        ("run.toml", "[model]\n", "unsupported config file extension '.toml'"),
        ("noext", "model: {}\n", "unsupported config file extension"),
    ],
)
def test_load_config_bad_files(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert info.value.key == ""


def test_load_config_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "dir.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"data:\n  task: caf\xe9\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "latin1.yaml")


def test_load_config_invalid_option_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("pruning:\n  target_sparsity: 1.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "pruning.target_sparsity"
    assert str(info.value).startswith(f"{path}: pruning.target_sparsity: must be in [0, 1)")


# ----------------------------------------------------------------------------------------------------
# describe_options
# ----------------------------------------------------------------------------------------------------


def test_describe_options_covers_every_leaf() -> None:
    options = describe_options()
    keys = [key for key, *_ in options]
    assert sorted(keys) == LEAF_KEYS
    assert len(keys) == len(set(keys))
    assert {"pruning.target_sparsity", "model.adapter.rank", "train.output_dir"} <= set(keys)
    defaults = _flatten(AptuneConfig().to_dict())
    for key, type_str, default, text in options:
        assert default == defaults[key], key
        assert type_str and text.strip(), key
    by_key = {key: (type_str, text) for key, type_str, _, text in options}
    assert by_key["pruning.target_sparsity"] == (
        "float",
        "Fraction of prunable parameters removed by the end of pruning. Must be in [0, 1).",
    )
    assert by_key["train.max_steps"][0] == "int | None"
    assert by_key["pruning.start_step"][0] == "int | float"
    assert by_key["train.mixed_precision"][0] == "Literal['no', 'fp16', 'bf16']"


# ----------------------------------------------------------------------------------------------------
# Fuzzing: only AptuneConfig or ConfigError may come out
# ----------------------------------------------------------------------------------------------------

KEY_PARTS = sorted({part for key in LEAF_KEYS for part in key.split(".")})
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
plausible = (
    st.sampled_from(
        [
            "query",
            "key",
            "value",
            "output",
            "intermediate",
            "no",
            "bf16",
            "cubic",
            "gaussian",
            "glue/sst2",
            "",
        ]
    )
    | st.floats(min_value=-1, max_value=3)
    | st.integers(min_value=-2, max_value=80)
)
json_values = st.recursive(
    json_scalars | plausible,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
doc_keys = st.sampled_from(KEY_PARTS) | st.text(max_size=12) | st.integers() | st.none()
random_documents = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(doc_keys, inner, max_size=5),
    max_leaves=25,
)
mutated_defaults = st.dictionaries(st.sampled_from(LEAF_KEYS), json_values, max_size=4).map(_nest)


def _from_dict_or_config_error(doc: Any) -> None:
    try:
        cfg = AptuneConfig.from_dict(doc)
    except ConfigError as err:
        assert isinstance(err.key, str) and str(err)
    else:
        assert AptuneConfig.from_dict(cfg.to_dict()) == cfg


@settings(max_examples=200, deadline=None)
@given(random_documents | mutated_defaults)
def test_from_dict_fuzz_raises_only_config_error(doc: Any) -> None:
    _from_dict_or_config_error(doc)


yaml_tokens = st.sampled_from(
    [
        "model", "pruning", "adapter", "rank", "target_sparsity", "start_step", "mha_components", ":", ": ",
        " ", "\n", "  ", "- ", "[", "]", "{", "}", ",", "0.5", "1e-3", "-1", "8", "null", "true", "no", "'",
        '"', "&a ", "*a", "!!python/object:os.system", "!!binary ", "? ", "---", "#", "2020-13-45", "query",
        "<<: ", "%YAML 1.2\n", "\t", ".inf", "0x1F", "1:20",
    ]
)  # fmt: skip
yaml_texts = st.lists(yaml_tokens, max_size=30).map("".join) | st.text(
    alphabet=st.characters(codec="utf-8"), max_size=80
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=yaml_texts, suffix=st.sampled_from([".yaml", ".json"]))
def test_load_config_fuzz_raises_only_config_error(tmp_path: Path, text: str, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        cfg = load_config(path)
    except ConfigError as err:
        assert str(err)
    else:
        assert isinstance(cfg, AptuneConfig)
