"""`tracekit chaos run` as a user runs it: the installed CLI in a subprocess, on the shipped experiment."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = REPO / "replays" / "experiments" / "orders-duplicates.toml"
CliRun = Callable[..., subprocess.CompletedProcess[str]]  # the tracekit_cli fixture


def test_shipped_experiment_judges_the_idempotent_consumer(tracekit_cli: CliRun, tmp_path: Path) -> None:
    store = tmp_path / "store"
    done = tracekit_cli(
        "chaos", "run", EXPERIMENT, "--store", store, "--workdir", tmp_path / "w", "-f", "json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["counts"] == {"idempotent": 3, "not_idempotent": 0, "inconclusive": 0}
    assert [e["key"] for e in report["events"]] == ["4716", "4717", "4718"]
    assert report["checks"] == []
    # Three clean deliveries and nine faulted ones (duplicate=2: the original and two copies each),
    # all in the store from the lab's logs.
    assert report["phases"]["clean"]["copies"] == 3 and report["phases"]["faulted"]["copies"] == 9
    rows = tracekit_cli(
        "sql",
        "SELECT count(*) AS n FROM invocations WHERE status = 'success'",
        "--store",
        store,
        "-f",
        "json",
    )
    assert json.loads(rows.stdout) == [{"n": 12}]
    # The consumer's own state, per phase: each order written once.
    state = json.loads((tmp_path / "w" / "faulted" / "orders.json").read_text())
    assert sorted(state["orders"]) == ["4716", "4717", "4718"]


def test_counter_consumer_table_output_shows_the_difference(tracekit_cli: CliRun, tmp_path: Path) -> None:
    text = EXPERIMENT.read_text().replace("orders_idempotent.py", "orders_counter.py")
    experiment = tmp_path / "counter.toml"
    experiment.write_text(text.replace("../../samples", str(REPO / "samples")))
    done = tracekit_cli("chaos", "run", experiment)
    assert done.returncode == 1, done.stderr  # not idempotent: the gate fails
    assert "0 idempotent, 3 not_idempotent, 0 inconclusive" in done.stdout
    # order 4718 has quantity 5: one delivery reserved 5, three reserved 15.
    (line,) = [line for line in done.stdout.splitlines() if "order-4718" in line]
    cells = [cell.strip() for cell in line.split("│")[1:-1]]
    assert cells[2:5] == ["not_idempotent", "3", "3"]
    assert cells[6:] == ["order-record", '{"deliveries":1,"reserved":5}', '{"deliveries":3,"reserved":15}']


def test_bad_experiment_is_one_error_line(tracekit_cli: CliRun, tmp_path: Path) -> None:
    experiment = tmp_path / "bad.toml"
    experiment.write_text('target = "lab"\nfaults = ["duplicate=two"]\n')
    done = tracekit_cli("chaos", "run", experiment)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"Error: bad experiment: {experiment}. no [[probes]]: nothing would read the consumer's effect"
    ]


# ------------------------------------------------------------------------------ the aws target (moto)
#
# moto cannot run Lambda, so the "consumer" is a thread in the test: it polls the replay's target
# queue on the moto server and writes each order to a DynamoDB table, either with a conditional put
# (idempotent) or with an ADD counter (not). The experiment probes that table through GetItem.

ACCOUNT = "123456789012"  # moto's account
ORDERS_AWS = [(4716, 2), (4717, 1)]


class Consumer:
    """Reads the queue until stopped; records each order once, or counts every delivery."""

    def __init__(self, queue_url: str, counting: bool) -> None:
        import boto3

        self.sqs = boto3.client("sqs", region_name="eu-west-1")
        self.table = boto3.client("dynamodb", region_name="eu-west-1")
        self.url, self.counting = queue_url, counting
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            for message in got.get("Messages", []):
                self.handle(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
            time.sleep(0.05)

    def handle(self, order: dict[str, int]) -> None:
        key = {"orderId": {"S": str(order["orderId"])}}
        if self.counting:
            self.table.update_item(
                TableName="orders",
                Key=key,
                UpdateExpression="ADD deliveries :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
            return
        try:
            self.table.put_item(
                TableName="orders",
                Item={**key, "quantity": {"N": str(order["quantity"])}},
                ConditionExpression="attribute_not_exists(orderId)",
            )
        except self.table.exceptions.ConditionalCheckFailedException:
            pass


def orders_table() -> None:
    """The consumer's DynamoDB table, keyed by order id."""
    import boto3

    boto3.client("dynamodb", region_name="eu-west-1").create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "orderId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "orderId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def aws_experiment(tmp_path: Path, *, allow: str = ACCOUNT) -> tuple[Path, str]:
    """A queue, a table, a plan of two dead-lettered orders aimed at the queue, and the experiment."""
    import boto3

    from tracekit.replay.model import Entry, Plan, Source, SourceKind, Target, TargetType, save_plan

    url = boto3.client("sqs", region_name="eu-west-1").create_queue(QueueName="orders-queue")["QueueUrl"]
    orders_table()
    entries = [
        Entry(
            entry_id=f"{n:04d}",
            event_id=f"msg-{order}",
            function_name="orders-worker",
            source=Source(SourceKind.DEAD_LETTER, f"msg-{order}", queue="orders-queue-dlq"),
            target=Target(TargetType.SQS, url=url),
            payload=json.dumps({"orderId": order, "quantity": quantity}),  # noqa: TID251 - test data
        )
        for n, (order, quantity) in enumerate(ORDERS_AWS)
    ]
    save_plan(Plan("p1", "2026-11-26T00:00:00Z", {}, "", entries), tmp_path / "plan.json")
    experiment = tmp_path / "aws.toml"
    experiment.write_text(
        'name = "aws"\ntarget = "aws"\nplan = "plan.json"\nfaults = ["duplicate=2"]\nkey = "$.orderId"\n'
        f'[aws]\nallow_accounts = ["{allow}"]\nsettle_s = 1.5\nregion = "eu-west-1"\n'
        '[[probes]]\nname = "order-item"\ntype = "dynamodb"\ntable = "orders"\n'
        'key = { orderId = { S = "{orderId}" } }\n'
    )
    return experiment, url


@pytest.mark.parametrize(("counting", "verdict"), [(False, "idempotent"), (True, "not_idempotent")])
def test_aws_target_against_moto(
    aws_endpoint: str, tracekit_cli: CliRun, tmp_path: Path, counting: bool, verdict: str
) -> None:
    experiment, url = aws_experiment(tmp_path)
    consumer = Consumer(url, counting)
    consumer.thread.start()
    try:
        done = tracekit_cli("chaos", "run", experiment, "--workdir", tmp_path / "w", "-f", "json")
    finally:
        consumer.stop.set()
        consumer.thread.join()
    assert done.returncode == (1 if counting else 0), done.stderr
    report = json.loads(done.stdout)
    assert [e["verdict"] for e in report["events"]] == [verdict, verdict]
    # Clean phase: one copy per order; faulted: the original and two duplicates, all confirmed by SQS.
    assert report["phases"]["clean"]["succeeded"] == 2 and report["phases"]["faulted"]["succeeded"] == 6
    if counting:
        # One clean delivery, then three more on top of it (a real consumer's state is not reset).
        assert report["events"][0]["differences"] == [
            {
                "probe": "order-item",
                "before": {"orderId": {"S": "4716"}, "deliveries": {"N": "1"}},
                "after": {"orderId": {"S": "4716"}, "deliveries": {"N": "4"}},
            }
        ]
    else:
        assert report["events"][1]["reason"] == "effect unchanged by 3 successful deliveries"


def test_aws_target_refuses_an_account_not_allowed_before_sending(
    aws_endpoint: str, tracekit_cli: CliRun, tmp_path: Path
) -> None:
    import boto3

    experiment, url = aws_experiment(tmp_path, allow="999999999999")
    done = tracekit_cli("chaos", "run", experiment, "--workdir", tmp_path / "w")
    assert done.returncode == 2
    assert done.stderr.startswith("Error: refusing to replay: account not allowed")
    attributes = boto3.client("sqs", region_name="eu-west-1").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"


def test_shipped_aws_example_parses() -> None:
    from tracekit.chaos.experiment import load_experiment

    experiment = load_experiment(REPO / "replays" / "experiments" / "orders-staging.toml")
    assert experiment.target == "aws" and experiment.aws is not None
    assert experiment.aws.allow_accounts == ("123456789012",)
    assert [p.type for p in experiment.probes] == ["dynamodb", "sqs"]


def test_aws_target_with_selectors_over_the_store(
    aws_endpoint: str, tracekit_cli: CliRun, tmp_path: Path
) -> None:
    """[select] chooses the dead-lettered order of the sqs-redrive sample (order 4720, first seen on
    2026-11-22) from the store; the plan sends it back to orders-queue, where the counting consumer
    takes it: 1 delivery after the clean phase, 1 + 2 after the faulted one (duplicate=1). The event is
    days old and the dedup window an hour, so the dedup-window check fires for it."""
    import boto3

    store = tmp_path / "store"
    assert tracekit_cli("ingest", REPO / "samples/lab/sqs-redrive", "--store", store).returncode == 0
    url = boto3.client("sqs", region_name="eu-west-1").create_queue(QueueName="orders-queue")["QueueUrl"]
    orders_table()
    experiment = tmp_path / "select.toml"
    experiment.write_text(
        'name = "select"\ntarget = "aws"\nfaults = ["duplicate=1"]\nkey = "$.orderId"\n'
        "dedup_window_s = 3600\n"
        '[select]\nfunction = "orders-worker"\noutcome = "dead_lettered"\n'
        f'[aws]\nallow_accounts = ["{ACCOUNT}"]\nsettle_s = 1.5\nregion = "eu-west-1"\n'
        '[[probes]]\nname = "order-item"\ntype = "dynamodb"\ntable = "orders"\n'
        'key = { orderId = { S = "{orderId}" } }\n'
    )
    consumer = Consumer(url, counting=True)
    consumer.thread.start()
    try:
        done = tracekit_cli(
            "chaos", "run", experiment, "--store", store, "--workdir", tmp_path / "w", "-f", "json"
        )
    finally:
        consumer.stop.set()
        consumer.thread.join()
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    (event,) = report["events"]
    assert (event["key"], event["verdict"]) == ("4720", "not_idempotent")
    assert [(d["before"]["deliveries"], d["after"]["deliveries"]) for d in event["differences"]] == [
        ({"N": "1"}, {"N": "3"})
    ]
    (finding,) = report["checks"]
    assert (finding["check"], finding["events"]) == ("dedup-window", [event["event_id"]])
