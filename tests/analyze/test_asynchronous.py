"""Async lifecycles (tracekit.analyze.asynchronous) against the lab's truth.json and lambda-semantics §1.

Every expectation comes from truth.json or is worked out by hand from the scenario and the documented
semantics, never from the analyzer's output. Throttled attempts never reach a log stream, so attempts
are compared with truth's attempts minus the throttled ones (truth, like the logs, does not count
throttles as retries).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SCENARIOS, LabAnalysis, LabStore, create_function_settings

from tracekit import jsonio
from tracekit.analyze import asynchronous
from tracekit.collect.ingest import ingest_paths
from tracekit.lab.run import run_scenario
from tracekit.store import Store

MODULES = ("asynchronous",)
FUNCTION = "orders-capture"
FAILED = {"error", "timeout", "out_of_memory", "crash", "init_error", "unknown"}


def scenario(
    events: str, *, source: str = "", destinations: str = "", function: str = "", top: str = ""
) -> str:
    """An async scenario around tests/analyze/handlers/async_orders.py."""
    return f"""
name = "async-analysis"
start = "2026-11-22T09:00:00Z"
{top}
[function]
name = "{FUNCTION}"
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


def iso(value: datetime | None) -> str | None:
    """A store timestamp written the way truth.json writes times (UTC, milliseconds, Z)."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def events_by_id(run: LabAnalysis) -> dict[str, dict[str, Any]]:
    return {e["event_id"]: e for e in run.rows("SELECT * FROM async_events")}


def attempts_by_id(run: LabAnalysis) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in run.rows("SELECT * FROM async_attempts ORDER BY event_id, attempt"):
        found.setdefault(row["event_id"], []).append(row)
    return found


def is_visible(truth: dict[str, Any]) -> bool:
    """Whether any artifact shows the event: a logged attempt, or its DLQ message / on-failure record."""
    return bool(LabAnalysis.visible(truth["attempts"])) or truth["outcome"] in (
        "dead_lettered",
        "sent_to_destination",
    )


def assert_matches_truth(run: LabAnalysis, *, certain: bool = True) -> None:
    """Every visible truth event is an async event with the same attempts, outcome and duplicates."""
    truth = {e["event_id"]: e for e in run.truth["events"] if is_visible(e)}
    events = events_by_id(run)
    attempts = attempts_by_id(run)
    assert set(events) == set(truth)
    for event_id, expected in truth.items():
        got = events[event_id]
        # Attempts are numbered by start, and concurrent duplicates starting together by end.
        seen = sorted(LabAnalysis.visible(expected["attempts"]), key=lambda a: (a["start"], a["end"]))
        rows = attempts.get(event_id, [])
        assert [(a["request_id"], a["outcome"]) for a in rows] == [
            (a["request_id"], a["outcome"]) for a in seen
        ], event_id
        assert [a["attempt"] for a in rows] == list(range(1, len(seen) + 1))
        # Log timestamps are whole milliseconds cut down from the lab's virtual time, truth's times
        # are rounded: they may differ by one millisecond.
        for row, attempt in zip(rows, seen, strict=True):
            assert abs(ms(iso(row["start_time"]) or "") - ms(attempt["start"])) <= 1, event_id
            assert abs(ms(iso(row["end_time"]) or "") - ms(attempt["end"])) <= 1, event_id
        gaps = [a["gap_ms"] for a in rows]
        assert gaps[:1] == [None][: len(rows)]
        for gap, (a, b) in zip(gaps[1:], zip(seen, seen[1:], strict=False), strict=True):
            assert abs(gap - (ms(b["start"]) - ms(a["end"]))) <= 2, event_id
        assert all(a["batch_id"] is None and a["source"] == "async" for a in rows)
        assert got["function_name"] == expected["function"]
        assert got["attempts"] == len(seen)
        assert got["retries"] == max(len(seen) - 1, 0)
        # The contract's deliveries: attempts whose handler was reached, i.e. all but init failures.
        assert got["deliveries"] == sum(a["outcome"] != "init_error" for a in seen)
        assert got["outcome"] == expected["outcome"], event_id
        assert got["duplicates"] == expected["duplicates"], event_id
        assert (got["duplicate_kind"] is None) == (expected["duplicates"] == 0)
        if certain:
            assert (got["uncertain"], got["uncertain_reason"]) == (False, None), event_id


def dead_letter_messages(run: LabAnalysis) -> dict[str, dict[str, Any]]:
    """The DLQ messages as written, by their RequestID attribute."""
    found = {}
    for page in sorted((run.out / "dlq").glob("*.json")):
        for message in jsonio.loads(page.read_bytes())["Messages"]:
            attributes = message["MessageAttributes"]
            found[attributes["RequestID"]["StringValue"]] = message
    return found


# -- the shipped scenarios ------------------------------------------------------------------------------


def test_async_retries_sample_matches_truth(lab_store: LabStore) -> None:
    run = lab_store(SCENARIOS / "async-retries.toml", modules=MODULES)
    assert_matches_truth(run)
    events = events_by_id(run)
    # The scenario's third event (order 4712, c@invalid) fails every attempt with the handler's
    # ValueError and lands in the DLQ and the on-failure destination.
    [failed] = [e for e in run.truth["events"] if e["outcome"] == "dead_lettered"]
    got = events[failed["event_id"]]
    assert got["final_error_type"] == "ValueError"
    assert got["final_error_message"] == "mail service rejected the address for order 4712"
    assert jsonio.loads(got["payload"]) == {"order_id": 4712, "email": "c@invalid"}
    assert got["evidence"] == "dead_letter,destination_record,logs"
    [message] = dead_letter_messages(run).values()
    assert got["dead_letter_message_id"] == message["MessageId"]
    [record] = run.rows(
        "SELECT condition, approximate_invoke_count FROM destination_records WHERE record_id = ?",
        [got["destination_record_id"]],
    )
    assert record == {"condition": "RetriesExhausted", "approximate_invoke_count": 3}
    # The handler itself raised or timed out in every failed attempt: truth counts them all as deliveries.
    for expected in run.truth["events"]:
        assert events[expected["event_id"]]["deliveries"] == expected["deliveries"]


def test_event_age_sample_matches_truth_with_throttles_invisible(lab_store: LabStore) -> None:
    run = lab_store(SCENARIOS / "async-event-age-json.toml", modules=MODULES)
    assert_matches_truth(run)
    events = events_by_id(run)
    backup = [
        e
        for e in run.truth["events"]
        if e["outcome"] == "dead_lettered" and len(LabAnalysis.visible(e["attempts"])) == 2
    ]
    # pay-1002 and pay-1005 go to the backup acquirer: two attempts, then EventAgeExceeded (90 s).
    assert len(backup) == 2
    for expected in backup:
        got = events[expected["event_id"]]
        assert got["final_error_type"] == "AcquirerUnavailable"
        [record] = run.rows(
            "SELECT condition, approximate_invoke_count FROM destination_records WHERE record_id = ?",
            [got["destination_record_id"]],
        )
        assert record == {"condition": "EventAgeExceeded", "approximate_invoke_count": 2}
        assert jsonio.loads(got["payload"])["acquirer"] == "eu-west-backup"
    # pay-1003 (the third event) was throttled twice, then succeeded: throttles are not retries of the
    # function (truth and logs agree), and the logs show one successful attempt.
    pay_1003 = run.truth["events"][2]
    assert [a["outcome"] for a in pay_1003["attempts"]] == ["throttled", "throttled", "success"]
    assert pay_1003["outcome"] == "succeeded"
    got = events[pay_1003["event_id"]]
    assert (got["outcome"], got["attempts"], got["uncertain"]) == ("succeeded", 1, False)
    for expected in run.truth["events"]:
        assert events[expected["event_id"]]["deliveries"] == expected["deliveries"]


# -- dropped events, EventAgeExceeded, in flight ----------------------------------------------------------

REJECT = "{ order_id = 1, reject = true }"


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_an_event_out_of_retries_with_no_sink_is_dropped(lab_store: LabStore, retries: int) -> None:
    run = lab_store(
        scenario(event(REJECT), source=f"maximum_retry_attempts = {retries}"),
        modules=MODULES,
        settings={FUNCTION: {"maximum_retry_attempts": retries}},
    )
    assert_matches_truth(run)
    [got] = events_by_id(run).values()
    assert (got["outcome"], got["attempts"], got["uncertain"]) == ("dropped", retries + 1, False)
    assert got["final_error_type"] == "RuntimeError"
    assert got["final_error_message"] == "payment provider rejected order 1"
    assert (got["destination_record_id"], got["dead_letter_message_id"], got["payload"]) == (None, None, None)
    assert got["evidence"] == "logs"


@pytest.mark.parametrize("retries", [0, 1])
def test_without_the_setting_a_last_failure_at_the_end_of_the_logs_is_in_flight_and_uncertain(
    lab_store: LabStore, retries: int
) -> None:
    # The default (2 retries) promises another attempt 60 s / 120 s after the last one, and the logs
    # end before it: dropped (truth) and "still to be retried" can't be told apart.
    run = lab_store(scenario(event(REJECT), source=f"maximum_retry_attempts = {retries}"), modules=MODULES)
    [truth] = run.truth["events"]
    assert truth["outcome"] == "dropped"
    [got] = events_by_id(run).values()
    assert (got["outcome"], got["uncertain"]) == ("in_flight", True)
    last_end = ms(truth["attempts"][-1]["end"])
    due = datetime.fromtimestamp((last_end + (60_000 if retries == 0 else 120_000)) / 1000, UTC)
    assert got["uncertain_reason"] == (
        f"No destination record or DLQ message, and its next retry (due {due:%Y-%m-%d %H:%M:%S} UTC) "
        "would come after the newest log line: it may still be retried, or it was dropped."
    )


def test_without_the_setting_a_retry_missing_from_later_logs_means_dropped(lab_store: LabStore) -> None:
    # One retry, then nothing; a later event at 10 min shows the logs go on past the retry that
    # a default configuration would have made 120 s after the second failure.
    events = event(REJECT) + event("{ order_id = 2 }", at=600)
    run = lab_store(scenario(events, source="maximum_retry_attempts = 1"), modules=MODULES)
    assert_matches_truth(run)
    outcomes = sorted(e["outcome"] for e in events_by_id(run).values())
    assert outcomes == ["dropped", "succeeded"]


def test_event_age_exceeded_goes_to_the_destination_after_one_attempt(lab_store: LabStore) -> None:
    # lambda-semantics §1.1: with MaximumEventAgeInSeconds 60 the 60 s retry delay already exceeds
    # the age, so one attempt, then EventAgeExceeded with approximateInvokeCount 1.
    run = lab_store(
        scenario(
            event(REJECT),
            source="maximum_event_age_s = 60",
            destinations='on_failure = "sqs:orders-capture-failures"',
        ),
        modules=MODULES,
    )
    assert_matches_truth(run)
    [got] = events_by_id(run).values()
    assert (got["outcome"], got["attempts"]) == ("sent_to_destination", 1)
    [record] = run.rows(
        "SELECT condition, approximate_invoke_count, request_payload FROM destination_records "
        "WHERE record_id = ?",
        [got["destination_record_id"]],
    )
    assert record["condition"] == "EventAgeExceeded"
    assert record["approximate_invoke_count"] == 1
    assert jsonio.loads(got["payload"]) == {"order_id": 1, "reject": True}
    assert got["evidence"] == "destination_record,logs"


def test_event_age_exceeded_with_no_sink_is_dropped_when_the_age_is_known(lab_store: LabStore) -> None:
    text = scenario(event(REJECT), source="maximum_event_age_s = 60")
    run = lab_store(text, modules=MODULES, settings={FUNCTION: {"maximum_event_age_s": 60}})
    assert_matches_truth(run)
    [got] = events_by_id(run).values()
    assert (got["outcome"], got["attempts"], got["uncertain"]) == ("dropped", 1, False)
    # Without the setting the 6-hour default leaves room for the retry: in flight, and said so.
    unknown = lab_store(text, modules=MODULES)
    [got] = events_by_id(unknown).values()
    assert (got["outcome"], got["uncertain"]) == ("in_flight", True)


def test_an_event_cut_off_by_the_end_of_the_run_is_in_flight(lab_store: LabStore) -> None:
    run = lab_store(scenario(event(REJECT), top="stop = 30"), modules=MODULES)
    [truth] = run.truth["events"]
    assert truth["outcome"] == "in_flight"
    assert_matches_truth(run, certain=False)
    [got] = events_by_id(run).values()
    assert got["uncertain"] is True


# -- attempts: faults, formats, log streams -----------------------------------------------------------------


@pytest.mark.parametrize(("log_format", "timeout_style"), [("text", "new"), ("text", "old"), ("json", "new")])
def test_timeouts_are_failed_attempts_and_their_error_survives(
    lab_store: LabStore, log_format: str, timeout_style: str
) -> None:
    run = lab_store(
        scenario(
            event("{ order_id = 3 }", extra='faults = ["timeout", "timeout", "timeout"]')
            + event("{ order_id = 4 }", at=10, extra='faults = ["timeout"]'),
            destinations='on_failure = "sqs:orders-capture-failures"',
            function=f'log_format = "{log_format}"\ntimeout_style = "{timeout_style}"',
        ),
        modules=MODULES,
    )
    assert_matches_truth(run)
    events = events_by_id(run)
    failed, retried = run.truth["events"]
    assert events[failed["event_id"]]["outcome"] == "sent_to_destination"
    assert "Task timed out after 3.00 seconds" in events[failed["event_id"]]["final_error_message"]
    assert events[retried["event_id"]]["outcome"] == "succeeded_after_retry"


def test_crashes_out_of_memory_and_init_errors(lab_store: LabStore) -> None:
    # The init failure strikes the run's first attempt, in a cold environment as it must be.
    run = lab_store(
        scenario(
            event("{ order_id = 5 }", extra='faults = ["init_error", "crash", "out_of_memory"]')
            + event("{ order_id = 6 }", at=400, extra='faults = ["out_of_memory", "crash"]'),
            destinations='on_failure = "sqs:orders-capture-failures"',
        ),
        modules=MODULES,
    )
    assert_matches_truth(run)
    events = events_by_id(run)
    first, second = run.truth["events"]
    got = events[first["event_id"]]
    assert [a["outcome"] for a in attempts_by_id(run)[first["event_id"]]] == [
        "init_error",
        "crash",
        "out_of_memory",
    ]
    assert (got["outcome"], got["attempts"], got["deliveries"]) == ("sent_to_destination", 3, 2)
    assert got["final_error_type"] == "Runtime.OutOfMemory"
    assert events[second["event_id"]]["outcome"] == "succeeded_after_retry"


def test_one_event_across_log_streams(lab_store: LabStore) -> None:
    # Two environments; the rejected order's retries run wherever an environment is free.
    events = "".join(
        event(REJECT if n == 0 else f"{{ order_id = {n + 10} }}", at=n * 0.01 if n < 4 else 60 + n)
        for n in range(8)
    )
    run = lab_store(scenario(events, function="concurrency = 2"), modules=MODULES)
    assert_matches_truth(run)
    rejected = run.truth["events"][0]["event_id"]
    starts = {
        (e["timestamp"], e["logStreamName"])
        for path in (run.out / "logs").glob("*.ndjson")
        for e in map(jsonio.loads, path.read_bytes().splitlines())
        if e["message"].startswith(f"START RequestId: {rejected} ")
    }
    rows = attempts_by_id(run)[rejected]
    assert {(int(ms(iso(a["start_time"]) or "")), a["log_stream"]) for a in rows} == starts
    assert len({a["log_stream"] for a in rows}) > 1


# -- duplicates -------------------------------------------------------------------------------------------


def test_an_at_least_once_duplicate_reuses_the_request_id(lab_store: LabStore) -> None:
    run = lab_store(scenario(event("{ order_id = 7 }", extra="duplicate = true")), modules=MODULES)
    assert_matches_truth(run)
    [got] = events_by_id(run).values()
    assert (got["outcome"], got["attempts"], got["duplicates"], got["duplicate_kind"]) == (
        "succeeded",
        2,
        1,
        "at_least_once",
    )


def test_a_retry_that_runs_after_a_duplicate_succeeded_is_a_lambda_retry(lab_store: LabStore) -> None:
    # Attempt 1 fails; the at-least-once copy (2 s) succeeds; Lambda still retries the failure 60 s
    # after it, and that retry succeeds too.
    run = lab_store(
        scenario(event("{ order_id = 8 }", extra='faults = ["error"]\nduplicate = true')), modules=MODULES
    )
    assert_matches_truth(run)
    [got] = events_by_id(run).values()
    assert [a["outcome"] for a in attempts_by_id(run)[got["event_id"]]] == ["error", "success", "success"]
    assert (got["outcome"], got["duplicates"], got["duplicate_kind"]) == (
        "succeeded_after_retry",
        1,
        "lambda_retry",
    )


def test_success_records_confirm_and_count_duplicates(lab_store: LabStore) -> None:
    run = lab_store(
        scenario(
            event("{ order_id = 9 }", extra="duplicate = true"),
            destinations='on_success = "sqs:orders-capture-done"',
        ),
        modules=MODULES,
    )
    assert_matches_truth(run)
    [got] = events_by_id(run).values()
    assert got["evidence"] == "destination_record,logs"
    [condition] = run.rows(
        "SELECT condition FROM destination_records WHERE record_id = ?", [got["destination_record_id"]]
    )
    assert condition == {"condition": "Success"}


# -- events known only from their sinks ---------------------------------------------------------------------

THROTTLED = "faults = [{}]".format(", ".join(['"throttle"'] * 10))


def test_an_event_throttled_until_it_expired_appears_through_its_sinks(lab_store: LabStore) -> None:
    # Backoff 1, 2, 4, 8, 16, 32 s passes the 60 s age: no attempt ever reached the function.
    run = lab_store(
        scenario(
            event("{ order_id = 10 }", extra=THROTTLED),
            source="maximum_event_age_s = 60",
            destinations='on_failure = "sqs:orders-capture-failures"\ndlq = "sqs:orders-capture-dlq"',
        ),
        modules=MODULES,
    )
    [truth] = run.truth["events"]
    assert LabAnalysis.visible(truth["attempts"]) == []
    assert_matches_truth(run)
    [got] = events_by_id(run).values()
    assert (got["outcome"], got["attempts"], got["deliveries"], got["retries"]) == ("dead_lettered", 0, 0, 0)
    assert got["function_name"] == FUNCTION
    assert got["evidence"] == "dead_letter,destination_record"
    assert jsonio.loads(got["payload"]) == {"order_id": 10}
    message = dead_letter_messages(run)[truth["event_id"]]
    assert got["first_seen"] is not None
    assert got["dead_letter_message_id"] == message["MessageId"]


def test_a_dead_letter_alone_gets_its_function_from_its_queue(lab_store: LabStore) -> None:
    run = lab_store(
        scenario(
            event("{ order_id = 11 }", extra=THROTTLED) + event(REJECT, at=1),
            source="maximum_event_age_s = 60",
            destinations='dlq = "sqs:orders-capture-dlq"',
        ),
        modules=MODULES,
    )
    assert_matches_truth(run)
    assert {e["function_name"] for e in events_by_id(run).values()} == {FUNCTION}
    assert {e["evidence"] for e in events_by_id(run).values()} == {"dead_letter", "dead_letter,logs"}


# -- approximateInvokeCount against the logs ----------------------------------------------------------------


def test_missing_logs_make_the_event_uncertain(tmp_path: Path) -> None:
    # Three failed attempts, the on-failure record counts 3; drop the second attempt's log lines.
    text = scenario(event(REJECT), destinations='on_failure = "sqs:orders-capture-failures"').replace(
        "{handlers}", (Path(__file__).parent / "handlers").as_posix()
    )
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    out = tmp_path / "out"
    run_scenario(path, out, seed=1)
    truth = jsonio.loads((out / "truth.json").read_bytes())
    [event_truth] = truth["events"]
    second = event_truth["attempts"][1]
    [log_file] = (out / "logs").glob("*.ndjson")
    kept = [
        line
        for line in log_file.read_bytes().splitlines()
        if not ms(second["start"]) <= jsonio.loads(line)["timestamp"] <= ms(second["end"])
    ]
    log_file.write_bytes(b"\n".join(kept) + b"\n")
    store = Store.open(tmp_path / "store", create=True)
    ingest_paths(store, [out / "logs", out / "destinations"], log_group=f"/aws/lambda/{FUNCTION}")
    con = store.connect()
    try:
        create_function_settings(con, {})
        asynchronous.build(con)
        row = con.execute(
            "SELECT outcome, attempts, uncertain, uncertain_reason FROM async_events"
        ).fetchone()
    finally:
        con.close()
        store.release()
    assert row == (
        "sent_to_destination",
        2,
        True,
        "The on-failure record counts 3 attempts but the logs show 2 failed: "
        "the others are missing from the logs.",
    )


# -- which functions are async -----------------------------------------------------------------------------


def test_stream_functions_named_by_their_on_failure_records_are_not_async(lab_store: LabStore) -> None:
    run = lab_store(SCENARIOS / "kinesis-bisect-walkthrough.toml", modules=MODULES)
    assert run.rows("SELECT count(*) AS n FROM invocations") != [{"n": 0}]
    assert run.rows("SELECT * FROM async_events") == []
    assert run.rows("SELECT * FROM async_attempts") == []


def test_sqs_functions_shown_by_their_items_are_not_async(lab_store: LabStore) -> None:
    run = lab_store(SCENARIOS / "sqs-redrive.toml", modules=("items", "asynchronous"))
    assert run.rows("SELECT count(*) AS n FROM items WHERE source = 'sqs'") != [{"n": 0}]
    assert run.rows("SELECT * FROM async_events") == []


def test_the_source_setting_names_a_batch_function_without_item_evidence(lab_store: LabStore) -> None:
    run = lab_store(
        SCENARIOS / "sqs-redrive.toml", modules=MODULES, settings={"orders-worker": {"source": "sqs"}}
    )
    assert run.rows("SELECT * FROM async_events") == []
    # And without it, an SQS function with nothing in the items table reads as async.
    plain = lab_store(SCENARIOS / "sqs-redrive.toml", modules=MODULES)
    assert plain.rows("SELECT count(*) AS n FROM async_events") != [{"n": 0}]


def test_the_source_setting_keeps_a_function_async(lab_store: LabStore) -> None:
    run = lab_store(
        SCENARIOS / "sqs-redrive.toml",
        modules=("items", "asynchronous"),
        settings={"orders-worker": {"source": "async"}},
    )
    invocations = run.rows("SELECT count(DISTINCT request_id) AS n FROM invocations")
    assert run.rows("SELECT count(*) AS n FROM async_events") == invocations


def test_an_attempt_cut_off_before_its_report_leaves_the_event_in_flight(tmp_path: Path) -> None:
    rid = "11111111-1111-4111-8111-111111111111"
    stream = "2026/11/22/[$LATEST]0123456789abcdef0123456789abcdef"
    lines = [
        (1795338000000, f"START RequestId: {rid} Version: $LATEST\n"),
        (1795338000010, f"[INFO]\t2026-11-22T09:00:00.010Z\t{rid}\tcapturing order 1\n"),
    ]
    path = tmp_path / "tail.ndjson"
    events = [
        {"logStreamName": stream, "timestamp": ts, "message": m, "eventId": str(n)}
        for n, (ts, m) in enumerate(lines)
    ]
    path.write_bytes(b"".join(jsonio.dumpb(e) + b"\n" for e in events))
    store = Store.open(tmp_path / "store", create=True)
    ingest_paths(store, [path], log_group=f"/aws/lambda/{FUNCTION}")
    con = store.connect()
    try:
        asynchronous.build(con)
        row = con.execute("SELECT event_id, outcome, attempts, uncertain, uncertain_reason FROM async_events")
        assert row.fetchall() == [
            (
                rid,
                "in_flight",
                1,
                True,
                "Its last attempt has no REPORT line in the logs: it may still have been running.",
            )
        ]
    finally:
        con.close()
        store.release()


def test_tables_exist_on_an_empty_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    con = store.connect()
    try:
        asynchronous.build(con)
        events = con.execute("SELECT * FROM async_events").description or []
        attempts = con.execute("SELECT * FROM async_attempts").description or []
        assert [d[0] for d in events][:3] == ["event_id", "source", "function_name"]
        assert [d[0] for d in attempts][-2:] == ["function_name", "source"]
        assert con.execute("SELECT count(*) FROM async_events").fetchone() == (0,)
    finally:
        con.close()
        store.release()


# -- seeded random runs -------------------------------------------------------------------------------------

RANDOM = """
[random]
events = {events}
rate_per_s = 60
payload = {{ order_id = "{{n}}" }}
faults = {{ error = 0.15, timeout = 0.03, throttle = 0.03, crash = 0.01, out_of_memory = 0.01 }}
duplicate_rate = 0.01
"""


def test_random_run_with_sinks_matches_truth(lab_store: LabStore) -> None:
    run = lab_store(
        scenario(
            RANDOM.format(events=3000),
            function="concurrency = 10",
            destinations='on_failure = "sqs:orders-capture-failures"\ndlq = "sqs:orders-capture-dlq"\n'
            'on_success = "sqs:orders-capture-done"',
        ),
        seed=7,
        modules=MODULES,
    )
    outcomes = {e["outcome"] for e in run.truth["events"]}
    assert {"succeeded", "succeeded_after_retry", "dead_lettered"} <= outcomes
    assert any(e["duplicates"] for e in run.truth["events"])
    assert any(a["outcome"] == "throttled" for e in run.truth["events"] for a in e["attempts"])
    assert_matches_truth(run)


def test_random_run_without_sinks_matches_truth(lab_store: LabStore) -> None:
    run = lab_store(
        scenario(
            RANDOM.format(events=3000), source="maximum_retry_attempts = 1", function="concurrency = 10"
        ),
        seed=8,
        modules=MODULES,
        settings={FUNCTION: {"maximum_retry_attempts": 1}},
    )
    assert sum(e["outcome"] == "dropped" for e in run.truth["events"]) > 10
    assert_matches_truth(run)


def test_build_is_repeatable(lab_store: LabStore) -> None:
    run = lab_store(SCENARIOS / "async-retries.toml", modules=MODULES)
    before = run.rows("SELECT * FROM async_events ORDER BY event_id")
    asynchronous.build(run.con)
    assert run.rows("SELECT * FROM async_events ORDER BY event_id") == before
