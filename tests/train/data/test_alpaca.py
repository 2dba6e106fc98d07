"""Alpaca instruction data."""

import json
import re

import pytest

from aptune.train.data import ALPACA_PROMPT, ALPACA_PROMPT_NO_INPUT, DataError, LmExample, read_alpaca

ALPACA_RECORDS = [
    {"instruction": "Give a synonym.", "input": "happy", "output": "glad"},
    {"instruction": "Name a {colour}.", "output": "Red is a colour."},
    {"instruction": "Count to two.", "input": "  ", "output": "one, two"},
]

ALPACA_EXPECTED = [
    LmExample(
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nGive a synonym.\n\n### Input:\nhappy\n\n### Response:\n",
        "glad",
    ),
    LmExample(
        "Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request.\n\n### Instruction:\nName a {colour}.\n\n### Response:\n",
        "Red is a colour.",
    ),
    LmExample(ALPACA_PROMPT_NO_INPUT.format(instruction="Count to two."), "one, two"),
]


def test_alpaca_templates_are_the_standard_ones():
    assert ALPACA_PROMPT.format(instruction="I", input="X").endswith(
        "### Instruction:\nI\n\n### Input:\nX\n\n### Response:\n"
    )
    assert ALPACA_PROMPT_NO_INPUT.startswith("Below is an instruction that describes a task. Write")


def test_read_alpaca_json_list(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(ALPACA_RECORDS, indent=2), encoding="utf-8")
    assert read_alpaca(path) == ALPACA_EXPECTED
    assert read_alpaca(str(path)) == ALPACA_EXPECTED


@pytest.mark.parametrize("name", ["alpaca.jsonl", "alpaca.json"])
def test_read_alpaca_json_lines(tmp_path, name):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in ALPACA_RECORDS) + "\n\n", encoding="utf-8")
    assert read_alpaca(path) == ALPACA_EXPECTED


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.json", '[{"output": "x"}]', "record 1 of '{path}' has no 'instruction'"),
        ("a.json", '[{"instruction": "i", "output": "o"}, {"instruction": "i"}]', "record 2 .* 'output'"),
        ("a.jsonl", '{"instruction": "i", "output": "o"}\n\n{"instruction": "i", "output": " "}', "line 3"),
        ("a.json", '[{"instruction": "i", "output": ""}]', "empty 'output'"),
        ("a.json", '[{"instruction": "i", "input": 3, "output": "o"}]', "'input' is a int"),
        ("a.json", '[{"instruction": "i", "output": "o"},]', "malformed JSON in '{path}' at line 1"),
        ("a.jsonl", '{"instruction": "i", "output": "o"}\n{"instruction": ', "malformed JSON on line 2"),
        ("a.json", '{"data": [{"instruction": "i", "output": "o"}]}', "holds a JSON dict, not a list"),
        ("a.json", '["instruction"]', "record 1 of '{path}' is a str, not a JSON object"),
        ("a.json", "[]", "'{path}' has no records"),
        ("a.jsonl", "\n  \n", "'{path}' has no records"),
    ],
)
def test_read_alpaca_errors_name_file_and_record(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=expected.replace("{path}", re.escape(str(path)))):
        read_alpaca(path)


def test_read_alpaca_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"cannot read .*missing\.json"):
        read_alpaca(tmp_path / "missing.json")
