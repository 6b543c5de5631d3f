"""The Kinesis / DynamoDB Streams event source mapping model against lambda-semantics.md §2.

Every scenario really runs a handler (tests/lab/handlers/stream_poison.py or the shipped
samples/handlers/orders_stream.py) and the expectations are worked out by hand from the documented
semantics and the serverless walk-through (../shared/seeds/001), not read off the model's output.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import LabRun, RunLab

from tracekit import jsonio
from tracekit.collect.ingest import ingest_paths
from tracekit.lab.runtime import LambdaFunction
from tracekit.lab.scenario import EventSpec, ScenarioError, load_scenario
from tracekit.lab.world import World
from tracekit.store import Store

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "samples" / "scenarios"
POISON = (Path(__file__).resolve().parent / "handlers" / "stream_poison.py").as_posix()


RunStreams = Callable[..., LabRun]


@pytest.fixture
def run(run_lab: RunLab) -> RunStreams:
    """`run(toml_text or path, name="scenario")`: a scenario run with seed 3 by conftest's run_lab."""

    def run_streams(scenario: Path | str, name: str = "scenario") -> LabRun:
        return run_lab(scenario, seed=3, name=name)

    return run_streams


def scenario(
    source: str,
    events: str,
    *,
    handler: str = "handler",
    destination: str = 'on_failure = "sqs:stream-failures"',
    function: str = "",
) -> str:
    return f"""
name = "streams-test"
start = "2026-11-22T09:00:00Z"
[function]
name = "stream-fn"
handler = "{POISON}:{handler}"
timeout_s = 10
{function}
[source]
{source}
[destinations]
{destination}
{events}
"""


def record(n: int, *, poison: bool = False, at: float = 0, key: str = "k", extra: str = "") -> str:
    return f"""
[[events]]
at = {at}
key = "{key}"
payload = {{ n = {n}, poison = {str(poison).lower()} }}
{extra}
"""


def sequence(event: dict[str, Any]) -> str:
    """The sequence number in a Kinesis event id `shardId-...:sequenceNumber`."""
    return str(event["event_id"].split(":")[1])


# ---------------------------------------------------------------------------- the walk-through


def test_walkthrough_runs_the_batches_in_the_documented_order(run: RunStreams) -> None:
    result = run(SCENARIOS / "kinesis-bisect-walkthrough.toml")
    position = {sequence(e): i for i, e in enumerate(result.events, 1)}
    shape = [
        (position[b["first_sequence_number"]], position[b["last_sequence_number"]], b["outcome"])
        for b in result.batches
    ]
    # 10 fails -> 5 + 5; the first 5 fails -> 2 + 3; 2 ok; 3 fails -> 1 + 2; the bad record fails and
    # is retried twice; then the 2 and the other 5 succeed.
    assert shape == [
        (1, 10, "error"),
        (1, 5, "error"),
        (1, 2, "success"),
        (3, 5, "error"),
        (3, 3, "error"),
        (3, 3, "error"),
        (3, 3, "error"),
        (4, 5, "success"),
        (6, 10, "success"),
    ]
    ids = [b["batch_id"] for b in result.batches]
    parents = [b["parent_batch_id"] for b in result.batches]
    assert parents[0] is None
    assert parents[1] == parents[8] == ids[0]  # the two halves of 10
    assert parents[2] == parents[3] == ids[1]  # 2 + 3 from the first 5
    assert parents[4] == parents[7] == ids[3]  # 1 + 2 from the 3
    assert len(set(b["request_id"] for b in result.batches)) == 9  # every attempt its own invocation


def test_walkthrough_processes_the_first_two_records_three_times(run: RunStreams) -> None:
    events = run(SCENARIOS / "kinesis-bisect-walkthrough.toml").events
    for first_two in events[:2]:
        assert first_two["deliveries"] == 3
        assert [a["outcome"] for a in first_two["attempts"]] == ["error", "error", "success"]
        assert first_two["outcome"] == "succeeded_after_retry"
    bad = events[2]
    assert bad["deliveries"] == 6  # in the 10, the 5, the 3, then alone three times
    assert bad["outcome"] == "sent_to_destination"
    assert [e["deliveries"] for e in events[3:5]] == [4, 4]  # the 10, the 5, the 3, the 2
    assert [e["deliveries"] for e in events[5:]] == [2] * 5  # the 10, then the other 5
    assert all(e["duplicates"] == 0 for e in events)  # each record succeeded exactly once


def test_walkthrough_sends_the_bad_record_to_sns_before_the_rest_succeeds(run: RunStreams) -> None:
    result = run(SCENARIOS / "kinesis-bisect-walkthrough.toml")
    events = result.events
    [failure] = result.destination_records("orders-stream-failures")
    info = failure["KinesisBatchInfo"]
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3  # 1 + MaximumRetryAttempts 2
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == sequence(events[2])
    assert info["batchSize"] == 1
    assert info["shardId"] == "shardId-000000000000"
    assert info["streamArn"].endswith(":stream/orders-stream")
    last_bad_attempt = events[2]["attempts"][-1]
    assert failure["requestContext"]["requestId"] == last_bad_attempt["request_id"]
    assert last_bad_attempt["end"] <= failure["timestamp"] <= events[3]["attempts"][-1]["start"]


# ---------------------------------------------------------------------------- retries and age


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_exhausted_retries_report_one_plus_retries_invocations(run: RunStreams, retries: int) -> None:
    source = f'type = "kinesis"\nbatch_size = 1\nmaximum_retry_attempts = {retries}'
    result = run(scenario(source, record(1, poison=True)))
    [event] = result.events
    assert [a["outcome"] for a in event["attempts"]] == ["error"] * (1 + retries)
    assert len({a["request_id"] for a in event["attempts"]}) == 1 + retries
    [failure] = result.destination_records("stream-failures")
    assert failure["requestContext"]["approximateInvokeCount"] == 1 + retries
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert "requestPayload" not in failure  # stream records carry batch metadata, not the records
    assert event["outcome"] == "sent_to_destination"


def test_throttles_are_retried_without_counting_as_retries(run: RunStreams) -> None:
    source = 'type = "kinesis"\nbatch_size = 1\nmaximum_retry_attempts = 1'
    faults = 'faults = ["throttle", "throttle", "error", "error"]'
    result = run(scenario(source, record(1, extra=faults)))
    [event] = result.events
    assert [a["outcome"] for a in event["attempts"]] == ["throttled", "throttled", "error", "error"]
    [failure] = result.destination_records("stream-failures")
    assert failure["requestContext"]["approximateInvokeCount"] == 2  # the two that reached the function


def test_records_older_than_the_maximum_age_are_discarded_without_invoking(run: RunStreams) -> None:
    # One record written 80 s before the mapping started reading, five fresh ones (the b08 recording).
    source = 'type = "kinesis"\nbatch_size = 10\nmaximum_record_age_s = 60\nmaximum_retry_attempts = 0'
    events = record(0, at=-80) + "".join(record(n) for n in range(1, 6))
    result = run(scenario(source, events))
    old, *fresh = result.events
    assert old["attempts"] == [] and old["deliveries"] == 0
    assert old["outcome"] == "sent_to_destination"
    [failure] = result.destination_records("stream-failures")
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    assert failure["requestContext"]["approximateInvokeCount"] == 1
    assert "responseContext" not in failure
    assert failure["KinesisBatchInfo"]["batchSize"] == 1
    assert failure["KinesisBatchInfo"]["startSequenceNumber"] == sequence(old)
    [batch] = result.batches
    assert batch["size"] == 5 and batch["first_sequence_number"] == sequence(fresh[0])
    assert [e["outcome"] for e in fresh] == ["succeeded"] * 5


def test_record_age_ends_infinite_retries(run: RunStreams) -> None:
    # Retries every 10 s (plus a few ms of function time): attempts start at about 0, 10, 20, 30, 40
    # and 50 s; the next would start after 60 s, past the maximum age.
    source = 'type = "kinesis"\nbatch_size = 1\nmaximum_record_age_s = 60\nretry_delays_s = [10]'
    result = run(scenario(source, record(1, poison=True)))
    [event] = result.events
    assert len(event["attempts"]) == 6
    [failure] = result.destination_records("stream-failures")
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    assert failure["requestContext"]["approximateInvokeCount"] == 6
    assert "responseContext" not in failure


def test_without_a_destination_an_exhausted_record_is_dropped(run: RunStreams) -> None:
    source = 'type = "kinesis"\nbatch_size = 1\nmaximum_retry_attempts = 0'
    result = run(scenario(source, record(1, poison=True), destination=""))
    assert [e["outcome"] for e in result.events] == ["dropped"]
    assert not (result.out / "destinations").exists()


def test_split_resets_retries_off_carries_the_invocation_count_into_the_halves(run: RunStreams) -> None:
    text = (SCENARIOS / "kinesis-bisect-walkthrough.toml").read_text(encoding="utf-8")
    text = text.replace("split_resets_retries = true", "split_resets_retries = false")
    text = text.replace('"../handlers/', f'"{(SCENARIOS.parent / "handlers").as_posix()}/')
    result = run(text)
    # Splits still do not count as retries, so the same nine invocations happen; the bad record's
    # count now includes the batches of 10, 5 and 3 it failed in before its own three attempts.
    assert [b["size"] for b in result.batches] == [10, 5, 2, 3, 1, 1, 1, 2, 5]
    [failure] = result.destination_records("orders-stream-failures")
    assert failure["requestContext"]["approximateInvokeCount"] == 6


# ---------------------------------------------------------------------------- ReportBatchItemFailures


def rbif_events() -> str:
    return "".join(record(n, poison=n == 3) for n in range(1, 6))


def test_partial_response_checkpoints_and_reprocesses_later_records(run: RunStreams) -> None:
    source = 'type = "kinesis"\nbatch_size = 5\nreport_batch_item_failures = true\nmaximum_retry_attempts = 1'
    result = run(scenario(source, rbif_events(), handler="partial"))
    events = result.events
    # Batch 1-5 reports 3: retried from 3, so 4 and 5 (already processed) are processed again.
    assert [(b["size"], b["outcome"]) for b in result.batches] == [
        (5, "partial_failure"),
        (3, "partial_failure"),
    ]
    assert result.batches[1]["first_sequence_number"] == sequence(events[2])
    assert [e["deliveries"] for e in events] == [1, 1, 2, 2, 2]
    assert [e["duplicates"] for e in events] == [0, 0, 0, 1, 1]
    assert [e["outcome"] for e in events] == [
        "succeeded",
        "succeeded",
        "sent_to_destination",
        "succeeded",
        "succeeded",
    ]
    [failure] = result.destination_records("stream-failures")
    assert failure["responseContext"]["functionError"] is None  # the function never raised
    assert "functionError" in failure["responseContext"]
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    info = failure["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        sequence(events[2]),
        sequence(events[4]),
        3,
    )


def test_partial_response_with_bisect_splits_at_the_returned_sequence_number(run: RunStreams) -> None:
    source = (
        'type = "kinesis"\nbatch_size = 5\nreport_batch_item_failures = true\n'
        "bisect_batch_on_function_error = true\nmaximum_retry_attempts = 1"
    )
    result = run(scenario(source, rbif_events(), handler="partial"))
    first, split, retry = result.batches
    assert (first["size"], split["size"], retry["size"]) == (5, 3, 3)
    assert split["parent_batch_id"] == first["batch_id"]  # split at record 3, not a retry
    assert retry["parent_batch_id"] == first["batch_id"]  # the same remaining records again
    [failure] = result.destination_records("stream-failures")
    assert failure["requestContext"]["approximateInvokeCount"] == 2  # the split's own two invocations


def test_a_malformed_partial_response_fails_the_whole_batch(run: RunStreams) -> None:
    source = 'type = "kinesis"\nbatch_size = 5\nreport_batch_item_failures = true\nmaximum_retry_attempts = 0'
    result = run(scenario(source, rbif_events(), handler="partial_blank"))
    assert [e["outcome"] for e in result.events] == ["sent_to_destination"] * 5
    [failure] = result.destination_records("stream-failures")
    assert failure["KinesisBatchInfo"]["batchSize"] == 5
    assert failure["responseContext"]["functionError"] is None


def test_a_response_that_is_not_an_object_reports_no_failure(run: RunStreams) -> None:
    # §2 names only empty/null responses as success and says nothing of a string; the stream model's
    # choice (unlike SQS's "invalid JSON") is to read it as no report, so nothing is retried.
    source = 'type = "kinesis"\nbatch_size = 5\nreport_batch_item_failures = true\nmaximum_retry_attempts = 0'
    result = run(scenario(source, rbif_events(), handler="not_an_object"))
    assert [e["outcome"] for e in result.events] == ["succeeded"] * 5
    assert [b["outcome"] for b in result.batches] == ["success"]


def test_without_report_batch_item_failures_the_response_is_ignored(run: RunStreams) -> None:
    source = 'type = "kinesis"\nbatch_size = 5'
    result = run(scenario(source, rbif_events(), handler="partial"))
    assert [e["outcome"] for e in result.events] == ["succeeded"] * 5
    assert [b["outcome"] for b in result.batches] == ["success"]


# ---------------------------------------------------------------------------- ordering, shards, records


def test_parallelization_keeps_order_per_partition_key_without_blocking_other_keys(run: RunStreams) -> None:
    events = record(0, poison=True, key="k0") + "".join(
        record(n, key=f"k{n % 5}", at=0.01 * n) for n in range(1, 10)
    )
    base = 'type = "kinesis"\nbatch_size = 1\nmaximum_retry_attempts = 2\nretry_delays_s = [5]\n'
    blocked = run(scenario(base, events, function="concurrency = 10"), name="pf1")
    parallel = run(
        scenario(base + "parallelization_factor = 10", events, function="concurrency = 10"),
        name="pf10",
    )
    for result in (blocked, parallel):
        [failure] = result.destination_records("stream-failures")
        gave_up = failure["timestamp"]
        first_success = [
            min(a["end"] for a in e["attempts"] if a["outcome"] == "success") for e in result.events[1:]
        ]
        by_key: dict[str, list[str]] = {}
        for n, finished in enumerate(first_success, 1):
            by_key.setdefault(f"k{n % 5}", []).append(finished)
        assert all(times == sorted(times) for times in by_key.values())  # in order within a key
        if result is blocked:
            assert all(t > gave_up for t in first_success)  # one in-order reader: the shard waits
        else:
            assert any(t < gave_up for t in first_success)  # other keys went ahead
            k0_later = [t for n, t in enumerate(first_success, 1) if n % 5 == 0]
            assert all(t > gave_up for t in k0_later)  # k0's own later record waited for it


def test_kinesis_records_spread_over_shards_with_increasing_sequence_numbers(tmp_path: Path) -> None:
    path = tmp_path / "shards.toml"
    text = scenario('type = "kinesis"\nshards = 4\nbatch_size = 50', record(0), function="concurrency = 4")
    path.write_text(text, encoding="utf-8")
    loaded = load_scenario(path)
    world = World(loaded.start_ms, 5, loaded.function.region, loaded.function.account)
    from tracekit.lab.models.streams import StreamModel

    model = StreamModel(loaded, world, LambdaFunction(loaded.function, world))
    for n in range(200):
        model.submit(EventSpec(payload={"n": n}, key=f"customer-{n}"), loaded.start_ms + n)
    world.clock.run()
    shards = {r.shard_id for r in world.stream_records}
    assert shards == {f"shardId-00000000000{i}" for i in range(4)}
    for shard in shards:
        numbers = [r.sequence_number for r in world.stream_records if r.shard_id == shard]
        assert all(len(s) == 56 and s.isdigit() for s in numbers)
        assert [int(s) for s in numbers] == sorted(int(s) for s in numbers)
    same_key = [r.shard_id for r in world.stream_records if r.partition_key == "customer-7"]
    assert len(same_key) == 1
    assert all(e.outcome == "succeeded" for e in world.events.values())
    assert len(world.events) == 200


def test_a_duplicate_delivery_happens_without_any_error(run: RunStreams) -> None:
    source = 'type = "kinesis"\nbatch_size = 10'
    result = run(scenario(source, record(1, extra="duplicate = true") + record(2)))
    first, second = result.events
    assert [a["outcome"] for a in first["attempts"]] == ["success", "success"]
    assert (first["deliveries"], first["duplicates"], first["outcome"]) == (2, 1, "succeeded")
    assert (second["deliveries"], second["duplicates"]) == (1, 0)


def test_s3_on_failure_object_holds_the_lambda_event_as_payload(run: RunStreams) -> None:
    source = 'type = "kinesis"\nstream = "clicks"\nbatch_size = 1\nmaximum_retry_attempts = 1'
    result = run(scenario(source, record(7, poison=True), destination='on_failure = "s3:failed-clicks"'))
    [(key, document)] = result.s3_objects("failed-clicks").items()
    [event] = result.events
    shard, seq = event["event_id"].split(":")
    assert re.fullmatch(
        rf"aws/lambda/[0-9a-f-]{{36}}/{shard}/2026/11/22/2026-11-22T09\.00\.\d\d-[0-9a-f-]{{36}}", key
    )
    [entry] = document["payload"]["Records"]
    assert entry["eventID"] == f"{shard}:{seq}"
    assert entry["eventSource"] == "aws:kinesis" and entry["eventName"] == "aws:kinesis:record"
    assert entry["eventSourceARN"] == "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
    assert entry["kinesis"]["partitionKey"] == "k"
    assert jsonio.loads(base64.b64decode(entry["kinesis"]["data"])) == {"n": 7, "poison": True}
    assert document["KinesisBatchInfo"]["startSequenceNumber"] == seq
    assert document["requestContext"]["approximateInvokeCount"] == 2


# ---------------------------------------------------------------------------- DynamoDB


def test_dynamodb_partial_batch_scenario(run: RunStreams) -> None:
    result = run(SCENARIOS / "dynamodb-partial-batch.toml")
    events = result.events
    assert all(re.fullmatch(r"[0-9a-f]{32}", e["event_id"]) for e in events)
    [(_, failure)] = result.s3_objects("orders-stream-failures-archive").items()
    records = failure["payload"]["Records"]
    # 7001, 7002, 7003 are new; 7001 changes; 7004 is new; later 7002 changes and 7004 is deleted.
    names = [r["eventName"] for r in records]
    assert names == ["INSERT", "MODIFY", "INSERT"]  # the failing tail: 7003, 7001 again, 7004
    assert [r["eventID"] for r in records] == [e["event_id"] for e in events[2:5]]
    assert records[1]["dynamodb"]["OldImage"]["status"] == {"S": "placed"}
    assert records[1]["dynamodb"]["NewImage"]["status"] == {"S": "shipped"}
    assert records[0]["dynamodb"]["Keys"] == {"order_id": {"N": "7003"}}
    info = failure["DDBStreamBatchInfo"]
    assert info["batchSize"] == 3
    assert info["startSequenceNumber"] == records[0]["dynamodb"]["SequenceNumber"]
    assert info["endSequenceNumber"] == records[2]["dynamodb"]["SequenceNumber"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["approximateArrivalOfFirstRecord"])
    assert failure["responseContext"]["functionError"] is None
    assert failure["requestContext"]["approximateInvokeCount"] == 3  # 1 + MaximumRetryAttempts 2
    assert [e["deliveries"] for e in events] == [1, 1, 3, 3, 3, 2, 2]
    assert [e["duplicates"] for e in events] == [0, 0, 0, 2, 2, 0, 0]
    assert [e["outcome"] for e in events[5:]] == ["succeeded_after_retry"] * 2


def test_dynamodb_records_follow_the_item_history(run: RunStreams) -> None:
    # Item n=1 is written, changed, then deleted; the deletion fails so its record reaches S3.
    source = (
        'type = "dynamodb"\nstream = "t"\nkey_attribute = "n"\nbatch_size = 1\nmaximum_retry_attempts = 0'
    )
    events = (
        record(1)
        + '[[events]]\nat = 1\npayload = { n = 1, poison = false, note = "changed" }\n'
        + '[[events]]\nat = 2\nkey = "1"\npayload = {}\nfault = "error"\n'
    )
    result = run(scenario(source, events, destination='on_failure = "s3:b"'))
    assert [e["outcome"] for e in result.events] == ["succeeded", "succeeded", "sent_to_destination"]
    [(_, failure)] = result.s3_objects("b").items()
    [entry] = failure["payload"]["Records"]
    assert entry["eventName"] == "REMOVE"
    assert entry["eventSource"] == "aws:dynamodb"
    assert entry["eventSourceARN"].startswith("arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/")
    change = entry["dynamodb"]
    assert change["Keys"] == {"n": {"N": "1"}}
    assert "NewImage" not in change
    assert change["OldImage"] == {"n": {"N": "1"}, "poison": {"BOOL": False}, "note": {"S": "changed"}}
    assert change["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert failure["responseContext"]["functionError"] == "Unhandled"


# ---------------------------------------------------------------------------- artifacts and settings


def test_artifacts_ingest_without_quarantine_and_keep_the_sequence_range(
    run: RunStreams, tmp_path: Path
) -> None:
    walkthrough = run(SCENARIOS / "kinesis-bisect-walkthrough.toml", name="kinesis")
    dynamodb = run(SCENARIOS / "dynamodb-partial-batch.toml", name="dynamodb")
    with Store.open(tmp_path / "store", create=True) as store:
        ingest_paths(store, [walkthrough.out / "logs"], log_group="/aws/lambda/orders-stream-processor")
        ingest_paths(store, [dynamodb.out / "logs"], log_group="/aws/lambda/orders-table-projector")
        ingest_paths(store, [walkthrough.out / "destinations", dynamodb.out / "destinations"])
    store = Store.open(tmp_path / "store")
    assert store.query("SELECT count(*) AS n FROM quarantine")[0]["n"] == 0
    assert store.query("SELECT count(*) AS n FROM invocations")[0]["n"] == 9 + 5
    rows = store.query(
        "SELECT kind, shard_id, start_sequence_number AS first, end_sequence_number AS last, batch_size, "
        "approximate_invoke_count AS invokes FROM destination_records ORDER BY kind"
    )
    bad = walkthrough.events[2]
    tail = dynamodb.truth["batches"][-3]  # the last retry of the failing tail 7003..7004
    assert rows == [
        {
            "kind": "dynamodb",
            "shard_id": tail["shard_id"],
            "first": tail["first_sequence_number"],
            "last": tail["last_sequence_number"],
            "batch_size": 3,
            "invokes": 3,
        },
        {
            "kind": "kinesis",
            "shard_id": "shardId-000000000000",
            "first": sequence(bad),
            "last": sequence(bad),
            "batch_size": 1,
            "invokes": 3,
        },
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("maximum_record_age_s = 30", "either -1 (forever) or between 60 and 604800"),
        ("maximum_retry_attempts = 10001", "maximum_retry_attempts"),
        ("parallelization_factor = 11", "parallelization_factor"),
        ("batch_size = 0", "batch_size"),
        ("retention_h = 12", "retention_h"),
        ("bisect_on_error = true", "unknown kinesis setting 'bisect_on_error'"),
        ("key_attribute = 'id'", "unknown kinesis setting 'key_attribute'"),
    ],
)
def test_settings_out_of_range_are_scenario_errors(run: RunStreams, setting: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)):
        run(scenario(f'type = "kinesis"\n{setting}', record(1)))


def test_stream_mappings_have_no_dlq_or_on_success_destination(run: RunStreams) -> None:
    for destination in ('dlq = "sqs:x"', 'on_success = "sqs:x"', 'on_failure = "eventbridge:x"'):
        with pytest.raises(ScenarioError):
            run(scenario('type = "dynamodb"', record(1), destination=destination))
