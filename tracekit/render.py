"""Output for the command line: query results and counts as a table, JSON or CSV."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from tracekit import jsonio


class Format(StrEnum):
    """Output formats every command that prints rows accepts."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return jsonio.loads(jsonio.dumps(value))
    return value


def noun(n: int, word: str, plural: str | None = None) -> str:
    """The word for `n` of them: "copy" for 1, else the plural (word + "s" unless given)."""
    return word if n == 1 else plural or word + "s"


def counted(n: int, word: str, plural: str | None = None) -> str:
    """`n` and the word for that many: "1 copy", "2 copies"."""
    return f"{n} {noun(n, word, plural)}"


def rows_to_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A JSON array with one object per row."""
    return jsonio.dumps([{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows])


def rows_to_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV with a header line; timestamps as ISO-8601 UTC."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else _plain(v) for v in row])
    return out.getvalue()


def _cell(value: Any, width: int = 80) -> str:
    if value is None:
        return ""
    text = str(_plain(value))
    text = text.replace("\n", "⏎").replace("\t", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def print_rows(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: Format, *, title: str | None = None
) -> None:
    """Print a result set in the chosen format on stdout."""
    if fmt is Format.JSON:
        print(rows_to_json(columns, rows))
    elif fmt is Format.CSV:
        print(rows_to_csv(columns, rows), end="")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(v) for v in row))
        # Piped output has no terminal width: let rows be as wide as they need rather than fold ids.
        Console(width=None if sys.stdout.isatty() else 1000).print(table)


def print_counts(
    counts: dict[str, int],
    fmt: Format,
    *,
    title: str | None = None,
    headers: tuple[str, str] = ("table", "rows"),
) -> None:
    """Print counts: one JSON object, CSV, or a small two-column table."""
    if fmt is Format.JSON:
        print(jsonio.dumps(counts))
    else:
        print_rows(list(headers), list(counts.items()), fmt, title=title)
