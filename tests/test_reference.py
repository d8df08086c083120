"""docs/config.md is the generated config reference, up to date, and covers every field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from popdistill.reference import field_comments, reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_docs_config_md_is_up_to_date():
    assert (ROOT / "docs" / "config.md").read_text() == reference_markdown(), (
        "docs/config.md is out of date: popdistill config --reference > docs/config.md")


def test_every_listed_field_has_a_default_and_a_meaning():
    rows = [line for line in reference_markdown().splitlines() if line.startswith("| `")]
    assert len(rows) > 80
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[2], row  # default
        assert cells[-1], f"no meaning: {row}"  # a comment beside the field in its dataclass


def test_field_comments_reads_trailing_and_preceding_comments():
    @dataclasses.dataclass
    class Example:
        a: int = 1  # the first
        # the second,
        # on two lines
        b: str = "x"
        c: float = 0.5

    assert field_comments(Example) == {"a": "the first", "b": "the second, on two lines", "c": ""}
