"""End to end: `python -m tracekit` in a subprocess over hand-made artifacts in the shapes AWS publishes."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

CliRun = Callable[..., subprocess.CompletedProcess[str]]
REPO = Path(__file__).resolve().parents[2]

TABLES = ("log_events", "invocations", "destination_records", "dead_letters", "quarantine")
COUNT_KEYS = ("log_events", "invocations", "destination_records", "dead_letters", "quarantined")


def to_json(value: object, **kwargs: object) -> str:
    # Inputs are written with the standard library, not with tracekit.jsonio, the code under test.
    return json.dumps(value, **kwargs)  # noqa: TID251


# -- the incident, by hand ---------------------------------------------------------------------------------

LOG_GROUP = "/aws/lambda/orders-gz"
FUNCTION = "orders-gz"
STREAM = "2026/11/22/[$LATEST]0a1b2c3d4e5f60718293a4b5c6d7e8f9"
RID_1 = "a1111111-1111-4111-8111-111111111111"
RID_2 = "b2222222-2222-4222-8222-222222222222"
RID_3 = "c3333333-3333-4333-8333-333333333333"
T0 = 1795338000000  # 2026-11-22T09:00:00Z

ERROR_RECORD = (
    "[ERROR] ValueError: bad order 4711\n"
    "Traceback (most recent call last):\n"
    '\u00a0\u00a0File "/var/task/app.py", line 12, in handler\n'
    '\u00a0\u00a0\u00a0\u00a0raise ValueError(f"bad order {order_id}")'
)


def report(rid: str, duration: str, billed: int, used: int, init: str | None = None) -> str:
    line = (
        f"REPORT RequestId: {rid}\tDuration: {duration} ms\tBilled Duration: {billed} ms\t"
        f"Memory Size: 256 MB\tMax Memory Used: {used} MB\t"
    )
    if init:
        line += f"Init Duration: {init} ms\t"
    return line + "\n"


# (ms after T0, message)
EVENTS: list[tuple[int, str]] = [
    # invocation 1: cold start, success
    (0, f"START RequestId: {RID_1} Version: $LATEST\n"),
    (15, f"[INFO]\t2026-11-22T09:00:00.015Z\t{RID_1}\treserved stock for order 4710\n"),
    (40, f"END RequestId: {RID_1}\n"),
    (40, report(RID_1, "40.52", 41, 71, init="301.77")),
    # invocation 2: unhandled ValueError
    (60000, f"START RequestId: {RID_2} Version: $LATEST\n"),
    (60020, ERROR_RECORD),
    (60025, f"END RequestId: {RID_2}\n"),
    (60025, report(RID_2, "25.10", 26, 72)),
    # invocation 3: success
    (120000, f"START RequestId: {RID_3} Version: $LATEST\n"),
    (120011, f"END RequestId: {RID_3}\n"),
    (120011, report(RID_3, "11.03", 12, 72)),
]

DLQ_MESSAGE_ID = "d1e2f3a4-0000-4b5c-9d8e-7f6a5b4c3d2e"
DLQ_BODY = to_json(
    {"detail-type": "OrderPlaced", "source": "com.example.orders", "detail": {"orderId": 4711}}
)
DEST_MESSAGE_ID = "e5f6a7b8-1111-4c2d-8e9f-0a1b2c3d4e5f"
DEST_REQUEST_ID = "f0f0f0f0-2222-4333-8444-555555555555"


def log_event_line(i: int, offset: int, message: str) -> str:
    ts = T0 + offset
    return to_json(
        {
            "logStreamName": STREAM,
            "timestamp": ts,
            "message": message,
            "ingestionTime": ts + 1200,
            "eventId": f"{ts:020d}{i:036d}",
        },
        separators=(",", ":"),
    )


def receive_output(messages: list[dict[str, object]]) -> str:
    return to_json({"Messages": messages}, indent=4) + "\n"


def write_incident(root: Path) -> Path:
    """logs/ (gzip NDJSON), dlq/ (Lambda DLQ receive-message output), destinations/ (on-failure record)."""
    (root / "logs").mkdir(parents=True)
    (root / "dlq").mkdir()
    (root / "destinations").mkdir()
    ndjson = "\n".join(log_event_line(i, off, msg) for i, (off, msg) in enumerate(EVENTS)) + "\n"
    (root / "logs" / "orders-gz.filter-log-events.ndjson.gz").write_bytes(gzip.compress(ndjson.encode()))

    dlq_message = {
        "MessageId": DLQ_MESSAGE_ID,
        "ReceiptHandle": "AQEBdlqhandle0001==",
        "MD5OfBody": "0" * 32,
        "Body": DLQ_BODY,
        "Attributes": {
            "SenderId": "AROAEXAMPLEROLE00001:awslambda_111_20261122090100000",
            "ApproximateFirstReceiveTimestamp": str(T0 + 70000),
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(T0 + 60100),
        },
        "MD5OfMessageAttributes": "1" * 32,
        "MessageAttributes": {
            "RequestID": {"StringValue": RID_2, "DataType": "String"},
            "ErrorCode": {"StringValue": "200", "DataType": "Number"},
            "ErrorMessage": {"StringValue": "bad order 4711", "DataType": "String"},
        },
    }
    (root / "dlq" / "orders-gz-dlq.receive-message.json").write_text(receive_output([dlq_message]))

    record = {
        "version": "1.0",
        "timestamp": "2026-11-22T09:01:00.125Z",
        "requestContext": {
            "requestId": DEST_REQUEST_ID,
            "functionArn": f"arn:aws:lambda:eu-west-1:111122223333:function:{FUNCTION}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"orderId": 4712},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "bad order 4712", "errorType": "ValueError"},
    }
    dest_message = {
        "MessageId": DEST_MESSAGE_ID,
        "ReceiptHandle": "AQEBdesthandle0001==",
        "MD5OfBody": "2" * 32,
        "Body": to_json(record),
        "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(T0 + 61000)},
    }
    dest_file = root / "destinations" / "orders-gz-failures.receive-message.json"
    dest_file.write_text(receive_output([dest_message]))
    return root


EXPECTED = {
    "log_events": len(EVENTS),
    "invocations": 3,
    "destination_records": 1,
    "dead_letters": 1,
    "quarantined": 0,
}


def sql(cli: CliRun, store: Path, query: str) -> list[dict[str, object]]:
    result = cli("sql", query, "--store", store, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def table_counts(cli: CliRun, store: Path) -> dict[str, int]:
    query = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in TABLES)
    return {r["t"]: r["n"] for r in sql(cli, store, query)}


def ingest_json(cli: CliRun, *args: str | Path) -> tuple[dict[str, int], str]:
    result = cli("ingest", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout), result.stderr


# -- tests ---------------------------------------------------------------------------------------------------


@pytest.fixture
def incident(tmp_path: Path) -> Path:
    return write_incident(tmp_path / "incident")


def test_ingest_directory_counts_exactly_what_was_built(
    tracekit_cli: CliRun, incident: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    counts, stderr = ingest_json(tracekit_cli, incident, "--store", store, "--log-group", LOG_GROUP)
    assert counts == EXPECTED
    assert "warning" not in stderr.lower()

    events = sql(tracekit_cli, store, "SELECT message, log_group, log_stream FROM log_events")
    assert sorted(e["message"] for e in events) == sorted(m for _, m in EVENTS)
    assert {e["log_group"] for e in events} == {LOG_GROUP}
    assert {e["log_stream"] for e in events} == {STREAM}

    invocations = sql(
        tracekit_cli,
        store,
        "SELECT request_id, function_name, status, error_type, error_message, duration_ms, "
        "billed_duration_ms, memory_size_mb, max_memory_used_mb, init_duration_ms, cold_start "
        "FROM invocations ORDER BY start_time",
    )
    assert invocations == [
        {"request_id": RID_1, "function_name": FUNCTION, "status": "success", "error_type": None,
         "error_message": None, "duration_ms": 40.52, "billed_duration_ms": 41.0, "memory_size_mb": 256,
         "max_memory_used_mb": 71, "init_duration_ms": 301.77, "cold_start": True},
        {"request_id": RID_2, "function_name": FUNCTION, "status": "error", "error_type": "ValueError",
         "error_message": "bad order 4711", "duration_ms": 25.10, "billed_duration_ms": 26.0,
         "memory_size_mb": 256, "max_memory_used_mb": 72, "init_duration_ms": None, "cold_start": False},
        {"request_id": RID_3, "function_name": FUNCTION, "status": "success", "error_type": None,
         "error_message": None, "duration_ms": 11.03, "billed_duration_ms": 12.0, "memory_size_mb": 256,
         "max_memory_used_mb": 72, "init_duration_ms": None, "cold_start": False},
    ]  # fmt: skip

    [dead] = sql(
        tracekit_cli,
        store,
        "SELECT message_id, body, kind, request_id, error_code, error_message, approximate_receive_count "
        "FROM dead_letters",
    )
    assert dead == {
        "message_id": DLQ_MESSAGE_ID,
        "body": DLQ_BODY,
        "kind": "async_dlq",
        "request_id": RID_2,
        "error_code": "200",
        "error_message": "bad order 4711",
        "approximate_receive_count": 1,
    }

    [dest] = sql(
        tracekit_cli,
        store,
        "SELECT request_id, condition, function_name, approximate_invoke_count, envelope, envelope_id, "
        "function_error FROM destination_records",
    )
    assert dest == {
        "request_id": DEST_REQUEST_ID,
        "condition": "RetriesExhausted",
        "function_name": FUNCTION,
        "approximate_invoke_count": 3,
        "envelope": "sqs",
        "envelope_id": DEST_MESSAGE_ID,
        "function_error": "Unhandled",
    }


def test_ingesting_the_same_directory_twice_adds_nothing(
    tracekit_cli: CliRun, incident: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    first, _ = ingest_json(tracekit_cli, incident, "--store", store, "--log-group", LOG_GROUP)
    assert first == EXPECTED
    before = table_counts(tracekit_cli, store)

    second, _ = ingest_json(tracekit_cli, incident, "--store", store, "--log-group", LOG_GROUP)
    assert second == dict.fromkeys(COUNT_KEYS, 0)
    assert table_counts(tracekit_cli, store) == before


def test_reingesting_one_log_file_adds_nothing(tracekit_cli: CliRun, incident: Path, tmp_path: Path) -> None:
    """The gzip NDJSON log file alone, twice: the fast NDJSON path must also be idempotent."""
    store = tmp_path / "store"
    log_file = incident / "logs" / "orders-gz.filter-log-events.ndjson.gz"
    first, _ = ingest_json(tracekit_cli, log_file, "--store", store)
    assert (first["log_events"], first["invocations"]) == (len(EVENTS), 3)
    second, _ = ingest_json(tracekit_cli, log_file, "--store", store)
    assert second == dict.fromkeys(COUNT_KEYS, 0)


BROKEN_LINE = '{"logStreamName":"' + STREAM + '","timestamp":17953380'


@pytest.mark.parametrize("broken_at", [3, len(EVENTS) + 1], ids=["middle", "last-without-newline"])
def test_one_broken_line_is_quarantined_with_its_line_number(
    tracekit_cli: CliRun, tmp_path: Path, broken_at: int
) -> None:
    lines = [log_event_line(i, off, msg) for i, (off, msg) in enumerate(EVENTS)]
    lines.insert(broken_at - 1, BROKEN_LINE)
    text = "\n".join(lines) + ("\n" if broken_at <= len(EVENTS) else "")
    path = tmp_path / "cut.filter-log-events.ndjson"
    path.write_text(text)
    store = tmp_path / "store"

    result = tracekit_cli("ingest", path, "--store", store, "--format", "json")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["quarantined"] == 1
    assert counts["log_events"] == len(EVENTS)
    warning = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warning) == 1
    assert re.search(r"\b1\b", warning[0]) and "quarantine" in warning[0]
    assert "Traceback" not in result.stderr

    rows = sql(tracekit_cli, store, "SELECT source, position, raw, reason FROM quarantine")
    assert len(rows) == 1
    assert rows[0]["position"] == f"line {broken_at}"
    assert rows[0]["raw"] == BROKEN_LINE
    assert rows[0]["source"].endswith("cut.filter-log-events.ndjson")
    assert rows[0]["reason"]


# -- demo ----------------------------------------------------------------------------------------------------

SAMPLES = REPO / "samples"


def _samples_present() -> bool:
    return SAMPLES.is_dir() and any(p.is_file() and p.name != "README.md" for p in SAMPLES.rglob("*"))


needs_samples = pytest.mark.skipif(
    not _samples_present(), reason=f"{SAMPLES} holds no sample artifacts yet (being written separately)"
)


@needs_samples
def test_demo_ingests_the_samples_and_shows_every_table(tracekit_cli: CliRun, tmp_path: Path) -> None:
    store = tmp_path / "demo-store"
    result = tracekit_cli("demo", "--store", store)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for table in TABLES:
        assert table in out or table.replace("_", " ") in out.lower(), f"demo output does not mention {table}"
    for key in ("log_events", "invocations", "destination_records", "dead_letters"):
        match = re.search(rf"\b{key}\b\W+(\d+)", out)
        assert match, f"no count for {key} in demo output"
        assert int(match.group(1)) > 0, f"{key} count is 0"
    assert str(store) in result.stderr
    assert (store / "tracekit-store.json").is_file()


@needs_samples
def test_demo_ingests_only_artifacts_not_the_samples_readme(tracekit_cli: CliRun, tmp_path: Path) -> None:
    """samples/README.md documents the incident; it is not a Lambda log and must not become log events."""
    store = tmp_path / "demo-store"
    result = tracekit_cli("demo", "--store", store, "--format", "json")
    assert result.returncode == 0, result.stderr
    query = " UNION ALL ".join(f"SELECT source FROM {t}" for t in ("log_events", "quarantine"))
    sources = {r["source"] for r in sql(tracekit_cli, store, f"SELECT DISTINCT source FROM ({query})")}
    assert not [s for s in sources if Path(str(s)).name == "README.md"]


def test_sample_statuses_and_envelopes_stay_in_the_contract_vocabulary(tmp_path: Path) -> None:
    """Every status, envelope and dead-letter kind the samples produce is one the README lists."""
    from tracekit.collect.ingest import ingest_demo
    from tracekit.model import DeadLetterKind, Envelope, Status
    from tracekit.store import Store

    samples = Path(__file__).resolve().parents[2] / "samples"
    with Store.open(tmp_path / "store", create=True) as store:
        ingest_demo(store, samples)
        statuses = {r["status"] for r in store.query("SELECT DISTINCT status FROM invocations")}
        envelopes = {r["envelope"] for r in store.query("SELECT DISTINCT envelope FROM destination_records")}
        kinds = {r["kind"] for r in store.query("SELECT DISTINCT kind FROM dead_letters")}
    assert statuses == {"success", "error", "timeout"} and statuses <= {s.value for s in Status}
    assert envelopes == {"sqs", "sns"} and envelopes <= {e.value for e in Envelope}
    assert kinds == {"async_dlq", "source_dlq"} and kinds <= {k.value for k in DeadLetterKind}
