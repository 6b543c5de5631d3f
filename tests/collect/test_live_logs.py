"""`collect_logs` against a real moto server over HTTP, through the fault-injecting proxy.

The oracle is what each test put into CloudWatch Logs (moto) and, for eventIds (moto assigns them),
one direct FilterLogEvents call past tracekit; never what tracekit reports about its own work.
Faults moto cannot make (throttling, a rejected nextToken, a lost connection, an Insights query
that fails) come from tests/faultproxy.py. AWS_MAX_ATTEMPTS=1 turns botocore's own retries off, so
every injected fault reaches the collector.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.faultproxy import FaultProxy, Rule
from tracekit.collect import cloudwatch
from tracekit.collect.cloudwatch import LogsRequest, Pacer, collect_logs
from tracekit.collect.live import CollectError, CollectReport, collect_aws
from tracekit.collect.spool import Spool, last_mark
from tracekit.store import Store

GROUP = "/aws/lambda/orders"
Row = tuple[str, int, str]  # (log_stream, timestamp ms, message)


@pytest.fixture
def proxy(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The proxy in front of a fresh moto; tracekit's AWS calls go through it, without botocore retries."""
    with FaultProxy(aws_endpoint) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        monkeypatch.setattr(cloudwatch, "BACKOFF_FIRST_S", 0.01)
        monkeypatch.setattr(cloudwatch, "POLL_FIRST_S", 0.01)
        yield running


@pytest.fixture
def logs(aws_endpoint: str) -> Any:
    """A logs client straight to moto (not through the proxy): what the test puts is not counted."""
    client = boto3.client("logs", endpoint_url=aws_endpoint, region_name="eu-west-1")
    client.create_log_group(logGroupName=GROUP)
    return client


def now_ms() -> int:
    return int(time.time() * 1000)


def put(logs: Any, stream: str, events: list[tuple[int, str]]) -> list[Row]:
    """PutLogEvents `events` (timestamp ms, message) into GROUP/stream; returns them as rows."""
    try:
        logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    events = sorted(events)
    logs.put_log_events(
        logGroupName=GROUP,
        logStreamName=stream,
        logEvents=[{"timestamp": ts, "message": message} for ts, message in events],
    )
    return [(stream, ts, message) for ts, message in events]


def put_invocations(logs: Any, streams: int, per_stream: int, *, start_ms: int, tag: str = "") -> list[Row]:
    """START lines, one a second per stream, interleaved in time across `streams` streams."""
    rows: list[Row] = []
    for s in range(streams):
        events = [
            (start_ms + i * 1000 + s, f"START RequestId: {tag}{s:02d}-{i:04d} Version: $LATEST\n")
            for i in range(per_stream)
        ]
        rows += put(logs, f"2026/11/26/[$LATEST]{s:02d}", events)
    return rows


def stored(store_path: Path) -> list[Row]:
    """Every log event in the store as (stream, ms, message), sorted, duplicates kept."""
    rows = Store.open(store_path).query(
        "SELECT log_stream, epoch_ms(timestamp) AS ms, message FROM log_events ORDER BY ALL"
    )
    return [(r["log_stream"], r["ms"], r["message"]) for r in rows]


def stored_event_ids(store_path: Path) -> list[str]:
    rows = Store.open(store_path).query("SELECT event_id FROM log_events ORDER BY event_id")
    return [r["event_id"] for r in rows]


def moto_event_ids(logs: Any) -> list[str]:
    """The eventIds moto holds for GROUP, read in one call past tracekit."""
    events = logs.filter_log_events(logGroupName=GROUP, limit=10_000)["events"]
    return sorted(e["eventId"] for e in events)


def collect(store_path: Path, **options: Any) -> CollectReport:
    request = LogsRequest(GROUP, **{"max_rate": 200.0, **options})
    with Store.open(store_path, create=True) as store, store.writing():
        return collect_logs(store, collect_aws(), request)


def bodies(proxy: FaultProxy, operation: str) -> list[dict[str, Any]]:
    return [r.body for r in proxy.requests if r.operation == operation]


# ---------------------------------------------------------------------------- incremental


def test_second_collect_adds_nothing_and_new_events_are_fetched(
    proxy: FaultProxy, logs: Any, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    first = put_invocations(logs, streams=3, per_stream=10, start_ms=now_ms() - 30 * 60_000)

    report = collect(store, page_size=10)
    assert sorted(first) == stored(store)
    assert stored_event_ids(store) == moto_event_ids(logs)
    assert report.counts["log_events"] == 30
    assert proxy.counts["FilterLogEvents"] == math.ceil(30 / 10)  # full pages, no extra call

    watermark = last_mark(Store.open(store), LogsRequest(GROUP).key)["watermark"]  # type: ignore[index]
    proxy.clear()
    again = collect(store, page_size=10)
    assert again.counts["log_events"] == 0 and again.fetched == 0
    [request] = bodies(proxy, "FilterLogEvents")
    # It re-reads the 5 minutes before the watermark (the documented overlap), nothing older.
    assert request["startTime"] == watermark - 5 * 60_000

    newer = put_invocations(logs, streams=2, per_stream=3, start_ms=now_ms() - 60_000, tag="new-")
    proxy.clear()
    third = collect(store, page_size=10)
    assert third.counts["log_events"] == 6 and third.fetched == 6
    assert sorted(first + newer) == stored(store)
    assert stored_event_ids(store) == moto_event_ids(logs)


def test_requests_use_the_page_maximum_and_pass_the_filters(
    proxy: FaultProxy, logs: Any, tmp_path: Path
) -> None:
    rows = put(logs, "2026/11/26/[$LATEST]aa", [(now_ms() - 1000, "ERROR boom\n")])
    collect(tmp_path / "store", stream_prefix="2026/11/26/", filter_pattern="ERROR")
    [request] = bodies(proxy, "FilterLogEvents")
    assert request["limit"] == 10_000
    assert request["logStreamNamePrefix"] == "2026/11/26/"
    assert request["filterPattern"] == "ERROR"
    assert request["interleaved"] is True
    assert stored(tmp_path / "store") == rows


def test_first_run_reads_24_hours_back_and_since_until_bound_the_window(
    proxy: FaultProxy, logs: Any, tmp_path: Path
) -> None:
    before = now_ms()
    collect(tmp_path / "a")
    [request] = bodies(proxy, "FilterLogEvents")
    assert before - 24 * 3600_000 - 5000 <= request["startTime"] <= now_ms() - 24 * 3600_000
    assert before <= request["endTime"] <= now_ms()

    proxy.clear()
    since = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
    until = dt.datetime(2026, 11, 20, 10, 0)  # naive: UTC, as the CLI's parser returns it
    collect(tmp_path / "b", since=since, until=until)
    [request] = bodies(proxy, "FilterLogEvents")
    assert request["startTime"] == 1_795_165_200_000  # date -u -d 2026-11-20T09:00:00Z +%s
    assert request["endTime"] == 1_795_168_800_000  # date -u -d 2026-11-20T10:00:00Z +%s


# ---------------------------------------------------------------------------- faults

# What CloudWatch Logs answers for a nextToken it does not accept (boto/boto3#1467); the tokens
# expire after 24 hours, and the API documents no other error code for FilterLogEvents to use.
INVALID_PARAMETER = "InvalidParameterException"
INVALID_TOKEN = "The specified nextToken is invalid."


def has_token(body: dict[str, Any]) -> bool:
    return "nextToken" in body


def test_expired_next_token_restarts_its_window(proxy: FaultProxy, logs: Any, tmp_path: Path) -> None:
    rows = put_invocations(logs, streams=2, per_stream=15, start_ms=now_ms() - 20 * 60_000)
    proxy.add(
        Rule(
            "FilterLogEvents",
            error=INVALID_PARAMETER,
            message=INVALID_TOKEN,
            match=has_token,
            skip=1,
            times=1,
        )
    )
    report = collect(tmp_path / "store", page_size=10)
    assert stored(tmp_path / "store") == sorted(rows)
    assert stored_event_ids(tmp_path / "store") == moto_event_ids(logs)
    requests = bodies(proxy, "FilterLogEvents")
    # page 1, page 2, page 3 rejected, then the window again from its start: 3 pages
    assert ["nextToken" in r for r in requests] == [False, True, True, False, True, True]
    assert any("nextToken" in w for w in report.warnings)


def test_a_token_rejected_again_and_again_ends_with_one_line(
    proxy: FaultProxy, logs: Any, tmp_path: Path
) -> None:
    put_invocations(logs, streams=1, per_stream=15, start_ms=now_ms() - 20 * 60_000)
    proxy.add(Rule("FilterLogEvents", error=INVALID_PARAMETER, message=INVALID_TOKEN, match=has_token))
    with pytest.raises(CollectError, match="rejected the nextToken 4 times in a row: log group "):
        collect(tmp_path / "store", page_size=10)
    # Page 1, its rejected follow-up, four times: then it gives up instead of looping.
    assert ["nextToken" in r for r in bodies(proxy, "FilterLogEvents")] == [False, True] * 4


def test_throttling_backs_off_and_carries_on(proxy: FaultProxy, logs: Any, tmp_path: Path) -> None:
    rows = put_invocations(logs, streams=3, per_stream=10, start_ms=now_ms() - 20 * 60_000)
    proxy.add(Rule("FilterLogEvents", error="ThrottlingException", message="Rate exceeded", skip=1, times=2))
    report = collect(tmp_path / "store", page_size=10)
    assert stored(tmp_path / "store") == sorted(rows)
    assert proxy.counts["FilterLogEvents"] == 3 + 2
    assert any("throttled 2 request(s)" in w for w in report.warnings)


def test_network_loss_mid_run_resumes_from_the_saved_token(
    proxy: FaultProxy, logs: Any, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    rows = put_invocations(logs, streams=2, per_stream=25, start_ms=now_ms() - 20 * 60_000)
    proxy.add(Rule("FilterLogEvents", drop=True, skip=3))  # the connection dies after 3 pages
    with pytest.raises(CollectError, match="FilterLogEvents failed.*Check that http://127.0.0.1"):
        collect(store, page_size=10, ingest_every=20)
    # The first ingest (after 2 pages: the 20 earliest events) is visible, page 3 waits in the
    # spool, the watermark has not moved, and the cursor survived the intermediate ingest.
    assert stored(store) == sorted(sorted(rows, key=lambda r: r[1])[:20])
    key = LogsRequest(GROUP).key
    with Store.open(store) as st:
        assert last_mark(st, key) is None
        saved = Spool(st, key).cursor()
    assert saved is not None and saved["token"]

    proxy.clear()
    collect(store, page_size=10, ingest_every=20)
    assert stored(store) == sorted(rows)
    assert stored_event_ids(store) == moto_event_ids(logs)
    # Resumed, not restarted: pages 4 and 5 of the killed run's window (page 3 came from the
    # spool), then the time since that window ended.
    requests = bodies(proxy, "FilterLogEvents")
    assert [r.get("nextToken") for r in requests[:1]] == [saved["token"]]
    assert len(requests) == 3
    assert requests[2]["startTime"] == requests[0]["endTime"] + 1 and "nextToken" not in requests[2]


def test_missing_log_group_is_one_line(proxy: FaultProxy, tmp_path: Path) -> None:
    request = LogsRequest("/aws/lambda/nope")
    with Store.open(tmp_path / "s", create=True) as store, store.writing():
        with pytest.raises(CollectError) as caught:
            collect_logs(store, collect_aws(), request)
    assert caught.value.line() == (
        "cannot collect: log group /aws/lambda/nope does not exist: region eu-west-1. "
        "Check --log-group, --region and --profile"
    )


def test_missing_permission_names_the_action_and_the_log_group(
    proxy: FaultProxy, logs: Any, tmp_path: Path
) -> None:
    proxy.add(Rule("FilterLogEvents", error="AccessDeniedException", message="not authorized"))
    with pytest.raises(CollectError) as caught:
        collect(tmp_path / "s")
    line = caught.value.line()
    assert "\n" not in line
    assert f"log group {GROUP}" in line and "Allow logs:FilterLogEvents" in line


# ---------------------------------------------------------------------------- Logs Insights

NEEDED = [
    "START RequestId: r1 Version: $LATEST\n",
    "END RequestId: r1\n",
    "REPORT RequestId: r1\tDuration: 3.1 ms\tBilled Duration: 4 ms\tMemory Size: 128 MB\t"
    "Max Memory Used: 60 MB\t\n",
    "INIT_START Runtime Version: python:3.12.v20\tRuntime Version ARN: arn:aws:lambda:x\n",
    "2026-11-26T10:00:00.000Z r2 Task timed out after 3.00 seconds\n",
    "RequestId: r3 Error: Runtime exited with error: signal: killed\n",
    "[ERROR] ValueError: bad order\nTraceback (most recent call last):\n  File x\n",
    '2026-11-26T10:00:00.000Z\tr4\tERROR\tInvoke Error \t{"errorType":"Error","errorMessage":"x"}\n',
    '{"time":"2026-11-26T10:00:00.000Z","type":"platform.start","record":{"requestId":"r5"}}',
    '{"timestamp":"2026-11-26T10:00:00Z","level":"ERROR","message":"boom","requestId":"r5"}',
    '{"tracekit":"recorder","v":1,"phase":"in","requestId":"r6","source":"aws:sqs","count":0,"items":[]}\n',
]
NOT_NEEDED = [
    "2026-11-26T10:00:00.000Z\tr4\tINFO\tprocessing order 4711\n",
    "[INFO]\t2026-11-26T10:00:00.000Z\tr1\tfetched order\n",
    '{"timestamp":"2026-11-26T10:00:00Z","level":"INFO","message":"ok","requestId":"r5"}',
    "just a print\n",
]


def test_insights_keeps_only_the_lines_tracekit_needs(proxy: FaultProxy, logs: Any, tmp_path: Path) -> None:
    start = now_ms() - 10 * 60_000
    messages = NEEDED + NOT_NEEDED
    put(logs, "s1", [(start + i, m) for i, m in enumerate(messages)])
    collect(tmp_path / "store", insights=True)
    assert stored(tmp_path / "store") == [("s1", start + i, m) for i, m in enumerate(NEEDED)]
    query = bodies(proxy, "StartQuery")[0]["queryString"]
    assert query.startswith("fields @timestamp, @message, @logStream")
    assert "| sort @timestamp asc" in query and query.endswith("| limit 10000")


def test_insights_splits_a_full_slice_and_loses_nothing(proxy: FaultProxy, logs: Any, tmp_path: Path) -> None:
    start = (now_ms() - 20 * 60_000) // 1000 * 1000
    # 30 needed lines, one every 10 s, in two streams; at most 8 rows a query.
    rows = put(logs, "a", [(start + i * 20_000, f"END RequestId: a{i}\n") for i in range(15)])
    rows += put(logs, "b", [(start + i * 20_000 + 10_000, f"END RequestId: b{i}\n") for i in range(15)])
    since = dt.datetime.fromtimestamp(start / 1000, dt.UTC)
    report = collect(tmp_path / "store", insights=True, row_limit=8, since=since)
    assert stored(tmp_path / "store") == sorted(rows)
    assert report.warnings == []
    # Slices that came back full were re-run in halves: more queries than ceil(30 / 8), and every
    # accepted slice held fewer than 8 rows, so none was cut.
    assert proxy.counts["StartQuery"] > math.ceil(30 / 8)
    for request in bodies(proxy, "StartQuery"):
        assert request["endTime"] > request["startTime"]


def test_insights_polls_until_complete_and_a_failed_query_is_one_line(
    proxy: FaultProxy, logs: Any, tmp_path: Path
) -> None:
    rows = put(logs, "a", [(now_ms() - 60_000, "END RequestId: a\n")])
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)  # one slice
    proxy.add(Rule("GetQueryResults", reply={"status": "Running", "results": []}, times=2))
    collect(tmp_path / "one", insights=True, since=since)
    assert stored(tmp_path / "one") == rows
    assert proxy.counts["StartQuery"] == 1 and proxy.counts["GetQueryResults"] == 3

    proxy.clear()
    proxy.add(Rule("GetQueryResults", reply={"status": "Failed", "results": []}))
    with pytest.raises(CollectError) as caught:
        collect(tmp_path / "two", insights=True, since=since)
    line = caught.value.line()
    assert line.startswith(f"cannot collect: the Logs Insights query ended Failed: log group {GROUP}, ")
    assert line.endswith("Run the same command again, or collect without --insights")


def test_insights_query_escapes_the_stream_prefix() -> None:
    query = cloudwatch.insights_query("2026/11/26/[$LATEST]")
    assert r"| filter @logStream like /^2026\/11\/26\/\[\$LATEST\]/" in query


# ---------------------------------------------------------------------------- pieces


def test_insights_times_in_both_shapes() -> None:
    # GetQueryResults as AWS prints it (UTC, ms), and moto's epoch milliseconds.
    assert cloudwatch._insights_ms("2024-05-19 06:10:35.743") == 1_716_099_035_743
    assert cloudwatch._insights_ms("1716099035743") == 1_716_099_035_743
    row = [
        {"field": "@timestamp", "value": "2024-05-19 06:10:35.743"},
        {"field": "@message", "value": "Test BENCHMARK 3"},
        {"field": "@logStream", "value": "TestStream"},
        {"field": "@ptr", "value": "ClQKGAoU"},
    ]
    assert cloudwatch._row_event(row) == {
        "logStreamName": "TestStream",
        "timestamp": 1_716_099_035_743,
        "message": "Test BENCHMARK 3",
    }


def test_watermark_moves_only_over_what_was_collected() -> None:
    assert cloudwatch._next_watermark(None, [100, 200]) == 200
    assert cloudwatch._next_watermark(150, [100, 200]) == 200
    assert cloudwatch._next_watermark(500, [100, 200]) == 500  # a back-fill leaves it
    assert cloudwatch._next_watermark(50, [100, 200]) == 50  # a gap before `since`: not covered


def test_resumed_plan_adds_only_the_uncovered_time() -> None:
    plan = cloudwatch._Plan([[150, 200]], [100, 200], token="t")
    plan.extend(100, 260)
    assert plan.windows == [[150, 200], [201, 260]] and plan.span == [100, 260] and plan.token == "t"
    plan.extend(40, 260)
    assert plan.windows[-1] == [40, 99] and plan.span == [40, 260]


def test_slices_end_on_whole_seconds() -> None:
    assert cloudwatch._slice_end(1_500, 100_000, 10_000) == 10_999
    assert cloudwatch._slice_end(1_500, 100_000, 100) == 1_999
    assert cloudwatch._slice_end(1_500, 5_000, 10_000) == 5_000


def test_pacer_keeps_below_the_rate_and_halves_after_throttling() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    pacer = Pacer(4.0, clock=lambda: clock[0], sleep=sleep)
    for _ in range(3):
        pacer.wait()
    assert slept == [0.25, 0.25]
    pacer.throttled()
    pacer.wait()
    assert slept[-1] == pytest.approx(0.5)
