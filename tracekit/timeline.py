"""The terminal view of `tracekit show`: one event's timeline as readable rich text."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from tracekit import jsonio

OUTCOME_STYLE = {
    "succeeded": "green",
    "succeeded_after_retry": "green",
    "dead_lettered": "red",
    "sent_to_destination": "red",
    "dropped": "bold red",
    "in_flight": "yellow",
    "success": "green",
    "partial_failure": "yellow",
}

#: Longer payloads are cut in the terminal view (JSON output keeps them whole).
PAYLOAD_CHARS = 2000

NO_SINK = {
    "succeeded": "processed on the first attempt; nothing needed a failure record",
    "succeeded_after_retry": "processed after retries; nothing needed a failure record",
    "dropped": "dropped: retries or age ran out and no destination record or DLQ message holds it",
    "in_flight": "in flight: it could still be retried",
    "dead_lettered": "dead-lettered (the DLQ message is not in the store)",
    "sent_to_destination": "sent to the on-failure destination (the record is not in the store)",
}


def when(value: dt.datetime | None) -> str:
    """A store timestamp (naive UTC) as ISO-8601 with milliseconds and Z."""
    return "" if value is None else value.isoformat(timespec="milliseconds") + "Z"


def span(ms: float | None) -> str:
    """A duration for people: 42 ms, 3.01 s, 2 min 0.5 s, 1 h 5 min."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes:.0f} min {rest:.1f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours:.0f} h {minutes:.0f} min"


def _styled(outcome: str | None) -> Text:
    text = (outcome or "").replace("_", " ")
    return Text(text, style=OUTCOME_STYLE.get(outcome or "", "red"))


def _header(event: dict[str, Any]) -> RenderableType:
    lines = Text()
    lines.append(event["event_id"], style="bold")
    facts = [event["source"], event["function_name"]]
    if event.get("business_key") is not None:
        facts.append(f"business key {event['business_key']}")
    lines.append("  " + " · ".join(str(f) for f in facts if f) + "\n")
    lines.append_text(_styled(event["outcome"]))
    dupes = event["duplicates"] or 0
    counts = (
        f" · {event['attempts']} attempt(s), {event['deliveries']} delivery(ies), "
        f"{event['retries']} retry(ies), "
        + (f"{dupes} duplicate(s) ({event['duplicate_kind']})" if dupes else "no duplicates")
    )
    lines.append(counts + "\n")
    lines.append(f"first seen {when(event['first_seen'])} · last seen {when(event['last_seen'])}")
    if event.get("final_error_type") or event.get("final_error_message"):
        lines.append("\nfinal error ")
        lines.append(_error(event.get("final_error_type"), event.get("final_error_message")), style="red")
    return lines


def _error(kind: str | None, message: str | None) -> str:
    text = ": ".join(p for p in (kind, message) if p)
    return text.replace("\n", " ⏎ ")


def _attempts(attempts: list[dict[str, Any]]) -> RenderableType:
    table = Table(title="Attempts", title_justify="left", show_lines=False, expand=False)
    for column in ("#", "start", "duration", "gap", "outcome", "request id", "log stream", "cold", "error"):
        table.add_column(column, overflow="fold")
    # A batch named by its invocation's request id would repeat the request id column.
    if any(a.get("batch_id") not in (None, a["request_id"]) for a in attempts):
        table.add_column("batch", overflow="fold")
    for a in attempts:
        row: list[RenderableType] = [
            str(a["attempt"]),
            when(a["start_time"]),
            span(a["duration_ms"]),
            span(a["gap_ms"]),
            _styled(a["outcome"]),
            a["request_id"] or "",
            a["log_stream"] or "",
            "cold" if a["cold_start"] else "",
            _error(a["error_type"], a["error_message"]),
        ]
        if len(table.columns) > len(row):
            row.append(a.get("batch_id") or "")
        table.add_row(*row)
    return table


def _batch_label(batch: dict[str, Any], mark: bool) -> Text:
    label = Text()
    label.append(batch["batch_id"], style="bold" if batch.get("contains_event") else "")
    first, last = batch.get("first_sequence_number"), batch.get("last_sequence_number")
    items = f"{first} … {last}" if first != last else str(first)
    label.append(f"  {batch.get('shard_id') or ''} {items} · {batch.get('size')} item(s)")
    label.append(f" · depth {batch['depth']} ")
    label.append_text(_styled(batch.get("outcome")))
    if batch.get("request_id") and batch["request_id"] != batch["batch_id"]:
        label.append(f" · request {batch['request_id']}")
    if mark and batch.get("contains_event"):
        label.append("  ◀ this event", style="cyan")
    return label


def _batches(batches: list[dict[str, Any]]) -> RenderableType:
    """The event's batches as a tree under the batches they were split from (roots first)."""
    split = any(b.get("parent_batch_id") for b in batches)
    title = "Batches, under the batches they were split from" if split else "Batches"
    tree = Tree(Text(title, style="bold"))
    nodes: dict[str, Tree] = {}
    for batch in batches:  # ordered by depth, so a parent is always placed before its children
        parent = nodes.get(batch.get("parent_batch_id") or "", tree)
        # Ancestors that do not hold the event are there for context: mark the ones that do.
        nodes[batch["batch_id"]] = parent.add(_batch_label(batch, mark=split))
    return tree


def _sinks(event: dict[str, Any], sinks: list[dict[str, Any]]) -> RenderableType:
    text = Text("Final sink: ", style="bold")
    if not sinks:
        text.append(NO_SINK.get(event["outcome"], event["outcome"] or ""), style="")
        return text
    failed = event["outcome"] not in ("succeeded", "succeeded_after_retry")
    for sink in sinks:
        text.append("\n  ")
        if sink["sink"] == "dead_letter":
            text.append(f"DLQ message {sink['message_id']}", style="red")
            text.append(f" in {sink['queue']}" if sink.get("queue") else " (queue not recorded)")
            text.append(f", sent {when(sink.get('sent_timestamp'))}")
            if sink.get("approximate_receive_count") is not None:
                text.append(f", receive count {sink['approximate_receive_count']}")
            if sink.get("error_message"):
                text.append(f", error {sink['error_message']!r}")
        else:
            text.append(f"destination record {sink['record_id']}", style="red" if failed else "green")
            text.append(f" ({sink.get('condition')}, {when(sink.get('timestamp'))}")
            if sink.get("approximate_invoke_count") is not None:
                text.append(f", approximateInvokeCount {sink['approximate_invoke_count']}")
            text.append(f", via {sink.get('envelope_source') or sink.get('envelope') or 'raw'})")
        if sink.get("file"):
            text.append(f" from {sink['file']}", style="dim")
    return text


def _footer(event: dict[str, Any]) -> RenderableType:
    text = Text()
    text.append("Evidence: ", style="bold")
    text.append((event.get("evidence") or "").replace(",", ", ") or "none")
    if event.get("uncertain"):
        text.append("\nUncertain: ", style="bold yellow")
        reason = event.get("uncertain_reason") or "the evidence does not settle the outcome"
        text.append(reason, style="yellow")
    if event.get("payload") is not None:
        text.append("\nPayload: ", style="bold")
        payload = event["payload"]
        payload = payload if isinstance(payload, str) else jsonio.dumps(payload)
        if len(payload) > PAYLOAD_CHARS:
            rest = len(payload) - PAYLOAD_CHARS
            payload = f"{payload[:PAYLOAD_CHARS]}… ({rest:,} more characters; --format json shows all)"
        text.append(payload)
    return text


def timeline(found: dict[str, Any]) -> RenderableType:
    """One event's timeline (a `find_timelines` entry) as a rich renderable."""
    event = found["event"]
    parts: list[RenderableType] = [_header(event), _attempts(found["attempts"])]
    if found["batches"]:
        parts.append(_batches(found["batches"]))
    parts += [_sinks(event, found["sinks"]), _footer(event)]
    return Group(*parts)


def print_timelines(matched_by: str, query: str, timelines: list[dict[str, Any]]) -> None:
    """Print the timelines on stdout, with a line saying what the query matched when it was not an id."""
    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False, soft_wrap=False)
    if matched_by != "event_id":
        console.print(
            Text(f"{len(timelines)} event(s) with {matched_by.replace('_', ' ')} {query}", style="dim")
        )
    for i, found in enumerate(timelines):
        if i:
            console.rule()
        console.print(timeline(found))
