"""The SQS event source mapping model, checked case by case against lambda-semantics.md §3.

Each test runs a small scenario (the `run` fixture, on conftest's `run_lab`) and reads back what a user
would have: the function's log (the handlers print one `SEEN {...}` line per record they were given),
the drained DLQ and truth.json. Expected values are worked out by hand from the documented rules, not
from the code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import LabRun, RunLab

from tracekit.lab.scenario import ScenarioError

HANDLERS = Path(__file__).resolve().parent / "handlers" / "sqs_worker.py"
SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "scenarios"
START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:{}"


def scenario(source: str, events: str, *, handler: str) -> str:
    """A `worker` function behind an SQS queue; `source` is the [source] table, `events` the events."""
    return f"""
name = "sqs-test"
start = "{START.isoformat().replace("+00:00", "Z")}"
[function]
name = "worker"
handler = "{HANDLERS.as_posix()}:{handler}"
timeout_s = 3
concurrency = 5
[source]
type = "sqs"
{source}
{events}
"""


RunSqs = Callable[..., LabRun]


@pytest.fixture
def run(run_lab: RunLab) -> RunSqs:
    """`run(source, events, handler="echo")`: the scenario above, run with seed 7 by conftest's run_lab."""

    def run_sqs(source: str, events: str, *, handler: str = "echo") -> LabRun:
        return run_lab(scenario(source, events, handler=handler), seed=7)

    return run_sqs


def records_seen(lab: LabRun) -> list[dict[str, Any]]:
    """Every record the handler printed, in the order it saw them."""
    messages = (e["message"] for e in lab.logs())
    return [json.loads(m[5:]) for m in messages if m.startswith("SEEN ")]


def batches_seen(lab: LabRun) -> list[list[dict[str, Any]]]:
    """The records of each invocation, invocations in the order they happened."""
    by_request: dict[str, list[dict[str, Any]]] = {}
    for line in records_seen(lab):
        by_request.setdefault(line["request_id"], []).append(line)
    return list(by_request.values())


def event_by_n(lab: LabRun, n: int) -> dict[str, Any]:
    """The truth event of the message whose body has "n": n (via what the handler saw)."""
    ids = {line["message_id"] for line in records_seen(lab) if line["body"].get("n") == n}
    assert len(ids) == 1, f"message n={n} seen as {ids}"
    (event,) = [e for e in lab.events if e["event_id"] in ids]
    return event


def at(seconds: float) -> str:
    """A truth timestamp `seconds` after the scenario start."""
    moment = START + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_json(value: Any) -> str:
    # Inputs are written with the standard library, not with tracekit.jsonio, which the lab uses.
    return json.dumps(value)  # noqa: TID251


def event(n: int, *, at_s: float = 0, extra: str = "", **body: Any) -> str:
    payload = ", ".join([f"n = {n}", *(f"{k} = {to_json(v)}" for k, v in body.items())])
    return f"[[events]]\nat = {at_s}\npayload = {{ {payload} }}\n{extra}\n"


def responding(response: Any) -> str:
    """Two messages whose handler (`respond`) returns `response` on their first receive."""
    body = to_json({"n": 0, "respond": response})
    return f"[[events]]\npayload = '''{body}'''\n" * 2


# ---------------------------------------------------------------------- visibility timeout


def test_failed_batch_is_received_again_after_the_visibility_timeout(run: RunSqs) -> None:
    # The first attempt fails after the handler ran; §3: the message reappears one visibility timeout
    # (45 s) after it was received, with the same messageId, a new receiptHandle and receive count 2.
    lab = run(
        'queue = "orders"\nvisibility_timeout_s = 45',
        event(1, extra='faults = [{ kind = "error", when = "after" }]'),
    )
    first, second = records_seen(lab)
    assert first["message_id"] == second["message_id"]
    assert first["receipt"] != second["receipt"]
    assert (
        first["attributes"]["ApproximateReceiveCount"],
        second["attributes"]["ApproximateReceiveCount"],
    ) == (
        "1",
        "2",
    )
    for seen in (first, second):
        assert seen["attributes"]["SentTimestamp"] == str(START_MS)
        assert seen["attributes"]["ApproximateFirstReceiveTimestamp"] == str(START_MS)
        assert seen["source_arn"] == QUEUE_ARN.format("orders")
    (truth,) = lab.events
    assert truth["event_id"] == first["message_id"]
    assert [a["outcome"] for a in truth["attempts"]] == ["error", "success"]
    assert truth["attempts"][1]["start"] == at(45)  # received at 0 s, visible again at 45 s, warm
    assert truth["outcome"] == "succeeded_after_retry"
    assert truth["deliveries"] == 2


def test_whole_batch_returns_when_one_message_fails(run: RunSqs) -> None:
    # No ReportBatchItemFailures: "All messages in a failed batch return to the queue".
    lab = run(
        "visibility_timeout_s = 30",
        event(1) + event(2, extra='faults = [{ kind = "error", when = "after" }]') + event(3),
    )
    first, second = batches_seen(lab)
    assert {line["body"]["n"] for line in first} == {1, 2, 3}
    assert {line["body"]["n"] for line in second} == {1, 2, 3}
    assert {line["attributes"]["ApproximateReceiveCount"] for line in second} == {"2"}
    assert {e["outcome"] for e in lab.events} == {"succeeded_after_retry"}


# ---------------------------------------------------------------------- redrive to the DLQ


def test_message_moves_to_the_dlq_after_max_receive_count(run: RunSqs) -> None:
    lab = run(
        'queue = "orders"\nvisibility_timeout_s = 30\nmax_receive_count = 3\ndlq = "orders-dlq"\n'
        "aws_trace_header = true",
        event(
            1,
            extra='fault = { kind = "error", when = "after" }\n'
            'message_attributes = { source = "orders-api", weight = 3 }',
        ),
    )
    seen = records_seen(lab)
    # Received three times (0 s, 30 s, 60 s); the fourth receive moves it to the DLQ instead.
    assert [s["attributes"]["ApproximateReceiveCount"] for s in seen] == ["1", "2", "3"]
    (truth,) = lab.events
    assert [a["start"][11:19] for a in truth["attempts"][1:]] == ["09:00:30", "09:01:00"]
    assert truth["outcome"] == "dead_lettered"
    assert truth["deliveries"] == 3
    assert seen[0]["message_attributes"] == {
        "source": {
            "stringValue": "orders-api",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "weight": {"stringValue": "3", "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
    }
    (moved,) = lab.messages("orders-dlq")
    assert moved["MessageId"] == seen[0]["message_id"] == truth["event_id"]
    assert json.loads(moved["Body"]) == {"n": 1}
    attributes = moved["Attributes"]
    assert attributes["DeadLetterQueueSourceArn"] == QUEUE_ARN.format("orders")
    assert attributes["SentTimestamp"] == str(START_MS)  # enqueue time is unchanged
    # The count carries on: three receives from the source, then the one that read the DLQ.
    assert attributes["ApproximateReceiveCount"] == "4"
    assert attributes["AWSTraceHeader"] == seen[0]["attributes"]["AWSTraceHeader"]
    assert attributes["AWSTraceHeader"].startswith("Root=1-")
    assert moved["MessageAttributes"] == {
        "source": {"StringValue": "orders-api", "DataType": "String"},
        "weight": {"StringValue": "3", "DataType": "Number"},
    }


def test_throttling_also_consumes_receives(run: RunSqs) -> None:
    # Receive 1 is throttled on every invoke: Lambda retries with backoff 1, 2, 4, 8 s (invokes at 0, 1,
    # 3, 7, 15 s; the next, at 31 s, is past the 30 s visibility timeout) and the receive is spent.
    lab = run("visibility_timeout_s = 30", event(1, extra='faults = ["throttle"]'))
    (seen,) = records_seen(lab)
    assert seen["attributes"]["ApproximateReceiveCount"] == "2"
    (truth,) = lab.events
    assert [(a["start"], a["outcome"]) for a in truth["attempts"][:5]] == [
        (at(s), "throttled") for s in (0, 1, 3, 7, 15)
    ]
    assert [a["outcome"] for a in truth["attempts"][5:]] == ["success"]
    assert truth["deliveries"] == 1


def test_throttled_receives_alone_can_dead_letter_a_message(run: RunSqs) -> None:
    lab = run(
        'visibility_timeout_s = 30\nmax_receive_count = 1\ndlq = "worker-dlq"',
        event(1, extra='faults = ["throttle"]'),
    )
    assert records_seen(lab) == []
    (truth,) = lab.events
    assert truth["outcome"] == "dead_lettered"
    assert truth["deliveries"] == 0
    assert [m["MessageId"] for m in lab.messages("worker-dlq")] == [truth["event_id"]]


def test_messages_older_than_the_retention_period_are_dropped(run: RunSqs) -> None:
    # Received at 0 s and 30 s; at 60 s the message is 60 s old and SQS deletes it.
    lab = run(
        "visibility_timeout_s = 30\nmessage_retention_s = 60",
        event(1, extra='fault = { kind = "error", when = "after" }'),
    )
    (truth,) = lab.events
    assert len(truth["attempts"]) == 2
    assert truth["outcome"] == "dropped"


def test_messages_still_queued_when_the_mapping_stops_are_in_flight(run: RunSqs) -> None:
    lab = run(
        "visibility_timeout_s = 30\nstop_after_s = 100",
        event(1, extra='fault = { kind = "error", when = "after" }'),
    )
    (truth,) = lab.events
    assert len(truth["attempts"]) == 4  # 0, 30, 60, 90 s
    assert truth["outcome"] == "in_flight"


# ---------------------------------------------------------------------- partial batch responses


def test_partial_batch_failure_returns_only_the_reported_messages(run: RunSqs) -> None:
    lab = run(
        "visibility_timeout_s = 30\nreport_batch_item_failures = true",
        event(1) + event(2, fail=1) + event(3) + event(4, fail=1),
        handler="partial",
    )
    first, second = batches_seen(lab)
    assert {line["body"]["n"] for line in first} == {1, 2, 3, 4}
    assert {line["body"]["n"] for line in second} == {2, 4}
    assert {line["attributes"]["ApproximateReceiveCount"] for line in second} == {"2"}
    for n in (1, 3):
        assert event_by_n(lab, n)["outcome"] == "succeeded"
        assert event_by_n(lab, n)["deliveries"] == 1
    for n in (2, 4):
        assert [a["outcome"] for a in event_by_n(lab, n)["attempts"]] == ["error", "success"]
        assert event_by_n(lab, n)["outcome"] == "succeeded_after_retry"
    assert [b["outcome"] for b in lab.truth["batches"]] == ["partial_failure", "success"]


UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"foo": "notvalid"}]},  # bad key name
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemIdentifier": UNKNOWN_ID}]},  # not in the batch
        {"batchItemFailures": "all of them"},
        "not a JSON object",
    ],
)
def test_invalid_partial_batch_response_fails_the_whole_batch(run: RunSqs, response: Any) -> None:
    events = responding(response)
    lab = run("visibility_timeout_s = 30\nreport_batch_item_failures = true", events, handler="respond")
    first, second = batches_seen(lab)
    assert len(first) == len(second) == 2
    assert {line["attributes"]["ApproximateReceiveCount"] for line in second} == {"2"}
    assert [b["outcome"] for b in lab.truth["batches"]] == ["invalid_response", "success"]
    for truth in lab.events:
        assert [a["outcome"] for a in truth["attempts"]] == ["error", "success"]


@pytest.mark.parametrize(
    "response", [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, {"other": 1}]
)
def test_empty_partial_batch_response_is_full_success(run: RunSqs, response: Any) -> None:
    events = responding(response)
    lab = run("report_batch_item_failures = true", events, handler="respond")
    assert len(batches_seen(lab)) == 1
    assert {e["outcome"] for e in lab.events} == {"succeeded"}


def test_reported_failures_are_ignored_without_report_batch_item_failures(run: RunSqs) -> None:
    # The setting is off: Lambda does not read the response, so the whole (successful) batch is deleted.
    lab = run("", event(1, fail=1) + event(2), handler="partial")
    assert len(batches_seen(lab)) == 1
    assert {e["outcome"] for e in lab.events} == {"succeeded"}


# ---------------------------------------------------------------------- FIFO


FIFO = 'queue = "jobs.fifo"\nvisibility_timeout_s = 30\nreport_batch_item_failures = true'


def fifo_events() -> str:
    # Group A: a1 fails on its first receive; a4 is sent at 5 s, while a1-a3 are in flight.
    return (
        event(1, extra='key = "A"', fail=1)
        + event(2, extra='key = "A"')
        + event(3, extra='key = "A"')
        + event(11, extra='key = "B"')
        + event(12, extra='key = "B"')
        + event(4, at_s=5, extra='key = "A"')
    )


def test_fifo_delivers_a_group_in_order_and_blocks_it_while_in_flight(run: RunSqs) -> None:
    lab = run(FIFO, fifo_events(), handler="fifo_partial")
    first, second = batches_seen(lab)
    # One receive takes as much of the oldest group as it can, in order, then the next group.
    assert [line["body"]["n"] for line in first] == [1, 2, 3, 11, 12]
    # a1 failed and the handler reported a2 and a3 unprocessed; a4 waited behind them (group blocked)
    # until they reappeared at 30 s, and comes after them.
    assert [line["body"]["n"] for line in second] == [1, 2, 3, 4]
    assert [line["attributes"]["ApproximateReceiveCount"] for line in second] == ["2", "2", "2", "1"]
    assert event_by_n(lab, 4)["attempts"][0]["start"] == at(30)
    sequence = [int(line["attributes"]["SequenceNumber"]) for line in second]
    assert sequence == sorted(sequence) and len(set(sequence)) == 4
    for line in first + second:
        assert line["attributes"]["MessageGroupId"] == ("A" if line["body"]["n"] < 10 else "B")
        assert line["attributes"]["MessageDeduplicationId"]
        assert line["source_arn"] == QUEUE_ARN.format("jobs.fifo")
    assert [event_by_n(lab, n)["outcome"] for n in (1, 2, 3, 4, 11, 12)] == [
        "succeeded_after_retry",
        "succeeded_after_retry",
        "succeeded_after_retry",
        "succeeded",
        "succeeded",
        "succeeded",
    ]


@pytest.mark.parametrize(("unreported", "returned"), [("delete", [1]), ("return", [1, 2, 3, 4])])
def test_fifo_messages_a_handler_left_unreported(run: RunSqs, unreported: str, returned: list[int]) -> None:
    # The handler reports only a1. "delete": Lambda deletes a2 and a3 as the response says (they overtake
    # a1, and a4 waits only for a1); "return": the rest of a1's group in the batch comes back with it.
    lab = run(
        FIFO + f'\nfifo_unreported_after_failure = "{unreported}"',
        fifo_events(),
        handler="partial",
    )
    invocations = batches_seen(lab)
    assert [line["body"]["n"] for line in invocations[0]] == [1, 2, 3, 11, 12]
    later = [line["body"]["n"] for inv in invocations[1:] for line in inv]
    if unreported == "delete":
        assert later == [1, 4]  # a4 is not blocked by a2/a3, only by a1
        assert event_by_n(lab, 2)["outcome"] == "succeeded"
    else:
        assert later == returned


def test_fifo_redrive_dlq_takes_the_message_id_as_deduplication_id(run: RunSqs) -> None:
    lab = run(
        'queue = "jobs.fifo"\nvisibility_timeout_s = 30\nmax_receive_count = 1\ndlq = "jobs-dlq.fifo"',
        event(1, extra='key = "A"\nfault = { kind = "error", when = "after" }'),
    )
    (moved,) = lab.messages("jobs-dlq.fifo")
    (truth,) = lab.events
    assert moved["MessageId"] == truth["event_id"]
    assert moved["Attributes"]["MessageDeduplicationId"] == truth["event_id"]
    assert moved["Attributes"]["MessageGroupId"] == "A"
    assert moved["Attributes"]["DeadLetterQueueSourceArn"] == QUEUE_ARN.format("jobs.fifo")


# ---------------------------------------------------------------------- batching and concurrency


def test_batching_window_waits_for_a_full_batch_or_the_window(run: RunSqs) -> None:
    # Window 5 s, batch size 3: messages at 0, 1, 2 s fill a batch at 2 s; the one at 3 s opens a new
    # window and goes alone when it closes at 8 s.
    lab = run(
        "batch_size = 3\nmaximum_batching_window_s = 5",
        event(1) + event(2, at_s=1) + event(3, at_s=2) + event(4, at_s=3),
    )
    first, second = batches_seen(lab)
    assert {line["body"]["n"] for line in first} == {1, 2, 3}
    assert [line["body"]["n"] for line in second] == [4]
    assert {line["attributes"]["ApproximateFirstReceiveTimestamp"] for line in first} == {
        str(START_MS + 2000)
    }
    assert event_by_n(lab, 4)["attempts"][0]["start"] == at(8)


@pytest.mark.parametrize(("pollers", "overlap"), [(1, False), (2, True)])
def test_concurrent_batches_limits_batches_in_flight(run: RunSqs, pollers: int, overlap: bool) -> None:
    lab = run(f"batch_size = 1\nconcurrent_batches = {pollers}", event(1) + event(2))
    one, two = (e["attempts"][0] for e in lab.events)
    first, second = sorted([one, two], key=lambda a: a["start"])
    assert (second["start"] < first["end"]) is overlap


# ---------------------------------------------------------------------- duplicates


@pytest.mark.parametrize(("count_setting", "second_count"), [("next", "2"), ("same", "1")])
def test_duplicate_receive_without_any_error(run: RunSqs, count_setting: str, second_count: str) -> None:
    lab = run(
        f'duplicate_delay_s = 5\nduplicate_receive_count = "{count_setting}"',
        event(1, extra="duplicate = true"),
    )
    first, second = records_seen(lab)
    assert first["message_id"] == second["message_id"]
    assert first["receipt"] != second["receipt"]
    assert second["attributes"]["ApproximateReceiveCount"] == second_count
    (truth,) = lab.events
    assert truth["attempts"][1]["start"] == at(5)
    assert truth["deliveries"] == 2
    assert truth["duplicates"] == 1
    assert truth["outcome"] == "succeeded"


# ---------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("source", "destinations", "reason"),
    [
        ("visibility_timeout_s = 2", "", "less than the function timeout"),
        ('queue = "q.fifo"\nbatch_size = 11', "", "batch_size must be 1-10"),
        ("batch_size = 50", "", "maximum_batching_window_s of at least 1"),
        ('queue = "q.fifo"\nmaximum_batching_window_s = 2', "", "not supported for FIFO"),
        ("max_receive_count = 3", "", "needs both max_receive_count and dlq"),
        ('max_receive_count = 3\ndlq = "d.fifo"', "", "must be FIFO"),
        ("", '[destinations]\ndlq = "sqs:fn-dlq"', "function DLQ is not used"),
        ("", '[destinations]\non_failure = "sqs:f"', "no on-success / on-failure destination"),
        ("bisect_batch_on_function_error = true", "", "unknown sqs setting"),
    ],
)
def test_settings_aws_refuses_are_scenario_errors(
    run: RunSqs, source: str, destinations: str, reason: str
) -> None:
    with pytest.raises(ScenarioError, match=reason):
        run(source, event(1) + destinations)


def test_fifo_events_need_a_message_group(run: RunSqs) -> None:
    with pytest.raises(ScenarioError, match="message group"):
        run('queue = "q.fifo"', event(1))


# ---------------------------------------------------------------------- the shipped scenarios


@pytest.mark.parametrize("name", ["sqs-redrive", "sqs-fifo-partial-batch"])
def test_sample_scenario_artifacts_ingest_cleanly(run_lab: RunLab, name: str) -> None:
    lab = run_lab(SAMPLES / f"{name}.toml", seed=0)
    assert lab.quarantined() == []
    rows = lab.store().query("SELECT kind, message_id FROM dead_letters")
    dead = {e["event_id"] for e in lab.events if e["outcome"] == "dead_lettered"}
    assert dead, "the scenario dead-letters at least one message"
    assert {r["kind"] for r in rows} == {"source_dlq"}
    assert {r["message_id"] for r in rows} == dead
    # Every invocation in the truth (throttled ones never ran) is one invocation in the logs.
    invoked = {b["request_id"] for b in lab.batches if b["outcome"] != "throttled"}
    assert {r["request_id"] for r in lab.store().query("SELECT request_id FROM invocations")} == invoked
