"""Choose failed events with the analyzer's selectors and write a replay plan: one entry per event
(per stream record for a stream on-failure range), with its source record, target and exact payload.

Where an event's content comes from:

- A dead letter (`events.dead_letter_message_id`) wins over a destination record when both exist: it
  still waits in its queue, so `replay run --delete-source` can remove it once the copy is confirmed;
  a destination record cannot be taken back.
- A redrive-DLQ message (DeadLetterQueueSourceArn) goes back to its source queue with SendMessageBatch,
  with every message attribute as stored (every data type), and for a FIFO queue its MessageGroupId and
  a deduplication id derived from the original's (`payloads.deduplication_id`).
- A function-DLQ message (RequestID attribute) or an async destination record goes to the function with
  Invoke (InvocationType Event): the destination record's `functionArn` keeps its qualifier; a DLQ
  message names no function, so the event's function is used (its ARN from `collect function` when
  stored, else its name).
- A Kinesis or DynamoDB Streams on-failure record names a range, not records: the records are re-read
  now (GetShardIterator AT_SEQUENCE_NUMBER, GetRecords until past the end), each becoming one entry.
  Kinesis entries hold the record's data as base64 (`payload_encoding: base64`) and its partition key,
  for PutRecords to the source stream; a DynamoDB record becomes a one-record synthetic stream batch
  `{"Records": [...]}` in the Lambda event shape, for a direct Invoke of the consumer. Every record of the
  range is planned, whichever of its events the selectors named. Records the stream no longer holds
  (past retention) are listed in `unavailable`, never left out silently.

`--target` sends every entry elsewhere (an SNS topic: an SNS-delivered event is unwrapped to its Message
and attributes; an EventBridge bus: an EventBridge event keeps its source and detail-type).

An event that is itself a replayed copy (duplicate_kind `replay`) or that a copy in the store already
replays is not planned again unless asked: the guard against replay loops. What cannot be planned is
listed in `plan.unavailable` with the reason.

Redacted entries (`--redact '$.card'`) hold the masked payload; `resolve_payload` re-reads the original
from the store (or the stream) at run time and checks that it still matches the plan.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tracekit import jsonio
from tracekit.analyze.lookup import EventFilter, dict_rows, events_relation, filter_sql
from tracekit.aws import Aws, error_code
from tracekit.errors import first_line
from tracekit.replay.model import (
    Entry,
    Plan,
    PlanError,
    Source,
    SourceKind,
    Target,
    TargetType,
    now_iso,
)
from tracekit.replay.payloads import (
    deduplication_id,
    for_target,
    is_fifo,
    lambda_target,
    queue_url,
    redact,
)

if TYPE_CHECKING:
    import duckdb

    from tracekit.analyze.keys import Config
    from tracekit.store import Store

#: A FIFO target needs a message group; a copy whose original had none gets this one.
DEFAULT_GROUP = "tracekit-replay"
#: GetRecords calls per range at most: a range is one failed batch (10,000 records at most).
MAX_READS = 200
#: Errors that mean the stream (or the records) can no longer be read: reported per range.
STREAM_GONE = (
    "ResourceNotFoundException",
    "InvalidArgumentException",
    "ExpiredIteratorException",
    "TrimmedDataAccessException",
)
ANALYZED = "Run `tracekit analyze` (or ingest the artifacts) first"


@dataclass
class PlanRequest:
    """The selectors of `tracekit replay plan`, and what to do with what they choose."""

    where: EventFilter = field(default_factory=EventFilter)
    error_type: str | None = None
    until: dt.datetime | None = None
    event_ids: list[str] = field(default_factory=list)
    #: A SQL condition over the `events` table, ANDed with the others.
    sql_where: str | None = None
    #: Send every entry here instead of where its record came from.
    target: Target | None = None
    redact: list[str] = field(default_factory=list)
    include_replays: bool = False

    def selectors(self) -> dict[str, Any]:
        """The selectors as given, for the plan's reader (empty ones left out)."""
        raw = {
            "function": self.where.function,
            "outcome": str(self.where.outcome) if self.where.outcome else None,
            "since": _iso(self.where.since),
            "until": _iso(self.until),
            "key": self.where.key_value,
            "key_path": self.where.key_path,
            "error_type": self.error_type,
            "event_ids": self.event_ids or None,
            "where": self.sql_where,
            "target": (self.target.arn or self.target.url) if self.target else None,
            "redact": self.redact or None,
            "include_replays": self.include_replays or None,
        }
        return {k: v for k, v in raw.items() if v is not None}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


def plan_aws(region: str | None = None, profile: str | None = None) -> Aws:
    """AWS access for planning (re-reading stream records): 'cannot plan' errors."""
    return Aws(region, profile=profile, verb="cannot plan", retry_hint="Fix this and plan again")


def make_plan(store: Store, config: Config, request: PlanRequest, aws: Callable[[], Aws]) -> Plan:
    """The plan for the events `request` selects (the analysis must be current).

    `aws` gives the client for re-reading stream records; it is called only when a stream range is
    planned.

    Raises:
        PlanError: the --where condition is not valid SQL over `events`.
        AwsError: a stream could not be read for another reason than missing records.
    """
    con = store.connect()
    try:
        events = _select(con, config, request)
        planner = _Planner(request, aws)
        planner.letters = dead_letters(con, _ids(events, "dead_letter_message_id"))
        planner.records = destination_records(con, _ids(events, "destination_record_id"))
        planner.functions = function_arns(con)
        for event in events:
            planner.add(event)
        entries, unavailable = planner.finish()
    finally:
        con.close()
    return Plan(
        plan_id=secrets.token_hex(6),
        created_at=now_iso(),
        selectors=request.selectors(),
        store=str(store.root),
        entries=entries,
        unavailable=unavailable,
        events_first_seen=_iso(min(planner.seen)) if planner.seen else None,
        events_last_seen=_iso(max(planner.seen)) if planner.seen else None,
    )


def _ids(events: list[dict[str, Any]], column: str) -> list[str]:
    return sorted({event[column] for event in events if event[column]})


def _select(con: duckdb.DuckDBPyConnection, config: Config, request: PlanRequest) -> list[dict[str, Any]]:
    conditions, params = filter_sql(request.where)
    if request.until is not None:
        conditions.append("coalesce(first_seen, last_seen) <= ?")
        params.append(request.until)
    if request.error_type is not None:
        conditions.append("final_error_type = ?")
        params.append(request.error_type)
    if request.event_ids:
        conditions.append("list_contains(?, event_id)")
        params.append(list(request.event_ids))
    if request.sql_where:
        conditions.append(f"({request.sql_where})")
    sql = (
        "SELECT event_id, source, function_name, first_seen, last_seen, dead_letter_message_id, "
        "destination_record_id, "
        "duplicate_kind, event_id IN (SELECT duplicate_of FROM events WHERE duplicate_kind = 'replay' "
        "AND duplicate_of IS NOT NULL) AS replayed "
        f"FROM ({events_relation(config, request.where.key_path)}) "
        f"{'WHERE ' + ' AND '.join(conditions) if conditions else ''} "
        "ORDER BY first_seen NULLS LAST, event_id"
    )
    try:
        return dict_rows(con.execute(sql, params))
    except Exception as exc:  # duckdb raises many error types; any of them is a bad selector
        if "events" in str(exc) and "does not exist" in str(exc):
            raise PlanError("no analysis in the store", ANALYZED) from None
        raise PlanError("cannot select events", first_line(exc), "Check --where: SQL over `events`") from None


class _Planner:
    """Turns selected events into entries, in their order, remembering what it could not plan."""

    def __init__(self, request: PlanRequest, aws: Callable[[], Aws]) -> None:
        self.letters: dict[str, dict[str, Any]] = {}
        self.records: dict[str, dict[str, Any]] = {}
        #: Function name -> ARN, as `collect function` stored them.
        self.functions: dict[str, str] = {}
        self.request = request
        self.aws = aws
        self._aws: Aws | None = None
        self.entries: list[Entry] = []
        self.unavailable: list[dict[str, Any]] = []
        self.planned_events: set[str] = set()
        self.ranges_done: set[str] = set()
        #: When the events that made entries were first and last seen: the incident window.
        self.seen: list[dt.datetime] = []

    def add(self, event: dict[str, Any]) -> None:
        event_id = event["event_id"]
        if not self.request.include_replays and (event["duplicate_kind"] == "replay" or event["replayed"]):
            why = "a replayed copy" if event["duplicate_kind"] == "replay" else "already replayed"
            self._skip(event_id, f"{why} (--include-replays plans it anyway)")
            return
        before = len(self.entries)
        if event["dead_letter_message_id"]:
            self._dead_letter(event)
        elif event["destination_record_id"]:
            self._destination_record(event)
        else:
            self._skip(event_id, "no dead letter or destination record holds it")
        if len(self.entries) > before:
            self.seen += [t for t in (event["first_seen"], event["last_seen"]) if t is not None]

    def finish(self) -> tuple[list[Entry], list[dict[str, Any]]]:
        for number, entry in enumerate(self.entries, start=1):
            entry.entry_id = f"e{number:05d}"
        return self.entries, self.unavailable

    def _skip(self, event_id: str | None, reason: str, **extra: Any) -> None:
        self.unavailable.append({"event_id": event_id, "reason": reason, **extra})

    def _append(self, entry: Entry) -> None:
        if entry.event_id in self.planned_events:
            return
        self.planned_events.add(entry.event_id)
        if self.request.redact and entry.payload is not None:
            masked, matched = redact(entry.payload, self.request.redact, encoding=entry.payload_encoding)
            if matched:
                entry.payload, entry.redacted = masked, matched
        self.entries.append(entry)

    # -- dead letters and async destination records ----------------------------------------------

    def _dead_letter(self, event: dict[str, Any]) -> None:
        letter = self.letters.get(event["dead_letter_message_id"])
        if letter is None:
            self._skip(event["event_id"], "its dead letter is not in the store")
            return
        target = self.request.target or self._dead_letter_target(letter, event)
        if target is None:
            self._skip(
                event["event_id"],
                "its DLQ message names neither a source queue nor a function; pass --target",
            )
            return
        delivery = for_target(target, letter["body"], _attributes(letter))
        entry = Entry(
            entry_id="",
            event_id=event["event_id"],
            function_name=event["function_name"],
            source=Source(SourceKind.DEAD_LETTER, letter["message_id"], queue=letter["queue"]),
            target=target,
            payload=delivery.payload,
            attributes=delivery.attributes,
            event_source=delivery.event_source,
            detail_type=delivery.detail_type,
        )
        if is_fifo(target):
            entry.message_group_id = letter["message_group_id"] or DEFAULT_GROUP
            original = letter["message_deduplication_id"] or letter["message_id"]
            entry.message_deduplication_id = deduplication_id(original, letter["message_id"])
        self._append(entry)

    def _dead_letter_target(self, letter: dict[str, Any], event: dict[str, Any]) -> Target | None:
        if letter["dead_letter_source_arn"]:
            arn = letter["dead_letter_source_arn"]
            return Target(TargetType.SQS, arn=arn, url=queue_url(arn))
        if event["function_name"]:
            name = event["function_name"]
            return lambda_target(self.functions.get(name, name))
        return None

    def _destination_record(self, event: dict[str, Any]) -> None:
        record = self.records.get(event["destination_record_id"])
        if record is None:
            self._skip(event["event_id"], "its destination record is not in the store")
        elif record["kind"] == "async":
            self._async_record(event, record)
        elif record["kind"] in ("kinesis", "dynamodb"):
            self._stream_range(record)
        else:
            self._skip(event["event_id"], f"replaying {record['kind']} records is not supported")

    def _async_record(self, event: dict[str, Any], record: dict[str, Any]) -> None:
        if record["request_payload"] is None:
            self._skip(event["event_id"], "its destination record holds no requestPayload")
            return
        target = self.request.target or lambda_target(record["function_arn"] or event["function_name"])
        delivery = for_target(target, record["request_payload"], {})
        self._append(
            Entry(
                entry_id="",
                event_id=event["event_id"],
                function_name=event["function_name"] or record["function_name"],
                source=Source(SourceKind.DESTINATION_RECORD, record["record_id"]),
                target=target,
                payload=delivery.payload,
                attributes=delivery.attributes,
                event_source=delivery.event_source,
                detail_type=delivery.detail_type,
            )
        )

    # -- stream ranges ------------------------------------------------------------------------------

    def _client(self) -> Aws:
        if self._aws is None:
            self._aws = self.aws()
        return self._aws

    def _stream_range(self, record: dict[str, Any]) -> None:
        if record["record_id"] in self.ranges_done:
            return
        self.ranges_done.add(record["record_id"])
        kind, arn, shard = record["kind"], record["source_arn"], record["shard_id"]
        start, end = record["start_sequence_number"], record["end_sequence_number"]
        where = {"source": record["record_id"], "stream_arn": arn, "shard_id": shard}
        if not (arn and shard and start and end):
            self._skip(None, "the on-failure record does not name its stream range", **where)
            return
        read, problem = read_range(self._client(), kind, arn, shard, start, end)
        if problem:
            self._skip(None, problem, **where, start_sequence_number=start, end_sequence_number=end)
        seen = {_sequence(kind, r) for r in read}
        for edge in dict.fromkeys((start, end)):
            if edge not in seen and not problem:
                self._skip(
                    _stream_event_id(kind, shard, edge, None),
                    "the stream no longer holds this record (past retention)",
                    **where,
                    sequence_number=edge,
                )
        if record["batch_size"] and len(read) < record["batch_size"] and not problem:
            self._skip(
                None,
                f"the on-failure record counts {record['batch_size']} records, {len(read)} were re-read "
                "from the stream: the others are past retention or were never in this range",
                **where,
            )
        for item in read:
            self._append(self._stream_entry(record, item))

    def _stream_entry(self, record: dict[str, Any], item: dict[str, Any]) -> Entry:
        kind, arn, shard = record["kind"], record["source_arn"], record["shard_id"]
        default = (
            Target(TargetType.KINESIS, arn=arn)
            if kind == "kinesis"
            else lambda_target(record["function_arn"], TargetType.DYNAMODB_INVOKE)
        )
        target = self.request.target or default
        if kind == "dynamodb" and target.type is TargetType.LAMBDA:
            target = replace(target, type=TargetType.DYNAMODB_INVOKE)
        payload, encoding, key = stream_payload(kind, arn, item, target)
        sequence = _sequence(kind, item)
        return Entry(
            entry_id="",
            event_id=_stream_event_id(kind, shard, sequence, item),
            function_name=record["function_name"],
            source=Source(
                SourceKind.STREAM_RANGE,
                record["record_id"],
                stream_arn=arn,
                shard_id=shard,
                start_sequence_number=record["start_sequence_number"],
                end_sequence_number=record["end_sequence_number"],
                sequence_number=sequence,
            ),
            target=target,
            payload=payload,
            payload_encoding=encoding,
            partition_key=key,
        )


def _stream_event_id(kind: str, shard: str, sequence: str, item: dict[str, Any] | None) -> str:
    """The analyzer's event id: `shardId-…:sequenceNumber` for Kinesis, the eventID for DynamoDB."""
    if kind == "dynamodb" and item is not None:
        return str(item["eventID"])
    return f"{shard}:{sequence}"


def _sequence(kind: str, item: dict[str, Any]) -> str:
    return str(item["SequenceNumber"] if kind == "kinesis" else item["dynamodb"]["SequenceNumber"])


# -- reading the store ------------------------------------------------------------------------------


_DEAD_LETTERS = (
    "SELECT message_id, queue, body, kind, dead_letter_source_arn, message_group_id, "
    "message_deduplication_id, message_attributes FROM dead_letters WHERE list_contains(?, message_id) "
    # The latest collect first: its receipt handle is the newest.
    "QUALIFY row_number() OVER (PARTITION BY message_id ORDER BY batch DESC, sent_timestamp) = 1"
)
_DESTINATION_RECORDS = (
    "SELECT record_id, kind, function_arn, function_name, request_payload, source_arn, shard_id, "
    "start_sequence_number, end_sequence_number, batch_size FROM destination_records "
    "WHERE list_contains(?, record_id) QUALIFY row_number() OVER (PARTITION BY record_id) = 1"
)


def dead_letters(con: duckdb.DuckDBPyConnection, message_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The dead letters with these message ids, by message id (one query for them all)."""
    return {row["message_id"]: row for row in dict_rows(con.execute(_DEAD_LETTERS, [message_ids]))}


def destination_records(con: duckdb.DuckDBPyConnection, record_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The destination records with these ids, by record id."""
    return {row["record_id"]: row for row in dict_rows(con.execute(_DESTINATION_RECORDS, [record_ids]))}


def function_arns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Each function's ARN as `collect function` last stored it (Invoke also takes a bare name)."""
    rows = con.execute(
        "SELECT function_name, arg_max(function_arn, batch) FROM function_configs "
        "WHERE function_arn IS NOT NULL GROUP BY function_name"
    ).fetchall()
    return {str(name): str(arn) for name, arn in rows}


def _attributes(letter: dict[str, Any]) -> dict[str, Any]:
    raw = letter.get("message_attributes")
    value = jsonio.loads(raw) if raw else {}
    return dict(value) if isinstance(value, dict) else {}


# -- reading streams --------------------------------------------------------------------------------


def read_range(
    aws: Aws, kind: str, stream_arn: str, shard_id: str, start: str, end: str
) -> tuple[list[dict[str, Any]], str | None]:
    """The records of a shard from `start` to `end` (sequence numbers, inclusive) as GetRecords gives
    them, and why the range could not be read (None when it could).

    Raises:
        AwsError: any failure but a missing stream, shard or record (permissions, connectivity).
    """
    service = "kinesis" if kind == "kinesis" else "dynamodbstreams"
    resource = f"{stream_arn} {shard_id}"
    if kind == "kinesis":
        params = {"StreamARN": stream_arn, "StartingSequenceNumber": start}
    else:
        params = {"StreamArn": stream_arn, "SequenceNumber": start}
    answer = aws.call(
        service,
        "GetShardIterator",
        resource,
        tolerate=STREAM_GONE,
        ShardId=shard_id,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        **params,
    )
    if "Error" in answer:
        return [], f"cannot read the stream range: {_reason(answer)}"
    iterator = answer.get("ShardIterator")
    extra = {"StreamARN": stream_arn} if kind == "kinesis" else {}
    found: list[dict[str, Any]] = []
    for _ in range(MAX_READS):
        if not iterator:
            break
        page = aws.call(
            service, "GetRecords", resource, tolerate=STREAM_GONE, ShardIterator=iterator, **extra
        )
        if "Error" in page:
            return found, f"cannot read the stream range: {_reason(page)}"
        for item in page.get("Records", []):
            sequence = int(_sequence(kind, item))
            if sequence > int(end):
                return found, None
            if sequence >= int(start):
                found.append(item)
        caught_up = page.get("MillisBehindLatest", 0) == 0 if kind == "kinesis" else True
        if not page.get("Records") and caught_up:
            break
        iterator = page.get("NextShardIterator")
    return found, None


def _reason(answer: dict[str, Any]) -> str:
    message = str(answer.get("Error", {}).get("Message") or "").strip()
    return f"{error_code(answer)}: {message}" if message else error_code(answer)


def stream_payload(
    kind: str, stream_arn: str, item: dict[str, Any], target: Target
) -> tuple[str, str | None, str | None]:
    """(payload, encoding, partition key) of a re-read stream record for `target`.

    Kinesis to Kinesis: the data as base64 with its partition key. Kinesis elsewhere: the data as text.
    DynamoDB: `{"Records": [record]}` in the shape Lambda delivers (eventSourceARN added, the creation
    time in epoch seconds).
    """
    if kind == "kinesis":
        data = bytes(item["Data"])
        if target.type is TargetType.KINESIS:
            return base64.b64encode(data).decode(), "base64", str(item["PartitionKey"])
        return data.decode("utf-8", errors="surrogateescape"), None, None
    record = _jsonable(item)
    record["dynamodb"] = dict(record.get("dynamodb") or {})
    record["eventSourceARN"] = stream_arn
    payload = jsonio.dumps({"Records": [record]})
    key = str(record.get("eventID")) if target.type is TargetType.KINESIS else None
    return (base64.b64encode(payload.encode()).decode(), "base64", key) if key else (payload, None, None)


def _jsonable(value: Any) -> Any:
    """A boto3 stream record as Lambda delivers it: binary attribute values as base64, times as epoch
    seconds."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    return value


# -- at run time ------------------------------------------------------------------------------------


def resolve_payload(plan: Plan, entry: Entry, store: Store, aws: Aws | None = None) -> str:
    """The exact payload to send for `entry`, re-read from its source record.

    The source record must still be in the store (and, for a stream entry, its record in the stream:
    pass `aws`); when the entry is redacted, the re-read payload must redact to what the plan holds.

    Raises:
        PlanError: the record is gone, or no longer matches the plan.
    """
    con = store.connect(analysis=False)
    try:
        payload = _source_payload(con, entry, aws)
    finally:
        con.close()
    if entry.payload is not None and entry.redacted:
        masked, _ = redact(payload, entry.redacted, encoding=entry.payload_encoding)
        if masked != entry.payload:
            raise PlanError(
                "the stored record differs from the plan",
                f"entry {entry.entry_id} ({entry.event_id})",
                "Make a new plan from this store",
            )
    return payload


def _source_payload(con: duckdb.DuckDBPyConnection, entry: Entry, aws: Aws | None) -> str:
    source, where = entry.source, f"entry {entry.entry_id} ({entry.event_id})"
    if source.kind is SourceKind.DEAD_LETTER:
        letter = dead_letters(con, [source.id]).get(source.id)
        if letter is None:
            raise PlanError("its dead letter is no longer in the store", where, "Make a new plan")
        return for_target(entry.target, letter["body"], _attributes(letter)).payload
    record = destination_records(con, [source.id]).get(source.id)
    if record is None:
        raise PlanError("its destination record is no longer in the store", where, "Make a new plan")
    if source.kind is SourceKind.DESTINATION_RECORD:
        return for_target(entry.target, record["request_payload"], {}).payload
    if aws is None:
        raise PlanError("a stream entry is re-read from its stream", where, "Pass AWS access (aws=)")
    sequence = source.sequence_number or ""
    read, problem = read_range(
        aws, record["kind"], source.stream_arn or "", source.shard_id or "", sequence, sequence
    )
    if problem or not read:
        raise PlanError("its record is no longer in the stream", where, problem or "past retention")
    return stream_payload(record["kind"], source.stream_arn or "", read[0], entry.target)[0]


# -- summary ------------------------------------------------------------------------------------------


def describe_target(target: Target) -> str:
    """One line naming a target: `sqs https://…`, `lambda arn:…:function:f:live`."""
    where = target.arn or target.url or "?"
    qualifier = f":{target.qualifier}" if target.qualifier else ""
    return f"{target.type} {where}{qualifier}"


def entries_per_target(entries: Iterable[Entry]) -> dict[str, int]:
    """How many entries go to each target, in first-seen order."""
    counts: dict[str, int] = {}
    for entry in entries:
        key = describe_target(entry.target)
        counts[key] = counts.get(key, 0) + 1
    return counts
