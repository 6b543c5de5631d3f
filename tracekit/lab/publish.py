"""Publish what a lab run left behind through the AWS APIs (`tracekit lab run --publish`).

The same artifacts `artifacts` writes as files go to the configured account or endpoint, each
resource created when missing:

- log events -> CloudWatch Logs PutLogEvents, per log stream, in chronological batches within the API
  limits (10,000 events, 1,048,576 bytes counting 26 bytes per event, spanning less than 24 hours);
- destination and DLQ messages -> SQS SendMessageBatch (10 per call, 256 KiB), body and message
  attributes as the run made them; SNS and EventBridge destinations are published as the SQS queue
  subscribed to them holds them (already wrapped), not re-sent through SNS or EventBridge;
- the source stream of a Kinesis scenario -> Kinesis PutRecords (500 records, 5 MiB per call), with
  the original partition keys and each record pinned to the shard of the same rank as its lab shard;
- S3 destination objects -> S3 PutObject.

Configuration is boto3's own: credentials, AWS_ENDPOINT_URL (and the per-service variants),
AWS_MAX_ATTEMPTS; retries are adaptive. The region is the configured one (AWS_REGION,
AWS_DEFAULT_REGION, the profile) so the artifacts land where the user's other tools look; only when
none is configured is it the scenario's `function.region`. The ARNs inside records keep the scenario's.

What a client cannot reproduce, and so differs from the files:
- CloudWatch Logs accepts events from the last 14 days up to 2 hours ahead and drops the rest
  (moto does the same). When any event falls outside that window, every event is shifted by one
  whole-second constant so the newest lands at the present, keeping every gap between events; the
  counts report it as `published_log_shift_seconds`. The text of the messages is not rewritten, and a
  run spanning more than the window still loses its oldest events (`unpublished_log_events_too_old`).
- SQS sets SentTimestamp, SenderId, ApproximateReceiveCount, DeadLetterQueueSourceArn and the message
  id itself; only AWSTraceHeader can be sent. FIFO messages keep the run's MessageGroupId and
  MessageDeduplicationId when it made them, otherwise one group and an id unique to this publish (so a
  second publish is not deduplicated away).
- Kinesis assigns its own sequence numbers and arrival times; DynamoDB streams cannot be written
  directly, so a DynamoDB scenario's stream records are counted as `unpublished_stream_records`.
- Lambda-destination payloads (objects under `lambda/`) are invocations of another function; they are
  counted as `unpublished_lambda_payloads`.
"""

from __future__ import annotations

import base64
import functools
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from tracekit.aws import Aws as AwsBase
from tracekit.aws import AwsError, sized_batches
from tracekit.aws import configured_region as aws_configured_region
from tracekit.aws import resend_failed as aws_resend_failed
from tracekit.errors import first_line
from tracekit.lab.scenario import Scenario
from tracekit.lab.world import LogEvent, Queue, SqsMessage, StreamRecord, World

LOG_BATCH_EVENTS = 10_000
LOG_BATCH_BYTES = 1_048_576
LOG_EVENT_OVERHEAD = 26  # bytes PutLogEvents counts per event on top of the message
LOG_BATCH_SPAN_MS = 24 * 3600 * 1000  # events of one call must span less than this
LOG_MAX_AGE_MS = 14 * 24 * 3600 * 1000
LOG_MAX_AHEAD_MS = 2 * 3600 * 1000
LOG_WINDOW_MARGIN_MS = 10 * 60 * 1000  # slack for the clock of whoever receives the events
SQS_BATCH_MESSAGES = 10
SQS_BATCH_BYTES = 262_144
KINESIS_BATCH_RECORDS = 500
KINESIS_BATCH_BYTES = 5 * 1024 * 1024
FIFO_GROUP = "tracekit-lab"
STREAM_WAIT = {"Delay": 2, "MaxAttempts": 90}

QUEUE_MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
BUCKET_MISSING = {"404", "NoSuchBucket", "NotFound"}

T = TypeVar("T")


class PublishError(AwsError):
    """An AWS call of --publish failed; names the action, the resource and what to do."""


def publish_world(world: World, scenario: Scenario, dead_letter_queues: set[str]) -> dict[str, int]:
    """Publish the run's logs, queue messages, source stream and S3 objects; return what was sent."""
    aws = Aws(configured_region() or scenario.function.region)
    counts = publish_logs(aws, world.logs, now_ms=int(time.time() * 1000))
    counts["published_messages"] = 0
    counts["published_dead_letters"] = 0
    for queue in world.queues.values():
        kind = "published_dead_letters" if queue.name in dead_letter_queues else "published_messages"
        counts[kind] += publish_queue(aws, queue)
    if scenario.source == "kinesis":
        counts["published_stream_records"] = publish_stream_records(aws, world.stream_records)
    else:
        counts["published_stream_records"] = 0
        _count_unpublished(counts, "unpublished_stream_records", len(world.stream_records))
    objects = {k: v for k, v in world.objects.items() if not k.startswith("lambda/")}
    counts["published_objects"] = publish_objects(aws, objects)
    _count_unpublished(counts, "unpublished_lambda_payloads", len(world.objects) - len(objects))
    return counts


def configured_region() -> str | None:
    """The region boto3's standard configuration names (environment, profile), if any."""
    try:
        return aws_configured_region()
    except AwsError as exc:
        raise PublishError("cannot publish: bad AWS configuration", exc.where) from None


class Aws(AwsBase):
    """AWS calls whose failures read "cannot publish: ..."."""

    def __init__(self, region: str) -> None:
        super().__init__(
            region,
            verb="cannot publish",
            retry_hint="The artifacts are written; fix this and run again with --publish",
            error_class=PublishError,
        )


def _count_unpublished(counts: dict[str, int], key: str, n: int) -> None:
    if n:
        counts[key] = n


# CloudWatch Logs


def publish_logs(aws: Aws, events: list[LogEvent], *, now_ms: int) -> dict[str, int]:
    """PutLogEvents every event into its group and stream, shifted in time when it must be."""
    shift = log_shift_ms(events, now_ms)
    oldest_accepted = now_ms - LOG_MAX_AGE_MS + LOG_WINDOW_MARGIN_MS
    streams: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    too_old = 0
    for event in events:
        timestamp = event.timestamp + shift
        if timestamp < oldest_accepted:
            too_old += 1
        else:
            streams[(event.log_group, event.log_stream)].append((timestamp, event.message))
    for group in sorted({group for group, _ in streams}):
        aws.call(
            "logs", "CreateLogGroup", f"log group {group}",
            tolerate=("ResourceAlreadyExistsException",), logGroupName=group,
        )  # fmt: skip
    published = sum(_put_stream(aws, group, stream, items) for (group, stream), items in streams.items())
    counts = {"published_log_events": published, "published_log_shift_seconds": shift // 1000}
    _count_unpublished(counts, "unpublished_log_events_too_old", too_old)
    return counts


def _put_stream(aws: Aws, group: str, stream: str, items: list[tuple[int, str]]) -> int:
    """Create the log stream if missing and put its (timestamp, message) events in time order."""
    where = f"log stream {group} {stream}"
    aws.call(
        "logs", "CreateLogStream", where, tolerate=("ResourceAlreadyExistsException",),
        logGroupName=group, logStreamName=stream,
    )  # fmt: skip
    items.sort(key=lambda item: item[0])  # stable: same-millisecond lines keep their order
    for batch in log_batches(items):
        response = aws.call(
            "logs", "PutLogEvents", where, logGroupName=group, logStreamName=stream,
            logEvents=[{"timestamp": ts, "message": message} for ts, message in batch],
        )  # fmt: skip
        _check_rejected(response, where)
    return len(items)


def log_shift_ms(events: list[LogEvent], now_ms: int) -> int:
    """0 when CloudWatch accepts every timestamp as it is; otherwise the whole-second shift that
    moves the newest event to `now_ms` (or just before it)."""
    if not events:
        return 0
    oldest = min(e.timestamp for e in events)
    newest = max(e.timestamp for e in events)
    fits = (
        oldest >= now_ms - LOG_MAX_AGE_MS + LOG_WINDOW_MARGIN_MS
        and newest <= now_ms + LOG_MAX_AHEAD_MS - LOG_WINDOW_MARGIN_MS
    )
    return 0 if fits else ((now_ms - newest) // 1000) * 1000


def log_batches(items: list[tuple[int, str]]) -> Iterator[list[tuple[int, str]]]:
    """Split time-sorted (timestamp, message) pairs into PutLogEvents calls within the API limits."""
    batch: list[tuple[int, str]] = []
    size = 0
    for timestamp, message in items:
        event_size = len(message.encode()) + LOG_EVENT_OVERHEAD
        if batch and (
            len(batch) == LOG_BATCH_EVENTS
            or size + event_size > LOG_BATCH_BYTES
            or timestamp - batch[0][0] >= LOG_BATCH_SPAN_MS
        ):
            yield batch
            batch, size = [], 0
        batch.append((timestamp, message))
        size += event_size
    if batch:
        yield batch


def _check_rejected(response: dict[str, Any], where: str) -> None:
    """Events were filtered to the accepted window, so a rejection means the clocks disagree."""
    rejected = response.get("rejectedLogEventsInfo")
    if rejected:
        raise PublishError(
            "cannot publish: CloudWatch Logs rejected log events as outside its time window",
            f"{where} ({rejected})",
            "Check this machine's clock against the endpoint's",
        )


# SQS


def publish_queue(aws: Aws, queue: Queue) -> int:
    """SendMessageBatch every message of `queue` into the queue of the same name (created if missing)."""
    if not queue.messages:
        return 0
    url = _queue_url(aws, queue)
    nonce = uuid.uuid4().hex
    entries = [_sqs_entry(queue, message, n, nonce) for n, message in enumerate(queue.messages)]
    send = functools.partial(_send_messages, aws, queue.name, url)
    for batch in sized_batches(entries, SQS_BATCH_MESSAGES, SQS_BATCH_BYTES, _sqs_entry_size):
        resend_failed(send, batch, f"sqs SendMessageBatch to queue {queue.name}")
    return len(entries)


def _send_messages(
    aws: Aws, queue: str, url: str, pending: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], str]]:
    """One SendMessageBatch call; returns the entries SQS failed on its side (worth resending)."""
    response = aws.call("sqs", "SendMessageBatch", f"queue {queue}", QueueUrl=url, Entries=pending)
    by_id = {entry["Id"]: entry for entry in pending}
    failed = response.get("Failed", [])
    for failure in failed:
        if failure.get("SenderFault"):
            raise PublishError(
                f"cannot publish: sqs SendMessageBatch refused message {failure['Id']}",
                f"queue {queue} ({failure.get('Code')}: {failure.get('Message', '')})",
                "The artifacts are written; this message cannot be sent as it is",
            )
    return [(by_id[f["Id"]], str(f.get("Code"))) for f in failed]


def _queue_url(aws: Aws, queue: Queue) -> str:
    where = f"queue {queue.name}"
    response = aws.call("sqs", "GetQueueUrl", where, tolerate=tuple(QUEUE_MISSING), QueueName=queue.name)
    if "QueueUrl" not in response:
        attributes = {"FifoQueue": "true"} if queue.fifo else {}
        response = aws.call("sqs", "CreateQueue", where, QueueName=queue.name, Attributes=attributes)
    return str(response["QueueUrl"])


def _sqs_entry(queue: Queue, message: SqsMessage, n: int, nonce: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": f"m{n}", "MessageBody": message.body}
    if message.message_attributes:
        entry["MessageAttributes"] = {
            name: _message_attribute(value) for name, value in message.message_attributes.items()
        }
    trace = message.attributes.get("AWSTraceHeader")
    if trace:
        entry["MessageSystemAttributes"] = {"AWSTraceHeader": {"DataType": "String", "StringValue": trace}}
    if queue.fifo:
        entry["MessageGroupId"] = message.attributes.get("MessageGroupId", FIFO_GROUP)
        entry["MessageDeduplicationId"] = message.attributes.get("MessageDeduplicationId", f"{nonce}-{n}")
    return entry


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A message attribute as SendMessage takes it; binary values saved as base64 text go back to bytes."""
    out: dict[str, Any] = {"DataType": value["DataType"]}
    if "StringValue" in value:
        out["StringValue"] = str(value["StringValue"])
    if "BinaryValue" in value:
        binary = value["BinaryValue"]
        out["BinaryValue"] = base64.b64decode(binary) if isinstance(binary, str) else bytes(binary)
    return out


def _sqs_entry_size(entry: dict[str, Any]) -> int:
    """Bytes SQS counts against the batch limit: the body plus each attribute's name, type and value."""
    size = len(entry["MessageBody"].encode())
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(value["DataType"].encode())
        size += len(value.get("StringValue", "").encode()) + len(value.get("BinaryValue", b""))
    return size


# Kinesis


def publish_stream_records(aws: Aws, records: list[StreamRecord]) -> int:
    """PutRecords the source stream's records, each stream created with one shard per lab shard."""
    by_stream: dict[str, list[StreamRecord]] = defaultdict(list)
    for record in records:
        by_stream[record.stream].append(record)
    for stream, items in by_stream.items():
        lab_shards = sorted({r.shard_id for r in items})
        hash_keys = _stream_hash_keys(aws, stream, len(lab_shards))
        pin = {shard: hash_keys[rank % len(hash_keys)] for rank, shard in enumerate(lab_shards)}
        items.sort(key=lambda r: (r.arrival_ms, int(r.sequence_number)))
        entries = [
            {"Data": r.data, "PartitionKey": r.partition_key, "ExplicitHashKey": pin[r.shard_id]}
            for r in items
        ]
        put = functools.partial(_put_records, aws, stream)
        for batch in sized_batches(entries, KINESIS_BATCH_RECORDS, KINESIS_BATCH_BYTES, _kinesis_size):
            resend_failed(put, batch, f"kinesis PutRecords to stream {stream}")
    return len(records)


def _put_records(aws: Aws, stream: str, pending: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """One PutRecords call; returns the records Kinesis failed (throttled or internal failure)."""
    response = aws.call("kinesis", "PutRecords", f"stream {stream}", StreamName=stream, Records=pending)
    if not response.get("FailedRecordCount"):
        return []
    results = zip(pending, response["Records"], strict=True)
    return [(entry, str(result["ErrorCode"])) for entry, result in results if "ErrorCode" in result]


def _stream_hash_keys(aws: Aws, stream: str, shards: int) -> list[str]:
    """The starting hash key of each open shard of `stream` (created with `shards` shards if missing)."""
    where = f"stream {stream}"
    summary = aws.call(
        "kinesis", "DescribeStreamSummary", where, tolerate=("ResourceNotFoundException",), StreamName=stream
    )
    if "StreamDescriptionSummary" not in summary:
        aws.call("kinesis", "CreateStream", where, StreamName=stream, ShardCount=shards)
    try:
        aws.client("kinesis").get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig=STREAM_WAIT)
    except Exception as exc:  # WaiterError or a transport error while polling
        raise PublishError(
            "cannot publish: kinesis stream did not become ACTIVE", f"{where} ({first_line(exc)})"
        ) from None
    open_shards = []
    params: dict[str, Any] = {"StreamName": stream}
    while True:
        page = aws.call("kinesis", "ListShards", where, **params)
        open_shards += [s for s in page["Shards"] if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
        if not page.get("NextToken"):
            break
        params = {"NextToken": page["NextToken"]}
    open_shards.sort(key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    return [str(s["HashKeyRange"]["StartingHashKey"]) for s in open_shards]


def _kinesis_size(entry: dict[str, Any]) -> int:
    return len(entry["Data"]) + len(entry["PartitionKey"].encode())


# S3


def publish_objects(aws: Aws, objects: dict[str, bytes]) -> int:
    """PutObject each "bucket/key" object, creating its bucket in the region when missing."""
    buckets: set[str] = set()
    for path, body in objects.items():
        bucket, _, key = path.partition("/")
        if bucket not in buckets:
            _ensure_bucket(aws, bucket)
            buckets.add(bucket)
        aws.call("s3", "PutObject", f"s3://{path}", Bucket=bucket, Key=key, Body=body)
    return len(objects)


def _ensure_bucket(aws: Aws, bucket: str) -> None:
    where = f"bucket {bucket}"
    head = aws.call("s3", "HeadBucket", where, tolerate=tuple(BUCKET_MISSING), Bucket=bucket)
    if "Error" not in head:
        return
    params: dict[str, Any] = {"Bucket": bucket}
    if aws.region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
        params["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    aws.call("s3", "CreateBucket", where, tolerate=("BucketAlreadyOwnedByYou",), **params)


# Batching and partial failures


def resend_failed(
    send: Callable[[list[T]], list[tuple[T, str]]],
    entries: list[T],
    what: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Send `entries`, resending what a batch call reports as failed (see tracekit.aws.resend_failed)."""
    aws_resend_failed(
        send,
        entries,
        what,
        sleep=sleep,
        error_class=PublishError,
        verb="cannot publish",
        todo="Wait for the throttling to pass and run again with --publish",
    )
