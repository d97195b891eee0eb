"""Aligned text columns: every column as wide as its widest cell, numbers flush right, no trailing spaces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

_GAP: Final = "  "  # two spaces keep columns apart even when a cell (an IPv6 address) has single spaces


class Column(msgspec.Struct, frozen=True):
    title: str
    right: bool = False
    """Right-align (numbers and sizes), so magnitudes line up."""


def render_table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[str]:
    """The header line and one line per row. Every row must have one cell per column."""
    for number, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"row {number} has {len(row)} cells for {len(columns)} columns")
    widths = [max([len(column.title), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)]
    lines = []
    for cells in ([column.title for column in columns], *rows):
        padded = [
            cell.rjust(width) if column.right else cell.ljust(width)
            for cell, width, column in zip(cells, widths, columns, strict=True)
        ]
        lines.append(_GAP.join(padded).rstrip())
    return lines
