"""Destination invocation records and dead-letter messages, flattened into store rows.

A destination record is what Lambda sends to an on-success / on-failure destination (async
invocations and Kinesis, DynamoDB Streams and Kafka event source mappings). A dead letter is an
SQS (or SNS) message sitting in a dead-letter queue: a Lambda function's DLQ (the original event as
body, RequestID / ErrorCode / ErrorMessage attributes) or an SQS queue's redrive DLQ.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from tracekit import jsonio
from tracekit.collect.logs import iso_to_ms
from tracekit.model import DeadLetterKind

_BATCH_INFO_KINDS = {"KinesisBatchInfo": "kinesis", "DDBStreamBatchInfo": "dynamodb"}
_DLQ_ATTRIBUTES = ("RequestID", "ErrorCode", "ErrorMessage")


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def is_destination_record(value: Any) -> bool:
    """True for a Lambda destination invocation record (any condition, any source)."""
    if not isinstance(value, dict):
        return False
    rc = value.get("requestContext")
    return (
        isinstance(rc, dict)
        and ("condition" in rc or "approximateInvokeCount" in rc)
        and ("functionArn" in rc or "requestId" in rc)
    )


def function_name_from_arn(arn: str | None) -> str | None:
    """`arn:aws:lambda:region:account:function:NAME[:qualifier]` → NAME."""
    if not arn:
        return None
    parts = arn.split(":")
    if len(parts) >= 7 and parts[5] == "function":
        return parts[6]
    return None


def to_datetime(value: Any) -> dt.datetime | None:
    """A UTC naive datetime from ISO-8601 text or epoch milliseconds (number or digits)."""
    if value is None or value == "":
        return None
    ms: int | None
    if isinstance(value, int | float) and not isinstance(value, bool):
        ms = int(value)
    elif isinstance(value, str) and value.isdigit():
        ms = int(value)
    elif isinstance(value, str):
        ms = iso_to_ms(value)
    else:
        ms = None
    if ms is None:
        return None
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)


def _json_or_none(record: dict[str, Any], key: str) -> str | None:
    return jsonio.dumps(record[key]) if key in record and record[key] is not None else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _kind_and_batch(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    for key, value in record.items():
        if key in _BATCH_INFO_KINDS and isinstance(value, dict):
            return _BATCH_INFO_KINDS[key], value
        if key.endswith("KafkaBatchInfo") and isinstance(value, dict):
            return "kafka", value
    return "async", {}


def _stream_fields(kind: str, info: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """shard / sequence range / arrival times of a stream or Kafka on-failure record."""
    fields: dict[str, Any] = {
        "batch_size": _int_or_none(info.get("batchSize")),
        "source_arn": info.get("streamArn") or info.get("eventSourceArn"),
        "shard_id": None,
        "start_sequence_number": None,
        "end_sequence_number": None,
        "arrival_first": None,
        "arrival_last": None,
        "partitions": None,
    }
    if kind in ("kinesis", "dynamodb"):
        fields.update(
            shard_id=info.get("shardId"),
            start_sequence_number=_str_or_none(info.get("startSequenceNumber")),
            end_sequence_number=_str_or_none(info.get("endSequenceNumber")),
            arrival_first=to_datetime(info.get("approximateArrivalOfFirstRecord")),
            arrival_last=to_datetime(info.get("approximateArrivalOfLastRecord")),
        )
    elif kind == "kafka":
        fields.update(_kafka_fields(info, record))
    return fields


def _kafka_fields(info: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    # One row per record: a record listing several topic-partitions keeps them all in `partitions`
    # and fills the single-valued columns only when there is exactly one.
    parts = info.get("recordsInfo")
    if isinstance(parts, dict) and parts:
        listed = [
            {
                "partition": name,
                "first_offset": _str_or_none(p.get("firstRecordOffset")),
                "last_offset": _str_or_none(p.get("lastRecordOffset")),
                "first_timestamp": p.get("firstRecordTimestamp"),
                "last_timestamp": p.get("lastRecordTimestamp"),
            }
            for name, p in parts.items()
            if isinstance(p, dict)
        ]
        out: dict[str, Any] = {"partitions": jsonio.dumps(listed)}
        if len(listed) == 1:
            only = listed[0]
            out.update(
                shard_id=only["partition"],
                start_sequence_number=only["first_offset"],
                end_sequence_number=only["last_offset"],
                arrival_first=to_datetime(only["first_timestamp"]),
                arrival_last=to_datetime(only["last_timestamp"]),
            )
        return out
    one = info.get("recordInfo")
    if isinstance(one, dict):
        payload = record.get("payload")
        topics = list(payload.get("records", {})) if isinstance(payload, dict) else []
        offset = _str_or_none(one.get("offset"))
        return {
            "shard_id": topics[0] if len(topics) == 1 else None,
            "start_sequence_number": offset,
            "end_sequence_number": offset,
            "arrival_first": to_datetime(one.get("timestamp")),
            "arrival_last": to_datetime(one.get("timestamp")),
        }
    return {}


def destination_row(
    record: dict[str, Any],
    *,
    envelope: str,
    envelope_id: str | None = None,
    envelope_path: str | None = None,
    envelope_source: str | None = None,
) -> dict[str, Any]:
    """One destination_records row for a destination invocation record."""
    rc = record.get("requestContext") or {}
    resp_value = record.get("responseContext")
    resp: dict[str, Any] = resp_value if isinstance(resp_value, dict) else {}
    kind, info = _kind_and_batch(record)
    raw = jsonio.dumps(record, sort_keys=True)
    row: dict[str, Any] = {
        "record_id": md5(raw),
        "kind": kind,
        "condition": rc.get("condition"),
        "request_id": _str_or_none(rc.get("requestId")),
        "function_arn": rc.get("functionArn"),
        "function_name": function_name_from_arn(rc.get("functionArn")),
        "approximate_invoke_count": _int_or_none(rc.get("approximateInvokeCount")),
        "timestamp": to_datetime(record.get("timestamp")),
        "request_payload": _json_or_none(record, "requestPayload"),
        "response_payload": _json_or_none(record, "responsePayload"),
        "function_error": _str_or_none(resp.get("functionError")),
        "status_code": _int_or_none(resp.get("statusCode")),
        "executed_version": _str_or_none(resp.get("executedVersion")),
        "envelope": envelope,
        "envelope_id": envelope_id,
        "envelope_path": envelope_path or envelope,
        "envelope_source": envelope_source,
        "payload": _json_or_none(record, "payload"),
        "raw": raw,
    }
    row.update(_stream_fields(kind, info, record))
    row["uid"] = row["record_id"]
    return row


def attribute_value(attr: Any) -> str | None:
    """The value of an SQS or SNS message attribute, in any of the shapes AWS writes."""
    if not isinstance(attr, dict):
        return _str_or_none(attr)
    for key in ("StringValue", "stringValue", "Value", "BinaryValue", "binaryValue"):
        if attr.get(key) is not None:
            return str(attr[key])
    return None


def dead_letter_row(
    *,
    message_id: str | None,
    body: Any,
    attributes: dict[str, Any] | None,
    message_attributes: dict[str, Any] | None,
    queue: str | None = None,
    receipt_handle: str | None = None,
    sent_timestamp: Any = None,
    envelope: str = "raw",
    envelope_id: str | None = None,
) -> dict[str, Any]:
    """One dead_letters row for a message found in (or delivered from) a dead-letter queue."""
    attributes = attributes if isinstance(attributes, dict) else {}
    message_attributes = message_attributes if isinstance(message_attributes, dict) else {}
    body_text = body if isinstance(body, str) else (jsonio.dumps(body) if body is not None else None)
    if any(name in message_attributes for name in _DLQ_ATTRIBUTES):
        kind = DeadLetterKind.ASYNC_DLQ.value
    elif attributes.get("DeadLetterQueueSourceArn"):
        kind = DeadLetterKind.SOURCE_DLQ.value
    else:
        kind = DeadLetterKind.UNKNOWN.value
    attrs_json = jsonio.dumps(attributes) if attributes else None
    mattrs_json = jsonio.dumps(message_attributes) if message_attributes else None
    row = {
        "message_id": message_id,
        "queue": queue,
        "body": body_text,
        "kind": kind,
        "request_id": attribute_value(message_attributes.get("RequestID")),
        "error_code": attribute_value(message_attributes.get("ErrorCode")),
        "error_message": attribute_value(message_attributes.get("ErrorMessage")),
        "approximate_receive_count": _int_or_none(attributes.get("ApproximateReceiveCount")),
        "sent_timestamp": to_datetime(
            sent_timestamp if sent_timestamp is not None else attributes.get("SentTimestamp")
        ),
        "dead_letter_source_arn": attributes.get("DeadLetterQueueSourceArn"),
        "message_group_id": attributes.get("MessageGroupId"),
        "message_deduplication_id": attributes.get("MessageDeduplicationId"),
        "attributes": attrs_json,
        "message_attributes": mattrs_json,
        "receipt_handle": receipt_handle,
        "envelope": envelope,
        "envelope_id": envelope_id,
    }
    canonical = jsonio.dumps(message_attributes, sort_keys=True)
    row["uid"] = md5("\x1f".join([queue or "", message_id or "", body_text or "", canonical]))
    return row
