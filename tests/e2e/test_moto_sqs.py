"""Dead letters made by a real (moto) SQS over HTTP, saved as `aws sqs receive-message` prints them, ingested.

The oracle is what SQS (moto) returned, never what tracekit reports.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

CliRun = Callable[..., subprocess.CompletedProcess[str]]


def to_json(value: object, **kwargs: object) -> str:
    # Inputs are written with the standard library, not with tracekit.jsonio, the code under test.
    return json.dumps(value, **kwargs)  # noqa: TID251


def save_like_aws_cli(response: dict[str, Any], path: Path) -> Path:
    """What `aws sqs receive-message --output json` prints: the response without ResponseMetadata."""
    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    path.write_text(to_json(body, indent=4) + "\n")
    return path


def dead_letters(cli: CliRun, store: Path) -> list[dict[str, Any]]:
    result = cli(
        "sql",
        "SELECT message_id, body, kind, request_id, error_code, error_message, approximate_receive_count, "
        "sent_timestamp, dead_letter_source_arn, message_attributes, receipt_handle FROM dead_letters",
        "--store",
        store,
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ingest(cli: CliRun, path: Path, store: Path) -> dict[str, int]:
    result = cli("ingest", path, "--store", store, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def iso_ms(value: str) -> int:
    """Epoch milliseconds of an ISO-8601 UTC time (`…Z` or naive)."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return round(parsed.timestamp() * 1000)


@pytest.fixture
def sqs(aws_endpoint: str) -> Any:
    return boto3.client("sqs")


def test_redrive_dlq_message_from_moto(sqs: Any, tracekit_cli: CliRun, tmp_path: Path) -> None:
    dlq_url = sqs.create_queue(QueueName="orders-queue-dlq")["QueueUrl"]
    dlq_attrs = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]
    dlq_arn = dlq_attrs["QueueArn"]
    source_url = sqs.create_queue(
        QueueName="orders-queue",
        Attributes={
            "RedrivePolicy": to_json({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"}),
            "VisibilityTimeout": "30",
        },
    )["QueueUrl"]

    body = '{"orderId": 4720, "quantity": "two"}'
    attributes = {
        "source": {"DataType": "String", "StringValue": "orders-api"},
        "priority": {"DataType": "Number", "StringValue": "3"},
    }
    sent = sqs.send_message(QueueUrl=source_url, MessageBody=body, MessageAttributes=attributes)

    first = sqs.receive_message(QueueUrl=source_url, MaxNumberOfMessages=1)["Messages"]
    assert [m["MessageId"] for m in first] == [sent["MessageId"]]
    # The consumer failed: it does not delete, and makes the message visible again right away.
    sqs.change_message_visibility(
        QueueUrl=source_url, ReceiptHandle=first[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    # The next receive goes over maxReceiveCount: SQS moves the message to the DLQ instead.
    assert sqs.receive_message(QueueUrl=source_url, MaxNumberOfMessages=1).get("Messages", []) == []

    response = sqs.receive_message(
        QueueUrl=dlq_url, AttributeNames=["All"], MessageAttributeNames=["All"], MaxNumberOfMessages=10
    )
    [moto_msg] = response["Messages"]
    assert moto_msg["MessageId"] == sent["MessageId"]  # redrive keeps the id
    moto_attrs = moto_msg["Attributes"]

    path = save_like_aws_cli(response, tmp_path / "orders-queue-dlq.receive-message.json")
    store = tmp_path / "store"
    counts = ingest(tracekit_cli, path, store)
    assert counts["dead_letters"] == 1
    assert counts["quarantined"] == 0

    [row] = dead_letters(tracekit_cli, store)
    assert row["message_id"] == sent["MessageId"]
    assert row["body"] == body
    assert row["receipt_handle"] == moto_msg["ReceiptHandle"]
    assert row["approximate_receive_count"] == int(moto_attrs["ApproximateReceiveCount"])
    assert iso_ms(row["sent_timestamp"]) == int(moto_attrs["SentTimestamp"])
    stored_attrs = json.loads(row["message_attributes"])
    for name, sent_attr in attributes.items():
        assert stored_attrs[name]["StringValue"] == sent_attr["StringValue"]
        assert stored_attrs[name]["DataType"] == sent_attr["DataType"]
    # Redrive DLQ: tracekit can only tell when SQS says so (DeadLetterQueueSourceArn); moto may not.
    if "DeadLetterQueueSourceArn" in moto_attrs:
        assert row["kind"] == "source_dlq"
        assert row["dead_letter_source_arn"] == moto_attrs["DeadLetterQueueSourceArn"]
    else:
        assert row["kind"] == "unknown"
        assert row["dead_letter_source_arn"] is None
    # A Lambda-DLQ field must not be invented for a plain redriven message.
    assert (row["request_id"], row["error_code"], row["error_message"]) == (None, None, None)


def test_lambda_dlq_message_from_moto(sqs: Any, tracekit_cli: CliRun, tmp_path: Path) -> None:
    queue_url = sqs.create_queue(QueueName="orders-notify-dlq")["QueueUrl"]
    request_id = "3f1d9c2a-7b6e-4e0f-9a8b-5c4d3e2f1a0b"
    error_message = "customer profile C-77 unavailable for order 4711: HTTP 503"
    event = to_json(
        {
            "version": "0",
            "id": "0b7a2c1d-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
            "detail-type": "OrderPlaced",
            "source": "com.example.orders",
            "account": "123456789012",
            "time": "2026-11-22T09:12:03Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": {"orderId": 4711},
        }
    )
    sent = sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=event,
        MessageAttributes={
            "RequestID": {"DataType": "String", "StringValue": request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {"DataType": "String", "StringValue": error_message},
        },
    )
    response = sqs.receive_message(
        QueueUrl=queue_url, AttributeNames=["All"], MessageAttributeNames=["All"], MaxNumberOfMessages=10
    )
    [moto_msg] = response["Messages"]
    assert moto_msg["MessageId"] == sent["MessageId"]

    path = save_like_aws_cli(response, tmp_path / "orders-notify-dlq.receive-message.json")
    store = tmp_path / "store"
    counts = ingest(tracekit_cli, path, store)
    assert counts == {
        "log_events": 0,
        "invocations": 0,
        "destination_records": 0,
        "dead_letters": 1,
        "quarantined": 0,
    }

    [row] = dead_letters(tracekit_cli, store)
    assert row["kind"] == "async_dlq"
    assert row["message_id"] == sent["MessageId"]
    assert row["body"] == event
    assert row["request_id"] == request_id
    assert row["error_code"] == "200"
    assert row["error_message"] == error_message
    assert row["approximate_receive_count"] == int(moto_msg["Attributes"]["ApproximateReceiveCount"])
    assert iso_ms(row["sent_timestamp"]) == int(moto_msg["Attributes"]["SentTimestamp"])
