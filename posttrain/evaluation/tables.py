"""Plain-text result tables for the terminal (evaluators print one when they finish)."""

from __future__ import annotations

from collections.abc import Sequence

Row = Sequence[str]


def aligned_table(header: Row, groups: Sequence[Sequence[Row]]) -> list[str]:
    """Lines of a table: first column left-aligned, the others right-aligned; rules around the header and
    after each group of rows (e.g. the per-item rows, then a total row)."""
    rows = [row for group in groups for row in group]
    widths = [max(len(row[c]) for row in (header, *rows)) for c in range(len(header))]

    def line(row: Row) -> str:
        return " | ".join([row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])])

    rule = "-" * len(line(header))
    out = [rule, line(header), rule]
    for group in groups:
        out += [*(line(row) for row in group), rule]
    return out
