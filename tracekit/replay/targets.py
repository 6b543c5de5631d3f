"""Senders: deliver replayed copies to each target type in batches, with a result per copy.

`outgoing()` builds the copy to send: the payload (mangled for a poison copy), the replay marker and
the message attributes in the API's shape. A `Sender` cuts copies into batches within its API's count
and byte limits and sends one batch per call, returning one `SendResult` per copy:

- ok, with the id the target returned (MessageId, EventId, SequenceNumber, request id);
- failed and retryable (throttled, internal error): the engine resends it;
- failed and final, with a reason (the API refused it, or it could not be sent at all).

A whole call that is throttled makes every copy of the batch retryable; any other failure of the whole
call raises one AwsError line (the run stops: the target, permissions or endpoint are wrong).

Decisions a reader should know:

- The marker (`Plan.replay_id`) goes in the message attribute `plan.marker["attribute"]` for SQS and
  SNS, and in the top-level payload field `plan.marker["payload_field"]` for Lambda, EventBridge
  (the detail), Kinesis data and DynamoDB synthetic batches. An empty name turns that marker off.
  Adding a payload field re-serialises the JSON compactly (same values and key order); SQS and SNS
  bodies are sent byte for byte.
- A copy that cannot carry its marker is refused, never sent unmarked: a payload that is not a JSON
  object where the marker is a payload field, and an SQS/SNS message that already has 10 message
  attributes where the marker is an attribute (SQS allows 10; SNS takes more, but silently discards a
  message with over 10 bound for a raw-delivery SQS subscription). The reason says to turn the marker
  off in the plan to send such copies unmarked (at the risk of replay loops).
- Order. Copies leave in the order given, and a batch call keeps its order; but when one copy of a
  batch fails retryably and a later copy of the same FIFO group (or Kinesis partition key) in that
  batch succeeds, the resent copy arrives after it. The result says which failed; it cannot be undone.
- Sizes. AWS raised its limits in 2025-26 (SQS, Lambda async and EventBridge to 1 MiB; Kinesis
  records to 10 MiB where the stream allows it) but not everywhere at once nor for every resource.
  Batches are cut at the old limits every region accepts (256 KiB per SQS, SNS and EventBridge call,
  5 MiB per Kinesis call); a copy bigger than that goes in a call of its own, where the API decides:
  if it refuses the lone copy for its size, that copy fails with the API's reason and the run goes on.
  Copies over the largest size the API accepts at all are refused with the sizes, before any call.
- Binary message attributes are base64 text in plans, decoded to bytes for the API. Attributes of
  every data type are kept, custom types (Number.float, String.x, Binary.gif) included.
- FIFO (queue URL or topic ARN ending in .fifo): MessageGroupId and the plan's deduplication id. Extra
  copies (duplicate, corrupt faults) get the deduplication id `<id>-<copy>` so the target delivers
  them instead of deduplicating them (what the fault is for).
- Lambda Invoke has no batch call: batches of one. DynamoDB entries are invoked synchronously
  (RequestResponse) with the synthetic `{"Records": [...]}` payload; a function error fails the copy.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from tracekit import jsonio
from tracekit.aws import THROTTLING_CODES, Aws, error_code, sized_batches
from tracekit.errors import TracekitError
from tracekit.replay.faults import corrupt
from tracekit.replay.model import Entry, Plan, Target, TargetType

KIB = 1024
MAX_ATTRIBUTES = 10  # SQS and SNS: message attributes per message
#: Errors after which the same call may succeed: the engine resends the copy.
RETRYABLE_CODES = THROTTLING_CODES | {
    "InternalError",
    "InternalFailure",
    "InternalException",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ServiceException",
    "KMSThrottlingException",
}
#: Whole-call errors that, for a lone copy over the batch limit, mean "this copy is too big here".
SIZE_CODES = {
    "InvalidParameterValue",  # SQS: message too long
    "BatchRequestTooLong",
    "AWS.SimpleQueueService.BatchRequestTooLong",
    "ValidationException",  # EventBridge: entry too large
    "InvalidArgumentException",  # Kinesis: record over the stream's maximum record size
    "InvalidParameter",  # SNS
    "RequestEntityTooLarge",
    "RequestEntityTooLargeException",
}
REFUSED = "Refused"  # error_code of a copy tracekit did not send (the reason says why)


@dataclass
class Outgoing:
    """One copy to send."""

    #: The journal key: `<entry_id>#<copy>`.
    key: str
    entry: Entry
    #: The final payload: marker applied where it goes in the payload, poison applied.
    body: str | bytes
    #: The final SQS / SNS message attributes in boto3's shape (marker included, binary as bytes).
    attributes: dict[str, Any] = field(default_factory=dict)
    #: The copy number (0: the original; extra copies get their own FIFO deduplication id).
    copy: int = 0
    #: Why this copy cannot be sent (it is failed without a call), or None.
    refused: str | None = None


@dataclass
class SendResult:
    """What became of one copy in one call."""

    key: str
    ok: bool
    error_code: str | None = None
    #: Throttling or an internal error: the engine resends the copy.
    retryable: bool = False
    #: MessageId / EventId / SequenceNumber / request id the target returned.
    provider_id: str | None = None
    #: The error message, or why tracekit refused the copy.
    reason: str | None = None


class Sender(Protocol):
    """Delivers copies to one target."""

    target: Target

    def batches(self, items: list[Outgoing]) -> Iterator[list[Outgoing]]:
        """Consecutive runs of `items` within the API's count and byte limits."""
        ...

    def send(self, batch: list[Outgoing]) -> list[SendResult]:
        """One API call for the batch (none when every copy is refused); a result per copy, in order."""
        ...


# ---------------------------------------------------------------------------------------- outgoing


def outgoing(
    plan: Plan, entry: Entry, payload: str | bytes, *, copy: int = 0, corrupt_field: str | None = None
) -> Outgoing:
    """The copy number `copy` of `entry` carrying `payload` (str: text, or base64 text when the entry's
    payload_encoding is "base64"; bytes: raw data), marked and, for a poison copy, corrupted."""
    item = Outgoing(key=f"{entry.entry_id}#{copy}", entry=entry, body=payload, copy=copy)
    try:
        item.body = _payload(entry, payload, corrupt_field)
        item.attributes = {name: to_api_attribute(value) for name, value in entry.attributes.items()}
    except (TracekitError, ValueError) as exc:
        item.refused = str(exc)
        return item
    replay_id = plan.replay_id(entry)
    if entry.target.type in ATTRIBUTE_TARGETS:
        _mark_attributes(item, plan.marker.get("attribute") or "", replay_id)
    else:
        _mark_payload(item, plan.marker.get("payload_field") or "", replay_id)
    return item


ATTRIBUTE_TARGETS = {TargetType.SQS, TargetType.SNS}
TEXT_TARGETS = {TargetType.SQS, TargetType.SNS, TargetType.EVENTBRIDGE}


def _payload(entry: Entry, payload: str | bytes, corrupt_field: str | None) -> str | bytes:
    if isinstance(payload, str) and entry.payload_encoding == "base64":
        payload = base64.b64decode(payload, validate=True)
    if isinstance(payload, bytes) and entry.target.type in TEXT_TARGETS:
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"binary payload: {entry.target.type.value} takes text only") from None
    if corrupt_field is not None:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        return corrupt(text, corrupt_field)
    return payload


def _mark_attributes(item: Outgoing, name: str, replay_id: str) -> None:
    if not name:
        return
    if name not in item.attributes and len(item.attributes) >= MAX_ATTRIBUTES:
        item.refused = (
            f"the message already has {len(item.attributes)} message attributes, the limit: no room "
            f'for the {name} marker (set the plan\'s marker attribute to "" to send it unmarked)'
        )
        return
    item.attributes[name] = {"DataType": "String", "StringValue": replay_id}


def _mark_payload(item: Outgoing, name: str, replay_id: str) -> None:
    if not name:
        return
    try:
        body = jsonio.loads(item.body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        item.refused = (
            f"payload is not a JSON object: cannot carry the replay marker {name} "
            '(set the plan\'s marker payload_field to "" to send it unmarked)'
        )
        return
    body[name] = replay_id
    item.body = jsonio.dumps(body)


def to_api_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A message attribute from a plan (API shape, Lambda event camelCase or SNS Type/Value) in boto3's
    shape; binary values (base64 text in plans) become bytes."""
    keys = {k.lower(): v for k, v in value.items()}
    data_type = str(keys.get("datatype") or keys.get("type") or "")
    if not data_type:
        raise ValueError(f"message attribute without a data type: {sorted(value)}")
    if data_type.split(".")[0] == "Binary":
        raw = keys.get("binaryvalue", keys.get("value"))
        data = raw if isinstance(raw, bytes) else base64.b64decode(str(raw or ""), validate=True)
        return {"DataType": data_type, "BinaryValue": data}
    return {"DataType": data_type, "StringValue": str(keys.get("stringvalue", keys.get("value")) or "")}


def _body_bytes(item: Outgoing) -> bytes:
    return item.body if isinstance(item.body, bytes) else item.body.encode("utf-8")


def _body_text(item: Outgoing) -> str:
    return item.body.decode("utf-8") if isinstance(item.body, bytes) else item.body


def attributes_size(attributes: dict[str, Any]) -> int:
    """Bytes SQS and SNS count for message attributes: name, data type and value of each."""
    total = 0
    for name, value in attributes.items():
        data = value.get("BinaryValue")
        data = data if isinstance(data, bytes) else str(value.get("StringValue", "")).encode()
        total += len(name.encode()) + len(str(value["DataType"]).encode()) + len(data)
    return total


# ----------------------------------------------------------------------------------------- senders


class BatchSender:
    """What every sender shares: batching within limits, refusing copies, mapping whole-call errors."""

    service = ""
    operation = ""
    max_count = 1
    #: What every region accepts per call (a bigger copy goes alone).
    max_batch_bytes = 256 * KIB
    #: The most the API accepts per copy anywhere (a bigger copy is refused without a call).
    max_item_bytes = 256 * KIB

    def __init__(self, target: Target, aws: Aws) -> None:
        self.target = target
        self.aws = aws

    @property
    def resource(self) -> str:
        return self.target.url or self.target.arn or "?"

    def size(self, item: Outgoing) -> int:
        """Bytes this copy counts against the API's limits."""
        return len(_body_bytes(item))

    def check(self, item: Outgoing) -> str | None:
        """Why this copy cannot be sent, or None."""
        if item.refused:
            return item.refused
        size = self.size(item)
        if size > self.max_item_bytes:
            limit = self.max_item_bytes
            text = f"{limit // KIB // KIB} MiB" if limit % (KIB * KIB) == 0 else f"{limit // KIB} KiB"
            return f"{size} bytes, over the {text} limit of {self.service} {self.operation}"
        return None

    def batches(self, items: list[Outgoing]) -> Iterator[list[Outgoing]]:
        # A refused copy costs no bytes: it is never sent.
        return sized_batches(items, self.max_count, self.max_batch_bytes, self._counted_size)

    def _counted_size(self, item: Outgoing) -> int:
        return 0 if self.check(item) else self.size(item)

    def send(self, batch: list[Outgoing]) -> list[SendResult]:
        results: dict[str, SendResult] = {}
        ready: list[Outgoing] = []
        for item in batch:
            reason = self.check(item)
            if reason:
                results[item.key] = SendResult(item.key, ok=False, error_code=REFUSED, reason=reason)
            else:
                ready.append(item)
        if ready:
            try:
                results.update({r.key: r for r in self.call(ready)})
            except ClientError as exc:
                code = error_code(exc.response)
                reason = str(exc.response.get("Error", {}).get("Message") or code)
                if self._refused_for_size(ready, code):
                    results[ready[0].key] = SendResult(ready[0].key, False, code, reason=reason)
                    return [results[item.key] for item in batch]
                if code not in RETRYABLE_CODES:
                    raise self.aws.error(self.service, self.operation, self.resource, exc) from None
                for item in ready:
                    results[item.key] = SendResult(item.key, False, code, retryable=True, reason=reason)
            except BotoCoreError as exc:
                raise self.aws.error(self.service, self.operation, self.resource, exc) from None
        return [results[item.key] for item in batch]

    def call(self, ready: list[Outgoing]) -> list[SendResult]:
        """One API call for copies that passed `check`."""
        raise NotImplementedError

    def _refused_for_size(self, ready: list[Outgoing], code: str) -> bool:
        """Whether a whole-call error is the API refusing one copy sent alone for its size."""
        return len(ready) == 1 and self.size(ready[0]) > self.max_batch_bytes and code in SIZE_CODES


def _failed(
    key: str, code: str | None, reason: str | None, *, sender_fault: bool | None = None
) -> SendResult:
    code = code or "Failed"
    retryable = code in RETRYABLE_CODES if sender_fault is None else not sender_fault
    return SendResult(key, ok=False, error_code=code, retryable=retryable, reason=reason)


def _dedup_id(item: Outgoing) -> str | None:
    base = item.entry.message_deduplication_id
    if item.copy == 0:
        return base
    # An extra copy must not be deduplicated away: give it its own id (at most 128 characters).
    base = base or hashlib.sha256(_body_bytes(item)).hexdigest()
    suffix = f"-{item.copy}"
    return base[: 128 - len(suffix)] + suffix


def _fifo_fields(item: Outgoing) -> dict[str, str]:
    fields = {}
    if item.entry.message_group_id:
        fields["MessageGroupId"] = item.entry.message_group_id
    dedup = _dedup_id(item)
    if dedup:
        fields["MessageDeduplicationId"] = dedup
    return fields


class SqsSender(BatchSender):
    """SendMessageBatch: 10 messages and 256 KiB (bodies and attributes) per call, 1 MiB per message."""

    service, operation, max_count = "sqs", "SendMessageBatch", 10
    max_item_bytes = KIB * KIB

    @property
    def fifo(self) -> bool:
        return (self.target.url or self.target.arn or "").endswith(".fifo")

    def size(self, item: Outgoing) -> int:
        return len(_body_bytes(item)) + attributes_size(item.attributes)

    def call(self, ready: list[Outgoing]) -> list[SendResult]:
        entries = []
        for i, item in enumerate(ready):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": _body_text(item)}
            if item.attributes:
                entry["MessageAttributes"] = item.attributes
            if self.fifo:
                entry.update(_fifo_fields(item))
            entries.append(entry)
        response = self.aws.client("sqs").send_message_batch(QueueUrl=self.queue_url(), Entries=entries)
        return _batch_results(ready, response)

    def queue_url(self) -> str:
        """The target's queue URL, looked up once when the plan names the queue by ARN."""
        if not self.target.url:
            arn = (self.target.arn or "").split(":")
            if len(arn) != 6:
                raise self.aws.error_class(
                    "cannot replay: no SQS queue URL or ARN in the plan", self.resource
                )
            found = self.aws.call(
                "sqs", "GetQueueUrl", self.resource, QueueName=arn[5], QueueOwnerAWSAccountId=arn[4]
            )
            self.target.url = str(found["QueueUrl"])
        return self.target.url


def _batch_results(ready: list[Outgoing], response: dict[str, Any]) -> list[SendResult]:
    """Results from a Successful/Failed batch response (SQS SendMessageBatch, SNS PublishBatch)."""
    results = []
    for ok in response.get("Successful", []):
        item = ready[int(ok["Id"])]
        results.append(SendResult(item.key, ok=True, provider_id=ok.get("MessageId")))
    for bad in response.get("Failed", []):
        item = ready[int(bad["Id"])]
        code, fault = bad.get("Code"), bool(bad.get("SenderFault"))
        results.append(_failed(item.key, code, bad.get("Message"), sender_fault=fault))
    return results


class SnsSender(BatchSender):
    """PublishBatch: 10 messages and 256 KiB (messages and attributes) per call."""

    service, operation, max_count = "sns", "PublishBatch", 10

    def size(self, item: Outgoing) -> int:
        return len(_body_bytes(item)) + attributes_size(item.attributes)

    def call(self, ready: list[Outgoing]) -> list[SendResult]:
        entries = []
        fifo = (self.target.arn or "").endswith(".fifo")
        for i, item in enumerate(ready):
            entry: dict[str, Any] = {"Id": str(i), "Message": _body_text(item)}
            if item.attributes:
                entry["MessageAttributes"] = item.attributes
            if fifo:
                entry.update(_fifo_fields(item))
            entries.append(entry)
        client = self.aws.client("sns")
        response = client.publish_batch(TopicArn=self.target.arn, PublishBatchRequestEntries=entries)
        return _batch_results(ready, response)


class EventBridgeSender(BatchSender):
    """PutEvents: 10 entries and 256 KiB per call, 1 MiB per entry; the payload is the detail."""

    service, operation, max_count = "events", "PutEvents", 10
    max_item_bytes = KIB * KIB
    default_source = "tracekit.replay"
    default_detail_type = "tracekit replay"

    def fields(self, item: Outgoing) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "Source": item.entry.event_source or self.default_source,
            "DetailType": item.entry.detail_type or self.default_detail_type,
            "Detail": _body_text(item),
        }
        if self.target.arn:
            entry["EventBusName"] = self.target.arn  # PutEvents takes the bus name or ARN
        return entry

    def size(self, item: Outgoing) -> int:
        # The PutEvents entry size: source, detail type and detail (no Time, no Resources).
        entry = self.fields(item)
        return sum(len(str(entry[k]).encode()) for k in ("Source", "DetailType", "Detail"))

    def call(self, ready: list[Outgoing]) -> list[SendResult]:
        response = self.aws.client("events").put_events(Entries=[self.fields(item) for item in ready])
        return _positional_results(ready, response.get("Entries", []), "EventId")


class KinesisSender(BatchSender):
    """PutRecords: 500 records and 5 MiB per call; records up to 10 MiB (data and partition key) where
    the stream's maximum record size allows (1 MiB by default: the API refuses bigger ones by name)."""

    service, operation, max_count = "kinesis", "PutRecords", 500
    max_batch_bytes = 5 * KIB * KIB
    max_item_bytes = 10 * KIB * KIB

    def size(self, item: Outgoing) -> int:
        return len(_body_bytes(item)) + len((item.entry.partition_key or "").encode())

    def check(self, item: Outgoing) -> str | None:
        if not item.refused and not item.entry.partition_key:
            return "no partition key in the plan entry (Kinesis needs the original's)"
        return super().check(item)

    def call(self, ready: list[Outgoing]) -> list[SendResult]:
        records = [{"Data": _body_bytes(i), "PartitionKey": i.entry.partition_key} for i in ready]
        response = self.aws.client("kinesis").put_records(StreamARN=self.target.arn, Records=records)
        # ProvisionedThroughputExceededException and InternalFailure are retryable; KMS errors are not.
        return _positional_results(ready, response.get("Records", []), "SequenceNumber")


def _positional_results(
    ready: list[Outgoing], answers: list[dict[str, Any]], id_key: str
) -> list[SendResult]:
    """Results from a response that answers each entry in request order (PutEvents, PutRecords)."""
    results = []
    for item, answer in zip(ready, answers, strict=True):
        if answer.get(id_key) and not answer.get("ErrorCode"):
            results.append(SendResult(item.key, ok=True, provider_id=answer[id_key]))
        else:
            results.append(_failed(item.key, answer.get("ErrorCode"), answer.get("ErrorMessage")))
    return results


class LambdaSender(BatchSender):
    """Invoke, InvocationType Event, to the original qualifier: one copy per call, 1 MiB payload."""

    service, operation, max_count = "lambda", "Invoke", 1
    max_item_bytes = KIB * KIB
    invocation_type = "Event"

    def params(self, item: Outgoing) -> dict[str, Any]:
        params: dict[str, Any] = {
            "FunctionName": self.target.arn,
            "InvocationType": self.invocation_type,
            "Payload": _body_bytes(item),
        }
        # An ARN that ends in its qualifier (function:name:alias) must not get a second one.
        if self.target.qualifier and len((self.target.arn or "").split(":")) <= 7:
            params["Qualifier"] = self.target.qualifier
        return params

    def call(self, ready: list[Outgoing]) -> list[SendResult]:
        item = ready[0]
        try:
            response = self.aws.client("lambda").invoke(**self.params(item))
        except ClientError as exc:
            if error_code(exc.response) in ENTRY_CODES:  # this payload, not the call, is the problem
                message = exc.response.get("Error", {}).get("Message")
                return [_failed(item.key, error_code(exc.response), message)]
            raise
        request_id = response.get("ResponseMetadata", {}).get("RequestId")
        if response.get("FunctionError"):
            return [_failed(item.key, "FunctionError", _function_error(response))]
        return [SendResult(item.key, ok=True, provider_id=request_id)]


#: Invoke errors caused by one payload: that copy fails, the run goes on.
ENTRY_CODES = {
    "RequestEntityTooLargeException",
    "InvalidRequestContentException",
    "UnsupportedMediaTypeException",
}


def _function_error(response: dict[str, Any]) -> str:
    payload = response.get("Payload")
    text = payload.read().decode("utf-8", "replace") if payload is not None else ""
    try:
        body = jsonio.loads(text)
    except ValueError:
        return f"{response['FunctionError']}: {text[:200]}"
    if isinstance(body, dict):
        return f"{body.get('errorType', response['FunctionError'])}: {body.get('errorMessage', '')}"
    return f"{response['FunctionError']}: {text[:200]}"


class DynamoDbInvokeSender(LambdaSender):
    """A synthetic DynamoDB Streams batch invoked synchronously (RequestResponse), 6 MiB payload."""

    invocation_type = "RequestResponse"
    max_item_bytes = 6 * KIB * KIB
    max_batch_bytes = 6 * KIB * KIB


SENDERS: dict[TargetType, type[BatchSender]] = {
    TargetType.SQS: SqsSender,
    TargetType.SNS: SnsSender,
    TargetType.EVENTBRIDGE: EventBridgeSender,
    TargetType.KINESIS: KinesisSender,
    TargetType.LAMBDA: LambdaSender,
    TargetType.DYNAMODB_INVOKE: DynamoDbInvokeSender,
}


def sender_for(target: Target, aws: Aws) -> Sender:
    """The sender for `target`'s type."""
    return SENDERS[target.type](target, aws)
