"""The lab's asynchronous invocation model against lambda-semantics.md §1 and the published captures
(a05-a13, c01-c03): retry counts and gaps, one request id for every attempt, throttle backoff outside
the retry budget, event age, destination records, DLQ messages, wrappings, truth outcomes,
duplicates, and seeded determinism.

Expected values are worked out by hand from those documents, never copied from the lab's output.
"""

from __future__ import annotations

import filecmp
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import LabRun, RunLab

from tracekit import jsonio

START = "2026-11-22T09:00:00Z"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:orders-capture"
REJECT = "{ order_id = 2, reject = true }"


def scenario(events: str, *, source: str = "", destinations: str = "", function: str = "") -> str:
    """An async scenario around tests/lab/handlers/async_orders.py."""
    return f"""
name = "async"
start = "{START}"

[function]
name = "orders-capture"
handler = "{{handlers}}/async_orders.py:handler"
timeout_s = 3
{function}
[source]
type = "async"
{source}
[destinations]
{destinations}

{events}
"""


def event(payload: str, *, at: float = 0, extra: str = "") -> str:
    return f"[[events]]\nat = {at}\npayload = {payload}\n{extra}\n"


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def gaps(attempts: list[dict[str, Any]]) -> list[int]:
    """Milliseconds from the end of each attempt to the start of the next."""
    return [ms(b["start"]) - ms(a["end"]) for a, b in zip(attempts, attempts[1:], strict=False)]


def init_starts(run: LabRun) -> list[int]:
    return [e["timestamp"] for e in run.logs() if e["message"].startswith("INIT_START")]


# -- retries -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("retries", "attempts"), [(0, 1), (1, 2), (2, 3)])
def test_maximum_retry_attempts_gives_one_more_attempt_each_with_the_same_request_id(
    run_lab: RunLab, retries: int, attempts: int
) -> None:
    run = run_lab(scenario(event(REJECT), source=f"maximum_retry_attempts = {retries}"))
    [truth] = run.events
    assert [a["outcome"] for a in truth["attempts"]] == ["error"] * attempts
    assert {a["request_id"] for a in truth["attempts"]} == {truth["event_id"]}
    starts = [m for m in (e["message"] for e in run.logs()) if m.startswith("START RequestId: ")]
    assert starts == [f"START RequestId: {truth['event_id']} Version: $LATEST\n"] * attempts
    assert truth["deliveries"] == attempts
    assert truth["outcome"] == "dropped"


def test_function_error_retries_wait_one_then_two_minutes_after_the_failed_attempt(run_lab: RunLab) -> None:
    run = run_lab(scenario(event(REJECT), source="maximum_retry_attempts = 2"))
    [truth] = run.events
    # An exception leaves the environment warm, so each retry starts exactly when it is due.
    for gap, expected in zip(gaps(truth["attempts"]), [60_000, 120_000], strict=True):
        assert abs(gap - expected) <= 1


def test_a_timeout_is_a_function_error_retried_like_one(run_lab: RunLab) -> None:
    run = run_lab(
        scenario(
            event("{ order_id = 3 }", extra='fault = "timeout"'),
            source="maximum_retry_attempts = 2",
            destinations='on_failure = "sqs:orders-failures"',
        )
    )
    [truth] = run.events
    attempts = truth["attempts"]
    assert [a["outcome"] for a in attempts] == ["timeout"] * 3
    # After a timeout the environment starts over: each retry's INIT_START is when the retry was due.
    inits = init_starts(run)
    assert len(inits) == 3
    for init, previous, delay in zip(inits[1:], attempts[:-1], [60_000, 120_000], strict=True):
        assert abs(init - (ms(previous["end"]) + delay)) <= 1
    [record] = run.bodies("orders-failures")
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responsePayload"]["errorType"] == "Sandbox.Timedout"


# -- throttles ---------------------------------------------------------------------------------------------


def test_throttles_back_off_from_one_second_doubling(run_lab: RunLab) -> None:
    faults = 'faults = ["throttle", "throttle", "throttle", "throttle"]'
    run = run_lab(
        scenario(
            event("{ order_id = 4 }", extra=faults),
            source="maximum_retry_attempts = 0",
            destinations='on_success = "sqs:orders-done"',
        )
    )
    [truth] = run.events
    attempts = truth["attempts"]
    assert [a["outcome"] for a in attempts] == ["throttled"] * 4 + ["success"]
    throttled_at = [ms(a["start"]) for a in attempts[:4]]
    t0 = ms(START)
    assert throttled_at == [t0, t0 + 1000, t0 + 3000, t0 + 7000]
    assert init_starts(run) == [t0 + 15_000], "the fifth try, 8 s after the fourth, reaches the function"
    assert truth["deliveries"] == 1
    # Throttles are not function errors: with no retries allowed the event still got through, and
    # with no failed attempt of the function before the success it counts as succeeded (README).
    assert truth["outcome"] == "succeeded"
    [record] = run.bodies("orders-done")
    assert record["requestContext"]["approximateInvokeCount"] == 1


def test_throttle_backoff_stops_doubling_at_five_minutes(run_lab: RunLab) -> None:
    run = run_lab(scenario(event("{ order_id = 5 }", extra='fault = "throttle"\nfail_times = 11')))
    [truth] = run.events
    throttled = [ms(a["start"]) for a in truth["attempts"] if a["outcome"] == "throttled"]
    waits = [b - a for a, b in zip(throttled, throttled[1:], strict=False)]
    assert waits == [1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000]
    assert truth["outcome"] == "succeeded"  # throttles alone are not retries of the function


def test_throttles_do_not_use_up_maximum_retry_attempts(run_lab: RunLab) -> None:
    faults = 'faults = ["throttle", "throttle", "error", "throttle", "error"]'
    run = run_lab(
        scenario(
            event("{ order_id = 6 }", extra=faults),
            source="maximum_retry_attempts = 1",
            destinations='on_failure = "sqs:orders-failures"',
        )
    )
    [truth] = run.events
    assert [a["outcome"] for a in truth["attempts"]] == [
        "throttled",
        "throttled",
        "error",
        "throttled",
        "error",
    ]
    [record] = run.bodies("orders-failures")
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2, "two invocations reached the function"


# -- event age ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_age", "attempts"), [(60, 1), (90, 2)])
def test_maximum_event_age_cuts_retries_short(run_lab: RunLab, max_age: int, attempts: int) -> None:
    run = run_lab(
        scenario(
            event(REJECT),
            source=f"maximum_retry_attempts = 2\nmaximum_event_age_s = {max_age}",
            destinations='on_failure = "sqs:orders-failures"\ndlq = "sqs:orders-dlq"',
        )
    )
    [truth] = run.events
    assert len(truth["attempts"]) == attempts
    [record] = run.bodies("orders-failures")
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == attempts
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    # Lambda does not wait for the retry that would be too late: it gives up when the attempt ends.
    assert record["timestamp"] == truth["attempts"][-1]["end"]
    assert len(run.messages("orders-dlq")) == 1
    assert truth["outcome"] == "dead_lettered"


# -- destination records -----------------------------------------------------------------------------------


def test_on_success_record(run_lab: RunLab) -> None:
    run = run_lab(scenario(event("{ order_id = 1 }"), destinations='on_success = "sqs:orders-done"'))
    [truth] = run.events
    [message] = run.messages("orders-done")
    record = jsonio.loads(message["Body"])
    assert record == {
        "version": "1.0",
        "timestamp": truth["attempts"][0]["end"],
        "requestContext": {
            "requestId": truth["event_id"],
            "functionArn": FUNCTION_ARN + ":$LATEST",
            "condition": "Success",
            "approximateInvokeCount": 1,
        },
        "requestPayload": {"order_id": 1},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": {"order_id": 1, "status": "captured"},
    }
    assert message["Attributes"]["SenderId"].startswith("AROA")
    assert ":awslambda_" in message["Attributes"]["SenderId"]


def test_on_failure_record(run_lab: RunLab) -> None:
    run = run_lab(
        scenario(
            event(REJECT),
            source="maximum_retry_attempts = 1",
            destinations='on_failure = "sqs:orders-failures"',
        )
    )
    [truth] = run.events
    rid = truth["event_id"]
    [record] = run.bodies("orders-failures")
    assert record == {
        "version": "1.0",
        "timestamp": truth["attempts"][-1]["end"],
        "requestContext": {
            "requestId": rid,
            "functionArn": FUNCTION_ARN + ":$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 2,
        },
        "requestPayload": {"order_id": 2, "reject": True},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {
            "errorMessage": "payment provider rejected order 2",
            "errorType": "RuntimeError",
            "requestId": rid,
            "stackTrace": [
                '  File "/var/task/async_orders.py", line 12, in handler\n'
                "    raise RuntimeError(f\"payment provider rejected order {event['order_id']}\")\n"
            ],
        },
    }
    assert truth["outcome"] == "sent_to_destination"


def test_eventbridge_destination_wraps_the_record_in_an_event(run_lab: RunLab) -> None:
    run = run_lab(
        scenario(
            event("{ order_id = 1 }") + event(REJECT, at=1),
            source="maximum_retry_attempts = 0",
            destinations='on_success = "eventbridge:orders-bus"\non_failure = "eventbridge:orders-bus"',
        )
    )
    ok, failed = run.events
    events = run.bodies("orders-bus")
    assert [e["detail-type"] for e in events] == [
        "Lambda Function Invocation Result - Success",
        "Lambda Function Invocation Result - Failure",
    ]  # an ASCII hyphen, as real events have it, not the docs' en dash
    for wrapped, truth, condition in zip(events, (ok, failed), ("Success", "RetriesExhausted"), strict=True):
        assert (wrapped["source"], wrapped["version"], wrapped["account"]) == ("lambda", "0", "123456789012")
        assert wrapped["resources"] == [
            "arn:aws:events:us-east-1:123456789012:event-bus/orders-bus",
            FUNCTION_ARN + ":$LATEST",
        ]
        assert wrapped["detail"]["requestContext"]["condition"] == condition
        assert wrapped["detail"]["requestContext"]["requestId"] == truth["event_id"]


def test_sns_destination_carries_the_record_as_a_json_string(run_lab: RunLab) -> None:
    run = run_lab(
        scenario(
            event(REJECT),
            source="maximum_retry_attempts = 0",
            destinations='on_failure = "sns:orders-alerts"',
        )
    )
    [truth] = run.events
    [notification] = run.bodies("orders-alerts")
    assert notification["Type"] == "Notification"
    assert notification["TopicArn"] == "arn:aws:sns:us-east-1:123456789012:orders-alerts"
    assert isinstance(notification["Message"], str)
    record = jsonio.loads(notification["Message"])
    assert record["requestContext"]["requestId"] == truth["event_id"]
    assert record["requestContext"]["condition"] == "RetriesExhausted"


# -- dead-letter queues ------------------------------------------------------------------------------------


def test_sqs_dlq_message_is_the_event_with_request_id_and_error_attributes(run_lab: RunLab) -> None:
    run = run_lab(
        scenario(event(REJECT), source="maximum_retry_attempts = 2", destinations='dlq = "sqs:orders-dlq"')
    )
    [truth] = run.events
    [message] = run.messages("orders-dlq")
    assert jsonio.loads(message["Body"]) == {"order_id": 2, "reject": True}
    assert message["MessageAttributes"] == {
        "RequestID": {"DataType": "String", "StringValue": truth["event_id"]},
        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
        "ErrorMessage": {"DataType": "String", "StringValue": "payment provider rejected order 2"},
    }
    assert int(message["Attributes"]["SentTimestamp"]) == ms(truth["attempts"][-1]["end"])
    assert truth["outcome"] == "dead_lettered"


def test_sns_dlq_notification_carries_the_attributes_as_message_attributes(run_lab: RunLab) -> None:
    run = run_lab(
        scenario(
            event(REJECT), source="maximum_retry_attempts = 0", destinations='dlq = "sns:orders-dlq-topic"'
        )
    )
    [truth] = run.events
    [notification] = run.bodies("orders-dlq-topic")
    assert jsonio.loads(notification["Message"]) == {"order_id": 2, "reject": True}
    assert notification["MessageAttributes"] == {
        "RequestID": {"Type": "String", "Value": truth["event_id"]},
        "ErrorCode": {"Type": "Number", "Value": "200"},
        "ErrorMessage": {"Type": "String", "Value": "payment provider rejected order 2"},
    }


# -- truth -------------------------------------------------------------------------------------------------


def test_truth_outcomes(run_lab: RunLab) -> None:
    events = (
        event("{ order_id = 1 }")
        + event("{ order_id = 2 }", at=1, extra='fault = "error"\nfail_times = 1')
        + event(REJECT, at=2)
    )
    both = run_lab(
        scenario(events, destinations='on_failure = "sqs:orders-failures"\ndlq = "sqs:orders-dlq"')
    )
    assert [e["outcome"] for e in both.events] == ["succeeded", "succeeded_after_retry", "dead_lettered"]
    destination_only = run_lab(scenario(event(REJECT), destinations='on_failure = "sqs:orders-failures"'))
    assert destination_only.event()["outcome"] == "sent_to_destination"
    nowhere = run_lab(scenario(event(REJECT)))
    assert nowhere.event()["outcome"] == "dropped"
    for run in (both, destination_only, nowhere):
        assert all(e["source"] == "async" and e["function"] == "orders-capture" for e in run.events)
        assert all(e["duplicates"] == 0 for e in run.events)


def test_a_duplicate_delivery_without_error_is_one_duplicate(run_lab: RunLab) -> None:
    run = run_lab(
        scenario(
            event("{ order_id = 8 }", extra="duplicate = true"),
            destinations='on_success = "sqs:orders-done"',
        )
    )
    [truth] = run.events
    assert [a["outcome"] for a in truth["attempts"]] == ["success", "success"]
    assert truth["deliveries"] == 2
    assert truth["duplicates"] == 1
    assert truth["outcome"] == "succeeded"
    records = run.bodies("orders-done")
    assert [r["requestContext"]["requestId"] for r in records] == [truth["event_id"]] * 2
    assert [r["requestContext"]["approximateInvokeCount"] for r in records] == [1, 1]


def test_a_duplicate_that_finds_the_function_busy_is_retried_not_lost(run_lab: RunLab) -> None:
    # The first delivery times out after 3 s on the only environment; the copy comes 2 s in.
    run = run_lab(
        scenario(
            event("{ order_id = 9 }", extra='faults = ["timeout"]\nduplicate = true'),
            source="maximum_retry_attempts = 0",
        )
    )
    [truth] = run.events
    outcomes = [a["outcome"] for a in truth["attempts"]]
    assert outcomes[0] == "timeout"
    assert "throttled" in outcomes
    assert outcomes[-1] == "success"
    assert truth["duplicates"] == 0, "one success: the copy's"
    # Its only attempt failed (no retries allowed), then the copy got it through.
    assert truth["outcome"] == "succeeded_after_retry"


# -- determinism -------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_and_another_seed_other_ids(run_lab: RunLab) -> None:
    text = scenario(
        event("{ order_id = 1 }")
        + event(REJECT, at=1)
        + event("{ order_id = 3 }", at=2, extra="duplicate = true"),
        source="maximum_retry_attempts = 1",
        destinations='on_success = "eventbridge:orders-bus"\non_failure = "sqs:orders-failures"\n'
        'dlq = "sns:orders-dlq-topic"',
    )
    first, again, other = run_lab(text, seed=7), run_lab(text, seed=7), run_lab(text, seed=8)
    files = sorted(str(p.relative_to(first.out)) for p in first.out.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(again.out)) for p in again.out.rglob("*") if p.is_file())
    for rel in files:
        assert filecmp.cmp(first.out / rel, again.out / rel, shallow=False), rel
    ids = {e["event_id"] for e in first.events}
    assert ids.isdisjoint({e["event_id"] for e in other.events})
    streams = {e["logStreamName"] for e in first.logs()}
    assert streams.isdisjoint({e["logStreamName"] for e in other.logs()})


def test_async_artifacts_ingest_with_nothing_quarantined(run_lab: RunLab, tmp_path: Path) -> None:
    run = run_lab(
        scenario(
            event("{ order_id = 1 }") + event(REJECT, at=1),
            source="maximum_retry_attempts = 1",
            destinations='on_success = "sqs:orders-done"\non_failure = "eventbridge:orders-bus"\n'
            'dlq = "sqs:orders-dlq"',
            function='log_sink = "telemetry"',
        )
    )
    assert run.quarantined() == []
    store = run.store()
    records = store.query("SELECT request_id, condition, approximate_invoke_count FROM destination_records")
    ok, failed = run.events
    assert sorted(
        (r["request_id"], r["condition"], r["approximate_invoke_count"]) for r in records
    ) == sorted([(ok["event_id"], "Success", 1), (failed["event_id"], "RetriesExhausted", 2)])
    [dead] = store.query("SELECT request_id, error_code FROM dead_letters")
    assert (dead["request_id"], dead["error_code"]) == (failed["event_id"], "200")
    statuses = [r["status"] for r in run.invocations()]
    assert statuses == ["success", "error", "error"]


def test_the_shipped_event_age_incident_tells_its_story(tmp_path: Path) -> None:
    from tracekit.lab.run import run_scenario

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "incident"
    run_scenario(root / "samples" / "scenarios" / "async-event-age-json.toml", out, seed=1)
    run = LabRun(out, None, jsonio.loads((out / "truth.json").read_bytes()))
    outcomes = [e["outcome"] for e in run.events]
    assert outcomes == [
        "succeeded",
        "dead_lettered",
        "succeeded",
        "succeeded_after_retry",
        "dead_lettered",
        "succeeded",
    ]  # fmt: skip  (the third event was only throttled before it succeeded)
    failed = [e for e in run.events if e["outcome"] == "dead_lettered"]
    # Age 90 s: the 1-minute retry fits, the 2-minute one would not.
    for truth in failed:
        assert [a["outcome"] for a in truth["attempts"] if a["outcome"] != "throttled"] == ["error", "error"]
    records = [e["detail"] for e in run.bodies("payments-events")]
    assert [
        (r["requestContext"]["condition"], r["requestContext"]["approximateInvokeCount"]) for r in records
    ] == [
        ("EventAgeExceeded", 2),
        ("EventAgeExceeded", 2),
    ]
    assert {r["requestContext"]["requestId"] for r in records} == {e["event_id"] for e in failed}
    dead = run.bodies("payments-dlq")
    assert {n["MessageAttributes"]["RequestID"]["Value"] for n in dead} == {e["event_id"] for e in failed}
    throttled = [a for e in run.events for a in e["attempts"] if a["outcome"] == "throttled"]
    assert len(throttled) == 3
    assert all(m.startswith(("{", "captured ", "LAMBDA_WARNING")) for m in (e["message"] for e in run.logs()))
    assert run.quarantined() == []
