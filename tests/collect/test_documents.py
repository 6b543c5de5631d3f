"""File layouts and what cannot be ingested: quarantine rows, non-artifacts, idempotent re-ingest.

Inputs that are not failure artifacts, or cannot be read, become `quarantine` rows with a position
(`line N`, `member N`, `record N`, `byte N`) and a reason; what can be read in the same file is still
ingested. Ingesting the same file again adds nothing.
"""

from __future__ import annotations

import gzip

import pytest

from tracekit import jsonio

NOT_ARTIFACT = "not a failure artifact"
STREAM = "2024/10/01/[$LATEST]55555555555555555555555555555555"
RID = "b0c1d2e3-f4a5-4b6c-8d7e-8f9a0b1c2d3e"


def log_event(i, ts, message):
    return {
        "logStreamName": STREAM,
        "timestamp": ts,
        "message": message,
        "ingestionTime": ts + 100,
        "eventId": f"{i:056d}",
    }


EVENTS = [
    log_event(1, 1727740800000, f"START RequestId: {RID} Version: $LATEST\n"),
    log_event(2, 1727740800020, f"END RequestId: {RID}\n"),
    log_event(
        3,
        1727740800020,
        f"REPORT RequestId: {RID}\tDuration: 19.90 ms\tBilled Duration: 20 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 41 MB\t\n",
    ),
]


# -- quarantine ------------------------------------------------------------------------------------


def test_broken_ndjson_line_is_quarantined_and_the_rest_ingested(ingest, write):
    broken = '{"logStreamName": "' + STREAM + '", "timestamp": 17277408000'
    text = (
        jsonio.dumps(EVENTS[0])
        + "\n"
        + broken
        + "\n"
        + jsonio.dumps(EVENTS[1])
        + "\n"
        + jsonio.dumps(EVENTS[2])
    )
    path = write("page.ndjson", text + "\n")
    store, counts = ingest(path, log_group="/aws/lambda/ticker")
    assert counts["quarantined"] == 1
    assert counts["log_events"] == 3
    assert counts["invocations"] == 1
    [q] = store.query("SELECT source, position, raw, reason FROM quarantine")
    assert q["position"] == "line 2"
    assert q["raw"] == broken
    assert q["source"] == str(path)
    assert q["reason"]
    [row] = store.query("SELECT request_id, duration_ms, status FROM invocations")
    assert row == {"request_id": RID, "duration_ms": pytest.approx(19.90), "status": "success"}


def test_truncated_awslogs_data_is_quarantined(ingest, write):
    full = ingest.awslogs_data(
        {
            "messageType": "DATA_MESSAGE",
            "owner": "402118093356",
            "logGroup": "/aws/lambda/ticker",
            "logStream": STREAM,
            "subscriptionFilters": ["all"],
            "logEvents": [{"id": "1", "timestamp": 1727740800000, "message": "hello\n"}],
        }
    )
    cut = full[: len(full) // 2] + "..."
    store, counts = ingest(write("awslogs.json", jsonio.dumps({"awslogs": {"data": cut}})))
    assert counts == {
        "log_events": 0,
        "invocations": 0,
        "destination_records": 0,
        "dead_letters": 0,
        "quarantined": 1,
    }
    [q] = store.query("SELECT raw, reason FROM quarantine")
    assert full[:40] in q["raw"]
    assert q["reason"]


KINESIS_EVENT = {
    "Records": [
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "pk-1",
                "sequenceNumber": "49652000000000000000000000000000000000000000000000000001",
                "data": "aGVsbG8=",
                "approximateArrivalTimestamp": 1727740800.5,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": "shardId-000000000000:49652000000000000000000000000000000000000000000000000001",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::402118093356:role/ticker",
            "awsRegion": "eu-west-1",
            "eventSourceARN": "arn:aws:kinesis:eu-west-1:402118093356:stream/ticks",
        }
    ]
}
DDB_EVENT = {
    "Records": [
        {
            "eventID": "7de3041dd709b024af6f29e4fa13d34c",
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1727740800,
                "Keys": {"Id": {"N": "101"}},
                "NewImage": {"Id": {"N": "101"}, "Name": {"S": "widget"}},
                "SequenceNumber": "111",
                "SizeBytes": 26,
                "StreamViewType": "NEW_IMAGE",
            },
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:402118093356:table/widgets/stream/"
            "2024-10-01T00:00:00.000",
        }
    ]
}


@pytest.mark.parametrize(
    "document",
    [
        {"batchItemFailures": [{"itemIdentifier": "059f36b4-87a3-44ab-83d2-661975830a7d"}]},
        {
            "batchItemFailures": [
                {"itemIdentifier": "49652000000000000000000000000000000000000000000000000001"}
            ]
        },
        KINESIS_EVENT,
        DDB_EVENT,
        {"StatusCode": 200, "FunctionError": "Unhandled", "ExecutedVersion": "$LATEST"},
        {
            "UUID": "a1b2c3d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
            "BatchSize": 100,
            "EventSourceArn": "arn:aws:kinesis:eu-west-1:402118093356:stream/ticks",
            "FunctionArn": "arn:aws:lambda:eu-west-1:402118093356:function:ticker",
            "State": "Enabled",
        },
    ],
    ids=[
        "sqs-batch-item-failures",
        "stream-batch-item-failures",
        "kinesis-event",
        "dynamodb-event",
        "invoke-response",
        "event-source-mapping",
    ],
)
def test_documents_that_are_not_failure_artifacts(ingest, write, document):
    store, counts = ingest(write("doc.json", jsonio.dumps(document, sort_keys=False)))
    assert counts == {
        "log_events": 0,
        "invocations": 0,
        "destination_records": 0,
        "dead_letters": 0,
        "quarantined": 1,
    }
    [q] = store.query("SELECT reason, raw FROM quarantine")
    assert q["reason"].startswith(NOT_ARTIFACT)
    assert q["raw"]


def test_binary_file_is_quarantined(ingest, write):
    blob = bytes(range(256)) * 8
    store, counts = ingest(write("core.bin", b"\x7fELF\x02\x01\x01\x00" + blob))
    assert counts == {
        "log_events": 0,
        "invocations": 0,
        "destination_records": 0,
        "dead_letters": 0,
        "quarantined": 1,
    }
    [q] = store.query("SELECT position, reason FROM quarantine")
    assert q["reason"]
    assert q["position"].startswith("byte ")


def test_corrupt_gzip_member_is_quarantined_after_good_ones(ingest, write):
    good = gzip.compress("".join(jsonio.dumps(e) + "\n" for e in EVENTS).encode())
    bad = gzip.compress(b'{"logStreamName": "x"}\n')
    bad = bad[:10] + b"\xff" * 12 + bad[22:]  # damage the deflate stream of member 2
    store, counts = ingest(write("export.ndjson.gz", good + bad), log_group="/aws/lambda/ticker")
    assert counts["quarantined"] == 1
    assert counts["log_events"] == 3
    assert counts["invocations"] == 1
    [q] = store.query("SELECT position, reason FROM quarantine")
    assert q["position"] == "member 2"
    assert q["reason"]


def test_json_array_element_that_is_not_an_object(ingest, write):
    record = jsonio.loads(ingest.fixture("destinations/async_success.json").read_bytes())
    failure = jsonio.loads(ingest.fixture("destinations/async_retries_exhausted.json").read_bytes())
    store, counts = ingest(write("records.json", jsonio.dumps([record, 42, failure])))
    assert counts["destination_records"] == 2
    assert counts["quarantined"] == 1
    [q] = store.query("SELECT position, raw FROM quarantine")
    assert q["position"] == "record 2"
    assert q["raw"] == "42"


def test_invoke_output_followed_by_get_log_events_output(ingest, write):
    # two JSON documents back to back, as a terminal session shows `aws lambda invoke` then
    # `aws logs get-log-events`
    invoke = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
    page = {
        "events": [{k: v for k, v in e.items() if k not in ("logStreamName", "eventId")} for e in EVENTS],
        "nextForwardToken": "f/1",
        "nextBackwardToken": "b/1",
    }
    text = (jsonio.dumpb(invoke) + b"\n" + jsonio.dumpb(page) + b"\n").decode()
    store, counts = ingest(write("session.txt", text), log_group="/aws/lambda/ticker")
    assert counts["log_events"] == 3
    assert counts["invocations"] == 1
    assert counts["quarantined"] == 1
    [q] = store.query("SELECT raw FROM quarantine")
    assert jsonio.loads(q["raw"]) == invoke


def test_cli_invoke_output_is_not_a_failure_artifact(ingest, write):
    store, counts = ingest(
        write("invoke-out.json", '{\n    "StatusCode": 200,\n    "ExecutedVersion": "$LATEST"\n}\n')
    )
    assert counts["quarantined"] == 1
    [q] = store.query("SELECT reason FROM quarantine")
    assert q["reason"].startswith(NOT_ARTIFACT)


# -- ingesting the same file twice -----------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture",
    [
        "logs/python_cold_start_xray.txt",
        "logs/json_format_platform.jsonl",
        "destinations/sqs_receive_message.json",
        "destinations/kafka_two_partitions.json",
        "dlq/async_dlq_receive_message.json",
        "dlq/sns_dlq_via_sqs_receive_message.json",
    ],
)
def test_reingesting_a_fixture_adds_nothing(ingest, fixture):
    path = ingest.fixture(fixture)
    store, first = ingest(path)
    assert sum(first.values()) > 0
    before = ingest.totals(store)
    store, second = ingest(path)
    assert second == dict.fromkeys(second, 0)
    assert ingest.totals(store) == before


@pytest.mark.parametrize("layout", ["ndjson", "whole-response", "gzip-export", "with-quarantine"])
def test_reingesting_logs_adds_nothing(ingest, write, layout):
    if layout == "ndjson":
        path = write("p.ndjson", "".join(jsonio.dumps(e) + "\n" for e in EVENTS))
    elif layout == "whole-response":
        path = write("p.json", jsonio.dumps({"events": EVENTS, "searchedLogStreams": []}))
    elif layout == "gzip-export":
        text = "\n".join(f"2024-10-01T00:00:00.{i:03d}Z {e['message']}" for i, e in enumerate(EVENTS))
        path = write("000000.gz", gzip.compress(text.encode()))
    else:
        path = write("q.ndjson", jsonio.dumps(EVENTS[0]) + "\n{not json\n" + jsonio.dumps(EVENTS[2]) + "\n")
    store, first = ingest(path, log_group="/aws/lambda/ticker")
    assert first["log_events"] >= 2 and first["invocations"] == 1
    before = ingest.totals(store)
    store, second = ingest(path, log_group="/aws/lambda/ticker")
    assert second == dict.fromkeys(second, 0)
    assert ingest.totals(store) == before


def test_same_content_under_another_name_adds_nothing(ingest, write):
    first = write("a.json", ingest.fixture("dlq/redrive_dlq_receive_message.json").read_text())
    copy = write("b.json", first.read_text())
    store, counts = ingest(first)
    assert counts["dead_letters"] == 1
    store, again = ingest(copy)
    assert again["dead_letters"] == 0
    assert ingest.totals(store)["dead_letters"] == 1


def test_overlapping_log_pages_do_not_duplicate_events(ingest, write):
    a = write("page1.ndjson", "".join(jsonio.dumps(e) + "\n" for e in EVENTS[:2]))
    b = write("page2.ndjson", "".join(jsonio.dumps(e) + "\n" for e in EVENTS[1:]))
    store, first = ingest(a, log_group="/aws/lambda/ticker")
    assert first["log_events"] == 2
    store, second = ingest(b, log_group="/aws/lambda/ticker")
    assert second["log_events"] == 1  # EVENTS[1] (same eventId) is already stored
    assert ingest.totals(store)["log_events"] == 3
    assert ingest.totals(store)["invocations"] == 1


def test_truncated_gzip_member_keeps_what_was_readable(ingest, write):
    text = "".join(jsonio.dumps(e) + "\n" for e in EVENTS) * 50
    blob = gzip.compress(text.encode())
    store, counts = ingest(write("cut.ndjson.gz", blob[: len(blob) // 2]), log_group="/aws/lambda/ticker")
    # the events before the cut are stored; the member is reported (a line cut in half may be too)
    assert counts["log_events"] > 0
    assert counts["quarantined"] >= 1
    positions = [q["position"] for q in store.query("SELECT position FROM quarantine")]
    assert "member 1" in positions


def test_cut_off_json_document_is_quarantined_with_a_byte_position(ingest, write):
    text = '{"Messages": [{"MessageId": "a", "Body": "hello"}, {"MessageId": "b", "Bo'
    store, counts = ingest(write("cut.json", text))
    assert counts == {
        "log_events": 0,
        "invocations": 0,
        "destination_records": 0,
        "dead_letters": 0,
        "quarantined": 1,
    }
    [q] = store.query("SELECT position, raw FROM quarantine")
    assert q["position"].startswith("byte ")
    assert "hello" in q["raw"]


def test_logs_insights_results_are_not_ingested(ingest, write):
    doc = {
        "results": [
            [
                {"field": "@timestamp", "value": "2024-01-01 00:00:00.000"},
                {"field": "@message", "value": "REPORT RequestId: x"},
            ]
        ],
        "statistics": {"recordsMatched": 1.0, "recordsScanned": 10.0, "bytesScanned": 1000.0},
        "status": "Complete",
    }
    store, counts = ingest(write("insights.json", jsonio.dumps(doc)))
    assert counts == {
        "log_events": 0,
        "invocations": 0,
        "destination_records": 0,
        "dead_letters": 0,
        "quarantined": 1,
    }
    [q] = store.query("SELECT reason FROM quarantine")
    assert "Logs Insights" in q["reason"]


def test_a_parser_failure_keeps_the_whole_file_in_quarantine(ingest, write, monkeypatch):
    """If parsing a file raises (a bug), the input is kept whole in quarantine instead of crashing."""
    from tracekit.collect import ingest as ingest_module

    def broken(text, parsed):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(ingest_module, "parse_json_file", broken)
    body = '{"Messages": []}'
    store, counts = ingest(write("deep.json", body))
    assert counts["quarantined"] == 1
    [q] = store.query("SELECT position, raw, reason FROM quarantine")
    assert q["position"] == "byte 0"
    assert q["raw"] == body
    assert "RecursionError" in q["reason"]


def test_a_failing_write_stores_nothing_and_says_which_file(ingest, write, monkeypatch):
    """An unexpected error while writing a batch aborts it and names the input in one line."""
    from tracekit.errors import TracekitError
    from tracekit.store.catalog import Batch

    def failing_copy(self, con, table, select_sql, *, fast=False):
        raise OSError("No space left on device")

    path = write("dlq.json", '{"Messages": [{"MessageId": "m-1", "Body": "hello"}]}')
    monkeypatch.setattr(Batch, "copy", failing_copy)
    with pytest.raises(TracekitError) as caught:
        ingest(path)
    assert "could not store (OSError: No space left on device)" in caught.value.line()
    assert str(path) in caught.value.line()
    monkeypatch.undo()
    store, counts = ingest(path)
    assert counts["dead_letters"] == 1  # nothing of the failed attempt was kept, so it is new now


def test_kafka_source_event_is_not_a_failure_artifact(ingest, write):
    """A Kafka event (the function's input) has `records` keyed by topic-partition, not `Records`."""
    event = {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:eu-west-1:123456789012:cluster/orders/abc-1",
        "bootstrapServers": "b-1.orders.abc.kafka.eu-west-1.amazonaws.com:9098",
        "records": {
            "orders-0": [
                {
                    "topic": "orders",
                    "partition": 0,
                    "offset": 15,
                    "timestamp": 1763800000000,
                    "timestampType": "CREATE_TIME",
                    "key": "NDcxMQ==",
                    "value": "e30=",
                    "headers": [],
                }
            ]
        },
    }
    store, counts = ingest(write("kafka-event.json", jsonio.dumps(event)))
    assert counts["quarantined"] == 1 and counts["destination_records"] == 0
    [q] = store.query("SELECT reason FROM quarantine")
    assert q["reason"] == "not a failure artifact: aws:kafka source event"


def test_lab_truth_file_is_named_in_the_quarantine_reason(ingest, write):
    truth = {"scenario": "s", "events": [{"event_id": "e1", "attempts": []}], "batches": []}
    store, counts = ingest(write("truth.json", jsonio.dumps(truth)))
    assert counts["quarantined"] == 1
    [q] = store.query("SELECT reason FROM quarantine")
    assert q["reason"].startswith(NOT_ARTIFACT)
    assert "truth.json" in q["reason"]
