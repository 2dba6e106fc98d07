"""Safe I/O: nothing is unpickled, remote code stays off unless asked for, outputs stay in place."""

import ast
from pathlib import Path

import pytest

from aptune.cli import eval_output
from aptune.config import AptuneConfig

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


def test_remote_code_is_off_unless_the_config_says_so():
    assert AptuneConfig().model.trust_remote_code is False
    loop = (SOURCE / "train" / "loop.py").read_text()
    assert loop.count("trust_remote_code=remote") == 3  # config, model and tokenizer loads
    assert "trust_remote_code=True" not in "".join(p.read_text() for p in SOURCE.rglob("*.py"))


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
