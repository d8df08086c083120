"""The one table formatter: rows (dicts) as fixed-width text, GitHub markdown or CSV.

Every table the project prints or logs goes through here: ``popdistill run``'s results
(:func:`popdistill.pipeline.loop.format_results`), ``popdistill evaluate``'s methods
(:func:`popdistill.evaluate.report.format_table`), TeachText's models and the MLflow
``log_table`` artifacts (:meth:`popdistill.tracking.client.RunHandle.log_table`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Column", "number", "text_table", "table_html", "table_markdown", "table_csv"]


@dataclass(frozen=True)
class Column:
    """A text-table column: ``header``, ``width``, how a row's cell is written (``cell``:
    row -> str), ``align`` ``<`` (left; longer cells are cut to the width) or ``>``."""

    header: str
    width: int
    cell: Callable[[Mapping[str, Any]], str]
    align: str = ">"


def number(key: str, scale: float = 1.0, fmt: str = ".1f", missing: str = "-") -> Callable:
    """A cell function: ``row[key] * scale`` formatted with ``fmt``; ``missing`` for None."""

    def cell(row: Mapping[str, Any]) -> str:
        value = row.get(key)
        return missing if value is None else format(value * scale, fmt)

    return cell


def text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """A header line, a rule of dashes as long as it, then one line per row; columns are
    separated by one space."""
    head = " ".join(f"{c.header:{c.align}{c.width}}" for c in columns)
    lines = [head, "-" * len(head)]
    for row in rows:
        cells = []
        for c in columns:
            text = str(c.cell(row))
            cells.append(f"{text[: c.width] if c.align == '<' else text:{c.align}{c.width}}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _cell(value: Any, short: bool = True) -> str:
    if isinstance(value, float | np.floating):
        value = float(value)
        return "" if not math.isfinite(value) else f"{value:.4g}" if short else repr(value)
    return "" if value is None else str(value)


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for row in rows for k in row))


def table_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows (dicts) as CSV text (full precision); columns in first-seen order, gaps empty."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v, short=False) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def table_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows (dicts) as a GitHub markdown table (floats to 4 significant digits); columns in
    first-seen order, gaps empty."""
    cols = _columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in cols) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def table_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column],
               highlight: Callable[[Mapping[str, Any]], bool] | None = None) -> str:
    """The text table's columns as an HTML ``<table>`` (cells escaped); rows where
    ``highlight`` is true get ``class="beats"``."""
    from html import escape

    head = "".join(f"<th>{escape(c.header)}</th>" for c in columns)
    body = []
    for row in rows:
        cls = ' class="beats"' if highlight is not None and highlight(row) else ""
        cells = "".join(f'<td class="{"l" if c.align == "<" else "r"}">{escape(str(c.cell(row)))}</td>'
                        for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
