"""The recorder: wrap a Lambda handler so each invocation logs what it received and how it ended.

Standard library only: this file is shipped alone in a Lambda layer (`tracekit recorder layer`) and
must import nothing else. It runs on Python 3.9 and later.

Use it as a decorator, or wrap a handler::

    from tracekit.recorder import recorded

    @recorded
    def handler(event, context): ...

Per invocation the wrapper writes two lines to stdout, each one compact JSON object followed by a
newline. In Lambda's text log format each line is one log event; in the JSON log format it is a
JSON application record, and its top-level `requestId` ties it to the invocation.

The "in" line, before the handler runs::

    {"tracekit":"recorder","v":1,"phase":"in","requestId":"…","source":"aws:sqs",
     "sourceArn":"arn:aws:sqs:…:orders","count":2,"items":[{"id":"…","receiveCount":1},…]}

- `source`: `aws:sqs`, `aws:kinesis`, `aws:dynamodb`, `aws:s3`, `aws:sns`, `aws:events`
  (EventBridge) or `unknown` (any other payload).
- `sourceArn`: the queue, stream or topic ARN, once (from the first record); absent when the
  event carries none. `shard`: the Kinesis shard id, taken from the first record's eventID.
- `count`: how many items the event holds. `items` lists at most MAX_ITEMS of them, in order;
  `omitted` (present only when non-zero) says how many were left off the line.
- An item's `id`, when the source has one, is the id `truth.json` uses for the event: SQS
  messageId, Kinesis eventID (`shardId-…:sequenceNumber`), DynamoDB eventID, SNS MessageId,
  EventBridge id. Per source:
  - SQS: `id`, `receiveCount` (ApproximateReceiveCount, a number), and when present `group`
    (MessageGroupId), `seq` (FIFO SequenceNumber), `dlqSourceArn` (DeadLetterQueueSourceArn).
  - Kinesis: `id`, `seq` (sequenceNumber). DynamoDB: `id`, `seq` (dynamodb.SequenceNumber).
  - S3: `bucket`, `key` (URL-encoded, as the event carries it), `versionId` when versioned,
    `sequencer`. SNS: `id`; the topic ARN is `sourceArn`. EventBridge: `id`, `source`,
    `detailType`.
  - unknown: one item `{"digest":"sha256:<hex>"}`, the SHA-256 of the event's canonical JSON
    (keys sorted, separators `,` and `:`, ASCII escapes, UTF-8).

The "out" line, after the handler returns or raises an `Exception`::

    {"tracekit":"recorder","v":1,"phase":"out","requestId":"…","result":"success",
     "batchItemFailures":["…"]}

- `result`: `success` (the handler returned) or `error` (it raised); `errorType` is then the
  exception's class name, as the Python runtime reports it.
- `batchItemFailures` is present when the handler returned an object with that key: the
  `itemIdentifier` values in order, `null` for an entry that has none (Lambda then fails the
  whole batch); a value that is not a list is recorded as `[null]`, and a `null` value as `null`.
  At most MAX_ITEMS are listed, then `omittedFailures` says how many more there were.

The wrapper never changes what the handler returns or raises, and never raises itself: a failure
while recording is swallowed and that line is lost. An exception that is not an `Exception`
(SystemExit, a runtime kill) passes through with no "out" line, as the invocation never finished.
A recorded handler called while another recorded handler is running writes no lines, so an
invocation has one pair even when the wrapper is applied twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from pathlib import Path

FORMAT_VERSION = 1
MAX_ITEMS = 1000
LAYER_MEMBER = "python/tracekit/recorder.py"

Handler = TypeVar("Handler", bound=Callable[..., Any])
Item = dict[str, Any]

_depth = [0]  # how many recorded handlers are running right now


def recorded(handler: Handler) -> Handler:
    """Wrap `handler(event, context)` so every invocation writes an "in" and an "out" line."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _depth[0]:
            return handler(*args, **kwargs)
        _depth[0] += 1
        try:
            event, context = _arguments(args, kwargs)
            request_id = _request_id(context)
            _write(_in_line, request_id, event)
            try:
                response = handler(*args, **kwargs)
            except Exception as exc:
                _write(_error_line, request_id, exc)
                raise
            _write(_out_line, request_id, response)
            return response
        finally:
            _depth[0] -= 1

    return cast(Handler, wrapper)


# ---------------------------------------------------------------------------- writing


def _write(build: Callable[[str | None, Any], dict[str, Any]], request_id: str | None, value: Any) -> None:
    """Build one line and write it to stdout; any failure loses the line, never the invocation."""
    try:
        line = {"tracekit": "recorder", "v": FORMAT_VERSION, **build(request_id, value)}
        sys.stdout.write(_compact(line) + "\n")
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - the recorder must never disturb the handler
        pass


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(event, context) however the handler was called; the runtime passes them by position."""
    event = args[0] if args else kwargs.get("event")
    context = args[1] if len(args) > 1 else kwargs.get("context")
    return event, context


def _request_id(context: Any) -> str | None:
    try:
        request_id = getattr(context, "aws_request_id", None)
    except Exception:  # noqa: BLE001 - a context whose attribute access fails has no request id
        return None
    return request_id if isinstance(request_id, str) else None


def _in_line(request_id: str | None, event: Any) -> dict[str, Any]:
    source, source_arn, count, items = _identify(event)
    line: dict[str, Any] = {"phase": "in", "requestId": request_id, "source": source}
    if source_arn is not None:
        line["sourceArn"] = source_arn
    if source == "aws:kinesis" and items and isinstance(items[0].get("id"), str):
        line["shard"] = items[0]["id"].partition(":")[0]
    line["count"] = count
    line["items"] = items
    if count > len(items):
        line["omitted"] = count - len(items)
    return line


def _out_line(request_id: str | None, response: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"phase": "out", "requestId": request_id, "result": "success"}
    if isinstance(response, Mapping) and "batchItemFailures" in response:
        failures = _failure_ids(response["batchItemFailures"])
        if failures is not None and len(failures) > MAX_ITEMS:
            line["omittedFailures"] = len(failures) - MAX_ITEMS
            failures = failures[:MAX_ITEMS]
        line["batchItemFailures"] = failures
    return line


def _error_line(request_id: str | None, exc: Any) -> dict[str, Any]:
    return {"phase": "out", "requestId": request_id, "result": "error", "errorType": type(exc).__name__}


def _failure_ids(failures: Any) -> list[Any] | None:
    """The itemIdentifier of each entry; None marks an entry Lambda rejects as malformed."""
    if failures is None:
        return None
    if not isinstance(failures, list):
        return [None]
    return [
        _scalar(entry.get("itemIdentifier")) if isinstance(entry, Mapping) else None for entry in failures
    ]


def _scalar(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


# ---------------------------------------------------------------------------- item identity


def _identify(event: Any) -> tuple[str, str | None, int, list[Item]]:
    """The event's source, its source ARN, how many items it holds and the first MAX_ITEMS identities."""
    if isinstance(event, Mapping):
        records = event.get("Records")
        if isinstance(records, list) and records and isinstance(records[0], Mapping):
            first = records[0]
            source = first.get("eventSource") or first.get("EventSource")
            if isinstance(source, str) and source in _RECORD_IDENTITY:
                identify = _RECORD_IDENTITY[source]
                items = [identify(_mapping(record)) for record in records[:MAX_ITEMS]]
                return source, _source_arn(first), len(records), items
        if "detail-type" in event and "source" in event and "id" in event:
            item = {"id": event.get("id"), "source": event.get("source"), "detailType": event["detail-type"]}
            return "aws:events", None, 1, [item]
    return "unknown", None, 1, [{"digest": _digest(event)}]


def _source_arn(record: Mapping[str, Any]) -> str | None:
    arn = record.get("eventSourceARN")
    if arn is None:
        sns = record.get("Sns")
        arn = sns.get("TopicArn") if isinstance(sns, Mapping) else None
    return arn if isinstance(arn, str) else None


def _sqs(record: Mapping[str, Any]) -> Item:
    attributes = _mapping(record.get("attributes"))
    item: Item = {
        "id": record.get("messageId"),
        "receiveCount": _number(attributes.get("ApproximateReceiveCount")),
    }
    for name, field in (("MessageGroupId", "group"), ("SequenceNumber", "seq")):
        if name in attributes:
            item[field] = attributes[name]
    if "DeadLetterQueueSourceArn" in attributes:
        item["dlqSourceArn"] = attributes["DeadLetterQueueSourceArn"]
    return item


def _kinesis(record: Mapping[str, Any]) -> Item:
    return {"id": record.get("eventID"), "seq": _mapping(record.get("kinesis")).get("sequenceNumber")}


def _dynamodb(record: Mapping[str, Any]) -> Item:
    return {"id": record.get("eventID"), "seq": _mapping(record.get("dynamodb")).get("SequenceNumber")}


def _s3(record: Mapping[str, Any]) -> Item:
    s3 = _mapping(record.get("s3"))
    obj = _mapping(s3.get("object"))
    item: Item = {"bucket": _mapping(s3.get("bucket")).get("name"), "key": obj.get("key")}
    if obj.get("versionId"):
        item["versionId"] = obj["versionId"]
    item["sequencer"] = obj.get("sequencer")
    return item


def _sns(record: Mapping[str, Any]) -> Item:
    return {"id": _mapping(record.get("Sns")).get("MessageId")}


_RECORD_IDENTITY: dict[str, Callable[[Mapping[str, Any]], Item]] = {
    "aws:sqs": _sqs,
    "aws:kinesis": _kinesis,
    "aws:dynamodb": _dynamodb,
    "aws:s3": _s3,
    "aws:sns": _sns,
}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _digest(event: Any) -> str:
    """sha256 of the canonical JSON of an opaque payload (of the bytes themselves for bytes)."""
    if isinstance(event, (bytes, bytearray)):
        data = bytes(event)
    else:
        data = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------- the layer


def build_layer(out: Path) -> int:
    """Write a Lambda layer zip holding only this module at LAYER_MEMBER; return its size in bytes.

    `python/` is on a layer function's sys.path, and `tracekit` has no __init__.py there: it is a
    namespace package, so `from tracekit.recorder import recorded` works in the function and a full
    tracekit in the deployment package, which comes first on sys.path, still wins.
    The zip has fixed timestamps and permissions, so rebuilding it gives the same bytes.
    """
    # Imported here: only the CLI builds layers, and a function's cold start should not pay for them.
    import zipfile
    from pathlib import Path

    member = zipfile.ZipInfo(LAYER_MEMBER, date_time=(1980, 1, 1, 0, 0, 0))
    member.compress_type = zipfile.ZIP_DEFLATED
    member.create_system = 3  # Unix, so that external_attr is read as file permissions
    member.external_attr = 0o100644 << 16
    partial = out.with_name(out.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w") as layer:
            layer.writestr(member, Path(__file__).read_bytes(), compresslevel=9)
        partial.replace(out)  # a failed build never leaves a half-written zip under the real name
    finally:
        partial.unlink(missing_ok=True)
    return out.stat().st_size
