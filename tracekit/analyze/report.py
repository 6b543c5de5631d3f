"""The data of `tracekit report`: per function, how its events ended and what its invocations did.

Everything is computed in SQL over the analysis tables (`events`, `attempts`) and `invocations`, one
GROUP BY per figure for all functions at once, so a report over a million events costs a few scans.
The result is plain data (`Report`, `FunctionReport`): the terminal, JSON and HTML renderers only
lay it out.

Definitions, as the README states them:

- durations are the invocations' `duration_ms`; p50/p95/p99 are nearest-rank percentiles (the
  smallest duration that at least that share of invocations did not exceed);
- the retry distribution counts events by `attempts - 1`; events no log shows an attempt of (seen
  only through a DLQ message or destination record) are counted apart, under `retries` null;
- top errors group failed attempts by error type and message: `invocations` is how many invocations
  failed with it (or, for a batch item failure, reported items failed), `events` how many events had
  an attempt fail with it;
- duplicates by kind: per `duplicate_kind`, the events of that kind and their duplicate deliveries
  (a `client_retry` event is itself the copy of an earlier event: it counts as an event, and its own
  duplicates may be 0);
- worst events are the events with trouble (any outcome but `succeeded`, more than one attempt,
  duplicates, or a duplicate kind): dropped events first, then the most attempts, then the longest
  time from first seen to last seen.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tracekit.analyze.lookup import Outcome
from tracekit.errors import TracekitError

if TYPE_CHECKING:
    import duckdb

    from tracekit.store import Store

#: Outcomes in the order reports list them: good first, then the sinks, then the worst.
OUTCOMES = tuple(str(o) for o in Outcome)

#: Invocation statuses that are failures (`unknown` means the evidence is cut off, not a failure).
FAILED_STATUSES = ("error", "timeout", "out_of_memory", "crash", "init_error")

#: How many worst events, top errors and dropped event ids a function's report lists by default.
WORST_EVENTS = 10
TOP_ERRORS = 10
DROPPED_LISTED = 50

#: Outcomes over time: at most this many buckets, each a "round" width from this list (seconds);
#: past the last one, whole days.
MAX_BUCKETS = 48
BUCKET_WIDTHS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)

#: A clean event: succeeded on its one attempt, with no duplicates and no duplicate kind (a client
#: retry is a copy of another event). Anything else is trouble.
_TROUBLE = "(outcome <> 'succeeded' OR attempts > 1 OR duplicates > 0 OR duplicate_kind IS NOT NULL)"


@dataclass
class EventSummary:
    """One of a function's worst (or dropped) events, with its attempts when it is drawn."""

    event_id: str
    source: str
    outcome: str
    attempts: int
    duplicates: int
    duplicate_kind: str | None
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    span_ms: float | None
    """Time from first seen to last seen (retries' gaps included)."""
    final_error_type: str | None
    final_error_message: str | None
    business_key: str | None
    uncertain: bool
    attempt_list: list[dict[str, Any]] = field(default_factory=list)
    """attempt, request_id, start_time, end_time, duration_ms, outcome, error_type (worst events only)."""


@dataclass
class FunctionReport:
    """Everything the report says about one function (`function_name` None: events no artifact ties
    to a function, such as DLQ messages of an unknown queue)."""

    function_name: str | None
    sources: list[str]
    events: int
    uncertain: int
    outcomes: dict[str, int]
    """Every outcome, zero included."""
    retry_distribution: list[dict[str, Any]]
    """[{"retries": N or None (no attempt in the logs), "events": N}], fewest retries first."""
    duplicates: dict[str, Any]
    """{"events": N, "duplicates": N, "by_kind": {kind: {"events": N, "duplicates": N}}}: events with a
    duplicate kind or duplicates, and their duplicate deliveries."""
    dropped: list[EventSummary]
    """The dropped events, oldest first, at most DROPPED_LISTED (outcomes["dropped"] counts them all)."""
    invocations: int
    statuses: dict[str, int]
    duration_ms: dict[str, float | None]
    """p50, p95, p99 and max over the invocations' durations."""
    timeouts: int
    out_of_memory: int
    cold_starts: int
    top_errors: list[dict[str, Any]]
    """[{"error_type", "error_message", "invocations", "events"}], most invocations first."""
    worst_events: list[EventSummary]
    outcomes_over_time: dict[str, Any]
    """{"bucket_s": width, "buckets": [{"start": time, "outcomes": {outcome: N}}], "undated": N}."""


@dataclass
class Report:
    """The report over a store's visible analysis."""

    generation: int | None
    built_at: str | None
    function: str | None
    """The --function filter, or None for every function."""
    functions: list[FunctionReport]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (times stay datetimes; jsonio writes them as UTC)."""
        data = asdict(self)
        for function in data["functions"]:
            for key in ("dropped", "worst_events"):
                for event in function[key]:
                    event["attempts_detail"] = event.pop("attempt_list")
                    if key == "dropped":
                        del event["attempts_detail"]
        return data


def build_report(store: Store, *, function: str | None = None, worst: int = WORST_EVENTS) -> Report:
    """The report over `store`'s visible analysis (bring it up to date first: `ensure_current`).

    Args:
        store: an open store with an analysis.
        function: only this function.
        worst: how many worst events to list per function.

    Raises:
        TracekitError: `function` has no events and no invocations in the store.
    """
    current = store.current_analysis() or {}
    con = store.connect()
    try:
        reports = _function_reports(con, function, worst)
    finally:
        con.close()
    if function is not None and not reports:
        raise TracekitError(
            "no events or invocations of this function in the store",
            function,
            "List the functions with `tracekit report` or `tracekit events`",
        )
    built_at = current.get("built_at")
    return Report(current.get("generation"), str(built_at) if built_at else None, function, reports)


# -- the figures ----------------------------------------------------------------------------------


def _function_reports(
    con: duckdb.DuckDBPyConnection, function: str | None, worst: int
) -> list[FunctionReport]:
    where, params = ("WHERE function_name = ?", [function]) if function is not None else ("", [])
    # The invocations view deduplicates re-ingested log streams on every scan: pay for that once.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE report_invocations AS SELECT function_name, status, duration_ms, "
        f"cold_start, error_type, error_message FROM invocations {where}",
        params,
    )
    names = [
        row[0]
        for row in con.execute(
            f"SELECT DISTINCT function_name FROM (SELECT function_name FROM events {where} "
            f"UNION ALL SELECT function_name FROM report_invocations {where}) "
            "ORDER BY function_name NULLS LAST",
            params * 2,
        ).fetchall()
    ]
    if not names:
        return []
    events = _by_function(con, _format(_EVENTS_SQL, where), params)
    outcomes = _grouped(
        con, f"SELECT function_name, outcome, count(*) FROM events {where} GROUP BY ALL", params
    )
    retries = _grouped(con, _format(_RETRIES_SQL, where), params)
    duplicates = _rows_by_function(con, _format(_DUPLICATES_SQL, where), params)
    invocations = _by_function(con, _format(_INVOCATIONS_SQL, where), params)
    statuses = _grouped(
        con,
        "SELECT function_name, coalesce(status, 'unknown'), count(*) "
        f"FROM report_invocations {where} GROUP BY ALL",
        params,
    )
    errors = _rows_by_function(
        con, _format(_ERRORS_SQL, where, failed=_sql_list(FAILED_STATUSES)), params * 2
    )
    dropped = _summaries(con, _format(_DROPPED_SQL, where, limit=DROPPED_LISTED), params)
    worst_events = _summaries(con, _format(_WORST_SQL, where, trouble=_TROUBLE, limit=int(worst)), params)
    _attach_attempts(con, worst_events)
    over_time = _outcomes_over_time(con, where, params)

    reports = []
    for name in names:
        ev = events.get(name, {})
        inv = invocations.get(name, {})
        dupes = duplicates.get(name, [])
        reports.append(
            FunctionReport(
                function_name=name,
                sources=list(ev.get("sources") or []),
                events=int(ev.get("events") or 0),
                uncertain=int(ev.get("uncertain") or 0),
                outcomes={o: outcomes.get(name, {}).get(o, 0) for o in OUTCOMES},
                retry_distribution=[
                    {"retries": k, "events": n}
                    for k, n in sorted(
                        retries.get(name, {}).items(), key=lambda kv: (kv[0] is None, kv[0] or 0)
                    )
                ],
                duplicates={
                    "events": sum(d["events"] for d in dupes),
                    "duplicates": sum(d["duplicates"] for d in dupes),
                    "by_kind": {
                        d["kind"]: {"events": d["events"], "duplicates": d["duplicates"]} for d in dupes
                    },
                },
                dropped=dropped.get(name, []),
                invocations=int(inv.get("invocations") or 0),
                statuses=statuses.get(name, {}),
                duration_ms={k: inv.get(k) for k in ("p50", "p95", "p99", "max")},
                timeouts=int(inv.get("timeouts") or 0),
                out_of_memory=int(inv.get("out_of_memory") or 0),
                cold_starts=int(inv.get("cold_starts") or 0),
                top_errors=errors.get(name, [])[:TOP_ERRORS],
                worst_events=worst_events.get(name, []),
                outcomes_over_time=over_time.get(name, {"bucket_s": None, "buckets": [], "undated": 0}),
            )
        )
    return reports


_EVENTS_SQL = """
SELECT function_name, list(DISTINCT source ORDER BY source) AS sources, count(*) AS events,
       count(*) FILTER (WHERE uncertain) AS uncertain
FROM events {where} GROUP BY function_name
"""

# Events no log shows an attempt of have no retries to count: NULL, listed apart.
_RETRIES_SQL = """
SELECT function_name, CASE WHEN attempts > 0 THEN attempts - 1 END AS retries, count(*)
FROM events {where} GROUP BY ALL
"""

_DUPLICATES_SQL = """
SELECT function_name, coalesce(duplicate_kind, 'unclassified') AS kind, count(*) AS events,
       sum(duplicates)::BIGINT AS duplicates
FROM events {where} {and_} (duplicates > 0 OR duplicate_kind IS NOT NULL)
GROUP BY ALL ORDER BY function_name, events DESC, kind
"""

_INVOCATIONS_SQL = """
SELECT function_name, count(*) AS invocations,
       count(*) FILTER (WHERE status = 'timeout') AS timeouts,
       count(*) FILTER (WHERE status = 'out_of_memory') AS out_of_memory,
       count(*) FILTER (WHERE cold_start) AS cold_starts,
       quantile_disc(duration_ms, 0.5) AS p50, quantile_disc(duration_ms, 0.95) AS p95,
       quantile_disc(duration_ms, 0.99) AS p99, max(duration_ms) AS max
FROM report_invocations {where} GROUP BY function_name
"""

# Failed invocations say how often an error struck, including invocations no event was tied to;
# failed attempts say how many events it hit, and count the batch item failures a successful
# invocation reported, which `invocations` does not show as failures.
_ERRORS_SQL = """
WITH by_invocation AS (
    SELECT function_name, error_type, error_message, count(*) AS invocations
    FROM report_invocations {where} {and_} status IN ({failed}) GROUP BY ALL
), by_attempt AS (
    SELECT function_name, error_type, error_message, count(DISTINCT event_id) AS events,
           count(DISTINCT (request_id, start_time)) AS invocations
    FROM attempts {where} {and_} outcome <> 'success' GROUP BY ALL
)
SELECT coalesce(i.function_name, a.function_name) AS function_name,
       coalesce(i.error_type, a.error_type) AS error_type,
       coalesce(i.error_message, a.error_message) AS error_message,
       coalesce(i.invocations, a.invocations) AS invocations, coalesce(a.events, 0) AS events
FROM by_invocation i FULL JOIN by_attempt a
  ON i.function_name IS NOT DISTINCT FROM a.function_name
 AND i.error_type IS NOT DISTINCT FROM a.error_type
 AND i.error_message IS NOT DISTINCT FROM a.error_message
ORDER BY function_name, invocations DESC, events DESC, error_type NULLS LAST, error_message NULLS LAST
"""

_SUMMARY_COLUMNS = """event_id, source, outcome, attempts, duplicates, duplicate_kind, first_seen, last_seen,
       date_diff('millisecond', first_seen, last_seen)::DOUBLE AS span_ms, final_error_type,
       final_error_message, business_key, uncertain"""

_DROPPED_SQL = f"""
SELECT function_name, {_SUMMARY_COLUMNS}
FROM events {{where}} {{and_}} outcome = 'dropped'
QUALIFY row_number() OVER (PARTITION BY function_name ORDER BY first_seen NULLS LAST, event_id) <= {{limit}}
ORDER BY function_name, first_seen NULLS LAST, event_id
"""

_WORST_ORDER = (
    "outcome = 'dropped' DESC, attempts DESC, span_ms DESC NULLS LAST, first_seen NULLS LAST, event_id"
)
_WORST_SQL = f"""
SELECT function_name, {_SUMMARY_COLUMNS}
FROM events {{where}} {{and_}} {{trouble}}
QUALIFY row_number() OVER (PARTITION BY function_name ORDER BY {_WORST_ORDER}) <= {{limit}}
ORDER BY function_name, {_WORST_ORDER}
"""


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _format(sql: str, where: str, **extra: Any) -> str:
    return sql.format(where=where, and_="AND" if where else "WHERE", **extra)


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _by_function(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]
) -> dict[str | None, dict[str, Any]]:
    return {row.pop("function_name"): row for row in _dicts(con, sql, params)}


def _rows_by_function(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]
) -> dict[str | None, list[dict[str, Any]]]:
    found: dict[str | None, list[dict[str, Any]]] = {}
    for row in _dicts(con, sql, params):
        found.setdefault(row.pop("function_name"), []).append(row)
    return found


def _grouped(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> dict[str | None, dict[Any, int]]:
    """(function, key, count) rows as {function: {key: count}}."""
    found: dict[str | None, dict[Any, int]] = {}
    for name, key, count in con.execute(sql, params).fetchall():
        found.setdefault(name, {})[key] = int(count)
    return found


def _summaries(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]
) -> dict[str | None, list[EventSummary]]:
    return {
        name: [EventSummary(**row) for row in rows]
        for name, rows in _rows_by_function(con, sql, params).items()
    }


_ATTEMPTS_SQL = """
WITH w AS (SELECT unnest(?::VARCHAR[]) AS function_name, unnest(?::VARCHAR[]) AS event_id,
                  unnest(?::VARCHAR[]) AS source)
SELECT a.function_name, a.event_id, a.source, attempt, request_id, start_time, end_time, duration_ms,
       outcome, error_type
FROM attempts a JOIN w
  ON a.event_id = w.event_id AND a.source = w.source AND a.function_name IS NOT DISTINCT FROM w.function_name
ORDER BY a.event_id, attempt
"""


def _attach_attempts(con: duckdb.DuckDBPyConnection, worst: dict[str | None, list[EventSummary]]) -> None:
    """Fill each worst event's attempt_list, in attempt order, with one query."""
    chosen = {(name, s.event_id, s.source): s for name, summaries in worst.items() for s in summaries}
    if not chosen:
        return
    names, event_ids, sources = (list(column) for column in zip(*chosen, strict=True))
    for row in _dicts(
        con,
        _ATTEMPTS_SQL,
        [names, event_ids, sources],
    ):
        chosen[(row.pop("function_name"), row.pop("event_id"), row.pop("source"))].attempt_list.append(row)


# -- outcomes over time ---------------------------------------------------------------------------


def bucket_seconds(first: dt.datetime, last: dt.datetime) -> int:
    """The width of the outcomes-over-time buckets for events first seen between `first` and `last`:
    the narrowest width in BUCKET_WIDTHS_S (or whole days) giving at most MAX_BUCKETS buckets aligned
    on multiples of the width since 1970."""
    start, end = _epoch_s(first), _epoch_s(last)
    for width in BUCKET_WIDTHS_S:
        if end // width - start // width + 1 <= MAX_BUCKETS:
            return width
    days = max(1, math.ceil((end - start) / 86400 / (MAX_BUCKETS - 1)))
    while end // (days * 86400) - start // (days * 86400) + 1 > MAX_BUCKETS:
        days += 1
    return days * 86400


def _epoch_s(value: dt.datetime) -> int:
    return math.floor(value.replace(tzinfo=dt.UTC).timestamp())


def _outcomes_over_time(
    con: duckdb.DuckDBPyConnection, where: str, params: list[Any]
) -> dict[str | None, dict[str, Any]]:
    spans = con.execute(
        f"SELECT function_name, min(first_seen), max(first_seen), count(*) FILTER (WHERE first_seen IS NULL) "
        f"FROM events {where} GROUP BY function_name",
        params,
    ).fetchall()
    found: dict[str | None, dict[str, Any]] = {}
    widths: dict[str | None, int] = {}
    for name, first, last, undated in spans:
        width = bucket_seconds(first, last) if first is not None else None
        found[name] = {"bucket_s": width, "buckets": [], "undated": int(undated)}
        if width is not None:
            widths[name] = width
    if not widths:
        return found
    rows = con.execute(
        "WITH w AS (SELECT unnest(?::VARCHAR[]) AS function_name, unnest(?::BIGINT[]) AS width) "
        "SELECT e.function_name, make_timestamp((epoch_us(e.first_seen) // (w.width * 1000000)) "
        "* w.width * 1000000) AS bucket, e.outcome, count(*) "
        f"FROM (SELECT * FROM events {where}) e "
        "JOIN w ON e.function_name IS NOT DISTINCT FROM w.function_name "
        "WHERE e.first_seen IS NOT NULL GROUP BY ALL ORDER BY e.function_name, bucket",
        [list(widths), list(widths.values()), *params],
    ).fetchall()
    for name, bucket, outcome, count in rows:
        buckets = found[name]["buckets"]
        if not buckets or buckets[-1]["start"] != bucket:
            buckets.append({"start": bucket, "outcomes": {}})
        buckets[-1]["outcomes"][outcome] = int(count)
    for entry in found.values():
        for bucket in entry["buckets"]:
            bucket["outcomes"] = {o: bucket["outcomes"][o] for o in OUTCOMES if o in bucket["outcomes"]}
    return found
