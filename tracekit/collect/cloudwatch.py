"""Live collection of one CloudWatch Logs log group into the store, incremental and resumable.

How it reads (issue 5):

* **FilterLogEvents** pages of up to 10,000 events, the API maximum, so a collect makes no more
  calls than the page limits require; events come interleaved across streams. Requests are paced
  below `max_rate` a second (the account allows about 5, shared with people using the console).
* **Logs Insights** (`insights=True`): one query that returns only the lines tracekit needs
  (INSIGHTS_PATTERNS), run over time slices. A slice that returns the 10,000-row result limit may
  have lost rows, so it is split in half and re-run; after a slice that fits, the next one is sized
  from the density just seen. Insights rows carry no eventId, so their content id is a hash of
  group, stream, time and message: do not collect one log group both ways into one store.
* **Throttling** is retried by botocore's adaptive mode first; when botocore gives up, the collector
  halves its pace, backs off (BACKOFF_FIRST_S doubling up to BACKOFF_MAX_S) and carries on.
  Throttling alone never ends a collect.

Incremental: each log group + stream prefix + filter pattern (+ Insights or not) has a checkpoint key;
its mark in the store holds the watermark, the end of the time range collected so far. A run
without `since` starts OVERLAP (5 minutes) before the watermark, because CloudWatch Logs can make
an event searchable minutes after its timestamp (ingestion delay); the events re-read are dropped
by their eventId. The first run starts FIRST_LOOKBACK (24 hours) back.

Interrupted runs: every page is spooled durably as it arrives and the cursor (the time windows
still to read and the nextToken inside the first) saved after it. Every `ingest_every` events the
spool is ingested without a mark (the watermark does not move); the final ingest commits the new
watermark with its rows. A new run ingests leftover pages first, then continues the saved windows
from the saved token; a token CloudWatch rejects (they expire after 24 hours) restarts its window.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from tracekit import jsonio
from tracekit.aws import THROTTLING_CODES, Aws, error_code
from tracekit.collect.live import CollectError, CollectReport
from tracekit.collect.progress import Meter
from tracekit.collect.spool import Spool, collect_key, last_mark
from tracekit.errors import TracekitError
from tracekit.store import Store

PAGE_LIMIT = 10_000  # FilterLogEvents `limit` maximum
INSIGHTS_ROW_LIMIT = 10_000  # rows one Logs Insights query returns at most
INGEST_EVERY = 100_000  # events spooled between intermediate ingests
OVERLAP = dt.timedelta(minutes=5)
FIRST_LOOKBACK = dt.timedelta(hours=24)
FIRST_SLICE = dt.timedelta(hours=1)  # the first Insights slice; later ones are sized from the density seen
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
MIN_RATE = 0.2  # requests a second the pace never drops below
TRANSIENT_CODES = {"ServiceUnavailableException", "InternalFailure", "InternalServerError"}
TRANSIENT_TRIES = 8
TOKEN_RESTARTS = 3  # windows restarted in a row because CloudWatch rejected their nextToken
POLL_FIRST_S = 0.25
POLL_MAX_S = 5.0
QUERY_FAILED = {"Failed", "Cancelled", "Timeout", "Unknown"}
CURSOR_VERSION = 1
ANSWERED_CODES = ("ResourceNotFoundException", "InvalidParameterException")  # errors with a clearer line

# What tracekit needs from a Lambda log group, as regular expressions valid both in Logs Insights
# (`like /…/`) and in Python (the same filter is applied to the rows, so a backend that ignores the
# query's filter, such as moto, gives the same result).
INSIGHTS_PATTERNS = (
    r"^(START|END|REPORT) RequestId: ",  # the platform's lines per invocation
    r"^(INIT_START|INIT_REPORT|RESTORE_REPORT)",  # init and SnapStart restore
    r"^RequestId: ",  # "RequestId: … Error: Runtime exited …", "… Process exited before completing request"
    r"Task timed out after",
    r"\[ERROR\]",  # Python's runtime error record, also behind LAMBDA_WARNING
    r"Invoke Error|Unhandled Promise Rejection|Uncaught Exception",  # Node runtime errors
    r"Critical exception from handler",  # Ruby
    r"Process exited before completing request",
    r'"errorType"\s*:|\{"errorMessage"\s*:',  # the runtimes' JSON error records
    r'"type"\s*:\s*"platform\.',  # JSON log format platform records
    r'"level"\s*:\s*"(ERROR|FATAL|CRITICAL)"',  # JSON log format application records at ERROR
    r'"tracekit"\s*:\s*"recorder"',  # tracekit.recorder lines
)
_NEEDED = re.compile("|".join(f"(?:{p})" for p in INSIGHTS_PATTERNS))
_REGEX_SPECIAL = re.compile(r"([\\.^$|?*+()\[\]{}/])")


@dataclass
class LogsRequest:
    """What to collect from one log group."""

    #: The log group name, e.g. /aws/lambda/orders.
    log_group: str
    #: Only log streams whose name starts with this.
    stream_prefix: str | None = None
    #: A CloudWatch Logs filter pattern (FilterLogEvents syntax; not with `insights`).
    filter_pattern: str | None = None
    #: From this time. None: OVERLAP before the watermark, or the first time FIRST_LOOKBACK (24 h) ago.
    since: dt.datetime | None = None
    #: Up to this time (inclusive). None: now.
    until: dt.datetime | None = None
    #: Run a Logs Insights query for only the lines tracekit needs instead of FilterLogEvents.
    insights: bool = False
    #: Requests a second at most (FilterLogEvents allows about 5 per account, shared with the console).
    max_rate: float = 4.0
    #: Events per FilterLogEvents page (the API maximum; smaller only in tests).
    page_size: int = PAGE_LIMIT
    #: Rows one Insights query may return (the service's limit; smaller only in tests).
    row_limit: int = INSIGHTS_ROW_LIMIT
    #: Events spooled between intermediate ingests.
    ingest_every: int = INGEST_EVERY
    #: How far before the watermark a run without `since` starts re-reading.
    overlap: dt.timedelta = OVERLAP

    @property
    def key(self) -> str:
        """The checkpoint key: log group, stream prefix, filter pattern and reading mode."""
        kind = "logs-insights" if self.insights else "logs"
        if not self.stream_prefix and not self.filter_pattern:
            return collect_key(kind, self.log_group)
        return collect_key(kind, jsonio.dumps([self.log_group, self.stream_prefix, self.filter_pattern]))


def collect_logs(
    store: Store, aws: Aws, request: LogsRequest, *, meter: Meter | None = None
) -> CollectReport:
    """Collect one log group's events into `store`; the caller holds `store.writing()`.

    Args:
        store: the open store, write lock held.
        aws: AWS access (see `tracekit.collect.live.collect_aws`).
        request: the log group, filters and time range.
        meter: the progress line to advance with every page.

    Returns:
        Rows added, API calls made, events fetched and warnings.

    Raises:
        CollectError: a missing log group or permission, an Insights query that failed, or AWS
            unreachable (what was fetched so far is kept; running again resumes).
        TracekitError: a request that cannot be run (bad time range or sizes).
    """
    _check(request)
    return _Collector(store, aws, request, meter or Meter("", enabled=False)).run()


def insights_query(stream_prefix: str | None = None, row_limit: int = INSIGHTS_ROW_LIMIT) -> str:
    """The Logs Insights query for the lines tracekit needs, oldest first."""
    needed = "\n    or ".join(f"@message like /{p}/" for p in INSIGHTS_PATTERNS)
    lines = ["fields @timestamp, @message, @logStream, @log, @ingestionTime", f"| filter {needed}"]
    if stream_prefix:
        escaped = _REGEX_SPECIAL.sub(r"\\\1", stream_prefix)
        lines.append(f"| filter @logStream like /^{escaped}/")
    lines += ["| sort @timestamp asc", f"| limit {row_limit}"]
    return "\n".join(lines)


def _check(request: LogsRequest) -> None:
    if request.insights and request.filter_pattern:
        raise TracekitError(
            "a filter pattern cannot be used with Logs Insights",
            request.filter_pattern,
            "Drop --filter-pattern or --insights",
        )
    if not 1 <= request.page_size <= PAGE_LIMIT or not 1 <= request.row_limit <= INSIGHTS_ROW_LIMIT:
        raise TracekitError(
            "page size or row limit out of range",
            f"{request.page_size}, {request.row_limit}",
            f"Use 1 to {PAGE_LIMIT}",
        )
    if request.max_rate <= 0:
        raise TracekitError("--max-rate must be positive", str(request.max_rate), "Use e.g. 4")
    if request.since and request.until and _ms(request.since) > _ms(request.until):
        raise TracekitError(
            "nothing to collect: --since is after --until",
            f"{_iso(_ms(request.since))} > {_iso(_ms(request.until))}",
            "Swap them",
        )


def _ms(value: dt.datetime) -> int:
    """Epoch milliseconds; a naive time is UTC (as the CLI's --since parser returns it)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


def _iso(ms: int) -> str:
    return (
        dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


# ---------------------------------------------------------------------------- pacing


class Pacer:
    """At most `rate` requests a second, as a minimum interval between request starts. Throttling
    halves the pace (not below MIN_RATE); each success brings it 10 % back towards `rate`."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.current = rate
        self._clock = clock
        self._sleep = sleep
        self._last: float | None = None

    def wait(self) -> None:
        """Sleep until the next request may start."""
        now = self._clock()
        if self._last is not None and now < self._last + 1.0 / self.current:
            self._sleep(self._last + 1.0 / self.current - now)
            now = self._last + 1.0 / self.current
        self._last = now

    def throttled(self) -> None:
        self.current = max(min(self.rate, MIN_RATE), self.current / 2)

    def succeeded(self) -> None:
        self.current = min(self.rate, self.current * 1.1)


def backoff_s(attempt: int) -> float:
    """Pause before retry `attempt` (0-based) after a throttling answer: doubling, capped, jittered."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


# ---------------------------------------------------------------------------- plan and cursor


@dataclass
class _Plan:
    """Where a run is: the time windows [start_ms, end_ms] (inclusive) still to read, the nextToken
    inside the first, the time range the run covers, and (Insights) the next slice length."""

    windows: list[list[int]]
    span: list[int]
    token: str | None = None
    slice_ms: int | None = None

    def to_cursor(self) -> dict[str, Any]:
        return {
            "version": CURSOR_VERSION,
            "windows": self.windows,
            "span": self.span,
            "token": self.token,
            "slice_ms": self.slice_ms,
        }

    @classmethod
    def from_cursor(cls, cursor: dict[str, Any] | None) -> _Plan | None:
        if not cursor or cursor.get("version") != CURSOR_VERSION:
            return None
        try:
            windows = [[int(a), int(b)] for a, b in cursor["windows"]]
            span = [int(cursor["span"][0]), int(cursor["span"][1])]
        except (KeyError, TypeError, ValueError):
            return None  # a cursor we cannot read: start over from the watermark (dedup keeps it safe)
        slice_ms = cursor.get("slice_ms")
        return cls(windows, span, cursor.get("token"), int(slice_ms) if slice_ms else None)

    def extend(self, start: int, end: int) -> None:
        """Also cover [start, end]: add the parts outside the span as windows of their own."""
        if start < self.span[0]:
            self.windows.append([start, self.span[0] - 1])
        if end > self.span[1]:
            self.windows.append([self.span[1] + 1, end])
        self.span = [min(start, self.span[0]), max(end, self.span[1])]


# ---------------------------------------------------------------------------- the collector


@dataclass
class _Collector:
    store: Store
    aws: Aws
    request: LogsRequest
    meter: Meter
    report: CollectReport = field(default_factory=CollectReport)

    def __post_init__(self) -> None:
        self.spool = Spool(self.store, self.request.key)
        self.pacer = Pacer(self.request.max_rate)
        self.group = self.request.log_group
        self.resource = f"log group {self.group}"
        self.throttles = 0
        self._spooled = 0  # events spooled since the last ingest
        self._seen: set[tuple[str, str]] = set()  # (stream, eventId) spooled since the last ingest

    def run(self) -> CollectReport:
        request = self.request
        self.report.resources.append(self.resource + _filters_text(request))
        # A killed run's pages first: they are durable and already paid for.
        if self.spool.pages():
            self._ingest(None)
        self._warn_other_mode()
        plan, old_watermark = self._plan()
        self.meter.note(f"{'Insights ' if request.insights else ''}{self.resource}")
        if request.insights:
            self._read_insights(plan)
        else:
            self._read_filtered(plan)
        mark = {
            "watermark": _next_watermark(old_watermark, plan.span),
            "span": plan.span,
            "log_group": self.group,
            "stream_prefix": request.stream_prefix,
            "filter_pattern": request.filter_pattern,
            "insights": request.insights,
        }
        self._ingest(mark)
        self.spool.clear_cursor()
        if self.throttles:
            self.report.warnings.append(
                f"CloudWatch Logs throttled {self.throttles} request(s) for {self.resource} (the account's "
                "limit is shared with the console); tracekit slowed down and carried on"
            )
        return self.report

    def _plan(self) -> tuple[_Plan, int | None]:
        request = self.request
        mark = last_mark(self.store, request.key)
        old = int(mark["watermark"]) if mark and mark.get("watermark") is not None else None
        now = dt.datetime.now(dt.UTC)
        end = _ms(request.until or now)
        if request.since is not None:
            start = _ms(request.since)
        elif old is not None:
            start = old - int(request.overlap.total_seconds() * 1000)
        else:
            start = _ms(now - FIRST_LOOKBACK)
        plan = _Plan.from_cursor(self.spool.cursor())
        if plan is None:
            # `until` before the watermark's overlap (no `since`): nothing new to read.
            plan = _Plan([[start, end]] if start <= end else [], [min(start, end), end])
        elif start <= end:
            plan.extend(start, end)
        self._save(plan)
        return plan, old

    def _save(self, plan: _Plan) -> None:
        self.spool.save_cursor(plan.to_cursor())

    def _ingest(self, mark: dict[str, Any] | None) -> None:
        self.report.add_ingest(self.spool.ingest(mark, log_group=self.group))
        self._spooled = 0
        self._seen.clear()

    def _warn_other_mode(self) -> None:
        other = LogsRequest(
            self.group,
            self.request.stream_prefix,
            self.request.filter_pattern,
            insights=not self.request.insights,
        )
        if last_mark(self.store, other.key) is not None:
            self.report.warnings.append(
                f"{self.resource} was collected {'without' if self.request.insights else 'with'} --insights "
                "before; Insights rows carry no eventId, so events both ways fetched are stored twice"
            )

    # -- FilterLogEvents -------------------------------------------------------------------

    def _read_filtered(self, plan: _Plan) -> None:
        request = self.request
        base: dict[str, Any] = {"logGroupName": self.group, "limit": request.page_size, "interleaved": True}
        if request.stream_prefix:
            base["logStreamNamePrefix"] = request.stream_prefix
        if request.filter_pattern:
            base["filterPattern"] = request.filter_pattern
        rejected = 0  # nextTokens rejected in a row
        while plan.windows:
            start, end = plan.windows[0]
            params = {**base, "startTime": start, "endTime": end}
            if plan.token:
                params["nextToken"] = plan.token
            response = self._call("FilterLogEvents", params)
            if response is None:  # the token was rejected: read this window again from its start
                rejected += 1
                self._restart_window(plan, rejected)
                continue
            if "nextToken" in params:
                rejected = 0
            events = response.get("events") or []
            self._spool_events(events, f"FilterLogEvents {self.group}")
            token = response.get("nextToken")
            if token and token == plan.token:
                self.report.warnings.append(
                    f"CloudWatch Logs returned the same nextToken twice for {self.resource}; stopped "
                    f"reading {_iso(start)} to {_iso(end)} there"
                )
            if token and token != plan.token:
                plan.token = token
            else:  # this window is done
                plan.windows.pop(0)
                plan.token = None
            self._save(plan)
            self._page_done(len(events))

    def _restart_window(self, plan: _Plan, rejected: int) -> None:
        start, end = plan.windows[0]
        if rejected > TOKEN_RESTARTS:
            raise CollectError(
                f"cannot collect: CloudWatch Logs rejected the nextToken {rejected} times in a row",
                f"{self.resource}, {_iso(start)} to {_iso(end)}",
                "Run the same command again later",
            )
        self.report.warnings.append(
            f"CloudWatch Logs no longer accepted the saved nextToken for {self.resource}; "
            f"re-read {_iso(start)} to {_iso(end)} from its start"
        )
        plan.token = None
        self._save(plan)

    def _spool_events(self, events: list[dict[str, Any]], source: str) -> None:
        """Spool one page, without events already spooled since the last ingest (the store drops
        repeats across batches, not within one)."""
        fresh = []
        for event in events:
            key = (str(event.get("logStreamName")), str(event.get("eventId")))
            if event.get("eventId") is None or key not in self._seen:
                self._seen.add(key)
                fresh.append(event)
        if fresh:
            self.spool.add(jsonio.dumpb({"events": fresh}), source)
            self._spooled += len(fresh)

    def _page_done(self, fetched: int) -> None:
        self.report.fetched += fetched
        self.meter.advance(items=fetched, pages=1)
        if self._spooled >= self.request.ingest_every:
            self._ingest(None)

    # -- Logs Insights -----------------------------------------------------------------------

    def _read_insights(self, plan: _Plan) -> None:
        request = self.request
        query = insights_query(request.stream_prefix, request.row_limit)
        while plan.windows:
            start, end = plan.windows[0]
            length = plan.slice_ms or int(FIRST_SLICE.total_seconds() * 1000)
            stop = _slice_end(start, end, length)
            rows = self._query(query, start, stop)
            if len(rows) >= request.row_limit and stop - start + 1 > 1000:
                plan.slice_ms = max(1000, (stop - start + 1) // 2)  # rows may be missing: halve, re-run
                self._save(plan)
                continue
            if len(rows) >= request.row_limit:
                self.report.warnings.append(
                    f"more than {request.row_limit:,} needed lines in the second from {_iso(start)} in "
                    f"{self.resource}; Logs Insights returned only {request.row_limit:,}: collect that "
                    "second without --insights"
                )
            events = [e for e in map(_row_event, rows) if e is not None and start <= e["timestamp"] <= stop]
            events = [e for e in events if _wanted(e, request.stream_prefix)]
            if events:
                self.spool.add(jsonio.dumpb({"events": events}), f"Logs Insights {self.group}")
                self._spooled += len(events)
            if stop >= end:
                plan.windows.pop(0)
            else:
                plan.windows[0] = [stop + 1, end]
            # The next slice: as long as would have filled about half the limit at this density.
            span = stop - start + 1
            plan.slice_ms = max(1000, span * request.row_limit // (2 * max(len(rows), 1)))
            self._save(plan)
            self._page_done(len(rows))

    def _query(self, query: str, start: int, stop: int) -> list[list[dict[str, str]]]:
        """Run `query` over [start, stop] ms and wait for its rows. StartQuery takes whole seconds:
        the range asked for is widened to them (the caller keeps only rows inside)."""
        params = {
            "logGroupName": self.group,
            "startTime": start // 1000,
            "endTime": stop // 1000 + 1,
            "queryString": query,
        }
        response = self._call("StartQuery", params)
        assert response is not None
        query_id = str(response["queryId"])
        done = False
        try:
            pause = POLL_FIRST_S
            while True:
                result = self._call("GetQueryResults", {"queryId": query_id})
                assert result is not None
                status = str(result.get("status"))
                if status == "Complete":
                    done = True
                    rows: list[list[dict[str, str]]] = result.get("results") or []
                    return rows
                if status in QUERY_FAILED:
                    done = True
                    raise CollectError(
                        f"cannot collect: the Logs Insights query ended {status}",
                        f"{self.resource}, {_iso(start)} to {_iso(stop)} (query {query_id})",
                        "Run the same command again, or collect without --insights",
                    )
                time.sleep(pause)
                pause = min(POLL_MAX_S, pause * 1.5)
        finally:
            if not done:  # interrupted: do not leave the query running (and billing) in the account
                self._stop_query(query_id)

    def _stop_query(self, query_id: str) -> None:
        try:
            self.aws.call("logs", "StopQuery", self.resource, queryId=query_id)
        except TracekitError:
            pass  # best effort: the query times out on its own

    # -- calls -------------------------------------------------------------------------------

    def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """One paced API call, retried through throttling; None when a nextToken was rejected."""
        tolerate = (
            *THROTTLING_CODES,
            *TRANSIENT_CODES,
            "ResourceNotFoundException",
            "InvalidParameterException",
        )
        attempt = transient = 0
        while True:
            self.pacer.wait()
            response = self.aws.call("logs", operation, self.resource, tolerate=tolerate, **params)
            self.report.call(operation)
            code = error_code(response)
            if not code:
                self.pacer.succeeded()
                return response
            if code in THROTTLING_CODES or (code in TRANSIENT_CODES and transient < TRANSIENT_TRIES):
                transient += code in TRANSIENT_CODES
                self.throttles += code in THROTTLING_CODES
                self.pacer.throttled()
                time.sleep(backoff_s(attempt))
                attempt += 1
                continue
            message = str(response.get("Error", {}).get("Message") or "")
            if code == "InvalidParameterException" and "nextToken" in params and "token" in message.lower():
                return None
            if code == "ResourceNotFoundException" and operation in ("FilterLogEvents", "StartQuery"):
                raise CollectError(
                    f"cannot collect: log group {self.group} does not exist",
                    f"region {self.aws.region}",
                    "Check --log-group, --region and --profile",
                )
            raise self.aws.error("logs", operation, self.resource, ClientError(response, operation))


def _slice_end(start: int, end: int, length: int) -> int:
    """The last ms of a slice from `start` about `length` ms long, ending on a whole second (StartQuery
    takes seconds) unless it ends the window."""
    stop = (start + length) // 1000 * 1000 - 1
    if stop < start:
        stop = start // 1000 * 1000 + 999
    return min(stop, end)


def _next_watermark(old: int | None, span: list[int]) -> int:
    """The watermark after collecting `span`: its end, when it joins what was collected before (a
    run that starts after the watermark leaves a gap, which the next run without --since fills)."""
    if old is None:
        return span[1]
    return max(old, span[1]) if span[0] <= old else old


def _row_event(row: list[dict[str, str]]) -> dict[str, Any] | None:
    """A GetQueryResults row as a FilterLogEvents-shaped event (without eventId: Insights has none)."""
    fields = {str(c.get("field")): c.get("value") for c in row if isinstance(c, dict)}
    ts = _insights_ms(fields.get("@timestamp"))
    message = fields.get("@message")
    if ts is None or message is None:
        return None
    event: dict[str, Any] = {"logStreamName": fields.get("@logStream"), "timestamp": ts, "message": message}
    ingested = _insights_ms(fields.get("@ingestionTime"))
    if ingested is not None:
        event["ingestionTime"] = ingested
    return event


def _insights_ms(value: str | None) -> int | None:
    """Epoch ms of an Insights time: `2024-05-19 06:10:35.743` (UTC), or epoch ms digits (moto)."""
    if not value:
        return None
    if value.isdigit():
        return int(value)
    try:
        parsed = dt.datetime.fromisoformat(value.replace(" ", "T"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return round(parsed.timestamp() * 1000)


def _wanted(event: dict[str, Any], stream_prefix: str | None) -> bool:
    if stream_prefix and not str(event.get("logStreamName") or "").startswith(stream_prefix):
        return False
    return _NEEDED.search(str(event["message"])) is not None


def _filters_text(request: LogsRequest) -> str:
    parts = []
    if request.stream_prefix:
        parts.append(f"streams {request.stream_prefix}*")
    if request.filter_pattern:
        parts.append(f"filter {request.filter_pattern!r}")
    return f" ({', '.join(parts)})" if parts else ""
