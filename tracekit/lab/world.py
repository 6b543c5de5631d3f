"""The lab's virtual world: a clock driven by scheduled actions, seeded ids, and everything a run
leaves behind (log events, queue messages, S3 objects, the ground truth).

Models and the runtime only append here; `artifacts` turns it into files and `publish` into API calls.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tracekit import jsonio


def iso_ms(ms: float) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds and a Z, as AWS writes it.

    Truncated to the whole millisecond in integer arithmetic, exactly as log event timestamps are,
    so a time in truth.json equals the timestamp of the log event it describes."""
    whole = int(ms)
    moment = datetime.fromtimestamp(whole // 1000, UTC).replace(microsecond=whole % 1000 * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Clock:
    """Virtual time: actions run in timestamp order; `now` jumps instead of sleeping."""

    def __init__(self, start_ms: int) -> None:
        self.now = float(start_ms)
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, when_ms: float, action: Callable[[], None]) -> None:
        """Run `action` at virtual time `when_ms` (never earlier than now)."""
        self._seq += 1
        heapq.heappush(self._queue, (max(when_ms, self.now), self._seq, action))

    def run(self, until_ms: float | None = None) -> None:
        """Run every scheduled action in order; stop before the first one past `until_ms`."""
        while self._queue:
            if until_ms is not None and self._queue[0][0] > until_ms:
                self.now = until_ms
                return
            when, _, action = heapq.heappop(self._queue)
            self.now = when
            action()


class Ids:
    """Every identifier a run mints, from one seeded generator so runs repeat exactly."""

    def __init__(self, seed: int, namespace: str = "") -> None:
        # The namespace (the scenario's name) keeps two scenarios run with one seed from minting the
        # same request and message ids, which would merge their events in a shared store.
        self.rng = random.Random(f"{seed}:{namespace}" if namespace else seed)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def hex(self, chars: int) -> str:
        return f"{self.rng.getrandbits(chars * 4):0{chars}x}"

    def digits(self, count: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(count))

    def trace_id(self, ms: float) -> str:
        return f"1-{int(ms // 1000):08x}-{self.hex(24)}"


@dataclass
class LogEvent:
    log_group: str
    log_stream: str
    timestamp: int
    message: str


@dataclass
class SqsMessage:
    """A message in a queue, with the system attributes SQS reports on receive."""

    message_id: str
    body: str
    sent_ms: int
    attributes: dict[str, str] = field(default_factory=dict)
    message_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    receive_count: int = 0
    first_receive_ms: int | None = None

    def receive(self, now_ms: float) -> None:
        self.receive_count += 1
        if self.first_receive_ms is None:
            self.first_receive_ms = int(now_ms)

    def system_attributes(self) -> dict[str, str]:
        out = {"SentTimestamp": str(self.sent_ms), **self.attributes}
        out["ApproximateReceiveCount"] = str(self.receive_count)
        out["ApproximateFirstReceiveTimestamp"] = str(self.first_receive_ms or self.sent_ms)
        return out


@dataclass
class Queue:
    """An SQS queue the run writes to (destination, DLQ) or reads from (an SQS event source)."""

    name: str
    arn: str
    url: str
    fifo: bool = False
    messages: list[SqsMessage] = field(default_factory=list)


def reached_function(outcome: str) -> bool:
    """Whether an attempt with this outcome handed the event to the function's code.

    Throttled attempts never reach it and a failed init phase never calls the handler; every other
    attempt is a delivery, whatever the handler then did. The logs show exactly these attempts, so
    truth and the analyzer count deliveries the same way. A retry, for `succeeded_after_retry`, is
    likewise a failed attempt that reached the function or its init: throttles alone don't count.
    """
    return outcome not in ("throttled", "init_error")


@dataclass
class StreamRecord:
    """A record in a Kinesis stream or DynamoDB stream the run reads from (its event source)."""

    stream: str  # stream name
    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes  # the Kinesis data blob / the DynamoDB record's NewImage JSON
    arrival_ms: int


@dataclass
class TruthAttempt:
    request_id: str | None
    start: float
    end: float
    outcome: str
    batch_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "start": iso_ms(self.start),
            "end": iso_ms(self.end),
            "outcome": self.outcome,
            "batch_id": self.batch_id,
        }


@dataclass
class TruthEvent:
    """One input event's lifecycle as it really happened."""

    event_id: str
    source: str
    function: str
    attempts: list[TruthAttempt] = field(default_factory=list)
    deliveries: int = 0
    successes: int = 0
    outcome: str = "in_flight"

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "source": self.source,
            "function": self.function,
            "deliveries": self.deliveries,
            "attempts": [a.to_json() for a in self.attempts],
            "outcome": self.outcome,
            "duplicates": max(self.successes - 1, 0),
        }


@dataclass
class TruthBatch:
    batch_id: str
    shard_id: str
    first_sequence_number: str
    last_sequence_number: str
    size: int
    parent_batch_id: str | None
    request_id: str | None = None
    outcome: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class World:
    """All the state of one run."""

    def __init__(self, start_ms: int, seed: int, region: str, account: str, *, namespace: str = "") -> None:
        self.clock = Clock(start_ms)
        self.ids = Ids(seed, namespace)
        self.rng = random.Random(seed ^ 0x5EED)
        self.region = region
        self.account = account
        self.logs: list[LogEvent] = []
        self.queues: dict[str, Queue] = {}
        self.objects: dict[str, bytes] = {}  # "bucket/key" -> body (S3 destinations)
        self.stream_records: list[StreamRecord] = []  # the source stream, for --publish
        self.events: dict[str, TruthEvent] = {}
        self.batches: list[TruthBatch] = []

    @property
    def now(self) -> float:
        return self.clock.now

    def log(self, group: str, stream: str, timestamp: float, message: str) -> None:
        self.logs.append(LogEvent(group, stream, int(timestamp), message))

    def queue(self, name: str) -> Queue:
        """The queue called `name`, created on first use (FIFO when the name ends in .fifo)."""
        if name not in self.queues:
            self.queues[name] = Queue(
                name=name,
                arn=f"arn:aws:sqs:{self.region}:{self.account}:{name}",
                url=f"https://sqs.{self.region}.amazonaws.com/{self.account}/{name}",
                fifo=name.endswith(".fifo"),
            )
        return self.queues[name]

    def send(
        self,
        queue_name: str,
        body: str,
        *,
        attributes: dict[str, str] | None = None,
        message_attributes: dict[str, dict[str, Any]] | None = None,
        message_id: str | None = None,
        sent_ms: float | None = None,
    ) -> SqsMessage:
        """Put a message in a queue as SQS SendMessage would."""
        message = SqsMessage(
            message_id=message_id or self.ids.uuid(),
            body=body,
            sent_ms=int(self.now if sent_ms is None else sent_ms),
            attributes=dict(attributes or {}),
            message_attributes=dict(message_attributes or {}),
        )
        self.queue(queue_name).messages.append(message)
        return message

    def truth_event(self, event_id: str, source: str, function: str) -> TruthEvent:
        if event_id not in self.events:
            self.events[event_id] = TruthEvent(event_id, source, function)
        return self.events[event_id]

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def json_text(value: Any) -> str:
    return jsonio.dumps(value)
