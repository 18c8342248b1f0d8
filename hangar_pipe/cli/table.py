"""Report tables as text: fitted to a terminal's width, as Markdown, as CSV. Pure: no printing.

A terminal table keeps the columns that matter most (lowest `rank`) and leaves out the others
when they do not fit, saying so on one line below it; it never cuts a value. Markdown and CSV
carry every column in full.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hangar_pipe.reports import Column

GAP = "  "
ALL_FORMATS = "--csv, --md or --json"


def cell_width(text: str) -> int:
    """Terminal cells a string takes: wide (East Asian) characters count two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def column_width(column: Column) -> int:
    return max(cell_width(text) for text in [column.short, *column.brief])


def _informative(column: Column) -> bool:
    return any(text not in ("", "-") for text in column.brief)


def _variants(column: Column) -> list[Column]:
    """The column as it is, then in its compact form, if it has one."""
    if column.compact is None:
        return [column]
    return [column, dataclasses.replace(column, brief=column.compact, compact=None)]


def fit(columns: list[Column], width: int) -> tuple[list[Column], list[Column]]:
    """(kept, left out): by rank, each column that still fits in `width` is kept (in its compact
    form if only that fits); the kept ones in their given order, the others by rank. The
    first-ranked column is always kept, and columns with no value in any row are dropped silently."""
    order = sorted((c for c in columns if _informative(c)), key=lambda c: c.rank)
    kept: dict[str, Column] = {}
    left_out: list[Column] = []
    used = -len(GAP)
    for column in order:
        for variant in _variants(column):
            extra = len(GAP) + column_width(variant)
            if not kept or used + extra <= width:
                kept[column.name] = variant
                used += extra
                break
        else:
            left_out.append(column)
    return [kept[c.name] for c in columns if c.name in kept], left_out


def render(columns: list[Column]) -> list[str]:
    """Header, a rule, then one line per row; numbers right-aligned, no trailing spaces."""
    widths = [column_width(c) for c in columns]

    def line(cells: Iterable[str]) -> str:
        parts = [_pad(text, w, c.number) for text, w, c in zip(cells, widths, columns)]
        return GAP.join(parts).rstrip()

    rows = [line(texts) for texts in zip(*(c.brief for c in columns))]
    return [line(c.short for c in columns), GAP.join("─" * w for w in widths), *rows]


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - cell_width(text))
    return fill + text if right else text + fill


def left_out_note(left_out: list[Column], width: int) -> str:
    """`Left out: when, loss and 3 more (see --csv, --md or --json)`, within `width` if it can."""
    names = [c.short for c in left_out]
    tries = [", ".join(names[:shown]) + (f" and {len(names) - shown} more" if shown < len(names) else "")
             for shown in range(len(names), 0, -1)]
    notes = [*(f"Left out: {listed} (see {ALL_FORMATS})" for listed in tries),
             f"{len(names)} columns left out (see {ALL_FORMATS})", f"{len(names)} more columns: --csv"]
    return next((note for note in notes if cell_width(note) <= width), notes[-1])


def terminal(columns: list[Column], width: int) -> str:
    """The table fitted to `width`, and the note on what it left out, if anything."""
    kept, left_out = fit(columns, width)
    lines = render(kept)
    if left_out:
        lines.append(left_out_note(left_out, width))
    return "\n".join(lines)


def markdown(headers: list[str], rows: list[list[str]], right: list[bool] | None = None) -> str:
    """A GitHub pipe table; `|` in a cell is escaped, `right` marks right-aligned columns."""
    def row(cells: Iterable[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    rule = ["---:" if r else "---" for r in (right or [False] * len(headers))]
    return "\n".join([row(headers), "|" + "|".join(rule) + "|", *(row(r) for r in rows)])


def csv_text(headers: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")


def columns_markdown(columns: list[Column]) -> str:
    """Every column: full names, ids and digests; numbers as the terminal shows them (--precision)."""
    cells = [c.brief if c.number else c.full for c in columns]
    return markdown([c.name for c in columns], [list(r) for r in zip(*cells)], [c.number for c in columns])


def columns_csv(columns: list[Column]) -> str:
    """Every column, every value exact."""
    return csv_text([c.name for c in columns], [list(r) for r in zip(*(c.full for c in columns))])
