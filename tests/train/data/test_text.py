"""Plain text cut into blocks for language modelling."""

import pytest

from aptune.train.data import DataError, read_text_blocks

TEXT = (
    "First line.\nSecond line, a little longer.\n\n\n"
    + "A very long line " * 8
    + "\n   \nshort\nsupercalifragilisticexpialidociousandmore\nend"
)


def test_text_blocks_respect_max_chars_and_keep_all_text():
    blocks = read_text_blocks(TEXT, max_chars=30)
    responses = [b.response for b in blocks]
    assert all(b.prompt == "" and b.label is None for b in blocks)
    assert all(0 < len(r) <= 30 for r in responses)
    assert "".join("".join(responses).split()) == "".join(TEXT.split())
    # lines that fit are never split; the long line is cut at spaces, the overlong word inside itself
    assert responses == [
        "First line.",
        "Second line, a little longer.",
        "A very long line A very long",
        "line A very long line A very",
        "long line A very long line A",
        "very long line A very long",
        "line A very long line\nshort",
        "supercalifragilisticexpialidoc",
        "iousandmore\nend",
    ]


def test_text_blocks_pack_lines_up_to_max_chars():
    lines = [f"line {i}" for i in range(10)]
    blocks = read_text_blocks("\n".join(lines), max_chars=20)
    assert [b.response for b in blocks] == ["\n".join(lines[i : i + 3]) for i in range(0, 10, 3)]


def test_text_blocks_read_a_path(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert read_text_blocks(path, 50) == read_text_blocks(TEXT, 50)


def test_text_blocks_errors(tmp_path):
    with pytest.raises(ValueError, match="max_chars"):
        read_text_blocks("text", 0)
    with pytest.raises(DataError, match="no text"):
        read_text_blocks("\n \n", 10)
    with pytest.raises(DataError, match=r"nothing\.txt"):
        read_text_blocks(tmp_path / "nothing.txt", 10)
