"""`tracekit replay plan` (tracekit.replay.plan): entries per target type from a store built from
artifacts in their real shapes, stream ranges re-read from a real moto server over HTTP, redaction and
`resolve_payload`, the replay-loop guard, and the CLI as a subprocess.

Every expected value is what the test put in (the DLQ body, the attributes, the records written to the
stream) or worked out by hand, never the planner's own output.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from tracekit import jsonio
from tracekit.analyze.build import analyze
from tracekit.analyze.keys import Config
from tracekit.analyze.lookup import EventFilter, Outcome
from tracekit.collect.ingest import ingest_paths
from tracekit.replay.model import PlanError, SourceKind, TargetType, load_plan, plan_to_json
from tracekit.replay.payloads import parse_target
from tracekit.replay.plan import PlanRequest, make_plan, plan_aws, resolve_payload
from tracekit.store import Store

ACCOUNT = "123456789012"
SOURCE_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:orders.fifo"
FUNCTION_ARN = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:orders-notify"
DLQ_REQUEST = "11111111-2222-4333-8444-555555555555"
DEST_REQUEST = "aaaaaaaa-2222-4333-8444-555555555555"
BOTH_REQUEST = "bbbbbbbb-2222-4333-8444-555555555555"
SECRET = "4111-1111-1111-1111"

#: Every SQS attribute type: String, Number, Binary and custom types of each.
ATTRIBUTES = {
    "source": {"DataType": "String", "StringValue": "api"},
    "count": {"DataType": "Number", "StringValue": "3"},
    "ratio": {"DataType": "Number.float", "StringValue": "0.5"},
    "blob": {"DataType": "Binary", "BinaryValue": "AAECAw=="},
    "label": {"DataType": "String.custom", "StringValue": "x y"},
    "image": {"DataType": "Binary.png", "BinaryValue": "iVBORw0K"},
}
FIFO_BODY = '{"order_id": 4711,  "card": "' + SECRET + '"}'


# -- artifacts in their real shapes -----------------------------------------------------------------


def sqs_message(message_id: str, body: str, attributes: dict[str, Any], **system: str) -> dict[str, Any]:
    """One message of `aws sqs receive-message --attribute-names All --message-attribute-names All`."""
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "MD5OfBody": "0" * 32,
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1795856400000", **system},
        "MD5OfMessageAttributes": "0" * 32,
        "MessageAttributes": attributes,
    }


def async_dlq_attributes(request_id: str) -> dict[str, Any]:
    return {
        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
        "ErrorMessage": {"DataType": "String", "StringValue": "boom"},
        "RequestID": {"DataType": "String", "StringValue": request_id},
    }


def async_record(request_id: str, payload: Any, function_arn: str) -> dict[str, Any]:
    return {
        "version": "1.0",
        "timestamp": "2026-11-22T09:02:00.000Z",
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "7", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "boom", "errorType": "ValueError"},
    }


def stream_failure(kind: str, stream_arn: str, shard: str, start: str, end: str, size: int) -> dict[str, Any]:
    """A Kinesis or DynamoDB Streams on-failure record (lambda-semantics §2)."""
    info = "KinesisBatchInfo" if kind == "kinesis" else "DDBStreamBatchInfo"
    return {
        "requestContext": {
            "requestId": f"c9b8fa9f-5a7f-4000-af9c-{abs(hash((start, end))) % 10**12:012d}",
            "functionArn": f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:orders-{kind}",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-11-22T09:03:00.000Z",
        info: {
            "shardId": shard,
            "startSequenceNumber": start,
            "endSequenceNumber": end,
            "approximateArrivalOfFirstRecord": "2026-11-22T09:02:50.000Z",
            "approximateArrivalOfLastRecord": "2026-11-22T09:02:51.000Z",
            "batchSize": size,
            "streamArn": stream_arn,
        },
    }


def log_text(request_id: str) -> str:
    """Plain Lambda log text of one failed attempt (ties the DLQ message's request id to a function)."""
    return (
        f"START RequestId: {request_id} Version: $LATEST\n"
        f"[ERROR] ValueError: boom\n"
        f"END RequestId: {request_id}\n"
        f"REPORT RequestId: {request_id}\tDuration: 3.00 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 40 MB\n"
    )


def write(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else jsonio.dumps(doc))


def make_store(tmp_path: Path, files: dict[str, Any], logs: dict[str, str] | None = None) -> Store:
    inputs = tmp_path / "in"
    for name, doc in files.items():
        write(inputs / name, doc)
    store = Store.open(tmp_path / "store", create=True)
    ingest_paths(store, [inputs])
    for log_group, text in (logs or {}).items():
        write(tmp_path / "logs" / f"{log_group.rsplit('/', 1)[-1]}.txt", text)
        ingest_paths(store, [tmp_path / "logs" / f"{log_group.rsplit('/', 1)[-1]}.txt"], log_group=log_group)
    analyze(store, Config())
    return store


def no_aws() -> Any:
    raise AssertionError("this plan must not call AWS")


def plan_for(store: Store, aws: Any = no_aws, **request: Any) -> Any:
    return make_plan(store, Config(), PlanRequest(**request), aws)


def by_event(plan: Any) -> dict[str, Any]:
    return {entry.event_id: entry for entry in plan.entries}


# -- dead letters and async records ----------------------------------------------------------------


@pytest.fixture
def incident(tmp_path: Path) -> Store:
    """A FIFO redrive-DLQ message, a function-DLQ message, an async on-failure record, and an event held
    by both a DLQ message and an on-failure record."""
    return make_store(
        tmp_path,
        {
            "orders-dlq.receive-message.json": {
                "Messages": [
                    sqs_message(
                        "m-fifo-1",
                        FIFO_BODY,
                        ATTRIBUTES,
                        MessageGroupId="customer-42",
                        MessageDeduplicationId="dedup-4711",
                        SequenceNumber="18849496460467696128",
                        DeadLetterQueueSourceArn=SOURCE_ARN,
                    )
                ]
            },
            "notify-dlq.receive-message.json": {
                "Messages": [
                    sqs_message("m-async-1", '{"order_id":4712}', async_dlq_attributes(DLQ_REQUEST)),
                    sqs_message("m-async-2", '{"order_id": 4714}', async_dlq_attributes(BOTH_REQUEST)),
                ]
            },
            "dest/one.json": async_record(
                DEST_REQUEST, {"order_id": 4713, "card": SECRET}, f"{FUNCTION_ARN}:live"
            ),
            "dest/both.json": async_record(BOTH_REQUEST, {"order_id": 4714}, f"{FUNCTION_ARN}:$LATEST"),
        },
        logs={"/aws/lambda/orders-notify": log_text(DLQ_REQUEST)},
    )


def test_redrive_dlq_message_goes_back_to_its_fifo_source_queue(incident: Store) -> None:
    entry = by_event(plan_for(incident))["m-fifo-1"]
    assert entry.target.type is TargetType.SQS
    assert entry.target.arn == SOURCE_ARN
    assert entry.target.url == f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/orders.fifo"
    assert entry.payload == FIFO_BODY  # the exact body, spacing included
    assert entry.attributes == ATTRIBUTES  # every attribute of every type
    assert entry.message_group_id == "customer-42"
    dedup = entry.message_deduplication_id
    assert dedup.startswith("dedup-4711:replay:") and dedup != "dedup-4711"
    assert len(dedup) <= 128 and re.fullmatch(r"[!-~]+", dedup)
    assert entry.source.kind is SourceKind.DEAD_LETTER and entry.source.id == "m-fifo-1"
    # Derived, not random: a resumed run (or the same plan made again) sends the same id.
    assert by_event(plan_for(incident))["m-fifo-1"].message_deduplication_id == dedup


def test_long_deduplication_ids_are_cut_to_sqs_limit(tmp_path: Path) -> None:
    original = "x" * 128
    store = make_store(
        tmp_path,
        {
            "q.receive-message.json": {
                "Messages": [
                    sqs_message(
                        "m-long",
                        "body",
                        {},
                        MessageGroupId="g",
                        MessageDeduplicationId=original,
                        DeadLetterQueueSourceArn=SOURCE_ARN,
                    )
                ]
            }
        },
    )
    dedup = plan_for(store).entries[0].message_deduplication_id
    assert len(dedup) == 128 and dedup != original and ":replay:" in dedup


def test_async_events_go_to_their_function(incident: Store) -> None:
    entries = by_event(plan_for(incident))
    dlq = entries[DLQ_REQUEST]
    # A function-DLQ message names no function: the one its logs show, by name (no ARN collected).
    assert (dlq.target.type, dlq.target.arn, dlq.target.qualifier) == (
        TargetType.LAMBDA,
        "orders-notify",
        None,
    )
    assert dlq.payload == '{"order_id":4712}'
    assert dlq.attributes == {}  # Lambda takes no attributes
    record = entries[DEST_REQUEST]
    assert (record.target.type, record.target.arn, record.target.qualifier) == (
        TargetType.LAMBDA,
        FUNCTION_ARN,
        "live",
    )
    assert jsonio.loads(record.payload) == {"order_id": 4713, "card": SECRET}
    assert record.source.kind is SourceKind.DESTINATION_RECORD


def test_a_dead_letter_wins_over_a_destination_record(incident: Store) -> None:
    """The DLQ message can be deleted once its copy is confirmed; the destination record cannot."""
    entry = by_event(plan_for(incident))[BOTH_REQUEST]
    assert entry.source.kind is SourceKind.DEAD_LETTER and entry.source.id == "m-async-2"
    assert entry.payload == '{"order_id": 4714}'


def test_selectors_and_order(incident: Store) -> None:
    plan = plan_for(incident, event_ids=[DEST_REQUEST, "m-fifo-1"])
    assert sorted(e.event_id for e in plan.entries) == sorted([DEST_REQUEST, "m-fifo-1"])
    assert [e.entry_id for e in plan.entries] == ["e00001", "e00002"]
    only = plan_for(incident, where=EventFilter(outcome=Outcome.DEAD_LETTERED), sql_where="source = 'sqs'")
    assert [e.event_id for e in only.entries] == ["m-fifo-1"]
    assert plan_for(incident, error_type="ValueError").entries[0].event_id == DEST_REQUEST
    # Deterministic but for the plan id and the time.
    first, second = plan_for(incident), plan_for(incident)
    second.plan_id, second.created_at = first.plan_id, first.created_at
    assert plan_to_json(first) == plan_to_json(second)


def test_bad_where_is_one_line(incident: Store) -> None:
    with pytest.raises(PlanError, match="cannot select events"):
        plan_for(incident, sql_where="no_such_column = 1")


def test_sns_and_eventbridge_targets(tmp_path: Path) -> None:
    sns_event = {
        "Records": [
            {
                "EventSource": "aws:sns",
                "Sns": {
                    "Type": "Notification",
                    "Message": '{"order_id": 4715}',
                    "MessageAttributes": {
                        "tier": {"Type": "String", "Value": "gold"},
                        "n": {"Type": "Number", "Value": "7"},
                        "raw": {"Type": "Binary", "Value": "AQI="},
                    },
                },
            }
        ]
    }
    bus_event = {"source": "shop.orders", "detail-type": "OrderPlaced", "detail": {"order_id": 4716}}
    store = make_store(
        tmp_path,
        {
            "sns.json": async_record("cccccccc-2222-4333-8444-555555555555", sns_event, FUNCTION_ARN),
            "bus.json": async_record("dddddddd-2222-4333-8444-555555555555", bus_event, FUNCTION_ARN),
        },
    )
    topic = f"arn:aws:sns:eu-west-1:{ACCOUNT}:orders"
    sns = by_event(plan_for(store, target=parse_target(topic)))["cccccccc-2222-4333-8444-555555555555"]
    assert (sns.target.type, sns.target.arn) == (TargetType.SNS, topic)
    assert sns.payload == '{"order_id": 4715}'
    assert sns.attributes == {
        "tier": {"DataType": "String", "StringValue": "gold"},
        "n": {"DataType": "Number", "StringValue": "7"},
        "raw": {"DataType": "Binary", "BinaryValue": "AQI="},
    }
    bus = f"arn:aws:events:eu-west-1:{ACCOUNT}:event-bus/orders"
    entries = by_event(plan_for(store, target=parse_target(bus)))
    known = entries["dddddddd-2222-4333-8444-555555555555"]
    assert (known.target.type, known.event_source, known.detail_type) == (
        TargetType.EVENTBRIDGE,
        "shop.orders",
        "OrderPlaced",
    )
    assert jsonio.loads(known.payload) == {"order_id": 4716}
    other = entries["cccccccc-2222-4333-8444-555555555555"]
    assert (other.event_source, other.detail_type) == ("tracekit.replay", "Replayed event")
    assert jsonio.loads(other.payload) == sns_event


@pytest.mark.parametrize(
    "text",
    [
        "orders",
        "arn:aws:s3:::bucket",
        "arn:aws:events:eu-west-1:1:rule/x",
        "arn:aws:dynamodb:eu-west-1:1:table/t",
    ],
)
def test_unknown_targets_are_refused(text: str) -> None:
    with pytest.raises(PlanError, match="cannot replay to this target"):
        parse_target(text)


# -- redaction ---------------------------------------------------------------------------------------


def test_redacted_values_stay_out_of_the_file_and_resolve_from_the_store(
    incident: Store, tmp_path: Path
) -> None:
    plan = plan_for(incident, redact=["$.card", "$.missing"])
    text = plan_to_json(plan).decode()
    assert SECRET not in text
    entries = by_event(plan)
    for event_id in ("m-fifo-1", DEST_REQUEST):
        assert entries[event_id].redacted == ["$.card"]
        assert jsonio.loads(entries[event_id].payload)["card"] == "[REDACTED]"
    assert entries[DLQ_REQUEST].redacted == []  # nothing to mask: kept as is
    assert resolve_payload(plan, entries["m-fifo-1"], incident) == FIFO_BODY
    assert jsonio.loads(resolve_payload(plan, entries[DEST_REQUEST], incident)) == {
        "order_id": 4713,
        "card": SECRET,
    }
    # A plan whose record is no longer in the store cannot be resolved.
    other = make_store(tmp_path / "other", {"x.json": async_record(BOTH_REQUEST, {"a": 1}, FUNCTION_ARN)})
    with pytest.raises(PlanError, match="no longer in the store"):
        resolve_payload(plan, entries["m-fifo-1"], other)


# -- the replay-loop guard ---------------------------------------------------------------------------


def test_replays_are_not_planned_again(tmp_path: Path) -> None:
    copy_attributes = {
        **ATTRIBUTES,
        "tracekit-replay-id": {"DataType": "String", "StringValue": "p1:e00001:m-orig"},
    }
    store = make_store(
        tmp_path,
        {
            "q.receive-message.json": {
                "Messages": [
                    sqs_message(
                        "m-orig", "one", ATTRIBUTES, DeadLetterQueueSourceArn=SOURCE_ARN, MessageGroupId="g"
                    ),
                    sqs_message(
                        "m-copy",
                        "one",
                        copy_attributes,
                        DeadLetterQueueSourceArn=SOURCE_ARN,
                        MessageGroupId="g",
                    ),
                    sqs_message(
                        "m-other", "two", {}, DeadLetterQueueSourceArn=SOURCE_ARN, MessageGroupId="g"
                    ),
                ]
            }
        },
    )
    plan = plan_for(store)
    assert [e.event_id for e in plan.entries] == ["m-other"]
    reasons = {u["event_id"]: u["reason"] for u in plan.unavailable}
    assert reasons["m-copy"].startswith("a replayed copy")
    assert reasons["m-orig"].startswith("already replayed")
    everything = plan_for(store, include_replays=True)
    assert sorted(e.event_id for e in everything.entries) == ["m-copy", "m-orig", "m-other"]


# -- stream ranges, re-read from moto -----------------------------------------------------------------


def test_kinesis_ranges_are_re_read_with_their_partition_keys(aws_endpoint: str, tmp_path: Path) -> None:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="orders", ShardCount=1)
    stream_arn = kinesis.describe_stream(StreamName="orders")["StreamDescription"]["StreamARN"]
    shard = "shardId-000000000000"
    data = [b'{"order_id": 1}', b"\x00\x01binary", b'{"order_id": 3}', b'{"order_id": 4}']
    seqs = [
        kinesis.put_record(StreamName="orders", Data=d, PartitionKey=f"customer-{i}")["SequenceNumber"]
        for i, d in enumerate(data)
    ]
    gone_arn = f"arn:aws:kinesis:eu-west-1:{ACCOUNT}:stream/expired"
    store = make_store(
        tmp_path,
        {
            # Records 2 and 3 failed; the record counts 2.
            "fail.json": stream_failure("kinesis", stream_arn, shard, seqs[1], seqs[2], 2),
            # A range of 5 whose records were not all found.
            "short.json": stream_failure("kinesis", stream_arn, shard, seqs[3], str(int(seqs[3]) + 10), 5),
            # A stream that no longer exists.
            "gone.json": stream_failure("kinesis", gone_arn, shard, "100", "200", 2),
        },
    )
    plan = plan_for(store, aws=plan_aws)
    entries = by_event(plan)
    for i in (1, 2, 3):
        entry = entries[f"{shard}:{seqs[i]}"]
        assert (entry.target.type, entry.target.arn) == (TargetType.KINESIS, stream_arn)
        assert entry.payload_encoding == "base64"
        assert base64.b64decode(entry.payload) == data[i]
        assert entry.partition_key == f"customer-{i}"
        assert entry.source.kind is SourceKind.STREAM_RANGE and entry.source.sequence_number == seqs[i]
    assert f"{shard}:{seqs[0]}" not in entries  # outside every range
    assert len(plan.entries) == 3
    reasons = [u["reason"] for u in plan.unavailable]
    assert any("counts 5 records, 1 were re-read" in r for r in reasons)
    assert any(
        u["sequence_number"] == str(int(seqs[3]) + 10) for u in plan.unavailable if "sequence_number" in u
    )
    gone = [u for u in plan.unavailable if u.get("stream_arn") == gone_arn]
    assert gone and "ResourceNotFoundException" in gone[0]["reason"]
    # Redacted Kinesis data is re-read from the stream at run time.
    redacted = plan_for(store, aws=plan_aws, redact=["$.order_id"])
    first = by_event(redacted)[f"{shard}:{seqs[2]}"]
    assert first.redacted == ["$.order_id"] and b"3" not in base64.b64decode(first.payload)
    assert base64.b64decode(resolve_payload(redacted, first, store, plan_aws())) == data[2]


def test_dynamodb_ranges_become_synthetic_stream_batches(aws_endpoint: str, tmp_path: Path) -> None:
    dynamodb = boto3.client("dynamodb")
    table = dynamodb.create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    stream_arn = table["TableDescription"]["LatestStreamArn"]
    dynamodb.put_item(TableName="orders", Item={"id": {"S": "4711"}, "qty": {"N": "1"}})
    dynamodb.put_item(TableName="orders", Item={"id": {"S": "4711"}, "qty": {"N": "2"}})
    streams = boto3.client("dynamodbstreams")
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )
    written = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    first, last = (r["dynamodb"]["SequenceNumber"] for r in (written[0], written[-1]))
    store = make_store(tmp_path, {"fail.json": stream_failure("dynamodb", stream_arn, shard, first, last, 2)})
    plan = plan_for(store, aws=plan_aws)
    assert [e.event_id for e in plan.entries] == [r["eventID"] for r in written]
    for entry, original in zip(plan.entries, written, strict=True):
        assert (entry.target.type, entry.target.arn) == (
            TargetType.DYNAMODB_INVOKE,
            f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:orders-dynamodb",
        )
        [record] = jsonio.loads(entry.payload)["Records"]
        assert record["eventSource"] == "aws:dynamodb"
        assert record["eventSourceARN"] == stream_arn
        assert record["eventName"] == original["eventName"]
        assert record["dynamodb"]["NewImage"] == original["dynamodb"]["NewImage"]
        assert record["dynamodb"]["SequenceNumber"] == original["dynamodb"]["SequenceNumber"]
        assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)
    assert plan.unavailable == []


# -- the command ------------------------------------------------------------------------------------


def test_replay_plan_command(incident: Store, tracekit_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "replays" / "orders.json"
    result = tracekit_cli(
        "replay",
        "plan",
        "--outcome",
        "dead_lettered",
        "--redact",
        "$.card",
        "-o",
        out,
        "--store",
        incident.root,
    )
    assert result.returncode == 0, result.stderr
    assert f"sqs {SOURCE_ARN}" in result.stdout and "lambda orders-notify" in result.stdout
    assert f"3 entries → {out}" in result.stderr
    plan = load_plan(out)
    assert sorted(e.event_id for e in plan.entries) == sorted(["m-fifo-1", DLQ_REQUEST, BOTH_REQUEST])
    assert SECRET not in out.read_text()
    bad = tracekit_cli("replay", "plan", "--target", "orders", "-o", out, "--store", incident.root)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1].startswith("Error: cannot replay to this target: orders.")
