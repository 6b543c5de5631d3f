"""Kinesis and DynamoDB Streams event source mappings: per-shard batches, retries, bisection,
checkpoints, record age and on-failure records.

Documented behaviour modelled here (lambda-semantics.md §2): each shard is read in order and a batch
is invoked synchronously, each attempt a separate invocation with its own request id; a function error
blocks the shard and retries the whole batch up to MaximumRetryAttempts (-1 = until the records leave
the stream); throttles are retried without counting; with BisectBatchOnFunctionError a failing batch is
split in two, left half first, and the split does not count as a retry; records older than
MaximumRecordAgeInSeconds are discarded without invoking and reported as `RecordAgeExceeded`; with
ReportBatchItemFailures the batch is checkpointed at the lowest failed sequence number and retried from
there (later successful records are processed again), or bisected there when bisect is on; a batch out
of retries or age becomes one on-failure record (KinesisBatchInfo / DDBStreamBatchInfo, plus `payload`
in S3) and the shard moves on. With ParallelizationFactor > 1 order is kept per (shard, partition key).
Records that outlive the stream's retention are trimmed away silently.

What AWS leaves undocumented is a setting (see SETTINGS). Truth: every invocation a record was in is an
attempt (with its batch id); `world.batches` holds every invoked batch, `parent_batch_id` naming the
batch a split came from; the first success decides an event's outcome, later failures do not undo it.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tracekit import jsonio
from tracekit.lab.delivery import deliver_record
from tracekit.lab.models.batch_response import reported_failures
from tracekit.lab.runtime import AttemptResult, LambdaFunction
from tracekit.lab.scenario import OK, EventSpec, Fault, Scenario
from tracekit.lab.world import (
    StreamRecord,
    TruthAttempt,
    TruthBatch,
    TruthEvent,
    World,
    iso_ms,
    reached_function,
)

SETTINGS: dict[str, Any] = {
    "stream": None,  # stream name (Kinesis) or table name (DynamoDB); default from the function name
    "shards": 1,
    "batch_size": 100,
    "maximum_batching_window_s": 0,
    "bisect_batch_on_function_error": False,
    "maximum_retry_attempts": -1,
    "maximum_record_age_s": -1,
    "parallelization_factor": 1,
    "report_batch_item_failures": False,
    "retention_h": 24,
    "duplicate_rate": 0.0,
    "poll_interval_s": None,  # how often an idle shard is read: Kinesis 1 s, DynamoDB 0.25 s
    # UNVERIFIED: whether each half of a split batch starts a fresh MaximumRetryAttempts budget
    # (and approximateInvokeCount); the serverless walk-through and an emulator say it does.
    "split_resets_retries": True,
    # UNVERIFIED: the gaps before each retry of a failed batch (the last one repeats); the default
    # reproduces the recording of 8 invocations within a 60 s MaximumRecordAgeInSeconds.
    "retry_delays_s": [2, 4, 8, 10],
    # UNVERIFIED: which attempt's request id the on-failure record names: "last" or "first".
    "on_failure_request_id": "last",
}
DYNAMODB_SETTINGS: dict[str, Any] = {
    "key_attribute": "id",  # the table's partition key: Keys of each stream record
    "stream_view_type": "NEW_AND_OLD_IMAGES",
}
STREAM_VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
ON_FAILURE_TYPES = ("sqs", "sns", "s3")
POLL_INTERVAL_S = {"kinesis": 1.0, "dynamodb": 0.25}
BATCH_INFO = {"kinesis": "KinesisBatchInfo", "dynamodb": "DDBStreamBatchInfo"}


@dataclass
class _Record:
    """One record in a shard, with the Records[] entry the handler receives."""

    spec: EventSpec
    shard_id: str
    sequence_number: str
    partition_key: str
    arrival: float
    entry: dict[str, Any]
    truth: TruthEvent
    tries: int = 0  # invocation attempts it was in, throttled ones included: indexes its faults
    failed_before: bool = False
    duplicate: bool = False  # owes one extra delivery without any error


@dataclass
class _Batch:
    """Consecutive records Lambda invokes together, retries together and splits in two."""

    records: list[_Record]
    parent_id: str | None
    retries: int = 0
    invokes: int = 0  # invocations that reached the function: approximateInvokeCount
    throttles: int = 0
    request_ids: list[str] = field(default_factory=list)
    function_error: str | None = "Unhandled"  # None when the failure came from batchItemFailures


@dataclass
class _Lane:
    """One in-order reader of a shard (several per shard with ParallelizationFactor > 1)."""

    shard_id: str
    pending: deque[_Record] = field(default_factory=deque)
    work: deque[_Batch] = field(default_factory=deque)  # the batch in progress first, then its splits
    busy: bool = False
    poll_at: float | None = None
    poll_token: int = 0
    last_poll: float = -math.inf


class StreamModel:
    """A Kinesis or DynamoDB Streams event source mapping in front of one function."""

    def __init__(self, scenario: Scenario, world: World, function: LambdaFunction) -> None:
        self.source = scenario.source
        self.scenario = scenario
        self.world = world
        self.function = function
        self.settings = settings(scenario.settings, scenario.source)
        _check_destinations(scenario)
        s = self.settings
        self.stream = str(s["stream"] or f"{scenario.function.name}-{'stream' if self.kinesis else 'table'}")
        self.stream_arn = self._stream_arn()
        self.esm_uuid = world.ids.uuid()
        self.shard_ids = [self._shard_id(i) for i in range(int(s["shards"]))]
        self.lanes = {
            shard: [_Lane(shard) for _ in range(int(s["parallelization_factor"]))] for shard in self.shard_ids
        }
        self.next_sequence = {shard: self._first_sequence() for shard in self.shard_ids}
        self.items: dict[str, dict[str, Any]] = {}  # DynamoDB: the table's current items by key
        self.batch_count = 0
        self.event_count = 0

    @property
    def kinesis(self) -> bool:
        return self.source == "kinesis"

    def dead_letter_queues(self) -> set[str]:
        """None: a stream's on-failure destination receives invocation records, not dead letters."""
        return set()

    def submit(self, spec: EventSpec, arrival: float) -> None:
        """Write one record to the stream at `arrival` (before the run started: already waiting)."""
        if not self.kinesis and not isinstance(spec.payload, dict):
            raise ValueError("a DynamoDB stream event's payload must be a table (the item)")
        self.event_count += 1
        number = self.event_count
        self.world.clock.at(arrival, lambda: self._arrive(spec, number, arrival))

    def finish(self) -> None:
        """Nothing to settle: records still unprocessed when time ran out stay in_flight."""

    # ------------------------------------------------------------------ the stream

    def _arrive(self, spec: EventSpec, number: int, arrival: float) -> None:
        record = (
            self._kinesis_record(spec, number, arrival)
            if self.kinesis
            else self._dynamodb_record(spec, number, arrival)
        )
        duplicate_rate = float(self.settings["duplicate_rate"])
        record.duplicate = spec.duplicate or (duplicate_rate > 0 and self.world.rng.random() < duplicate_rate)
        lane = self._lane(record.shard_id, record.partition_key)
        lane.pending.append(record)
        self._wake(lane)

    def _kinesis_record(self, spec: EventSpec, number: int, arrival: float) -> _Record:
        key = str(spec.key) if spec.key is not None else str(number)
        shard_id = self._shard_for(key)
        sequence = self._sequence(shard_id)
        payload = spec.payload
        data = payload.encode() if isinstance(payload, str) else jsonio.dumpb(payload)
        entry = {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": key,
                "sequenceNumber": sequence,
                "data": base64.b64encode(data).decode("ascii"),
                "approximateArrivalTimestamp": round(arrival / 1000, 3),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{sequence}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": self._role_arn(),
            "awsRegion": self.world.region,
            "eventSourceARN": self.stream_arn,
        }
        self.world.stream_records.append(
            StreamRecord(self.stream, shard_id, sequence, key, data, int(arrival))
        )
        truth = self._truth(f"{shard_id}:{sequence}")
        return _Record(spec, shard_id, sequence, key, arrival, entry, truth)

    def _dynamodb_record(self, spec: EventSpec, number: int, arrival: float) -> _Record:
        """An INSERT for a new key, a MODIFY for a known one, a REMOVE for an empty payload."""
        attribute = str(self.settings["key_attribute"])
        payload: dict[str, Any] = dict(spec.payload)
        fallback = spec.key if spec.key is not None else f"item-{number}"
        item_key = str(payload.get(attribute, fallback))
        old = self.items.get(item_key)
        new: dict[str, Any] | None = None
        if payload:
            new = {attribute: payload.get(attribute, fallback), **payload}
            name = "MODIFY" if old else "INSERT"
            self.items[item_key] = new
        else:
            name = "REMOVE"
            self.items.pop(item_key, None)
        key_value = (new or old or {}).get(attribute, fallback)
        shard_id = self._shard_for(item_key)
        sequence = self._sequence(shard_id)
        dynamodb = self._stream_view({attribute: key_value}, old, new, arrival, sequence)
        event_id = self.world.ids.hex(32)
        entry = {
            "eventID": event_id,
            "eventName": name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.world.region,
            "dynamodb": dynamodb,
            "eventSourceARN": self.stream_arn,
        }
        data = jsonio.dumpb(dynamodb["NewImage"]) if "NewImage" in dynamodb else b""
        self.world.stream_records.append(
            StreamRecord(self.stream, shard_id, sequence, item_key, data, int(arrival))
        )
        return _Record(spec, shard_id, sequence, item_key, arrival, entry, self._truth(event_id))

    def _stream_view(
        self,
        keys: dict[str, Any],
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
        arrival: float,
        sequence: str,
    ) -> dict[str, Any]:
        """The record's `dynamodb` member: keys and the images the stream view type includes."""
        view = str(self.settings["stream_view_type"])
        out: dict[str, Any] = {
            "ApproximateCreationDateTime": int(arrival // 1000),
            "Keys": dynamodb_json(keys),
        }
        if new is not None and view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            out["NewImage"] = dynamodb_json(new)
        if old is not None and view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
            out["OldImage"] = dynamodb_json(old)
        out["SequenceNumber"] = sequence
        out["SizeBytes"] = len(jsonio.dumpb({k: v for k, v in out.items() if k.endswith(("Keys", "Image"))}))
        out["StreamViewType"] = view
        return out

    def _truth(self, event_id: str) -> TruthEvent:
        return self.world.truth_event(event_id, self.source, self.scenario.function.name)

    def _lane(self, shard_id: str, partition_key: str) -> _Lane:
        lanes = self.lanes[shard_id]
        return lanes[_hash(partition_key) % len(lanes)]

    # ------------------------------------------------------------------ polling

    def _wake(self, lane: _Lane) -> None:
        """Schedule the next read of an idle lane that has records waiting (sooner if a batch is full)."""
        if lane.busy or not lane.pending:
            return
        s = self.settings
        interval = float(s["poll_interval_s"]) * 1000
        at = max(self.world.now, lane.last_poll + interval)
        if len(lane.pending) < int(s["batch_size"]):
            at = max(at, lane.pending[0].arrival + float(s["maximum_batching_window_s"]) * 1000)
        if lane.poll_at is not None and lane.poll_at <= at:
            return
        lane.poll_at = at
        lane.poll_token += 1
        token = lane.poll_token
        self.world.clock.at(at, lambda: self._poll(lane, token))

    def _poll(self, lane: _Lane, token: int) -> None:
        if token != lane.poll_token or lane.busy:
            return
        lane.poll_at = None
        lane.last_poll = self.world.now
        size = min(int(self.settings["batch_size"]), len(lane.pending))
        lane.work.append(_Batch([lane.pending.popleft() for _ in range(size)], None))
        lane.busy = True
        self._process(lane)

    def _continue(self, lane: _Lane, at: float) -> None:
        self.world.clock.at(at, lambda: self._step(lane))

    def _step(self, lane: _Lane) -> None:
        if lane.work:
            self._process(lane)
            return
        lane.busy = False
        self._wake(lane)

    # ------------------------------------------------------------------ one batch attempt

    def _process(self, lane: _Lane) -> None:
        """Invoke the lane's current batch, or give up on the records that are too old first."""
        batch = lane.work[0]
        self._discard_old(batch)
        if not batch.records:
            lane.work.popleft()
            self._step(lane)
            return
        result, batch_id, partial = self._invoke(batch)
        if result.outcome == "throttled":
            # Never reached the function: retried until the records expire, not counted as a retry.
            batch.throttles += 1
            self._continue(lane, result.end + self._retry_delay(batch.throttles))
            return
        batch.invokes += 1
        if result.request_id:
            batch.request_ids.append(result.request_id)
        if not result.succeeded:
            batch.function_error = "Unhandled"
            self._after_failure(lane, batch, 0, batch_id, result.end)
            return
        if partial is None:
            lane.work.popleft()
            self._continue(lane, result.end)
            return
        batch.function_error = None
        self._after_failure(lane, batch, partial[0], batch_id, result.end)

    def _invoke(self, batch: _Batch) -> tuple[AttemptResult, str, tuple[int, set[str]] | None]:
        records = batch.records
        for record in records:
            record.tries += 1
        fault = _batch_fault(records)
        # Lambda hands each invocation a freshly deserialised event: the handler cannot alter our copy.
        event = jsonio.loads(jsonio.dumpb({"Records": [r.entry for r in records]}))
        result = self.function.invoke(event, fault=fault, items=len(records))
        self.batch_count += 1
        batch_id = f"batch-{self.batch_count:06d}"
        partial = self._partial(records, result.response) if result.succeeded else None
        outcome = "partial_failure" if partial is not None else result.outcome
        self.world.batches.append(
            TruthBatch(
                batch_id,
                records[0].shard_id,
                records[0].sequence_number,
                records[-1].sequence_number,
                len(records),
                batch.parent_id,
                result.request_id,
                outcome,
            )
        )
        reported = partial[1] if partial is not None else set()
        for record in records:
            ok = result.succeeded and record.sequence_number not in reported
            self._record_attempt(record, result, "success" if ok else _failed(result.outcome), batch_id)
        return result, batch_id, partial

    def _record_attempt(self, record: _Record, result: AttemptResult, outcome: str, batch_id: str) -> None:
        truth = record.truth
        truth.attempts.append(TruthAttempt(result.request_id, result.start, result.end, outcome, batch_id))
        if reached_function(outcome):
            truth.deliveries += 1
        if outcome != "success":
            record.failed_before = record.failed_before or outcome != "throttled"
            return
        truth.successes += 1
        if truth.successes == 1:
            truth.outcome = "succeeded_after_retry" if record.failed_before else "succeeded"
            if record.duplicate:
                record.duplicate = False
                # At-least-once: the record is read once more after the work in hand, out of order.
                self._lane(record.shard_id, record.partition_key).pending.appendleft(record)

    # ------------------------------------------------------------------ after a failed attempt

    def _after_failure(self, lane: _Lane, batch: _Batch, checkpoint: int, batch_id: str, end: float) -> None:
        """Bisect, retry or give up on the records from `checkpoint` on (all of them after an error)."""
        s = self.settings
        failed = batch.records[checkpoint:]
        from_error = batch.function_error is not None
        if s["bisect_batch_on_function_error"] and (checkpoint > 0 or (from_error and len(failed) > 1)):
            # A split is not a retry; with a partial response the batch is split at the checkpoint.
            middle = len(failed) // 2
            parts = [failed] if checkpoint > 0 else [failed[:middle], failed[middle:]]
            lane.work.popleft()
            lane.work.extendleft(reversed([self._split(batch, part, batch_id) for part in parts]))
            self._continue(lane, end)
            return
        maximum = int(s["maximum_retry_attempts"])
        if maximum != -1 and batch.retries >= maximum:
            self.world.clock.at(end, lambda: self._exhausted(lane, batch, failed))
            return
        batch.retries += 1
        batch.records = failed
        self._continue(lane, end + self._retry_delay(batch.retries))

    def _exhausted(self, lane: _Lane, batch: _Batch, failed: list[_Record]) -> None:
        """Out of retries once the last attempt has ended: report the records, move the shard on."""
        self._give_up(batch, failed, "RetryAttemptsExhausted")
        lane.work.popleft()
        self._step(lane)

    def _split(self, batch: _Batch, records: list[_Record], batch_id: str) -> _Batch:
        if self.settings["split_resets_retries"]:
            return _Batch(records, batch_id)
        return _Batch(
            records,
            batch_id,
            retries=batch.retries,
            invokes=batch.invokes,
            request_ids=list(batch.request_ids),
            function_error=batch.function_error,
        )

    def _retry_delay(self, nth: int) -> float:
        delays = self.settings["retry_delays_s"]
        return float(delays[min(nth, len(delays)) - 1]) * 1000

    def _partial(self, records: list[_Record], response: Any) -> tuple[int, set[str]] | None:
        """A ReportBatchItemFailures response as (checkpoint index, failed sequence numbers).

        None when every record succeeded. The lowest reported sequence number is the checkpoint; a
        malformed response (see batch_response) fails the whole batch.
        """
        if not self.settings["report_batch_item_failures"]:
            return None
        if not isinstance(response, dict) or not response.get("batchItemFailures"):
            return None  # no failure reported: our rule for streams, stricter for SQS (batch_response)
        position = {r.sequence_number: i for i, r in enumerate(records)}
        reported = reported_failures(response, position)
        if reported is None:
            return 0, set(position)
        return min(position[i] for i in reported), reported

    def _discard_old(self, batch: _Batch) -> None:
        """Trim records past the stream's retention; report records past MaximumRecordAgeInSeconds."""
        now = self.world.now
        retention_ms = float(self.settings["retention_h"]) * 3_600_000
        kept = [r for r in batch.records if now - r.arrival <= retention_ms]
        for record in batch.records:
            if now - record.arrival > retention_ms and record.truth.successes == 0:
                record.truth.outcome = "dropped"
        max_age = int(self.settings["maximum_record_age_s"])
        if max_age != -1:
            expired = [r for r in kept if now - r.arrival > max_age * 1000]
            if expired:
                self._give_up(batch, expired, "RecordAgeExceeded")
                kept = [r for r in kept if now - r.arrival <= max_age * 1000]
        batch.records = kept

    # ------------------------------------------------------------------ on-failure records

    def _give_up(self, batch: _Batch, records: list[_Record], condition: str) -> None:
        """Send the on-failure record for `records` (if a destination is set) and settle their truth."""
        destination = self.scenario.on_failure
        outcome = "dropped"
        if destination is not None:
            record = self._failure_record(batch, records, condition)
            key = self._s3_key(records[0].shard_id) if destination.type == "s3" else None
            if destination.type == "s3":
                record["payload"] = {"Records": [r.entry for r in records]}
            deliver_record(
                self.world, destination, record, function=self.scenario.function, success=False, s3_key=key
            )
            outcome = "sent_to_destination"
        for item in records:
            if item.truth.successes == 0:
                item.truth.outcome = outcome

    def _failure_record(self, batch: _Batch, records: list[_Record], condition: str) -> dict[str, Any]:
        spec = self.scenario.function
        ids = batch.request_ids
        if ids:
            request_id = ids[-1] if self.settings["on_failure_request_id"] == "last" else ids[0]
        else:
            request_id = self.world.ids.uuid()
        document: dict[str, Any] = {
            "requestContext": {
                "requestId": request_id,
                "functionArn": spec.arn,
                "condition": condition,
                # Reported as 1 even when old records were discarded without any invocation.
                "approximateInvokeCount": max(batch.invokes, 1),
            },
        }
        if condition != "RecordAgeExceeded":
            document["responseContext"] = {
                "statusCode": 200,
                "executedVersion": spec.version,
                "functionError": batch.function_error,
            }
        document["version"] = "1.0"
        document["timestamp"] = iso_ms(self.world.now)
        document[BATCH_INFO[self.source]] = {
            "shardId": records[0].shard_id,
            "startSequenceNumber": records[0].sequence_number,
            "endSequenceNumber": records[-1].sequence_number,
            "approximateArrivalOfFirstRecord": self._arrival_text(records[0].arrival),
            "approximateArrivalOfLastRecord": self._arrival_text(records[-1].arrival),
            "batchSize": len(records),
            "streamArn": self.stream_arn,
        }
        return document

    def _arrival_text(self, ms: float) -> str:
        """Kinesis reports arrivals to the millisecond; DynamoDB to the second."""
        text = iso_ms(ms)
        return text if self.kinesis else text[:19] + "Z"

    def _s3_key(self, shard_id: str) -> str:
        now = datetime.fromtimestamp(self.world.now / 1000, UTC)
        stamp = now.strftime("%Y-%m-%dT%H.%M.%S")
        return f"aws/lambda/{self.esm_uuid}/{shard_id}/{now:%Y/%m/%d}/{stamp}-{self.world.ids.uuid()}"

    # ------------------------------------------------------------------ identifiers

    def _stream_arn(self) -> str:
        if self.kinesis:
            return self.world.arn("kinesis", f"stream/{self.stream}")
        label = datetime.fromtimestamp(self.scenario.start_ms / 1000 - 86400, UTC)
        return self.world.arn(
            "dynamodb", f"table/{self.stream}/stream/{label.isoformat(timespec='milliseconds')[:23]}"
        )

    def _role_arn(self) -> str:
        return f"arn:aws:iam::{self.world.account}:role/{self.scenario.function.name}-role"

    def _shard_id(self, index: int) -> str:
        if self.kinesis:
            return f"shardId-{index:012d}"
        created = self.scenario.start_ms - 86_400_000 + index
        return f"shardId-{created:020d}-{self.world.ids.hex(8)}"

    def _shard_for(self, key: str) -> str:
        """The shard whose hash key range holds the MD5 of the partition key, as Kinesis assigns it."""
        return self.shard_ids[_hash(key) * len(self.shard_ids) >> 128]

    def _first_sequence(self) -> int:
        rng = self.world.ids.rng
        if self.kinesis:
            return int("496" + "".join(rng.choice("0123456789") for _ in range(53)))
        return rng.randint(1, 8) * 10**20 + rng.randrange(10**12)

    def _sequence(self, shard_id: str) -> str:
        """The next sequence number of `shard_id`: increasing, with gaps as the services leave them."""
        rng = self.world.ids.rng
        value = self.next_sequence[shard_id]
        self.next_sequence[shard_id] = value + (
            rng.randint(10**18, 10**24) if self.kinesis else rng.randint(1, 10**6)
        )
        return str(value)


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.md5(key.encode(), usedforsecurity=False).digest(), "big")


def _batch_fault(records: list[_Record]) -> Fault:
    """The first fault any record of the batch calls for on this attempt: it fails the whole invocation."""
    for record in records:
        fault = record.spec.fault_for(record.tries)
        if fault.kind != "ok":
            return fault
    return OK


def _failed(outcome: str) -> str:
    """A record's attempt outcome when the batch (or this record) did not succeed."""
    return "error" if outcome == "success" else outcome


def dynamodb_json(value: dict[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's attribute-value JSON ({"S": ...}, {"N": "..."}, {"M": ...}, ...)."""
    return {str(k): _attribute(v) for k, v in value.items()}


def _attribute(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    if isinstance(value, dict):
        return {"M": dynamodb_json(value)}
    if isinstance(value, list | tuple):
        return {"L": [_attribute(v) for v in value]}
    if value is None:
        return {"NULL": True}
    if isinstance(value, bytes):
        return {"B": base64.b64encode(value).decode("ascii")}
    return {"S": value.isoformat() if hasattr(value, "isoformat") else str(value)}


def _check_destinations(scenario: Scenario) -> None:
    if scenario.on_success is not None:
        raise ValueError("stream event source mappings have no on-success destination")
    if scenario.dlq is not None:
        raise ValueError("stream event source mappings have no DLQ: use destinations.on_failure")
    if scenario.on_failure is not None and scenario.on_failure.type not in ON_FAILURE_TYPES:
        raise ValueError(f"a stream on-failure destination must be one of {', '.join(ON_FAILURE_TYPES)}")


def settings(given: dict[str, Any], source: str) -> dict[str, Any]:
    """The mapping's settings: documented defaults overridden by the scenario's [source] table."""
    known = {**SETTINGS, **(DYNAMODB_SETTINGS if source == "dynamodb" else {})}
    unknown = set(given) - set(known)
    if unknown:
        raise ValueError(f"unknown {source} setting {sorted(unknown)[0]!r}")
    merged = {**known, **given}
    if merged["poll_interval_s"] is None:
        merged["poll_interval_s"] = POLL_INTERVAL_S[source]
    _check_ranges(merged, source)
    return merged


def _check_ranges(s: dict[str, Any], source: str) -> None:
    checks = [
        (int(s["shards"]) >= 1, "shards must be at least 1"),
        (1 <= int(s["batch_size"]) <= 10000, "batch_size must be 1-10000"),
        (0 <= float(s["maximum_batching_window_s"]) <= 300, "maximum_batching_window_s must be 0-300"),
        (
            -1 <= int(s["maximum_retry_attempts"]) <= 10000,
            "maximum_retry_attempts must be -1 (forever) or 0-10000",
        ),
        (
            int(s["maximum_record_age_s"]) == -1 or 60 <= int(s["maximum_record_age_s"]) <= 604800,
            "maximum_record_age_s must be either -1 (forever) or between 60 and 604800",
        ),
        (1 <= int(s["parallelization_factor"]) <= 10, "parallelization_factor must be 1-10"),
        (0 <= float(s["duplicate_rate"]) <= 1, "duplicate_rate must be 0-1"),
        (float(s["poll_interval_s"]) > 0, "poll_interval_s must be positive"),
        (
            bool(s["retry_delays_s"]) and all(float(d) >= 0 for d in s["retry_delays_s"]),
            "retry_delays_s must be a non-empty list of seconds",
        ),
        (s["on_failure_request_id"] in ("last", "first"), "on_failure_request_id must be last or first"),
    ]
    if source == "kinesis":
        checks.append((24 <= float(s["retention_h"]) <= 8760, "retention_h must be 24-8760 for Kinesis"))
    else:
        checks.append(
            (float(s["retention_h"]) == 24, "a DynamoDB stream keeps records 24 hours: retention_h is 24")
        )
        checks.append(
            (
                s["stream_view_type"] in STREAM_VIEW_TYPES,
                f"stream_view_type must be one of {', '.join(STREAM_VIEW_TYPES)}",
            )
        )
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
