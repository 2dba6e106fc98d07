"""Helpers shared by the data reader tests."""

from pathlib import Path
from typing import Any

from aptune.config import DataConfig
from aptune.train.data import Example


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def csv_file(tmp_path: Path, name: str, rows: list[tuple[str, str]], header: str = "text,label") -> str:
    return write(tmp_path, name, header + "\n" + "".join(f"{t},{y}\n" for t, y in rows))


def local(train: str, **kwargs: Any) -> DataConfig:
    return DataConfig(task="", train_file=train, **kwargs)


def texts(examples: list[Example]) -> list[str]:
    return [e.text for e in examples]
