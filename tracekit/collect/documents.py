"""JSON inputs: recognise each document by its shape and route what it carries to the right table.

One file may hold one JSON document, NDJSON (one per line), or several documents back to back
(as Firehose writes subscription payloads). Carriers are unwrapped recursively: an SQS message whose
body is an SNS notification whose Message is a destination record ends up as one destination
record with envelope `sns` reached through `sqs/sns`.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from tracekit import jsonio
from tracekit.collect.logs import LogRows, iso_to_ms
from tracekit.collect.records import dead_letter_row, destination_row, is_destination_record
from tracekit.collect.sources import as_text

NOT_ARTIFACT = "not a failure artifact"
NOT_DESTINATION = "not a destination record"
_LOG_EVENT_KEYS = {"logStreamName", "timestamp", "message", "ingestionTime", "eventId", "id", "logGroupName"}
_STREAM_SOURCES = {"aws:kinesis", "aws:dynamodb", "aws:s3", "aws:kafka", "SelfManagedKafka", "aws:mq"}


@dataclass
class Parsed:
    """Everything one input file yielded, per table."""

    source: str
    logs: LogRows = field(default_factory=LogRows)
    destinations: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    queue: str | None = None
    size: int = 0
    #: The file it was read from (`source` is what rows name: the file, or the API call it came from).
    path: Path | None = None
    #: What the queue the messages came from holds (`collect queue --as`): with "destination", a
    #: message that is not a destination record is quarantined instead of becoming a dead letter.
    role: str | None = None

    def logs_table(self, log_group: str | None) -> pa.Table:
        """The log events as Arrow, with their source and the log group to use where none is named."""
        table = self.logs.to_arrow()
        group = log_group or self.logs.group_hint()
        table = table.append_column("source", pa.array([self.source] * table.num_rows, pa.string()))
        return table.append_column("fallback_group", pa.array([group] * table.num_rows, pa.string()))

    def reject(self, position: str, reason: str, raw: Any, *, uid: str | None = None) -> None:
        """Quarantine `raw`; `uid` gives it a content id (else one from the file and position)."""
        text = raw if isinstance(raw, str) else jsonio.dumps(raw)
        row = {"position": position, "reason": reason, "raw": as_text(text.encode())}
        if uid is not None:
            row["uid"] = uid
        self.quarantine.append(row)

    def add_destination(self, row: dict[str, Any], position: str) -> None:
        self.destinations.append({**row, "source": self.source, "position": position})

    def add_dead_letter(self, row: dict[str, Any], position: str) -> None:
        self.dead_letters.append({**row, "source": self.source, "position": position})


def _at(position: str, index: int) -> str:
    return f"{position} record {index}" if position else f"record {index}"


def parse_json_file(text: str, parsed: Parsed) -> None:
    """Parse a JSON file of any of the layouts above and classify every document in it."""
    stripped = text.lstrip("\ufeff")
    try:
        value = jsonio.loads(stripped)
    except ValueError:
        pass
    else:
        classify(value, "", parsed, raw_text=stripped)
        return
    lines = stripped.split("\n")
    first = next((ln for ln in lines if ln.strip()), "")
    if _parses(first):
        _parse_ndjson(lines, parsed)
    else:
        _parse_concatenated(stripped, parsed)


def _parses(line: str) -> bool:
    try:
        jsonio.loads(line)
    except ValueError:
        return False
    return True


def _parse_ndjson(lines: list[str], parsed: Parsed) -> None:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = jsonio.loads(line)
        except ValueError as exc:
            parsed.reject(f"line {lineno}", f"invalid JSON: {exc}", line)
            continue
        classify(value, f"line {lineno}", parsed, raw_text=line.rstrip("\r"))


def _parse_concatenated(text: str, parsed: Parsed) -> None:
    decoder = json.JSONDecoder()
    offset, index = 0, 0
    while True:
        while offset < len(text) and text[offset] in " \t\r\n":
            offset += 1
        if offset >= len(text):
            return
        try:
            value, end = decoder.raw_decode(text, offset)
        except json.JSONDecodeError as exc:
            parsed.reject(f"byte {len(text[: exc.pos].encode())}", f"invalid JSON: {exc.msg}", text[offset:])
            return
        index += 1
        classify(
            value,
            f"record {index}" if index > 1 or end < len(text.rstrip()) else "",
            parsed,
            raw_text=text[offset:end],
        )
        offset = end


def classify(value: Any, position: str, parsed: Parsed, *, raw_text: str | None = None) -> None:
    """Route one JSON value to the table it belongs in, or to quarantine with a reason."""
    if isinstance(value, list):
        for i, item in enumerate(value, start=1):
            classify(item, _at(position, i), parsed)
        return
    if not isinstance(value, dict):
        parsed.reject(
            position or "record 1", "not a JSON object", raw_text if raw_text is not None else value
        )
        return
    for test, handler in _HANDLERS:
        if test(value):
            handler(value, position, parsed, raw_text)
            return
    reason = _non_artifact_reason(value)
    parsed.reject(position or "record 1", reason, raw_text if raw_text is not None else value)


# -- log events ------------------------------------------------------------------------------


def _is_log_event(v: dict[str, Any]) -> bool:
    return (
        isinstance(v.get("message"), str)
        and isinstance(v.get("timestamp"), int)
        and set(v) <= _LOG_EVENT_KEYS
    )


def _is_events_page(v: dict[str, Any]) -> bool:
    return isinstance(v.get("events"), list) and (
        "searchedLogStreams" in v
        or "nextForwardToken" in v
        or "nextToken" in v
        or all(isinstance(e, dict) and "message" in e for e in v["events"])
    )


def _is_lambda_json_log(v: dict[str, Any]) -> bool:
    if isinstance(v.get("type"), str) and "record" in v and "time" in v:
        return True
    has_time = "timestamp" in v or "time" in v
    return has_time and ("level" in v or "log_level" in v or "function_request_id" in v or "requestId" in v)


def _add_event(
    parsed: Parsed,
    event: dict[str, Any],
    position: str,
    *,
    group: str | None = None,
    stream: str | None = None,
) -> None:
    message = event.get("message")
    ts = event.get("timestamp")
    if not isinstance(message, str) or not isinstance(ts, int):
        parsed.reject(position, "log event without a message and a numeric timestamp", event)
        return
    parsed.logs.add(
        message=message,
        position=position,
        ts_ms=ts,
        log_group=group or event.get("logGroupName"),
        log_stream=stream or event.get("logStreamName"),
        ingest_ms=event.get("ingestionTime") if isinstance(event.get("ingestionTime"), int) else None,
        event_id=_id_text(event.get("eventId", event.get("id"))),
    )


def _id_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _handle_log_event(v: dict[str, Any], position: str, parsed: Parsed, raw: str | None) -> None:
    _add_event(parsed, v, position or "record 1")


def _handle_events_page(v: dict[str, Any], position: str, parsed: Parsed, raw: str | None) -> None:
    for i, event in enumerate(v["events"], start=1):
        if isinstance(event, dict):
            _add_event(parsed, event, _at(position, i))
        else:
            parsed.reject(_at(position, i), "log event is not a JSON object", event)


def _handle_subscription(v: dict[str, Any], position: str, parsed: Parsed, raw: str | None) -> None:
    if v.get("messageType") == "CONTROL_MESSAGE":
        return
    events = v.get("logEvents")
    if not isinstance(events, list):
        parsed.reject(position or "record 1", "subscription payload without logEvents", raw or v)
        return
    for i, event in enumerate(events, start=1):
        if isinstance(event, dict):
            _add_event(parsed, event, _at(position, i), group=v.get("logGroup"), stream=v.get("logStream"))
        else:
            parsed.reject(_at(position, i), "log event is not a JSON object", event)


def _handle_awslogs(v: dict[str, Any], position: str, parsed: Parsed, raw: str | None) -> None:
    data = v["awslogs"].get("data") if isinstance(v["awslogs"], dict) else None
    try:
        payload = zlib.decompress(base64.b64decode(str(data), validate=True), wbits=47)
        text = payload.decode("utf-8")
    except (binascii.Error, ValueError, zlib.error, UnicodeDecodeError) as exc:
        parsed.reject(position or "record 1", f"awslogs.data is not base64 gzip JSON: {exc}", raw or v)
        return
    before = len(parsed.quarantine)
    parse_json_file(text, parsed)
    for row in parsed.quarantine[before:]:
        row["position"] = f"{position or 'record 1'} awslogs.data {row['position']}"


def _handle_json_log_line(v: dict[str, Any], position: str, parsed: Parsed, raw: str | None) -> None:
    when = v.get("time") if isinstance(v.get("time"), str) else v.get("timestamp")
    ts = iso_to_ms(when) if isinstance(when, str) else (when if isinstance(when, int) else None)
    parsed.logs.add(
        message=raw if raw is not None else jsonio.dumps(v),
        position=position or "record 1",
        ts_ms=ts,
    )


# -- destination records and dead letters ---------------------------------------------------


def _handle_destination(v: dict[str, Any], position: str, parsed: Parsed, raw: str | None) -> None:
    # A Kafka-topic on-failure destination writes one message per failed record (recordInfo).
    info = v.get("KafkaBatchInfo")
    envelope = "kafka" if isinstance(info, dict) and "recordInfo" in info else "raw"
    envelope_id = None
    if envelope == "raw" and parsed.source.startswith("s3://"):
        # collect s3 read it from a bucket: the carrier is the S3 object, named by its key.
        envelope, envelope_id = "s3", parsed.source.removeprefix("s3://").partition("/")[2] or None
    row = destination_row(v, envelope=envelope, envelope_id=envelope_id)
    parsed.add_destination(row, position or "record 1")


def _is_eventbridge(v: dict[str, Any]) -> bool:
    return "detail-type" in v and "detail" in v


def _handle_eventbridge(
    v: dict[str, Any], position: str, parsed: Parsed, raw: str | None, outer: str | None = None
) -> None:
    if not is_destination_record(v.get("detail")):
        parsed.reject(
            position or "record 1", f"{NOT_ARTIFACT}: EventBridge event '{v.get('detail-type')}'", raw or v
        )
        return
    resources = v.get("resources") or []
    path = f"{outer}/eventbridge" if outer else "eventbridge"
    row = destination_row(
        v["detail"],
        envelope="eventbridge",
        envelope_id=_id_text(v.get("id")),
        envelope_path=path,
        envelope_source=resources[0] if resources else None,
    )
    parsed.add_destination(row, position or "record 1")


def _is_sns_notification(v: dict[str, Any]) -> bool:
    return v.get("Type") == "Notification" and "Message" in v and "MessageId" in v


def _handle_sns(
    v: dict[str, Any],
    position: str,
    parsed: Parsed,
    raw: str | None,
    outer: tuple[str, str | None] | None = None,
) -> None:
    message = v.get("Message")
    inner = _maybe_json(message)
    path = f"{outer[0]}/sns" if outer else "sns"
    if is_destination_record(inner):
        row = destination_row(
            inner,
            envelope="sns",
            envelope_id=_id_text(v.get("MessageId")),
            envelope_path=path,
            envelope_source=v.get("TopicArn"),
        )
        parsed.add_destination(row, position or "record 1")
        return
    if isinstance(inner, dict) and _is_eventbridge(inner) and is_destination_record(inner.get("detail")):
        _handle_eventbridge(inner, position, parsed, None, outer=path)
        return
    envelope, envelope_id = outer if outer else ("sns", _id_text(v.get("MessageId")))
    row = dead_letter_row(
        message_id=_id_text(v.get("MessageId")),
        body=message,
        attributes={},
        message_attributes=v.get("MessageAttributes"),
        queue=v.get("TopicArn"),
        sent_timestamp=v.get("Timestamp"),
        envelope=envelope,
        envelope_id=envelope_id,
    )
    if parsed.role == "destination":
        _reject_not_destination(parsed, row, position or "record 1", raw or v)
        return
    parsed.add_dead_letter(row, position or "record 1")


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return jsonio.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _sqs_message(msg: dict[str, Any], position: str, parsed: Parsed, *, lambda_shape: bool) -> None:
    """One SQS message (receive-message shape or Lambda event record shape)."""
    if lambda_shape:
        message_id, body = msg.get("messageId"), msg.get("body")
        attrs, mattrs = msg.get("attributes"), msg.get("messageAttributes")
        queue, receipt = msg.get("eventSourceARN"), msg.get("receiptHandle")
    else:
        message_id, body = msg.get("MessageId"), msg.get("Body")
        attrs, mattrs = msg.get("Attributes"), msg.get("MessageAttributes")
        # receive-message output does not say which queue it came from; the user may (--queue).
        queue, receipt = parsed.queue, msg.get("ReceiptHandle")
    message_id = _id_text(message_id)
    inner = _maybe_json(body)
    if is_destination_record(inner):
        row = destination_row(inner, envelope="sqs", envelope_id=message_id, envelope_source=queue)
        parsed.add_destination(row, position)
    elif isinstance(inner, dict) and _is_sns_notification(inner):
        _handle_sns(inner, position, parsed, None, outer=("sqs", message_id))
    elif isinstance(inner, dict) and _is_eventbridge(inner) and is_destination_record(inner.get("detail")):
        _handle_eventbridge(inner, position, parsed, None, outer="sqs")
    else:
        row = dead_letter_row(
            message_id=message_id,
            body=body,
            attributes=attrs,
            message_attributes=mattrs,
            queue=queue,
            receipt_handle=receipt,
            envelope="sqs",
            envelope_id=message_id,
        )
        if parsed.role == "destination":
            _reject_not_destination(parsed, row, position, msg)
            return
        parsed.add_dead_letter(row, position)


def _reject_not_destination(parsed: Parsed, row: dict[str, Any], position: str, raw: Any) -> None:
    # The dead letter's content id (queue, message id, body, attributes, never the receipt), so a
    # queue snapshot taken again quarantines the same message once.
    parsed.reject(position, NOT_DESTINATION, raw, uid=row["uid"])


def _is_receive_output(v: dict[str, Any]) -> bool:
    return isinstance(v.get("Messages"), list)


def _handle_receive_output(v: dict[str, Any], position: str, parsed: Parsed, raw: str | None) -> None:
    for i, msg in enumerate(v["Messages"], start=1):
        if isinstance(msg, dict):
            _sqs_message(msg, _at(position, i), parsed, lambda_shape=False)
        else:
            parsed.reject(_at(position, i), "SQS message is not a JSON object", msg)


def _is_bare_sqs_message(v: dict[str, Any]) -> bool:
    return "MessageId" in v and "Body" in v


def _handle_bare_sqs(v: dict[str, Any], position: str, parsed: Parsed, raw: str | None) -> None:
    _sqs_message(v, position or "record 1", parsed, lambda_shape=False)


def _handle_sqs_event_record(v: dict[str, Any], position: str, parsed: Parsed, raw: str | None) -> None:
    _sqs_message(v, position or "record 1", parsed, lambda_shape=True)


def _is_event_records(v: dict[str, Any]) -> bool:
    return isinstance(v.get("Records"), list)


def _handle_event_records(v: dict[str, Any], position: str, parsed: Parsed, raw: str | None) -> None:
    for i, rec in enumerate(v["Records"], start=1):
        where = _at(position, i)
        if not isinstance(rec, dict):
            parsed.reject(where, "event record is not a JSON object", rec)
            continue
        source = rec.get("eventSource") or rec.get("EventSource")
        if source == "aws:sqs" or "messageId" in rec and "body" in rec:
            _sqs_message(rec, where, parsed, lambda_shape=True)
        elif source == "aws:sns" and isinstance(rec.get("Sns"), dict):
            sns = {"Type": "Notification", **rec["Sns"]}
            _handle_sns(sns, where, parsed, None)
        elif source in _STREAM_SOURCES:
            parsed.reject(where, f"{NOT_ARTIFACT}: {source} source event", rec)
        else:
            parsed.reject(where, "unrecognised event record", rec)


def _non_artifact_reason(v: dict[str, Any]) -> str:
    source = v.get("eventSource")
    if isinstance(source, str) and (source in _STREAM_SOURCES or source.startswith("aws:")):
        return f"{NOT_ARTIFACT}: {source} source event"
    if "batchItemFailures" in v:
        return f"{NOT_ARTIFACT}: partial batch response"
    if "StatusCode" in v and (
        "Payload" in v or "LogResult" in v or "FunctionError" in v or "ExecutedVersion" in v
    ):
        return f"{NOT_ARTIFACT}: synchronous Invoke response"
    if "EventSourceArn" in v and ("UUID" in v or "BatchSize" in v):
        return f"{NOT_ARTIFACT}: event source mapping configuration"
    if isinstance(v.get("results"), list) and "statistics" in v:
        return "Logs Insights results are read by live collection, not by ingest"
    if "errorMessage" in v and ("errorType" in v or "trace" in v or "stackTrace" in v):
        return f"{NOT_ARTIFACT}: Invoke error response"
    if {"scenario", "events", "batches"} <= v.keys():
        return f"{NOT_ARTIFACT}: tracekit lab truth.json (ingest the run's logs/, destinations/ and dlq/)"
    return "unrecognised JSON document"


_Handler = Callable[[dict[str, Any], str, Parsed, str | None], None]
_HANDLERS: list[tuple[Callable[[dict[str, Any]], bool], _Handler]] = [
    (is_destination_record, _handle_destination),
    (_is_events_page, _handle_events_page),
    (lambda v: "logEvents" in v and "messageType" in v, _handle_subscription),
    (lambda v: isinstance(v.get("awslogs"), dict), _handle_awslogs),
    (_is_receive_output, _handle_receive_output),
    (_is_event_records, _handle_event_records),
    (_is_sns_notification, _handle_sns),
    (_is_eventbridge, _handle_eventbridge),
    (_is_bare_sqs_message, _handle_bare_sqs),
    (lambda v: "messageId" in v and "body" in v, _handle_sqs_event_record),
    (_is_log_event, _handle_log_event),
    (_is_lambda_json_log, _handle_json_log_line),
]
