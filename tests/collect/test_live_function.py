"""`tracekit collect function` against a real moto server: discovery, the configuration tables, the
sources it collects and the ones it must leave alone, and its one-line errors.

Every expected value is what the test put into moto through boto3 (a function created here, not by
`lab --publish`). moto 5.2.5 keeps neither LoggingConfig nor DeadLetterConfig and returns every event
source mapping in one page; where a test needs those, a test proxy answers the one call with the
shape the Lambda API reference gives (tests/faultproxy.py `reply`), and the docstring says so.
"""

from __future__ import annotations

import datetime as dt
import io
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.faultproxy import FaultProxy, Rule
from tracekit import jsonio
from tracekit.collect.functions import FunctionRequest, collect_function, discover
from tracekit.collect.live import CollectReport, collect_aws
from tracekit.store import Store

ACCOUNT = "123456789012"
REGION = "eu-west-1"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CliRun = Callable[..., Any]


# -- building a function in moto by hand ---------------------------------------------------------


def create_function(
    name: str, *, timeout: int = 7, memory: int = 256, env: dict[str, str] | None = None
) -> str:
    role = boto3.client("iam").create_role(
        RoleName=f"role-{name}",
        AssumeRolePolicyDocument=jsonio.dumps(
            {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]}
        ),
    )["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    created = boto3.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": package.getvalue()},
        Timeout=timeout,
        MemorySize=memory,
        Environment={"Variables": env or {}},
    )
    return str(created["FunctionArn"])


def queue(name: str, **attributes: str) -> tuple[str, str]:
    """(URL, ARN) of a new queue."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def put_logs(group: str, stream: str, messages: list[str]) -> None:
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    start = int(time.time() * 1000) - 60_000
    events = [{"timestamp": start + n, "message": m} for n, m in enumerate(messages)]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


LOG_LINES = (FIXTURES / "logs/python_cold_start_xray.txt").read_text().splitlines()
REQUEST_ID = "3f1c2a9e-7b44-4d1e-9a0c-51d2e8b7c601"  # the one invocation in LOG_LINES


def collect(store_dir: Path, name: str, **options: Any) -> tuple[Store, CollectReport]:
    with Store.open(store_dir, create=True) as store, store.writing():
        report = collect_function(store, collect_aws(), FunctionRequest(name, progress=False, **options))
    return store, report


@pytest.fixture
def orders(aws_endpoint: str) -> dict[str, str]:
    """Function `orders`: an async invoke config (SQS on-success, SNS on-failure), an SQS mapping whose
    source queue has a redrive DLQ, a Kinesis mapping with an S3 on-failure destination, a message in
    each queue and a record object in the bucket."""
    arn = create_function("orders", env={"DB_PASSWORD": "hunter2"})
    ok_url, ok_arn = queue("orders-ok")
    topic = boto3.client("sns").create_topic(Name="orders-alerts")["TopicArn"]
    boto3.client("lambda").put_function_event_invoke_config(
        FunctionName="orders",
        MaximumRetryAttempts=1,
        MaximumEventAgeInSeconds=3600,
        DestinationConfig={"OnSuccess": {"Destination": ok_arn}, "OnFailure": {"Destination": topic}},
    )
    dlq_url, dlq_arn = queue("orders-in-dlq")
    source_url, source_arn = queue(
        "orders-in",
        VisibilityTimeout="50",
        RedrivePolicy=jsonio.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 4}),
    )
    lam = boto3.client("lambda")
    # Disabled: moto would try to invoke the function (Docker) for an enabled SQS mapping.
    lam.create_event_source_mapping(
        EventSourceArn=source_arn,
        FunctionName="orders",
        BatchSize=5,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        Enabled=False,
    )
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="orders-stream", ShardCount=1)
    stream_arn = kinesis.describe_stream_summary(StreamName="orders-stream")["StreamDescriptionSummary"][
        "StreamARN"
    ]
    boto3.client("s3").create_bucket(
        Bucket="orders-failures", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    lam.create_event_source_mapping(
        EventSourceArn=stream_arn,
        FunctionName="orders",
        StartingPosition="TRIM_HORIZON",
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=3,
        MaximumRecordAgeInSeconds=600,
        DestinationConfig={"OnFailure": {"Destination": "arn:aws:s3:::orders-failures"}},
        Enabled=False,
    )
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=ok_url, MessageBody=(FIXTURES / "destinations/async_success.json").read_text())
    sqs.send_message(QueueUrl=dlq_url, MessageBody='{"orderId": "O-1", "quantity": "two"}')
    sqs.send_message(QueueUrl=source_url, MessageBody='{"orderId": "O-2"}')
    boto3.client("s3").put_object(
        Bucket="orders-failures",
        Key="aws/lambda/esm-uuid/shardId-000000000000/2024/05/23/2024-05-23T11.00.01-abc",
        Body=(FIXTURES / "destinations/s3_object_kinesis_with_payload.json").read_bytes(),
    )
    put_logs("/aws/lambda/orders", "2024/05/23/[$LATEST]0a1b", LOG_LINES)
    return {
        "function": arn,
        "ok": ok_arn,
        "topic": topic,
        "dlq": dlq_arn,
        "source": source_arn,
        "source_url": source_url,
        "stream": stream_arn,
    }


# -- discovery and what is stored -----------------------------------------------------------------


def test_discovery_is_stored_as_the_function_and_its_mappings(orders: dict[str, str], tmp_path: Path) -> None:
    store, _ = collect(tmp_path / "store", "orders")
    [function] = store.query("SELECT * FROM function_configs")
    assert {k: function[k] for k in (
        "function_name", "function_arn", "region", "timeout_s", "memory_size_mb", "log_group", "log_format",
        "dead_letter_target_arn", "has_invoke_config", "maximum_retry_attempts", "maximum_event_age_s",
        "on_success_destination", "on_failure_destination",
    )} == {
        "function_name": "orders", "function_arn": orders["function"], "region": REGION, "timeout_s": 7,
        "memory_size_mb": 256, "log_group": "/aws/lambda/orders", "log_format": "Text",
        "dead_letter_target_arn": None, "has_invoke_config": True, "maximum_retry_attempts": 1,
        "maximum_event_age_s": 3600, "on_success_destination": orders["ok"],
        "on_failure_destination": orders["topic"],
    }  # fmt: skip
    raw = jsonio.loads(function["configuration"])  # the raw answer is kept, but not secrets
    assert raw["FunctionName"] == "orders"
    assert raw["Environment"] == {"Variables": {"DB_PASSWORD": "<redacted by tracekit>"}}
    assert "hunter2" not in function["configuration"]
    mappings = {m["source"]: m for m in store.query("SELECT * FROM event_source_mappings")}
    assert set(mappings) == {"sqs", "kinesis"}
    sqs, kinesis = mappings["sqs"], mappings["kinesis"]
    assert (sqs["event_source_arn"], sqs["batch_size"], sqs["report_batch_item_failures"]) == (
        orders["source"],
        5,
        True,
    )
    assert (sqs["queue_visibility_timeout_s"], sqs["queue_max_receive_count"]) == (50, 4)
    assert sqs["queue_dead_letter_target_arn"] == orders["dlq"]
    assert (kinesis["event_source_arn"], kinesis["bisect_batch_on_function_error"]) == (
        orders["stream"],
        True,
    )
    assert (kinesis["maximum_retry_attempts"], kinesis["maximum_record_age_s"]) == (3, 600)
    assert kinesis["on_failure_destination"] == "arn:aws:s3:::orders-failures"
    assert kinesis["report_batch_item_failures"] is False


def test_every_readable_source_is_collected_and_the_others_are_named(
    orders: dict[str, str], tmp_path: Path
) -> None:
    store, report = collect(tmp_path / "store", "orders")
    assert report.resources[:2] == ["function orders", "log group /aws/lambda/orders"]
    collected = " ".join(report.resources)
    for expected in (
        f"queue {orders['ok']} (as destination)",
        f"queue {orders['dlq']} (as dlq)",
        "s3://orders-failures/aws/lambda/",
    ):
        assert expected in collected
    assert orders["source"] + " " not in collected + " "  # the source queue is the consumer's
    [sns_warning] = [w for w in report.warnings if orders["topic"] in w]
    assert "on-failure destination" in sns_warning and "subscribe an SQS queue" in sns_warning

    # One invocation in the logs; the on-success record from SQS and the Kinesis record from S3.
    assert [r["request_id"] for r in store.query("SELECT request_id FROM invocations")] == [REQUEST_ID]
    records = store.query("SELECT condition, envelope, source FROM destination_records ORDER BY condition")
    key = "aws/lambda/esm-uuid/shardId-000000000000/2024/05/23/2024-05-23T11.00.01-abc"
    assert [(r["condition"], r["source"]) for r in records] == [
        ("RetryAttemptsExhausted", f"s3://orders-failures/{key}"),
        ("Success", records[1]["source"]),
    ]
    assert records[1]["envelope"] == "sqs"
    [dead] = store.query("SELECT body, queue FROM dead_letters")
    assert dead == {"body": '{"orderId": "O-1", "quantity": "two"}', "queue": orders["dlq"]}


def test_the_source_queue_is_never_read(orders: dict[str, str], tmp_path: Path) -> None:
    collect(tmp_path / "store", "orders")
    [message] = boto3.client("sqs").receive_message(
        QueueUrl=orders["source_url"], AttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"  # this receive is its first


def test_a_second_collect_adds_a_snapshot_and_the_latest_is_current(
    orders: dict[str, str], tmp_path: Path
) -> None:
    collect(tmp_path / "store", "orders")
    lam = boto3.client("lambda")
    lam.delete_function_event_invoke_config(FunctionName="orders")  # moto appends on put: replace it
    lam.put_function_event_invoke_config(FunctionName="orders", MaximumRetryAttempts=0)
    store, report = collect(tmp_path / "store", "orders")
    assert (report.counts["function_configs"], report.counts["event_source_mappings"]) == (1, 2)
    rows = store.query(
        "SELECT batch, maximum_retry_attempts, on_failure_destination FROM function_configs ORDER BY batch"
    )
    assert [(r["maximum_retry_attempts"], r["on_failure_destination"]) for r in rows] == [
        (1, orders["topic"]), (0, None)
    ]  # fmt: skip
    # Nothing new was in the queues, the log group or the bucket.
    assert {k: report.counts[k] for k in ("log_events", "destination_records", "dead_letters")} == {
        "log_events": 0, "destination_records": 0, "dead_letters": 0
    }  # fmt: skip


# -- what moto cannot say: LoggingConfig, DeadLetterConfig, pages of mappings ------------------------


@pytest.fixture
def proxy(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with FaultProxy(aws_endpoint) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        yield running


CONFIGURATION = "GET /2015-03-31/functions/{name}/configuration"
MAPPINGS = "GET /2015-03-31/event-source-mappings"


def test_custom_log_group_json_format_and_dead_letter_queue(aws_endpoint: str, tmp_path: Path) -> None:
    """GetFunctionConfiguration is answered by the proxy: moto's own answer plus LoggingConfig and
    DeadLetterConfig as the Lambda API reference shapes them (moto 5.2.5 drops both)."""
    create_function("billing")
    _, dlq_arn = queue("billing-dlq")
    boto3.client("sqs").send_message(QueueUrl=queue_url("billing-dlq"), MessageBody="{}", MessageAttributes={
        "RequestID": {"DataType": "String", "StringValue": "11111111-aaaa-4bbb-8ccc-000000000001"},
        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
        "ErrorMessage": {"DataType": "String", "StringValue": "card declined"},
    })  # fmt: skip
    lines = (FIXTURES / "logs/json_format_platform.jsonl").read_text().splitlines()
    put_logs("/custom/billing", "2024/07/01/billing[$LATEST]9f", lines)
    configuration = boto3.client("lambda").get_function_configuration(FunctionName="billing")
    configuration.pop("ResponseMetadata")
    configuration["LoggingConfig"] = {
        "LogFormat": "JSON",
        "ApplicationLogLevel": "INFO",
        "SystemLogLevel": "INFO",
        "LogGroup": "/custom/billing",
    }
    configuration["DeadLetterConfig"] = {"TargetArn": dlq_arn}
    with FaultProxy(aws_endpoint) as proxy, pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.add(Rule(CONFIGURATION.format(name="billing"), reply=jsonio.loads(jsonio.dumps(configuration))))
        store, report = collect(tmp_path / "store", "billing")
    [function] = store.query("SELECT log_group, log_format, dead_letter_target_arn FROM function_configs")
    assert function == {
        "log_group": "/custom/billing",
        "log_format": "JSON",
        "dead_letter_target_arn": dlq_arn,
    }
    assert "log group /custom/billing" in report.resources
    assert {r["log_group"] for r in store.query("SELECT DISTINCT log_group FROM log_events")} == {
        "/custom/billing"
    }
    assert store.query("SELECT count(*) AS n FROM log_events")[0]["n"] == len(lines)
    # JSON-format platform records make invocations; the DLQ message is an async dead letter.
    assert store.query("SELECT count(*) AS n FROM invocations")[0]["n"] > 0
    [dead] = store.query("SELECT kind, request_id, error_message FROM dead_letters")
    assert dead == {
        "kind": "async_dlq",
        "request_id": "11111111-aaaa-4bbb-8ccc-000000000001",
        "error_message": "card declined",
    }


def queue_url(name: str) -> str:
    return str(boto3.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def test_event_source_mappings_are_read_page_by_page(proxy: FaultProxy) -> None:
    """moto returns every mapping in one page, so the proxy answers ListEventSourceMappings with two
    pages joined by NextMarker, shaped as the Lambda API reference gives them."""
    create_function("paged")
    page = {
        "UUID": "",
        "EventSourceArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q",
        "BatchSize": 10,
        "State": "Enabled",
    }
    proxy.add(
        Rule(
            MAPPINGS, reply={"EventSourceMappings": [{**page, "UUID": "first"}], "NextMarker": "m1"}, times=1
        )
    )
    proxy.add(Rule(MAPPINGS, reply={"EventSourceMappings": [{**page, "UUID": "second"}]}, times=1))
    found = discover(collect_aws(), "paged")
    assert [m["UUID"] for m in found.mappings] == ["first", "second"]
    assert proxy.counts[MAPPINGS] == 2


# -- errors are one line ------------------------------------------------------------------------------


def test_a_function_that_does_not_exist_is_one_line(
    aws_endpoint: str, tmp_path: Path, tracekit_cli: CliRun
) -> None:
    result = tracekit_cli("collect", "function", "nope", "--store", tmp_path / "store")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: cannot collect: function not found: function nope in {REGION}. "
        "Check the function name, --qualifier and --region (or AWS_REGION)"
    )


def test_a_missing_permission_names_the_action_and_the_function(
    proxy: FaultProxy, tmp_path: Path, tracekit_cli: CliRun
) -> None:
    create_function("locked")
    denied = "User is not authorized to perform: lambda:GetFunctionEventInvokeConfig"
    operation = "GET /2019-09-25/functions/locked/event-invoke-config"
    proxy.add(Rule(operation, error="AccessDeniedException", status=403, message=denied))
    result = tracekit_cli(
        "collect", "function", "locked", "--store", tmp_path / "store", env={"AWS_MAX_ATTEMPTS": "1"}
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "Error: cannot collect: lambda GetFunctionEventInvokeConfig failed: function locked ("
    )
    assert line.endswith("Allow lambda:GetFunctionEventInvokeConfig on it for these credentials")


def test_the_cli_prints_the_configuration_rows_and_what_it_collected(
    orders: dict[str, str], tmp_path: Path, tracekit_cli: CliRun
) -> None:
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    result = tracekit_cli(
        "collect", "function", "orders", "--since", since, "--store", tmp_path / "store", "-f", "json", "-q"
    )
    assert result.returncode == 0, result.stderr
    counts = jsonio.loads(result.stdout)
    assert (counts["function_configs"], counts["event_source_mappings"], counts["log_events"]) == (
        1,
        2,
        len(LOG_LINES),
    )
    assert (counts["destination_records"], counts["dead_letters"]) == (2, 1)
    assert counts["calls ListEventSourceMappings"] == 1
    assert f"warning: the on-failure destination {orders['topic']} is an SNS topic" in result.stderr
