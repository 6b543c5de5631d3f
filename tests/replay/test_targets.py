"""Senders against the moto server over HTTP: each target receives exactly the planned messages with every
attribute intact and FIFO groups in order; batches stay within each API's count and byte limits;
per-entry failures and throttled calls come back as results the engine can act on.

The Lambda tests run moto's docker-free Lambda (switched on through the moto API for the test), which
answers Invoke with the request body or a queued result; the fault proxy (tests/faultproxy.py) keeps
each Invoke's path, headers and payload, which is what the tests read. Per-entry failures of batch
calls, and throttled or refused calls, are answers moto never gives: the proxy replies with them.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from faultproxy import FaultProxy, Rule

from tracekit import jsonio
from tracekit.aws import Aws, AwsError
from tracekit.replay.model import MARKER, Entry, Plan, Source, SourceKind, Target, TargetType
from tracekit.replay.targets import Outgoing, Sender, SendResult, outgoing, sender_for, to_api_attribute

REGION = "eu-west-1"
ACCOUNT = "123456789012"
KIB = 1024

#: One attribute of every kind SQS and SNS carry, custom types included (binary as base64 text).
ALL_TYPES = {
    "RequestID": {"DataType": "String", "StringValue": "req-1"},
    "ErrorCode": {"DataType": "Number", "StringValue": "200"},
    "amount": {"DataType": "Number.float", "StringValue": "12.50"},
    "tenant": {"DataType": "String.tenant", "StringValue": "acme"},
    "blob": {"DataType": "Binary", "BinaryValue": base64.b64encode(b"\x00\xffbin").decode()},
    "gif": {"DataType": "Binary.gif", "BinaryValue": base64.b64encode(b"GIF89a\x01").decode()},
}


def make_plan(target: Target, n: int, **fields: Any) -> Plan:
    entries = []
    for i in range(n):
        values = {k: (v(i) if callable(v) else v) for k, v in fields.items()}
        values.setdefault("payload", jsonio.dumps({"order": f"o-{i}", "amount": i}))
        entries.append(
            Entry(
                entry_id=f"e{i}",
                event_id=f"ev{i}",
                function_name="orders",
                source=Source(SourceKind.DEAD_LETTER, id=f"m{i}"),
                target=target,
                **values,
            )
        )
    return Plan(plan_id="p1", created_at="2026-11-26T00:00:00.000Z", selectors={}, store="", entries=entries)


def copies(plan: Plan) -> list[Outgoing]:
    return [outgoing(plan, e, e.payload or "") for e in plan.entries]


def deliver(sender: Sender, items: list[Outgoing]) -> list[SendResult]:
    results: list[SendResult] = []
    for batch in sender.batches(items):
        results.extend(sender.send(batch))
    return results


def client(service: str, endpoint_url: str | None = None) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint_url)


def receive_all(queue_url: str) -> list[dict[str, Any]]:
    """Every message on the queue, in receive order (deleted as read, so FIFO groups unblock)."""
    sqs = client("sqs")
    seen: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return seen
        for message in got:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        seen.extend(got)


def queue(name: str, fifo: bool = False) -> tuple[str, str]:
    attributes = {"FifoQueue": "true"} if fifo else {}
    url = client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def api_attributes(plan_attributes: dict[str, Any]) -> dict[str, Any]:
    """What the plan's attributes look like when SQS hands them back (binary as bytes)."""
    out = {}
    for name, value in plan_attributes.items():
        if "BinaryValue" in value:
            out[name] = {"DataType": value["DataType"], "BinaryValue": base64.b64decode(value["BinaryValue"])}
        else:
            out[name] = dict(value)
    return out


@pytest.fixture
def proxy(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The fault proxy in front of moto, with boto3 pointed at it."""
    with FaultProxy(aws_endpoint) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        yield running


# --------------------------------------------------------------------------------------------- SQS


def test_sqs_standard_every_message_and_attribute_in_three_calls(proxy: FaultProxy) -> None:
    url, _ = queue("orders")
    plan = make_plan(Target(TargetType.SQS, url=url), 30, attributes=ALL_TYPES)
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan))

    assert [r.ok for r in results] == [True] * 30 and all(r.provider_id for r in results)
    assert proxy.counts["SendMessageBatch"] == 3  # 0.1 calls per message
    got = {m["Body"]: m for m in receive_all(url)}
    assert len(got) == 30
    for entry in plan.entries:
        message = got[entry.payload or ""]
        expected = api_attributes(ALL_TYPES)
        expected[MARKER] = {"DataType": "String", "StringValue": f"p1:{entry.entry_id}:{entry.event_id}"}
        assert message["MessageAttributes"] == expected


def test_sqs_fifo_keeps_groups_order_and_delivers_extra_copies(proxy: FaultProxy) -> None:
    url, _ = queue("orders.fifo", fifo=True)
    plan = make_plan(
        Target(TargetType.SQS, url=url),
        12,
        message_group_id=lambda i: f"customer-{i % 3}",
        message_deduplication_id=lambda i: f"orig-{i}",
        attributes={"kind": {"DataType": "String", "StringValue": "order"}},
    )
    items = copies(plan)
    extra = outgoing(plan, plan.entries[4], plan.entries[4].payload or "", copy=1)  # a duplicate
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), [*items, extra])

    assert all(r.ok for r in results)
    got = receive_all(url)
    assert len(got) == 13  # the duplicate was not deduplicated away
    for group in range(3):
        mine = [m for m in got if m["Attributes"]["MessageGroupId"] == f"customer-{group}"]
        orders = [json.loads(m["Body"])["order"] for m in mine]
        expected = [f"o-{i}" for i in range(group, 12, 3)]
        if group == 1:
            expected.append("o-4")  # the extra copy of e4 went last in its group
        assert orders == expected
    dedup = sorted(m["Attributes"]["MessageDeduplicationId"] for m in got)
    assert dedup == sorted([f"orig-{i}" for i in range(12)] + ["orig-4-1"])


def test_sqs_batches_respect_the_byte_limit() -> None:
    # 40 KiB bodies: six fit 256 KiB with their marker attributes, a seventh would not.
    target = Target(TargetType.SQS, url="https://sqs.eu-west-1.amazonaws.com/123456789012/q")
    plan = make_plan(target, 20, payload=lambda i: jsonio.dumps({"pad": "x" * 40 * KIB, "i": i}))
    sizes = [len(b) for b in sender_for(target, Aws(REGION)).batches(copies(plan))]
    assert sizes == [6, 6, 6, 2]


def test_sqs_refuses_what_it_cannot_send_and_sends_the_rest(proxy: FaultProxy) -> None:
    url, _ = queue("orders")
    ten = {f"a{i}": {"DataType": "String", "StringValue": str(i)} for i in range(10)}
    plan = make_plan(Target(TargetType.SQS, url=url), 3, attributes=lambda i: ten if i == 0 else {})
    plan.entries[2].payload = "x" * KIB * KIB
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan))

    assert [(r.ok, r.error_code, r.retryable) for r in results] == [
        (False, "Refused", False),
        (True, None, False),
        (False, "Refused", False),
    ]
    assert results[0].reason == (
        f"the message already has 10 message attributes, the limit: no room for the {MARKER} marker "
        '(set the plan\'s marker attribute to "" to send it unmarked)'
    )
    size = KIB * KIB + len(MARKER) + len("String") + len("p1:e2:ev2")
    assert results[2].reason == f"{size} bytes, over the 1 MiB limit of sqs SendMessageBatch"
    assert proxy.counts["SendMessageBatch"] == 1
    assert [m["Body"] for m in receive_all(url)] == [plan.entries[1].payload]

    plan.marker["attribute"] = ""  # marker off: the ten-attribute message goes, unmarked
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan)[:1])
    assert results[0].ok
    assert set(receive_all(url)[0]["MessageAttributes"]) == set(ten)


def test_a_copy_over_the_batch_limit_goes_alone_and_only_it_fails_if_refused(proxy: FaultProxy) -> None:
    """Between the old 256 KiB and the new 1 MiB limit the API decides; a region (or moto here, through
    the proxy) that refuses the lone big copy fails that copy, not the run."""
    url, _ = queue("orders")
    plan = make_plan(Target(TargetType.SQS, url=url), 5)
    plan.entries[2].payload = jsonio.dumps({"pad": "x" * 300 * KIB})
    sender = sender_for(plan.entries[0].target, Aws(REGION))
    assert [[o.key for o in b] for b in sender.batches(copies(plan))] == [
        ["e0#0", "e1#0"],
        ["e2#0"],
        ["e3#0", "e4#0"],
    ]
    proxy.add(
        Rule("SendMessageBatch", error="InvalidParameterValue", match=lambda body: len(body["Entries"]) == 1)
    )
    results = deliver(sender, copies(plan))
    assert [(r.ok, r.error_code, r.retryable) for r in results] == [
        (True, None, False),
        (True, None, False),
        (False, "InvalidParameterValue", False),
        (True, None, False),
        (True, None, False),
    ]
    assert len(receive_all(url)) == 4


def test_sqs_per_entry_failures_are_retryable_unless_the_sender_is_at_fault(proxy: FaultProxy) -> None:
    url, _ = queue("orders")
    reply = {
        "Successful": [{"Id": "0", "MessageId": "m-0", "MD5OfMessageBody": "x"}],
        "Failed": [
            {"Id": "1", "Code": "InternalError", "SenderFault": False, "Message": "try again"},
            {"Id": "2", "Code": "InvalidParameterValue", "SenderFault": True, "Message": "bad body"},
        ],
    }
    proxy.add(Rule("SendMessageBatch", reply=reply, times=1))
    plan = make_plan(Target(TargetType.SQS, url=url), 3)
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan))
    assert [(r.key, r.ok, r.error_code, r.retryable, r.reason) for r in results] == [
        ("e0#0", True, None, False, None),
        ("e1#0", False, "InternalError", True, "try again"),
        ("e2#0", False, "InvalidParameterValue", False, "bad body"),
    ]
    assert results[0].provider_id == "m-0"


def test_a_throttled_call_makes_the_whole_batch_retryable(
    proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no botocore retries: the sender sees the throttle
    url, _ = queue("orders")
    proxy.add(Rule("SendMessageBatch", error="ThrottlingException", times=1))
    plan = make_plan(Target(TargetType.SQS, url=url), 4)
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan))
    assert [(r.ok, r.error_code, r.retryable) for r in results] == [(False, "ThrottlingException", True)] * 4
    assert receive_all(url) == []


def test_any_other_failed_call_is_one_error_line(aws_endpoint: str) -> None:
    url = f"{aws_endpoint}/{ACCOUNT}/missing"
    plan = make_plan(Target(TargetType.SQS, url=url), 1)
    aws = Aws(REGION, verb="cannot replay")
    with pytest.raises(AwsError) as caught:
        deliver(sender_for(plan.entries[0].target, aws), copies(plan))
    line = str(caught.value)
    assert line.startswith(f"cannot replay: sqs SendMessageBatch failed: {url} (") and "\n" not in line


def test_sqs_target_named_by_arn_is_looked_up(aws_endpoint: str) -> None:
    url, arn = queue("by-arn")
    plan = make_plan(Target(TargetType.SQS, arn=arn), 2)
    assert all(r.ok for r in deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan)))
    assert len(receive_all(url)) == 2


# --------------------------------------------------------------------------------------------- SNS


def test_sns_publishes_every_message_with_every_attribute(proxy: FaultProxy) -> None:
    # moto 5.2.5 fails to receive raw-delivered messages with Binary attributes, so the queue reads
    # SNS notifications (attributes as {"Type", "Value"}, binary values base64).
    url, arn = queue("topic-out")
    topic = client("sns").create_topic(Name="orders")["TopicArn"]
    client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    plan = make_plan(Target(TargetType.SNS, arn=topic), 12, attributes=ALL_TYPES)
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan))

    assert all(r.ok and r.provider_id for r in results)
    assert proxy.counts["PublishBatch"] == 2
    notes = {n["Message"]: n for n in (json.loads(m["Body"]) for m in receive_all(url))}
    assert len(notes) == 12
    for entry in plan.entries:
        got = notes[entry.payload or ""]["MessageAttributes"]
        expected = {
            name: {"Type": v["DataType"], "Value": v.get("StringValue", v.get("BinaryValue"))}
            for name, v in ALL_TYPES.items()
        }
        expected[MARKER] = {"Type": "String", "Value": f"p1:{entry.entry_id}:{entry.event_id}"}
        assert got == expected


def test_sns_fifo_keeps_groups_and_order(aws_endpoint: str) -> None:
    url, arn = queue("topic-out.fifo", fifo=True)
    topic = client("sns").create_topic(Name="orders.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    client("sns").subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    plan = make_plan(
        Target(TargetType.SNS, arn=topic),
        8,
        message_group_id=lambda i: f"g{i % 2}",
        message_deduplication_id=lambda i: f"d{i}",
    )
    assert all(r.ok for r in deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan)))
    got = receive_all(url)
    for group in range(2):
        bodies = [m["Body"] for m in got if m["Attributes"]["MessageGroupId"] == f"g{group}"]
        assert bodies == [plan.entries[i].payload for i in range(group, 8, 2)]


# ------------------------------------------------------------------------------------- EventBridge


def test_eventbridge_puts_every_event_with_the_marker_in_the_detail(proxy: FaultProxy) -> None:
    url, arn = queue("bus-out")
    events = client("events")
    bus = events.create_event_bus(Name="orders")["EventBusArn"]
    events.put_rule(Name="all", EventBusName="orders", EventPattern=jsonio.dumps({"account": [ACCOUNT]}))
    events.put_targets(Rule="all", EventBusName="orders", Targets=[{"Id": "q", "Arn": arn}])
    plan = make_plan(
        Target(TargetType.EVENTBRIDGE, arn=bus),
        25,
        event_source=lambda i: "shop.orders" if i % 2 else None,
        detail_type=lambda i: "OrderPlaced" if i % 2 else None,
    )
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan))

    assert all(r.ok and r.provider_id for r in results)
    assert proxy.counts["PutEvents"] == 3
    got = {json.loads(m["Body"])["detail"]["order"]: json.loads(m["Body"]) for m in receive_all(url)}
    assert len(got) == 25
    for i, entry in enumerate(plan.entries):
        event = got[f"o-{i}"]
        assert event["detail"] == {**json.loads(entry.payload or ""), MARKER: f"p1:e{i}:ev{i}"}
        assert event["source"] == ("shop.orders" if i % 2 else "tracekit.replay")
        assert event["detail-type"] == ("OrderPlaced" if i % 2 else "tracekit replay")


def test_eventbridge_per_entry_errors_and_refusals(proxy: FaultProxy) -> None:
    reply = {
        "FailedEntryCount": 2,
        "Entries": [
            {"EventId": "ev-0"},
            {"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"},
            {"ErrorCode": "ValidationException", "ErrorMessage": "bad detail"},
        ],
    }
    proxy.add(Rule("PutEvents", reply=reply, times=1))
    bus = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
    plan = make_plan(Target(TargetType.EVENTBRIDGE, arn=bus), 4, payload=lambda i: "[1]" if i == 3 else "{}")
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan))
    assert [(r.ok, r.error_code, r.retryable) for r in results] == [
        (True, None, False),
        (False, "ThrottlingException", True),
        (False, "ValidationException", False),
        (False, "Refused", False),
    ]
    assert results[3].reason == (
        f"payload is not a JSON object: cannot carry the replay marker {MARKER} "
        '(set the plan\'s marker payload_field to "" to send it unmarked)'
    )
    assert proxy.counts["PutEvents"] == 1


def test_eventbridge_batches_respect_the_byte_limit() -> None:
    # Each entry: 15 (source) + 15 (detail type) + ~60 KiB detail; four fit 256 KiB, five would not.
    target = Target(TargetType.EVENTBRIDGE, arn=f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default")
    plan = make_plan(target, 10, payload=lambda i: jsonio.dumps({"pad": "x" * 60 * KIB}))
    assert [len(b) for b in sender_for(target, Aws(REGION)).batches(copies(plan))] == [4, 4, 2]


# ----------------------------------------------------------------------------------------- Kinesis


def read_stream(stream: str) -> list[dict[str, Any]]:
    kinesis, records = client("kinesis"), []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records.extend(kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"])
    return records


def test_kinesis_keeps_data_partition_keys_and_order_per_key(proxy: FaultProxy) -> None:
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName="clicks", ShardCount=2)
    arn = kinesis.describe_stream(StreamName="clicks")["StreamDescription"]["StreamARN"]
    plan = make_plan(Target(TargetType.KINESIS, arn=arn), 30, partition_key=lambda i: f"user-{i % 4}")
    binary = make_plan(
        Target(TargetType.KINESIS, arn=arn),
        2,
        partition_key="user-bin",
        payload=lambda i: base64.b64encode(bytes([0xFF, i])).decode(),
        payload_encoding="base64",
    )
    binary.marker["payload_field"] = ""  # binary data cannot carry a payload-field marker
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan) + copies(binary))

    assert all(r.ok and r.provider_id for r in results)
    assert proxy.counts["PutRecords"] == 1
    got = read_stream("clicks")
    assert len(got) == 32
    for key in range(4):
        data = [json.loads(r["Data"]) for r in got if r["PartitionKey"] == f"user-{key}"]
        assert data == [{"order": f"o-{i}", "amount": i, MARKER: f"p1:e{i}:ev{i}"} for i in range(key, 30, 4)]
    assert [r["Data"] for r in got if r["PartitionKey"] == "user-bin"] == [b"\xff\x00", b"\xff\x01"]


def test_kinesis_batches_respect_count_and_byte_limits() -> None:
    target = Target(TargetType.KINESIS, arn=f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/clicks")
    sender = sender_for(target, Aws(REGION))
    small = make_plan(target, 1200, partition_key="k", payload="{}")
    assert [len(b) for b in sender.batches(copies(small))] == [500, 500, 200]  # 0.0025 calls per record
    # 1000 KiB records: five fit the 5 MiB call limit, a sixth would not.
    big = make_plan(target, 6, partition_key="k", payload=lambda i: jsonio.dumps({"pad": "x" * 1000 * KIB}))
    assert [len(b) for b in sender.batches(copies(big))] == [5, 1]


def test_kinesis_per_record_failures(proxy: FaultProxy) -> None:
    reply = {
        "FailedRecordCount": 2,
        "Records": [
            {"SequenceNumber": "49", "ShardId": "shardId-000000000000"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "rate exceeded"},
            {"ErrorCode": "KMSAccessDeniedException", "ErrorMessage": "no key"},
        ],
    }
    proxy.add(Rule("PutRecords", reply=reply, times=1))
    target = Target(TargetType.KINESIS, arn=f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/clicks")
    plan = make_plan(target, 4, partition_key=lambda i: None if i == 3 else "k")
    results = deliver(sender_for(target, Aws(REGION)), copies(plan))
    assert [(r.ok, r.error_code, r.retryable, r.provider_id) for r in results] == [
        (True, None, False, "49"),
        (False, "ProvisionedThroughputExceededException", True, None),
        (False, "KMSAccessDeniedException", False, None),
        (False, "Refused", False, None),
    ]
    assert results[3].reason == "no partition key in the plan entry (Kinesis needs the original's)"


# ------------------------------------------------------------------------------------------ Lambda


FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders"
#: The proxy's name for an Invoke of FUNCTION: a REST call, named by method and path (ARN percent-encoded).
INVOKE = f"POST /2015-03-31/functions/{urllib.parse.quote(FUNCTION, safe='')}/invocations"


def moto_api(endpoint: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST `body` as JSON to moto's `/moto-api/<path>` (GET without a body); the JSON answer, or None."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{path}",
        data=None if body is None else jsonio.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = response.read()
    return jsonio.loads(answer) if answer else None


@contextmanager
def lambda_config(endpoint: str, *, use_docker: bool) -> Iterator[None]:
    """moto's Lambda with or without Docker for the block, then as it was: the configuration is the
    server's, and the server is shared by the whole test session (a reset keeps it)."""
    before = moto_api(endpoint, "config")["lambda"]
    moto_api(endpoint, "config", {"lambda": {"use_docker": use_docker}})
    try:
        yield
    finally:
        moto_api(endpoint, "config", {"lambda": before})


@pytest.fixture
def orders_function(aws_endpoint: str) -> Iterator[str]:
    """FUNCTION in moto's docker-free Lambda, version 1 published and the alias "live" on it; yields its
    ARN. Created straight in moto, so the proxy sees only the sender's calls. Docker-free Invoke answers
    with the request body (or a result queued through the moto API) without looking up the function
    or qualifier."""
    with lambda_config(aws_endpoint, use_docker=False):
        trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]}
        iam = client("iam", endpoint_url=aws_endpoint)
        role = iam.create_role(RoleName="orders-role", AssumeRolePolicyDocument=jsonio.dumps(trust))
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("orders.py", "def handler(event, context):\n    return event\n")
        functions = client("lambda", endpoint_url=aws_endpoint)
        created = functions.create_function(
            FunctionName="orders",
            Runtime="python3.12",
            Role=role["Role"]["Arn"],
            Handler="orders.handler",
            Code={"ZipFile": code.getvalue()},
            Publish=True,
        )
        functions.create_alias(FunctionName="orders", Name="live", FunctionVersion=created["Version"])
        assert created["FunctionArn"] == FUNCTION
        yield FUNCTION


def invocations(proxy: FaultProxy) -> list[tuple[str, dict[str, list[str]], str | None, Any]]:
    """Each request the proxy received, as Lambda reads an Invoke: (path with the function name decoded,
    query, X-Amz-Invocation-Type header, JSON payload)."""
    out = []
    for seen in proxy.requests:
        parts = urllib.parse.urlsplit(seen.path)
        path, query = urllib.parse.unquote(parts.path), urllib.parse.parse_qs(parts.query)
        out.append((path, query, seen.headers.get("X-Amz-Invocation-Type"), seen.body))
    return out


def test_lambda_async_invoke_per_entry_to_the_qualifier(proxy: FaultProxy, orders_function: str) -> None:
    """One Event Invoke per copy, to the plan's qualifier, with the marked payload; a copy whose payload
    cannot carry the marker is refused without a call."""
    plan = make_plan(Target(TargetType.LAMBDA, arn=orders_function, qualifier="live"), 3)
    plan.entries[2].payload = '"just a string"'
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan))

    assert [r.ok for r in results] == [True, True, False]
    assert all(r.provider_id for r in results[:2])  # moto's request ids
    assert results[2].error_code == "Refused" and "payload is not a JSON object" in (results[2].reason or "")
    assert proxy.counts == {INVOKE: 2}  # one Invoke per copy, none for the refused one
    for i, (path, query, kind, body) in enumerate(invocations(proxy)):
        assert path == f"/2015-03-31/functions/{FUNCTION}/invocations"
        assert query == {"Qualifier": ["live"]} and kind == "Event"
        assert body == {"order": f"o-{i}", "amount": i, MARKER: f"p1:e{i}:ev{i}"}


def test_lambda_a_payload_lambda_refuses_fails_only_its_copy_and_throttling_is_retryable(
    proxy: FaultProxy, orders_function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy answers the first Invoke 413 RequestEntityTooLargeException (that copy fails, the run
    goes on: the next one reaches moto) and the last 429 TooManyRequestsException (retryable). The
    throttle comes last: botocore's adaptive retry mode holds back the next call after one (~2 s)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no botocore retries: the sender sees the 429
    plan = make_plan(Target(TargetType.LAMBDA, arn=orders_function, qualifier="live"), 1)
    sender = sender_for(plan.entries[0].target, Aws(REGION, verb="cannot replay"))
    proxy.add(Rule(INVOKE, error="RequestEntityTooLargeException", status=413, times=1))
    too_large = deliver(sender, copies(plan))
    delivered = deliver(sender, copies(plan))
    proxy.add(Rule(INVOKE, error="TooManyRequestsException", status=429, times=1))
    throttled = deliver(sender, copies(plan))
    assert [(r.ok, r.error_code, r.retryable) for r in too_large + delivered + throttled] == [
        (False, "RequestEntityTooLargeException", False),
        (True, None, False),
        (False, "TooManyRequestsException", True),
    ]
    assert [seen.fault for seen in proxy.requests] == [
        "RequestEntityTooLargeException",
        "pass",
        "TooManyRequestsException",
    ]


def test_lambda_missing_function_stops_the_run_with_one_error_line(
    proxy: FaultProxy, aws_endpoint: str
) -> None:
    """moto's own ResourceNotFoundException for a function never created. Docker-free Invoke answers
    any name, so this runs on moto's default Lambda, which looks the function up before it would
    start a container (no Docker needed)."""
    plan = make_plan(Target(TargetType.LAMBDA, arn=FUNCTION, qualifier="live"), 1)
    sender = sender_for(plan.entries[0].target, Aws(REGION, verb="cannot replay"))
    with lambda_config(aws_endpoint, use_docker=True), pytest.raises(AwsError) as caught:
        deliver(sender, copies(plan))
    line = str(caught.value)
    assert line.startswith(f"cannot replay: lambda Invoke failed: {FUNCTION} (ResourceNotFoundException")
    assert "\n" not in line
    assert [(seen.operation, seen.fault) for seen in proxy.requests] == [(INVOKE, "pass")]  # moto answered


def test_lambda_refuses_payloads_over_the_async_limit_before_any_call(
    proxy: FaultProxy, orders_function: str
) -> None:
    """A copy over Lambda's 1 MiB async payload limit is refused with its size, and nothing is sent."""
    plan = make_plan(Target(TargetType.LAMBDA, arn=f"{orders_function}:live"), 1)
    plan.entries[0].payload = jsonio.dumps({"pad": "x" * KIB * KIB})
    results = deliver(sender_for(plan.entries[0].target, Aws(REGION)), copies(plan))
    assert results[0].error_code == "Refused"
    assert (results[0].reason or "").endswith("over the 1 MiB limit of lambda Invoke")
    assert proxy.requests == []


def test_dynamodb_synthetic_batch_is_invoked_synchronously_and_a_function_error_fails_it(
    proxy: FaultProxy, orders_function: str, aws_endpoint: str
) -> None:
    """The batch goes as a RequestResponse Invoke without a qualifier, marked. moto cannot answer a
    chosen function error (a queued result comes back as a success); it answers a result over 6 MB as
    Lambda does, with X-Amz-Function-Error and an errorType/errorMessage payload, so the second copy
    gets such a result queued."""
    records = {"Records": [{"eventID": "1", "eventName": "INSERT", "dynamodb": {"Keys": {"id": {"S": "a"}}}}]}
    plan = make_plan(
        Target(TargetType.DYNAMODB_INVOKE, arn=orders_function), 2, payload=jsonio.dumps(records)
    )
    sender = sender_for(plan.entries[0].target, Aws(REGION))
    first = deliver(sender, copies(plan)[:1])
    moto_api(
        aws_endpoint, "static/lambda-simple/response", {"results": ["x" * 6 * KIB * KIB], "region": REGION}
    )
    second = deliver(sender, copies(plan)[1:])

    assert first[0].ok
    assert (second[0].ok, second[0].error_code, second[0].reason) == (
        False,
        "FunctionError",
        "Function.ResponseSizeTooLarge: Response payload size exceeded maximum allowed payload size "
        "(6291556 bytes).",
    )
    assert invocations(proxy) == [
        (
            f"/2015-03-31/functions/{FUNCTION}/invocations",
            {},
            "RequestResponse",
            {**records, MARKER: f"p1:e{i}:ev{i}"},
        )
        for i in range(2)
    ]


# ------------------------------------------------------------------------------ building a copy


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"DataType": "Number", "StringValue": "7"}, {"DataType": "Number", "StringValue": "7"}),
        (
            {"dataType": "String", "stringValue": "a"},
            {"DataType": "String", "StringValue": "a"},
        ),  # Lambda event
        ({"Type": "Binary", "Value": "AAE="}, {"DataType": "Binary", "BinaryValue": b"\x00\x01"}),  # SNS JSON
        ({"dataType": "Binary.gz", "binaryValue": "/w=="}, {"DataType": "Binary.gz", "BinaryValue": b"\xff"}),
        (
            {"Type": "String.Array", "Value": '["a","b"]'},
            {"DataType": "String.Array", "StringValue": '["a","b"]'},
        ),
    ],
)
def test_attributes_of_every_shape_become_boto3s(given: dict[str, Any], expected: dict[str, Any]) -> None:
    assert to_api_attribute(given) == expected


def test_a_copy_that_cannot_be_built_is_refused_with_the_reason() -> None:
    sqs = Target(TargetType.SQS, url="https://sqs.eu-west-1.amazonaws.com/123456789012/q")
    bad_attribute = make_plan(sqs, 1, attributes={"x": {"StringValue": "no type"}})
    assert copies(bad_attribute)[0].refused == "message attribute without a data type: ['StringValue']"
    binary = make_plan(sqs, 1, payload=base64.b64encode(b"\xff\xfe").decode(), payload_encoding="base64")
    assert copies(binary)[0].refused == "binary payload: sqs takes text only"
    poison = make_plan(sqs, 1, payload='{"id": 1}')
    item = outgoing(poison, poison.entries[0], '{"id": 1}', copy=1, corrupt_field="amount")
    assert (item.key, item.refused) == (
        "e0#1",
        "cannot apply corrupt=amount: the payload has no field amount",
    )
    item = outgoing(poison, poison.entries[0], '{"id": 1}', copy=1, corrupt_field="id")
    assert item.refused is None and jsonio.loads(item.body) == {"id": {"tracekit-corrupted": 1}}
