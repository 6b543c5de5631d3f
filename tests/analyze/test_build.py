"""`tracekit.analyze.build`: the analysis generation in the store, its views, staleness, business keys.

The lab is the oracle: samples/scenarios/async-retries.toml runs one event that succeeds, one that
times out twice and then succeeds, and one that fails every attempt and lands in the DLQ and the
on-failure destination. Expected event ids, request ids and outcomes come from its truth.json;
expected keys come from the scenario's payloads (order_id 4710, 4711, 4712, sent at 0 s, 5 s, 9 s).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.analyze.conftest import SCENARIOS, LabAnalysis, LabStore
from tracekit import jsonio
from tracekit.analyze.build import analyze, ensure_current, is_stale, stale_reason
from tracekit.analyze.keys import (
    Config,
    ConfigError,
    FunctionConfig,
    create_function_settings,
    load_config,
    parse_path,
    with_business_key,
)
from tracekit.analyze.lookup import parse_since, split_key_option
from tracekit.collect.ingest import ingest_paths
from tracekit.errors import TracekitError
from tracekit.lab.run import run_scenario
from tracekit.store import Store
from tracekit.store.catalog import Generation
from tracekit.store.query import run_read_only
from tracekit.store.schema import ANALYSIS_SCHEMAS

ASYNC_RETRIES = SCENARIOS / "async-retries.toml"
FUNCTION = "orders-notify"
START = dt.datetime(2026, 11, 22, 9, 0, 0)
# The scenario's payloads by the second they were sent.
ORDER_AT = {0: "4710", 5: "4711", 9: "4712"}
DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us"): "TIMESTAMP",
}


def rows(store: Store, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    return store.query(sql, params)


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def sent_at(event: dict[str, Any]) -> int:
    """The whole second after the scenario's start at which the event's first attempt started."""
    return int((when(event["attempts"][0]["start"]) - START).total_seconds())


def ingest_run(store: Store, scenario: Path, out: Path, seed: int) -> dict[str, Any]:
    run_scenario(scenario, out, seed=seed)
    inputs = [out / d for d in ("logs", "destinations", "dlq") if (out / d).is_dir()]
    report = ingest_paths(store, inputs, log_group=f"/aws/lambda/{FUNCTION}")
    assert report.counts["quarantined"] == 0
    truth: dict[str, Any] = jsonio.loads((out / "truth.json").read_bytes())
    return truth


@pytest.fixture
def retries(lab_store: LabStore) -> LabAnalysis:
    """async-retries ingested; no analysis yet (analyze() runs the modules itself)."""
    return lab_store(ASYNC_RETRIES, modules=())


# ---------------------------------------------------------------------------- the tables agree with truth


def test_analyze_rebuilds_every_async_lifecycle_as_truth_has_it(retries: LabAnalysis) -> None:
    report = analyze(retries.store, Config())
    truth = retries.truth_events()

    events = {e["event_id"]: e for e in rows(retries.store, "SELECT * FROM events")}
    assert set(events) == set(truth)
    for event_id, expected in truth.items():
        visible = LabAnalysis.visible(expected["attempts"])
        event = events[event_id]
        assert (event["source"], event["function_name"]) == ("async", FUNCTION)
        assert event["outcome"] == expected["outcome"]
        assert event["attempts"] == len(visible)
        assert event["retries"] == len(visible) - 1
        assert event["deliveries"] == expected["deliveries"]
        assert event["duplicates"] == expected["duplicates"]
        attempts = rows(
            retries.store,
            "SELECT attempt, request_id, outcome, start_time FROM attempts "
            "WHERE event_id = ? ORDER BY attempt",
            [event_id],
        )
        assert [a["attempt"] for a in attempts] == list(range(1, len(visible) + 1))
        assert [a["request_id"] for a in attempts] == [a["request_id"] for a in visible]
        assert [a["outcome"] for a in attempts] == [a["outcome"] for a in visible]
        assert [a["start_time"] for a in attempts] == [when(a["start"]) for a in visible]

    # By hand from the scenario: one event per outcome, 1 + 3 + 3 attempts, async only, no batches.
    assert report.outcomes == {"async": {"dead_lettered": 1, "succeeded": 1, "succeeded_after_retry": 1}}
    assert report.rows == {"events": 3, "attempts": 7, "batches": 0}
    assert rows(retries.store, "SELECT count(*) AS n FROM batches") == [{"n": 0}]


def test_the_dead_lettered_event_names_the_dlq_message_and_the_failure_record(retries: LabAnalysis) -> None:
    analyze(retries.store, Config())
    [dead] = [e for e in retries.truth["events"] if e["outcome"] == "dead_lettered"]
    [event] = rows(retries.store, "SELECT * FROM events WHERE event_id = ?", [dead["event_id"]])
    # The DLQ message and the RetriesExhausted record are the ones whose request id is the event's.
    [letter] = rows(
        retries.store, "SELECT message_id FROM dead_letters WHERE request_id = ?", [dead["event_id"]]
    )
    [record] = rows(
        retries.store,
        "SELECT record_id FROM destination_records WHERE request_id = ? AND condition = 'RetriesExhausted'",
        [dead["event_id"]],
    )
    assert event["dead_letter_message_id"] == letter["message_id"]
    assert event["destination_record_id"] == record["record_id"]
    assert event["evidence"] == "dead_letter,destination_record,logs"


# ---------------------------------------------------------------------------- the generation on disk


def test_a_generation_is_three_parquet_files_named_by_current_json(retries: LabAnalysis) -> None:
    store = retries.store
    report = analyze(store, Config())
    current = jsonio.loads((store.root / "analysis" / "current.json").read_bytes())
    assert current["generation"] == report.generation == 1
    assert current["ingest_batches"] == store.ingest_batches() == report.ingest_batches
    assert current["ingest_batches"]  # the lab run's logs, destinations and DLQ were committed
    directory = store.root / "analysis" / "00000001"
    assert sorted(p.name for p in directory.iterdir()) == [
        "attempts.parquet",
        "batches.parquet",
        "events.parquet",
    ]
    for table, schema in ANALYSIS_SCHEMAS.items():
        written = pq.read_schema(directory / f"{table}.parquet")
        assert written.names == schema.names
        assert [written.field(n).type for n in schema.names] == [f.type for f in schema]
    assert pq.read_metadata(directory / "events.parquet").num_rows == 3

    second = analyze(store, Config())
    assert second.generation == 2
    assert [p.name for p in (store.root / "analysis").iterdir() if p.is_dir()] == ["00000002"]
    assert jsonio.loads((store.root / "analysis" / "current.json").read_bytes())["generation"] == 2
    assert rows(store, "SELECT count(*) AS n FROM events") == [{"n": 3}]


def test_views_exist_and_are_typed_before_the_first_analysis(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "empty", create=True)
    con = store.connect()
    try:
        for table, schema in ANALYSIS_SCHEMAS.items():
            described = con.execute(f"DESCRIBE {table}").fetchall()
            assert [(r[0], r[1]) for r in described] == [(f.name, DUCKDB_TYPES[f.type]) for f in schema]
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    finally:
        con.close()


def test_tracekit_sql_and_the_persistent_catalog_read_the_analysis(retries: LabAnalysis) -> None:
    analyze(retries.store, Config())
    columns, result = run_read_only(
        retries.store, "SELECT outcome, count(*) AS n FROM events GROUP BY outcome ORDER BY outcome"
    )
    assert columns == ["outcome", "n"]
    assert result == [("dead_lettered", 1), ("succeeded", 1), ("succeeded_after_retry", 1)]
    catalog = duckdb.connect(str(retries.store.root / "catalog.duckdb"), read_only=True)
    try:
        assert catalog.execute("SELECT count(*) FROM attempts").fetchone() == (7,)
    finally:
        catalog.close()


def test_a_failure_mid_build_leaves_the_previous_generation_visible(
    retries: LabAnalysis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = retries.store
    analyze(store, Config())
    before = (store.root / "analysis" / "current.json").read_bytes()
    real_copy = Generation.copy

    def copy_then_fail(self: Generation, con: duckdb.DuckDBPyConnection, table: str, select: str) -> int:
        if table == "batches":  # events and attempts of the new generation are on disk by now
            assert (self.directory / "events.parquet").exists()
            raise duckdb.IOException("disk full")
        return real_copy(self, con, table, select)

    monkeypatch.setattr(Generation, "copy", copy_then_fail)
    with pytest.raises(TracekitError, match="previous analysis stays visible"):
        analyze(store, Config())
    assert (store.root / "analysis" / "current.json").read_bytes() == before
    assert [p.name for p in (store.root / "analysis").iterdir() if p.is_dir()] == ["00000001"]
    assert rows(store, "SELECT count(*) AS n FROM events") == [{"n": 3}]


def test_a_generation_left_by_a_crashed_build_is_invisible_and_cleaned_up(retries: LabAnalysis) -> None:
    store = retries.store
    analyze(store, Config())
    crashed = store.root / "analysis" / "00000007"
    crashed.mkdir()
    (crashed / "events.parquet").write_bytes(b"half a file")
    assert rows(store, "SELECT count(*) AS n FROM events") == [{"n": 3}]
    report = analyze(store, Config())
    assert report.generation == 2  # numbered after what was current, once the leftover is gone
    assert not crashed.exists()


def test_analyze_takes_the_store_write_lock(retries: LabAnalysis) -> None:
    holder = Store.open(retries.store.root)
    with holder.writing():
        with pytest.raises(TracekitError, match="being written by another"):
            analyze(Store.open(retries.store.root), Config())


# ---------------------------------------------------------------------------- staleness


def test_staleness_follows_the_committed_ingest_batches(retries: LabAnalysis, tmp_path: Path) -> None:
    store = retries.store
    assert stale_reason(store) == "no analysis yet"
    analyze(store, Config())
    assert not is_stale(store)

    built_from = set(store.ingest_batches())
    second = ingest_run(store, ASYNC_RETRIES, tmp_path / "second", seed=2)
    added = len(set(store.ingest_batches()) - built_from)
    assert added > 0
    assert is_stale(store)
    reason = f"{added} new ingest batch{'es' if added != 1 else ''} since the last analysis"
    assert stale_reason(store) == reason

    announced: list[str] = []
    assert ensure_current(store, Config(), announced.append) == reason
    assert announced == [reason]
    assert not is_stale(store)
    ids = {r["event_id"] for r in rows(store, "SELECT event_id FROM events")}
    assert ids == set(retries.truth_events()) | {e["event_id"] for e in second["events"]}

    # The same files again add no rows and no batch with files: nothing to rebuild.
    ingest_run(store, ASYNC_RETRIES, tmp_path / "second", seed=2)
    assert not is_stale(store)
    assert ensure_current(store, Config()) is None


def test_another_tracekit_toml_makes_the_analysis_stale(retries: LabAnalysis, tmp_path: Path) -> None:
    keyed = write_config(tmp_path / "keyed.toml", f'[functions.{FUNCTION}]\nkey = "$.order_id"\n')
    analyze(retries.store, keyed)
    assert not is_stale(retries.store, keyed)
    assert not is_stale(retries.store)  # without a config only the ingest batches count
    # No tracekit.toml where the command runs: use the analysis as built, keys included.
    assert not is_stale(retries.store, Config())
    other = write_config(tmp_path / "other.toml", f"[functions.{FUNCTION}]\nmaximum_retry_attempts = 1\n")
    assert stale_reason(retries.store, other) == "business keys or settings changed since the last analysis"


# ---------------------------------------------------------------------------- business keys and settings


def write_config(path: Path, text: str) -> Config:
    path.write_text(text)
    return load_config(path)


def test_business_keys_come_from_the_configured_path(retries: LabAnalysis, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "tracekit.toml",
        f'[functions.{FUNCTION}]\nkey = ["$.missing", "$.order_id"]\n',
    )
    analyze(retries.store, config)
    keys = {r["event_id"]: r["business_key"] for r in rows(retries.store, "SELECT * FROM events")}
    assert keys == {e["event_id"]: ORDER_AT[sent_at(e)] for e in retries.truth["events"]}


def test_the_star_table_gives_every_other_function_a_key(retries: LabAnalysis, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "tracekit.toml",
        '[functions."*"]\nkey = "$.email"\n[functions.some-other-function]\nkey = "$.order_id"\n',
    )
    analyze(retries.store, config)
    keys = sorted(r["business_key"] for r in rows(retries.store, "SELECT business_key FROM events"))
    assert keys == ["a@example.com", "b@example.com", "c@invalid"]


def test_without_a_key_path_business_keys_are_null(retries: LabAnalysis) -> None:
    analyze(retries.store, Config())
    assert rows(retries.store, "SELECT count(*) AS n FROM events WHERE business_key IS NOT NULL") == [
        {"n": 0}
    ]


def test_settings_from_tracekit_toml_reach_the_source_modules(lab_store: LabStore, tmp_path: Path) -> None:
    # A failing event, no retries configured and nowhere to go: Lambda drops it after one attempt.
    # Only the configured maximum_retry_attempts = 0 tells the analyzer that no retry is coming.
    lab = lab_store(
        """
name = "no-retries"
start = "2026-11-22T09:00:00Z"
stop = 900
[function]
name = "orders-notify"
handler = "{samples}/orders_notify.py:handler"
[source]
type = "async"
maximum_retry_attempts = 0
[[events]]
payload = { order_id = 1, email = "x@invalid" }
""",
        modules=(),
    )
    [truth] = lab.truth["events"]
    assert truth["outcome"] == "dropped"
    config = write_config(tmp_path / "tracekit.toml", f"[functions.{FUNCTION}]\nmaximum_retry_attempts = 0\n")
    analyze(lab.store, config)
    [event] = rows(lab.store, "SELECT outcome, uncertain FROM events")
    assert event == {"outcome": "dropped", "uncertain": False}


def test_function_settings_rows_are_text_per_function(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "tracekit.toml",
        '[functions.a]\nkey = "$.id"\nmaximum_retry_attempts = 1\nreport_batch_item_failures = true\n'
        "[functions.b]\nretry_delays_s = [2, 4]\n"
        '[functions."*"]\nmaximum_retry_attempts = 2\n',
    )
    con = duckdb.connect()
    try:
        create_function_settings(con, config)
        assert con.execute("SELECT * FROM function_settings ORDER BY ALL").fetchall() == [
            ("a", "maximum_retry_attempts", "1"),
            ("a", "report_batch_item_failures", "true"),
            ("b", "retry_delays_s", "[2,4]"),
        ]
    finally:
        con.close()


def key_of(payload: str | None, source: str, path: str) -> str | None:
    config = Config(functions={"f": FunctionConfig(keys=(path,))})
    con = duckdb.connect()
    try:
        relation = (
            "SELECT 'f' AS function_name, ?::VARCHAR AS source, ?::VARCHAR AS payload, NULL AS business_key"
        )
        row = con.execute(
            f"SELECT business_key FROM ({with_business_key(relation, config)})", [source, payload]
        )
        result = row.fetchone()
        return None if result is None else result[0]
    finally:
        con.close()


@pytest.mark.parametrize(
    ("payload", "source", "path", "expected"),
    [
        ('{"order": {"lines": [{"sku": "S-1"}, {"sku": "S-2"}]}}', "async", "$.order.lines[1].sku", "S-2"),
        ('{"order id": 7}', "async", '$["order id"]', "7"),
        ('{"id": {"deep": true}}', "async", "$.id", '{"deep":true}'),
        ('{"id": null, "x": 1}', "async", "$.id", None),
        ("not json at all", "sqs", "$.id", None),
        (None, "async", "$.id", None),
        # An SQS record: the path reads the message body.
        ('{"messageId": "m-1", "body": "{\\"orderId\\": \\"A-9\\"}"}', "sqs", "$.orderId", "A-9"),
        # An SNS notification delivered through SQS: the path reads the notification's Message.
        (
            '{"Type": "Notification", "MessageId": "n", "Message": "{\\"orderId\\": 12}"}',
            "sqs",
            "$.orderId",
            "12",
        ),
        # A Kinesis record: base64 of {"order_id": 99}.
        ('{"kinesis": {"data": "eyJvcmRlcl9pZCI6IDk5fQ=="}}', "kinesis", "$.order_id", "99"),
        # A DynamoDB record: the new image, with its attribute values unwrapped.
        ('{"dynamodb": {"NewImage": {"id": {"S": "o-5"}, "n": {"N": "5"}}}}', "dynamodb", "$.id", "o-5"),
        ('{"dynamodb": {"Keys": {"id": {"S": "o-6"}}}}', "dynamodb", "$.id", "o-6"),
        ('{"id": {"N": "41"}}', "dynamodb", "$.id", "41"),
    ],
)
def test_a_key_path_reads_what_the_producer_sent(
    payload: str | None, source: str, path: str, expected: str | None
) -> None:
    assert key_of(payload, source, path) == expected


@pytest.mark.parametrize("path", ["order_id", "$.", "$..a", "$.a[*]", "$[x]", "$.a b"])
def test_paths_outside_the_subset_are_refused(path: str) -> None:
    with pytest.raises(ConfigError):
        parse_path(path)


def test_paths_in_the_subset_parse_to_steps() -> None:
    assert parse_path("$.a.b[0].c") == ("a", "b", 0, "c")
    assert parse_path("$['x y'][2]") == ("x y", 2)
    assert parse_path("$") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[functions.f\nkey = 1", "cannot read config"),
        ("[functions.f]\nkey = 5\n", "must be a path or a list of paths"),
        ('[functions.f]\nkey = "orderId"\n', r"functions.f.key 'orderId': a key path starts with \$"),
        ('functions = "x"\n', "must be a table"),
    ],
)
def test_a_bad_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tracekit.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_config_is_read_from_the_working_directory_when_present(tmp_path: Path) -> None:
    assert load_config(cwd=tmp_path) == Config()
    (tmp_path / "tracekit.toml").write_text('[functions.f]\nkey = "$.id"\n')
    assert load_config(cwd=tmp_path).functions == {"f": FunctionConfig(keys=("$.id",))}
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


# ---------------------------------------------------------------------------- --since and --key


def test_since_takes_iso_times_and_relative_spans() -> None:
    now = dt.datetime(2026, 11, 22, 12, 0, 0)
    assert parse_since("6h", now) == dt.datetime(2026, 11, 22, 6, 0, 0)
    assert parse_since("30m", now) == dt.datetime(2026, 11, 22, 11, 30, 0)
    assert parse_since("2d", now) == dt.datetime(2026, 11, 20, 12, 0, 0)
    assert parse_since("1w", now) == dt.datetime(2026, 11, 15, 12, 0, 0)
    assert parse_since("2026-11-22T09:00:05Z") == dt.datetime(2026, 11, 22, 9, 0, 5)
    assert parse_since("2026-11-22T10:00:05+01:00") == dt.datetime(2026, 11, 22, 9, 0, 5)
    assert parse_since("2026-11-22") == dt.datetime(2026, 11, 22)
    with pytest.raises(TracekitError, match="cannot read the time"):
        parse_since("yesterday")


def test_the_key_option_is_a_value_a_path_or_both() -> None:
    assert split_key_option("4711") == (None, "4711")
    assert split_key_option("$.order_id") == ("$.order_id", None)
    assert split_key_option("$.order_id=4711") == ("$.order_id", "4711")
    assert split_key_option("$.note=a=b") == ("$.note", "a=b")
    with pytest.raises(ConfigError):
        split_key_option("$.a[x]=1")


# ---------------------------------------------------------------------------- several sources in one store


def test_one_store_with_async_sqs_and_stream_events_gives_each_its_lifecycle(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    truth_events: dict[str, dict[str, Any]] = {}
    truth_batches: list[dict[str, Any]] = []
    # Different seeds: the same seed would give two scenarios the same request ids and messageIds.
    for scenario, seed in (("async-retries", 3), ("sqs-redrive", 5), ("dynamodb-partial-batch", 7)):
        path = SCENARIOS / f"{scenario}.toml"
        function = tomllib.loads(path.read_text())["function"]["name"]
        out = tmp_path / scenario
        run_scenario(path, out, seed=seed)
        inputs = [out / d for d in ("logs", "destinations", "dlq") if (out / d).is_dir()]
        ingest_paths(store, inputs, log_group=f"/aws/lambda/{function}")
        truth = jsonio.loads((out / "truth.json").read_bytes())
        truth_events.update({e["event_id"]: e for e in truth["events"]})
        truth_batches += truth["batches"]
    try:
        report = analyze(store, Config())
        events = {e["event_id"]: e for e in rows(store, "SELECT * FROM events")}
        assert set(events) == set(truth_events)
        for event_id, expected in truth_events.items():
            visible = LabAnalysis.visible(expected["attempts"])
            assert (events[event_id]["source"], events[event_id]["outcome"]) == (
                expected["source"],
                expected["outcome"],
            ), event_id
            attempts = rows(
                store, "SELECT request_id FROM attempts WHERE event_id = ? ORDER BY attempt", [event_id]
            )
            assert [a["request_id"] for a in attempts] == [a["request_id"] for a in visible], event_id
        assert set(report.outcomes) == {e["source"] for e in truth_events.values()}
        # Every invoked batch, named by its request id, under the batch it was split from.
        request_of = {b["batch_id"]: b["request_id"] for b in truth_batches}
        expected_batches = {
            (b["request_id"], request_of.get(b["parent_batch_id"])) for b in truth_batches if b["request_id"]
        }
        assert {(b["batch_id"], b["parent_batch_id"]) for b in rows(store, "SELECT * FROM batches")} == (
            expected_batches
        )
    finally:
        store.release()


CLIENT_RETRY = """
name = "client-retry"
start = "2026-11-22T09:00:00Z"
[function]
name = "orders-notify"
handler = "{samples}/orders_notify.py:handler"
[source]
type = "async"
[destinations]
on_success = "sqs:orders-notify-success"
[[events]]
payload = { order_id = 4711, email = "a@example.com" }
[[events]]
at = 5
payload = { order_id = 4712, email = "b@example.com" }
[[events]]
at = 10
payload = { order_id = 4711, email = "a@example.com" }
"""


def test_the_same_business_key_under_another_event_id_is_a_client_retry(
    lab_store: LabStore, tmp_path: Path
) -> None:
    run = lab_store(CLIENT_RETRY, modules=())
    config = write_config(tmp_path / "tracekit.toml", '[functions.orders-notify]\nkey = "$.order_id"\n')
    analyze(run.store, config)
    got = {r["event_id"]: r for r in rows(run.store, "SELECT * FROM events")}
    first, other, again = (e["event_id"] for e in run.truth["events"])  # in the order they were sent
    assert (got[again]["duplicate_kind"], got[again]["duplicate_of"]) == ("client_retry", first)
    assert got[again]["duplicates"] == 0  # its own event id was delivered once
    for event_id in (first, other):
        assert (got[event_id]["duplicate_kind"], got[event_id]["duplicate_of"]) == (None, None)
