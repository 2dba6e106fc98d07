"""Safe I/O: nothing is unpickled, remote code stays off unless asked for, outputs stay in place."""

import ast
import types
from pathlib import Path

import pytest
import transformers

from aptune.cli import eval_output
from aptune.config import AptuneConfig, apply_overrides
from aptune.train.setup import load_model

SOURCE = Path(__file__).parents[1] / "src" / "aptune"


def _calls_and_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module or ""}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names.add(f"{node.value.id}.{node.attr}")
    return names


def test_no_module_unpickles_anything():
    banned = {"pickle", "dill", "cloudpickle", "torch.load", "joblib", "shelve", "marshal"}
    for path in SOURCE.rglob("*.py"):
        found = _calls_and_imports(path) & banned
        assert not found, f"{path.relative_to(SOURCE)} uses {sorted(found)}"


@pytest.mark.parametrize("remote", [False, True])
def test_remote_code_is_off_unless_the_config_says_so(tiny_model_dir, monkeypatch, remote):
    assert AptuneConfig().model.trust_remote_code is False
    seen = []
    for cls in (
        transformers.AutoConfig,
        transformers.AutoTokenizer,
        transformers.AutoModelForSequenceClassification,
    ):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, **kwargs):
            seen.append((klass.__name__, kwargs.get("trust_remote_code")))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    cfg = apply_overrides(
        AptuneConfig(),
        [f"model.name_or_path={tiny_model_dir}", f"model.trust_remote_code={str(remote).lower()}"],
    )
    objective = types.SimpleNamespace(
        auto_class=transformers.AutoModelForSequenceClassification,
        label_names=["neg", "pos"],
        model_kwargs=lambda: {"num_labels": 2},
        bind=lambda model: None,
    )
    load_model(cfg.model, objective)
    loads = {name for name, _ in seen}
    assert {"AutoConfig", "AutoTokenizer", "AutoModelForSequenceClassification"} <= loads
    assert all(flag is remote for _, flag in seen)  # every load passes the config's choice


@pytest.mark.parametrize(
    ("data", "name"),
    [
        ("../../escape", "eval-escape-test.json"),
        ("a/../../b", "eval-a-b-test.json"),
        ("glue/sst2", "eval-glue-sst2-test.json"),
    ],
)
def test_eval_output_stays_next_to_the_model(tmp_path, data, name):
    out = eval_output(str(tmp_path / "run" / "model"), data, "test")
    assert out == tmp_path / "run" / name
