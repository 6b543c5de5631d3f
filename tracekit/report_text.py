"""The terminal view of `tracekit report`: per function, the report's figures as readable rich tables."""

from __future__ import annotations

import sys
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from tracekit.analyze.report import OUTCOMES, EventSummary, FunctionReport, Report
from tracekit.timeline import OUTCOME_STYLE, span, when

#: Error messages and event ids longer than this are cut in the terminal (JSON keeps them whole).
CELL_CHARS = 100


def print_report(report: Report, file: IO[str] | None = None) -> None:
    """Print the report on stdout, or as plain text into `file`."""
    if file is None:
        console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    else:
        console = Console(file=file, width=160, color_system=None, highlight=False)
    console.print(report_renderable(report))


def report_renderable(report: Report) -> RenderableType:
    """The whole report as one rich renderable."""
    head = Text("tracekit report", style="bold")
    if report.generation is not None:
        head.append(f" · analysis generation {report.generation}", style="dim")
    if report.built_at:
        head.append(f", built {report.built_at}", style="dim")
    parts: list[RenderableType] = [head]
    if not report.functions:
        parts.append(Text("The store holds no events and no invocations."))
    for function in report.functions:
        parts.append(_function(function))
    return Group(*parts)


def _cut(value: Any) -> str:
    text = "" if value is None else str(value).replace("\n", " ⏎ ")
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def _table(title: str, headers: tuple[str, ...], numeric: set[int] | None = None) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=False)
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if i in (numeric or set()) else "left", overflow="fold")
    return table


def _function(f: FunctionReport) -> RenderableType:
    name = f.function_name or "(function unknown)"
    parts: list[RenderableType] = [
        Rule(Text(f"{name} · {', '.join(f.sources) or 'invocations only'}", style="bold"), align="left"),
        _figures(f),
        _outcomes(f),
    ]
    if f.retry_distribution:
        retries = _table("Retries", ("retries", "events"), {1})
        for r in f.retry_distribution:
            label = "no attempt in the logs" if r["retries"] is None else str(r["retries"])
            retries.add_row(label, str(r["events"]))
        parts.append(retries)
    if f.duplicates["by_kind"]:
        dupes = _table("Duplicates", ("kind", "events", "duplicates"), {1, 2})
        for kind, n in f.duplicates["by_kind"].items():
            dupes.add_row(kind.replace("_", " "), str(n["events"]), str(n["duplicates"]))
        parts.append(dupes)
    if f.top_errors:
        errors = _table("Top errors", ("error type", "message", "invocations", "events"), {2, 3})
        for r in f.top_errors:
            errors.add_row(
                _cut(r["error_type"]), _cut(r["error_message"]), str(r["invocations"]), str(r["events"])
            )
        parts.append(errors)
    if f.worst_events:
        parts.append(_worst(f.worst_events))
    if f.dropped:
        parts.append(_dropped(f))
    return Group(*parts)


def _figures(f: FunctionReport) -> RenderableType:
    d = f.duration_ms
    line = Text()
    line.append(f"{f.events:,} events", style="bold")
    line.append(f" · {f.invocations:,} invocations")
    line.append(
        f" · duration p50 {span(d['p50']) or '–'}, p95 {span(d['p95']) or '–'}, p99 {span(d['p99']) or '–'}"
    )
    line.append(
        f"\n{f.timeouts:,} timeouts · {f.out_of_memory:,} out-of-memory kills · {f.cold_starts:,} cold starts"
    )
    line.append(f" · {f.duplicates['duplicates']:,} duplicates")
    if f.uncertain:
        line.append(f" · {f.uncertain:,} uncertain events", style="yellow")
    return line


def _outcomes(f: FunctionReport) -> RenderableType:
    table = _table("Outcomes", ("outcome", "events"), {1})
    for outcome in OUTCOMES:
        style = OUTCOME_STYLE.get(outcome, "") if f.outcomes[outcome] else "dim"
        table.add_row(Text(outcome.replace("_", " "), style=style), str(f.outcomes[outcome]))
    return table


def _error(summary: EventSummary) -> str:
    return _cut(": ".join(p for p in (summary.final_error_type, summary.final_error_message) if p))


def _worst(worst: list[EventSummary]) -> RenderableType:
    table = _table(
        "Worst events",
        ("event id", "outcome", "attempts", "dupl.", "first to last seen", "final error", "key"),
        {2, 3},
    )
    for s in worst:
        table.add_row(
            s.event_id,
            Text(s.outcome.replace("_", " "), style=OUTCOME_STYLE.get(s.outcome, "red")),
            str(s.attempts),
            str(s.duplicates),
            span(s.span_ms),
            _error(s),
            _cut(s.business_key),
        )
    return table


def _dropped(f: FunctionReport) -> RenderableType:
    total = f.outcomes["dropped"]
    shown = f"the first {len(f.dropped)} of {total}" if total > len(f.dropped) else str(total)
    table = _table(f"Dropped events ({shown})", ("event id", "first seen", "attempts", "last error"), {2})
    for s in f.dropped:
        table.add_row(s.event_id, when(s.first_seen), str(s.attempts), _error(s))
    return table
