"""The replay engine against the moto server over HTTP (through the fault proxy, which counts calls):
dry runs send nothing, guards refuse before any sending call, the journal makes resumes exact,
throttling is retried, --delete-source leaves exactly the failed entries in the DLQ, FIFO order holds.

Plans are written by the tests from messages they put in a DLQ (the plan builder is tested apart).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.faultproxy import FaultProxy, Rule
from tracekit import jsonio
from tracekit.aws import Aws, AwsError
from tracekit.replay import journal as jn
from tracekit.replay.model import MARKER, Entry, Plan, Source, SourceKind, Target, TargetType, save_plan
from tracekit.replay.run import ReplayError, RunOptions, run_plan
from tracekit.replay.targets import Outgoing, SendResult, sender_for

CliRun = Callable[..., subprocess.CompletedProcess[str]]
REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's
SENDING_OPERATIONS = ("SendMessage", "SendMessageBatch", "Publish", "PublishBatch", "PutEvents", "PutRecords")


def sqs() -> Any:
    return boto3.client("sqs", region_name=REGION)


def make_queue(name: str) -> str:
    attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    return str(sqs().create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def receive_all(url: str) -> list[dict[str, Any]]:
    """Every message on the queue, in receive order, deleted as read (FIFO groups unblock)."""
    seen: list[dict[str, Any]] = []
    while True:
        got = sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        messages = got.get("Messages", [])
        if not messages:
            return seen
        for message in messages:
            sqs().delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        seen.extend(messages)


def marker_counts(messages: list[dict[str, Any]]) -> Counter[str]:
    """How many copies of each entry arrived (entry id from the marker `p1:<entry>:<event>`)."""
    return Counter(m["MessageAttributes"][MARKER]["StringValue"].split(":")[1] for m in messages)


def fill_dlq(url: str, n: int, *, crowded: set[int] = frozenset()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    """Put n dead letters in the DLQ; those in `crowded` carry 10 attributes (no room for the marker)."""
    for i in range(n):
        attributes = {"tenant": {"DataType": "String", "StringValue": "acme"}}
        if i in crowded:
            attributes = {f"a{k}": {"DataType": "String", "StringValue": str(k)} for k in range(10)}
        sqs().send_message(QueueUrl=url, MessageBody=jsonio.dumps({"order": i}), MessageAttributes=attributes)
    return receive_all_visible(url)


def receive_all_visible(url: str) -> list[dict[str, Any]]:
    """Read every message once and make them all visible again (what `collect queue` does)."""
    seen: dict[str, dict[str, Any]] = {}
    while True:
        got = (
            sqs()
            .receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=30
            )
            .get("Messages", [])
        )
        if not got:
            break
        seen.update((m["MessageId"], m) for m in got)
    for m in seen.values():
        sqs().change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return sorted(seen.values(), key=lambda m: json.loads(m["Body"])["order"])


def write_plan(path: Path, messages: list[dict[str, Any]], dlq_arn: str, target: Target) -> Path:
    entries = [
        Entry(
            entry_id=f"e{i}",
            event_id=f"ev{i}",
            function_name="orders",
            source=Source(SourceKind.DEAD_LETTER, id=m["MessageId"], queue=dlq_arn),
            target=target,
            payload=m["Body"],
            attributes=m.get("MessageAttributes", {}),
        )
        for i, m in enumerate(messages)
    ]
    save_plan(Plan("p1", "2026-11-26T00:00:00.000Z", {}, "", entries), path)
    return path


def plain_plan(path: Path, target: Target, n: int, **fields: Any) -> Path:
    entries = [
        Entry(
            entry_id=f"e{i}",
            event_id=f"ev{i}",
            function_name="orders",
            source=Source(SourceKind.DESTINATION_RECORD, id=f"r{i}"),
            target=target,
            payload=jsonio.dumps({"order": i}),
            **{k: (v(i) if callable(v) else v) for k, v in fields.items()},
        )
        for i in range(n)
    ]
    save_plan(Plan("p1", "2026-11-26T00:00:00.000Z", {}, "", entries), path)
    return path


def aws() -> Aws:
    return Aws(REGION, verb="cannot replay")


def applied(**more: Any) -> RunOptions:
    options: dict[str, Any] = {"rate": 5000, "concurrency": 4, "allow_accounts": [ACCOUNT], **more}
    return RunOptions(apply=True, **options)


def sent_calls(proxy: FaultProxy) -> int:
    return sum(proxy.counts[op] for op in SENDING_OPERATIONS)


@pytest.fixture
def proxy(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with FaultProxy(aws_endpoint) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        yield running


# ------------------------------------------------------------------------------- dry run, guards


def test_dry_run_sends_nothing_and_says_what_would_go_where(proxy: FaultProxy, tmp_path: Path) -> None:
    url = make_queue("orders")
    plan = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=url), 25)
    proxy.clear()

    report = run_plan(plan, aws(), RunOptions(rate=50, delete_source=True))

    assert sum(proxy.counts.values()) == 0  # no AWS call at all, STS included
    assert not (tmp_path / "p.journal").exists() and not (tmp_path / "p.report.json").exists()
    assert report.dry_run and report.counts == {
        "to_send": 25,
        "already_final": 0,
        "dead_letters_to_delete": 0,
    }
    [target] = report.targets
    assert target.target == f"sqs {url}" and target.copies == 25
    assert target.first == ["e0#0 (event ev0)", "e1#0 (event ev1)", "e2#0 (event ev2)"]


def test_account_not_allowed_is_refused_before_any_sending_call(
    proxy: FaultProxy, tmp_path: Path, tracekit_cli: CliRun
) -> None:
    url = make_queue("orders")
    plan = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=url), 5)
    proxy.clear()

    result = tracekit_cli(
        "replay", "run", plan, "--apply", "--allow-account", "999999999999", "--region", REGION
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: refusing to replay: account not allowed: credentials are for account 123456789012, "
        "region eu-west-1; allowed: 999999999999. Use credentials of an allowed account, or add it "
        "with --allow-account"
    )
    assert proxy.counts["GetCallerIdentity"] == 1
    assert sent_calls(proxy) == 0 and not (tmp_path / "p.journal").exists()
    assert receive_all(url) == []


def test_no_allow_list_and_foreign_target_accounts_are_refused(
    proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_queue("orders")
    monkeypatch.chdir(tmp_path)  # no tracekit.toml here
    plan = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=url), 3)
    with pytest.raises(ReplayError, match=f"no account allow-list.*--allow-account {ACCOUNT}"):
        run_plan(plan, aws(), RunOptions(apply=True))

    foreign = Target(TargetType.SNS, arn="arn:aws:sns:eu-west-1:210987654321:orders")
    plan = plain_plan(tmp_path / "q.json", foreign, 3)
    with pytest.raises(ReplayError, match="a target is in an account not allowed.*210987654321"):
        run_plan(plan, aws(), applied())
    assert sent_calls(proxy) == 0


def test_allow_list_from_tracekit_toml(
    proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_queue("orders")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tracekit.toml").write_text(f'[replay]\nallow_accounts = ["{ACCOUNT}"]\n')
    plan = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=url), 3)

    report = run_plan(plan, aws(), RunOptions(apply=True))

    assert report.counts["confirmed"] == 3 and report.account == ACCOUNT and report.region == REGION
    assert len(receive_all(url)) == 3


# ------------------------------------------------------------------------------------ journal, resume


class CrashAfter:
    """The real SQS sender, except that after its `calls`-th call reached SQS the process "dies"
    (RuntimeError) before the answer is journaled: those copies stay `sending` in the journal."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def __call__(self, target: Target, aws: Aws) -> Any:
        real, outer = sender_for(target, aws), self

        class Crashing:
            def __init__(self) -> None:
                self.target = target

            def batches(self, items: list[Outgoing]) -> Iterator[list[Outgoing]]:
                return real.batches(items)

            def send(self, batch: list[Outgoing]) -> list[SendResult]:
                results = real.send(batch)
                outer.calls -= 1
                if outer.calls == 0:
                    raise RuntimeError("killed")
                return results

        return Crashing()


def test_resume_resends_only_what_was_in_flight_and_reports_it(proxy: FaultProxy, tmp_path: Path) -> None:
    url = make_queue("orders")
    plan = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=url), 50)

    with pytest.raises(RuntimeError, match="killed"):
        run_plan(plan, aws(), applied(concurrency=1), sender_for=CrashAfter(3))
    state = jn.read_journal(tmp_path / "p.journal")
    in_flight = state.in_flight()
    assert in_flight == [f"e{i}#0" for i in range(20, 30)]  # the third batch of ten
    assert state.counts()["confirmed"] == 20

    with pytest.raises(ReplayError, match="already has a journal.*Use --resume"):
        run_plan(plan, aws(), applied())

    proxy.clear()
    report = run_plan(plan, aws(), applied(resume=True))
    assert proxy.counts["SendMessageBatch"] == 3  # entries 20..49, nothing confirmed before
    assert report.counts["confirmed"] == 50 and report.failures == []
    assert [d["key"] for d in report.possibly_duplicated] == in_flight

    counts = marker_counts(receive_all(url))
    assert set(counts) == {f"e{i}" for i in range(50)}
    assert {e for e, n in counts.items() if n > 1} == {f"e{i}" for i in range(20, 30)}
    saved = json.loads((tmp_path / "p.report.json").read_text())
    assert saved["counts"]["confirmed"] == 50 and len(saved["possibly_duplicated"]) == 10

    proxy.clear()
    again = run_plan(plan, aws(), applied(resume=True))  # a finished plan sends nothing
    assert sent_calls(proxy) == 0 and again.counts["confirmed"] == 50


def test_a_refused_call_stops_the_run_and_a_resume_finishes_without_duplicates(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    url = make_queue("orders")
    missing = url.replace("/orders", "/orders-gone")
    plan = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=missing), 20)

    with pytest.raises(AwsError, match="cannot replay: sqs SendMessageBatch failed.*orders-gone"):
        run_plan(plan, aws(), applied(concurrency=1))
    state = jn.read_journal(tmp_path / "p.journal")
    # SQS answered and refused the call: nothing was sent, nothing is left in flight.
    assert state.in_flight() == [] and state.counts()["pending"] == 20
    assert "NonExistentQueue" in str(state.copies["e0#0"].reason)
    partial = json.loads((tmp_path / "p.report.json").read_text())
    assert partial["counts"]["pending"] == 20 and partial["calls"] == 1

    make_queue("orders-gone")
    report = run_plan(plan, aws(), applied(resume=True))
    assert report.counts["confirmed"] == 20 and report.possibly_duplicated == []


def test_a_call_lost_on_the_wire_is_resent_and_reported_possibly_duplicated(
    proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    url = make_queue("orders")
    plan = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=url), 30)
    proxy.add(Rule("SendMessageBatch", drop=True, skip=1, times=1))  # the 2nd call: no answer

    with pytest.raises(AwsError, match="SendMessageBatch failed"):
        run_plan(plan, aws(), applied(concurrency=1))
    assert jn.read_journal(tmp_path / "p.journal").in_flight() == [f"e{i}#0" for i in range(10, 20)]

    report = run_plan(plan, aws(), applied(resume=True))
    assert report.counts["confirmed"] == 30
    assert [d["key"] for d in report.possibly_duplicated] == [f"e{i}#0" for i in range(10, 20)]
    assert marker_counts(receive_all(url)) == Counter({f"e{i}": 1 for i in range(30)})


def test_retry_failed_sends_again_only_the_copies_that_failed(proxy: FaultProxy, tmp_path: Path) -> None:
    """The first run's only call is answered with a final per-entry failure for two of three copies
    (nothing reached the queue for them). A plain resume leaves failed copies alone; --retry-failed
    sends exactly those two, once each."""
    url = make_queue("orders")
    plan = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=url), 3)
    refused = {"Code": "InvalidParameterValue", "SenderFault": True, "Message": "refused by the test"}
    reply = {
        "Successful": [{"Id": "0", "MessageId": "m-0", "MD5OfMessageBody": "x"}],
        "Failed": [{"Id": "1", **refused}, {"Id": "2", **refused}],
    }
    proxy.add(Rule("SendMessageBatch", reply=reply, times=1))
    first = run_plan(plan, aws(), applied())
    assert [f["entry_id"] for f in first.failures] == ["e1", "e2"]

    with pytest.raises(ReplayError, match="--retry-failed finishes an earlier run"):
        run_plan(plan, aws(), applied(retry_failed=True))
    proxy.clear()
    plain = run_plan(plan, aws(), applied(resume=True))
    assert sent_calls(proxy) == 0 and plain.counts["failed"] == 2
    dry = run_plan(plan, aws(), RunOptions(retry_failed=True, resume=True))
    assert dry.counts["to_send"] == 2

    retried = run_plan(plan, aws(), applied(resume=True, retry_failed=True))
    assert retried.counts["confirmed"] == 3 and retried.counts["failed"] == 0
    assert retried.failures == [] and retried.possibly_duplicated == []
    assert marker_counts(receive_all(url)) == Counter({"e1": 1, "e2": 1})


def test_a_changed_plan_does_not_resume_an_old_journal(proxy: FaultProxy, tmp_path: Path) -> None:
    url = make_queue("orders")
    plan = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=url), 5)
    run_plan(plan, aws(), applied())
    plain_plan(plan, Target(TargetType.SQS, url=url), 6)
    with pytest.raises(ReplayError, match="the plan changed since its journal was written"):
        run_plan(plan, aws(), applied(resume=True))


# ----------------------------------------------------------------------------- throttling, faults


def test_throttled_calls_are_resent_and_the_rate_halved(
    proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore gives the throttle to the engine
    url = make_queue("orders")
    plan = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=url), 40)
    proxy.add(Rule("SendMessageBatch", error="ThrottlingException", skip=1, times=1))

    report = run_plan(plan, aws(), applied(concurrency=1))

    assert proxy.counts["SendMessageBatch"] == 4 + 1
    assert report.throttled == 1 and report.counts["confirmed"] == 40 and report.calls == 5
    assert marker_counts(receive_all(url)) == Counter({f"e{i}": 1 for i in range(40)})


def test_faults_are_journaled_against_the_copies_they_shaped(proxy: FaultProxy, tmp_path: Path) -> None:
    url = make_queue("orders")
    plan = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=url), 10)

    report = run_plan(plan, aws(), applied(faults=["duplicate=1", "throttle=1"]))

    assert report.counts["confirmed"] == 20 and report.throttled >= 1
    assert marker_counts(receive_all(url)) == Counter({f"e{i}": 2 for i in range(10)})
    state = jn.read_journal(tmp_path / "p.journal")
    assert state.header["faults"] == ["duplicate=1", "throttle=1"]
    assert state.copies["e3#1"].faults == ["duplicate=1", "throttle=1"]
    with pytest.raises(ReplayError, match="--fault differs"):
        run_plan(plan, aws(), applied(resume=True, faults=["duplicate=2"]))


def test_copies_to_several_targets_still_go_ten_per_call(proxy: FaultProxy, tmp_path: Path) -> None:
    urls = [make_queue(f"orders-{n}") for n in range(3)]
    entries = plain_plan(tmp_path / "p.json", Target(TargetType.SQS, url=urls[0]), 60)
    plan = _retarget(entries, lambda i: Target(TargetType.SQS, url=urls[i % 3]))
    proxy.clear()

    report = run_plan(plan, aws(), applied(concurrency=4))

    assert report.counts["confirmed"] == 60
    assert proxy.counts["SendMessageBatch"] == 6  # 20 per queue, in batches of ten
    for n, url in enumerate(urls):
        assert set(marker_counts(receive_all(url))) == {f"e{i}" for i in range(n, 60, 3)}


def _retarget(path: Path, target: Any) -> Path:
    from tracekit.replay.model import load_plan

    plan = load_plan(path)
    for i, entry in enumerate(plan.entries):
        entry.target = target(i)
    save_plan(plan, path)
    return path


def test_fifo_groups_keep_their_order_across_lanes(proxy: FaultProxy, tmp_path: Path) -> None:
    url = make_queue("orders.fifo")
    plan = plain_plan(
        tmp_path / "p.json",
        Target(TargetType.SQS, url=url),
        40,
        message_group_id=lambda i: f"g{i % 4}",
        message_deduplication_id=lambda i: f"d{i}",
    )
    report = run_plan(plan, aws(), applied(concurrency=4))
    assert report.counts["confirmed"] == 40
    orders: dict[str, list[int]] = {}
    for message in receive_all(url):
        body = json.loads(message["Body"])
        orders.setdefault(f"g{body['order'] % 4}", []).append(body["order"])
    assert orders == {f"g{g}": list(range(g, 40, 4)) for g in range(4)}


def test_kinesis_partition_keys_keep_their_order_across_lanes(proxy: FaultProxy, tmp_path: Path) -> None:
    """1,500 records of three partition keys fill three PutRecords batches; the first call is held
    back two seconds. Were batches dealt to lanes in turn, the second would land first and records of
    every key would arrive out of order; one lane per key keeps each key's order."""
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="orders-stream", ShardCount=1)
    arn = kinesis.describe_stream(StreamName="orders-stream")["StreamDescription"]["StreamARN"]
    plan = plain_plan(
        tmp_path / "p.json",
        Target(TargetType.KINESIS, arn=arn),
        1500,
        partition_key=lambda i: f"k{i % 3}",
    )
    proxy.add(Rule("PutRecords", delay_s=2.0, times=1))
    report = run_plan(plan, aws(), applied(concurrency=4))
    assert report.counts["confirmed"] == 1500
    (shard,) = kinesis.list_shards(StreamName="orders-stream")["Shards"]
    iterator = kinesis.get_shard_iterator(
        StreamName="orders-stream", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    orders: dict[str, list[int]] = {}
    for record in kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]:
        orders.setdefault(record["PartitionKey"], []).append(json.loads(record["Data"])["order"])
    assert orders == {f"k{k}": list(range(k, 1500, 3)) for k in range(3)}


# ---------------------------------------------------------------------------------- delete source


def test_delete_source_leaves_exactly_the_failed_entries_in_the_dlq(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    target_url = make_queue("orders")
    dlq_url = make_queue("orders-dlq")
    dlq_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders-dlq"
    crowded = {3, 11, 17}  # ten attributes already: no room for the marker, refused, kept
    messages = fill_dlq(dlq_url, 24, crowded=crowded)
    plan = write_plan(tmp_path / "p.json", messages, dlq_arn, Target(TargetType.SQS, url=target_url))
    sqs().send_message(QueueUrl=dlq_url, MessageBody="not in the plan")

    report = run_plan(plan, aws(), applied(delete_source=True))

    failed = {f"e{i}" for i in crowded}
    assert {f["entry_id"] for f in report.failures} == failed
    assert all("no room for the tracekit-replay-id marker" in f["reason"] for f in report.failures)
    assert report.counts["deleted_from_dlq"] == 21 and report.counts["kept_in_dlq"] == 3
    assert marker_counts(receive_all(target_url)) == Counter(
        {f"e{i}": 1 for i in range(24) if i not in crowded}
    )
    # The DLQ holds exactly the failed entries' messages, plus the one the plan did not name; all of
    # them visible again at once (the search released what it held).
    left = receive_all(dlq_url)
    expected = {messages[i]["MessageId"] for i in crowded}
    assert {m["MessageId"] for m in left} - {
        m["MessageId"] for m in left if m["Body"] == "not in the plan"
    } == expected
    assert len(left) == 4
    state = jn.read_journal(tmp_path / "p.journal")
    assert set(state.deleted) == {f"e{i}" for i in range(24)} - failed


def test_delete_source_keeps_dead_letters_whose_queue_the_store_does_not_know(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    """A dead letter ingested without --queue names no DLQ: its copy is sent, the message is never
    searched for or deleted, and the report says why (the dry run says so first)."""
    target_url = make_queue("orders")
    dlq_url = make_queue("orders-dlq")
    messages = fill_dlq(dlq_url, 2)
    plan = write_plan(tmp_path / "p.json", messages, "", Target(TargetType.SQS, url=target_url))

    dry = run_plan(plan, aws(), RunOptions(delete_source=True))
    assert dry.counts["dead_letters_to_delete"] == 0 and dry.counts["dead_letters_queue_unknown"] == 2

    proxy.clear()
    report = run_plan(plan, aws(), applied(delete_source=True))

    assert proxy.counts["DeleteMessageBatch"] == 0 and proxy.counts["ReceiveMessage"] == 0
    assert marker_counts(receive_all(target_url)) == Counter({"e0": 1, "e1": 1})
    assert report.counts["kept_in_dlq"] == 2
    assert [(k["entry_id"], k["queue"]) for k in report.not_deleted] == [("e0", ""), ("e1", "")]
    assert all("ingested without --queue" in k["reason"] for k in report.not_deleted)
    assert len(receive_all(dlq_url)) == 2
