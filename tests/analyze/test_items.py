"""The `items` and `item_results` tables: which items each invocation handled, and what it reported.

Two kinds of tests. Hand-written log events in every shape the evidence comes in (recorder lines,
logged events, logged fields; text and JSON log format; plain text without timestamps), ingested
into a real store, with expected rows worked out by hand from the recorder's documented format and
the event shapes. Then lab runs, where truth.json says which events each attempt (request id) had
in its batch: the items table must list exactly those, whichever evidence the function left.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tracekit import jsonio
from tracekit.analyze import items
from tracekit.collect.ingest import ingest_paths
from tracekit.store import Store

SCENARIOS = Path(__file__).resolve().parents[2] / "samples" / "scenarios"
GROUP = "/aws/lambda/worker"
STREAM_A = "2026/11/22/[$LATEST]aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
STREAM_B = "2026/11/22/[$LATEST]bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
T0 = 1795338000000  # 2026-11-22T09:00:00Z in ms
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:orders"
KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
DDB_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-21T09:00:00.000"
RID1 = "11111111-1111-4111-8111-111111111111"
RID2 = "22222222-2222-4222-8222-222222222222"
RID3 = "33333333-3333-4333-8333-333333333333"
ITEM_COLUMNS = (
    "request_id, log_stream, function_name, source, item_id, shard_id, sequence_number, receive_count, "
    "position, batch_size, evidence"
)


# ---------------------------------------------------------------------------- hand-written logs


class Logs:
    """Log events of one log group, written as filter-log-events NDJSON and analysed."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.events: list[dict[str, Any]] = []
        self.con: duckdb.DuckDBPyConnection | None = None
        self.store: Store | None = None

    def add(self, stream: str, ms: int, message: str) -> None:
        n = len(self.events)
        self.events.append(
            {
                "logStreamName": stream,
                "timestamp": T0 + ms,
                "message": message,
                "ingestionTime": T0 + ms + 500,
                "eventId": f"{n:056d}",
            }
        )

    def text_invocation(
        self, stream: str, rid: str, start: int, end: int, *lines: str | tuple[int, str]
    ) -> None:
        """START, then each line (at `start + 1 + i` ms unless given as (ms, text)), END and REPORT."""
        self.add(stream, start, f"START RequestId: {rid} Version: $LATEST\n")
        for i, line in enumerate(lines):
            at, text = line if isinstance(line, tuple) else (start + 1 + i, line)
            self.add(stream, at, text)
        self.add(stream, end, f"END RequestId: {rid}\n")
        self.add(
            stream,
            end,
            f"REPORT RequestId: {rid}\tDuration: {end - start}.00 ms\tBilled Duration: {end - start} ms\t"
            "Memory Size: 128 MB\tMax Memory Used: 40 MB\t\n",
        )

    def json_invocation(self, stream: str, rid: str, start: int, end: int, *lines: str) -> None:
        """The JSON log format: platform.start, the lines, platform.report."""
        self.add(stream, start, platform("start", start, {"requestId": rid, "version": "$LATEST"}))
        for i, line in enumerate(lines):
            self.add(stream, start + 1 + i, line)
        metrics = {
            "durationMs": float(end - start),
            "billedDurationMs": end - start,
            "memorySizeMB": 128,
            "maxMemoryUsedMB": 40,
        }
        self.add(
            stream, end, platform("report", end, {"requestId": rid, "metrics": metrics, "status": "success"})
        )

    def analyse(self) -> duckdb.DuckDBPyConnection:
        path = self.tmp_path / "logs.ndjson"
        path.write_bytes(b"".join(jsonio.dumpb(e) + b"\n" for e in self.events))
        return analyse_files(self.tmp_path, [path])


def analyse_files(tmp_path: Path, paths: list[Path]) -> duckdb.DuckDBPyConnection:
    store = Store.open(tmp_path / "store", create=True)
    report = ingest_paths(store, paths, log_group=GROUP)
    assert report.counts["quarantined"] == 0
    con = store.connect()
    items.build(con)
    return con


def platform(kind: str, ms: int, record: dict[str, Any]) -> str:
    return jsonio.dumps({"time": iso(ms), "type": f"platform.{kind}", "record": record})


def iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    return f"2026-11-22T09:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def recorder(phase: str, rid: str | None, **fields: Any) -> str:
    """A recorder line as tracekit.recorder writes it: compact JSON and a newline."""
    return jsonio.dumps({"tracekit": "recorder", "v": 1, "phase": phase, "requestId": rid, **fields}) + "\n"


def sqs_record(message_id: str, receive: int, **attributes: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": "AQEB" + message_id,
        "body": "{}",
        "attributes": {
            "ApproximateReceiveCount": str(receive),
            "SentTimestamp": "1795338000000",
            **attributes,
        },
        "messageAttributes": {},
        "md5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def kinesis_record(shard: str, seq: str) -> dict[str, Any]:
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "k",
            "sequenceNumber": seq,
            "data": "e30=",
            "approximateArrivalTimestamp": 1795338000.0,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{seq}",
        "eventName": "aws:kinesis:record",
        "eventSourceARN": KINESIS_ARN,
        "awsRegion": "us-east-1",
    }


def ddb_record(event_id: str, seq: str) -> dict[str, Any]:
    return {
        "eventID": event_id,
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"id": {"S": "1"}},
            "SequenceNumber": seq,
            "SizeBytes": 10,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": DDB_ARN,
    }


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def item_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return rows(con, f"SELECT {ITEM_COLUMNS} FROM items ORDER BY request_id, position")


def test_recorder_lines_in_text_format(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    sqs_in = recorder(
        "in",
        RID1,
        source="aws:sqs",
        sourceArn=QUEUE_ARN + ".fifo",
        count=2,
        items=[
            {"id": "m-1", "receiveCount": 1, "group": "g1", "seq": "18880000000000000001"},
            {"id": "m-2", "receiveCount": 3, "group": "g1", "seq": "18880000000000000002"},
        ],
    )
    sqs_out = recorder("out", RID1, result="success", batchItemFailures=["m-2", None, "", 7])
    logs.text_invocation(
        STREAM_A, RID1, 0, 50, sqs_in, "[INFO]\t2026-11-22T09:00:00.010Z\t" + RID1 + "\tdone\n", sqs_out
    )
    kinesis_in = recorder(
        "in",
        RID2,
        source="aws:kinesis",
        sourceArn=KINESIS_ARN,
        shard="shardId-000000000003",
        count=2,
        items=[
            {"id": "shardId-000000000003:4961", "seq": "4961"},
            {"id": "shardId-000000000003:4962", "seq": "4962"},
        ],
    )
    logs.text_invocation(
        STREAM_A, RID2, 100, 150, kinesis_in, recorder("out", RID2, result="error", errorType="ValueError")
    )
    ddb_in = recorder(
        "in", RID3, source="aws:dynamodb", sourceArn=DDB_ARN, count=1, items=[{"id": "c0ffee", "seq": "300"}]
    )
    logs.text_invocation(
        STREAM_B, RID3, 100, 150, ddb_in, recorder("out", RID3, result="success", batchItemFailures=None)
    )
    con = logs.analyse()

    assert item_rows(con) == [
        (RID1, STREAM_A, "worker", "sqs", "m-1", "orders.fifo", "18880000000000000001", 1, 0, 2, "recorder"),
        (RID1, STREAM_A, "worker", "sqs", "m-2", "orders.fifo", "18880000000000000002", 3, 1, 2, "recorder"),
        (
            RID2,
            STREAM_A,
            "worker",
            "kinesis",
            "shardId-000000000003:4961",
            "shardId-000000000003",
            "4961",
            None,
            0,
            2,
            "recorder",
        ),
        (
            RID2,
            STREAM_A,
            "worker",
            "kinesis",
            "shardId-000000000003:4962",
            "shardId-000000000003",
            "4962",
            None,
            1,
            2,
            "recorder",
        ),
        (RID3, STREAM_B, "worker", "dynamodb", "c0ffee", None, "300", None, 0, 1, "recorder"),
    ]
    # An empty, null or non-string identifier is invalid (Lambda fails the whole batch): NULL.
    assert rows(con, "SELECT * FROM item_results ORDER BY request_id") == [
        (RID1, STREAM_A, "success", None, ["m-2", None, None, None], "recorder"),
        (RID2, STREAM_A, "error", "ValueError", None, "recorder"),
        (RID3, STREAM_B, "success", None, None, "recorder"),  # a null list: no failure, as no list
    ]


def test_recorder_lines_in_json_format(tmp_path: Path) -> None:
    """JSON log format: the line is the message as it is, or the `message` of an application record."""
    logs = Logs(tmp_path)
    logs.json_invocation(
        STREAM_A,
        RID1,
        0,
        40,
        recorder(
            "in",
            RID1,
            source="aws:sqs",
            sourceArn=QUEUE_ARN,
            count=1,
            items=[{"id": "m-1", "receiveCount": 2}],
        ),
        recorder("out", RID1, result="success", batchItemFailures=[]),
    )
    as_object = {
        "tracekit": "recorder",
        "v": 1,
        "phase": "in",
        "requestId": RID2,
        "source": "aws:sqs",
        "sourceArn": QUEUE_ARN,
        "count": 1,
        "items": [{"id": "m-2", "receiveCount": 1}],
    }
    out_line = recorder("out", RID2, result="success", batchItemFailures=["m-2"]).strip()
    logs.json_invocation(
        STREAM_B,
        RID2,
        0,
        40,
        jsonio.dumps({"timestamp": iso(1), "level": "INFO", "message": as_object, "requestId": RID2}),
        jsonio.dumps({"timestamp": iso(2), "level": "INFO", "message": out_line, "requestId": RID2}),
    )
    con = logs.analyse()

    assert item_rows(con) == [
        (RID1, STREAM_A, "worker", "sqs", "m-1", "orders", None, 2, 0, 1, "recorder"),
        (RID2, STREAM_B, "worker", "sqs", "m-2", "orders", None, 1, 0, 1, "recorder"),
    ]
    assert rows(con, "SELECT request_id, result, failed_item_ids FROM item_results ORDER BY 1") == [
        (RID1, "success", []),
        (RID2, "success", ["m-2"]),
    ]


def test_recorder_sources_other_than_batches(tmp_path: Path) -> None:
    """S3, SNS, EventBridge and unknown events: one item each, identified as the README's table says;
    a batch longer than the recorder lists keeps its full size."""
    logs = Logs(tmp_path)
    topic = "arn:aws:sns:us-east-1:123456789012:order-events"
    s3_item = {"bucket": "uploads", "key": "a%20b.csv", "sequencer": "0055AED6DCD90281E5"}
    logs.text_invocation(
        STREAM_A,
        RID1,
        0,
        10,
        recorder("in", RID1, source="aws:s3", count=1, items=[s3_item]),
    )
    logs.text_invocation(
        STREAM_A,
        RID2,
        20,
        30,
        recorder("in", RID2, source="aws:sns", sourceArn=topic, count=1, items=[{"id": "sns-1"}]),
    )
    logs.text_invocation(
        STREAM_A,
        RID3,
        40,
        50,
        recorder(
            "in",
            RID3,
            source="aws:events",
            count=1,
            items=[{"id": "eb-1", "source": "orders", "detailType": "OrderPlaced"}],
        ),
    )
    rid4, rid5 = "44444444-4444-4444-8444-444444444444", "55555555-5555-4555-8555-555555555555"
    logs.text_invocation(
        STREAM_A,
        rid4,
        60,
        70,
        recorder("in", rid4, source="unknown", count=1, items=[{"digest": "sha256:abc"}]),
    )
    logs.text_invocation(
        STREAM_B,
        rid5,
        60,
        70,
        recorder(
            "in",
            rid5,
            source="aws:sqs",
            sourceArn=QUEUE_ARN,
            count=1500,
            items=[{"id": "m-1", "receiveCount": 1}, {"id": "m-2", "receiveCount": 1}],
            omitted=1498,
        ),
    )
    con = logs.analyse()

    assert item_rows(con) == [
        (
            RID1,
            STREAM_A,
            "worker",
            "s3",
            "s3://uploads/a%20b.csv",
            "uploads",
            "0055AED6DCD90281E5",
            None,
            0,
            1,
            "recorder",
        ),
        (RID2, STREAM_A, "worker", "sns", "sns-1", "order-events", None, None, 0, 1, "recorder"),
        (RID3, STREAM_A, "worker", "eventbridge", "eb-1", None, None, None, 0, 1, "recorder"),
        (rid4, STREAM_A, "worker", "unknown", "sha256:abc", None, None, None, 0, 1, "recorder"),
        (rid5, STREAM_B, "worker", "sqs", "m-1", "orders", None, 1, 0, 1500, "recorder"),
        (rid5, STREAM_B, "worker", "sqs", "m-2", "orders", None, 1, 1, 1500, "recorder"),
    ]
    assert rows(con, "SELECT count(*) FROM item_results") == [(0,)]


def test_logged_events_in_each_shape(tmp_path: Path) -> None:
    """A printed event (text, no request id: placed by time), Python and Node logging lines with the JSON
    after the request id, and JSON-format application records whose message is the event as text or as
    object."""
    logs = Logs(tmp_path)
    sqs_event = {"Records": [sqs_record("m-1", 1), sqs_record("m-2", 4, SequenceNumber="1888")]}
    logs.text_invocation(STREAM_A, RID1, 0, 50, jsonio.dumps(sqs_event) + "\n")
    kinesis_event = {
        "Records": [
            kinesis_record("shardId-000000000001", "4961"),
            kinesis_record("shardId-000000000001", "4962"),
        ]
    }
    logs.text_invocation(
        STREAM_A,
        RID2,
        100,
        150,
        f"[INFO]\t2026-11-22T09:00:00.101Z\t{RID2}\t{jsonio.dumps(kinesis_event)}\n",
    )
    ddb_event = {"Records": [ddb_record("e-1", "100"), ddb_record("e-2", "200")]}
    logs.json_invocation(
        STREAM_B,
        RID3,
        0,
        50,
        jsonio.dumps(
            {
                "timestamp": iso(1),
                "level": "INFO",
                "message": jsonio.dumps(ddb_event),
                "logger": "root",
                "requestId": RID3,
            }
        )
        + "\n",
    )
    rid4 = "44444444-4444-4444-8444-444444444444"
    logs.json_invocation(
        STREAM_B,
        rid4,
        100,
        150,
        jsonio.dumps(
            {
                "level": "INFO",
                "message": {"Records": [sqs_record("m-3", 2)]},
                "service": "orders",
                "function_request_id": rid4,
            }
        ),
    )
    rid5 = "55555555-5555-4555-8555-555555555555"
    node_event = jsonio.dumps({"Records": [sqs_record("m-4", 1)]})
    logs.text_invocation(STREAM_A, rid5, 200, 250, f"2026-11-22T09:00:00.201Z\t{rid5}\tINFO\t{node_event}\n")
    con = logs.analyse()

    assert item_rows(con) == [
        (RID1, STREAM_A, "worker", "sqs", "m-1", "orders", None, 1, 0, 2, "logged_event"),
        (RID1, STREAM_A, "worker", "sqs", "m-2", "orders", "1888", 4, 1, 2, "logged_event"),
        (
            RID2,
            STREAM_A,
            "worker",
            "kinesis",
            "shardId-000000000001:4961",
            "shardId-000000000001",
            "4961",
            None,
            0,
            2,
            "logged_event",
        ),
        (
            RID2,
            STREAM_A,
            "worker",
            "kinesis",
            "shardId-000000000001:4962",
            "shardId-000000000001",
            "4962",
            None,
            1,
            2,
            "logged_event",
        ),
        (RID3, STREAM_B, "worker", "dynamodb", "e-1", None, "100", None, 0, 2, "logged_event"),
        (RID3, STREAM_B, "worker", "dynamodb", "e-2", None, "200", None, 1, 2, "logged_event"),
        (rid4, STREAM_B, "worker", "sqs", "m-3", "orders", None, 2, 0, 1, "logged_event"),
        (rid5, STREAM_A, "worker", "sqs", "m-4", "orders", None, 1, 0, 1, "logged_event"),
    ]
    # Lambda never logs a handler's response: without the recorder there are no results.
    assert rows(con, "SELECT count(*) FROM item_results") == [(0,)]


def test_logged_fields(tmp_path: Path) -> None:
    """Structured records naming items: one row per distinct item per invocation, in order of first
    mention; Kinesis and DynamoDB told apart by the eventID's form."""
    logs = Logs(tmp_path)
    logs.text_invocation(
        STREAM_A,
        RID1,
        0,
        50,
        # a record that starts like the platform's ({"time": ...}) but is the application's
        jsonio.dumps(
            {
                "time": iso(1),
                "level": "INFO",
                "message": "start",
                "messageId": "m-2",
                "ApproximateReceiveCount": "3",
                "eventSourceARN": QUEUE_ARN,
            }
        )
        + "\n",
        jsonio.dumps({"level": "INFO", "message": "start", "messageId": "m-1"}) + "\n",
        jsonio.dumps({"level": "INFO", "message": "done", "messageId": "m-2"}) + "\n",
    )
    logs.json_invocation(
        STREAM_B,
        RID2,
        0,
        50,
        jsonio.dumps(
            {
                "timestamp": iso(1),
                "level": "INFO",
                "logger": "root",
                "requestId": RID2,
                "message": jsonio.dumps({"eventID": "shardId-000000000002:77", "sequenceNumber": "77"}),
            }
        ),
        jsonio.dumps(
            {
                "timestamp": iso(2),
                "level": "INFO",
                "requestId": RID2,
                "message": {"eventID": "shardId-000000000002:78"},
            }
        ),
    )
    logs.json_invocation(
        STREAM_B,
        RID3,
        100,
        150,
        jsonio.dumps(
            {
                "level": "INFO",
                "message": "applied",
                "eventID": "4b7f",
                "sequenceNumber": "900",
                "requestId": RID3,
            }
        ),
        jsonio.dumps({"level": "INFO", "message": "applied", "sequenceNumber": "901", "requestId": RID3}),
    )
    con = logs.analyse()

    assert item_rows(con) == [
        (RID1, STREAM_A, "worker", "sqs", "m-2", "orders", None, 3, 0, 2, "logged_fields"),
        (RID1, STREAM_A, "worker", "sqs", "m-1", None, None, None, 1, 2, "logged_fields"),
        (
            RID2,
            STREAM_B,
            "worker",
            "kinesis",
            "shardId-000000000002:77",
            "shardId-000000000002",
            "77",
            None,
            0,
            2,
            "logged_fields",
        ),
        (
            RID2,
            STREAM_B,
            "worker",
            "kinesis",
            "shardId-000000000002:78",
            "shardId-000000000002",
            "78",
            None,
            1,
            2,
            "logged_fields",
        ),
        (RID3, STREAM_B, "worker", "dynamodb", "4b7f", None, "900", None, 0, 2, "logged_fields"),
        # A bare sequence number names no shard, so no event id.
        (RID3, STREAM_B, "worker", "kinesis", None, None, "901", None, 1, 2, "logged_fields"),
    ]


def test_only_the_strongest_evidence_of_an_invocation_counts(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    event = jsonio.dumps({"Records": [sqs_record("m-1", 1), sqs_record("m-2", 1)]}) + "\n"
    field_line = jsonio.dumps({"level": "INFO", "messageId": "m-9"}) + "\n"
    logs.text_invocation(
        STREAM_A,
        RID1,
        0,
        50,
        field_line,
        event,
        recorder(
            "in",
            RID1,
            source="aws:sqs",
            sourceArn=QUEUE_ARN,
            count=1,
            items=[{"id": "m-1", "receiveCount": 1}],
        ),
    )
    logs.text_invocation(STREAM_A, RID2, 100, 150, field_line, event, event)
    logs.text_invocation(STREAM_A, RID3, 200, 250, field_line)
    con = logs.analyse()

    assert rows(con, "SELECT request_id, item_id, evidence FROM items ORDER BY request_id, position") == [
        (RID1, "m-1", "recorder"),
        (RID2, "m-1", "logged_event"),  # the event logged twice is listed once
        (RID2, "m-2", "logged_event"),
        (RID3, "m-9", "logged_fields"),
    ]


def test_lines_without_a_request_id_go_to_the_invocation_that_holds_their_time(tmp_path: Path) -> None:
    """Same stream: inside [start, end], both ends included; a line stamped in the millisecond one
    attempt ends and the next starts goes to the one starting. Another stream has its own invocation."""
    logs = Logs(tmp_path)
    line = {
        n: jsonio.dumps({"Records": [sqs_record(n, 1)]}) + "\n" for n in ("m-1", "m-2", "m-3", "m-4", "m-5")
    }
    rid4, rid5 = "44444444-4444-4444-8444-444444444444", "55555555-5555-4555-8555-555555555555"
    logs.text_invocation(STREAM_A, RID1, 0, 50, (0, line["m-1"]))
    logs.add(STREAM_A, 70, line["m-5"])  # between two invocations: nobody's
    logs.text_invocation(STREAM_A, RID2, 100, 150, (150, line["m-2"]))
    logs.text_invocation(STREAM_A, RID3, 150, 200)
    logs.text_invocation(STREAM_A, rid5, 300, 350, (350, line["m-3"]))
    logs.text_invocation(STREAM_B, rid4, 10, 60, (30, line["m-4"]))
    con = logs.analyse()

    assert rows(con, "SELECT request_id, log_stream, item_id FROM items ORDER BY item_id") == [
        (RID1, STREAM_A, "m-1"),
        (RID3, STREAM_A, "m-2"),
        (rid5, STREAM_A, "m-3"),
        (rid4, STREAM_B, "m-4"),
    ]


def test_plain_text_without_timestamps_goes_by_file_order(tmp_path: Path) -> None:
    event1 = jsonio.dumps({"Records": [sqs_record("m-1", 1), sqs_record("m-2", 1)]})
    event2 = jsonio.dumps({"Records": [sqs_record("m-3", 2)]})
    report = (
        "REPORT RequestId: {}\tDuration: 5.00 ms\tBilled Duration: 5 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 40 MB\t"
    )
    text = "\n".join(
        [
            f"START RequestId: {RID1} Version: $LATEST",
            event1,
            f"END RequestId: {RID1}",
            report.format(RID1),
            f"START RequestId: {RID2} Version: $LATEST",
            event2,
            f"END RequestId: {RID2}",
            report.format(RID2),
            f"START RequestId: {RID3} Version: $LATEST",
            recorder(
                "in",
                RID3,
                source="aws:sqs",
                sourceArn=QUEUE_ARN,
                count=1,
                items=[{"id": "m-4", "receiveCount": 1}],
            ).strip(),
            f"END RequestId: {RID3}",
            report.format(RID3),
            "",
        ]
    )
    path = tmp_path / "tail.txt"
    path.write_text(text)
    con = analyse_files(tmp_path, [path])

    assert rows(
        con, "SELECT request_id, log_stream, item_id, position, evidence FROM items ORDER BY item_id"
    ) == [
        (RID1, None, "m-1", 0, "logged_event"),
        (RID1, None, "m-2", 1, "logged_event"),
        (RID2, None, "m-3", 0, "logged_event"),
        (RID3, None, "m-4", 0, "recorder"),
    ]


def test_no_evidence_gives_empty_tables_of_the_contract_types(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.text_invocation(
        STREAM_A,
        RID1,
        0,
        50,
        "received message m-1 for order 4711\n",
        jsonio.dumps({"level": "INFO", "message": "no ids here", "Records": "not a list"}) + "\n",
    )
    con = logs.analyse()

    assert rows(con, "SELECT count(*) FROM items") == [(0,)]
    types = {
        table: dict(
            rows(con, f"SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = '{table}'")
        )
        for table in ("items", "item_results")
    }
    assert types["items"] == {
        "request_id": "VARCHAR",
        "log_stream": "VARCHAR",
        "function_name": "VARCHAR",
        "source": "VARCHAR",
        "item_id": "VARCHAR",
        "shard_id": "VARCHAR",
        "sequence_number": "VARCHAR",
        "receive_count": "INTEGER",
        "position": "INTEGER",
        "batch_size": "INTEGER",
        "evidence": "VARCHAR",
    }
    assert list(types["item_results"].items()) == [
        ("request_id", "VARCHAR"),
        ("log_stream", "VARCHAR"),
        ("result", "VARCHAR"),
        ("error_type", "VARCHAR"),
        ("failed_item_ids", "VARCHAR[]"),
        ("evidence", "VARCHAR"),
    ]


# ---------------------------------------------------------------------------- lab runs


def expected_items(truth: dict[str, Any]) -> dict[str, set[str]]:
    """Request id -> the events truth.json says that invocation had, from every attempt the logs can show
    (a throttled attempt never reaches a log stream; an init failure never runs the handler)."""
    expected: dict[str, set[str]] = defaultdict(set)
    for event in truth["events"]:
        for attempt in event["attempts"]:
            if attempt["outcome"] not in ("throttled", "init_error"):
                expected[attempt["request_id"]].add(event["event_id"])
    return dict(expected)


def found_items(lab: Any) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for row in lab.rows("SELECT request_id, item_id FROM items"):
        found[row["request_id"]].add(row["item_id"])
    return dict(found)


def assert_batches_match(lab: Any, *, id_column: str) -> None:
    """Each truth batch's size and first / last record are the items table's batch_size and the items at
    positions 0 and size - 1 (`id_column` holds what truth calls the sequence number). A throttled batch
    never reached a log stream."""
    by_request = defaultdict(list)
    for row in lab.rows(
        f"SELECT request_id, position, batch_size, {id_column} AS key FROM items ORDER BY position"
    ):
        by_request[row["request_id"]].append(row)
    for batch in lab.truth["batches"]:
        if batch["outcome"] in ("throttled", "init_error"):
            continue
        listed = by_request[batch["request_id"]]
        assert [r["position"] for r in listed] == list(range(batch["size"])), batch
        assert {r["batch_size"] for r in listed} == {batch["size"]}, batch
        assert (listed[0]["key"], listed[-1]["key"]) == (
            batch["first_sequence_number"],
            batch["last_sequence_number"],
        ), batch


def test_sqs_redrive_sample_with_the_recorder(lab_store: Callable[..., Any]) -> None:
    lab = lab_store(SCENARIOS / "sqs-redrive.toml")

    assert found_items(lab) == expected_items(lab.truth)
    assert {r["evidence"] for r in lab.rows("SELECT DISTINCT evidence FROM items")} == {"recorder"}
    assert_batches_match(lab, id_column="item_id")  # a standard queue's batches are named by messageId
    # Every delivery of a message is one more receive (no throttles in this scenario): the k-th attempt
    # saw ApproximateReceiveCount k.
    for event in lab.truth["events"]:
        counts = lab.rows(
            "SELECT request_id, receive_count FROM items WHERE item_id = ?", [event["event_id"]]
        )
        by_request = {r["request_id"]: r["receive_count"] for r in counts}
        assert [by_request[a["request_id"]] for a in event["attempts"]] == list(
            range(1, len(event["attempts"]) + 1)
        )
    assert {r["shard_id"] for r in lab.rows("SELECT DISTINCT shard_id FROM items")} == {"orders-queue"}
    assert_results_match(lab, id_column="item_id")


def test_dynamodb_partial_batch_sample_with_the_recorder(lab_store: Callable[..., Any]) -> None:
    lab = lab_store(SCENARIOS / "dynamodb-partial-batch.toml")

    assert found_items(lab) == expected_items(lab.truth)
    assert {r["evidence"] for r in lab.rows("SELECT DISTINCT evidence FROM items")} == {"recorder"}
    assert_batches_match(lab, id_column="sequence_number")
    assert {r["shard_id"] for r in lab.rows("SELECT DISTINCT shard_id FROM items")} == {None}
    assert_results_match(lab, id_column="sequence_number")


def assert_results_match(lab: Any, *, id_column: str) -> None:
    """item_results against each truth batch: an error is `error`, a success lists no failure, and a
    partial failure names exactly the batch's events whose attempt truth marks as an error."""
    results = {r["request_id"]: r for r in lab.rows("SELECT * FROM item_results")}
    identifier = {
        (r["request_id"], r["item_id"]): r["key"]
        for r in lab.rows(f"SELECT request_id, item_id, {id_column} AS key FROM items")
    }
    failed: dict[str, set[str]] = defaultdict(set)
    for event in lab.truth["events"]:
        for attempt in event["attempts"]:
            if attempt["outcome"] == "error":
                failed[attempt["request_id"]].add(
                    identifier.get((attempt["request_id"], event["event_id"]), "?")
                )
    for batch in lab.truth["batches"]:
        result = results.get(batch["request_id"])
        if batch["outcome"] in ("timeout", "out_of_memory", "crash"):
            assert result is None, batch  # the handler never returned: no "out" line
        elif batch["outcome"] == "error":
            assert result is not None and result["result"] == "error" and result["error_type"], batch
        elif batch["outcome"] == "success":
            assert result is not None and result["result"] == "success", batch
            assert not result["failed_item_ids"], batch
        elif batch["outcome"] == "partial_failure":
            assert result is not None and result["result"] == "success", batch
            assert set(result["failed_item_ids"]) == failed[batch["request_id"]], batch


SQS_SCENARIO = """
name = "items-sqs"
start = "2026-11-22T09:00:00Z"
[function]
name = "items-worker"
handler = "{handlers}/items_loggers.py:HANDLER"
timeout_s = 5
concurrency = 3
log_format = "FORMAT"
[source]
type = "sqs"
queue = "orders"
visibility_timeout_s = 30
max_receive_count = 3
dlq = "orders-dlq"
batch_size = 4
maximum_batching_window_s = 1
""" + "".join(
    f"""
[[events]]
at = {at}
payload = {{ n = {n}, poison = {str(n in (3, 9)).lower()} }}
{"duplicate = true" if n == 5 else ""}
"""
    for n, at in enumerate([0, 0, 0, 0, 0, 0, 10, 10, 40, 40, 45, 70])
)

STREAM_SCENARIO = """
name = "items-stream"
start = "2026-11-22T09:00:00Z"
[function]
name = "items-projector"
handler = "{handlers}/items_loggers.py:HANDLER"
timeout_s = 5
log_format = "FORMAT"
[source]
type = "SOURCE"
batch_size = 6
maximum_batching_window_s = 1
bisect_batch_on_function_error = true
maximum_retry_attempts = 1
""" + "".join(
    f"""
[[events]]
at = {at}
payload = {{ n = {n}, poison = {str(n == 4).lower()} }}
{'fault = { kind = "error", when = "after" }' if n == 9 else ""}
"""
    for n, at in enumerate([0, 0, 0, 0, 0, 0, 0, 0, 30, 30, 30])
)


@pytest.mark.parametrize(
    ("handler", "log_format", "evidence"),
    [
        ("print_event", "text", "logged_event"),
        ("log_event", "json", "logged_event"),
        ("print_fields", "json", "logged_fields"),
        ("log_fields", "text", "logged_fields"),
    ],
)
def test_sqs_without_the_recorder(
    lab_store: Callable[..., Any], handler: str, log_format: str, evidence: str
) -> None:
    """Poison messages fail every batch they are in until they reach the DLQ; their batch-mates come back
    regrouped; one message is delivered twice. What the handler logged must name the same sets."""
    lab = lab_store(SQS_SCENARIO.replace("HANDLER", handler).replace("FORMAT", log_format))
    assert any(len(e["attempts"]) > 1 for e in lab.truth["events"])  # the scenario does retry

    assert found_items(lab) == expected_items(lab.truth)
    assert {r["evidence"] for r in lab.rows("SELECT DISTINCT evidence FROM items")} == {evidence}
    assert_batches_match(lab, id_column="item_id")
    assert lab.rows("SELECT count(*) AS n FROM item_results") == [{"n": 0}]


@pytest.mark.parametrize(
    ("source", "handler", "log_format", "evidence"),
    [
        ("kinesis", "print_event", "json", "logged_event"),
        ("kinesis", "print_fields", "text", "logged_fields"),
        ("dynamodb", "log_event", "text", "logged_event"),
        ("dynamodb", "log_fields", "json", "logged_fields"),
    ],
)
def test_streams_without_the_recorder(
    lab_store: Callable[..., Any], source: str, handler: str, log_format: str, evidence: str
) -> None:
    """A poison record bisects its batch down to itself; a later record fails every attempt after the
    handler logged it, until its retries run out."""
    lab = lab_store(
        STREAM_SCENARIO.replace("HANDLER", handler).replace("FORMAT", log_format).replace("SOURCE", source)
    )
    assert any(b["parent_batch_id"] for b in lab.truth["batches"])  # the scenario does bisect

    assert found_items(lab) == expected_items(lab.truth)
    assert {r["evidence"] for r in lab.rows("SELECT DISTINCT evidence FROM items")} == {evidence}
    assert_batches_match(lab, id_column="sequence_number")
    if source == "kinesis":
        shards = {
            (r["item_id"].split(":")[0], r["shard_id"])
            for r in lab.rows("SELECT item_id, shard_id FROM items")
        }
        assert all(prefix == shard for prefix, shard in shards)


RANDOM_SCENARIO = """
name = "items-random"
start = "2026-11-22T09:00:00Z"
[function]
name = "items-random"
handler = "{handlers}/items_loggers.py:HANDLER"
timeout_s = 5
concurrency = 4
recorder = RECORDER
log_format = "FORMAT"
[source]
type = "SOURCE"
batch_size = 10
maximum_batching_window_s = 1
SETTINGS
[random]
events = 2500
rate_per_s = 40
faults = { error = 0.02, timeout = 0.005, crash = 0.003, out_of_memory = 0.002, throttle = 0.02 }
duplicate_rate = 0.01
keys = 8
"""


def random_scenario(source: str, handler: str, *, recorder: bool, log_format: str, settings: str) -> str:
    return (
        RANDOM_SCENARIO.replace("HANDLER", handler)
        .replace("RECORDER", str(recorder).lower())
        .replace("FORMAT", log_format)
        .replace("SOURCE", source)
        .replace("SETTINGS", settings)
    )


@pytest.mark.parametrize(
    ("source", "settings"),
    [
        ("sqs", "visibility_timeout_s = 20\nmax_receive_count = 4\ndlq = 'items-dlq'"),
        ("kinesis", "shards = 2\nbisect_batch_on_function_error = true\nmaximum_retry_attempts = 2"),
    ],
)
def test_random_runs_with_the_recorder(lab_store: Callable[..., Any], source: str, settings: str) -> None:
    """Thousands of events under random faults, throttles and duplicates: every attempt the logs can
    show lists exactly its batch."""
    lab = lab_store(
        random_scenario(source, "print_fields", recorder=True, log_format="json", settings=settings), seed=11
    )
    expected = expected_items(lab.truth)
    assert len(lab.truth["events"]) == 2500 and len(expected) > 200

    assert found_items(lab) == expected
    assert {r["evidence"] for r in lab.rows("SELECT DISTINCT evidence FROM items")} == {"recorder"}
    assert_batches_match(lab, id_column="item_id" if source == "sqs" else "sequence_number")


def test_random_stream_run_from_logged_fields(lab_store: Callable[..., Any]) -> None:
    """No recorder: a fault that strikes before the handler runs leaves no trace of the batch, so every
    invocation that logged its records lists exactly its batch, and every successful one did log."""
    lab = lab_store(
        random_scenario(
            "kinesis",
            "log_fields",
            recorder=False,
            log_format="text",
            settings="shards = 2\nbisect_batch_on_function_error = true\nmaximum_retry_attempts = 2",
        ),
        seed=5,
    )
    expected = expected_items(lab.truth)
    found = found_items(lab)

    assert {rid: expected.get(rid) for rid in found} == found
    succeeded = {b["request_id"] for b in lab.truth["batches"] if b["outcome"] == "success"}
    assert len(succeeded) > 200 and succeeded <= set(found)
    assert {r["evidence"] for r in lab.rows("SELECT DISTINCT evidence FROM items")} == {"logged_fields"}
