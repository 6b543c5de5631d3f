"""Dead-letter queue messages → `dead_letters`.

A Lambda function's DLQ (SQS, or SNS delivered through SQS) carries RequestID / ErrorCode /
ErrorMessage attributes (`async_dlq`); an SQS redrive DLQ adds DeadLetterQueueSourceArn
(`source_dlq`); anything else is `unknown`.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tracekit import jsonio

ACCT = "402118093356"
ONLY_DEAD_LETTERS = {"log_events": 0, "invocations": 0, "destination_records": 0, "quarantined": 0}


def ms(value: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=value)


def one(store):
    rows = store.query("SELECT * FROM dead_letters")
    assert len(rows) == 1
    return rows[0]


def test_lambda_dlq_sqs_receive_message(ingest):
    store, counts = ingest(ingest.fixture("dlq/async_dlq_receive_message.json"))
    assert counts == {**ONLY_DEAD_LETTERS, "dead_letters": 1}
    row = one(store)
    assert row["kind"] == "async_dlq"
    assert row["message_id"] == "e5f60718-4444-4555-8666-777788889999"
    assert row["request_id"] == "f6071829-5555-4666-9777-88889999aaaa"
    assert row["error_code"] == "200"  # a Number attribute, kept as its text
    assert row["error_message"] == "invoice service rejected INV-204"
    assert row["body"] == '{"invoiceId":"INV-204","amount":19.5}'
    assert row["receipt_handle"] == "AQEBdlq0example0handle0one=="
    assert row["envelope"] == "sqs"
    assert row["envelope_id"] == "e5f60718-4444-4555-8666-777788889999"
    assert row["dead_letter_source_arn"] is None
    attrs = jsonio.loads(row["message_attributes"])
    assert attrs["ErrorCode"]["DataType"] == "Number"
    assert attrs["RequestID"]["StringValue"] == "f6071829-5555-4666-9777-88889999aaaa"


def test_redrive_dlq_receive_message(ingest):
    store, counts = ingest(ingest.fixture("dlq/redrive_dlq_receive_message.json"))
    assert counts == {**ONLY_DEAD_LETTERS, "dead_letters": 1}
    row = one(store)
    assert row["kind"] == "source_dlq"
    assert row["message_id"] == "07182930-6666-4777-a888-9999aaaabbbb"
    assert row["body"] == "resize image photos/2024/cat.jpg"
    assert row["dead_letter_source_arn"] == f"arn:aws:sqs:eu-west-1:{ACCT}:image-jobs"
    assert row["approximate_receive_count"] == 6
    assert row["sent_timestamp"] == ms(1717000000123)
    assert row["request_id"] is None and row["error_code"] is None and row["error_message"] is None
    assert jsonio.loads(row["attributes"])["SenderId"] == "AIDAEXAMPLESENDER0001"
    assert jsonio.loads(row["message_attributes"]) == {
        "Priority": {"StringValue": "high", "DataType": "String"}
    }


def test_fifo_redrive_dlq_in_lambda_event_shape(ingest):
    store, counts = ingest(ingest.fixture("dlq/fifo_redrive_lambda_event.json"))
    assert counts == {**ONLY_DEAD_LETTERS, "dead_letters": 1}
    row = one(store)
    assert row["kind"] == "source_dlq"
    assert row["message_id"] == "18293a4b-7777-4888-b999-aaaabbbbcccc"
    assert row["queue"] == f"arn:aws:sqs:eu-west-1:{ACCT}:ledger-ops-dlq.fifo"
    assert row["message_group_id"] == "account-AC-1"
    assert row["message_deduplication_id"] == "18293a4b-7777-4888-b999-aaaabbbbcccc"
    assert row["approximate_receive_count"] == 3
    assert row["sent_timestamp"] == ms(1717100000456)
    assert row["dead_letter_source_arn"] == f"arn:aws:sqs:eu-west-1:{ACCT}:ledger-ops.fifo"
    assert row["receipt_handle"] == "AQEBdlq0example0handle0three=="
    assert jsonio.loads(row["body"]) == {"account": "AC-1", "op": "debit", "cents": 500}


def test_lambda_event_message_attributes_kept_as_json(ingest):
    store, _ = ingest(ingest.fixture("dlq/fifo_redrive_lambda_event.json"))
    got = store.query(
        "SELECT json_extract_string(message_attributes, '$.Team.stringValue') AS team, "
        "json_extract_string(message_attributes, '$.Team.dataType') AS team_type, "
        "json_extract_string(message_attributes, '$.Attempt.stringValue') AS attempt, "
        "json_extract_string(message_attributes, '$.Attempt.dataType') AS attempt_type FROM dead_letters"
    )
    assert got == [{"team": "payments", "team_type": "String", "attempt": "2", "attempt_type": "Number"}]


def test_sns_dlq_delivered_through_sqs(ingest):
    store, counts = ingest(ingest.fixture("dlq/sns_dlq_via_sqs_receive_message.json"))
    assert counts == {**ONLY_DEAD_LETTERS, "dead_letters": 1}
    row = one(store)
    assert row["kind"] == "async_dlq"
    # SNS MessageAttributes use {"Type", "Value"}
    assert row["request_id"] == "4b5c6d7e-aaaa-4bbb-acc0-ddddeeeeffff"
    assert row["error_code"] == "200"
    assert row["error_message"] == "empty upload u-981"
    # message_id is the SNS MessageId, body the SNS Message (the original event), queue the topic
    assert row["message_id"] == "3a4b5c6d-9999-4aaa-9bbb-ccccddddeeee"
    body = jsonio.loads(row["body"])
    assert body["Records"][0]["Sns"]["Message"] == '{"upload":"u-981","size":0}'
    assert row["queue"] == f"arn:aws:sns:eu-west-1:{ACCT}:upload-handler-dlq"
    assert row["sent_timestamp"] == dt.datetime(2024, 6, 12, 10, 3, 4, 567000)


def test_sns_dlq_notification_on_its_own(ingest, write):
    notification = {
        "Type": "Notification",
        "MessageId": "7e8f9001-dddd-4eee-8fff-000011112222",
        "TopicArn": f"arn:aws:sns:eu-west-1:{ACCT}:mailer-dlq",
        "Message": '{"to": "ops@example.com"}',
        "Timestamp": "2024-06-13T00:00:01.001Z",
        "SignatureVersion": "1",
        "Signature": "c2ln",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-2222.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
        "MessageAttributes": {
            "RequestID": {"Type": "String", "Value": "8f900112-eeee-4fff-9000-111122223333"},
            "ErrorCode": {"Type": "String", "Value": "200"},
            "ErrorMessage": {"Type": "String", "Value": "SMTP refused"},
        },
    }
    store, counts = ingest(write("sns-dlq.json", jsonio.dumps(notification)))
    assert counts == {**ONLY_DEAD_LETTERS, "dead_letters": 1}
    row = one(store)
    assert row["kind"] == "async_dlq"
    assert row["envelope"] == "sns"
    assert row["message_id"] == "7e8f9001-dddd-4eee-8fff-000011112222"
    assert row["request_id"] == "8f900112-eeee-4fff-9000-111122223333"
    assert row["error_code"] == "200"
    assert row["error_message"] == "SMTP refused"
    assert row["body"] == '{"to": "ops@example.com"}'
    assert row["queue"] == f"arn:aws:sns:eu-west-1:{ACCT}:mailer-dlq"
    assert row["sent_timestamp"] == dt.datetime(2024, 6, 13, 0, 0, 1, 1000)


@pytest.mark.parametrize("error_code_type", ["Number", "String"])
def test_lambda_dlq_in_sqs_lambda_event_shape(ingest, write, error_code_type):
    event = {
        "Records": [
            {
                "messageId": "90011223-ffff-4000-9111-222233334444",
                "receiptHandle": "AQEBdlq0example0handle0six==",
                "body": '{"job": 17}',
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1718000000999",
                    "SenderId": "AROAEXAMPLEROLEID9999:awslambda_1_20240610",
                    "ApproximateFirstReceiveTimestamp": "1718000001000",
                },
                "messageAttributes": {
                    "RequestID": {
                        "stringValue": "a0112233-0000-4111-a222-333344445555",
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": "String",
                    },
                    "ErrorCode": {
                        "stringValue": "200",
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": error_code_type,
                    },
                    "ErrorMessage": {
                        "stringValue": "job 17 exploded",
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": "String",
                    },
                },
                "md5OfMessageAttributes": "5555666677778888999900001111aaaa",
                "md5OfBody": "aaaa1111000099998888777766665555",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:eu-west-1:{ACCT}:jobs-fn-dlq",
                "awsRegion": "eu-west-1",
            }
        ]
    }
    store, counts = ingest(write("dlq-event.json", jsonio.dumps(event)))
    assert counts == {**ONLY_DEAD_LETTERS, "dead_letters": 1}
    row = one(store)
    assert row["kind"] == "async_dlq"
    assert row["request_id"] == "a0112233-0000-4111-a222-333344445555"
    assert row["error_code"] == "200"
    assert row["error_message"] == "job 17 exploded"
    assert row["queue"] == f"arn:aws:sqs:eu-west-1:{ACCT}:jobs-fn-dlq"
    assert row["sent_timestamp"] == ms(1718000000999)
    assert row["approximate_receive_count"] == 1


def test_plain_message_without_markers_is_unknown(ingest):
    store, counts = ingest(ingest.fixture("dlq/plain_message_no_markers.json"))
    assert counts == {**ONLY_DEAD_LETTERS, "dead_letters": 1}
    row = one(store)
    assert row["kind"] == "unknown"
    assert row["message_id"] == "6d7e8f90-cccc-4ddd-8eee-ffff00001111"
    assert row["body"] == "nightly report for 2024-06-12"
    assert row["request_id"] is None
    assert row["dead_letter_source_arn"] is None
    assert row["attributes"] is None or jsonio.loads(row["attributes"]) == {}


def test_dead_letter_and_destination_record_in_one_receive_output(ingest, write):
    dlq = jsonio.loads(ingest.fixture("dlq/redrive_dlq_receive_message.json").read_bytes())["Messages"][0]
    dest = jsonio.loads(ingest.fixture("destinations/sqs_receive_message.json").read_bytes())["Messages"][0]
    store, counts = ingest(write("mixed.json", jsonio.dumps({"Messages": [dlq, dest]})))
    assert counts["dead_letters"] == 1
    assert counts["destination_records"] == 1
    assert store.query("SELECT kind FROM dead_letters") == [{"kind": "source_dlq"}]
    assert store.query("SELECT condition FROM destination_records") == [{"condition": "RetriesExhausted"}]


def test_queue_named_by_the_user_fills_receive_message_output(ingest, write):
    """receive-message output does not name its queue; `--queue` does, for dead letters and for
    the SQS carrier of destination records."""
    record = {
        "version": "1.0",
        "timestamp": "2026-11-22T11:00:00.000Z",
        "requestContext": {
            "requestId": "0c5e1f2a-9b8d-4c7e-a6f5-4e3d2c1b0a99",
            "functionArn": f"arn:aws:lambda:eu-west-1:{ACCT}:function:notify:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"orderId": 9001},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "down", "errorType": "Exception"},
    }
    output = {
        "Messages": [
            {"MessageId": "11111111-2222-4333-8444-555555555555", "ReceiptHandle": "AQEBx1", "Body": "plain"},
            {
                "MessageId": "66666666-7777-4888-9999-000000000000",
                "ReceiptHandle": "AQEBx2",
                "Body": jsonio.dumps(record),
            },
        ]
    }
    queue = f"arn:aws:sqs:eu-west-1:{ACCT}:notify-dlq"
    store, counts = ingest(write("dlq.json", jsonio.dumps(output)), queue=queue)
    assert counts["dead_letters"] == 1 and counts["destination_records"] == 1
    assert one(store)["queue"] == queue
    [dr] = store.query("SELECT envelope_source FROM destination_records")
    assert dr["envelope_source"] == queue


def test_single_sqs_event_record_without_the_records_wrapper(ingest, write):
    """One record of an SQS Lambda event, saved on its own (as a DLQ consumer might log it)."""
    record = {
        "messageId": "3e2d1c0b-a987-4654-b321-0fedcba98765",
        "receiptHandle": "AQEBrecord1",
        "body": '{"orderId": 4747}',
        "attributes": {
            "ApproximateReceiveCount": "3",
            "SentTimestamp": "1763800000123",
            "DeadLetterQueueSourceArn": f"arn:aws:sqs:eu-west-1:{ACCT}:orders",
        },
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:eu-west-1:{ACCT}:orders-dlq",
        "awsRegion": "eu-west-1",
    }
    store, counts = ingest(write("one-record.json", jsonio.dumps(record)))
    assert counts == {**ONLY_DEAD_LETTERS, "dead_letters": 1}
    row = one(store)
    assert (row["message_id"], row["kind"], row["approximate_receive_count"]) == (
        "3e2d1c0b-a987-4654-b321-0fedcba98765",
        "source_dlq",
        3,
    )
    assert row["queue"] == f"arn:aws:sqs:eu-west-1:{ACCT}:orders-dlq"
    assert row["sent_timestamp"] == ms(1763800000123)
