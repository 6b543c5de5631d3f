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

The function itself is created too (updated when it exists), so `tracekit collect function` can
discover the run as it would a real deployment: a stand-in zip handler (the lab ran the real one; publish
never invokes anything), an execution role `tracekit-lab-<function>` (created when missing, with an inline
policy for the targets below), the scenario's memory, timeout and log format (LoggingConfig), and its
failure configuration:
- async: PutFunctionEventInvokeConfig (MaximumRetryAttempts, MaximumEventAgeInSeconds, on-success and
  on-failure destinations) and DeadLetterConfig when the scenario has a DLQ;
- sqs: the source queue with its VisibilityTimeout, MessageRetentionPeriod and RedrivePolicy
  (maxReceiveCount, the DLQ's ARN), and an event source mapping (BatchSize, batching window,
  ReportBatchItemFailures);
- kinesis: an event source mapping on the stream (BatchSize, BisectBatchOnFunctionError,
  MaximumRetryAttempts, MaximumRecordAgeInSeconds, ParallelizationFactor, on-failure destination).
Every mapping is created disabled (State Disabled): an enabled one would make Lambda consume the
published artifacts with the stand-in handler. Destination targets exist after a publish: SQS queues,
SNS topics (CreateTopic), EventBridge buses (CreateEventBus), S3 buckets, and a stand-in function for a
Lambda destination. The SQS queue that holds an SNS or EventBridge target's messages is not subscribed
to it. A DynamoDB scenario's mapping is not created (its stream cannot be written), counted as
`unpublished_event_source_mappings`.

Emulators keep less: moto 5.2.5 drops LoggingConfig and DeadLetterConfig (GetFunctionConfiguration
returns neither), and on a Kinesis stream it invokes every mapping, enabled or not, for each record put
(and, without Docker, logs the failure to the function's log group), so the stream's records are put
before its mapping is created; a second publish of a Kinesis run on moto meets the mapping of the first.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import time
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tracekit import jsonio
from tracekit.aws import Aws as AwsBase
from tracekit.aws import AwsError, sized_batches
from tracekit.aws import configured_region as aws_configured_region
from tracekit.aws import resend_failed as aws_resend_failed
from tracekit.errors import first_line
from tracekit.lab.scenario import Destination, FunctionSpec, Scenario
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
FUNCTION_WAIT = {"Delay": 1, "MaxAttempts": 120}
ROLE_PROPAGATION_TRIES = 10  # a new IAM role takes seconds before Lambda may assume it
ROLE_PROPAGATION_PAUSE_S = 3.0
STUB_HANDLER = "tracekit_lab_stub.handler"
STUB_SOURCE = (
    b'"""Stand-in created by tracekit lab run --publish: the lab ran the real handler in virtual time."""\n'
    b"\n\ndef handler(event, context):\n"
    b'    raise RuntimeError("tracekit lab stand-in: this function is never meant to run")\n'
)
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
#: What the execution role needs on each kind of target for Lambda to accept the configuration.
TARGET_ACTIONS = {
    "sqs": ["sqs:SendMessage"],
    "sns": ["sns:Publish"],
    "eventbridge": ["events:PutEvents"],
    "s3": ["s3:PutObject", "s3:ListBucket"],
    "lambda": ["lambda:InvokeFunction"],
    "source-sqs": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
    "source-kinesis": [
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:ListShards",
        "kinesis:ListStreams",
    ],
}

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
    # Last: on moto a Kinesis mapping is invoked for every record put after it exists.
    counts.update(publish_function(aws, scenario))
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


# The Lambda function and its failure configuration


def publish_function(aws: Aws, scenario: Scenario) -> dict[str, int]:
    """Create or update the scenario's function, its execution role, its failure targets and its
    failure configuration (see the module docstring); never invokes anything."""
    spec = scenario.function
    role = _execution_role(aws, spec.name)
    grants: list[tuple[str, str]] = []  # (target kind, ARN) the role must be allowed to use
    targets = {}
    for label, destination in (
        ("dlq", scenario.dlq),
        ("on_success", scenario.on_success),
        ("on_failure", scenario.on_failure),
    ):
        if destination is not None:
            targets[label] = _target_arn(aws, destination, role)
            grants.append((destination.type, targets[label]))
    source_arn = _source_arn(aws, scenario, targets)
    if source_arn:
        grants.append((f"source-{scenario.source}", source_arn))
    _grant(aws, role, grants)
    dlq = targets.get("dlq") if scenario.source == "async" else None
    _ensure_function(aws, spec, role, dead_letter_arn=dlq)
    counts = {"published_functions": 1, "published_event_source_mappings": 0}
    if scenario.source == "async":
        _put_invoke_config(aws, scenario, targets)
    elif source_arn:
        _ensure_mapping(aws, scenario, source_arn, targets.get("on_failure"))
        counts["published_event_source_mappings"] = 1
    else:
        _count_unpublished(counts, "unpublished_event_source_mappings", 1)
    return counts


def _execution_role(aws: Aws, function: str) -> str:
    """The ARN of the role `tracekit-lab-<function>` (created, trusting Lambda, when missing)."""
    name = f"tracekit-lab-{function}"[:64]
    where = f"role {name}"
    found = aws.call("iam", "GetRole", where, tolerate=("NoSuchEntity",), RoleName=name)
    if "Role" not in found:
        found = aws.call(
            "iam", "CreateRole", where, RoleName=name, AssumeRolePolicyDocument=jsonio.dumps(LAMBDA_TRUST),
            Description="Execution role of a function created by tracekit lab run --publish",
        )  # fmt: skip
    return str(found["Role"]["Arn"])


def _grant(aws: Aws, role_arn: str, grants: list[tuple[str, str]]) -> None:
    """Allow the role what Lambda checks before it accepts a DLQ, destination or mapping."""
    statements = [
        {
            "Effect": "Allow",
            "Action": TARGET_ACTIONS[kind],
            "Resource": [arn, f"{arn}/*"] if kind == "s3" else arn,
        }
        for kind, arn in grants
    ]
    if not statements:
        return
    name = role_arn.rsplit("/", 1)[-1]
    document = {"Version": "2012-10-17", "Statement": statements}
    aws.call(
        "iam", "PutRolePolicy", f"role {name}", RoleName=name, PolicyName="tracekit-lab-failure-paths",
        PolicyDocument=jsonio.dumps(document),
    )  # fmt: skip


def _target_arn(aws: Aws, destination: Destination, role_arn: str) -> str:
    """The ARN of a DLQ or destination, the resource created when missing."""
    name = destination.name
    if destination.type == "sqs":
        return _queue_arn(aws, name)
    if destination.type == "sns":
        topic = aws.call("sns", "CreateTopic", f"topic {name}", Name=name)  # idempotent
        return str(topic["TopicArn"])
    if destination.type == "eventbridge":
        where = f"event bus {name}"
        bus = aws.call(
            "events", "DescribeEventBus", where, tolerate=("ResourceNotFoundException",), Name=name
        )
        if "Arn" not in bus:
            bus = aws.call("events", "CreateEventBus", where, Name=name)
            return str(bus["EventBusArn"])
        return str(bus["Arn"])
    if destination.type == "s3":
        _ensure_bucket(aws, name)
        return f"arn:aws:s3:::{name}"
    stand_in = FunctionSpec(name=name, handler_file=Path(STUB_HANDLER), handler_name="handler")
    return _ensure_function(aws, stand_in, role_arn, dead_letter_arn=None)


def _queue_arn(aws: Aws, name: str, attributes: dict[str, str] | None = None) -> str:
    """The ARN of queue `name` (created when missing), after setting `attributes` on it."""
    url = _queue_url(aws, Queue(name=name, arn="", url="", fifo=name.endswith(".fifo")))
    where = f"queue {name}"
    if attributes:
        aws.call("sqs", "SetQueueAttributes", where, QueueUrl=url, Attributes=attributes)
    found = aws.call("sqs", "GetQueueAttributes", where, QueueUrl=url, AttributeNames=["QueueArn"])
    return str(found["Attributes"]["QueueArn"])


def _source_arn(aws: Aws, scenario: Scenario, targets: dict[str, str]) -> str | None:
    """The SQS source queue (with its redrive policy) or Kinesis stream; None for async and DynamoDB."""
    if scenario.source == "sqs":
        from tracekit.lab.models.sqs import settings as sqs_settings

        s = sqs_settings(scenario.settings, scenario.function)
        attributes = {
            "VisibilityTimeout": str(int(s["visibility_timeout_s"])),
            "MessageRetentionPeriod": str(int(s["message_retention_s"])),
        }
        if s["dlq"]:
            policy = {
                "deadLetterTargetArn": _queue_arn(aws, s["dlq"]),
                "maxReceiveCount": int(s["max_receive_count"]),
            }
            attributes["RedrivePolicy"] = jsonio.dumps(policy)
        return _queue_arn(aws, s["queue"], attributes)
    if scenario.source == "kinesis":
        s = _stream_settings(scenario)
        stream = str(s["stream"] or f"{scenario.function.name}-stream")
        _stream_hash_keys(aws, stream, int(s["shards"]))  # creates it when missing, waits until ACTIVE
        summary = aws.call("kinesis", "DescribeStreamSummary", f"stream {stream}", StreamName=stream)
        return str(summary["StreamDescriptionSummary"]["StreamARN"])
    return None


def _stream_settings(scenario: Scenario) -> dict[str, Any]:
    from tracekit.lab.models.streams import settings as stream_settings

    return stream_settings(scenario.settings, scenario.source)


def _function_config(spec: FunctionSpec, role_arn: str, dead_letter_arn: str | None) -> dict[str, Any]:
    return {
        "Role": role_arn,
        "Runtime": spec.runtime,
        "Handler": STUB_HANDLER,
        "MemorySize": spec.memory_mb,
        "Timeout": max(1, math.ceil(spec.timeout_s)),
        "LoggingConfig": {"LogFormat": "JSON" if spec.log_format == "json" else "Text"},
        # An empty TargetArn removes a DLQ an earlier publish configured.
        "DeadLetterConfig": {"TargetArn": dead_letter_arn or ""},
        "Description": "tracekit lab stand-in: its logs and failure artifacts were published by tracekit",
    }


def _ensure_function(aws: Aws, spec: FunctionSpec, role_arn: str, *, dead_letter_arn: str | None) -> str:
    """Create the function, or update its configuration; returns its ARN once it is ready."""
    where = f"function {spec.name}"
    config = _function_config(spec, role_arn, dead_letter_arn)
    found = aws.call(
        "lambda",
        "GetFunctionConfiguration",
        where,
        tolerate=("ResourceNotFoundException",),
        FunctionName=spec.name,
    )
    if "FunctionArn" in found:
        done = _settled_call(
            aws, "lambda", "UpdateFunctionConfiguration", where, FunctionName=spec.name, **config
        )
        waiter = "function_updated_v2"
    else:
        if not dead_letter_arn:
            del config["DeadLetterConfig"]
        code = {"ZipFile": _stub_zip()}
        done = _settled_call(
            aws, "lambda", "CreateFunction", where, FunctionName=spec.name, Code=code, **config
        )
        waiter = "function_active_v2"
    try:
        aws.client("lambda").get_waiter(waiter).wait(FunctionName=spec.name, WaiterConfig=FUNCTION_WAIT)
    except Exception as exc:  # WaiterError or a transport error while polling
        raise PublishError(
            "cannot publish: the function did not become ready", f"{where} ({first_line(exc)})"
        ) from None
    return str(done["FunctionArn"])


def _settled_call(aws: Aws, service: str, operation: str, where: str, **params: Any) -> dict[str, Any]:
    """`operation`, retried while Lambda refuses a role that IAM has not propagated yet."""
    for _ in range(ROLE_PROPAGATION_TRIES - 1):
        response = aws.call(service, operation, where, tolerate=("InvalidParameterValueException",), **params)
        if "Error" not in response:
            return response
        if "role" not in str(response["Error"].get("Message", "")).lower():
            break
        time.sleep(ROLE_PROPAGATION_PAUSE_S)
    # The last try, or a refusal that is not about the role: its failure is the one-line error.
    return aws.call(service, operation, where, **params)


def _stub_zip() -> bytes:
    """The stand-in handler as a deployment package (fixed timestamps: the same bytes every time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("tracekit_lab_stub.py", (1980, 1, 1, 0, 0, 0)), STUB_SOURCE)
    return buffer.getvalue()


def _put_invoke_config(aws: Aws, scenario: Scenario, targets: dict[str, str]) -> None:
    from tracekit.lab.models.asynchronous import settings as async_settings

    s = async_settings(scenario.settings)
    destinations = {
        key: {"Destination": targets[label]}
        for key, label in (("OnSuccess", "on_success"), ("OnFailure", "on_failure"))
        if label in targets
    }
    name = scenario.function.name
    _settled_call(
        aws, "lambda", "PutFunctionEventInvokeConfig", f"function {name}", FunctionName=name,
        MaximumRetryAttempts=int(s["maximum_retry_attempts"]),
        MaximumEventAgeInSeconds=int(s["maximum_event_age_s"]), DestinationConfig=destinations,
    )  # fmt: skip


def _mapping_settings(scenario: Scenario, on_failure: str | None) -> dict[str, Any]:
    """UpdateEventSourceMapping parameters of the scenario's mapping (disabled, see the docstring)."""
    if scenario.source == "sqs":
        from tracekit.lab.models.sqs import settings as sqs_settings

        s = sqs_settings(scenario.settings, scenario.function)
        params: dict[str, Any] = {"Enabled": False, "BatchSize": int(s["batch_size"])}
        if float(s["maximum_batching_window_s"]):
            params["MaximumBatchingWindowInSeconds"] = int(s["maximum_batching_window_s"])
    else:
        s = _stream_settings(scenario)
        params = {
            "Enabled": False,
            "BatchSize": int(s["batch_size"]),
            "MaximumBatchingWindowInSeconds": int(s["maximum_batching_window_s"]),
            "BisectBatchOnFunctionError": bool(s["bisect_batch_on_function_error"]),
            "MaximumRetryAttempts": int(s["maximum_retry_attempts"]),
            "MaximumRecordAgeInSeconds": int(s["maximum_record_age_s"]),
            "ParallelizationFactor": int(s["parallelization_factor"]),
            "DestinationConfig": {"OnFailure": {"Destination": on_failure}} if on_failure else {},
        }
    params["FunctionResponseTypes"] = ["ReportBatchItemFailures"] if s["report_batch_item_failures"] else []
    return params


def _ensure_mapping(aws: Aws, scenario: Scenario, source_arn: str, on_failure: str | None) -> None:
    """Create the function's mapping on `source_arn`, or update the one an earlier publish created."""
    name = scenario.function.name
    where = f"event source mapping of function {name} on {source_arn}"
    params = _mapping_settings(scenario, on_failure)
    found = aws.call("lambda", "ListEventSourceMappings", where, EventSourceArn=source_arn, FunctionName=name)
    existing = found.get("EventSourceMappings", [])
    if existing:
        _settled_call(
            aws,
            "lambda",
            "UpdateEventSourceMapping",
            where,
            UUID=existing[0]["UUID"],
            FunctionName=name,
            **params,
        )
        return
    if scenario.source == "kinesis":
        params["StartingPosition"] = "TRIM_HORIZON"
    _settled_call(
        aws,
        "lambda",
        "CreateEventSourceMapping",
        where,
        EventSourceArn=source_arn,
        FunctionName=name,
        **params,
    )


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
