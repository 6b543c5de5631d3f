"""Questions users ask of the analysis: which events match these filters, and what happened to one.

`list_events` answers `tracekit events`, `find_timelines` answers `tracekit show`: the event (found by
event id, business key or request id), every attempt in order, the batches it was in with their
ancestry, and the destination record or dead letter that proves where it ended.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tracekit import jsonio
from tracekit.analyze.keys import Config, ConfigError, parse_path, with_business_key
from tracekit.errors import TracekitError

if TYPE_CHECKING:
    import duckdb


class Outcome(StrEnum):
    """Where an event's lifecycle ended (the `events.outcome` values)."""

    SUCCEEDED = "succeeded"
    SUCCEEDED_AFTER_RETRY = "succeeded_after_retry"
    DEAD_LETTERED = "dead_lettered"
    SENT_TO_DESTINATION = "sent_to_destination"
    DROPPED = "dropped"
    IN_FLIGHT = "in_flight"


#: The columns `tracekit events` prints, one line per event.
EVENT_LIST_COLUMNS = (
    "event_id",
    "source",
    "function_name",
    "outcome",
    "attempts",
    "duplicates",
    "first_seen",
    "last_seen",
    "business_key",
    "uncertain",
)

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.I)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """A naive-UTC time from an ISO time (a date, or a time with or without zone) or a relative
    `30m` / `6h` / `2d` / `1w` before `now`.

    Raises:
        TracekitError: neither form.
    """
    match = _RELATIVE.match(text)
    if match:
        now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return now - dt.timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
    try:
        parsed = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise TracekitError(
            "cannot read the time", text, "Use an ISO time (2026-11-22T09:00:00Z) or 30m, 6h, 2d, 1w"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def split_key_option(text: str | None) -> tuple[str | None, str | None]:
    """`--key` as (path, value): `$.path` overrides the key path, `$.path=VALUE` also filters by
    value, anything else is a value of the configured key.

    Raises:
        ConfigError: a path that is not in the supported subset.
    """
    if text is None:
        return None, None
    if not text.lstrip().startswith("$"):
        return None, text
    path, sep, value = text.partition("=")
    parse_path(path)
    return path.strip(), value if sep else None


@dataclass(frozen=True)
class EventFilter:
    """The filters of `tracekit events`; None means "any"."""

    function: str | None = None
    outcome: Outcome | None = None
    duplicates: bool = False
    since: dt.datetime | None = None
    key_value: str | None = None
    key_path: str | None = None
    limit: int | None = None


def events_relation(config: Config, key_path: str | None) -> str:
    """The events view, with business keys recomputed when a --key path overrides the configured ones."""
    if key_path is None:
        return "SELECT * FROM events"
    return with_business_key("SELECT * FROM events", config, key_path)


def list_events(
    con: duckdb.DuckDBPyConnection, config: Config, where: EventFilter
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The events matching `where`, oldest first, as (columns, rows) with EVENT_LIST_COLUMNS."""
    conditions, params = filter_sql(where)
    sql = (
        f"SELECT {', '.join(EVENT_LIST_COLUMNS)} FROM ({events_relation(config, where.key_path)}) "
        f"{'WHERE ' + ' AND '.join(conditions) if conditions else ''} "
        "ORDER BY first_seen NULLS LAST, event_id"
    )
    if where.limit is not None:
        sql += f" LIMIT {int(where.limit)}"
    cur = con.execute(sql, params)
    return [d[0] for d in cur.description or []], cur.fetchall()


def filter_sql(where: EventFilter) -> tuple[list[str], list[Any]]:
    """`where` (all but its limit) as SQL conditions over the events table, and their parameters."""
    conditions: list[str] = []
    params: list[Any] = []
    if where.function is not None:
        conditions.append("function_name = ?")
        params.append(where.function)
    if where.outcome is not None:
        conditions.append("outcome = ?")
        params.append(str(where.outcome))
    if where.duplicates:
        conditions.append("duplicates > 0")
    if where.since is not None:
        # An event counts when anything happened to it at or after the time.
        conditions.append("coalesce(last_seen, first_seen) >= ?")
        params.append(where.since)
    if where.key_value is not None:
        conditions.append("business_key = ?")
        params.append(where.key_value)
    return conditions, params


# -- one event's timeline -------------------------------------------------------------------------


def dict_rows(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The rows of an executed query as dicts by column name."""
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def check_key_path(key_path: str | None) -> None:
    """Refuse a `--key` for show that is not a key path (show takes the key value as its argument).

    Raises:
        ConfigError: not a path, or not in the supported subset.
    """
    if key_path is None:
        return
    if not key_path.lstrip().startswith("$"):
        raise ConfigError("--key on show takes a key path", key_path, 'Write it like --key "$.orderId"')
    parse_path(key_path)


def find_timelines(
    con: duckdb.DuckDBPyConnection, config: Config, query: str, key_path: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The timelines (see `_timeline`) of the events `query` names, and what it matched: `event_id`,
    `business_key` (every event with that key, oldest first) or `request_id` (the events an
    invocation handled).

    Raises:
        TracekitError: nothing matches.
        ConfigError: `key_path` is not a supported path.
    """
    check_key_path(key_path)
    relation = events_relation(config, key_path)
    lookups = (
        ("event_id", "event_id = ?"),
        ("business_key", "business_key = ?"),
        ("request_id", "event_id IN (SELECT event_id FROM attempts WHERE request_id = ?)"),
    )
    for matched_by, condition in lookups:
        events = dict_rows(
            con.execute(
                f"SELECT * FROM ({relation}) WHERE {condition} ORDER BY first_seen NULLS LAST, event_id",
                [query],
            )
        )
        if events:
            return matched_by, [_timeline(con, event) for event in events]
    raise TracekitError(
        "no event with this id, business key or request id",
        query,
        "List events with `tracekit events`; keys need a path in tracekit.toml or --key",
    )


def _timeline(con: duckdb.DuckDBPyConnection, event: dict[str, Any]) -> dict[str, Any]:
    """{"event": the events row (payload parsed), "attempts", "batches", "sinks"}."""
    event = {**event, "payload": _payload(event.get("payload"))}
    attempts = dict_rows(
        con.execute(
            "SELECT * EXCLUDE (event_id, function_name, source) FROM attempts "
            "WHERE event_id = ? ORDER BY attempt",
            [event["event_id"]],
        )
    )
    return {
        "event": event,
        "attempts": attempts,
        "batches": _ancestry(con, [a["batch_id"] for a in attempts if a["batch_id"]]),
        "sinks": _sinks(con, event),
    }


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return jsonio.loads(text)
    except ValueError:
        return text


def _ancestry(con: duckdb.DuckDBPyConnection, batch_ids: list[str]) -> list[dict[str, Any]]:
    """The batches the event was in (`batch_ids`, in attempt order) and every batch they were split
    from: by depth, then in the order of the event's attempts under them."""
    if not batch_ids:
        return []
    batches = dict_rows(
        con.execute(
            "WITH RECURSIVE chain(batch_id) AS ("
            "  SELECT unnest(?::VARCHAR[]) "
            "  UNION SELECT b.parent_batch_id FROM batches b JOIN chain c USING (batch_id) "
            "  WHERE b.parent_batch_id IS NOT NULL) "
            "SELECT *, list_contains(?::VARCHAR[], batch_id) AS contains_event FROM batches "
            "WHERE batch_id IN (SELECT batch_id FROM chain)",
            [batch_ids, batch_ids],
        )
    )
    # A batch ranks by the earliest attempt in it or in any batch split from it.
    parent = {b["batch_id"]: b["parent_batch_id"] for b in batches}
    rank: dict[str, int] = {}
    for position, batch_id in enumerate(batch_ids):
        node: str | None = batch_id
        while node is not None and node not in rank:
            rank[node] = position
            node = parent.get(node)
    batches.sort(key=lambda b: (b["depth"] or 0, rank.get(b["batch_id"], len(batch_ids)), b["batch_id"]))
    return batches


def _sinks(con: duckdb.DuckDBPyConnection, event: dict[str, Any]) -> list[dict[str, Any]]:
    """The destination record and dead letter that prove where the event ended."""
    sinks = []
    if event.get("destination_record_id"):
        for row in dict_rows(
            con.execute(
                "SELECT record_id, kind, condition, timestamp, approximate_invoke_count, function_error, "
                "envelope, envelope_id, envelope_source, source AS file FROM destination_records "
                "WHERE record_id = ? LIMIT 1",
                [event["destination_record_id"]],
            )
        ):
            sinks.append({"sink": "destination_record", **row})
    if event.get("dead_letter_message_id"):
        for row in dict_rows(
            con.execute(
                "SELECT message_id, kind, queue, sent_timestamp, approximate_receive_count, error_code, "
                "error_message, dead_letter_source_arn, source AS file FROM dead_letters "
                "WHERE message_id = ? ORDER BY sent_timestamp LIMIT 1",
                [event["dead_letter_message_id"]],
            )
        ):
            sinks.append({"sink": "dead_letter", **row})
    return sinks
