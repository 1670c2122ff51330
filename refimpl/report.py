"""Plain-text tables for notebooks and benchmarks.

Notebooks print their figures as text (not HTML) so that ``pytest --nbval`` compares every
number when it re-executes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _cell(value: Any, floatfmt: str) -> str:
    if isinstance(value, float):
        return format(value, floatfmt)
    return str(value)


def format_table(
    rows: Sequence[Sequence[Any]], headers: Sequence[str], *, floatfmt: str = ".4f"
) -> str:
    """Align ``rows`` under ``headers`` as a Markdown-style text table.

    Floats are formatted with ``floatfmt``; numbers are right-aligned, text left-aligned.

    >>> print(format_table([("fc1", 0.08), ("fc2", 0.09)], ["layer", "kept"], floatfmt=".2f"))
    | layer | kept |
    |:------|-----:|
    | fc1   | 0.08 |
    | fc2   | 0.09 |
    """
    text = [[_cell(v, floatfmt) for v in row] for row in rows]
    for row in text:
        if len(row) != len(headers):
            raise ValueError(f"every row needs {len(headers)} cells, got {len(row)}: {row}")
    numeric = [
        all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows)
        and len(rows) > 0
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if num else (":" + "-" * (w + 1))
            for w, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([line(list(headers)), rule] + [line(r) for r in text])
