"""`tracekit collect function`: read a function's failure configuration through the Lambda API, store
it, and collect every source of failure artifacts that configuration names.

Discovery reads, without changing anything: GetFunctionConfiguration (timeout, memory, runtime,
LoggingConfig's log group and format, DeadLetterConfig), GetFunctionEventInvokeConfig (retries,
maximum event age, on-success and on-failure destinations; none is not an error), every page of
ListEventSourceMappings for the function, and GetQueueAttributes of each SQS source queue (visibility
timeout and redrive policy). The configuration goes into `function_configs` and
`event_source_mappings` as one snapshot per collect (the raw API answers kept beside the columns).

Then it collects what can be read: the log group; the function DLQ, SQS destinations, SQS on-failure
destinations of mappings and an SQS source queue's redrive DLQ (through `collect_queue`); S3
destinations (through `collect_s3`, under `aws/lambda/`: the keys AWS documents for mapping records
start so, and the lab writes async records there too; records elsewhere need `tracekit collect s3`).
It never reads a source queue or stream: their messages belong to the consumer. SNS topics, EventBridge
buses, Lambda functions and Kafka topics cannot be read back, so the report warns, naming the target
and what to do (subscribe a queue to it, then `tracekit collect queue`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tracekit import jsonio
from tracekit.aws import Aws
from tracekit.collect.live import CollectError, CollectReport
from tracekit.collect.progress import Meter
from tracekit.store import Store
from tracekit.store.schema import SCHEMAS

NOT_FOUND = ("ResourceNotFoundException",)
QUEUE_MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
#: Where collect function looks for destination records in an S3 bucket (see the module docstring).
S3_RECORDS_PREFIX = "aws/lambda/"
#: Targets that cannot be read back: what they are, and what to do instead ({role}: dlq, destination).
UNREADABLE = {
    "sns": (
        "an SNS topic",
        "subscribe an SQS queue to it and collect that queue: tracekit collect queue QUEUE --as {role}",
    ),
    "events": (
        "an EventBridge event bus",
        "add a rule that sends these events to an SQS queue and collect that queue: "
        "tracekit collect queue QUEUE --as {role}",
    ),
    "lambda": (
        "a Lambda function",
        "its invocations carry the records: collect that function, or send the records to an SQS queue",
    ),
    "kafka": ("a Kafka topic", "read the topic with a Kafka consumer"),
}
#: Values of the function's environment variables are left out of the stored configuration.
REDACTED = "<redacted by tracekit>"


@dataclass
class Discovery:
    """What the Lambda (and SQS) APIs say about one function's failure paths."""

    name: str
    qualifier: str | None
    region: str
    #: GetFunctionConfiguration's answer.
    configuration: dict[str, Any]
    #: GetFunctionEventInvokeConfig's answer, None when the function has none (AWS defaults apply).
    invoke_config: dict[str, Any] | None
    #: Every event source mapping of the function.
    mappings: list[dict[str, Any]] = field(default_factory=list)
    #: GetQueueAttributes of each SQS source queue, by queue ARN (None: the queue is gone).
    queues: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @property
    def log_group(self) -> str:
        """LoggingConfig's log group, or the default one Lambda logs to."""
        custom = (self.configuration.get("LoggingConfig") or {}).get("LogGroup")
        return str(custom or f"/aws/lambda/{self.name}")

    @property
    def dead_letter_arn(self) -> str | None:
        return (self.configuration.get("DeadLetterConfig") or {}).get("TargetArn") or None

    def destination(self, condition: str) -> str | None:
        """The async destination ARN for `condition` (OnSuccess, OnFailure), if any."""
        config = (self.invoke_config or {}).get("DestinationConfig") or {}
        return (config.get(condition) or {}).get("Destination") or None


@dataclass(frozen=True)
class Target:
    """One source of failure artifacts to collect: an SQS queue or an S3 prefix."""

    kind: str  # "queue" | "s3"
    location: str  # queue ARN, or s3://bucket/prefix
    role: str  # "dlq" | "destination"
    why: str  # what it is to the function, for the report


#: `Aws.call`, or a wrapper of it.
Call = Callable[..., dict[str, Any]]


def discover(
    aws: Aws, name: str, qualifier: str | None = None, report: CollectReport | None = None
) -> Discovery:
    """Read a function's failure configuration; a function that does not exist is one clear line.

    Args:
        aws: AWS access (see `collect_aws`).
        name: the function name or ARN.
        qualifier: a version or alias.
        report: where to count the API calls made.

    Raises:
        CollectError: the function does not exist, a permission is missing, or AWS kept failing.
    """
    call = counted(aws, report or CollectReport())
    qualified = {"Qualifier": qualifier} if qualifier else {}
    where = f"function {name}" + (f":{qualifier}" if qualifier else "")
    configuration = call(
        "lambda", "GetFunctionConfiguration", where, tolerate=NOT_FOUND, FunctionName=name, **qualified
    )
    if "Error" in configuration:
        raise CollectError(
            "cannot collect: function not found",
            f"{where} in {aws.region}",
            "Check the function name, --qualifier and --region (or AWS_REGION)",
        )
    invoke_config = call(
        "lambda", "GetFunctionEventInvokeConfig", where, tolerate=NOT_FOUND, FunctionName=name, **qualified
    )
    found = Discovery(
        name=str(configuration.get("FunctionName") or name),  # a name, even when given an ARN
        qualifier=qualifier,
        region=aws.region,
        configuration=_plain(configuration),
        invoke_config=None if "Error" in invoke_config else _plain(invoke_config),
    )
    found.mappings = _mappings(call, f"{name}:{qualifier}" if qualifier else name, where)
    for mapping in found.mappings:
        arn = str(mapping.get("EventSourceArn") or "")
        if _service(arn) == "sqs" and arn not in found.queues:
            found.queues[arn] = _queue_attributes(call, arn)
    return found


def counted(aws: Aws, report: CollectReport) -> Call:
    """`aws.call`, counting each call in `report`."""

    def call(service: str, operation: str, resource: str, **params: Any) -> dict[str, Any]:
        report.call(operation)
        return aws.call(service, operation, resource, **params)

    return call


def _mappings(call: Call, function: str, where: str) -> list[dict[str, Any]]:
    """Every page of ListEventSourceMappings for `function`."""
    mappings: list[dict[str, Any]] = []
    params: dict[str, Any] = {"FunctionName": function}
    while True:
        page = call("lambda", "ListEventSourceMappings", where, **params)
        mappings += [_plain(m) for m in page.get("EventSourceMappings", [])]
        if not page.get("NextMarker"):
            return mappings
        params["Marker"] = page["NextMarker"]


def _queue_attributes(call: Call, arn: str) -> dict[str, Any] | None:
    """The source queue's attributes (None when it no longer exists)."""
    name, account = _arn_name(arn), arn.split(":")[4]
    where = f"queue {arn}"
    found = call(
        "sqs", "GetQueueUrl", where, tolerate=QUEUE_MISSING, QueueName=name, QueueOwnerAWSAccountId=account
    )
    if "QueueUrl" not in found:
        return None
    attributes = call(
        "sqs",
        "GetQueueAttributes",
        where,
        tolerate=QUEUE_MISSING,
        QueueUrl=found["QueueUrl"],
        AttributeNames=[
            "QueueArn",
            "VisibilityTimeout",
            "RedrivePolicy",
            "FifoQueue",
            "MessageRetentionPeriod",
        ],
    )
    return attributes.get("Attributes")


def _plain(response: dict[str, Any]) -> dict[str, Any]:
    """An API answer without botocore's ResponseMetadata, with datetimes as ISO text (JSON-ready), and
    without the values of environment variables, which often hold secrets."""
    value: dict[str, Any] = jsonio.loads(
        jsonio.dumps({k: v for k, v in response.items() if k != "ResponseMetadata"})
    )
    variables = (value.get("Environment") or {}).get("Variables")
    if isinstance(variables, dict):
        value["Environment"]["Variables"] = dict.fromkeys(variables, REDACTED)
    return value


def _service(arn: str) -> str:
    parts = arn.split(":")
    return parts[2] if len(parts) > 5 and parts[0] == "arn" else ""


def _arn_name(arn: str) -> str:
    """The name an SQS queue or S3 bucket ARN ends with."""
    return arn.split(":", 5)[-1]


# -- storing the configuration ----------------------------------------------------------------------


def _int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _redrive(attributes: dict[str, Any] | None) -> dict[str, Any]:
    text = (attributes or {}).get("RedrivePolicy")
    if not text:
        return {}
    policy = jsonio.loads(text) if isinstance(text, str) else text
    return policy if isinstance(policy, dict) else {}


def function_row(found: Discovery, collected_at: dt.datetime) -> dict[str, Any]:
    """The function_configs row of one collect."""
    config = found.configuration
    invoke = found.invoke_config
    logging = config.get("LoggingConfig") or {}
    row = {
        "function_name": found.name,
        "qualifier": found.qualifier,
        "function_arn": config.get("FunctionArn"),
        "region": found.region,
        "collected_at": collected_at,
        "runtime": config.get("Runtime"),
        "timeout_s": _int(config.get("Timeout")),
        "memory_size_mb": _int(config.get("MemorySize")),
        "log_group": found.log_group,
        # Lambda reports no LoggingConfig for functions that never set one: they log text.
        "log_format": logging.get("LogFormat") or "Text",
        "dead_letter_target_arn": found.dead_letter_arn,
        "has_invoke_config": invoke is not None,
        "maximum_retry_attempts": _int((invoke or {}).get("MaximumRetryAttempts")),
        "maximum_event_age_s": _int((invoke or {}).get("MaximumEventAgeInSeconds")),
        "on_success_destination": found.destination("OnSuccess"),
        "on_failure_destination": found.destination("OnFailure"),
        "configuration": jsonio.dumps(config, sort_keys=True),
        "invoke_config": None if invoke is None else jsonio.dumps(invoke, sort_keys=True),
    }
    row["uid"] = _uid(row)
    return row


def mapping_row(found: Discovery, mapping: dict[str, Any], collected_at: dt.datetime) -> dict[str, Any]:
    """The event_source_mappings row of one mapping in one collect."""
    arn = str(mapping.get("EventSourceArn") or "")
    queue = found.queues.get(arn)
    redrive = _redrive(queue)
    responses = mapping.get("FunctionResponseTypes") or []
    row = {
        "uuid": mapping.get("UUID"),
        "function_name": found.name,
        "qualifier": found.qualifier,
        "collected_at": collected_at,
        "event_source_arn": arn or None,
        "source": mapping_source(mapping),
        "state": mapping.get("State"),
        "batch_size": _int(mapping.get("BatchSize")),
        "maximum_batching_window_s": _int(mapping.get("MaximumBatchingWindowInSeconds")),
        "bisect_batch_on_function_error": mapping.get("BisectBatchOnFunctionError"),
        "maximum_retry_attempts": _int(mapping.get("MaximumRetryAttempts")),
        "maximum_record_age_s": _int(mapping.get("MaximumRecordAgeInSeconds")),
        "on_failure_destination": _mapping_on_failure(mapping),
        "report_batch_item_failures": "ReportBatchItemFailures" in responses,
        "starting_position": mapping.get("StartingPosition"),
        "parallelization_factor": _int(mapping.get("ParallelizationFactor")),
        "queue_visibility_timeout_s": _int((queue or {}).get("VisibilityTimeout")),
        "queue_max_receive_count": _int(redrive.get("maxReceiveCount")),
        "queue_dead_letter_target_arn": redrive.get("deadLetterTargetArn"),
        "configuration": jsonio.dumps(mapping, sort_keys=True),
        "queue_attributes": None if queue is None else jsonio.dumps(queue, sort_keys=True),
    }
    row["uid"] = _uid(row)
    return row


def mapping_source(mapping: dict[str, Any]) -> str:
    """What a mapping reads: sqs, kinesis, dynamodb, kafka (MSK or self-managed), mq, docdb."""
    arn = str(mapping.get("EventSourceArn") or "")
    service = _service(arn)
    if not service:
        return "kafka" if mapping.get("SelfManagedEventSource") else "unknown"
    return {"rds": "docdb", "mq": "mq"}.get(service, service)


def _mapping_on_failure(mapping: dict[str, Any]) -> str | None:
    config = mapping.get("DestinationConfig") or {}
    return (config.get("OnFailure") or {}).get("Destination") or None


def _uid(row: dict[str, Any]) -> str:
    """A snapshot's content id: the same answer collected at the same instant is one row."""
    text = jsonio.dumps({k: v for k, v in row.items() if k != "uid"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def store_configuration(store: Store, found: Discovery, collected_at: dt.datetime) -> dict[str, int]:
    """Write one snapshot (the function and its mappings) as one batch; caller holds the write lock."""
    tables = {
        "function_configs": [function_row(found, collected_at)],
        "event_source_mappings": [mapping_row(found, m, collected_at) for m in found.mappings],
    }
    batch = store.next_batch()
    con = store.connect(analysis=False)
    try:
        for table, rows in tables.items():
            if rows:
                con.register("tk_config_rows", _arrow(table, rows))
                try:
                    batch.copy(con, table, f"SELECT *, {batch.number}::BIGINT AS batch FROM tk_config_rows")
                finally:
                    con.unregister("tk_config_rows")
        batch.commit({"inputs": [f"lambda {found.name}"], "counts_added": dict(batch.counts)})
    except BaseException:
        batch.abort()
        raise
    finally:
        con.close()
    return {table: batch.counts.get(table, 0) for table in tables}


def _arrow(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    fields = [f for f in SCHEMAS[table] if f.name != "batch"]
    return pa.table({f.name: [r.get(f.name) for r in rows] for f in fields}, schema=pa.schema(fields))


# -- what to collect --------------------------------------------------------------------------------


def plan_targets(found: Discovery) -> tuple[list[Target], list[str]]:
    """The queues and S3 prefixes to collect, and a warning for each target that cannot be read."""
    targets: list[Target] = []
    warnings: list[str] = []

    def add(arn: str | None, role: str, why: str) -> None:
        if not arn:
            return
        service = _service(arn)
        if service == "sqs":
            target = Target("queue", arn, role, why)
        elif service == "s3":
            target = Target("s3", f"s3://{_arn_name(arn)}/{S3_RECORDS_PREFIX}", role, why)
        else:
            what, todo = UNREADABLE.get(
                service, (f"a {service or 'non-AWS'} target", "give it an SQS target")
            )
            warnings.append(
                f"{why} {arn} is {what}, which tracekit cannot read back: {todo.format(role=role)}"
            )
            return
        if all(t.location != target.location for t in targets):
            targets.append(target)

    add(found.dead_letter_arn, "dlq", "the function's DLQ")
    add(found.destination("OnSuccess"), "destination", "the on-success destination")
    add(found.destination("OnFailure"), "destination", "the on-failure destination")
    for mapping in found.mappings:
        source = str(mapping.get("EventSourceArn") or mapping.get("UUID"))
        add(
            _mapping_on_failure(mapping),
            "destination",
            f"the on-failure destination of the mapping on {source}",
        )
        arn = str(mapping.get("EventSourceArn") or "")
        if arn in found.queues:
            queue = found.queues[arn]
            if queue is None:
                warnings.append(
                    f"the source queue {arn} of a mapping no longer exists: its redrive DLQ is unknown"
                )
            add(
                _redrive(queue).get("deadLetterTargetArn"),
                "dlq",
                f"the redrive DLQ of the source queue {arn}",
            )
    return targets, warnings


# -- the command --------------------------------------------------------------------------------------


@dataclass
class FunctionRequest:
    """What `tracekit collect function` was asked to do."""

    #: The function name (or ARN).
    name: str
    #: A version or alias; None for $LATEST / the unqualified function.
    qualifier: str | None = None
    #: Logs from this time (None: the log collector's watermark or default look-back).
    since: dt.datetime | None = None
    #: Logs up to this time (None: now).
    until: dt.datetime | None = None
    #: Read logs with a Logs Insights query instead of FilterLogEvents.
    insights: bool = False
    #: Show a progress line on stderr for long reads.
    progress: bool = True


def collect_function(store: Store, aws: Aws, request: FunctionRequest) -> CollectReport:
    """Discover the function, store its configuration, then collect every source it names.

    The caller holds `store.writing()`. A source that fails stops the run with its one-line error;
    what was committed before stays, and running again resumes each source where it stopped.

    Raises:
        CollectError: the function does not exist, a permission is missing, or AWS kept failing.
    """
    report = CollectReport()
    found = discover(aws, request.name, request.qualifier, report)
    report.add_ingest_counts(store_configuration(store, found, dt.datetime.now(dt.UTC).replace(tzinfo=None)))
    report.resources.append(
        f"function {request.name}" + (f":{request.qualifier}" if request.qualifier else "")
    )
    _collect_logs(store, aws, found, request, report)
    targets, warnings = plan_targets(found)
    report.warnings += warnings
    for target in targets:
        with Meter(f"{target.why}: {target.location}", "items", enabled=request.progress) as meter:
            report.merge(_collect_target(store, aws, target, meter))
    return report


def _collect_logs(
    store: Store, aws: Aws, found: Discovery, request: FunctionRequest, report: CollectReport
) -> None:
    from tracekit.collect.cloudwatch import LogsRequest, collect_logs

    group = found.log_group
    listed = counted(aws, report)(
        "logs", "DescribeLogGroups", f"log group {group}", logGroupNamePrefix=group, limit=1
    )
    if not any(g.get("logGroupName") == group for g in listed.get("logGroups", [])):
        report.warnings.append(f"log group {group} does not exist yet: the function has not logged anything")
        return
    logs = LogsRequest(group, since=request.since, until=request.until, insights=request.insights)
    with Meter(f"log group {group}", "events", enabled=request.progress) as meter:
        report.merge(collect_logs(store, aws, logs, meter=meter))


def _collect_target(store: Store, aws: Aws, target: Target, meter: Meter) -> CollectReport:
    if target.kind == "queue":
        from tracekit.collect.queues import collect_queue

        return collect_queue(store, aws, target.location, role=target.role, meter=meter)
    from tracekit.collect.s3 import collect_s3

    return collect_s3(store, aws, target.location, meter=meter)
