"""The README's measured figures equal the committed results they come from (benchmarks/figures.py)."""

from pathlib import Path

import pytest

from .conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def figures():
    return load_benchmark("figures")


def test_every_readme_figure_matches_its_result_file(figures):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(figures.MARK.findall(text)) >= 20  # the figures are marked, not typed in
    assert figures.stale(text) == []


def test_every_defined_figure_is_used_and_a_changed_number_is_caught(figures):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    used = {name for name, _ in figures.MARK.findall(text)}
    assert used == set(figures.FIGURES)
    name, shown = figures.MARK.findall(text)[0]
    edited = text.replace(
        f"<!-- fig:{name} -->{shown}<!-- /fig -->", f"<!-- fig:{name} -->9{shown}<!-- /fig -->"
    )
    assert figures.stale(edited) == [f"{name}: 9{shown} -> {shown}"]
