"""The command line through typer's CliRunner: help, one-line errors with exit code 2, output formats."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tracekit.cli import app
from tracekit.store import Store

COUNT_KEYS = {"log_events", "invocations", "destination_records", "dead_letters", "quarantined"}


def to_json(value: object, **kwargs: object) -> str:
    # Inputs are written with the standard library, not with tracekit.jsonio, the code under test.
    return json.dumps(value, **kwargs)  # noqa: TID251


# -- hand-made artifacts ------------------------------------------------------------------------------------

DLQ = [
    {
        "id": "7a1c2f00-0000-4e6b-8c1d-000000000001",
        "body": '{"orderId": 501, "sku": "SKU-9"}',
        "count": "2",
        "sent": 1795339869812,
    },
    {
        # A comma, quotes and a newline: CSV output has to quote this properly.
        "id": "7a1c2f00-0000-4e6b-8c1d-000000000002",
        "body": '{"orderId": 502,\n "note": "a, \\"b\\""}',
        "count": "7",
        "sent": 1795339870123,
    },
]
DEST_REQUEST_ID = "c0ffee00-1234-4abc-9def-0123456789ab"
STREAM = "2026/11/22/[$LATEST]feedfacefeedfacefeedfacefeedface"
LOG_REQUEST_ID = "1b2d3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5"
LOG_MESSAGES = [
    f"START RequestId: {LOG_REQUEST_ID} Version: $LATEST\n",
    f"END RequestId: {LOG_REQUEST_ID}\n",
    f"REPORT RequestId: {LOG_REQUEST_ID}\tDuration: 12.50 ms\tBilled Duration: 13 ms\t"
    "Memory Size: 128 MB\tMax Memory Used: 40 MB\t\n",
]
EXPECTED_COUNTS = {
    "log_events": len(LOG_MESSAGES),
    "invocations": 1,
    "destination_records": 1,
    "dead_letters": len(DLQ),
    "quarantined": 1,
}


def write_artifacts(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    receive = {
        "Messages": [
            {
                "MessageId": m["id"],
                "ReceiptHandle": "AQEB" + m["id"].replace("-", ""),
                "MD5OfBody": "0" * 32,
                "Body": m["body"],
                "Attributes": {
                    "ApproximateReceiveCount": m["count"],
                    "SentTimestamp": str(m["sent"]),
                    "ApproximateFirstReceiveTimestamp": str(m["sent"] + 40),
                },
            }
            for m in DLQ
        ]
    }
    (root / "orders-dlq.receive-message.json").write_text(to_json(receive, indent=4))
    record = {
        "version": "1.0",
        "timestamp": "2026-11-22T09:20:00.250Z",
        "requestContext": {
            "requestId": DEST_REQUEST_ID,
            "functionArn": "arn:aws:lambda:eu-west-1:111122223333:function:cli-test-fn:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"orderId": 503},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "boom", "errorType": "RuntimeError"},
    }
    (root / "on-failure-record.json").write_text(to_json(record, indent=2))
    lines = [
        to_json(
            {
                "logStreamName": STREAM,
                "timestamp": 1795338000000 + 10 * i,
                "message": message,
                "ingestionTime": 1795338001000 + 10 * i,
                "eventId": f"{1795338000000 + 10 * i:020d}{i:036d}",
            },
            separators=(",", ":"),
        )
        for i, message in enumerate(LOG_MESSAGES)
    ]
    (root / "worker.ndjson").write_text("\n".join(lines) + "\n")
    (root / "cut-off.json").write_text('{"Messages": [{"MessageId": "x", "Bo')
    return root


def stderr_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def one_error_line(result: Result) -> str:
    lines = stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("TRACEKIT_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    return CliRunner(env={"TRACEKIT_STORE": None, "COLUMNS": "200"})


@pytest.fixture
def store_dir(runner: CliRunner, tmp_path: Path) -> Path:
    """A store holding the hand-made artifacts above."""
    store = tmp_path / "store"
    result = runner.invoke(app, ["ingest", str(write_artifacts(tmp_path / "in")), "--store", str(store)])
    assert result.exit_code == 0, result.output
    return store


# -- help ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ingest", "sql", "demo"])
def test_every_command_has_help_with_an_example(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.stdout
    assert f"tracekit {command}" in result.stdout


def test_top_level_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "sql", "demo"):
        assert command in result.stdout


# -- errors -------------------------------------------------------------------------------------------------


def test_ingest_of_a_missing_path_is_one_error_line(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-export.json"
    result = runner.invoke(app, ["ingest", str(missing), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"Error: no such file or directory: {missing}")
    assert result.stdout == ""


def test_ingest_while_another_writer_holds_the_store(
    runner: CliRunner, store_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "more"
    other.mkdir()
    (other / "dlq.json").write_text(
        to_json({"Messages": [{"MessageId": "m-locked", "Body": "hello", "Attributes": {}}]})
    )
    with Store.open(store_dir).writing():
        result = runner.invoke(app, ["ingest", str(other), "--store", str(store_dir)])
    assert result.exit_code == 2
    assert one_error_line(result).startswith("Error: store is being written by another tracekit process")
    assert Store.open(store_dir).query("SELECT count(*) AS n FROM dead_letters") == [{"n": len(DLQ)}]


WRITES = [
    "UPDATE dead_letters SET body = 'x'",
    "INSERT INTO quarantine (source) VALUES ('x')",
    "DELETE FROM dead_letters",
    "CREATE TABLE stolen AS SELECT * FROM dead_letters",
    "COPY dead_letters TO '{out}'",
    "COPY (SELECT * FROM dead_letters) TO '{out}' (FORMAT parquet)",
    "SELECT 1; DROP VIEW dead_letters",
    "ATTACH '{out}' AS other",
]


@pytest.mark.parametrize("statement", WRITES)
def test_sql_refuses_statements_that_write(
    runner: CliRunner, store_dir: Path, tmp_path: Path, statement: str
) -> None:
    out = tmp_path / "exfiltrated.out"
    result = runner.invoke(app, ["sql", statement.format(out=out), "--store", str(store_dir)])
    assert result.exit_code == 2
    assert one_error_line(result).startswith("Error: only read-only queries are allowed")
    assert not out.exists()
    assert Store.open(store_dir).query("SELECT count(*) AS n FROM dead_letters") == [{"n": len(DLQ)}]


def test_sql_refuses_explain_analyze_of_a_write(runner: CliRunner, store_dir: Path, tmp_path: Path) -> None:
    """EXPLAIN ANALYZE runs the statement it explains: explaining a COPY … TO writes the file."""
    out = tmp_path / "via-explain.csv"
    query = f"EXPLAIN ANALYZE COPY (SELECT * FROM dead_letters) TO '{out}'"
    result = runner.invoke(app, ["sql", query, "--store", str(store_dir)])
    assert not out.exists(), "EXPLAIN ANALYZE COPY wrote a file through `tracekit sql`"
    assert result.exit_code == 2
    assert one_error_line(result).startswith("Error: only read-only queries are allowed")


@pytest.mark.parametrize("query", ["SELEC * FROM dead_letters", "SELECT * FROM no_such_table", "SELECT 1 +"])
def test_sql_error_is_one_line_without_traceback(runner: CliRunner, store_dir: Path, query: str) -> None:
    result = runner.invoke(app, ["sql", query, "--store", str(store_dir)])
    assert result.exit_code == 2
    assert one_error_line(result).startswith("Error: ")
    assert result.stdout == ""


def test_sql_on_a_missing_store(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "never-created"
    result = runner.invoke(app, ["sql", "SELECT 1", "--store", str(missing)])
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"Error: no tracekit store: {missing.resolve()}")
    assert not missing.exists()


# -- output formats -----------------------------------------------------------------------------------------


def test_ingest_json_prints_exactly_one_object_with_the_counts(runner: CliRunner, tmp_path: Path) -> None:
    inputs = write_artifacts(tmp_path / "in")
    store = tmp_path / "store"
    result = runner.invoke(app, ["ingest", str(inputs), "--store", str(store), "--format", "json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)  # raises unless stdout is exactly one JSON value
    assert isinstance(counts, dict)
    assert set(counts) == COUNT_KEYS
    assert counts == EXPECTED_COUNTS
    assert len(result.stdout.strip().splitlines()) == 1
    warnings = stderr_lines(result)
    assert len(warnings) == 1 and "1 input(s)" in warnings[0] and "quarantine" in warnings[0]


def test_ingest_twice_reports_zero_counts(runner: CliRunner, tmp_path: Path) -> None:
    inputs = write_artifacts(tmp_path / "in")
    store = tmp_path / "store"
    first = runner.invoke(app, ["ingest", str(inputs), "--store", str(store), "-f", "json"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["ingest", str(inputs), "--store", str(store), "-f", "json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == dict.fromkeys(COUNT_KEYS, 0)
    assert again.stderr == ""


def _sent(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)


QUERY = (
    "SELECT message_id, body, approximate_receive_count, sent_timestamp FROM dead_letters ORDER BY message_id"
)


def test_sql_csv_output(runner: CliRunner, store_dir: Path) -> None:
    result = runner.invoke(app, ["sql", QUERY, "--store", str(store_dir), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["message_id"] for r in rows] == [m["id"] for m in DLQ]
    assert [r["body"] for r in rows] == [m["body"] for m in DLQ]
    assert [int(r["approximate_receive_count"]) for r in rows] == [int(m["count"]) for m in DLQ]
    parsed = [dt.datetime.fromisoformat(r["sent_timestamp"].replace("Z", "+00:00")) for r in rows]
    parsed = [p if p.tzinfo else p.replace(tzinfo=dt.UTC) for p in parsed]
    assert parsed == [_sent(m["sent"]) for m in DLQ]


def test_sql_json_output(runner: CliRunner, store_dir: Path) -> None:
    result = runner.invoke(app, ["sql", QUERY, "--store", str(store_dir), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["message_id"] for r in rows] == [m["id"] for m in DLQ]
    assert [r["body"] for r in rows] == [m["body"] for m in DLQ]
    assert [r["approximate_receive_count"] for r in rows] == [int(m["count"]) for m in DLQ]
    sent = [dt.datetime.fromisoformat(r["sent_timestamp"].replace("Z", "+00:00")) for r in rows]
    assert sent == [_sent(m["sent"]) for m in DLQ]


def test_sql_json_of_an_empty_result_is_an_empty_array(runner: CliRunner, store_dir: Path) -> None:
    result = runner.invoke(
        app, ["sql", "SELECT * FROM dead_letters WHERE false", "--store", str(store_dir), "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_sql_table_output_shows_the_values(runner: CliRunner, store_dir: Path) -> None:
    result = runner.invoke(
        app, ["sql", "SELECT request_id, condition FROM destination_records", "--store", str(store_dir)]
    )
    assert result.exit_code == 0, result.output
    assert DEST_REQUEST_ID in result.stdout
    assert "RetriesExhausted" in result.stdout


# -- TRACEKIT_STORE -----------------------------------------------------------------------------------------


def test_tracekit_store_env_var_is_honoured(runner: CliRunner, tmp_path: Path) -> None:
    inputs = write_artifacts(tmp_path / "in")
    env_store = tmp_path / "from-env"
    env = {"TRACEKIT_STORE": str(env_store)}

    ingested = runner.invoke(app, ["ingest", str(inputs), "-f", "json"], env=env)
    assert ingested.exit_code == 0, ingested.output
    assert (env_store / "tracekit-store.json").is_file()
    assert not (tmp_path / ".tracekit").exists()

    queried = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM dead_letters", "-f", "json"], env=env)
    assert queried.exit_code == 0, queried.output
    assert json.loads(queried.stdout) == [{"n": len(DLQ)}]

    # --store wins over the environment.
    other = tmp_path / "explicit"
    explicit = runner.invoke(app, ["sql", "SELECT 1", "--store", str(other)], env=env)
    assert explicit.exit_code == 2
    assert one_error_line(explicit).startswith(f"Error: no tracekit store: {other.resolve()}")


def test_default_store_is_dot_tracekit_in_the_working_directory(runner: CliRunner, tmp_path: Path) -> None:
    inputs = write_artifacts(tmp_path / "in")
    result = runner.invoke(app, ["ingest", str(inputs), "-f", "json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / ".tracekit" / "tracekit-store.json").is_file()
