"""The replay plan: a versioned, human-readable JSON file of what to send where.

A plan lists entries. Each names the event it replays (the analyzer's event id), the source record
that holds the failed event (a dead letter, a destination record, or a stream range), the target
that delivers it again, and the exact payload and attributes to send. Plans are written with sorted
keys and one entry per line-friendly object so they diff well; `load_plan` refuses files of another
format or a newer version with one clear line.

Every copy a replay sends carries a marker, so collectors and the analyzer tell replays from
originals and no replay loop can form: the message attribute `tracekit-replay-id` where the target
has attributes (SQS, SNS), otherwise a top-level payload field of the same name (Lambda async invoke,
EventBridge detail, Kinesis data when it is a JSON object). Its value is
`<plan_id>:<entry_id>:<event_id>`: the analyzer reads the original's event id from it (it cannot rely on
finding the plan file), so plan and entry ids never contain a colon, and an event id may.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tracekit import jsonio
from tracekit.errors import TracekitError, first_line

PLAN_FORMAT = "tracekit-replay-plan"
PLAN_VERSION = 1
MARKER = "tracekit-replay-id"
WRITE_ONE = "Write one with `tracekit replay plan -o FILE`"


class PlanError(TracekitError):
    """A plan file is missing, malformed, or of another format or version."""


class TargetType(StrEnum):
    """How a replayed copy is delivered."""

    LAMBDA = "lambda"  # Lambda Invoke, InvocationType Event, to the same qualifier
    SQS = "sqs"  # SendMessageBatch back to the source queue
    SNS = "sns"  # Publish
    EVENTBRIDGE = "eventbridge"  # PutEvents
    KINESIS = "kinesis"  # PutRecords with the original partition keys
    DYNAMODB_INVOKE = "dynamodb_invoke"  # a synthetic DynamoDB Streams batch, invoked directly


class SourceKind(StrEnum):
    """Where the failed event's content was found."""

    DEAD_LETTER = "dead_letter"
    DESTINATION_RECORD = "destination_record"
    STREAM_RANGE = "stream_range"  # a stream on-failure record: records are re-read at run time


@dataclass
class Source:
    """The record that holds the failed event in the store (and, for a DLQ, where it still waits)."""

    kind: SourceKind
    #: dead_letters.message_id, or destination_records.record_id.
    id: str
    #: The queue (ARN or URL) a dead letter sits in: --delete-source removes it from there.
    queue: str | None = None
    #: Stream ranges: the stream ARN, shard and the first and last sequence numbers to re-read.
    stream_arn: str | None = None
    shard_id: str | None = None
    start_sequence_number: str | None = None
    end_sequence_number: str | None = None
    #: Stream ranges: the sequence number of the one record this entry re-sends.
    sequence_number: str | None = None


@dataclass
class Target:
    """Where a copy goes. `arn` is a function, topic, bus or stream ARN; `url` an SQS queue URL."""

    type: TargetType
    arn: str | None = None
    url: str | None = None
    #: Lambda: the qualifier (version or alias) the original was invoked with.
    qualifier: str | None = None


@dataclass
class Entry:
    """One event to deliver again."""

    entry_id: str
    event_id: str
    function_name: str | None
    source: Source
    target: Target
    #: The exact body / payload text to send; None when redacted (re-read from the store at run time)
    #: or, for stream ranges, when the records are re-read from the stream.
    payload: str | None
    #: JSON paths redacted from `payload` in the file (the payload is then re-read at run time).
    redacted: list[str] = field(default_factory=list)
    #: SQS / SNS message attributes in the API's shape ({"name": {"DataType": ..., "StringValue": ...}}).
    attributes: dict[str, Any] = field(default_factory=dict)
    #: FIFO: the original MessageGroupId, and the deduplication id derived from the original's.
    message_group_id: str | None = None
    message_deduplication_id: str | None = None
    #: Kinesis: the original partition key. EventBridge: source and detail-type.
    partition_key: str | None = None
    detail_type: str | None = None
    event_source: str | None = None
    #: "base64" when `payload` holds base64 bytes (Kinesis data); None for text.
    payload_encoding: str | None = None


@dataclass
class Plan:
    """A replay plan: entries plus how they were chosen."""

    plan_id: str
    created_at: str
    #: The selectors (or SQL) that chose the entries, as given, for the reader.
    selectors: dict[str, Any]
    #: The store the plan was made from (payloads of redacted entries are re-read from it).
    store: str
    entries: list[Entry] = field(default_factory=list)
    #: Where the marker goes: "attribute" (SQS, SNS) and "payload_field" (the rest) are names.
    marker: dict[str, str] = field(default_factory=lambda: {"attribute": MARKER, "payload_field": MARKER})
    #: What the selectors chose but the plan cannot replay, each {"event_id", "reason", ...}: stream
    #: records past retention, events with no source record, events already replayed.
    unavailable: list[dict[str, Any]] = field(default_factory=list)
    #: When the replayed events were first and last seen (the incident window the plan covers).
    events_first_seen: str | None = None
    events_last_seen: str | None = None

    def replay_id(self, entry: Entry) -> str:
        """The marker value a copy of `entry` carries: `<plan_id>:<entry_id>:<event_id>`."""
        return f"{self.plan_id}:{entry.entry_id}:{entry.event_id}"


def original_event_id(replay_id: str) -> str | None:
    """The original's event id in a marker value (None when it is not of the form plan:entry:event)."""
    parts = replay_id.split(":", 2)
    return parts[2] if len(parts) == 3 and parts[2] else None


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds and Z."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plan_to_json(plan: Plan) -> bytes:
    """The plan as indented JSON with sorted keys (stable, diffable)."""
    body = {"format": PLAN_FORMAT, "version": PLAN_VERSION, **asdict(plan)}
    return jsonio.dumpb(body, sort_keys=True, indent=True) + b"\n"


def save_plan(plan: Plan, path: Path) -> None:
    """Write the plan atomically."""
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(plan_to_json(plan))
    tmp.replace(path)


def load_plan(path: Path) -> Plan:
    """Read a plan file; one PlanError line when it cannot be used."""
    try:
        body = jsonio.loads(path.read_bytes())
    except FileNotFoundError:
        raise PlanError("no replay plan", str(path), WRITE_ONE) from None
    except (OSError, ValueError) as exc:
        raise PlanError("cannot read the replay plan", f"{path} ({first_line(exc)})") from None
    if not isinstance(body, dict) or body.get("format") != PLAN_FORMAT:
        raise PlanError("not a tracekit replay plan", str(path), WRITE_ONE)
    if int(body.get("version", 0)) > PLAN_VERSION:
        raise PlanError("replay plan written by a newer tracekit", str(path), "Upgrade tracekit")
    try:
        entries = [_entry(e) for e in body.get("entries", [])]
        return Plan(
            plan_id=str(body["plan_id"]),
            created_at=str(body["created_at"]),
            selectors=dict(body.get("selectors") or {}),
            store=str(body.get("store") or ""),
            entries=entries,
            marker=dict(body.get("marker") or {"attribute": MARKER, "payload_field": MARKER}),
            unavailable=[dict(u) for u in body.get("unavailable") or []],
            events_first_seen=body.get("events_first_seen"),
            events_last_seen=body.get("events_last_seen"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        where = f"{path} ({type(exc).__name__}: {first_line(exc)})"
        raise PlanError("malformed replay plan", where) from None


def _entry(raw: dict[str, Any]) -> Entry:
    source = dict(raw["source"])
    target = dict(raw["target"])
    return Entry(
        **{
            **raw,
            "source": Source(**{**source, "kind": SourceKind(source["kind"])}),
            "target": Target(**{**target, "type": TargetType(target["type"])}),
        }
    )
