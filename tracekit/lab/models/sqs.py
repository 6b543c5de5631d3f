"""SQS event source mapping: Lambda's pollers reading one source queue (standard or FIFO) and invoking the
function synchronously with each batch, with visibility-timeout redelivery, the queue's redrive DLQ,
partial batch responses and at-least-once duplicate receives.

Documented behaviour modelled here (lambda-semantics.md §3):
- A receive hides its messages for the queue's visibility timeout and gives each a new receipt handle and
  ApproximateReceiveCount + 1. A batch that succeeds is deleted when the invocation ends; a batch whose
  invocation fails or times out reappears one visibility timeout after it was received, all of it.
- Which fault applies: each message's fault is its EventSpec's `fault_for(its receive count)`; the batch
  invocation gets the first non-ok fault among its messages (in batch order), so one poison message
  fails every batch it is in. Duplicate copies bring no fault of their own.
- ReportBatchItemFailures: only the messages named by `itemIdentifier` (= messageId) reappear. An invalid
  response fails the whole batch: not a JSON object, `batchItemFailures` not a list, an entry without
  `itemIdentifier` (bad key name), an empty or null one, or one naming a message not in the batch.
- Redrive: once a message has been received `max_receive_count` times, SQS moves it to the DLQ on its next
  receive instead of returning it: same MessageId, body, message attributes and AWSTraceHeader, SentTimestamp
  and ApproximateReceiveCount carried on, `DeadLetterQueueSourceArn` added; in a FIFO DLQ the deduplication
  id becomes the original message id.
- Throttling also consumes receives: a throttled batch stays received; Lambda retries the invoke with
  backoff while the visibility timeout lasts, then the messages reappear with their receive spent. An
  injected `throttle` fault throttles every invoke of that receive.
- FIFO: messages of a group are received in order, and a group is blocked while any of its messages is in
  flight, so after a failure the rest of the group waits until the failed message reappears or leaves.
  A handler is told to report the failed message and everything after it (AWS's FIFO rule); what Lambda
  does with later messages of the group a handler left unreported is a setting.
- Standard queues: best-effort order, so a redelivered message can land in a different batch.
- Retention: a message older than `message_retention_s` is deleted by SQS (event outcome `dropped`).

Truth: the event id is the messageId. Each invocation is a batch (`batch_id` minted per invoke, also in
`world.batches` with the queue name as `shard_id` and the first and last SequenceNumber, or messageId for a
standard queue); every message in it gets an attempt whose outcome is the invocation's, except that a
message a successful invocation sent back (reported, or the whole response invalid) counts as `error`.
What AWS leaves undocumented is a setting (see SETTINGS, UNVERIFIED).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import heapq
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tracekit.lab.models.batch_response import reported_failures
from tracekit.lab.runtime import AttemptResult, LambdaFunction
from tracekit.lab.scenario import OK, EventSpec, Fault, FunctionSpec, Scenario, ScenarioError
from tracekit.lab.world import (
    TruthAttempt,
    TruthBatch,
    TruthEvent,
    World,
    json_text,
    md5_hex,
    reached_function,
)

SETTINGS: dict[str, Any] = {
    "queue": None,  # default: "<function>-queue" (".fifo" added for a FIFO queue)
    "fifo": False,  # also implied by a queue name ending in .fifo
    "visibility_timeout_s": 30,
    "message_retention_s": 345_600,  # SQS default, 4 days
    "max_receive_count": None,  # the redrive policy; None = no redrive
    "dlq": None,  # the redrive DLQ's queue name
    "batch_size": 10,
    "maximum_batching_window_s": 0,
    "report_batch_item_failures": False,
    "concurrent_batches": 5,  # batches the pollers keep in flight at once
    "best_effort_order": True,  # standard queues: receive visible messages in a seeded random order
    "duplicate_rate": 0.0,  # share of messages received once more without any error
    # UNVERIFIED: when a duplicate receive comes, and whether it counts as a receive of the message.
    "duplicate_delay_s": 1.0,  # after the message's first receive
    # next: the copy is one more receive | same: the copy shows the count of the receive it copies
    "duplicate_receive_count": "next",
    # UNVERIFIED: with ReportBatchItemFailures on a FIFO queue, what happens to later messages of a failed
    # message's group that the response left out: deleted as the response says, or returned with it.
    "fifo_unreported_after_failure": "delete",  # delete | return
    # UNVERIFIED: the backoff of invoke retries after a throttle within one receive.
    "throttle_backoff_initial_s": 1.0,
    "throttle_backoff_max_s": 20.0,
    "aws_trace_header": False,  # producers send messages with an AWSTraceHeader
    "stop_after_s": None,  # disable the mapping this long after the scenario start; None = drain the queue
}

PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024  # synchronous invocation payload limit
FIFO_MAX_BATCH = 10
STANDARD_MAX_BATCH = 10_000
IAM_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(eq=False)
class _Message:
    """A message of the source queue (or a duplicate copy of one, `copy_of` set)."""

    spec: EventSpec
    message_id: str
    body: str
    sent_ms: int
    truth: TruthEvent
    group: str | None
    attributes: dict[str, str]  # fixed at send: SenderId, AWSTraceHeader, FIFO ids
    message_attributes: dict[str, dict[str, Any]]  # SendMessage casing (DataType / StringValue)
    wants_copy: bool = False
    copy_of: _Message | None = None
    seq: int = 0  # arrival order
    receive_count: int = 0
    first_receive_ms: int | None = None
    receipts: int = 0  # receives so far of this object: tells a stale reappearance from a live one
    state: str = "pending"  # pending | visible | in_flight | deleted | dead_lettered | expired
    failed_before: bool = False


@dataclass(eq=False)
class _Receive:
    """One receive of a batch: its messages, the records the function gets, throttle retries so far."""

    messages: list[_Message]
    records: list[dict[str, Any]]
    received_ms: float
    backoff_s: float = 0.0


@dataclass
class _Settled:
    """What Lambda does with a batch after an invocation: who returns to the queue, the batch outcome."""

    returned: set[_Message] = field(default_factory=set)
    outcome: str = "success"


class SqsModel:
    """An SQS event source mapping in front of one function."""

    source = "sqs"

    def __init__(self, scenario: Scenario, world: World, function: LambdaFunction) -> None:
        _check_destinations(scenario)
        self.scenario = scenario
        self.world = world
        self.function = function
        self.settings = settings(scenario.settings, scenario.function)
        s = self.settings
        self.fifo: bool = s["fifo"]
        self.queue_name: str = s["queue"]
        self.queue_arn = world.arn("sqs", self.queue_name)
        self.dlq_name: str | None = s["dlq"]
        if self.dlq_name:
            world.queue(self.dlq_name)  # exists (and is published) even when nothing is dead-lettered
        self.visibility_ms = float(s["visibility_timeout_s"]) * 1000
        self.sender_id = "AIDA" + "".join(world.ids.rng.choice(IAM_ID_ALPHABET) for _ in range(17))
        self._sequence = _SequenceNumbers(world)
        self._dlq_sequence = _SequenceNumbers(world)
        self._stop_ms = (
            None if s["stop_after_s"] is None else scenario.start_ms + float(s["stop_after_s"]) * 1000
        )
        self._arrivals = 0
        self._available: list[tuple[float, int, _Message]] = []  # standard queue + all copies
        self._pushes = 0  # tie-breaker of `_available`
        self._groups: dict[str, deque[_Message]] = {}  # FIFO: the group's messages in order
        self._ready_groups: list[tuple[int, str]] = []  # FIFO: (head seq, group) whose head is visible
        self._busy = 0
        self._poll_pending = False
        self._window_closes: float | None = None

    def dead_letter_queues(self) -> set[str]:
        return {self.dlq_name} if self.dlq_name else set()

    def submit(self, spec: EventSpec, arrival: float) -> None:
        """A producer sends one message at `arrival` (SendMessage); the pollers pick it up from then on."""
        if self.fifo and spec.key is None:
            raise ScenarioError(
                "bad event", str(self.scenario.path), "a FIFO queue needs a message group: set `key`"
            )
        message_id = self.world.ids.uuid()
        truth = self.world.truth_event(message_id, self.source, self.scenario.function.name)
        body = spec.payload if isinstance(spec.payload, str) else json_text(spec.payload)
        attributes = {"SenderId": self.sender_id}
        if self.settings["aws_trace_header"]:
            attributes["AWSTraceHeader"] = (
                f"Root={self.world.ids.trace_id(arrival)};Parent={self.world.ids.hex(16)};Sampled=1"
            )
        message = _Message(
            spec=spec,
            message_id=message_id,
            body=body,
            sent_ms=int(arrival),
            truth=truth,
            group=spec.key if self.fifo else None,
            attributes=attributes,
            message_attributes=_api_attributes(spec.message_attributes, self.scenario),
            wants_copy=spec.duplicate or self._draw(self.settings["duplicate_rate"]),
        )
        self.world.clock.at(arrival, lambda: self._arrive(message))

    def finish(self) -> None:
        """Messages still in the queue when the run ends keep the outcome `in_flight`."""

    def _draw(self, rate: float) -> bool:
        # Only draw when there is a chance, so a run without duplicates keeps its random sequence.
        return rate > 0 and self.world.rng.random() < rate

    # ------------------------------------------------------------------ the queue

    def _arrive(self, message: _Message) -> None:
        self._arrivals += 1
        message.seq = self._arrivals
        if self.fifo:
            message.attributes["MessageGroupId"] = str(message.group)
            message.attributes["MessageDeduplicationId"] = self.world.ids.uuid()
            message.attributes["SequenceNumber"] = self._sequence.next()
            self._groups.setdefault(str(message.group), deque()).append(message)
        self._make_visible(message)

    def _make_visible(self, message: _Message) -> None:
        message.state = "visible"
        if message.copy_of is not None or not self.fifo:
            shuffled = self.settings["best_effort_order"] and not self.fifo
            order = self.world.rng.random() if shuffled else float(message.seq)
            self._pushes += 1
            heapq.heappush(self._available, (order, self._pushes, message))
        else:
            self._push_ready(str(message.group))
        self._request_poll()

    def _push_ready(self, group: str) -> None:
        messages = self._groups.get(group)
        if messages and messages[0].state == "visible":
            heapq.heappush(self._ready_groups, (messages[0].seq, group))

    def _reappear(self, messages: list[_Message], receipts: list[int]) -> None:
        """The visibility timeout of a receive ran out: its messages still in flight are visible again."""
        for message, receipt in zip(messages, receipts, strict=True):
            if message.state == "in_flight" and message.receipts == receipt and message.copy_of is None:
                self._make_visible(message)

    def _remove(self, message: _Message, state: str) -> None:
        """The message leaves the queue (deleted, dead-lettered, expired)."""
        if message.state in ("deleted", "dead_lettered", "expired"):
            return  # deleted twice: a receive that outlived its visibility timeout
        message.state = state
        if self.fifo and message.copy_of is None:
            group = self._groups[str(message.group)]
            group.remove(message)
            if not group:
                del self._groups[str(message.group)]
            else:
                self._push_ready(str(message.group))

    # ------------------------------------------------------------------ polling

    def _request_poll(self) -> None:
        if not self._poll_pending:
            self._poll_pending = True
            self.world.clock.at(self.world.now, self._poll)

    def _poll(self) -> None:
        """Free pollers receive batches until the queue has nothing receivable for them."""
        self._poll_pending = False
        if self._stopped():
            return
        while self._busy < self.settings["concurrent_batches"]:
            batch = self._receive_batch()
            if not batch:
                return
            self._start(batch)

    def _stopped(self) -> bool:
        return self._stop_ms is not None and self.world.now >= self._stop_ms

    def _receive_batch(self) -> list[_Message]:
        if not self._window_ready():
            return []
        batch: list[_Message] = []
        size = 0
        if self.fifo:
            size = self._take_groups(batch)
        while self._available and len(batch) < self.settings["batch_size"]:
            _, _, message = self._available[0]
            if batch and size + len(message.body) > PAYLOAD_LIMIT_BYTES:
                break
            heapq.heappop(self._available)
            if message.state == "visible" and self._receivable(message):
                self._take(message, batch)
                size += len(message.body)
        self._window_closes = None
        return batch

    @staticmethod
    def _take(message: _Message, batch: list[_Message]) -> None:
        message.state = "in_flight"  # from now on no other receive (or group entry) can return it
        batch.append(message)

    def _window_ready(self) -> bool:
        """With a batching window, wait for a full batch or for the window to close."""
        window_s = float(self.settings["maximum_batching_window_s"])
        if window_s <= 0 or not self._available or len(self._available) >= self.settings["batch_size"]:
            return True
        now = self.world.now
        if self._window_closes is None:
            self._window_closes = now + window_s * 1000
            self.world.clock.at(self._window_closes, self._request_poll)
        return now >= self._window_closes

    def _take_groups(self, batch: list[_Message]) -> int:
        """FIFO: as many messages of the oldest receivable group as fit, in order, then the next group."""
        size = 0
        limit = self.settings["batch_size"]
        while self._ready_groups and len(batch) < limit:
            seq, group = heapq.heappop(self._ready_groups)
            messages = self._groups.get(group)
            if not messages or messages[0].seq != seq or messages[0].state != "visible":
                continue  # a stale entry: the head changed or is in flight
            for message in list(messages):
                if len(batch) >= limit or message.state != "visible":
                    break
                if batch and size + len(message.body) > PAYLOAD_LIMIT_BYTES:
                    self._push_ready(group)
                    return size
                if self._receivable(message):
                    self._take(message, batch)
                    size += len(message.body)
        return size

    def _receivable(self, message: _Message) -> bool:
        """False when SQS deletes the message for its age or moves it to the DLQ instead of returning it."""
        if message.copy_of is not None:
            return True
        if self.world.now - message.sent_ms >= float(self.settings["message_retention_s"]) * 1000:
            self._remove(message, "expired")
            if message.truth.outcome == "in_flight":
                message.truth.outcome = "dropped"
            return False
        limit = self.settings["max_receive_count"]
        if limit is not None and message.receive_count >= int(limit):
            self._dead_letter(message)
            return False
        return True

    # ------------------------------------------------------------------ one receive

    def _start(self, batch: list[_Message]) -> None:
        now = self.world.now
        self._busy += 1
        records = [self._receive(message, now) for message in batch]
        receipts = [message.receipts for message in batch]
        self.world.clock.at(now + self.visibility_ms, lambda: self._reappear(batch, receipts))
        self._invoke(_Receive(batch, records, now))

    def _receive(self, message: _Message, now: float) -> dict[str, Any]:
        """Hide the message for the visibility timeout and return its record as the function gets it."""
        original = message.copy_of
        if original is None:
            message.receive_count += 1
            if message.first_receive_ms is None:
                message.first_receive_ms = int(now)
                if message.wants_copy:
                    self._schedule_copy(message)
        else:
            if self.settings["duplicate_receive_count"] == "next":
                original.receive_count += 1
            message.receive_count = max(original.receive_count, 1)
            message.first_receive_ms = original.first_receive_ms
        message.receipts += 1
        message.state = "in_flight"
        return self._record(message)

    def _record(self, message: _Message) -> dict[str, Any]:
        """The SQS Lambda event record of one received message."""
        attributes = {
            "ApproximateReceiveCount": str(message.receive_count),
            "SentTimestamp": str(message.sent_ms),
        }
        for name in ("SequenceNumber", "MessageGroupId", "SenderId", "MessageDeduplicationId"):
            if name in message.attributes:
                attributes[name] = message.attributes[name]
        attributes["ApproximateFirstReceiveTimestamp"] = str(message.first_receive_ms)
        if "AWSTraceHeader" in message.attributes:
            attributes["AWSTraceHeader"] = message.attributes["AWSTraceHeader"]
        record: dict[str, Any] = {
            "messageId": message.message_id,
            "receiptHandle": self._receipt_handle(),
            "body": message.body,
            "attributes": attributes,
            "messageAttributes": _event_attributes(message.message_attributes),
        }
        if message.message_attributes:
            record["md5OfMessageAttributes"] = md5_of_message_attributes(message.message_attributes)
        record["md5OfBody"] = md5_hex(message.body)
        record["eventSource"] = "aws:sqs"
        record["eventSourceARN"] = self.queue_arn
        record["awsRegion"] = self.world.region
        return record

    def _receipt_handle(self) -> str:
        raw = self.world.ids.rng.getrandbits(8 * 150).to_bytes(150, "big")
        return "AQEB" + base64.b64encode(raw).decode("ascii")

    def _invoke(self, receive: _Receive) -> None:
        """Invoke the function with the batch; throttled invokes are retried within the receive."""
        if self._stopped():
            self.world.clock.at(self.world.now, self._release)
            return
        batch = receive.messages
        fault = _batch_fault(batch)
        event = {"Records": copy.deepcopy(receive.records)}
        result = self.function.invoke(event, fault=fault, items=len(batch))
        if result.outcome == "throttled":
            self._record_truth(batch, result, _Settled(set(batch), "throttled"))
            self._after_throttle(receive, result)
            return
        settled = self._settle(batch, result)
        self._record_truth(batch, result, settled)
        self.world.clock.at(result.end, lambda: self._complete(batch, settled))

    def _after_throttle(self, receive: _Receive, result: AttemptResult) -> None:
        s = self.settings
        receive.backoff_s = min(
            max(receive.backoff_s * 2, float(s["throttle_backoff_initial_s"])),
            float(s["throttle_backoff_max_s"]),
        )
        retry_at = result.end + receive.backoff_s * 1000
        if retry_at < receive.received_ms + self.visibility_ms:
            self.world.clock.at(retry_at, lambda: self._invoke(receive))
        else:
            # The receive is spent: the messages reappear when their visibility timeout runs out.
            self.world.clock.at(result.end, self._release)

    def _settle(self, batch: list[_Message], result: AttemptResult) -> _Settled:
        """Which messages return to the queue after a (non-throttled) invocation."""
        if not result.succeeded:
            return _Settled(set(batch), result.outcome)
        if not self.settings["report_batch_item_failures"]:
            return _Settled()
        reported = reported_failures(result.response, {m.message_id for m in batch})
        if reported is None:
            return _Settled(set(batch), "invalid_response")
        returned = {m for m in batch if m.message_id in reported}
        if self.fifo and self.settings["fifo_unreported_after_failure"] == "return":
            returned |= _rest_of_failed_groups(batch, returned)
        return _Settled(returned, "partial_failure" if returned else "success")

    def _complete(self, batch: list[_Message], settled: _Settled) -> None:
        """The invocation ended: Lambda deletes what succeeded; the rest stays hidden until it reappears."""
        for message in batch:
            if message in settled.returned:
                if message.copy_of is not None:
                    message.state = "deleted"  # a stale copy: the message itself goes on as before
                continue
            self._succeeded(message)
        self._release()

    def _release(self) -> None:
        self._busy -= 1
        self._request_poll()

    # ------------------------------------------------------------------ outcomes

    def _succeeded(self, message: _Message) -> None:
        truth = message.truth
        truth.successes += 1
        if message.copy_of is not None:
            message.state = "deleted"
            return
        self._remove(message, "deleted")
        truth.outcome = "succeeded_after_retry" if message.failed_before else "succeeded"

    def _dead_letter(self, message: _Message) -> None:
        """SQS moves the message to the redrive DLQ as it is, keeping its id, timestamps and receive count."""
        assert self.dlq_name is not None
        attributes = dict(message.attributes)
        attributes["DeadLetterQueueSourceArn"] = self.queue_arn
        if self.fifo:
            attributes["MessageDeduplicationId"] = message.message_id
            attributes["SequenceNumber"] = self._dlq_sequence.next()
        moved = self.world.send(
            self.dlq_name,
            message.body,
            attributes=attributes,
            message_attributes=copy.deepcopy(message.message_attributes),
            message_id=message.message_id,
            sent_ms=message.sent_ms,
        )
        moved.receive_count = message.receive_count
        moved.first_receive_ms = message.first_receive_ms
        self._remove(message, "dead_lettered")
        message.truth.outcome = "dead_lettered"

    def _record_truth(self, batch: list[_Message], result: AttemptResult, settled: _Settled) -> None:
        batch_id = self.world.ids.uuid()
        for message in batch:
            outcome = result.outcome
            if outcome == "success" and message in settled.returned:
                outcome = "error"  # the invocation worked, but this message goes back to the queue
            message.truth.attempts.append(
                TruthAttempt(result.request_id, result.start, result.end, outcome, batch_id)
            )
            if reached_function(outcome):
                message.truth.deliveries += 1
            if outcome not in ("success", "throttled") and message.copy_of is None:
                message.failed_before = True
        key = "SequenceNumber" if self.fifo else None
        first, last = batch[0], batch[-1]
        self.world.batches.append(
            TruthBatch(
                batch_id=batch_id,
                shard_id=self.queue_name,
                first_sequence_number=first.attributes[key] if key else first.message_id,
                last_sequence_number=last.attributes[key] if key else last.message_id,
                size=len(batch),
                parent_batch_id=None,
                request_id=result.request_id,
                outcome=settled.outcome,
            )
        )

    # ------------------------------------------------------------------ duplicates

    def _schedule_copy(self, message: _Message) -> None:
        """An at-least-once duplicate: the same message received once more, without any error."""
        duplicate = _Message(
            spec=message.spec,
            message_id=message.message_id,
            body=message.body,
            sent_ms=message.sent_ms,
            truth=message.truth,
            group=message.group,
            attributes=message.attributes,
            message_attributes=message.message_attributes,
            copy_of=message,
            seq=message.seq,
        )
        at = self.world.now + float(self.settings["duplicate_delay_s"]) * 1000
        self.world.clock.at(at, lambda: self._make_visible(duplicate))


class _SequenceNumbers:
    """A FIFO queue's SequenceNumbers: 20-digit, increasing."""

    def __init__(self, world: World) -> None:
        self.rng = world.ids.rng
        self.value = 18_000_000_000_000_000_000 + self.rng.randrange(10**17)

    def next(self) -> str:
        self.value += self.rng.randrange(10**4, 10**6)
        return str(self.value)


def _batch_fault(batch: list[_Message]) -> Fault:
    """The first non-ok fault of the batch's messages (each at its own receive count)."""
    for message in batch:
        if message.copy_of is None:
            fault = message.spec.fault_for(message.receive_count)
            if fault.kind != "ok":
                return fault
    return OK


def _rest_of_failed_groups(batch: list[_Message], returned: set[_Message]) -> set[_Message]:
    """FIFO: every message of the batch behind a returned message of the same group."""
    failed_groups: set[str | None] = set()
    rest = set()
    for message in batch:
        if message.group in failed_groups:
            rest.add(message)
        elif message in returned:
            failed_groups.add(message.group)
    return rest


# ---------------------------------------------------------------------- message attributes


def _api_attributes(given: dict[str, Any], scenario: Scenario) -> dict[str, dict[str, Any]]:
    """Scenario message attributes in SendMessage casing: a string is a String, a number a Number, or
    a table with DataType and StringValue / BinaryValue (base64)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float | dict):
            raise ScenarioError("bad event", str(scenario.path), f"message attribute {name!r}: {value!r}")
        if isinstance(value, str):
            out[name] = {"StringValue": value, "DataType": "String"}
        elif isinstance(value, int | float):
            out[name] = {"StringValue": str(value), "DataType": "Number"}
        else:
            data_type = value.get("DataType") or value.get("dataType")
            binary = value.get("BinaryValue") or value.get("binaryValue")
            text = value.get("StringValue") or value.get("stringValue")
            if not data_type or (binary is None) == (text is None):
                raise ScenarioError(
                    "bad event",
                    str(scenario.path),
                    f"message attribute {name!r} needs DataType and one of StringValue / BinaryValue",
                )
            key = "BinaryValue" if binary is not None else "StringValue"
            out[name] = {key: str(binary if binary is not None else text), "DataType": str(data_type)}
    return out


def _event_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Message attributes in the Lambda event's casing."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        entry: dict[str, Any] = {}
        if "BinaryValue" in value:
            entry["binaryValue"] = value["BinaryValue"]
        else:
            entry["stringValue"] = value["StringValue"]
        entry["stringListValues"] = []
        entry["binaryListValues"] = []
        entry["dataType"] = value["DataType"]
        out[name] = entry
    return out


def md5_of_message_attributes(attributes: dict[str, dict[str, Any]]) -> str:
    """SQS's MD5OfMessageAttributes: per attribute in name order, length-prefixed name, data type,
    a transport byte (1 string, 2 binary) and the length-prefixed value."""

    def field_bytes(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        digest.update(field_bytes(name.encode()) + field_bytes(str(value["DataType"]).encode()))
        if "BinaryValue" in value:
            digest.update(b"\x02" + field_bytes(base64.b64decode(value["BinaryValue"])))
        else:
            digest.update(b"\x01" + field_bytes(str(value["StringValue"]).encode()))
    return digest.hexdigest()


# ---------------------------------------------------------------------- settings


def _check_destinations(scenario: Scenario) -> None:
    """SQS event source mappings have no destinations, and the function DLQ is not used for them."""
    if scenario.on_success or scenario.on_failure:
        raise ValueError("an SQS event source mapping has no on-success / on-failure destination")
    if scenario.dlq:
        raise ValueError(
            "the function DLQ is not used for SQS event sources: set [source] dlq and max_receive_count "
            "(the source queue's redrive policy)"
        )


def settings(given: dict[str, Any], function: FunctionSpec) -> dict[str, Any]:
    """The model's settings: documented defaults overridden by the scenario's [source] table, checked
    against the limits SQS and CreateEventSourceMapping enforce."""
    unknown = set(given) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown sqs setting {sorted(unknown)[0]!r}")
    s = {**SETTINGS, **given}
    name = s["queue"] or f"{function.name}-queue"
    s["fifo"] = bool(s["fifo"]) or name.endswith(".fifo")
    if s["fifo"] and not s["queue"]:
        name += ".fifo"
    if s["fifo"] != name.endswith(".fifo"):
        raise ValueError(f"a FIFO queue's name must end in .fifo, a standard queue's must not: {name!r}")
    s["queue"] = name
    _check_queue(s, function)
    _check_mapping(s)
    return s


def _check_queue(s: dict[str, Any], function: FunctionSpec) -> None:
    if not 0 <= float(s["visibility_timeout_s"]) <= 43_200:
        raise ValueError("visibility_timeout_s must be 0-43200")
    if float(s["visibility_timeout_s"]) < function.timeout_s:
        raise ValueError(
            f"queue visibility timeout ({s['visibility_timeout_s']} s) is less than the function timeout "
            f"({function.timeout_s} s): CreateEventSourceMapping refuses this"
        )
    if not 60 <= float(s["message_retention_s"]) <= 1_209_600:
        raise ValueError("message_retention_s must be 60-1209600")
    if (s["max_receive_count"] is None) != (s["dlq"] is None):
        raise ValueError("a redrive policy needs both max_receive_count and dlq")
    if s["max_receive_count"] is not None:
        if not 1 <= int(s["max_receive_count"]) <= 1000:
            raise ValueError("max_receive_count must be 1-1000")
        if str(s["dlq"]).endswith(".fifo") != s["fifo"]:
            raise ValueError("the DLQ of a FIFO queue must be FIFO, and of a standard queue standard")


def _check_mapping(s: dict[str, Any]) -> None:
    window = float(s["maximum_batching_window_s"])
    if not 0 <= window <= 300:
        raise ValueError("maximum_batching_window_s must be 0-300")
    if s["fifo"] and window:
        raise ValueError("a batching window is not supported for FIFO queues")
    limit = FIFO_MAX_BATCH if s["fifo"] else STANDARD_MAX_BATCH
    if not 1 <= int(s["batch_size"]) <= limit:
        raise ValueError(f"batch_size must be 1-{limit} for this queue")
    if int(s["batch_size"]) > 10 and window < 1:
        raise ValueError("batch_size above 10 needs maximum_batching_window_s of at least 1")
    if int(s["concurrent_batches"]) < 1:
        raise ValueError("concurrent_batches must be at least 1")
    if not 0 <= float(s["duplicate_rate"]) <= 1:
        raise ValueError("duplicate_rate must be 0-1")
    if s["duplicate_receive_count"] not in ("next", "same"):
        raise ValueError("duplicate_receive_count must be 'next' or 'same'")
    if s["fifo_unreported_after_failure"] not in ("delete", "return"):
        raise ValueError("fifo_unreported_after_failure must be 'delete' or 'return'")
