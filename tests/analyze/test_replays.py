"""The `replay` duplicate kind (tracekit.analyze.replays): copies tracekit replayed carry the marker
`tracekit-replay-id` = `<plan_id>:<entry_id>:<original event id>`, and the events table names them.

Fixtures are written here in the shapes of real artifacts (`aws sqs receive-message` output with
`--message-attribute-names All`, an async destination record, `aws logs filter-log-events` output with
the SQS event a handler printed); every expected value is the one the fixture put in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tracekit import jsonio
from tracekit.analyze.build import analyze
from tracekit.analyze.keys import Config, FunctionConfig
from tracekit.collect.ingest import ingest_paths
from tracekit.store import Store

SOURCE_ARN = "arn:aws:sqs:eu-west-1:123456789012:orders"
MARKER = "tracekit-replay-id"
REQUEST = "7e1c0a52-98e4-4c1b-9a43-2f7c1d0e5b11"
COPY_REQUEST = "0b6f2d3c-11aa-4c55-8d77-93e2a1f0c4d2"


def receive_output(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"Messages": list(messages)}


def sqs_message(message_id: str, body: str, attributes: dict[str, Any], **system: str) -> dict[str, Any]:
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "MD5OfBody": "0" * 32,
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1795856400000", **system},
        "MessageAttributes": attributes,
    }


def async_record(request_id: str, payload: dict[str, Any], at: str) -> dict[str, Any]:
    return {
        "version": "1.0",
        "timestamp": at,
        "requestContext": {
            "requestId": request_id,
            "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:orders-notify:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "boom", "errorType": "ValueError"},
    }


def logged_sqs_event(message_id: str, marker: str) -> str:
    """The SQS event as Lambda delivers it, as a handler's print(json.dumps(event)) logs it."""
    record = {
        "messageId": message_id,
        "receiptHandle": "AQEB...",
        "body": '{"order_id": 4800}',
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795856400000"},
        "messageAttributes": {
            MARKER: {
                "stringValue": marker,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": SOURCE_ARN,
        "awsRegion": "eu-west-1",
    }
    return jsonio.dumps({"Records": [record]})


def filter_log_events(request_id: str, lines: list[str]) -> dict[str, Any]:
    stream = "2026/11/22/[$LATEST]0123456789abcdef0123456789abcdef"
    messages = [
        f"START RequestId: {request_id} Version: $LATEST",
        *lines,
        f"END RequestId: {request_id}",
        f"REPORT RequestId: {request_id}\tDuration: 5.00 ms\tBilled Duration: 5 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 40 MB",
    ]
    start = 1795856700000
    return {
        "events": [
            {
                "logStreamName": stream,
                "timestamp": start + i,
                "message": message,
                "ingestionTime": start + i + 500,
                "eventId": f"{start + i:056d}",
            }
            for i, message in enumerate(messages)
        ]
    }


def write(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(jsonio.dumps(doc))


def build(tmp_path: Path, config: Config | None = None) -> dict[str, dict[str, Any]]:
    inputs = tmp_path / "in"
    # The original SQS message in the redrive DLQ, and a copy of it that failed again and came back.
    write(
        inputs / "dlq" / "orders-dlq.receive-message.json",
        receive_output(
            sqs_message(
                "m-original",
                '{"order_id": 4711}',
                {"source": {"DataType": "String", "StringValue": "api"}},
                DeadLetterQueueSourceArn=SOURCE_ARN,
            ),
            sqs_message(
                "m-copy",
                '{"order_id": 4711}',
                {
                    "source": {"DataType": "String", "StringValue": "api"},
                    MARKER: {"DataType": "String", "StringValue": "a1b2c3d4e5f6:e00001:m-original"},
                },
                DeadLetterQueueSourceArn=SOURCE_ARN,
            ),
            sqs_message("m-logged-original", '{"order_id": 4800}', {}, DeadLetterQueueSourceArn=SOURCE_ARN),
        ),
    )
    # An async event, and its replayed copy (a new request id) whose requestPayload has the field.
    original = async_record(REQUEST, {"order_id": 4712}, "2026-11-22T09:02:00Z")
    write(inputs / "dest" / "original.json", original)
    write(
        inputs / "dest" / "copy.json",
        async_record(
            COPY_REQUEST,
            {"order_id": 4712, MARKER: f"a1b2c3d4e5f6:e00002:{REQUEST}"},
            "2026-11-22T10:02:00Z",
        ),
    )
    write(
        inputs / "logs" / "orders-worker.filter-log-events.json",
        filter_log_events(
            "5d0e4c6a-0000-4b7e-9c3d-6a5b4c3d2e1f",
            [logged_sqs_event("m-logged-copy", "a1b2c3d4e5f6:e00003:m-logged-original")],
        ),
    )
    with Store.open(tmp_path / "store", create=True) as store:
        ingest_paths(store, [inputs / "dlq", inputs / "dest"])
        ingest_paths(store, [inputs / "logs"], log_group="/aws/lambda/orders-worker")
        analyze(store, config or Config())
        rows = store.query("SELECT event_id, duplicate_kind, duplicate_of FROM events")
    return {row["event_id"]: row for row in rows}


def test_copies_are_replays_of_their_originals(tmp_path: Path) -> None:
    events = build(tmp_path)
    # A DLQ message with the marker attribute.
    assert events["m-copy"]["duplicate_kind"] == "replay"
    assert events["m-copy"]["duplicate_of"] == "m-original"
    # An async destination record whose requestPayload has the marker field.
    assert events[COPY_REQUEST]["duplicate_kind"] == "replay"
    assert events[COPY_REQUEST]["duplicate_of"] == REQUEST
    # A logged SQS event whose record carries the attribute.
    assert events["m-logged-copy"]["duplicate_kind"] == "replay"
    assert events["m-logged-copy"]["duplicate_of"] == "m-logged-original"
    # The originals are not copies.
    for original in ("m-original", REQUEST, "m-logged-original"):
        assert events[original]["duplicate_kind"] is None
        assert events[original]["duplicate_of"] is None


def test_replay_wins_over_client_retry(tmp_path: Path) -> None:
    """A copy carries its original's business key: it is a replay, not a client retry."""
    config = Config(functions={"*": FunctionConfig(keys=("$.order_id",))})
    events = build(tmp_path, config)
    assert events["m-copy"]["duplicate_kind"] == "replay"
    assert events["m-copy"]["duplicate_of"] == "m-original"
    assert events[COPY_REQUEST]["duplicate_kind"] == "replay"


def test_async_dlq_body_with_the_field(tmp_path: Path) -> None:
    """An async copy that failed again lands in the function's DLQ: the body has the field and the
    event is the RequestID attribute's."""
    inputs = tmp_path / "in"
    attributes = {
        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
        "ErrorMessage": {"DataType": "String", "StringValue": "boom"},
    }
    body = jsonio.dumps({"order_id": 4713, MARKER: "ffee00112233:e00007:shardId-000000000001:4960118965"})
    write(
        inputs / "orders-notify-dlq.receive-message.json",
        receive_output(
            sqs_message(
                "m-dlq-copy",
                body,
                {**attributes, "RequestID": {"DataType": "String", "StringValue": COPY_REQUEST}},
            )
        ),
    )
    with Store.open(tmp_path / "store", create=True) as store:
        ingest_paths(store, [inputs])
        analyze(store, Config())
        [row] = store.query("SELECT event_id, duplicate_kind, duplicate_of FROM events")
    assert row == {
        "event_id": COPY_REQUEST,
        "duplicate_kind": "replay",
        "duplicate_of": "shardId-000000000001:4960118965",
    }
