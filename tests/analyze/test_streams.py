"""Kinesis and DynamoDB Streams lifecycles and batch trees (tracekit.analyze.streams) against the lab.

Expected values come from truth.json (minus throttled attempts, which never reach a log) or are
derived by hand from the scenario and lambda-semantics.md §2, never from the module's output.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.analyze.conftest import SCENARIOS, LabAnalysis, LabStore
from tracekit.analyze import streams

MODULES = ("items", "streams")
WALKTHROUGH = SCENARIOS / "kinesis-bisect-walkthrough.toml"
DYNAMODB = SCENARIOS / "dynamodb-partial-batch.toml"


# ------------------------------------------------------------------------------------ comparisons


def seen_outcome(event: dict[str, Any]) -> str:
    """Truth's outcome as the logs can show it: a throttled first attempt leaves no trace, so a
    record whose first logged attempt succeeded reads as `succeeded`."""
    visible = LabAnalysis.visible(event["attempts"])
    if event["outcome"] in ("succeeded", "succeeded_after_retry"):
        return "succeeded" if visible[0]["outcome"] == "success" else "succeeded_after_retry"
    return str(event["outcome"])


def assert_lifecycles_match(run: LabAnalysis) -> dict[str, dict[str, Any]]:
    """Every record truth has that reached a log: same attempts (request ids, outcomes, order),
    outcome, duplicates and deliveries; no record truth doesn't have. Returns the events by id."""
    events = {r["event_id"]: r for r in run.rows("SELECT * FROM streams_events")}
    attempts: dict[str, list[dict[str, Any]]] = {}
    for row in run.rows("SELECT * FROM streams_attempts ORDER BY event_id, attempt"):
        attempts.setdefault(row["event_id"], []).append(row)
    unmatched = dict(events)
    for event in run.truth["events"]:
        visible = run.visible(event["attempts"])
        if not visible:
            assert event["event_id"] not in events or event["outcome"] == "sent_to_destination"
            unmatched.pop(event["event_id"], None)
            continue
        mine = unmatched.pop(event["event_id"])
        rows = attempts[event["event_id"]]
        where = event["event_id"]
        assert [(a["request_id"], a["outcome"]) for a in rows] == [
            (a["request_id"], a["outcome"]) for a in visible
        ], where
        assert [a["attempt"] for a in rows] == list(range(1, len(visible) + 1)), where
        assert all(a["batch_id"] == a["request_id"] for a in rows), where
        assert mine["attempts"] == len(visible), where
        assert mine["retries"] == len(visible) - 1, where
        assert mine["deliveries"] == sum(a["outcome"] != "init_error" for a in visible), where
        assert mine["outcome"] == seen_outcome(event), where
        assert mine["duplicates"] == event["duplicates"], where
        assert mine["source"] == event["source"] and mine["function_name"] == event["function"]
    assert not unmatched, f"records truth doesn't have: {sorted(unmatched)[:5]}"
    return events


def truth_depth(batch: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> int:
    depth = 0
    while batch["parent_batch_id"] is not None:
        batch = by_id[batch["parent_batch_id"]]
        depth += 1
    return depth


def assert_batches_match(run: LabAnalysis, *, shards: bool = True) -> list[dict[str, Any]]:
    """Every invoked batch (throttled ones never reach a log): same tree (parent, depth), range, size
    and outcome, in the same order on each shard. Returns the batches in start order."""
    by_id = {b["batch_id"]: b for b in run.truth["batches"]}
    request_of = {b["batch_id"]: b["request_id"] for b in run.truth["batches"]}
    invoked = [b for b in run.truth["batches"] if b["request_id"] is not None]
    mine = run.rows("SELECT * FROM streams_batches ORDER BY start_time, batch_id")
    assert sorted(m["batch_id"] for m in mine) == sorted(b["request_id"] for b in invoked)
    by_request = {m["batch_id"]: m for m in mine}
    for batch in invoked:
        got = by_request[batch["request_id"]]
        parent = request_of[batch["parent_batch_id"]] if batch["parent_batch_id"] else None
        assert got["parent_batch_id"] == parent, batch
        assert got["depth"] == truth_depth(batch, by_id), batch
        assert got["request_id"] == batch["request_id"]
        assert (got["first_sequence_number"], got["last_sequence_number"], got["size"]) == (
            batch["first_sequence_number"],
            batch["last_sequence_number"],
            batch["size"],
        ), batch
        assert got["outcome"] == batch["outcome"], batch
        if shards:
            assert got["shard_id"] == batch["shard_id"], batch
    key = "shard_id" if shards else "function_name"
    for shard in {b[key] for b in mine}:
        order = [b["request_id"] for b in invoked if not shards or b["shard_id"] == shard]
        assert [m["batch_id"] for m in mine if m[key] == shard] == order
    return mine


def recorder_copy(path: Path, handler: str | None = None) -> str:
    """The scenario's text with the recorder switched on (and optionally another handler)."""
    text = path.read_text().replace("../handlers/", "{samples}/")
    if handler is not None:
        text = text.replace('handler = "{samples}/orders_stream.py:handler"', f'handler = "{handler}"')
    if "recorder = true" not in text:
        text = text.replace("[function]\n", "[function]\nrecorder = true\n", 1)
    return text


# ------------------------------------------------------------------------------------ walk-through


def assert_walkthrough(run: LabAnalysis) -> None:
    events = assert_lifecycles_match(run)
    batches = assert_batches_match(run)
    # By hand from the scenario: 10 → 5 + 5; 5 → 2 + 3; 3 → 1 + 2; the bad record fails, is retried
    # twice; then the 2 and the other 5 succeed.
    assert [b["size"] for b in batches] == [10, 5, 2, 3, 1, 1, 1, 2, 5]
    assert [b["depth"] for b in batches] == [0, 1, 2, 2, 3, 3, 3, 3, 1]
    ids = [b["batch_id"] for b in batches]
    parents = [None, ids[0], ids[1], ids[1], ids[3], ids[3], ids[3], ids[3], ids[0]]
    assert [b["parent_batch_id"] for b in batches] == parents
    ok, failed = "success", "error"
    assert [b["outcome"] for b in batches] == [failed, failed, ok, failed, failed, failed, failed, ok, ok]
    ordered = sorted(events.values(), key=lambda e: e["event_id"].split(":")[1].zfill(80))
    assert [e["attempts"] for e in ordered] == [3, 3, 6, 4, 4, 2, 2, 2, 2, 2]
    bad = ordered[2]
    assert bad["outcome"] == "sent_to_destination"
    (record_id,) = run.con.execute(
        "SELECT record_id FROM destination_records WHERE condition = 'RetryAttemptsExhausted'"
    ).fetchone() or (None,)
    assert bad["destination_record_id"] == record_id
    assert bad["final_error_type"] == "ValueError"
    assert [e["outcome"] for e in ordered if e is not bad] == ["succeeded_after_retry"] * 9
    assert all(e["duplicates"] == 0 and e["duplicate_kind"] is None for e in ordered)
    assert not any(e["uncertain"] for e in ordered)
    assert all("logs" in e["evidence"].split(",") for e in ordered)
    assert "destination_record" in bad["evidence"].split(",")


def test_walkthrough_with_the_recorder(lab_store: LabStore) -> None:
    run = lab_store(recorder_copy(WALKTHROUGH), modules=MODULES)
    assert_walkthrough(run)
    evidence = {r[0] for r in run.con.execute("SELECT evidence FROM streams_events").fetchall()}
    assert evidence == {"logs,recorder", "destination_record,logs,recorder"}


def test_walkthrough_with_a_handler_that_logs_its_event(lab_store: LabStore) -> None:
    text = WALKTHROUGH.read_text().replace(
        "../handlers/orders_stream.py:handler", "{handlers}/streams_logged.py:handler"
    )
    run = lab_store(text, modules=MODULES)
    assert_walkthrough(run)
    evidence = {r[0] for r in run.con.execute("SELECT evidence FROM streams_events").fetchall()}
    assert evidence == {"logged_event,logs", "destination_record,logged_event,logs"}
    # The Kinesis record as the handler received it: its data is the order.
    payloads = run.rows("SELECT payload FROM streams_events WHERE outcome = 'sent_to_destination'")
    assert payloads == [{"payload": None}]  # an SNS on-failure record carries no records


def test_walkthrough_without_item_evidence_names_only_the_failed_record(lab_store: LabStore) -> None:
    # The shipped scenario: no recorder, and the handler logs only free text. The on-failure record
    # (batchSize 1, approximateInvokeCount 3) is all that names a record.
    run = lab_store(WALKTHROUGH, modules=MODULES)
    (bad,) = [e for e in run.truth["events"] if e["outcome"] == "sent_to_destination"]
    events = run.rows("SELECT * FROM streams_events")
    assert [e["event_id"] for e in events] == [bad["event_id"]]
    (event,) = events
    assert event["outcome"] == "sent_to_destination"
    assert event["attempts"] == 3  # the record's approximateInvokeCount: the attempts after the last split
    assert event["evidence"] == "destination_record"
    assert event["uncertain"] is True
    assert "approximateInvokeCount" in event["uncertain_reason"]
    assert run.rows("SELECT * FROM streams_attempts") == []
    assert run.rows("SELECT * FROM streams_batches") == []


# ------------------------------------------------------------------------------------ DynamoDB


def test_dynamodb_partial_batch_with_the_recorder(lab_store: LabStore) -> None:
    run = lab_store(DYNAMODB, modules=MODULES)
    events = assert_lifecycles_match(run)
    batches = assert_batches_match(run, shards=False)
    # By hand: 5 records, the 3rd reported; Lambda retries from it (3 records) twice, then gives up.
    # A later batch of 2 fails once and succeeds. Checkpoint retries are retries, not splits.
    assert [(b["size"], b["outcome"], b["depth"]) for b in batches] == [
        (5, "partial_failure", 0),
        (3, "partial_failure", 0),
        (3, "partial_failure", 0),
        (2, "error", 0),
        (2, "success", 0),
    ]
    assert [b["parent_batch_id"] for b in batches] == [None] * 5
    by_outcome = Counter((e["outcome"], e["duplicates"], e["duplicate_kind"]) for e in events.values())
    assert by_outcome == Counter(
        {
            ("succeeded", 0, None): 2,
            ("succeeded", 2, "batch_retry"): 2,  # after the checkpoint: applied again on both retries
            ("sent_to_destination", 0, None): 1,
            ("succeeded_after_retry", 0, None): 2,
        }
    )
    (lost,) = [e for e in events.values() if e["outcome"] == "sent_to_destination"]
    assert lost["attempts"] == 3
    assert lost["final_error_message"] == "Reported as failed in batchItemFailures"
    # The S3 on-failure record carries the records: the order that could not be applied.
    assert '"7003"' in lost["payload"]
    assert not any(e["uncertain"] for e in events.values())


def test_dynamodb_partial_batch_without_the_recorder_infers_the_checkpoint(lab_store: LabStore) -> None:
    # The handler logs its event but nobody logs its response: the partial failure shows only in
    # the 3-record tail that comes back.
    text = DYNAMODB.read_text().replace("recorder = true", "recorder = false")
    text = text.replace(
        "../handlers/orders_stream.py:partial_handler", "{handlers}/streams_partial.py:handler"
    )
    run = lab_store(text, modules=MODULES)
    events = assert_lifecycles_match(run)
    assert_batches_match(run, shards=False)
    guessed = {e["event_id"] for e in events.values() if e["uncertain"]}
    # The two records after the checkpoint: whether the response reported them too is a guess.
    assert guessed == {e["event_id"] for e in events.values() if e["duplicates"] == 2}
    assert len(guessed) == 2


# ------------------------------------------------------------------------------------ checkpoints


CHECKPOINT_BISECT = """
name = "kinesis-checkpoint-bisect"
start = "2026-11-22T09:00:00Z"

[function]
name = "ledger"
handler = "{handlers}/streams_partial.py:handler"
recorder = true

[source]
type = "kinesis"
batch_size = 8
maximum_batching_window_s = 1
report_batch_item_failures = true
bisect_batch_on_function_error = true
maximum_retry_attempts = 1

[destinations]
on_failure = "sqs:ledger-failures"

[[events]]
payload = { order_id = 1, amount = 1.0 }
[[events]]
payload = { order_id = 2, amount = 1.0 }
[[events]]
payload = { order_id = 3, amount = -1.0 }
[[events]]
payload = { order_id = 4, amount = 1.0 }
[[events]]
payload = { order_id = 5, amount = 1.0 }
[[events]]
payload = { order_id = 6, amount = -1.0 }
[[events]]
payload = { order_id = 7, amount = 1.0 }
[[events]]
payload = { order_id = 8, amount = 1.0 }

[[events]]
at = 60
payload = { order_id = 9, amount = 1.0, bad_response = true }
[[events]]
at = 60
payload = { order_id = 10, amount = 1.0 }
"""


def test_checkpoints_with_bisect_split_the_batch_at_the_lowest_reported_record(lab_store: LabStore) -> None:
    # A checkpoint split and a checkpoint retry cover the same records: only the mapping's setting
    # tells them apart when no function error ever showed a bisect.
    settings = {"ledger": {"bisect_batch_on_function_error": True}}
    run = lab_store(CHECKPOINT_BISECT, modules=MODULES, settings=settings)
    events = assert_lifecycles_match(run)
    batches = assert_batches_match(run)
    first = batches[0]
    # By hand (§2): records 3 and 6 reported; with bisect on, Lambda splits at record 3 and retries
    # only the records from there: a split of the first batch, one level deeper.
    assert (first["size"], first["outcome"]) == (8, "partial_failure")
    assert (batches[1]["size"], batches[1]["parent_batch_id"], batches[1]["depth"]) == (
        6,
        first["batch_id"],
        1,
    )
    # An invalid response (an empty itemIdentifier) fails the whole batch: retried whole, then given up.
    invalid = [b for b in batches if b["size"] == 2]
    assert [b["outcome"] for b in invalid] == ["partial_failure", "partial_failure"]
    assert invalid[1]["parent_batch_id"] == invalid[0]["parent_batch_id"] is None
    last_two = [e for e in events.values() if e["first_seen"] >= invalid[0]["start_time"]]
    assert {e["outcome"] for e in last_two} == {"sent_to_destination"}
    assert {
        a["error_message"]
        for a in run.rows(
            "SELECT error_message FROM streams_attempts WHERE batch_id = ?", [invalid[0]["batch_id"]]
        )
    } == {"The batchItemFailures response was invalid, so the whole batch failed"}


# ------------------------------------------------------------------------------------ dropped / in flight


NO_DESTINATION = """
name = "kinesis-no-destination"
start = "2026-11-22T09:00:00Z"
{stop}

[function]
name = "ledger"
handler = "{handlers}/streams_logged.py:handler"
recorder = true

[source]
type = "kinesis"
batch_size = 3
maximum_batching_window_s = 1
maximum_retry_attempts = {retries}

[[events]]
payload = { order_id = 1, amount = 1.0 }
[[events]]
payload = { order_id = 2, amount = -1.0 }
[[events]]
payload = { order_id = 3, amount = 1.0 }

[[events]]
at = 30
payload = { order_id = 4, amount = 1.0 }
"""


@pytest.mark.parametrize("known", [True, False])
def test_a_batch_out_of_retries_with_no_destination_is_dropped(lab_store: LabStore, known: bool) -> None:
    settings = {"ledger": {"maximum_retry_attempts": 2}} if known else None
    run = lab_store(
        NO_DESTINATION.replace("{stop}", "").replace("{retries}", "2"), modules=MODULES, settings=settings
    )
    events = assert_lifecycles_match(run)
    dropped = [e for e in events.values() if e["outcome"] == "dropped"]
    # By hand: the first batch (orders 1-3) fails 3 times (1 + 2 retries), the shard moves on to order 4.
    assert len(dropped) == 3 and all(e["attempts"] == 3 for e in dropped)
    if known:
        assert not any(e["uncertain"] for e in dropped)
    else:
        assert all(e["uncertain"] and "maximum_retry_attempts" in e["uncertain_reason"] for e in dropped)


@pytest.mark.parametrize("known", [True, False])
def test_a_batch_still_being_retried_is_in_flight(lab_store: LabStore, known: bool) -> None:
    settings = {"ledger": {"maximum_retry_attempts": -1}} if known else None
    text = NO_DESTINATION.replace("{stop}", "stop = 120").replace("{retries}", "-1")
    run = lab_store(text, modules=MODULES, settings=settings)
    events = assert_lifecycles_match(run)
    # By hand: infinite retries block the shard until the run stops; order 4 is never read.
    assert {e["outcome"] for e in events.values()} == {"in_flight"}
    assert len(events) == 3
    assert all(e["uncertain"] is not known for e in events.values())


# ------------------------------------------------------------------------------------ random


RANDOM = """
name = "kinesis-random"
start = "2026-11-22T09:00:00Z"

[function]
name = "orders-random"
handler = "{handlers}/streams_logged.py:handler"
recorder = true
timeout_s = 3
duration_ms = 20
per_item_ms = 1

[source]
type = "kinesis"
shards = 4
batch_size = 20
bisect_batch_on_function_error = true
maximum_retry_attempts = 2

[destinations]
on_failure = "sqs:orders-random-failures"

[random]
events = 3000
rate_per_s = 40
payload = { order_id = "{n}", amount = 1.0 }
faults = { error = 0.2, timeout = 0.02, throttle = 0.03, out_of_memory = 0.01 }
duplicate_rate = 0.01
keys = 64
"""

POISON = """
[[events]]
key = "poison-{n}"
at = {at}
payload = { order_id = "poison-{n}", amount = -1.0 }
fault = "{fault}"
fail_times = 50
"""


def test_a_random_kinesis_run_with_bisect_on_several_shards(lab_store: LabStore) -> None:
    poison = "".join(
        POISON.replace("{n}", str(n)).replace("{at}", str(10 + 15 * n)).replace("{fault}", fault)
        for n, fault in enumerate(["error", "error", "timeout", "error"])
    )
    run = lab_store(RANDOM + poison, seed=7, modules=MODULES)
    started = time.perf_counter()
    streams.build(run.con)  # again, to time it alone
    assert time.perf_counter() - started < 5
    assert len(run.truth["events"]) >= 3000
    events = assert_lifecycles_match(run)
    batches = assert_batches_match(run)
    assert len({b["shard_id"] for b in batches}) == 4
    assert max(b["depth"] for b in batches) >= 3
    outcomes = Counter(e["outcome"] for e in events.values())
    assert outcomes["sent_to_destination"] == 4
    assert outcomes["succeeded_after_retry"] > 100
    # Duplicates here come only from at-least-once re-reads after a success (a re-read batch is a new
    # original batch), never from a batch retry: nothing checkpoints.
    kinds = Counter(e["duplicate_kind"] for e in events.values() if e["duplicates"])
    assert set(kinds) == {"at_least_once"} and kinds["at_least_once"] > 5
    assert not any(e["uncertain"] for e in events.values())


def test_a_random_run_without_the_recorder_marks_what_it_cannot_see(lab_store: LabStore) -> None:
    # The handler logs its event, but a lab fault striking before the handler runs leaves an
    # invocation that names no records: its records' lifecycles can't all be rebuilt. Every record
    # the analysis gets wrong must say it is uncertain; the certain ones must be right.
    text = RANDOM.replace("recorder = true", "recorder = false").replace("events = 3000", "events = 1500")
    text = text.replace("error = 0.2, timeout = 0.02, throttle = 0.03, out_of_memory = 0.01", "error = 0.02")
    run = lab_store(text, seed=3, modules=MODULES)
    events = {r["event_id"]: r for r in run.rows("SELECT * FROM streams_events")}
    tries: dict[str, list[tuple[str, str]]] = {}
    for row in run.rows(
        "SELECT event_id, request_id, outcome FROM streams_attempts ORDER BY event_id, attempt"
    ):
        tries.setdefault(row["event_id"], []).append((row["request_id"], row["outcome"]))
    wrong = certain = 0
    for event in run.truth["events"]:
        visible = run.visible(event["attempts"])
        mine = events[event["event_id"]]
        right = (
            tries[event["event_id"]] == [(a["request_id"], a["outcome"]) for a in visible]
            and mine["outcome"] == seen_outcome(event)
            and mine["duplicates"] == event["duplicates"]
        )
        wrong += not right
        certain += not mine["uncertain"]
        assert right or mine["uncertain"], event["event_id"]
    assert wrong > 0 and certain > 0  # the run does hide attempts, and not everywhere


# ------------------------------------------------------------------------------------ by hand


def hand_built(con: duckdb.DuckDBPyConnection) -> None:
    """Tables the module reads, filled by hand: a DynamoDB batch of three records whose sequence
    numbers grow in value but not as text ('900' < '1000' < '1100'), failing twice."""
    con.execute(
        "CREATE TABLE invocations (request_id VARCHAR, attempt BIGINT, function_name VARCHAR, "
        "log_stream VARCHAR, start_time TIMESTAMP, end_time TIMESTAMP, duration_ms DOUBLE, status VARCHAR, "
        "error_type VARCHAR, error_message VARCHAR, cold_start BOOLEAN)"
    )
    t0 = datetime(2026, 1, 1, 9)
    for n, rid in enumerate(["r1", "r2"]):
        start = t0 + timedelta(seconds=10 * n)
        con.execute(
            "INSERT INTO invocations VALUES (?, 1, 'fn', 's', ?, ?, 100, 'error', 'KeyError', 'boom', false)",
            [rid, start, start + timedelta(milliseconds=100)],
        )
    con.execute(
        "CREATE TABLE items (request_id VARCHAR, log_stream VARCHAR, function_name VARCHAR, "
        "source VARCHAR, item_id VARCHAR, shard_id VARCHAR, sequence_number VARCHAR, "
        "receive_count INTEGER, position INTEGER, batch_size INTEGER, evidence VARCHAR)"
    )
    for rid in ("r1", "r2"):
        for position, seq in enumerate(["900", "1000", "1100"]):
            con.execute(
                "INSERT INTO items VALUES (?, 's', 'fn', 'dynamodb', ?, NULL, ?, NULL, ?, 3, 'recorder')",
                [rid, f"e{seq}", seq, position],
            )
    con.execute(
        "CREATE TABLE item_results (request_id VARCHAR, log_stream VARCHAR, result VARCHAR, "
        "error_type VARCHAR, failed_item_ids VARCHAR[], evidence VARCHAR)"
    )
    con.execute(
        "CREATE TABLE destination_records (record_id VARCHAR, kind VARCHAR, function_name VARCHAR, "
        "shard_id VARCHAR, source_arn VARCHAR, condition VARCHAR, request_id VARCHAR, "
        "approximate_invoke_count BIGINT, batch_size BIGINT, timestamp TIMESTAMP, payload VARCHAR, "
        "start_sequence_number VARCHAR, end_sequence_number VARCHAR, function_error VARCHAR)"
    )
    con.execute(
        "INSERT INTO destination_records VALUES ('d1', 'dynamodb', 'fn', 'shardId-1', 'arn', "
        "'RetryAttemptsExhausted', 'r2', 2, 3, ?, NULL, '900', '1100', 'Unhandled')",
        [t0 + timedelta(seconds=11)],
    )


def test_sequence_numbers_compare_by_value_not_as_text() -> None:
    con = duckdb.connect()
    hand_built(con)
    streams.build(con)
    events = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT event_id, outcome, attempts, destination_record_id FROM streams_events"
        ).fetchall()
    }
    assert events == {f"e{s}": ("sent_to_destination", 2, "d1") for s in ("900", "1000", "1100")}
    batches = con.execute(
        "SELECT batch_id, first_sequence_number, last_sequence_number, parent_batch_id, depth "
        "FROM streams_batches ORDER BY batch_id"
    ).fetchall()
    assert batches == [("r1", "900", "1100", None, 0), ("r2", "900", "1100", None, 0)]
