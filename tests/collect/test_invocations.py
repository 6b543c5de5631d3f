"""Invocation attempts rebuilt from log events: status, error fields, init failures, retries.

Status comes from what the runtime or the platform wrote (old-style lines before END, new-style
`Status:` on REPORT, INIT_REPORT, JSON `platform.*` records), never from application log levels.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tracekit import jsonio


def ms(value: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=value)


STATUS_CASES = [
    # fixture, request id, status, error_type, error_message, duration_ms
    (
        "logs/python312_unhandled_exception.txt",
        "c51f0b7e-2d3a-4e8f-b1c9-0a7d6e5f4b3c",
        "error",
        "ValueError",
        "invalid literal for int() with base 10: 'twelve'",
        3.81,
    ),
    (
        "logs/node_invoke_error.txt",
        "0b8e5a43-91c2-4f6d-8e7a-3d2c1b0a9f8e",
        "error",
        "TypeError",
        "Cannot read properties of undefined (reading 'sku')",
        120.55,
    ),
    (
        "logs/node_app_error_level_line.txt",
        "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c",
        "success",
        None,
        None,
        30.02,
    ),
    ("logs/python_logging_lines.txt", "8d2e4b61-0f3a-4c7e-b5d9-2a6c8e0f1b37", "success", None, None, 188.40),
    ("logs/old_style_timeout.txt", "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d", "timeout", ..., ..., 3003.51),
    ("logs/new_style_timeout.txt", "1d2c3b4a-5f6e-4d7c-8b9a-a0b1c2d3e4f5", "timeout", ..., ..., 6007.12),
    (
        "logs/old_style_crash.txt",
        "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
        "crash",
        "Runtime.ExitError",
        ...,
        512.30,
    ),
    (
        "logs/new_style_crash.txt",
        "2b3c4d5e-6f70-4819-a2b3-c4d5e6f70819",
        "crash",
        "Runtime.ExitError",
        ...,
        77.70,
    ),
    (
        "logs/new_style_out_of_memory.txt",
        "4c5d6e7f-8091-4a2b-b3c4-d5e6f7081920",
        "out_of_memory",
        "Runtime.OutOfMemory",
        ...,
        2210.00,
    ),
    (
        "logs/old_style_killed_at_memory_limit.txt",
        "6e7f8091-a2b3-4c4d-9e5f-60718293a4b5",
        "out_of_memory",
        ...,
        ...,
        1530.44,
    ),
]


@pytest.mark.parametrize(
    ("fixture", "request_id", "status", "error_type", "error_message", "duration"),
    STATUS_CASES,
    ids=[c[0].split("/")[1].split(".")[0] for c in STATUS_CASES],
)
def test_status_from_text_logs(ingest, fixture, request_id, status, error_type, error_message, duration):
    store, counts = ingest(ingest.fixture(fixture))
    assert counts["invocations"] == 1
    [row] = store.query("SELECT * FROM invocations")
    assert row["request_id"] == request_id
    assert row["status"] == status
    assert row["duration_ms"] == pytest.approx(duration)
    assert row["version"] == "$LATEST"
    if error_type is not ...:
        assert row["error_type"] == error_type
    if error_message is not ...:
        assert row["error_message"] == error_message


def test_old_style_kill_below_memory_limit_is_a_crash(ingest, write):
    rid = "70819a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b"
    text = (
        f"START RequestId: {rid} Version: $LATEST\n"
        f"RequestId: {rid} Error: Runtime exited with error: signal: killed\n"
        "Runtime.ExitError\n"
        f"END RequestId: {rid}\n"
        f"REPORT RequestId: {rid}\tDuration: 88.00 ms\tBilled Duration: 88 ms\tMemory Size: 1024 MB\t"
        "Max Memory Used: 95 MB\t\n"
    )
    store, _ = ingest(write("killed.txt", text))
    [row] = store.query("SELECT status, error_type, max_memory_used_mb, memory_size_mb FROM invocations")
    assert row == {
        "status": "crash",
        "error_type": "Runtime.ExitError",
        "max_memory_used_mb": 95,
        "memory_size_mb": 1024,
    }


def test_failing_init_report_makes_the_next_invocation_init_error(ingest):
    store, counts = ingest(ingest.fixture("logs/init_import_error.txt"))
    assert counts["invocations"] == 1
    [row] = store.query("SELECT * FROM invocations")
    assert row["request_id"] == "a0b1c2d3-e4f5-4a6b-8c7d-e8f9a0b1c2d3"
    # the INIT_REPORT's error wins over what REPORT says (Runtime.Unknown)
    assert row["status"] == "init_error"
    assert row["error_type"] == "Runtime.ImportModuleError"
    # REPORT has no Init Duration: INIT_REPORT's fills it
    assert row["init_duration_ms"] == pytest.approx(812.40)
    assert row["duration_ms"] == pytest.approx(1650.91)
    assert row["cold_start"] is True


def test_init_timeout_is_init_error_sandbox_timedout(ingest, write):
    rid = "b1c2d3e4-f5a6-4b7c-9d8e-f9a0b1c2d3e4"
    text = (
        "INIT_REPORT Init Duration: 10000.21 ms\tPhase: init\tStatus: timeout\n"
        f"START RequestId: {rid} Version: 4\n"
        f"END RequestId: {rid}\n"
        f"REPORT RequestId: {rid}\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 25 MB\tStatus: timeout\n"
    )
    store, _ = ingest(write("init-timeout.txt", text))
    [row] = store.query("SELECT request_id, status, error_type, version FROM invocations")
    assert row == {
        "request_id": rid,
        "status": "init_error",
        "error_type": "Sandbox.Timedout",
        "version": "4",
    }


def test_init_report_with_no_invocation_after_it_makes_no_row(ingest, write):
    text = (
        "INIT_START Runtime Version: nodejs:20.v22\t"
        "Runtime Version ARN: arn:aws:lambda:eu-west-1::runtime:1f2e\n"
        "INIT_REPORT Init Duration: 455.10 ms\tPhase: init\tStatus: error\t"
        "Error Type: Runtime.InvalidEntrypoint\n"
    )
    store, counts = ingest(write("init-only.txt", text))
    assert counts["log_events"] == 2
    assert counts["invocations"] == 0
    assert store.query("SELECT count(*) AS n FROM invocations") == [{"n": 0}]


def test_report_without_start_derives_start_time(ingest, write):
    rid = "c2d3e4f5-a6b7-4c8d-8e9f-a0b1c2d3e4f5"
    payload = {
        "messageType": "DATA_MESSAGE",
        "owner": "402118093356",
        "logGroup": "/aws/lambda/thumbnailer",
        "logStream": "2024/06/18/[$LATEST]aabbccddeeff00112233445566778899",
        "subscriptionFilters": ["reports"],
        "logEvents": [
            {
                "id": "38400000000000000000000000000000000000000000000000000001",
                "timestamp": 1718700000500,
                "message": f"REPORT RequestId: {rid}\tDuration: 250.00 ms\tBilled Duration: 250 ms\t"
                "Memory Size: 512 MB\tMax Memory Used: 101 MB\t\n",
            }
        ],
    }
    store, counts = ingest(write("report-only.json", jsonio.dumps(payload)))
    assert counts["invocations"] == 1
    [row] = store.query("SELECT * FROM invocations")
    assert row["request_id"] == rid
    assert row["end_time"] == ms(1718700000500)
    assert row["start_time"] == ms(1718700000250)
    assert row["version"] is None
    assert row["status"] == "success"
    assert row["function_name"] == "thumbnailer"


def test_report_without_start_in_plain_text(ingest, write):
    rid = "d3e4f5a6-b7c8-4d9e-9fa0-b1c2d3e4f5a6"
    text = (
        f"REPORT RequestId: {rid}\tDuration: 12.00 ms\tBilled Duration: 12 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 50 MB\t\n"
    )
    store, _ = ingest(write("tail.txt", text))
    [row] = store.query("SELECT request_id, duration_ms, max_memory_used_mb, version FROM invocations")
    assert row == {"request_id": rid, "duration_ms": 12.0, "max_memory_used_mb": 50, "version": None}


def test_start_without_report_is_unknown(ingest, write):
    rid = "e4f5a6b7-c8d9-4eaf-8b0c-1d2e3f4a5b6c"
    text = f"START RequestId: {rid} Version: $LATEST\n[INFO]\t2024-01-01T00:00:00.000Z\t{rid}\tworking\n"
    store, _ = ingest(write("cut.txt", text))
    [row] = store.query("SELECT request_id, status, duration_ms FROM invocations")
    assert row == {"request_id": rid, "status": "unknown", "duration_ms": None}


# -- async retries: one request id, several attempts ------------------------------------------------

RETRY_RID = "f5a6b7c8-d9e0-4fa1-9b2c-3d4e5f6a7b8c"


def attempt_events(stream, start_ms, duration, *, fail, first_id):
    """Events of one attempt (as filter-log-events gives them)."""
    rid = RETRY_RID
    end_ms = start_ms + int(duration) + 1
    messages = [(start_ms, f"START RequestId: {rid} Version: $LATEST\n")]
    if fail:
        messages.append(
            (start_ms + 5, "[ERROR] TimeoutError: upstream timed out\nTraceback (most recent call last):\n")
        )
    messages += [
        (end_ms, f"END RequestId: {rid}\n"),
        (
            end_ms,
            f"REPORT RequestId: {rid}\tDuration: {duration:.2f} ms\tBilled Duration: {int(duration) + 1} ms\t"
            "Memory Size: 128 MB\tMax Memory Used: 60 MB\t\n",
        ),
    ]
    return [
        {
            "logStreamName": stream,
            "timestamp": ts,
            "message": msg,
            "ingestionTime": ts + 50,
            "eventId": f"{first_id + i:056d}",
        }
        for i, (ts, msg) in enumerate(messages)
    ]


def test_async_retries_in_one_stream_are_three_attempts(ingest, write):
    stream = "2024/06/20/[$LATEST]0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    t0 = 1718870400000
    events = (
        attempt_events(stream, t0, 101.5, fail=True, first_id=100)
        + attempt_events(stream, t0 + 60_000, 102.5, fail=True, first_id=200)
        + attempt_events(stream, t0 + 180_000, 103.5, fail=False, first_id=300)
    )
    path = write("retries.ndjson", "".join(jsonio.dumps(e) + "\n" for e in events))
    store, counts = ingest(path, log_group="/aws/lambda/notifier")
    assert counts["invocations"] == 3
    rows = store.query(
        "SELECT attempt, request_id, status, error_type, duration_ms, start_time "
        "FROM invocations ORDER BY attempt"
    )
    assert [r["attempt"] for r in rows] == [1, 2, 3]
    assert {r["request_id"] for r in rows} == {RETRY_RID}
    assert [r["status"] for r in rows] == ["error", "error", "success"]
    assert [r["error_type"] for r in rows] == ["TimeoutError", "TimeoutError", None]
    assert [r["duration_ms"] for r in rows] == pytest.approx([101.5, 102.5, 103.5])
    assert [r["start_time"] for r in rows] == [ms(t0), ms(t0 + 60_000), ms(t0 + 180_000)]


def test_async_retries_across_two_streams(ingest, write):
    first, second = (
        "2024/06/20/[$LATEST]11111111111111111111111111111111",
        "2024/06/20/[$LATEST]22222222222222222222222222222222",
    )
    t0 = 1718870400000
    events = (
        attempt_events(second, t0 + 60_000, 202.0, fail=True, first_id=500)
        + attempt_events(first, t0, 201.0, fail=True, first_id=400)
        + attempt_events(second, t0 + 180_000, 203.0, fail=False, first_id=600)
    )
    path = write("retries.json", jsonio.dumps({"events": events, "searchedLogStreams": []}))
    store, counts = ingest(path, log_group="/aws/lambda/notifier")
    assert counts["invocations"] == 3
    rows = store.query("SELECT attempt, log_stream, duration_ms, status FROM invocations ORDER BY attempt")
    assert [(r["attempt"], r["log_stream"], r["status"]) for r in rows] == [
        (1, first, "error"),
        (2, second, "error"),
        (3, second, "success"),
    ]
    assert [r["duration_ms"] for r in rows] == pytest.approx([201.0, 202.0, 203.0])


def test_async_retries_in_plain_text(ingest, write):
    rid = RETRY_RID
    block = (
        "START RequestId: {rid} Version: $LATEST\n"
        "[ERROR] KeyError: 'id'\n"
        "END RequestId: {rid}\n"
        "REPORT RequestId: {rid}\tDuration: {d} ms\tBilled Duration: 10 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 40 MB\t\n"
    )
    text = "".join(block.format(rid=rid, d=d) for d in ("7.10", "8.20", "9.30"))
    store, counts = ingest(write("three.txt", text))
    assert counts["invocations"] == 3
    rows = store.query("SELECT attempt, duration_ms, status, error_type FROM invocations")
    assert sorted(r["attempt"] for r in rows) == [1, 2, 3]
    assert sorted(r["duration_ms"] for r in rows) == pytest.approx([7.10, 8.20, 9.30])
    assert {(r["status"], r["error_type"]) for r in rows} == {("error", "KeyError")}


def test_attempt_split_across_two_files_is_one_row(ingest, write):
    stream = "2024/06/21/[$LATEST]33333333333333333333333333333333"
    events = attempt_events(stream, 1718956800000, 55.5, fail=True, first_id=700)
    a = write("part1.ndjson", "".join(jsonio.dumps(e) + "\n" for e in events[:2]))
    b = write("part2.ndjson", "".join(jsonio.dumps(e) + "\n" for e in events[2:]))
    store, first = ingest(a, log_group="/aws/lambda/notifier")
    assert first["invocations"] == 1
    [row] = store.query("SELECT status, duration_ms FROM invocations")
    assert row["duration_ms"] is None  # no REPORT yet
    store, _ = ingest(b, log_group="/aws/lambda/notifier")
    rows = store.query(
        "SELECT request_id, status, error_type, duration_ms, start_time, end_time FROM invocations"
    )
    assert rows == [
        {
            "request_id": RETRY_RID,
            "status": "error",
            "error_type": "TimeoutError",
            "duration_ms": pytest.approx(55.5),
            "start_time": ms(1718956800000),
            "end_time": ms(1718956800000 + 56),
        }
    ]


# -- JSON log format -------------------------------------------------------------------------------

R1, R2, R3 = (f"11111111-aaaa-4bbb-8ccc-00000000000{i}" for i in (1, 2, 3))


def test_json_log_format(ingest):
    store, counts = ingest(
        ingest.fixture("logs/json_format_platform.jsonl"), log_group="/aws/lambda/billing-worker"
    )
    assert counts["log_events"] == 12
    assert counts["invocations"] == 3
    assert counts["quarantined"] == 0
    rows = {r["request_id"]: r for r in store.query("SELECT * FROM invocations")}
    assert set(rows) == {R1, R2, R3}

    one = rows[R1]
    assert one["function_name"] == "billing-worker"
    assert one["version"] == "$LATEST"
    assert one["status"] == "success"  # an app record at level ERROR does not make it an error
    assert one["duration_ms"] == pytest.approx(749.25)  # platform.report, not runtimeDone's 750.5
    assert one["billed_duration_ms"] == pytest.approx(750)
    assert one["memory_size_mb"] == 256
    assert one["max_memory_used_mb"] == 77
    assert one["init_duration_ms"] == pytest.approx(340.12)
    assert one["cold_start"] is True
    assert one["xray_trace_id"] == "1-66826e00-aabbccddeeff00112233aabb"
    assert one["start_time"] == dt.datetime(2024, 7, 1, 8, 0, 0, 350000)
    assert one["end_time"] == dt.datetime(2024, 7, 1, 8, 0, 1, 102000)

    two = rows[R2]
    assert two["status"] == "timeout"
    assert two["duration_ms"] == pytest.approx(5000.0)
    assert two["cold_start"] is False

    three = rows[R3]
    assert three["status"] == "error"
    assert three["error_type"] == "ZeroDivisionError"
    assert three["error_message"] == "division by zero"
    assert three["duration_ms"] == pytest.approx(40.8)


def test_json_log_format_function_name_from_init_start(ingest):
    store, _ = ingest(ingest.fixture("logs/json_format_platform.jsonl"))
    names = store.query("SELECT DISTINCT function_name FROM invocations")
    assert names == [{"function_name": "billing-worker"}]


def test_json_log_format_inside_filter_log_events(ingest, write):
    stream = "2024/07/02/[$LATEST]44444444444444444444444444444444"
    rid = "22222222-bbbb-4ccc-8ddd-000000000001"
    records = [
        (
            1719907200000,
            {
                "time": "2024-07-02T08:00:00.000Z",
                "type": "platform.start",
                "record": {"requestId": rid, "version": "9"},
            },
        ),
        (
            1719907200900,
            {
                "time": "2024-07-02T08:00:00.900Z",
                "type": "platform.runtimeDone",
                "record": {"requestId": rid, "status": "error", "metrics": {"durationMs": 901.0}},
            },
        ),
        (
            1719907200910,
            {
                "time": "2024-07-02T08:00:00.910Z",
                "type": "platform.report",
                "record": {
                    "requestId": rid,
                    "status": "error",
                    "metrics": {
                        "durationMs": 899.5,
                        "billedDurationMs": 900,
                        "memorySizeMB": 128,
                        "maxMemoryUsedMB": 64,
                    },
                },
            },
        ),
    ]
    events = [
        {
            "logStreamName": stream,
            "timestamp": ts,
            "message": jsonio.dumps(rec),
            "ingestionTime": ts + 10,
            "eventId": f"{i:056d}",
        }
        for i, (ts, rec) in enumerate(records, start=1)
    ]
    store, counts = ingest(
        write("fle.json", jsonio.dumps({"events": events})), log_group="/aws/lambda/pdf-render"
    )
    assert counts["invocations"] == 1
    [row] = store.query("SELECT * FROM invocations")
    assert row["request_id"] == rid
    assert row["version"] == "9"
    assert row["status"] == "error"
    assert row["duration_ms"] == pytest.approx(899.5)
    assert row["function_name"] == "pdf-render"
    assert row["log_stream"] == stream
    assert row["start_time"] == ms(1719907200000)
    assert row["end_time"] == ms(1719907200910)


# -- other runtimes' error records and platform lines ----------------------------------------------

OTHER_RID = "11112222-3333-4444-8555-666677778888"


def one_attempt(middle: str, report_tail: str = "Max Memory Used: 60 MB\t") -> str:
    rid = OTHER_RID
    return (
        f"START RequestId: {rid} Version: $LATEST\n"
        f"{middle}"
        f"END RequestId: {rid}\n"
        f"REPORT RequestId: {rid}\tDuration: 10.00 ms\tBilled Duration: 10 ms\tMemory Size: 128 MB\t"
        f"{report_tail}\n"
    )


@pytest.mark.parametrize(
    ("middle", "error_type", "error_message"),
    [
        (
            f"2024-01-01T00:00:00.000Z\t{OTHER_RID}\tERROR\tUnhandled Promise Rejection \t"
            '{"errorType":"Runtime.UnhandledPromiseRejection","errorMessage":"Error: quota gone",'
            '"reason":{},"promise":{},"stack":[]}\n',
            "Runtime.UnhandledPromiseRejection",
            "Error: quota gone",
        ),
        (
            f"2024-01-01T00:00:00.000Z\t{OTHER_RID}\tERROR\tUncaught Exception \t"
            '{"errorType":"SyntaxError","errorMessage":"Unexpected token",'
            '"stack":["SyntaxError: Unexpected token"]}\n',
            "SyntaxError",
            "Unexpected token",
        ),
        (
            "Critical exception from handler\n"
            '{"errorMessage":"undefined method `fetch\' for nil","errorType":"Function<NoMethodError>",'
            '"stackTrace":[]}\n',
            "Function<NoMethodError>",
            "undefined method `fetch' for nil",
        ),
        (
            '{"errorMessage":"index 4 out of bounds","errorType":"java.lang.ArrayIndexOutOfBoundsException",'
            '"stackTrace":["example.Handler.handleRequest(Handler.java:21)"]}\n',
            "java.lang.ArrayIndexOutOfBoundsException",
            "index 4 out of bounds",
        ),
    ],
    ids=["node-unhandled-rejection", "node-uncaught-exception", "ruby", "java"],
)
def test_runtime_error_records_of_other_runtimes(ingest, write, middle, error_type, error_message):
    store, _ = ingest(write("other.txt", one_attempt(middle)))
    [row] = store.query("SELECT request_id, status, error_type, error_message FROM invocations")
    assert row == {
        "request_id": OTHER_RID,
        "status": "error",
        "error_type": error_type,
        "error_message": error_message,
    }


def test_process_exited_at_memory_limit_is_out_of_memory(ingest, write):
    text = one_attempt(
        f"RequestId: {OTHER_RID} Process exited before completing request\n", "Max Memory Used: 128 MB\t"
    )
    store, _ = ingest(write("exited.txt", text))
    [row] = store.query("SELECT status, error_type FROM invocations")
    assert row == {"status": "out_of_memory", "error_type": "Runtime.OutOfMemory"}


def test_xray_trace_id_on_the_report_line(ingest, write):
    text = one_attempt(
        "",
        "Max Memory Used: 60 MB\tInit Duration: 5.50 ms\tXRAY TraceId: 1-6650aa00-0123456789abcdef01234567\t"
        "SegmentId: 0a1b2c3d4e5f6071\tSampled: true\t",
    )
    store, _ = ingest(write("xray.txt", text))
    [row] = store.query("SELECT xray_trace_id, init_duration_ms, cold_start FROM invocations")
    assert row == {
        "xray_trace_id": "1-6650aa00-0123456789abcdef01234567",
        "init_duration_ms": 5.5,
        "cold_start": True,
    }


def test_restore_duration_from_snapstart(ingest, write):
    text = "RESTORE_REPORT Restore Duration: 321.50 ms\n" + one_attempt(
        "", "Max Memory Used: 60 MB\tRestore Duration: 321.50 ms\tBilled Restore Duration: 100 ms\t"
    )
    store, _ = ingest(write("restore.txt", text))
    [row] = store.query("SELECT restore_duration_ms, status FROM invocations")
    assert row == {"restore_duration_ms": pytest.approx(321.50), "status": "success"}


def test_init_report_in_invoke_phase_is_init_error(ingest, write):
    rid = OTHER_RID
    text = (
        f"START RequestId: {rid} Version: $LATEST\n"
        "INIT_REPORT Init Duration: 3000.03 ms\tPhase: invoke\tStatus: timeout\n"
        f"END RequestId: {rid}\n"
        f"REPORT RequestId: {rid}\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 60 MB\tStatus: timeout\n"
    )
    store, _ = ingest(write("suppressed-init.txt", text))
    [row] = store.query("SELECT status, error_type, init_duration_ms FROM invocations")
    assert row == {"status": "init_error", "error_type": "Sandbox.Timedout", "init_duration_ms": 3000.03}


def test_request_ids_are_opaque_tokens(ingest, write):
    v1 = "c0a80101-ee49-115b-a5b6-4fd21e8dedac"
    text = (
        f"START RequestId: {v1} Version: $LATEST\n"
        f"END RequestId: {v1}\n"
        f"REPORT RequestId: {v1}\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 60 MB\t\n"
        "2024-01-01T00:00:01.000Z\tundefined\tERROR\tUncaught Exception \t"
        '{"errorType":"Error","errorMessage":"late callback","stack":[]}\n'
    )
    store, _ = ingest(write("opaque.txt", text))
    rows = store.query("SELECT request_id, status, error_type FROM invocations ORDER BY request_id")
    assert rows == [
        {"request_id": v1, "status": "success", "error_type": None},
        {"request_id": "undefined", "status": "error", "error_type": "Error"},
    ]


def test_json_format_failing_init_report(ingest, write):
    rid = "99998888-7777-4666-8555-444433332222"
    lines = [
        {
            "time": "2024-07-01T08:00:00.000Z",
            "type": "platform.initStart",
            "record": {"initializationType": "on-demand", "phase": "init", "functionName": "loader"},
        },
        {
            "time": "2024-07-01T08:00:01.000Z",
            "type": "platform.initReport",
            "record": {
                "initializationType": "on-demand",
                "phase": "init",
                "status": "error",
                "errorType": "Runtime.ImportModuleError",
                "metrics": {"durationMs": 1000.25},
            },
        },
        {
            "time": "2024-07-01T08:00:01.100Z",
            "type": "platform.start",
            "record": {"requestId": rid, "version": "$LATEST"},
        },
        {
            "time": "2024-07-01T08:00:02.000Z",
            "type": "platform.report",
            "record": {
                "requestId": rid,
                "status": "error",
                "errorType": "Runtime.Unknown",
                "metrics": {
                    "durationMs": 900.0,
                    "billedDurationMs": 900,
                    "memorySizeMB": 128,
                    "maxMemoryUsedMB": 50,
                },
            },
        },
    ]
    store, _ = ingest(write("init-fail.jsonl", "".join(jsonio.dumps(x) + "\n" for x in lines)))
    [row] = store.query(
        "SELECT request_id, status, error_type, init_duration_ms, function_name FROM invocations"
    )
    assert row == {
        "request_id": rid,
        "status": "init_error",
        "error_type": "Runtime.ImportModuleError",
        "init_duration_ms": 1000.25,
        "function_name": "loader",
    }


def test_json_format_lambda_warning_and_error_record_in_one_event(ingest, write):
    rid = "99998888-7777-4666-8555-444433330000"
    error = {
        "timestamp": "2024-07-01T08:00:00.010Z",
        "log_level": "ERROR",
        "errorMessage": "'sku'",
        "errorType": "KeyError",
        "requestId": rid,
        "stackTrace": [],
    }
    messages = [
        (
            1719820800000,
            jsonio.dumps(
                {
                    "time": "2024-07-01T08:00:00.000Z",
                    "type": "platform.start",
                    "record": {"requestId": rid, "version": "$LATEST"},
                }
            ),
        ),
        (
            1719820800010,
            "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function code.\r"
            + jsonio.dumps(error),
        ),
        (
            1719820800020,
            jsonio.dumps(
                {
                    "time": "2024-07-01T08:00:00.020Z",
                    "type": "platform.report",
                    "record": {
                        "requestId": rid,
                        "status": "error",
                        "metrics": {
                            "durationMs": 20.0,
                            "billedDurationMs": 20,
                            "memorySizeMB": 128,
                            "maxMemoryUsedMB": 50,
                        },
                    },
                }
            ),
        ),
    ]
    events = [
        {
            "logStreamName": "2024/07/01/[$LATEST]66666666666666666666666666666666",
            "timestamp": ts,
            "message": m,
            "ingestionTime": ts + 5,
            "eventId": f"{i:056d}",
        }
        for i, (ts, m) in enumerate(messages, start=1)
    ]
    store, _ = ingest(write("warn.json", jsonio.dumps({"events": events})))
    [row] = store.query("SELECT status, error_type, error_message, duration_ms FROM invocations")
    assert row == {"status": "error", "error_type": "KeyError", "error_message": "'sku'", "duration_ms": 20.0}


def test_powertools_json_log_names_request_and_trace(ingest, write):
    line = {
        "level": "INFO",
        "location": "handler:10",
        "message": "order stored",
        "timestamp": "2024-01-01 00:00:00,123+0000",
        "service": "orders",
        "cold_start": True,
        "function_name": "orders-fn",
        "function_memory_size": "128",
        "function_arn": "arn:aws:lambda:eu-west-1:402118093356:function:orders-fn",
        "function_request_id": OTHER_RID,
        "xray_trace_id": "1-65920000-aaaaaaaaaaaaaaaaaaaaaaaa",
    }
    store, counts = ingest(write("powertools.ndjson", jsonio.dumps(line) + "\n"))
    assert counts["log_events"] == 1
    [row] = store.query("SELECT request_id, xray_trace_id, status, duration_ms FROM invocations")
    # no REPORT: the attempt's end is unknown
    assert row == {
        "request_id": OTHER_RID,
        "xray_trace_id": "1-65920000-aaaaaaaaaaaaaaaaaaaaaaaa",
        "status": "unknown",
        "duration_ms": None,
    }


def test_node8_bare_json_error_record_is_an_error(ingest, write):
    """Node.js 8.10 printed an unhandled error as `<ts>\\t<rid>\\t{"errorMessage":…,"errorType":…}`."""
    rid = "5b1e0c9d-8f7a-4b6c-9d5e-4f3a2b1c0d9e"
    text = (
        f"START RequestId: {rid} Version: $LATEST\n"
        f'2019-03-02T10:11:12.345Z\t{rid}\t{{"errorMessage":"order 77 not found","errorType":"NotFound",'
        '"stackTrace":["exports.handler (/var/task/index.js:9:11)"]}\n'
        f"END RequestId: {rid}\n"
        f"REPORT RequestId: {rid}\tDuration: 41.20 ms\tBilled Duration: 100 ms \tMemory Size: 128 MB\t"
        "Max Memory Used: 30 MB\t\n"
    )
    store, _ = ingest(write("node8.txt", text))
    [row] = store.query("SELECT status, error_type, error_message FROM invocations")
    assert row == {"status": "error", "error_type": "NotFound", "error_message": "order 77 not found"}


def test_node_app_line_with_json_that_is_not_an_error_record_stays_success(ingest, write):
    rid = "6c2f1d0e-9a8b-4c7d-8e6f-5a4b3c2d1e0f"
    text = (
        f"START RequestId: {rid} Version: $LATEST\n"
        f'2019-03-02T10:11:12.345Z\t{rid}\tINFO\t{{"errorCount":0,"orderId":77}}\n'
        f"END RequestId: {rid}\n"
        f"REPORT RequestId: {rid}\tDuration: 11.00 ms\tBilled Duration: 100 ms \tMemory Size: 128 MB\t"
        "Max Memory Used: 30 MB\t\n"
    )
    store, _ = ingest(write("node-info.txt", text))
    assert store.query("SELECT status FROM invocations") == [{"status": "success"}]


def test_text_format_lambda_warning_and_error_record_joined_by_cr(ingest, write):
    # The Python runtime on stdout joins the warning, the [ERROR] record and the traceback with \r.
    rid = "12121212-3434-4565-8787-909090909090"
    stream = "2026/11/22/[$LATEST]77777777777777777777777777777777"
    error_event = (
        "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function code.\r"
        "[ERROR] ValueError: bad quantity for order 4720\rTraceback (most recent call last):\r"
        '\u00a0\u00a0File "/var/task/worker.py", line 9, in handler\r\u00a0\u00a0\u00a0\u00a0int(q)\n'
    )
    messages = [
        f"START RequestId: {rid} Version: $LATEST\n",
        error_event,
        f"END RequestId: {rid}\n",
        f"REPORT RequestId: {rid}\tDuration: 12.50 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 50 MB\t\n",
    ]
    lines = [
        jsonio.dumps(
            {
                "logStreamName": stream,
                "timestamp": 1795338000000 + i,
                "message": m,
                "ingestionTime": 1795338000100 + i,
                "eventId": f"{i + 1:056d}",
            }
        )
        for i, m in enumerate(messages)
    ]
    store, counts = ingest(write("cr.ndjson", "\n".join(lines) + "\n"))
    assert counts["quarantined"] == 0
    [row] = store.query("SELECT status, error_type, error_message FROM invocations")
    assert row == {
        "status": "error",
        "error_type": "ValueError",
        "error_message": "bad quantity for order 4720",
    }
