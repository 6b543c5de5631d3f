"""`tracekit lab run --publish` against a real moto server: what arrives, read back through boto3.

Expected values come from the documented semantics and the API limits, never from publish's output;
the published logs are compared with the NDJSON file the same run wrote, since --publish must carry
the same artifacts.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from tracekit import jsonio
from tracekit.lab.publish import (
    LOG_BATCH_EVENTS,
    LOG_BATCH_SPAN_MS,
    PublishError,
    log_batches,
    log_shift_ms,
    publish_world,
    resend_failed,
)
from tracekit.lab.run import run_scenario
from tracekit.lab.scenario import Scenario, load_scenario
from tracekit.lab.world import LogEvent, StreamRecord, World

REPO = Path(__file__).resolve().parents[2]
ASYNC_RETRIES = REPO / "samples" / "scenarios" / "async-retries.toml"
GROUP = "/aws/lambda/orders-notify"
DAY_MS = 24 * 3600 * 1000
ACCOUNT = "123456789012"

CliRun = Callable[..., subprocess.CompletedProcess[str]]


# Reading back what arrived


def log_events(group: str) -> list[dict[str, Any]]:
    logs = boto3.client("logs")
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"logGroupName": group}
    while True:
        page = logs.filter_log_events(**params)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        params["nextToken"] = page["nextToken"]


def drain(queue: str) -> list[dict[str, Any]]:
    """Every message in `queue`, received with all attributes and deleted (so FIFO groups unblock)."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    out: list[dict[str, Any]] = []
    while True:
        page = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            VisibilityTimeout=300,
        ).get("Messages", [])
        if not page:
            return out
        out += page
        for message in page:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def shard_records(stream: str) -> dict[str, list[tuple[bytes, str]]]:
    kinesis = boto3.client("kinesis")
    out = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator, Limit=1000)["Records"]
        out[shard["ShardId"]] = [(r["Data"], r["PartitionKey"]) for r in records]
    return out


def artifact_logs(out: Path) -> list[dict[str, Any]]:
    [path] = (out / "logs").iterdir()
    return [jsonio.loads(line) for line in path.read_bytes().splitlines()]


def scenario_file(tmp_path: Path, source: str, region: str = "eu-west-1", **destinations: str) -> Scenario:
    """A scenario to hand to publish_world next to a World built by hand (its events never run)."""
    lines = [
        'name = "hand-built"',
        "[function]",
        'name = "hand-fn"',
        'handler = "handler.py:handler"',
        f'region = "{region}"',
        "[source]",
        f'type = "{source}"',
        "[destinations]",
        *(f'{key} = "{value}"' for key, value in destinations.items()),
        "[[events]]",
        "payload = {}",
    ]
    path = tmp_path / "hand-built.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_scenario(path)


def now_ms() -> int:
    return int(time.time() * 1000)


# The async sample, published end to end


def test_async_run_publishes_logs_destination_records_and_dead_letter(
    aws_endpoint: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    report = run_scenario(ASYNC_RETRIES, out, seed=3, publish=True)

    shift = report.counts["published_log_shift_seconds"] * 1000
    written = artifact_logs(out)
    published = log_events(GROUP)
    assert report.counts["published_log_events"] == len(written) == len(published)
    assert sorted((e["logStreamName"], e["timestamp"] - shift, e["message"]) for e in published) == sorted(
        (e["logStreamName"], e["timestamp"], e["message"]) for e in written
    )

    # Event 1 succeeds, event 2 succeeds on its third attempt: two on-success records.
    successes = [jsonio.loads(m["Body"]) for m in drain("orders-notify-success")]
    assert sorted(r["requestContext"]["approximateInvokeCount"] for r in successes) == [1, 3]
    assert {r["requestContext"]["condition"] for r in successes} == {"Success"}
    # Event 3 fails all 1 + 2 attempts: one on-failure record and one DLQ message.
    [failure] = [jsonio.loads(m["Body"]) for m in drain("orders-notify-failures")]
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    [dead] = drain("orders-notify-dlq")
    assert jsonio.loads(dead["Body"]) == {"order_id": 4712, "email": "c@invalid"}
    attributes = dead["MessageAttributes"]
    assert attributes["RequestID"] == {
        "DataType": "String",
        "StringValue": failure["requestContext"]["requestId"],
    }
    assert attributes["ErrorCode"] == {"DataType": "Number", "StringValue": "200"}
    assert attributes["ErrorMessage"]["StringValue"] == "mail service rejected the address for order 4712"
    assert report.counts["published_messages"] == 3
    assert report.counts["published_dead_letters"] == 1


def test_second_publish_of_a_fresh_run_adds_to_existing_resources(aws_endpoint: str, tmp_path: Path) -> None:
    first = run_scenario(ASYNC_RETRIES, tmp_path / "one", seed=3, publish=True)
    second = run_scenario(ASYNC_RETRIES, tmp_path / "two", seed=3, publish=True)
    assert first.counts["published_log_events"] == second.counts["published_log_events"] > 0
    assert len(log_events(GROUP)) == 2 * first.counts["published_log_events"]
    assert len(drain("orders-notify-success")) == 4
    assert len(drain("orders-notify-dlq")) == 2


def test_cli_publish_subprocess(aws_endpoint: str, tmp_path: Path, tracekit_cli: CliRun) -> None:
    result = tracekit_cli("lab", "run", ASYNC_RETRIES, "--out", tmp_path / "out", "--publish", "-f", "json")
    assert result.returncode == 0, result.stderr
    counts = jsonio.loads(result.stdout)
    assert counts["published_dead_letters"] == 1
    assert len(log_events(GROUP)) == counts["published_log_events"] == counts["log_events"]
    [dead] = drain("orders-notify-dlq")
    assert jsonio.loads(dead["Body"])["order_id"] == 4712


# The function and its failure configuration, as the scenario files say (collect function reads them)

SCENARIOS = REPO / "samples" / "scenarios"


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:eu-west-1:{ACCOUNT}:{name}"


def role_policy(function: str) -> dict[str, Any]:
    iam = boto3.client("iam")
    role = f"tracekit-lab-{function}"
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    trust = jsonio.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    policy = iam.get_role_policy(RoleName=role, PolicyName="tracekit-lab-failure-paths")["PolicyDocument"]
    return jsonio.loads(policy) if isinstance(policy, str) else dict(policy)


def test_an_async_run_creates_the_function_and_its_invoke_config(aws_endpoint: str, tmp_path: Path) -> None:
    # async-retries.toml: 128 MB, 3 s, maximum_retry_attempts 2, no maximum_event_age_s (AWS default
    # 21600 s), on_success / on_failure / dlq on three SQS queues.
    for n in range(2):  # the second publish updates what the first created
        counts = run_scenario(ASYNC_RETRIES, tmp_path / f"out{n}", seed=3, publish=True).counts
        assert (counts["published_functions"], counts["published_event_source_mappings"]) == (1, 0)
    lam = boto3.client("lambda")
    [function] = lam.list_functions()["Functions"]
    assert (function["FunctionName"], function["MemorySize"], function["Timeout"]) == (
        "orders-notify",
        128,
        3,
    )
    assert function["Role"] == f"arn:aws:iam::{ACCOUNT}:role/tracekit-lab-orders-notify"
    invoke = lam.get_function_event_invoke_config(FunctionName="orders-notify")
    assert (invoke["MaximumRetryAttempts"], invoke["MaximumEventAgeInSeconds"]) == (2, 21600)
    assert invoke["DestinationConfig"] == {
        "OnSuccess": {"Destination": queue_arn("orders-notify-success")},
        "OnFailure": {"Destination": queue_arn("orders-notify-failures")},
    }
    # moto drops DeadLetterConfig; the role is allowed to send to the DLQ, as Lambda requires.
    granted = {(tuple(s["Action"]), s["Resource"]) for s in role_policy("orders-notify")["Statement"]}
    assert granted == {
        (("sqs:SendMessage",), queue_arn(name))
        for name in ("orders-notify-dlq", "orders-notify-success", "orders-notify-failures")
    }
    assert lam.list_event_source_mappings()["EventSourceMappings"] == []


def test_an_sqs_run_creates_the_source_queue_redrive_policy_and_a_disabled_mapping(
    aws_endpoint: str, tmp_path: Path
) -> None:
    # sqs-redrive.toml: queue orders-queue, visibility 60 s, max_receive_count 3 into orders-queue-dlq,
    # batch_size 4, no ReportBatchItemFailures.
    for n in range(2):
        run_scenario(SCENARIOS / "sqs-redrive.toml", tmp_path / f"out{n}", seed=1, publish=True)
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName="orders-queue")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "60"
    assert jsonio.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": queue_arn("orders-queue-dlq"),
        "maxReceiveCount": 3,
    }
    assert attributes["ApproximateNumberOfMessages"] == "0"  # the source queue's messages were consumed
    [mapping] = boto3.client("lambda").list_event_source_mappings(FunctionName="orders-worker")[
        "EventSourceMappings"
    ]
    assert mapping["EventSourceArn"] == queue_arn("orders-queue")
    assert (mapping["BatchSize"], mapping["State"], mapping.get("FunctionResponseTypes")) == (
        4,
        "Disabled",
        [],
    )


def test_a_kinesis_run_creates_the_mapping_with_its_on_failure_topic(
    aws_endpoint: str, tmp_path: Path
) -> None:
    # kinesis-bisect-walkthrough.toml: stream orders-stream, batch_size 10, bisect on, 2 retries, no record
    # age (-1), on-failure SNS topic orders-stream-failures.
    run_scenario(SCENARIOS / "kinesis-bisect-walkthrough.toml", tmp_path / "out", seed=1, publish=True)
    topic = f"arn:aws:sns:eu-west-1:{ACCOUNT}:orders-stream-failures"
    assert topic in {t["TopicArn"] for t in boto3.client("sns").list_topics()["Topics"]}
    [mapping] = boto3.client("lambda").list_event_source_mappings()["EventSourceMappings"]
    assert mapping["EventSourceArn"] == f"arn:aws:kinesis:eu-west-1:{ACCOUNT}:stream/orders-stream"
    assert (mapping["BatchSize"], mapping["BisectBatchOnFunctionError"], mapping["MaximumRetryAttempts"]) == (
        10,
        True,
        2,
    )
    assert (mapping["MaximumRecordAgeInSeconds"], mapping["State"], mapping["StartingPosition"]) == (
        -1,
        "Disabled",
        "TRIM_HORIZON",
    )
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": topic}}


# A world built by hand: FIFO and binary attributes, Kinesis shards, S3, old timestamps


def test_fifo_messages_keep_group_and_binary_attributes_and_are_not_deduplicated_on_republish(
    aws_endpoint: str, tmp_path: Path
) -> None:
    scenario = scenario_file(tmp_path, "sqs")
    world = World(now_ms(), 1, "eu-west-1", ACCOUNT)
    world.send(
        "orders.fifo",
        "first",
        attributes={"MessageGroupId": "customer-7"},
        # as receive-message output and scenario files write binary values: base64 text
        message_attributes={
            "blob": {"DataType": "Binary", "BinaryValue": base64.b64encode(b"\0\1\xff").decode()}
        },
    )
    world.send("orders.fifo", "second", attributes={"MessageGroupId": "customer-7"})
    world.send("orders.fifo", "third")

    for _ in range(2):
        assert publish_world(world, scenario, set())["published_messages"] == 3
    messages = drain("orders.fifo")
    by_group: dict[str, list[str]] = {}
    for message in messages:  # FIFO keeps order within a message group only
        by_group.setdefault(message["Attributes"]["MessageGroupId"], []).append(message["Body"])
    assert by_group.pop("customer-7") == ["first", "second", "first", "second"]
    assert list(by_group.values()) == [["third", "third"]]  # one group for messages that had none
    assert messages[0]["MessageAttributes"]["blob"] == {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"}


def test_batches_stay_within_the_sqs_size_limit(aws_endpoint: str, tmp_path: Path) -> None:
    # Three 100 KiB bodies exceed the 256 KiB SendMessageBatch limit together; moto refuses such a call.
    scenario = scenario_file(tmp_path, "async")
    world = World(now_ms(), 1, "eu-west-1", ACCOUNT)
    bodies = [str(n) * 102_400 for n in range(3)] + [f"small-{n}" for n in range(22)]
    for body in bodies:
        world.send("big-dlq", body)
    assert publish_world(world, scenario, {"big-dlq"})["published_dead_letters"] == 25
    assert sorted(m["Body"] for m in drain("big-dlq")) == sorted(bodies)


def test_kinesis_records_keep_partition_keys_shard_and_order(aws_endpoint: str, tmp_path: Path) -> None:
    scenario = scenario_file(tmp_path, "kinesis")
    world = World(now_ms(), 1, "eu-west-1", ACCOUNT)
    shard0, shard1 = "shardId-000000000000", "shardId-000000000001"
    world.stream_records += [
        StreamRecord("orders", shard0, "100", "key-a", b"a1", 1000),
        StreamRecord("orders", shard1, "101", "key-a", b"b1", 1001),
        StreamRecord("orders", shard0, "102", "key-b", b"a2", 1002),
        StreamRecord("orders", shard0, "103", "key-c", b"a3", 1003),
    ]
    assert publish_world(world, scenario, set())["published_stream_records"] == 4
    described = boto3.client("kinesis").describe_stream_summary(StreamName="orders")
    assert described["StreamDescriptionSummary"]["OpenShardCount"] == 2
    assert shard_records("orders") == {
        shard0: [(b"a1", "key-a"), (b"a2", "key-b"), (b"a3", "key-c")],
        shard1: [(b"b1", "key-a")],
    }


def test_dynamodb_stream_records_are_counted_not_published(aws_endpoint: str, tmp_path: Path) -> None:
    scenario = scenario_file(tmp_path, "dynamodb")
    world = World(now_ms(), 1, "eu-west-1", ACCOUNT)
    world.stream_records.append(StreamRecord("table/stream", "shardId-1", "1", "k", b"{}", 0))
    counts = publish_world(world, scenario, set())
    assert counts["published_stream_records"] == 0
    assert counts["unpublished_stream_records"] == 1
    assert boto3.client("kinesis").list_streams()["StreamNames"] == []
    # The function exists; its mapping cannot, without a stream.
    assert (counts["published_functions"], counts["unpublished_event_source_mappings"]) == (1, 1)
    assert boto3.client("lambda").list_event_source_mappings()["EventSourceMappings"] == []


def test_s3_objects_land_in_the_configured_region_and_lambda_payloads_are_skipped(
    aws_endpoint: str, tmp_path: Path
) -> None:
    scenario = scenario_file(tmp_path, "async", region="ap-southeast-2")
    world = World(now_ms(), 1, "ap-southeast-2", ACCOUNT)
    world.objects["failures-bucket/aws/lambda/async/hand-fn/2026/11/22/09/abc"] = b'{"version":"1.0"}'
    world.objects["lambda/audit-fn/1.json"] = b"{}"
    counts = publish_world(world, scenario, set())
    assert counts["published_objects"] == 1
    assert counts["unpublished_lambda_payloads"] == 1
    s3 = boto3.client("s3")
    body = s3.get_object(Bucket="failures-bucket", Key="aws/lambda/async/hand-fn/2026/11/22/09/abc")["Body"]
    assert body.read() == b'{"version":"1.0"}'
    # AWS_DEFAULT_REGION (eu-west-1, from the fixture) wins over the scenario's region.
    assert s3.get_bucket_location(Bucket="failures-bucket")["LocationConstraint"] == "eu-west-1"


def test_without_a_configured_region_the_scenario_region_is_used(
    aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    scenario = scenario_file(tmp_path, "async", region="ap-southeast-2")
    world = World(now_ms(), 1, "ap-southeast-2", ACCOUNT)
    world.objects["records-bucket/one"] = b"1"
    publish_world(world, scenario, set())
    location = boto3.client("s3", region_name="ap-southeast-2").get_bucket_location(Bucket="records-bucket")
    assert location["LocationConstraint"] == "ap-southeast-2"


def test_old_log_events_are_shifted_together_to_the_present(aws_endpoint: str, tmp_path: Path) -> None:
    scenario = scenario_file(tmp_path, "async")
    start = now_ms() - 30 * DAY_MS
    world = World(start, 1, "eu-west-1", ACCOUNT)
    world.log("/aws/lambda/hand-fn", "s1", start, "START RequestId: r1 Version: $LATEST\n")
    world.log("/aws/lambda/hand-fn", "s1", start + 60_250, "END RequestId: r1\n")
    world.log("/aws/lambda/hand-fn", "s2", start + 61_000, "other stream\n")
    before = now_ms()
    counts = publish_world(world, scenario, set())
    shift = counts["published_log_shift_seconds"] * 1000
    assert shift % 1000 == 0 and shift > 29 * DAY_MS
    events = sorted(log_events("/aws/lambda/hand-fn"), key=lambda e: e["timestamp"])
    assert [e["timestamp"] - events[0]["timestamp"] for e in events] == [0, 60_250, 61_000]
    assert [e["logStreamName"] for e in events] == ["s1", "s1", "s2"]
    # The newest event lands within a second before the moment of publishing.
    assert before - 1000 <= events[-1]["timestamp"] <= now_ms()


def test_a_run_longer_than_the_retention_window_drops_only_its_oldest_events(
    aws_endpoint: str, tmp_path: Path
) -> None:
    scenario = scenario_file(tmp_path, "async")
    end = now_ms() - 40 * DAY_MS
    world = World(end - 20 * DAY_MS, 1, "eu-west-1", ACCOUNT)
    world.log("/aws/lambda/hand-fn", "s1", end - 20 * DAY_MS, "twenty days before the end\n")
    world.log("/aws/lambda/hand-fn", "s1", end - DAY_MS, "one day before the end\n")
    world.log("/aws/lambda/hand-fn", "s1", end, "the end\n")
    counts = publish_world(world, scenario, set())
    assert counts["published_log_events"] == 2
    assert counts["unpublished_log_events_too_old"] == 1
    messages = [e["message"] for e in log_events("/aws/lambda/hand-fn")]
    assert sorted(messages) == ["one day before the end\n", "the end\n"]


# Pure limits: batches, time shift, resending failed entries


def test_log_batches_split_at_ten_thousand_events() -> None:
    items = [(1000, "x")] * (LOG_BATCH_EVENTS + 1)
    assert [len(b) for b in log_batches(items)] == [10_000, 1]


def test_log_batches_split_at_the_byte_limit_counting_26_bytes_per_event() -> None:
    # 524,262 bytes + 26 = 524,288: two such events are exactly 1,048,576 bytes, which fits.
    exact = [(1, "a" * 524_262)] * 3
    assert [len(b) for b in log_batches(exact)] == [2, 1]
    over = [(1, "a" * 524_263)] * 2
    assert [len(b) for b in log_batches(over)] == [1, 1]
    # UTF-8 bytes count, not characters: "é" is two bytes.
    accented = [(1, "é" * 262_132)] * 2
    assert [len(b) for b in log_batches(accented)] == [1, 1]


def test_log_batches_span_less_than_24_hours() -> None:
    items = [(0, "a"), (LOG_BATCH_SPAN_MS - 1, "b"), (LOG_BATCH_SPAN_MS, "c")]
    assert [[m for _, m in b] for b in log_batches(items)] == [["a", "b"], ["c"]]


def test_log_shift_is_zero_inside_the_window_and_whole_seconds_outside() -> None:
    now = 1_800_000_000_123
    recent = [LogEvent("g", "s", now - 3600_000, "m"), LogEvent("g", "s", now, "m")]
    assert log_shift_ms(recent, now) == 0
    old = [LogEvent("g", "s", now - 30 * DAY_MS, "m"), LogEvent("g", "s", now - 30 * DAY_MS + 5123, "m")]
    # now - newest = 30 days - 5.123 s; floored to whole seconds: 30 days - 6 s.
    assert log_shift_ms(old, now) == 30 * DAY_MS - 6000
    future = [LogEvent("g", "s", now + 3 * 3600_000 + 500, "m")]
    assert log_shift_ms(future, now) == -(3 * 3600_000) - 1000


def test_failed_entries_are_resent_in_order_until_none_is_left() -> None:
    sent: list[list[str]] = []
    pauses: list[float] = []

    def send(pending: list[str]) -> list[tuple[str, str]]:
        sent.append(list(pending))
        if len(sent) == 1:  # the first call throttles two entries
            return [("b", "ProvisionedThroughputExceededException"), ("d", "InternalFailure")]
        return []

    resend_failed(send, ["a", "b", "c", "d"], "test", sleep=pauses.append)
    assert sent == [["a", "b", "c", "d"], ["b", "d"]]
    assert len(pauses) == 1


def test_entries_that_keep_failing_end_in_one_error_line() -> None:
    def send(pending: list[str]) -> list[tuple[str, str]]:
        return [(entry, "ProvisionedThroughputExceededException") for entry in pending]

    with pytest.raises(PublishError) as caught:
        resend_failed(send, ["a", "b"], "kinesis PutRecords to stream orders", sleep=lambda _: None)
    line = caught.value.line()
    assert "kinesis PutRecords to stream orders kept failing" in line
    assert "2 entries" in line and "ProvisionedThroughputExceededException" in line
    assert "\n" not in line


# Errors: one line naming the action and the resource


def test_an_api_error_names_the_action_and_the_resource(aws_endpoint: str, tmp_path: Path) -> None:
    scenario = scenario_file(tmp_path, "async")
    world = World(now_ms(), 1, "eu-west-1", ACCOUNT)
    world.send("not a queue name!", "body")
    with pytest.raises(PublishError) as caught:
        publish_world(world, scenario, set())
    line = caught.value.line()
    assert line.startswith("cannot publish: sqs CreateQueue failed: queue not a queue name! (")
    assert "InvalidParameterValue" in line
    assert "\n" not in line


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_endpoint_is_one_error_line(
    aws_endpoint: str, tmp_path: Path, tracekit_cli: CliRun
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result = tracekit_cli(
        "lab", "run", ASYNC_RETRIES, "--out", tmp_path / "out", "--publish",
        env={"AWS_ENDPOINT_URL": endpoint, "AWS_MAX_ATTEMPTS": "1"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: cannot publish: logs CreateLogGroup failed: log group {GROUP} (")
    assert f"Check that {endpoint} is reachable" in line
    assert (tmp_path / "out" / "truth.json").is_file()  # the artifacts were written before publishing


def test_missing_credentials_is_one_error_line(
    aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracekit_cli: CliRun
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never wait for an instance role
    result = tracekit_cli("lab", "run", ASYNC_RETRIES, "--out", tmp_path / "out", "--publish")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot publish: logs CreateLogGroup failed")
    assert "Set AWS credentials" in line
