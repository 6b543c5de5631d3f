"""Destination invocation records → `destination_records`, bare and in every carrier.

Async on-success / on-failure records (raw, SQS receive-message output, a bare SQS message, the SQS
Lambda event, SNS, SNS-in-SQS, EventBridge), Kinesis / DynamoDB Streams on-failure records, the S3
on-failure object with `payload`, Kafka records with `recordsInfo` and the Kafka-topic message.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tracekit import jsonio

ACCT = "402118093356"
FAIL_RID = "d7c6b5a4-9382-4716-a5b4-c3d2e1f0a9b8"
OK_RID = "e1f2a3b4-c5d6-47e8-99a0-b1c2d3e4f5a6"
ONLY_DESTINATIONS = {"log_events": 0, "invocations": 0, "dead_letters": 0, "quarantined": 0}


def only_destinations(counts, n):
    assert counts == {**ONLY_DESTINATIONS, "destination_records": n}


def one(store):
    rows = store.query("SELECT * FROM destination_records")
    assert len(rows) == 1
    return rows[0]


def assert_async_failure(row):
    """The fields of destinations/async_retries_exhausted.json."""
    assert row["kind"] == "async"
    assert row["condition"] == "RetriesExhausted"
    assert row["request_id"] == FAIL_RID
    assert row["function_arn"] == f"arn:aws:lambda:eu-west-1:{ACCT}:function:order-intake:$LATEST"
    assert row["function_name"] == "order-intake"
    assert row["approximate_invoke_count"] == 3
    assert row["timestamp"] == dt.datetime(2024, 4, 2, 7, 45, 12, 934000)
    assert jsonio.loads(row["request_payload"]) == {"orderId": "O-5531", "lines": [1, 2]}
    response = jsonio.loads(row["response_payload"])
    assert response["errorType"] == "ConnectionError"
    assert response["errorMessage"] == "stock service unreachable"
    assert row["function_error"] == "Unhandled"
    assert row["status_code"] == 200
    assert row["executed_version"] == "$LATEST"
    for column in (
        "shard_id",
        "start_sequence_number",
        "end_sequence_number",
        "batch_size",
        "source_arn",
        "arrival_first",
        "arrival_last",
        "partitions",
        "payload",
    ):
        assert row[column] is None, column


def assert_async_success(row):
    """The fields of destinations/async_success.json."""
    assert row["kind"] == "async"
    assert row["condition"] == "Success"
    assert row["request_id"] == OK_RID
    assert row["function_arn"] == f"arn:aws:lambda:eu-west-1:{ACCT}:function:order-intake:12"
    assert row["function_name"] == "order-intake"
    assert row["approximate_invoke_count"] == 1
    assert row["timestamp"] == dt.datetime(2024, 4, 2, 7, 50, 0, 120000)
    assert row["function_error"] is None
    assert row["status_code"] == 200
    assert row["executed_version"] == "12"
    assert jsonio.loads(row["response_payload"]) == {"accepted": True, "orderId": "O-5532"}


# -- async records ---------------------------------------------------------------------------------


def test_async_retries_exhausted_raw(ingest):
    store, counts = ingest(ingest.fixture("destinations/async_retries_exhausted.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert_async_failure(row)
    assert row["envelope"] == "raw"
    assert row["envelope_id"] is None
    assert row["record_id"]


def test_async_success_raw(ingest):
    store, counts = ingest(ingest.fixture("destinations/async_success.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert_async_success(row)
    assert row["envelope"] == "raw"


def test_sqs_receive_message_with_string_bodies(ingest):
    store, counts = ingest(ingest.fixture("destinations/sqs_receive_message.json"))
    only_destinations(counts, 2)
    rows = {r["request_id"]: r for r in store.query("SELECT * FROM destination_records")}
    assert_async_failure(rows[FAIL_RID])
    assert_async_success(rows[OK_RID])
    assert {r["envelope"] for r in rows.values()} == {"sqs"}
    assert rows[FAIL_RID]["envelope_id"] == "0a1b2c3d-4e5f-4607-8819-2a3b4c5d6e7f"
    assert rows[OK_RID]["envelope_id"] == "1b2c3d4e-5f60-4718-9920-3b4c5d6e7f80"
    assert rows[FAIL_RID]["record_id"] != rows[OK_RID]["record_id"]


def test_bare_sqs_message_event_age_exceeded(ingest):
    store, counts = ingest(ingest.fixture("destinations/sqs_message_event_age_exceeded.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert row["kind"] == "async"
    assert row["condition"] == "EventAgeExceeded"
    assert row["request_id"] == "f0e1d2c3-b4a5-4968-8776-655443322110"
    assert row["approximate_invoke_count"] == 2
    assert row["timestamp"] == dt.datetime(2024, 4, 3, 1, 2, 3, 456000)
    assert row["function_error"] == "Unhandled"
    assert jsonio.loads(row["response_payload"]) == {
        "errorMessage": "still failing",
        "errorType": "Exception",
    }
    assert row["envelope"] == "sqs"
    assert row["envelope_id"] == "6b1e0c8a-3f5d-4a2e-9c7b-8d0f1e2a3b4c"


def test_sqs_lambda_event_records(ingest):
    store, counts = ingest(ingest.fixture("destinations/sqs_lambda_event.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert_async_failure(row)
    assert row["envelope"] == "sqs"
    assert row["envelope_id"] == "2c3d4e5f-6071-4829-a031-4c5d6e7f8091"


def test_sns_notification_with_message_string(ingest):
    store, counts = ingest(ingest.fixture("destinations/sns_notification.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert_async_success(row)
    assert row["envelope"] == "sns"
    assert row["envelope_id"] == "3d4e5f60-7182-4930-b142-5d6e7f8091a2"


def test_sns_notification_inside_sqs(ingest):
    store, counts = ingest(ingest.fixture("destinations/sns_in_sqs_receive_message.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert_async_failure(row)
    assert row["envelope"] == "sns"
    assert row["envelope_path"] == "sqs/sns"
    assert row["envelope_id"] == "4e5f6071-8293-4a41-8253-6e7f8091a2b3"


def test_eventbridge_event(ingest):
    store, counts = ingest(ingest.fixture("destinations/eventbridge_failure.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert_async_failure(row)
    assert row["envelope"] == "eventbridge"
    assert row["envelope_id"] == "60718293-a4b5-4c63-a475-8091a2b3c4d5"


def test_same_record_in_two_carriers_keeps_its_record_id(ingest):
    store, _ = ingest(
        ingest.fixture("destinations/async_retries_exhausted.json"),
        ingest.fixture("destinations/eventbridge_failure.json"),
    )
    ids = store.query("SELECT DISTINCT record_id FROM destination_records WHERE request_id = ?", [FAIL_RID])
    assert len(ids) == 1


def test_eventbridge_event_that_is_not_a_destination_record(ingest, write):
    event = {
        "version": "0",
        "id": "0f0e0d0c-0b0a-4909-8807-060504030201",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": ACCT,
        "time": "2024-04-02T08:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {"instance-id": "i-0abc", "state": "stopped"},
    }
    store, counts = ingest(write("ec2.json", jsonio.dumps(event)))
    assert counts["destination_records"] == 0
    assert counts["quarantined"] == 1
    [q] = store.query("SELECT reason FROM quarantine")
    assert q["reason"].startswith("not a failure artifact")


# -- stream on-failure records ---------------------------------------------------------------------


def test_kinesis_on_failure_record(ingest):
    store, counts = ingest(ingest.fixture("destinations/kinesis_on_failure.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert row["kind"] == "kinesis"
    assert row["condition"] == "RetryAttemptsExhausted"
    assert row["request_id"] == "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
    assert row["function_name"] == "clickstream-loader"
    assert row["approximate_invoke_count"] == 4
    assert row["timestamp"] == dt.datetime(2024, 5, 20, 16, 4, 31, 777000)
    assert row["function_error"] == "Unhandled"
    assert row["status_code"] == 200
    assert row["shard_id"] == "shardId-000000000003"
    assert row["start_sequence_number"] == "49650123456789012345678901234567890123456789012345678901"
    assert row["end_sequence_number"] == "49650123456789012345678901234567890123456789012345678999"
    assert row["batch_size"] == 25
    assert row["source_arn"] == f"arn:aws:kinesis:eu-west-1:{ACCT}:stream/clickstream"
    assert row["arrival_first"] == dt.datetime(2024, 5, 20, 16, 4, 20, 101000)
    assert row["arrival_last"] == dt.datetime(2024, 5, 20, 16, 4, 22, 909000)
    assert row["request_payload"] is None and row["response_payload"] is None
    assert row["envelope"] == "raw"


def test_sequence_numbers_are_varchar(ingest):
    store, _ = ingest(ingest.fixture("destinations/kinesis_on_failure.json"))
    types = store.query(
        "SELECT typeof(start_sequence_number) AS s, typeof(end_sequence_number) AS e FROM destination_records"
    )
    assert types == [{"s": "VARCHAR", "e": "VARCHAR"}]


def test_dynamodb_rbif_exhaustion_function_error_null(ingest):
    store, counts = ingest(ingest.fixture("destinations/dynamodb_rbif_exhausted.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert row["kind"] == "dynamodb"
    assert row["condition"] == "RetryAttemptsExhausted"
    assert row["function_name"] == "profile-sync"
    assert row["approximate_invoke_count"] == 3
    assert row["function_error"] is None  # batchItemFailures kept failing; no exception
    assert row["status_code"] == 200
    assert row["shard_id"] == "shardId-00000001716280000000-1a2b3c4d"
    assert row["start_sequence_number"] == row["end_sequence_number"] == "710000000004567890123"
    assert row["batch_size"] == 1
    # DynamoDB arrival times have no milliseconds
    assert row["arrival_first"] == row["arrival_last"] == dt.datetime(2024, 5, 21, 9, 9, 58)
    assert (
        row["source_arn"]
        == f"arn:aws:dynamodb:eu-west-1:{ACCT}:table/profiles/stream/2024-05-01T00:00:00.000"
    )


def test_record_age_exceeded_without_response_context(ingest):
    store, counts = ingest(ingest.fixture("destinations/kinesis_record_age_exceeded_in_sqs.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert row["kind"] == "kinesis"
    assert row["condition"] == "RecordAgeExceeded"
    assert row["approximate_invoke_count"] == 1
    assert row["status_code"] is None
    assert row["function_error"] is None
    assert row["executed_version"] is None
    assert row["envelope"] == "sqs"
    assert row["envelope_id"] == "a1b2c3d4-0000-4111-8222-333344445555"
    assert row["start_sequence_number"] == "49650999999999999999999999999999999999999999999999990001"


def test_s3_object_with_payload_makes_one_row(ingest):
    store, counts = ingest(ingest.fixture("destinations/s3_object_kinesis_with_payload.json"))
    # the two Kinesis records inside `payload` are the original event, not artifacts of their own
    only_destinations(counts, 1)
    row = one(store)
    assert row["kind"] == "kinesis"
    assert row["request_id"] == "b2c3d4e5-1111-4222-9333-444455556666"
    assert row["function_name"] == "telemetry-loader"
    assert row["approximate_invoke_count"] == 2
    assert row["batch_size"] == 2
    assert row["start_sequence_number"] == "49651000000000000000000000000000000000000000000000000111"
    assert row["end_sequence_number"] == "49651000000000000000000000000000000000000000000000000222"
    assert row["envelope"] in ("s3", "raw")
    payload = jsonio.loads(row["payload"])
    assert [r["kinesis"]["partitionKey"] for r in payload["Records"]] == ["device-17", "device-18"]


# -- Kafka -----------------------------------------------------------------------------------------


def test_kafka_records_info_two_partitions_is_one_row(ingest):
    store, counts = ingest(ingest.fixture("destinations/kafka_two_partitions.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert row["kind"] == "kafka"
    assert row["condition"] == "RetryAttemptsExhausted"
    assert row["function_name"] == "ledger-consumer"
    assert row["approximate_invoke_count"] == 11
    assert row["batch_size"] == 40
    assert row["source_arn"] == (
        f"arn:aws:kafka:eu-west-1:{ACCT}:cluster/ledger/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-3"
    )
    partitions = jsonio.loads(row["partitions"])
    assert isinstance(partitions, list) and len(partitions) == 2
    text = row["partitions"]
    for value in ("ledger-entries-0", "ledger-entries-1", "1200", "1219", "880", "899"):
        assert value in text


def test_kafka_single_partition_fills_shard_and_offsets(ingest, write):
    record = jsonio.loads(ingest.fixture("destinations/kafka_two_partitions.json").read_bytes())
    del record["KafkaBatchInfo"]["recordsInfo"]["ledger-entries-1"]
    store, counts = ingest(write("kafka-one.json", jsonio.dumps(record)))
    only_destinations(counts, 1)
    row = one(store)
    assert row["shard_id"] == "ledger-entries-0"
    assert row["start_sequence_number"] == "1200"
    assert row["end_sequence_number"] == "1219"
    assert row["arrival_first"] == dt.datetime(2024, 6, 10, 13, 14, 0)
    assert row["arrival_last"] == dt.datetime(2024, 6, 10, 13, 14, 1, 500000)


def test_kafka_payload_size_exceeded_with_null_response_context(ingest, write):
    record = jsonio.loads(ingest.fixture("destinations/kafka_two_partitions.json").read_bytes())
    record["requestContext"]["condition"] = "MaximumPayloadSizeExceeded"
    record["requestContext"]["approximateInvokeCount"] = 1
    record["responseContext"] = None
    store, _ = ingest(write("kafka-too-big.json", jsonio.dumps(record)))
    row = one(store)
    assert row["condition"] == "MaximumPayloadSizeExceeded"
    assert row["status_code"] is None
    assert row["function_error"] is None
    assert row["kind"] == "kafka"


def test_kafka_topic_destination_message(ingest):
    store, counts = ingest(ingest.fixture("destinations/kafka_topic_destination_message.json"))
    only_destinations(counts, 1)
    row = one(store)
    assert row["kind"] == "kafka"
    assert row["request_id"] == "d4e5f607-3333-4444-b555-666677778888"
    assert row["function_arn"] == f"arn:aws:lambda:eu-west-1:{ACCT}:function:ledger-consumer:live"
    assert row["function_name"] == "ledger-consumer"
    assert row["executed_version"] == "5"
    assert row["batch_size"] == 1
    assert row["shard_id"] == "ledger-entries-2"
    assert row["start_sequence_number"] == row["end_sequence_number"] == "73311"
    assert row["arrival_first"] == dt.datetime(2024, 6, 11, 7, 59, 58, 250000)
    payload = jsonio.loads(row["payload"])
    assert payload["records"]["ledger-entries-2"][0]["offset"] == 73311


@pytest.mark.parametrize(
    "fixture",
    ["destinations/kinesis_on_failure.json", "destinations/async_success.json"],
)
def test_ndjson_of_records_one_row_per_line(ingest, write, fixture):
    record = jsonio.loads(ingest.fixture(fixture).read_bytes())
    second = {**record, "timestamp": "2024-07-07T07:07:07.007Z"}
    path = write("records.ndjson", jsonio.dumps(record) + "\n" + jsonio.dumps(second) + "\n")
    store, counts = ingest(path)
    only_destinations(counts, 2)
    stamps = store.query("SELECT timestamp FROM destination_records ORDER BY timestamp DESC")
    assert stamps[0]["timestamp"] == dt.datetime(2024, 7, 7, 7, 7, 7, 7000)


def test_eventbridge_event_delivered_to_sqs(ingest, write):
    event = jsonio.loads(ingest.fixture("destinations/eventbridge_failure.json").read_bytes())
    message = {
        "MessageId": "7a6b5c4d-0000-4111-8222-999988887777",
        "ReceiptHandle": "AQEBeb0handle==",
        "Body": jsonio.dumps(event),
    }
    store, counts = ingest(write("eb-sqs.json", jsonio.dumps({"Messages": [message]})))
    only_destinations(counts, 1)
    row = one(store)
    assert_async_failure(row)
    assert row["envelope"] == "eventbridge"
    assert row["envelope_path"] == "sqs/eventbridge"
    assert row["envelope_id"] == "60718293-a4b5-4c63-a475-8091a2b3c4d5"


def test_eventbridge_event_delivered_through_sns(ingest, write):
    """An EventBridge rule with an SNS target: the notification's Message is the whole event."""
    record = {
        "version": "1.0",
        "timestamp": "2026-11-22T10:00:01.250Z",
        "requestContext": {
            "requestId": "5d0c1a7e-3b2f-4c1d-9e8a-7f6b5c4d3e2f",
            "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:billing:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"invoice": 88},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "boom", "errorType": "RuntimeError"},
    }
    event = {
        "version": "0",
        "id": "0b9f0d4e-1111-2222-3333-444455556666",
        "detail-type": "Lambda Function Invocation Result - Failure",
        "source": "lambda",
        "account": "123456789012",
        "time": "2026-11-22T10:00:01Z",
        "region": "eu-west-1",
        "resources": [
            "arn:aws:events:eu-west-1:123456789012:event-bus/default",
            "arn:aws:lambda:eu-west-1:123456789012:function:billing:$LATEST",
        ],
        "detail": record,
    }
    notification = {
        "Type": "Notification",
        "MessageId": "9a8b7c6d-0000-1111-2222-333344445555",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:failures",
        "Message": jsonio.dumps(event),
        "Timestamp": "2026-11-22T10:00:01.400Z",
    }
    store, counts = ingest(write("eb-via-sns.json", jsonio.dumps(notification)))
    assert counts["destination_records"] == 1 and counts["dead_letters"] == 0
    [row] = store.query("SELECT request_id, envelope, envelope_id, envelope_path FROM destination_records")
    assert row == {
        "request_id": "5d0c1a7e-3b2f-4c1d-9e8a-7f6b5c4d3e2f",
        "envelope": "eventbridge",
        "envelope_id": "0b9f0d4e-1111-2222-3333-444455556666",
        "envelope_path": "sns/eventbridge",
    }
