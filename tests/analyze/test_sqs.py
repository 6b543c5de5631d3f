"""SQS lifecycles (tracekit.analyze.sqs) against the lab's truth.json.

Every expected value comes from the truth file of the run, or by hand from the scenario and
lambda-semantics.md §3. Throttled attempts never reach a log stream, so the analyzer is compared with the
truth's visible attempts; `deliveries` is, by the analyzer's definition, the visible attempts that reached
the handler (not init_error).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from tests.analyze.conftest import SCENARIOS, LabAnalysis, LabStore

MODULES = ("items", "sqs")
REDRIVE = SCENARIOS / "sqs-redrive.toml"
FIFO = SCENARIOS / "sqs-fifo-partial-batch.toml"


# ---------------------------------------------------------------------- helpers


def variant(scenario: Any, *, handler: str, recorder: bool) -> str:
    """A shipped scenario's text with its handler and recorder setting replaced."""
    text = scenario.read_text()
    text = re.sub(r"(?m)^recorder = .*\n", "", text)
    text, n = re.subn(
        r'(?m)^handler = ".*"$', f'handler = "{handler}"\nrecorder = {str(recorder).lower()}', text
    )
    assert n == 1
    return text


def analyzed(run: LabAnalysis) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], dict[str, Any]]:
    events = {e["event_id"]: e for e in run.rows("SELECT * FROM sqs_events")}
    attempts: dict[str, list[dict[str, Any]]] = {}
    for a in run.rows("SELECT * FROM sqs_attempts ORDER BY event_id, attempt"):
        attempts.setdefault(a["event_id"], []).append(a)
    batches = {b["batch_id"]: b for b in run.rows("SELECT * FROM sqs_batches")}
    return events, attempts, batches


def seen_by_logs(truth_event: dict[str, Any]) -> bool:
    return bool(LabAnalysis.visible(truth_event["attempts"])) or truth_event["outcome"] == "dead_lettered"


def assert_attempts_match(run: LabAnalysis, *, outcomes: bool = True) -> None:
    """Event ids, attempt request ids (and outcomes) and batches agree with the truth's visible attempts."""
    events, attempts, batches = analyzed(run)
    truth = {k: e for k, e in run.truth_events().items() if seen_by_logs(e)}
    assert set(events) == set(truth)
    for event_id, t in truth.items():
        visible = LabAnalysis.visible(t["attempts"])
        got = attempts.get(event_id, [])
        assert [a["request_id"] for a in got] == [a["request_id"] for a in visible], event_id
        assert [a["attempt"] for a in got] == list(range(1, len(visible) + 1))
        if outcomes:
            assert [a["outcome"] for a in got] == [a["outcome"] for a in visible], event_id
        e = events[event_id]
        assert e["attempts"] == len(visible)
        assert e["retries"] == max(len(visible) - 1, 0)
        assert e["deliveries"] == sum(a["outcome"] != "init_error" for a in visible)
        assert e["source"] == "sqs" and e["function_name"] == t["function"]
    expected_batches = {b["request_id"]: b for b in run.truth["batches"] if b["outcome"] != "throttled"}
    assert set(batches) == set(expected_batches)
    for request_id, b in expected_batches.items():
        got_batch = batches[request_id]
        for column in ("shard_id", "first_sequence_number", "last_sequence_number", "size"):
            assert got_batch[column] == b[column], (request_id, column)
        if outcomes:
            assert got_batch["outcome"] == b["outcome"], request_id
        assert got_batch["parent_batch_id"] is None and got_batch["depth"] == 0
        assert got_batch["request_id"] == request_id


def assert_lifecycles_match(run: LabAnalysis) -> None:
    """Attempts, batches, outcomes and duplicate counts all agree with the truth, and nothing is uncertain."""
    assert_attempts_match(run)
    events, _, _ = analyzed(run)
    for event_id, t in run.truth_events().items():
        if not seen_by_logs(t):
            continue
        e = events[event_id]
        assert (e["outcome"], e["duplicates"]) == (t["outcome"], t["duplicates"]), event_id
        assert (e["dead_letter_message_id"] is not None) == (t["outcome"] == "dead_lettered")
        assert (e["duplicate_kind"] is None) == (t["duplicates"] == 0)
        assert not e["uncertain"] and e["uncertain_reason"] is None, (event_id, e["uncertain_reason"])


# ---------------------------------------------------------------------- the shipped scenarios


def test_redrive_with_the_recorder_matches_truth(lab_store: LabStore) -> None:
    run = lab_store(REDRIVE, modules=MODULES)
    assert_lifecycles_match(run)
    events, attempts, _ = analyzed(run)
    # By hand from the scenario: order 4720 fails every batch and goes to the DLQ after its third receive.
    dead = [e for e in events.values() if e["outcome"] == "dead_lettered"]
    assert len(dead) == 1
    assert '"orderId":4720' in dead[0]["payload"]
    assert dead[0]["dead_letter_message_id"] == dead[0]["event_id"]
    assert dead[0]["evidence"] == "dead_letter,logs,recorder"
    assert [a["outcome"] for a in attempts[dead[0]["event_id"]]] == ["error"] * 3
    assert dead[0]["final_error_type"] == "ValueError"
    # A redelivery comes one visibility timeout (60 s) after the failed receive.
    gaps = [a["gap_ms"] for a in attempts[dead[0]["event_id"]]]
    assert gaps[0] is None and all(55_000 < g < 60_000 for g in gaps[1:])
    # Order 4722 is received twice without any error.
    twice = [e for e in events.values() if e["duplicates"]]
    assert [(e["duplicates"], e["duplicate_kind"], e["outcome"]) for e in twice] == [
        (1, "at_least_once", "succeeded")
    ]
    # Orders 4731 and 4732 arrive together; their batch times out once, then goes through.
    timed_out = {k for k, a in attempts.items() if a[0]["outcome"] == "timeout"}
    assert len(timed_out) == 2
    assert {events[k]["outcome"] for k in timed_out} == {"succeeded_after_retry"}
    assert {attempts[k][0]["error_type"] for k in timed_out} == {"Sandbox.Timedout"}


def test_fifo_partial_batch_with_the_recorder_matches_truth(lab_store: LabStore) -> None:
    run = lab_store(
        variant(FIFO, handler="{samples}/orders_worker.py:partial_handler", recorder=True), modules=MODULES
    )
    assert_lifecycles_match(run)
    events, attempts, batches = analyzed(run)
    # By hand: 4742 and 4743 are reported three times and dead-lettered; 4744 succeeds on its third receive.
    assert Counter(e["outcome"] for e in events.values()) == {
        "succeeded": 4,
        "dead_lettered": 2,
        "succeeded_after_retry": 1,
    }
    for e in events.values():
        if e["outcome"] == "dead_lettered":
            assert e["final_error_message"] == "reported in batchItemFailures"
            assert e["final_error_type"] is None
    # A FIFO batch is named by its first and last SequenceNumber, 20 digits.
    assert all(re.fullmatch(r"\d{20}", b["first_sequence_number"]) for b in batches.values())
    assert Counter(b["outcome"] for b in batches.values()) == {"partial_failure": 3, "success": 2}


@pytest.mark.parametrize("scenario", [REDRIVE, FIFO], ids=["redrive", "fifo"])
def test_without_item_evidence_only_dead_letters_are_known_and_uncertain(
    lab_store: LabStore, scenario: Any
) -> None:
    """The sample handlers log only prose: with the recorder off no log line names a message."""
    name = "handler" if scenario == REDRIVE else "partial_handler"
    run = lab_store(
        variant(scenario, handler=f"{{samples}}/orders_worker.py:{name}", recorder=False), modules=MODULES
    )
    events, attempts, batches = analyzed(run)
    dead = {k for k, t in run.truth_events().items() if t["outcome"] == "dead_lettered"}
    assert dead and set(events) == dead
    assert attempts == {} and batches == {}
    function = run.truth["events"][0]["function"]
    for e in events.values():
        assert (e["outcome"], e["attempts"], e["retries"], e["duplicates"]) == ("dead_lettered", 0, 0, 0)
        assert e["evidence"] == "dead_letter"
        assert e["uncertain"] and e["uncertain_reason"].startswith("Known only from its dead-letter queue")
        assert e["function_name"] == function
        assert e["payload"] is not None and e["first_seen"] is not None and e["last_seen"] is None


def test_redrive_from_logged_events_matches_truth(lab_store: LabStore) -> None:
    run = lab_store(
        variant(REDRIVE, handler="{handlers}/sqs_logged.py:handler", recorder=False), modules=MODULES
    )
    assert_attempts_match(run)
    events, _, _ = analyzed(run)
    truth = run.truth_events()
    for event_id, e in events.items():
        assert (e["outcome"], e["duplicates"]) == (truth[event_id]["outcome"], truth[event_id]["duplicates"])
        assert "logged_event" in e["evidence"] and "recorder" not in e["evidence"]
    # Without the handler's response, a second success could also be a reported failure: the one
    # duplicate (order 4722) is counted, and marked uncertain.
    uncertain = {k for k, e in events.items() if e["uncertain"]}
    assert uncertain == {k for k, t in truth.items() if t["duplicates"]}
    assert "at-least-once duplicate" in events[uncertain.pop()]["uncertain_reason"]


def test_fifo_partial_batch_from_logged_events_infers_reported_failures(lab_store: LabStore) -> None:
    """No recorder: the responses are unknown, but a dead-lettered message whose receives all 'succeeded'
    shows that the mapping reads batchItemFailures, and every receive a message came back from was one."""
    run = lab_store(
        variant(FIFO, handler="{handlers}/sqs_logged.py:partial_handler", recorder=False), modules=MODULES
    )
    assert_attempts_match(run)
    events, attempts, _ = analyzed(run)
    truth = run.truth_events()
    for event_id, e in events.items():
        assert (e["outcome"], e["duplicates"]) == (truth[event_id]["outcome"], truth[event_id]["duplicates"])
    # Uncertain: exactly the messages with a failed attempt in an invocation that succeeded.
    sent_back = {k for k, t in truth.items() if any(a["outcome"] == "error" for a in t["attempts"])}
    assert {k for k, e in events.items() if e["uncertain"]} == sent_back
    for k in sent_back:
        assert "not in the logs" in events[k]["uncertain_reason"]
        assert all(a["error_type"] is None for a in attempts[k])


def test_structured_fields_name_the_messages_up_to_a_failure_and_the_rest_is_uncertain(
    lab_store: LabStore,
) -> None:
    """Messages logged one by one: a batch that fails at order 4720 never names the messages behind it.
    Whatever the analyzer cannot see is flagged: a jump in the receive count, or an event known only from
    the DLQ. Every event it does not flag agrees with the truth."""
    run = lab_store(
        variant(REDRIVE, handler="{handlers}/sqs_logged.py:fields_handler", recorder=False), modules=MODULES
    )
    events, attempts, _ = analyzed(run)
    truth = run.truth_events()
    assert set(events) <= set(truth)
    assert set(events) >= {k for k, t in truth.items() if t["outcome"] == "dead_lettered"}
    missed = 0
    for event_id, e in events.items():
        t = truth[event_id]
        visible = [a["request_id"] for a in LabAnalysis.visible(t["attempts"])]
        got = [a["request_id"] for a in attempts.get(event_id, [])]
        assert set(got) <= set(visible)
        # A receive the logs miss sat in a failed batch here, and the function has failed invocations that
        # do not name all their messages: the outcome counts it as a failed receive.
        assert (e["outcome"], e["duplicates"]) == (t["outcome"], t["duplicates"]), event_id
        if e["uncertain"]:
            missed += got != visible
            continue
        assert e["evidence"] in ("logged_fields,logs", "dead_letter,logged_fields,logs")
        assert got == visible, event_id
    assert missed, "some receives should have been hidden behind the failing order"


# ---------------------------------------------------------------------- settings and unfinished messages

STOPPED = """
name = "sqs-stopped"
start = "2026-11-22T10:00:00Z"
stop = 100

[function]
name = "orders-stopped"
handler = "{handlers}/sqs_orders.py:handler"
recorder = true
timeout_s = 5

[source]
type = "sqs"
visibility_timeout_s = 30
max_receive_count = 5
dlq = "orders-stopped-dlq"

[[events]]
payload = { n = 1 }
fault = "error"
fail_times = 10

[[events]]
at = 1
payload = { n = 2 }
"""


def test_a_message_still_retrying_when_collection_stopped_is_in_flight(lab_store: LabStore) -> None:
    """By hand: receives at 0, 30, 60 and 90 s fail, the fifth would come at 120 s, after the stop."""
    run = lab_store(STOPPED, modules=MODULES)
    assert_attempts_match(run)
    events, attempts, _ = analyzed(run)
    truth = run.truth_events()
    failing = next(k for k, t in truth.items() if t["outcome"] == "in_flight")
    assert len(attempts[failing]) == 4
    assert events[failing]["outcome"] == "in_flight"
    # The redrive policy is not known to the analyzer: it cannot rule out a DLQ nobody collected.
    assert events[failing]["uncertain"]
    assert "max_receive_count" in events[failing]["uncertain_reason"]

    known = lab_store(STOPPED, modules=MODULES, settings={"orders-stopped": {"max_receive_count": 5}})
    events, _, _ = analyzed(known)
    # Four receives of five allowed: it comes back, so in flight for sure.
    assert (events[failing]["outcome"], events[failing]["uncertain"]) == ("in_flight", False)

    spent = lab_store(STOPPED, modules=MODULES, settings={"orders-stopped": {"max_receive_count": 4}})
    events, _, _ = analyzed(spent)
    assert events[failing]["outcome"] == "in_flight" and events[failing]["uncertain"]
    assert "next receive" in events[failing]["uncertain_reason"]


EXPIRING = """
name = "sqs-expiring"
start = "2026-11-22T10:00:00Z"

[function]
name = "orders-expiring"
handler = "{handlers}/sqs_orders.py:handler"
recorder = true
timeout_s = 5

[source]
type = "sqs"
visibility_timeout_s = 25
message_retention_s = 60

[[events]]
payload = { n = 1 }
fault = "error"
fail_times = 10

[[events]]
at = 80
payload = { n = 2 }
"""


def test_a_message_that_outlives_the_retention_is_dropped(lab_store: LabStore) -> None:
    """By hand: no redrive policy; receives at 0, 25 and 50 s fail; at 75 s the message is 60 s old and SQS
    deletes it; order 2 (at 80 s) shows that the mapping was still polling."""
    settings = {"orders-expiring": {"message_retention_s": 60, "max_receive_count": "none"}}
    run = lab_store(EXPIRING, modules=MODULES, settings=settings)
    assert_lifecycles_match(run)
    events, _, _ = analyzed(run)
    dropped = [e for e in events.values() if e["outcome"] == "dropped"]
    assert len(dropped) == 1 and dropped[0]["attempts"] == 3

    # With the retention unknown (4 days by default) it could still come back.
    unknown = lab_store(EXPIRING, modules=MODULES)
    events, _, _ = analyzed(unknown)
    assert events[dropped[0]["event_id"]]["outcome"] == "in_flight"
    assert events[dropped[0]["event_id"]]["uncertain"]


IGNORED_RESPONSE = """
name = "sqs-no-rbif"
start = "2026-11-22T10:00:00Z"

[function]
name = "orders-no-rbif"
handler = "{handlers}/sqs_orders.py:partial_handler"
recorder = true
concurrency = 5

[source]
type = "sqs"
report_batch_item_failures = false

[random]
events = 200
rate_per_s = 20
payload = { n = "{n}" }
"""


def test_a_response_the_mapping_does_not_read_is_ignored(lab_store: LabStore) -> None:
    """Without ReportBatchItemFailures Lambda ignores batchItemFailures: every order succeeds at once."""
    settings = {"orders-no-rbif": {"report_batch_item_failures": "false"}}
    run = lab_store(IGNORED_RESPONSE, modules=MODULES, settings=settings)
    assert_lifecycles_match(run)
    assert {t["outcome"] for t in run.truth["events"]} == {"succeeded"}


# ---------------------------------------------------------------------- seeded random scenarios

RANDOM_STANDARD = """
name = "sqs-random"
start = "2026-11-22T12:00:00Z"

[function]
name = "orders-random"
handler = "{handlers}/sqs_orders.py:handler"
recorder = true
timeout_s = 5
concurrency = 10
duration_ms = 20
per_item_ms = 2

[source]
type = "sqs"
visibility_timeout_s = 30
max_receive_count = 3
dlq = "orders-random-dlq"
maximum_batching_window_s = 1

[random]
events = 3000
rate_per_s = 50
payload = { n = "{n}" }
faults = { error = 0.04, timeout = 0.004, crash = 0.002, out_of_memory = 0.002 }
duplicate_rate = 0.01

[[events]]
at = 5
payload = { n = -1 }
fault = "error"
fail_times = 5

[[events]]
at = 25
payload = { n = -2 }
fault = "timeout"
fail_times = 5
"""

RANDOM_FIFO = """
name = "sqs-random-fifo"
start = "2026-11-22T12:00:00Z"

[function]
name = "orders-random-fifo"
handler = "{handlers}/sqs_orders.py:partial_handler"
recorder = true
timeout_s = 5
concurrency = 10
duration_ms = 20
per_item_ms = 2

[source]
type = "sqs"
queue = "orders-random.fifo"
visibility_timeout_s = 30
max_receive_count = 2
dlq = "orders-random-dlq.fifo"
report_batch_item_failures = true

[random]
events = 3000
rate_per_s = 100
payload = { n = "{n}" }
faults = { error = 0.01 }
duplicate_rate = 0.01
keys = 40
"""


def test_a_seeded_random_standard_queue_matches_truth(lab_store: LabStore) -> None:
    run = lab_store(RANDOM_STANDARD, seed=7, modules=MODULES)
    truth = run.truth_events()
    outcomes = Counter(t["outcome"] for t in truth.values())
    assert len(truth) >= 3000 and outcomes["dead_lettered"] >= 2 and outcomes["succeeded_after_retry"] > 50
    assert sum(t["duplicates"] for t in truth.values()) >= 10
    assert_lifecycles_match(run)


def test_a_seeded_random_fifo_queue_with_partial_batches_matches_truth(lab_store: LabStore) -> None:
    run = lab_store(RANDOM_FIFO, seed=11, modules=MODULES)
    batch_outcomes = Counter(b["outcome"] for b in run.truth["batches"])
    assert batch_outcomes["partial_failure"] > 10 and batch_outcomes["invalid_response"] > 5
    assert sum(t["duplicates"] for t in run.truth["events"]) >= 10
    assert_lifecycles_match(run)


THROTTLED = """
name = "sqs-throttled"
start = "2026-11-22T12:00:00Z"

[function]
name = "orders-throttled"
handler = "{handlers}/sqs_orders.py:handler"
recorder = true
timeout_s = 5
concurrency = 2
duration_ms = 400

[source]
type = "sqs"
visibility_timeout_s = 5
batch_size = 2
concurrent_batches = 5
max_receive_count = 10
dlq = "orders-throttled-dlq"

[random]
events = 400
rate_per_s = 40
payload = { n = "{n}" }
"""


def test_throttled_receives_leave_no_trace_and_make_events_uncertain(lab_store: LabStore) -> None:
    """Two environments behind five pollers: invokes are throttled. A throttle retried within the receive
    is invisible; a receive spent on throttles shows as a jump in ApproximateReceiveCount. Throttles are
    no retries, so the outcomes still agree with the truth."""
    run = lab_store(THROTTLED, seed=3, modules=MODULES)
    assert_attempts_match(run)
    events, _, _ = analyzed(run)
    truth = run.truth_events()
    assert any(a["outcome"] == "throttled" for t in truth.values() for a in t["attempts"])
    for event_id, e in events.items():
        assert (e["outcome"], e["duplicates"]) == (truth[event_id]["outcome"], truth[event_id]["duplicates"])
    # The receive counts the function saw, from its recorder lines.
    counts: dict[str, list[int]] = {}
    for row in run.rows("SELECT item_id, receive_count FROM items ORDER BY receive_count"):
        counts.setdefault(row["item_id"], []).append(row["receive_count"])
    spent = {k for k, seen in counts.items() if seen[-1] > len(seen)}
    assert spent, "the scenario should spend some receives on throttles"
    assert {k for k, e in events.items() if e["uncertain"]} == spent
    for k in spent:
        assert "left no trace" in events[k]["uncertain_reason"]


# ---------------------------------------------------------------------- the tables' shape


def test_tables_exist_and_are_empty_without_sqs_evidence(lab_store: LabStore) -> None:
    run = lab_store(SCENARIOS / "async-retries.toml", modules=MODULES)
    for table in ("sqs_events", "sqs_attempts", "sqs_batches"):
        assert run.rows(f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]
    columns = [r["column_name"] for r in run.rows("SELECT column_name FROM (DESCRIBE sqs_events)")]
    assert columns[:4] == ["event_id", "source", "function_name", "first_seen"]
    assert columns[-3:] == ["evidence", "uncertain", "uncertain_reason"]
