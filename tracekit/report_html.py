"""The HTML view of `tracekit report`: one self-contained file with tables and inline SVG charts.

No script, no external URL: the CSS is inline and the charts are SVG drawn here from the report's
data, so the file opens anywhere, offline, and can be attached to an incident ticket. Every string
that comes from the data (function names, event ids, error messages) is escaped.

Per function, two charts:

- the attempts of the worst events on a time axis, one row per event, one `<rect>` per attempt
  coloured by how the attempt ended (a grey line joins an event's first and last attempt);
- the events by the time they were first seen, one stacked bar per time bucket, one `<rect>` per
  outcome present in the bucket.

Chart legends are HTML, so the only `<rect>` elements in a chart are its marks.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable
from typing import Any

from tracekit.analyze.report import OUTCOMES, EventSummary, FunctionReport, Report
from tracekit.timeline import span, when

OUTCOME_COLOURS = {
    "succeeded": "#2e7d32",
    "succeeded_after_retry": "#9ccc65",
    "dead_lettered": "#e53935",
    "sent_to_destination": "#fb8c00",
    "dropped": "#4a148c",
    "in_flight": "#fdd835",
}

STATUS_COLOURS = {
    "success": "#2e7d32",
    "error": "#e53935",
    "timeout": "#fb8c00",
    "out_of_memory": "#8e24aa",
    "crash": "#6d4c41",
    "init_error": "#546e7a",
    "unknown": "#9e9e9e",
}
OTHER_COLOUR = "#9e9e9e"

#: Chart geometry (SVG user units): labels left of the plot, the plot, the rows of the timeline.
WIDTH, LABEL_W, PLOT_W = 960, 250, 680
ROW_H, MARK_H = 24, 14
BARS_H = 160
MAX_BAR_W = 48.0
MIN_MARK_W = 3.0
LABEL_CHARS = 34

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #212121; margin: 24px auto;
       max-width: 1000px; padding: 0 16px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 8px; border-bottom: 2px solid #e0e0e0; padding-bottom: 4px; }
h2 small { color: #757575; font-weight: normal; font-size: 14px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.meta, .note { color: #616161; }
dl.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px;
             margin: 0; }
dl.figures div { background: #f5f5f5; border-radius: 6px; padding: 8px 10px; }
dl.figures dt { color: #616161; font-size: 12px; }
dl.figures dd { margin: 0; font-size: 18px; font-weight: 600; }
table { border-collapse: collapse; margin: 4px 0; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid #eeeeee; vertical-align: top; }
td.n, th.n { text-align: right; }
td.id { font-family: ui-monospace, Menlo, monospace; font-size: 12px; word-break: break-all; }
svg { display: block; background: #fafafa; border: 1px solid #eeeeee; margin: 6px 0; }
svg text { font: 11px ui-monospace, Menlo, monospace; fill: #424242; }
.legend { display: flex; flex-wrap: wrap; gap: 12px; font-size: 12px; color: #424242; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
nav a { margin-right: 12px; }
"""


def e(value: Any) -> str:
    """Text from the data, escaped for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def render_html(report: Report) -> str:
    """The whole report as one HTML document."""
    generated = f"analysis generation {report.generation}" if report.generation is not None else "no analysis"
    if report.built_at:
        generated += f", built {report.built_at}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>tracekit report{' · ' + e(report.function) if report.function else ''}</title>",
        f"<style>{CSS}</style></head><body>",
        "<header><h1>tracekit report</h1>",
        f'<p class="meta">{e(generated)} · {len(report.functions)} function(s)</p></header>',
    ]
    if not report.functions:
        parts.append('<p class="note">The store holds no events and no invocations.</p>')
    elif len(report.functions) > 1:
        links = " ".join(f'<a href="#fn-{i}">{e(_name(f))}</a>' for i, f in enumerate(report.functions))
        parts.append(f"<nav>{links}</nav>")
    parts += [_function(i, f) for i, f in enumerate(report.functions)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _name(function: FunctionReport) -> str:
    return function.function_name or "(function unknown)"


def _function(index: int, f: FunctionReport) -> str:
    sources = ", ".join(f.sources) or "invocations only"
    return "\n".join(
        [
            f'<section class="function" id="fn-{index}" data-function="{e(f.function_name)}">',
            f"<h2>{e(_name(f))} <small>{e(sources)}</small></h2>",
            _figures(f),
            "<h3>Outcomes</h3>",
            _table(
                ("outcome", "events"),
                [(o.replace("_", " "), f.outcomes[o]) for o in OUTCOMES],
                numeric={1},
                row_data=[{"outcome": o} for o in OUTCOMES],
            ),
            "<h3>Outcomes over time</h3>",
            _outcomes_chart(f),
            "<h3>Worst events: their attempts over time</h3>",
            _timeline_chart(f.worst_events),
            _worst_table(f.worst_events),
            "<h3>Retries</h3>",
            _table(
                ("retries", "events"),
                [(_retries(r["retries"]), r["events"]) for r in f.retry_distribution],
                numeric={1},
            ),
            "<h3>Duplicates</h3>",
            _duplicates(f),
            "<h3>Top errors</h3>",
            _table(
                ("error type", "message", "invocations", "events"),
                [(r["error_type"], r["error_message"], r["invocations"], r["events"]) for r in f.top_errors],
                numeric={2, 3},
                empty="No failed attempts.",
            ),
            "<h3>Dropped events</h3>",
            _dropped(f),
            "</section>",
        ]
    )


def _figures(f: FunctionReport) -> str:
    d = f.duration_ms
    figures = [
        ("events", "events", f.events),
        ("invocations", "invocations", f.invocations),
        ("dropped", "dropped", f.outcomes["dropped"]),
        ("duplicates", "duplicates", f.duplicates["duplicates"]),
        ("uncertain", "uncertain events", f.uncertain),
        ("p50", "p50 duration", span(d["p50"])),
        ("p95", "p95 duration", span(d["p95"])),
        ("p99", "p99 duration", span(d["p99"])),
        ("timeouts", "timeouts", f.timeouts),
        ("out_of_memory", "out-of-memory kills", f.out_of_memory),
        ("cold_starts", "cold starts", f.cold_starts),
    ]
    items = "".join(
        f'<div><dt>{e(label)}</dt><dd data-figure="{e(key)}">{e(value if value != "" else "–")}</dd></div>'
        for key, label, value in figures
    )
    return f'<dl class="figures">{items}</dl>'


def _table(
    headers: Iterable[str],
    rows: list[tuple[Any, ...]],
    *,
    numeric: set[int] | None = None,
    empty: str = "None.",
    row_data: list[dict[str, str]] | None = None,
    id_columns: set[int] | None = None,
) -> str:
    if not rows:
        return f'<p class="note">{e(empty)}</p>'
    numeric, id_columns = numeric or set(), id_columns or set()
    head = "".join(f"<th{' class=n' if i in numeric else ''}>{e(h)}</th>" for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        data = "".join(f' data-{e(k)}="{e(v)}"' for k, v in (row_data[r] if row_data else {}).items())
        cells = "".join(
            f"<td{' class=n' if i in numeric else ' class=id' if i in id_columns else ''}>{e(v)}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr{data}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _retries(retries: int | None) -> str:
    return "no attempt in the logs" if retries is None else str(retries)


def _duplicates(f: FunctionReport) -> str:
    by_kind = f.duplicates["by_kind"]
    rows = [(kind.replace("_", " "), n["events"], n["duplicates"]) for kind, n in by_kind.items()]
    return _table(
        ("kind", "events", "duplicates"), rows, numeric={1, 2}, empty="No event was processed twice."
    )


def _dropped(f: FunctionReport) -> str:
    total = f.outcomes["dropped"]
    rows = [
        (s.event_id, when(s.first_seen), s.attempts, _error(s.final_error_type, s.final_error_message))
        for s in f.dropped
    ]
    table = _table(
        ("event id", "first seen", "attempts", "last error"),
        rows,
        numeric={2},
        id_columns={0},
        empty="No event was dropped.",
    )
    if total > len(f.dropped):
        table += f'<p class="note">The first {len(f.dropped)} of {total} dropped events.</p>'
    return table


def _error(kind: str | None, message: str | None) -> str:
    return ": ".join(p for p in (kind, message) if p)


def _worst_table(worst: list[EventSummary]) -> str:
    rows = [
        (
            s.event_id,
            s.outcome.replace("_", " "),
            s.attempts,
            s.duplicates,
            span(s.span_ms),
            _error(s.final_error_type, s.final_error_message),
            s.business_key,
        )
        for s in worst
    ]
    return _table(
        ("event id", "outcome", "attempts", "duplicates", "first to last seen", "final error", "key"),
        rows,
        numeric={2, 3},
        id_columns={0},
        empty="Every event succeeded on its first attempt, once.",
    )


# -- charts -----------------------------------------------------------------------------------------


def _legend(colours: dict[str, str], names: Iterable[str]) -> str:
    items = "".join(
        f'<span><span class="swatch" style="background:{colours.get(n, OTHER_COLOUR)}"></span>'
        f"{e(n.replace('_', ' '))}</span>"
        for n in names
    )
    return f'<div class="legend">{items}</div>'


def _ms(value: dt.datetime) -> float:
    return value.replace(tzinfo=dt.UTC).timestamp() * 1000


def _tick_label(ms: float, range_ms: float) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    if range_ms < 60_000:
        return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    if range_ms < 86_400_000:
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%m-%d %H:%M")


def _axis(t0: float, t1: float, y: float, ticks: int = 5) -> list[str]:
    """Tick lines and labels along y for the time range t0..t1 (ms since the epoch)."""
    out = [f'<line x1="{LABEL_W}" y1="{y}" x2="{LABEL_W + PLOT_W}" y2="{y}" stroke="#bdbdbd"/>']
    for i in range(ticks + 1):
        x = LABEL_W + PLOT_W * i / ticks
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        label = _tick_label(t0 + (t1 - t0) * i / ticks, t1 - t0)
        out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#bdbdbd"/>')
        out.append(f'<text x="{x:.1f}" y="{y + 16}" text-anchor="{anchor}">{e(label)}</text>')
    return out


def _drawn(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The attempts that have a start time: an attempt from timeless plain-text logs has no place."""
    return [a for a in attempts if a.get("start_time") is not None]


def _timeline_chart(worst: list[EventSummary]) -> str:
    drawn = [a for s in worst for a in _drawn(s.attempt_list)]
    if not drawn:
        return '<p class="note">No attempt of these events has a time in the logs.</p>' if worst else ""
    t0 = min(_ms(a["start_time"]) for a in drawn)
    t1 = max(_ms(a["end_time"] or a["start_time"]) for a in drawn)
    t1 = max(t1, t0 + 1)
    scale = PLOT_W / (t1 - t0)
    height = len(worst) * ROW_H + 32
    marks: list[str] = []
    for row, summary in enumerate(worst):
        y = row * ROW_H + 8
        label = (
            summary.event_id
            if len(summary.event_id) <= LABEL_CHARS
            else summary.event_id[: LABEL_CHARS - 1] + "…"
        )
        marks.append(
            f'<text x="4" y="{y + MARK_H - 3}"><title>{e(summary.event_id)}</title>{e(label)}</text>'
        )
        attempts = _drawn(summary.attempt_list)
        if not attempts:
            marks.append(
                f'<text x="{LABEL_W}" y="{y + MARK_H - 3}" fill="#9e9e9e">no attempt in the logs</text>'
            )
            continue
        first = LABEL_W + (_ms(attempts[0]["start_time"]) - t0) * scale
        last = LABEL_W + (_ms(attempts[-1]["end_time"] or attempts[-1]["start_time"]) - t0) * scale
        middle = y + MARK_H / 2
        marks.append(f'<line x1="{first:.1f}" y1="{middle}" x2="{last:.1f}" y2="{middle}" stroke="#bdbdbd"/>')
        for a in attempts:
            marks.append(_attempt_mark(a, y, t0, scale))
    svg = (
        f'<svg class="timeline" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="attempts of the worst events over time">'
        + "".join(marks)
        + "".join(_axis(t0, t1, height - 24))
        + "</svg>"
    )
    statuses = sorted(
        {a["outcome"] for a in drawn},
        key=lambda s: list(STATUS_COLOURS).index(s) if s in STATUS_COLOURS else 99,
    )
    note = f'<p class="note">Times in UTC from {e(when(_from_ms(t0)))} to {e(when(_from_ms(t1)))}.</p>'
    return svg + _legend(STATUS_COLOURS, statuses) + note


def _from_ms(ms: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).replace(tzinfo=None)


def _attempt_mark(a: dict[str, Any], y: float, t0: float, scale: float) -> str:
    start = _ms(a["start_time"])
    end = _ms(a["end_time"]) if a.get("end_time") is not None else start
    x = LABEL_W + (start - t0) * scale
    width = max(MIN_MARK_W, (end - start) * scale)
    tip = " · ".join(
        p
        for p in (
            f"attempt {a['attempt']}",
            str(a["outcome"]),
            when(a["start_time"]),
            span(a.get("duration_ms")),
            a.get("error_type") or "",
            f"request {a['request_id']}" if a.get("request_id") else "",
        )
        if p
    )
    colour = STATUS_COLOURS.get(a["outcome"], OTHER_COLOUR)
    return (
        f'<rect class="attempt" data-outcome="{e(a["outcome"])}" x="{x:.1f}" y="{y}" width="{width:.1f}" '
        f'height="{MARK_H}" rx="2" fill="{colour}"><title>{e(tip)}</title></rect>'
    )


def _outcomes_chart(f: FunctionReport) -> str:
    over_time = f.outcomes_over_time
    buckets, width_s = over_time["buckets"], over_time["bucket_s"]
    if not buckets:
        return '<p class="note">No event has a time.</p>'
    first = _ms(buckets[0]["start"])
    width_ms = width_s * 1000
    slots = round((_ms(buckets[-1]["start"]) - first) / width_ms) + 1
    slot_w = PLOT_W / slots
    # A lone bucket would otherwise be one bar as wide as the chart.
    bar_w = min(slot_w * 0.8, MAX_BAR_W)
    tallest = max(sum(b["outcomes"].values()) for b in buckets)
    top, height = 12, BARS_H + 40
    marks = [f'<text x="{LABEL_W - 8}" y="{top + 4}" text-anchor="end">{tallest} event(s)</text>']
    for bucket in buckets:
        slot = round((_ms(bucket["start"]) - first) / width_ms)
        x = LABEL_W + slot * slot_w + (slot_w - bar_w) / 2
        base = top + BARS_H
        for outcome, count in bucket["outcomes"].items():
            h = BARS_H * count / tallest
            base -= h
            tip = f"{when(bucket['start'])} + {span(width_ms)}: {count} {outcome.replace('_', ' ')}"
            marks.append(
                f'<rect class="bar" data-outcome="{e(outcome)}" data-count="{count}" x="{x:.1f}" '
                f'y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{OUTCOME_COLOURS.get(outcome, OTHER_COLOUR)}"><title>{e(tip)}</title></rect>'
            )
    svg = (
        f'<svg class="outcomes" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="events by the time they were first seen, by outcome">'
        + "".join(marks)
        + "".join(_axis(first, first + slots * width_ms, top + BARS_H))
        + "</svg>"
    )
    present = [o for o in OUTCOMES if any(o in b["outcomes"] for b in buckets)]
    note = f"Events by when they were first seen, in buckets of {span(width_ms)} (UTC)."
    if over_time["undated"]:
        note += f" {over_time['undated']} event(s) without a time are not drawn."
    return svg + _legend(OUTCOME_COLOURS, present) + f'<p class="note">{e(note)}</p>'
