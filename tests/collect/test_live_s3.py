"""`tracekit collect s3` against a real moto server: CloudWatch Logs export objects (written by moto's
own CreateExportTask) and S3 on-failure records, fetched once, a changed object fetched again, an
interrupted run resumed, and the one-line errors.

Expected log events are what the test put into CloudWatch Logs, as moto exports them (documented in
../shared/formats/f22: one object per stream under `<prefix>/<uuid>/<stream with / as ->/000000.gz`,
each line the event's time to the second, formatted in local time with a Z, then the message).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.faultproxy import FaultProxy, Rule
from tracekit import jsonio
from tracekit.collect import s3 as s3_collector
from tracekit.collect.live import CollectError, CollectReport, collect_aws
from tracekit.collect.s3 import collect_s3
from tracekit.store import Store

REGION = "eu-west-1"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GROUP = "/aws/lambda/orders"
STREAMS = ("2026/11/20/[$LATEST]0a1b2c3d", "2026/11/20/[$LATEST]4e5f6a7b")
CliRun = Callable[..., Any]


def bucket(name: str) -> None:
    boto3.client("s3").create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})


def lambda_lines(request_id: str) -> list[str]:
    return [
        f"START RequestId: {request_id} Version: $LATEST",
        f"END RequestId: {request_id}",
        f"REPORT RequestId: {request_id}\tDuration: 3.00 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 30 MB",
    ]


def export_logs(name: str) -> set[tuple[str, dt.datetime, str]]:
    """Put two streams of events into GROUP and export them to s3://NAME/exports; returns (stream,
    time, message) as moto's export writes them."""
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=GROUP)
    start = int(time.time() * 1000) - 3_600_000
    expected = set()
    for n, stream in enumerate(STREAMS):
        logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
        lines = lambda_lines(f"aaaaaaaa-0000-4000-8000-00000000000{n}")
        events = [{"timestamp": start + 1500 * i, "message": m} for i, m in enumerate(lines)]
        logs.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=events)
        for e in events:
            # moto formats the local time of the second as if it were UTC
            local = dt.datetime.fromtimestamp(e["timestamp"] // 1000)
            expected.add((stream.replace("/", "-"), local, e["message"]))
    bucket(name)
    logs.create_export_task(
        logGroupName=GROUP,
        fromTime=start - 1,
        to=start + 60_000,
        destination=name,
        destinationPrefix="exports",
    )
    return expected


def collect(store_dir: Path, url: str, **options: Any) -> tuple[Store, CollectReport]:
    with Store.open(store_dir, create=True) as store, store.writing():
        report = collect_s3(store, collect_aws(), url, **options)
    return store, report


def added(report: CollectReport) -> dict[str, int]:
    return {k: v for k, v in report.counts.items() if v}


def test_export_objects_become_log_events_and_a_second_run_fetches_nothing(
    aws_endpoint: str, tmp_path: Path
) -> None:
    expected = export_logs("exports-bucket")
    store, report = collect(tmp_path / "store", "s3://exports-bucket/", log_group=GROUP)
    assert report.fetched == 3  # the two streams' objects and moto's aws-logs-write-test
    rows = store.query("SELECT log_group, log_stream, timestamp, message FROM log_events")
    assert {r["log_group"] for r in rows} == {GROUP}
    assert {(r["log_stream"], r["timestamp"], r["message"]) for r in rows} == expected
    assert len(rows) == len(expected)
    assert store.query("SELECT count(*) AS n FROM invocations")[0]["n"] == 2
    assert report.counts["quarantined"] == 0

    again = collect(tmp_path / "store", "s3://exports-bucket/", log_group=GROUP)[1]
    assert (again.fetched, added(again), again.calls) == (0, {}, {"ListObjectsV2": 1})

    # An on-failure record lands in the same bucket: only it is fetched.
    key = "aws/lambda/esm-uuid/shardId-000000000000/2026/11/20/2026-11-20T11.00.01-abc"
    body = (FIXTURES / "destinations/s3_object_kinesis_with_payload.json").read_bytes()
    boto3.client("s3").put_object(Bucket="exports-bucket", Key=key, Body=body)
    store, third = collect(tmp_path / "store", "s3://exports-bucket/", log_group=GROUP)
    assert (third.fetched, added(third)) == (1, {"destination_records": 1})
    [record] = store.query(
        "SELECT kind, condition, shard_id, batch_size, source, envelope, envelope_id FROM destination_records"
    )
    assert record == {
        "kind": "kinesis",
        "condition": "RetryAttemptsExhausted",
        "shard_id": "shardId-000000000000",
        "batch_size": 2,
        "source": f"s3://exports-bucket/{key}",
        "envelope": "s3",  # the ingest contract: known from the collector, envelope_id the S3 key
        "envelope_id": key,
    }


def record_body(request_id: str, count: int = 3) -> bytes:
    record = jsonio.loads((FIXTURES / "destinations/async_retries_exhausted.json").read_bytes())
    record["requestContext"]["requestId"] = request_id
    record["requestContext"]["approximateInvokeCount"] = count
    return jsonio.dumpb(record)


def test_a_changed_object_is_fetched_again_and_only_under_the_prefix(
    aws_endpoint: str, tmp_path: Path
) -> None:
    bucket("records")
    s3 = boto3.client("s3")
    s3.put_object(Bucket="records", Key="aws/lambda/async/r1", Body=record_body("r-1"))
    s3.put_object(Bucket="records", Key="elsewhere/r2", Body=record_body("r-2"))
    store, first = collect(tmp_path / "store", "s3://records/aws/lambda/")
    assert (first.fetched, added(first)) == (1, {"destination_records": 1})
    s3.put_object(Bucket="records", Key="aws/lambda/async/r1", Body=record_body("r-1", count=2))
    store, second = collect(tmp_path / "store", "s3://records/aws/lambda/")
    assert (second.fetched, added(second)) == (1, {"destination_records": 1})
    rows = store.query("SELECT request_id, approximate_invoke_count FROM destination_records ORDER BY 2")
    assert [(r["request_id"], r["approximate_invoke_count"]) for r in rows] == [("r-1", 2), ("r-1", 3)]


def test_an_interrupted_run_fetches_only_what_it_had_not_ingested(
    aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket("records")
    for n in range(1, 5):
        boto3.client("s3").put_object(Bucket="records", Key=f"aws/lambda/r{n}", Body=record_body(f"r-{n}"))
    monkeypatch.setattr(s3_collector, "INGEST_EVERY_OBJECTS", 1)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with FaultProxy(aws_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.add(Rule("GET /records/aws/lambda/r3", error="InternalError", status=500, times=1))
        with pytest.raises(CollectError, match="s3 GetObject failed: s3://records/aws/lambda/r3"):
            collect(tmp_path / "store", "s3://records/")
        store = Store.open(tmp_path / "store")
        assert [
            r["request_id"] for r in store.query("SELECT request_id FROM destination_records ORDER BY 1")
        ] == [
            "r-1",
            "r-2",
        ]
        proxy.clear()
        store, report = collect(tmp_path / "store", "s3://records/")
        fetched = sorted(op for op in proxy.counts if op.startswith("GET /records/aws/lambda/r"))
    assert fetched == ["GET /records/aws/lambda/r3", "GET /records/aws/lambda/r4"]
    assert report.fetched == 2
    rows = store.query("SELECT request_id FROM destination_records ORDER BY 1")
    assert [r["request_id"] for r in rows] == ["r-1", "r-2", "r-3", "r-4"]


def test_the_cli_collects_and_says_what_is_wrong_in_one_line(
    aws_endpoint: str, tmp_path: Path, tracekit_cli: CliRun
) -> None:
    bucket("records")
    boto3.client("s3").put_object(Bucket="records", Key="aws/lambda/r1", Body=record_body("r-1"))
    store = tmp_path / "store"
    result = tracekit_cli("collect", "s3", "s3://records/aws/", "--store", store, "-f", "json", "-q")
    assert result.returncode == 0, result.stderr
    counts = jsonio.loads(result.stdout)
    assert (counts["destination_records"], counts["fetched"], counts["calls GetObject"]) == (1, 1, 1)

    missing = tracekit_cli("collect", "s3", "s3://no-such-bucket/x", "--store", store)
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "Error: cannot collect: bucket does not exist: s3://no-such-bucket. "
        "Check the bucket name and the account"
    )
    bad = tracekit_cli("collect", "s3", "records/aws", "--store", store)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "Error: not an S3 URL: records/aws. Give the bucket and prefix as s3://BUCKET/PREFIX, e.g. "
        "s3://exports/orders/"
    )
