"""`tracekit collect queue` against a real moto SQS over HTTP.

The oracle is SQS itself (what the test sent, and what the queue holds afterwards), never what
tracekit reports about its own work.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from tracekit.collect.live import CollectError, CollectReport, collect_aws
from tracekit.collect.progress import Meter
from tracekit.collect.queues import Held, collect_queue, queue_region
from tracekit.collect.spool import Spool, last_mark
from tracekit.store import Store

CliRun = Callable[..., subprocess.CompletedProcess[str]]
WAIT_S = 1  # long polling in these tests: an empty receive costs this much
TOPIC = "arn:aws:sns:eu-west-1:123456789012:orders-failures"


def to_json(value: object) -> str:
    # Message bodies are written with the standard library, not tracekit.jsonio, the code under test.
    return json.dumps(value)  # noqa: TID251


@pytest.fixture
def sqs(aws_endpoint: str) -> Any:
    return boto3.client("sqs", region_name="eu-west-1")


def make_queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def send(sqs: Any, url: str, body: str, **params: Any) -> str:
    return str(sqs.send_message(QueueUrl=url, MessageBody=body, **params)["MessageId"])


def filled_queue(sqs: Any, name: str, n: int) -> tuple[str, str, dict[str, str]]:
    """A new queue holding `n` messages "event 0".. ; returns its URL, ARN and {message id: body}."""
    url, arn = make_queue(sqs, name)
    return url, arn, {send(sqs, url, f"event {i}"): f"event {i}" for i in range(n)}


def counts(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) as SQS counts them."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def receive_all(sqs: Any, url: str) -> dict[str, dict[str, Any]]:
    """Every message a plain consumer can receive now, by message id (held 30 s)."""
    found: dict[str, dict[str, Any]] = {}
    while True:
        page = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        if not page:
            return found
        found.update({m["MessageId"]: m for m in page})


def collect(root: Path, queue: str, **options: Any) -> CollectReport:
    options.setdefault("wait_s", WAIT_S)
    with Store.open(root, create=True) as store, store.writing():
        return collect_queue(store, collect_aws("eu-west-1"), queue, **options)


def rows(root: Path, sql: str) -> list[dict[str, Any]]:
    return Store.open(root).query(sql)


class _Http:
    headers: dict[str, str] = {}
    content = b""

    def __init__(self, status: int) -> None:
        self.status_code = status


def intercept(
    aws: Any, operation: str, answer: Callable[[list[dict[str, Any]]], dict[str, Any]], *, times: int = -1
) -> None:
    """Answer the first `times` calls of `operation` (all when -1) with `answer(entries)` instead of
    moto: for what moto cannot produce (IAM denials, KMS errors, SQS-side batch entry failures)."""
    left = [times]

    def hook(params: dict[str, Any], **kwargs: Any) -> tuple[_Http, dict[str, Any]] | None:
        if left[0] == 0:
            return None
        left[0] -= 1
        parsed = answer(json.loads(params["body"]).get("Entries", []))
        return _Http(int(parsed["ResponseMetadata"]["HTTPStatusCode"])), parsed

    aws.client("sqs").meta.events.register(f"before-call.sqs.{operation}", hook)


def error_answer(code: str, message: str) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    return lambda entries: {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 403},
    }


def collect_with(aws: Any, store: Path, queue: str, **options: Any) -> CollectReport:
    with Store.open(store, create=True) as st, st.writing():
        return collect_queue(st, aws, queue, **options)


def dlq_message_attributes(n: int) -> dict[str, Any]:
    """Every attribute type SQS has, plus the three a Lambda function DLQ adds."""
    return {
        "RequestID": {"DataType": "String", "StringValue": f"req-{n}"},
        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
        "ErrorMessage": {"DataType": "String", "StringValue": f"boom {n}"},
        "Blob": {"DataType": "Binary", "BinaryValue": bytes([0, n, 255])},
        "Amount": {"DataType": "Number.float", "StringValue": f"{n}.5"},
    }


def destination_record(request_id: str) -> dict[str, Any]:
    return {
        "version": "1.0",
        "timestamp": "2024-05-01T10:00:00.000Z",
        "requestContext": {
            "requestId": request_id,
            "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:orders:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"order": 4711},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "boom", "errorType": "Exception"},
    }


# -- snapshot --------------------------------------------------------------------------------


def test_snapshot_leaves_every_message_in_the_queue_and_stores_each_once(sqs: Any, tmp_path: Path) -> None:
    url, arn = make_queue(sqs, "orders-dlq")
    sent = {
        send(sqs, url, to_json({"order": n}), MessageAttributes=dlq_message_attributes(n)): n
        for n in range(13)
    }
    store = tmp_path / "store"

    meter = Meter("queue", "messages", enabled=False)
    report = collect(store, "orders-dlq", role="dlq", meter=meter)

    assert counts(sqs, url) == (13, 0)
    assert (meter.items, meter.pages) == (13, 2)
    assert set(receive_all(sqs, url)) == set(sent)
    # 13 messages counted up front: two receives of ten, no empty long polls.
    assert report.calls["ReceiveMessage"] == 2
    assert report.counts["dead_letters"] == 13
    got = rows(store, "SELECT * FROM dead_letters ORDER BY message_id")
    assert {r["message_id"] for r in got} == set(sent)
    for row in got:
        n = sent[row["message_id"]]
        assert json.loads(row["body"]) == {"order": n}
        assert row["queue"] == arn
        assert (row["kind"], row["request_id"], row["error_code"], row["error_message"]) == (
            "async_dlq",
            f"req-{n}",
            "200",
            f"boom {n}",
        )
        attributes = json.loads(row["message_attributes"])
        assert attributes["Blob"] == {
            "DataType": "Binary",
            "BinaryValue": base64.b64encode(bytes([0, n, 255])).decode(),
        }
        assert attributes["Amount"] == {"DataType": "Number.float", "StringValue": f"{n}.5"}
        assert attributes["RequestID"]["DataType"] == "String"
        system = json.loads(row["attributes"])
        assert system["ApproximateReceiveCount"] == "1"
        assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(system)
        assert row["approximate_receive_count"] == 1
    mark = last_mark(Store.open(store), f"queue:{arn}")
    assert mark is not None and (mark["messages"], mark["drained"]) == (13, False)
    assert any("raised the receive count" in w and "13 messages" in w for w in report.warnings)


def test_a_snapshot_reads_on_when_the_message_count_was_too_low(sqs: Any, tmp_path: Path) -> None:
    """ApproximateNumberOfMessages is approximate: here the first count says 5 of 13."""
    url, _, sent = filled_queue(sqs, "orders-dlq", 13)
    aws = collect_aws("eu-west-1")
    first = [True]

    def understate(parsed: dict[str, Any], **kwargs: Any) -> None:
        if first[0] and "ApproximateNumberOfMessages" in parsed.get("Attributes", {}):
            parsed["Attributes"]["ApproximateNumberOfMessages"] = "5"
            first[0] = False

    aws.client("sqs").meta.events.register("after-call.sqs.GetQueueAttributes", understate)
    store = tmp_path / "store"
    report = collect_with(aws, store, "orders-dlq", wait_s=WAIT_S)

    assert {r["message_id"] for r in rows(store, "SELECT message_id FROM dead_letters")} == set(sent)
    assert counts(sqs, url) == (13, 0)
    assert report.calls["ReceiveMessage"] == 2
    assert not [w for w in report.warnings if "incomplete" in w]


def test_a_second_snapshot_of_an_unchanged_queue_adds_nothing(sqs: Any, tmp_path: Path) -> None:
    url, arn = make_queue(sqs, "orders-dlq")
    for n in range(4):
        send(sqs, url, f"event {n}", MessageAttributes={"k": {"DataType": "String", "StringValue": str(n)}})
    store = tmp_path / "store"
    collect(store, url, role="dlq")

    again = collect(store, arn, role="dlq")

    assert again.fetched == 4
    assert sum(again.counts.values()) == 0
    assert rows(store, "SELECT count(*) AS n FROM dead_letters")[0]["n"] == 4
    # The queue saw two receives of every message, and still holds them all.
    received = receive_all(sqs, url)
    assert sorted(m["Attributes"]["ApproximateReceiveCount"] for m in received.values()) == ["3"] * 4


def test_an_interrupted_snapshot_releases_what_it_held_and_the_next_run_stores_it(
    sqs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, sent = filled_queue(sqs, "orders-dlq", 15)
    store = tmp_path / "store"
    spooled = 0
    real_add = Spool.add

    def add_then_interrupt(self: Spool, data: bytes, source: str, *, suffix: str = ".json") -> Path:
        nonlocal spooled
        if spooled == 1:
            raise KeyboardInterrupt  # Ctrl-C while the second page comes in
        spooled += 1
        return real_add(self, data, source, suffix=suffix)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(Spool, "add", add_then_interrupt)
        collect(store, "orders-dlq", role="dlq")

    assert counts(sqs, url) == (15, 0)  # nothing left hidden for the hold
    assert rows(store, "SELECT count(*) AS n FROM dead_letters")[0]["n"] == 0  # page 1 is only spooled
    report = collect(store, "orders-dlq", role="dlq")
    assert report.counts["dead_letters"] == 15
    assert {r["message_id"] for r in rows(store, "SELECT message_id FROM dead_letters")} == set(sent)


def test_fifo_snapshot_warns_that_groups_hide_messages_and_drain_reads_them_all(
    sqs: Any, tmp_path: Path
) -> None:
    """moto locks a FIFO message group while any of its messages is in flight, as SQS does (checked
    by hand: 12 messages in group A and 1 in B give receives of 10 (A) and 1 (B), then nothing)."""
    url, _ = make_queue(sqs, "orders-dlq.fifo", FifoQueue="true")
    sent = {}
    for n in range(13):
        group = "A" if n < 12 else "B"
        message_id = send(sqs, url, f"event {n}", MessageGroupId=group, MessageDeduplicationId=f"dedup-{n}")
        sent[message_id] = (group, f"dedup-{n}")
    store = tmp_path / "store"

    # moto is one server, so short polling (wait 0) sees every message and keeps this test quick.
    snapshot = collect(store, "orders-dlq.fifo", role="dlq", wait_s=0)

    assert counts(sqs, url) == (13, 0)
    assert snapshot.counts["dead_letters"] == 11
    warning = next(w for w in snapshot.warnings if "FIFO" in w)
    assert "11 of about 13" in warning and "--drain" in warning

    drained = collect(store, "orders-dlq.fifo", role="dlq", drain=True, wait_s=0)

    assert counts(sqs, url) == (0, 0)
    assert drained.counts["dead_letters"] == 2
    got = rows(store, "SELECT message_id, message_group_id, message_deduplication_id FROM dead_letters")
    assert {r["message_id"]: (r["message_group_id"], r["message_deduplication_id"]) for r in got} == sent


def test_redrive_warning_says_how_close_messages_are_to_moving_on(sqs: Any, tmp_path: Path) -> None:
    _, dlq_arn = make_queue(sqs, "orders-dlq")
    redrive = to_json({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url, _ = make_queue(sqs, "orders-dest", RedrivePolicy=redrive)
    for n in range(3):
        send(sqs, url, f"seen once {n}")
    first = receive_all(sqs, url)
    sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(first.values())
        ],
    )
    send(sqs, url, "never seen")

    report = collect(tmp_path / "store", url, role="dlq")

    warning = next(w for w in report.warnings if dlq_arn in w)
    assert "more than 2 times" in warning
    assert "3 messages move on the next receive" in warning
    assert "1 more is one receive further away" in warning
    # What the warning predicts, as SQS does it: the next receive moves the three on.
    assert [m["Body"] for m in receive_all(sqs, url).values()] == ["never seen"]
    dlq_url = sqs.get_queue_url(QueueName="orders-dlq")["QueueUrl"]
    assert counts(sqs, dlq_url)[0] == 3


# -- drain -----------------------------------------------------------------------------------


def test_drain_empties_the_queue_and_the_store_holds_every_message(sqs: Any, tmp_path: Path) -> None:
    url, arn, sent = filled_queue(sqs, "orders-dlq", 25)
    store = tmp_path / "store"

    report = collect(store, arn, role="dlq", drain=True)

    assert counts(sqs, url) == (0, 0)
    assert receive_all(sqs, url) == {}
    got = rows(store, "SELECT message_id, body FROM dead_letters")
    assert {r["message_id"]: r["body"] for r in got} == sent
    assert report.calls["DeleteMessageBatch"] == 3
    mark = last_mark(Store.open(store), f"queue:{arn}")
    assert mark is not None and (mark["messages"], mark["drained"]) == (25, True)


def test_drain_deletes_nothing_that_is_not_committed(
    sqs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, sent = filled_queue(sqs, "orders-dlq", 12)
    store = tmp_path / "store"

    def fail(*args: Any, **kwargs: Any) -> None:
        raise CollectError("disk full", "store", "free some space")

    with monkeypatch.context() as patch, pytest.raises(CollectError, match="disk full"):
        patch.setattr(Spool, "ingest", fail)
        collect(store, "orders-dlq", role="dlq", drain=True, wait_s=0)

    assert counts(sqs, url) == (12, 0)
    collect(store, "orders-dlq", role="dlq", drain=True, wait_s=0)
    assert counts(sqs, url) == (0, 0)
    assert {r["message_id"] for r in rows(store, "SELECT message_id FROM dead_letters")} == set(sent)


# -- roles -----------------------------------------------------------------------------------


def test_as_destination_routes_records_and_quarantines_other_messages(sqs: Any, tmp_path: Path) -> None:
    url, arn = make_queue(sqs, "orders-failures")
    record = destination_record("c0ffee00-0000-4000-8000-000000004711")
    notification = {
        "Type": "Notification",
        "MessageId": "sns-message-1",
        "TopicArn": TOPIC,
        "Message": to_json(record),
        "Timestamp": "2024-05-01T10:00:01.000Z",
    }
    sns_id = send(sqs, url, to_json(notification))
    bare_id = send(sqs, url, to_json(destination_record("c0ffee00-0000-4000-8000-000000000002")))
    send(sqs, url, "hello, not a record")
    store = tmp_path / "store"

    report = collect(store, url, role="destination")
    collect(store, url, role="destination")  # a second snapshot quarantines nothing new

    assert (report.counts["destination_records"], report.counts["dead_letters"]) == (2, 0)
    got = {
        r["request_id"]: r
        for r in rows(
            store,
            "SELECT request_id, envelope, envelope_path, envelope_id, condition FROM destination_records",
        )
    }
    sns = got["c0ffee00-0000-4000-8000-000000004711"]
    assert (sns["envelope"], sns["envelope_path"], sns["envelope_id"], sns["condition"]) == (
        "sns",
        "sqs/sns",
        "sns-message-1",
        "RetriesExhausted",
    )
    assert got["c0ffee00-0000-4000-8000-000000000002"]["envelope_id"] == bare_id != sns_id
    quarantined = rows(store, "SELECT reason, raw FROM quarantine")
    assert [q["reason"] for q in quarantined] == ["not a destination record"]
    assert "hello, not a record" in quarantined[0]["raw"]
    assert rows(store, "SELECT count(*) AS n FROM dead_letters")[0]["n"] == 0
    assert counts(sqs, url) == (3, 0)
    assert any(arn in r for r in report.resources)
    # As a DLQ, the same queue gives the odd message as a dead letter; records stay records.
    as_dlq = collect(tmp_path / "dlq-store", url, role="dlq")
    assert (as_dlq.counts["destination_records"], as_dlq.counts["dead_letters"]) == (2, 1)
    assert as_dlq.counts["quarantined"] == 0


# -- errors ----------------------------------------------------------------------------------


def test_a_missing_queue_is_one_line(aws_endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(CollectError) as caught:
        collect(tmp_path / "store", "no-such-queue")
    assert caught.value.line() == (
        "cannot collect: no such SQS queue: no-such-queue (region eu-west-1). "
        "Check the queue URL, name or ARN, --region and --profile"
    )


@pytest.mark.parametrize(
    ("operation", "action", "drain"),
    [
        ("ReceiveMessage", "sqs:ReceiveMessage", False),
        ("ChangeMessageVisibilityBatch", "sqs:ChangeMessageVisibility", False),
        ("DeleteMessageBatch", "sqs:DeleteMessage", True),
    ],
)
def test_a_missing_permission_names_the_action_and_the_queue_and_loses_nothing(
    sqs: Any, tmp_path: Path, operation: str, action: str, drain: bool
) -> None:
    """moto does not enforce IAM, so this one operation gets the AccessDenied error SQS gives; every
    other call goes to moto."""
    url, arn, sent = filled_queue(sqs, "orders-dlq", 3)
    aws = collect_aws("eu-west-1")
    intercept(aws, operation, error_answer("AccessDenied", f"not authorized to perform: {action}"))
    store = tmp_path / "store"
    with pytest.raises(CollectError) as caught:
        collect_with(aws, store, "orders-dlq", drain=drain, hold_s=1, wait_s=WAIT_S)

    line = caught.value.line()
    assert "\n" not in line
    assert f"{operation} failed: queue {arn} (AccessDenied" in line
    assert f"Allow {action} on it for these credentials" in line
    if operation == "ChangeMessageVisibilityBatch":
        assert "held messages reappear by themselves within 1 s" in line
        time.sleep(1.2)
    assert counts(sqs, url) == (3, 0)
    if drain:  # stored before the delete was refused, and still in the queue: in both places
        assert {r["message_id"] for r in rows(store, "SELECT message_id FROM dead_letters")} == set(sent)


def test_a_kms_denial_asks_for_kms_decrypt(sqs: Any, tmp_path: Path) -> None:
    _, arn, _ = filled_queue(sqs, "orders-dlq", 1)
    aws = collect_aws("eu-west-1")
    intercept(aws, "ReceiveMessage", error_answer("KMS.AccessDeniedException", "no access to key"))
    with pytest.raises(CollectError) as caught:
        collect_with(aws, tmp_path / "store", "orders-dlq", wait_s=0)
    assert caught.value.line() == (
        f"cannot collect: sqs ReceiveMessage failed: queue {arn} (KMS.AccessDeniedException: no access "
        "to key). Allow kms:Decrypt on the queue's KMS key for these credentials"
    )


@pytest.mark.parametrize("sender_fault", [False, True])
def test_drain_resends_deletes_sqs_failed_and_keeps_refused_messages(
    sqs: Any, tmp_path: Path, sender_fault: bool
) -> None:
    """SQS-side entry failures (SenderFault false) are resent; refused receipts are reported, and
    those messages stay in the queue as well as in the store."""
    url, _, sent = filled_queue(sqs, "orders-dlq", 3)
    aws = collect_aws("eu-west-1")

    def failed(entries: list[dict[str, Any]]) -> dict[str, Any]:
        code = "ReceiptHandleIsInvalid" if sender_fault else "InternalError"
        failures = [
            {"Id": e["Id"], "SenderFault": sender_fault, "Code": code, "Message": ""} for e in entries
        ]
        return {"Successful": [], "Failed": failures, "ResponseMetadata": {"HTTPStatusCode": 200}}

    intercept(aws, "DeleteMessageBatch", failed, times=1)
    store = tmp_path / "store"
    report = collect_with(aws, store, "orders-dlq", drain=True, wait_s=0)

    assert {r["message_id"] for r in rows(store, "SELECT message_id FROM dead_letters")} == set(sent)
    refused = [w for w in report.warnings if "could not be deleted" in w]
    if sender_fault:
        assert refused == [
            "3 messages of orders-dlq could not be deleted (ReceiptHandleIsInvalid); they are in the store "
            "and stay in the queue, where the next --drain reads and deletes them"
        ]
        assert sum(counts(sqs, url)) == 3
    else:
        assert (refused, report.calls["DeleteMessageBatch"]) == ([], 2)
        assert counts(sqs, url) == (0, 0)


def test_a_message_received_again_is_released_with_its_newest_receipt() -> None:
    held = Held()
    first = {"MessageId": "m-1", "ReceiptHandle": "r-1", "Attributes": {"ApproximateReceiveCount": "1"}}
    again = {"MessageId": "m-1", "ReceiptHandle": "r-2", "Attributes": {"ApproximateReceiveCount": "2"}}
    assert held.add([first]) == 1
    assert held.add([again, {"MessageId": "m-2", "ReceiptHandle": "r-3"}]) == 1
    assert held.handles == {"m-1": "r-2", "m-2": "r-3"}
    assert (held.received_again, held.receive_counts) == (1, {"m-1": 2})


def test_queue_region_comes_from_an_arn_or_an_aws_url() -> None:
    assert queue_region("arn:aws:sqs:ap-southeast-2:123456789012:orders-dlq") == "ap-southeast-2"
    assert queue_region("https://sqs.us-gov-west-1.amazonaws.com/123456789012/q") == "us-gov-west-1"
    assert queue_region("https://eu-west-1.queue.amazonaws.com/123456789012/q") == "eu-west-1"
    assert queue_region("http://127.0.0.1:5000/123456789012/q") is None
    assert queue_region("orders-dlq") is None


# -- CLI -------------------------------------------------------------------------------------


def test_cli_collect_queue_snapshot(sqs: Any, tmp_path: Path, tracekit_cli: CliRun) -> None:
    url, _, sent = filled_queue(sqs, "orders-dlq", 5)
    store = tmp_path / "store"

    done = tracekit_cli("collect", "queue", "orders-dlq", "--as", "dlq", "--store", store, "-f", "json", "-q")

    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["dead_letters"], out["fetched"], out["calls ReceiveMessage"]) == (5, 5, 1)
    assert "warning: the snapshot raised the receive count" in done.stderr
    assert counts(sqs, url) == (5, 0)
    assert {r["message_id"] for r in rows(store, "SELECT message_id FROM dead_letters")} == set(sent)

    missing = tracekit_cli("collect", "queue", "nope", "--as", "destination", "--store", store)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "Error: cannot collect: no such SQS queue: nope (region eu-west-1). "
        "Check the queue URL, name or ARN, --region and --profile"
    ]
