"""Log inputs → `log_events` (and the invocation rows derived from them).

Covers every shape log events arrive in: plain Lambda log text (a decoded LogResult / console
paste), `aws logs filter-log-events` output (whole response and NDJSON), `get-log-events` output,
CloudWatch Logs subscription payloads (decoded, base64+gzip, Firehose-concatenated) and CloudWatch
Logs S3 export objects. Expected values are the ones written into the fixtures.
"""

from __future__ import annotations

import datetime as dt
import gzip

import pytest

from tracekit import jsonio

NBSP = "\u00a0"


def ms(value: int) -> dt.datetime:
    """Epoch milliseconds as the naive UTC datetime DuckDB returns for a TIMESTAMP."""
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=value)


# -- plain Lambda log text -------------------------------------------------------------------------


def test_python_text_log_report_with_init_duration_and_xray(ingest):
    path = ingest.fixture("logs/python_cold_start_xray.txt")
    store, counts = ingest(path, log_group="/aws/lambda/orders-api")

    # START, two print() lines, END, REPORT (+ its XRAY line)
    assert counts["log_events"] == 5
    assert counts["invocations"] == 1
    assert counts["quarantined"] == 0
    events = store.query("SELECT log_group, log_stream, timestamp, message FROM log_events ORDER BY message")
    assert {e["log_group"] for e in events} == {"/aws/lambda/orders-api"}
    assert all(e["log_stream"] is None and e["timestamp"] is None for e in events)
    report = [e["message"] for e in events if e["message"].startswith("REPORT")]
    assert report == [
        "REPORT RequestId: 3f1c2a9e-7b44-4d1e-9a0c-51d2e8b7c601\tDuration: 42.17 ms\tBilled Duration: 43 ms\t"
        "Memory Size: 256 MB\tMax Memory Used: 71 MB\tInit Duration: 287.35 ms\t\n"
        "XRAY TraceId: 1-65f0a1b2-4c5d6e7f8a9b0c1d2e3f4a5b\tSegmentId: 6a7b8c9d0e1f2a3b\tSampled: true\t\n"
    ]

    [row] = store.query("SELECT * FROM invocations")
    assert row["request_id"] == "3f1c2a9e-7b44-4d1e-9a0c-51d2e8b7c601"
    assert row["attempt"] == 1
    assert row["function_name"] == "orders-api"
    assert row["log_group"] == "/aws/lambda/orders-api"
    assert row["version"] == "7"
    assert row["duration_ms"] == pytest.approx(42.17)
    assert row["billed_duration_ms"] == pytest.approx(43)
    assert row["memory_size_mb"] == 256
    assert row["max_memory_used_mb"] == 71
    assert row["init_duration_ms"] == pytest.approx(287.35)
    assert row["restore_duration_ms"] is None
    assert row["cold_start"] is True
    assert row["status"] == "success"
    assert row["error_type"] is None and row["error_message"] is None
    assert row["xray_trace_id"] == "1-65f0a1b2-4c5d6e7f8a9b0c1d2e3f4a5b"


def test_text_log_without_log_group_leaves_it_null(ingest):
    store, _ = ingest(ingest.fixture("logs/python_cold_start_xray.txt"))
    [row] = store.query("SELECT log_group, function_name FROM invocations")
    assert row == {"log_group": None, "function_name": None}


def test_log_group_printed_by_the_function_names_the_function(ingest, write):
    rid = "6a5b4c3d-2e1f-4071-8263-544536271809"
    text = (
        f"START RequestId: {rid} Version: $LATEST\n"
        f"[INFO]\t2024-05-14T10:00:00.001Z\t{rid}\tenviron({{'AWS_LAMBDA_LOG_GROUP_NAME': "
        "'/aws/lambda/report-builder', 'AWS_LAMBDA_FUNCTION_NAME': 'report-builder'})\n"
        f"END RequestId: {rid}\n"
        f"REPORT RequestId: {rid}\tDuration: 5.00 ms\tBilled Duration: 5 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 40 MB\t\n"
    )
    store, _ = ingest(write("env.txt", text))
    [row] = store.query("SELECT log_group, function_name FROM invocations")
    assert row == {"log_group": "/aws/lambda/report-builder", "function_name": "report-builder"}


def test_python_logging_lines_keep_their_blank_line_and_attach_to_request(ingest):
    store, counts = ingest(ingest.fixture("logs/python_logging_lines.txt"))
    # START, [INFO], [WARNING], [ERROR] (each with the blank line logging adds), END, REPORT
    assert counts["log_events"] == 6
    app = store.query("SELECT message FROM log_events WHERE message LIKE '[%' ORDER BY message")
    assert [m["message"].split("\t")[0] for m in app] == ["[ERROR]", "[INFO]", "[WARNING]"]
    assert all("8d2e4b61-0f3a-4c7e-b5d9-2a6c8e0f1b37" in m["message"] for m in app)
    assert not store.query("SELECT 1 FROM log_events WHERE trim(message, chr(10)) = ''")

    [row] = store.query("SELECT * FROM invocations")
    assert row["request_id"] == "8d2e4b61-0f3a-4c7e-b5d9-2a6c8e0f1b37"
    assert row["duration_ms"] == pytest.approx(188.40)
    assert row["init_duration_ms"] is None
    assert row["cold_start"] is False
    # `[ERROR]\t<ts>\t<id>\t...` is logger.error() output, not the runtime's unhandled-error record
    assert row["status"] == "success"


def test_python_traceback_indented_with_nbsp_stays_in_the_error_event(ingest):
    store, counts = ingest(ingest.fixture("logs/python312_unhandled_exception.txt"))
    # START, LAMBDA_WARNING, [ERROR] + Traceback + 2 indented lines, END, REPORT
    assert counts["log_events"] == 5
    [err] = store.query("SELECT message FROM log_events WHERE message LIKE '[ERROR]%'")
    assert err["message"] == (
        "[ERROR] ValueError: invalid literal for int() with base 10: 'twelve'\n"
        "Traceback (most recent call last):\n"
        f'{NBSP}{NBSP}File "/var/task/app.py", line 18, in handler\n'
        f"{NBSP}{NBSP}{NBSP}{NBSP}quantity = int(event['quantity'])\n"
    )


def test_node_multiline_app_message_is_one_event(ingest):
    store, counts = ingest(ingest.fixture("logs/node_app_error_level_line.txt"))
    assert counts["log_events"] == 5
    [warn] = store.query("SELECT message FROM log_events WHERE message LIKE '%\tWARN\t%'")
    assert warn["message"] == (
        "2024-06-01T12:05:00.020Z\t5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c\tWARN\t"
        '{\n  "orderId": "B-77",\n  "parked": true\n}\n'
    )


# -- filter-log-events / get-log-events ------------------------------------------------------------

STREAM = "2024/08/02/[$LATEST]5c0ffee0d15ea5e0a1b2c3d4e5f60718"
RID = "ab12cd34-ef56-4789-8abc-def012345678"
FLE_EVENTS = [
    {
        "logStreamName": STREAM,
        "timestamp": 1722600000123,
        "message": f"START RequestId: {RID} Version: $LATEST\n",
        "ingestionTime": 1722600000200,
        "eventId": "37396578234567890123456789012345678901234567890123456701",
    },
    {
        "logStreamName": STREAM,
        "timestamp": 1722600000150,
        "message": f"2024-08-02T12:00:00.150Z\t{RID}\tINFO\tfetched 12 rows\n",
        "ingestionTime": 1722600000300,
        "eventId": "37396578234567890123456789012345678901234567890123456702",
    },
    {
        "logStreamName": STREAM,
        "timestamp": 1722600000390,
        "message": f"END RequestId: {RID}\n",
        "ingestionTime": 1722600000450,
        "eventId": "37396578234567890123456789012345678901234567890123456703",
    },
    {
        "logStreamName": STREAM,
        "timestamp": 1722600000390,
        "message": f"REPORT RequestId: {RID}\tDuration: 266.61 ms\tBilled Duration: 267 ms\t"
        "Memory Size: 1024 MB\tMax Memory Used: 140 MB\t\n",
        "ingestionTime": 1722600000450,
        "eventId": "37396578234567890123456789012345678901234567890123456704",
    },
]


def _check_fle_store(store, log_group):
    events = store.query(
        "SELECT log_group, log_stream, epoch_ms(timestamp) AS ts, epoch_ms(ingestion_time) AS ingested, "
        "event_id, message FROM log_events ORDER BY event_id"
    )
    assert events == [
        {
            "log_group": log_group,
            "log_stream": e["logStreamName"],
            "ts": e["timestamp"],
            "ingested": e["ingestionTime"],
            "event_id": e["eventId"],
            "message": e["message"],
        }
        for e in FLE_EVENTS
    ]
    [row] = store.query(
        "SELECT request_id, log_stream, epoch_ms(start_time) AS start_ms, epoch_ms(end_time) AS end_ms, "
        "duration_ms, memory_size_mb, status, function_name FROM invocations"
    )
    assert row["request_id"] == RID
    assert row["log_stream"] == STREAM
    assert row["start_ms"] == 1722600000123
    assert row["end_ms"] == 1722600000390
    assert row["duration_ms"] == pytest.approx(266.61)
    assert row["memory_size_mb"] == 1024
    assert row["status"] == "success"
    return row


def test_filter_log_events_whole_response(ingest, write):
    doc = {
        "events": FLE_EVENTS,
        "searchedLogStreams": [],
        "nextToken": "Bxkq6kVGFtq2y_MoigeqscPOdhXVbhiVtLoAmXb5jCrI",
    }
    path = write("fle.json", jsonio.dumps(doc))
    store, counts = ingest(path, log_group="/aws/lambda/etl-nightly")
    assert counts["log_events"] == 4
    assert counts["invocations"] == 1
    row = _check_fle_store(store, "/aws/lambda/etl-nightly")
    assert row["function_name"] == "etl-nightly"


def test_filter_log_events_ndjson_newest_first(ingest, write):
    # NDJSON as `--output json | jq -c '.events[]'` gives it; here newest first, as real pages often are
    lines = "".join(jsonio.dumps(e) + "\n" for e in reversed(FLE_EVENTS))
    store, counts = ingest(write("fle.ndjson", lines), log_group="/aws/lambda/etl-nightly")
    assert counts == {
        "log_events": 4,
        "invocations": 1,
        "destination_records": 0,
        "dead_letters": 0,
        "quarantined": 0,
    }
    _check_fle_store(store, "/aws/lambda/etl-nightly")


def test_filter_log_events_ndjson_without_log_group(ingest, write):
    lines = "".join(jsonio.dumps(e) + "\n" for e in FLE_EVENTS)
    store, _ = ingest(write("fle.ndjson", lines))
    row = _check_fle_store(store, None)
    assert row["function_name"] is None


def test_get_log_events_output_has_no_stream_or_event_id(ingest, write):
    rid = "c0ffee00-1234-4567-89ab-cdef01234567"
    doc = {
        "events": [
            {
                "timestamp": 1700000000000,
                "message": f"START RequestId: {rid} Version: 3\n",
                "ingestionTime": 1700000000100,
            },
            {
                "timestamp": 1700000000040,
                "message": f'2023-11-14T22:13:20.040Z\t{rid}\tINFO\tEVENT\r{{\r  "key": "v"\r}}\n',
                "ingestionTime": 1700000000100,
            },
            {
                "timestamp": 1700000000075,
                "message": f"END RequestId: {rid}\n",
                "ingestionTime": 1700000000200,
            },
            {
                "timestamp": 1700000000075,
                "message": f"REPORT RequestId: {rid}\tDuration: 74.60 ms\tBilled Duration: 75 ms \t"
                "Memory Size: 128 MB\tMax Memory Used: 66 MB\t\n",
                "ingestionTime": 1700000000200,
            },
        ],
        "nextForwardToken": "f/37911200000000000000000000000000000000000000000000000000",
        "nextBackwardToken": "b/37911200000000000000000000000000000000000000000000000000",
    }
    store, counts = ingest(write("gle.json", jsonio.dumps(doc)), log_group="/aws/lambda/hello")
    assert counts["log_events"] == 4
    events = store.query("SELECT log_stream, event_id, epoch_ms(timestamp) AS ts, message FROM log_events")
    assert all(e["log_stream"] is None and e["event_id"] is None for e in events)
    assert sorted(e["ts"] for e in events) == [1700000000000, 1700000000040, 1700000000075, 1700000000075]
    # the Node multi-line message keeps its carriage returns
    assert any(e["message"].endswith('INFO\tEVENT\r{\r  "key": "v"\r}\n') for e in events)
    [row] = store.query(
        "SELECT request_id, version, duration_ms, billed_duration_ms, epoch_ms(start_time) AS s, "
        "epoch_ms(end_time) AS e, function_name FROM invocations"
    )
    assert row["request_id"] == rid
    assert row["version"] == "3"
    assert row["duration_ms"] == pytest.approx(74.60)
    assert row["billed_duration_ms"] == pytest.approx(75)
    assert (row["s"], row["e"]) == (1700000000000, 1700000000075)
    assert row["function_name"] == "hello"


# -- subscription payloads -------------------------------------------------------------------------

SUB_GROUP = "/aws/lambda/inventory-sync"
SUB_STREAM = "2024/09/01/[3]0a9b8c7d6e5f40312a3b4c5d6e7f8091"
SUB_RID = "deadbeef-0000-4111-8222-333344445555"


def data_message(stream=SUB_STREAM, rid=SUB_RID, base=1725192000000, first_id=1):
    def eid(n):
        return f"3847560012345678901234567890123456789012345678901234{first_id + n:04d}"

    return {
        "messageType": "DATA_MESSAGE",
        "owner": "402118093356",
        "logGroup": SUB_GROUP,
        "logStream": stream,
        "subscriptionFilters": ["lambda-errors-to-firehose"],
        "logEvents": [
            {"id": eid(0), "timestamp": base, "message": f"START RequestId: {rid} Version: 3\n"},
            {
                "id": eid(1),
                "timestamp": base + 30,
                "message": f"2024-09-01T12:00:00.030Z\t{rid}\tERROR\tInvoke Error \t"
                '{"errorType":"RangeError","errorMessage":"quantity must be positive","stack":[]}\n',
            },
            {"id": eid(2), "timestamp": base + 41, "message": f"END RequestId: {rid}\n"},
            {
                "id": eid(3),
                "timestamp": base + 41,
                "message": f"REPORT RequestId: {rid}\tDuration: 40.50 ms\tBilled Duration: 41 ms\t"
                "Memory Size: 128 MB\tMax Memory Used: 70 MB\t\n",
            },
        ],
    }


CONTROL = {
    "messageType": "CONTROL_MESSAGE",
    "owner": "CloudwatchLogs",
    "logGroup": "",
    "logStream": "",
    "subscriptionFilters": [],
    "logEvents": [
        {
            "id": "",
            "timestamp": 1725191990000,
            "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose.",
        }
    ],
}


def _check_subscription(store, payloads):
    expected = [
        (p["logGroup"], p["logStream"], e["id"], e["timestamp"], e["message"])
        for p in payloads
        for e in p["logEvents"]
    ]
    got = store.query(
        "SELECT log_group, log_stream, event_id, epoch_ms(timestamp) AS ts, message, ingestion_time "
        "FROM log_events ORDER BY event_id"
    )
    assert [(g["log_group"], g["log_stream"], g["event_id"], g["ts"], g["message"]) for g in got] == sorted(
        expected, key=lambda x: x[2]
    )
    assert all(g["ingestion_time"] is None for g in got)


def test_subscription_decoded_data_message(ingest, write):
    payload = data_message()
    # the payload's own log group wins over --log-group
    store, counts = ingest(write("decoded.json", jsonio.dumps(payload)), log_group="/aws/lambda/other")
    assert counts["log_events"] == 4
    assert counts["invocations"] == 1
    _check_subscription(store, [payload])
    [row] = store.query("SELECT * FROM invocations")
    assert row["function_name"] == "inventory-sync"
    assert row["log_group"] == SUB_GROUP
    assert row["log_stream"] == SUB_STREAM
    assert row["version"] == "3"
    assert row["status"] == "error"
    assert row["error_type"] == "RangeError"
    assert row["error_message"] == "quantity must be positive"
    assert row["start_time"] == ms(1725192000000)
    assert row["end_time"] == ms(1725192000041)


def test_subscription_awslogs_base64_gzip(ingest, write):
    payload = data_message()
    event = {"awslogs": {"data": ingest.awslogs_data(payload)}}
    store, counts = ingest(write("awslogs.json", jsonio.dumps(event)))
    assert counts["log_events"] == 4
    assert counts["invocations"] == 1
    assert counts["quarantined"] == 0
    _check_subscription(store, [payload])


@pytest.mark.parametrize("members", ["one gzip member", "one member per record"])
def test_firehose_object_with_concatenated_payloads(ingest, write, members):
    first = data_message()
    second = data_message(
        stream="2024/09/01/[3]ffeeddccbbaa99887766554433221100",
        rid="feedface-0000-4111-8222-333344445555",
        base=1725192060000,
        first_id=100,
    )
    records = [jsonio.dumpb(first), jsonio.dumpb(CONTROL), jsonio.dumpb(second)]
    if members == "one gzip member":
        blob = gzip.compress(b"".join(records))
    else:
        blob = b"".join(gzip.compress(r) for r in records)
    store, counts = ingest(write("firehose-1-2024-09-01-12-00-00-abcd", blob))
    # the CONTROL_MESSAGE adds nothing and is not an error
    assert counts == {
        "log_events": 8,
        "invocations": 2,
        "destination_records": 0,
        "dead_letters": 0,
        "quarantined": 0,
    }
    _check_subscription(store, [first, second])
    rows = store.query("SELECT request_id, log_stream FROM invocations ORDER BY request_id")
    assert rows == [
        {"request_id": SUB_RID, "log_stream": SUB_STREAM},
        {"request_id": "feedface-0000-4111-8222-333344445555", "log_stream": second["logStream"]},
    ]


def test_control_message_alone_adds_nothing(ingest, write):
    store, counts = ingest(
        write("control.json", jsonio.dumps({"awslogs": {"data": ingest.awslogs_data(CONTROL)}}))
    )
    assert counts == dict.fromkeys(counts, 0)
    assert set(counts) >= {"log_events", "invocations", "quarantined"}
    assert ingest.totals(store) == dict.fromkeys(ingest.totals(store), 0)


# -- CloudWatch Logs S3 export ---------------------------------------------------------------------


def test_s3_export_object(ingest, write):
    late, early = "aa11bb22-cc33-4d44-8e55-ff6600112233", "0a1b2c3d-0000-4e5f-8a6b-7c8d9e0f1a2b"
    # `<ISO ms>Z <message>` lines joined by "\n"; messages keep their own trailing "\n" (so blank lines
    # appear) and the chunks are not in time order.
    events = [
        ("2024-09-10T14:05:00.000Z", f"START RequestId: {late} Version: $LATEST\n"),
        (
            "2024-09-10T14:05:00.120Z",
            f'2024-09-10T14:05:00.120Z\t{late}\tINFO\tpayload:\n{{\n  "sku": "X-9"\n}}\n',
        ),
        ("2024-09-10T14:05:00.300Z", f"END RequestId: {late}\n"),
        (
            "2024-09-10T14:05:00.300Z",
            f"REPORT RequestId: {late}\tDuration: 299.99 ms\tBilled Duration: 300 ms\tMemory Size: 256 MB\t"
            "Max Memory Used: 90 MB\t\n",
        ),
        ("2024-09-10T14:00:00.000Z", f"START RequestId: {early} Version: $LATEST\n"),
        ("2024-09-10T14:00:00.010Z", f"END RequestId: {early}\n"),
        (
            "2024-09-10T14:00:00.010Z",
            f"REPORT RequestId: {early}\tDuration: 9.87 ms\tBilled Duration: 10 ms\tMemory Size: 256 MB\t"
            "Max Memory Used: 88 MB\t\n",
        ),
    ]
    text = "\n".join(f"{ts} {msg}" for ts, msg in events)
    path = write("000000.gz", gzip.compress(text.encode()))
    store, counts = ingest(path, log_group="/aws/lambda/catalog-api")
    assert counts["log_events"] == 7
    assert counts["invocations"] == 2
    assert counts["quarantined"] == 0
    got = store.query("SELECT log_group, log_stream, timestamp, message FROM log_events")
    assert sorted((g["timestamp"], g["message"]) for g in got) == sorted(
        (dt.datetime.fromisoformat(ts.rstrip("Z")), msg) for ts, msg in events
    )
    assert {(g["log_group"], g["log_stream"]) for g in got} == {("/aws/lambda/catalog-api", None)}
    rows = store.query(
        "SELECT request_id, start_time, end_time, duration_ms, function_name "
        "FROM invocations ORDER BY start_time"
    )
    assert [r["request_id"] for r in rows] == [early, late]
    assert rows[0]["start_time"] == dt.datetime(2024, 9, 10, 14, 0, 0)
    assert rows[0]["end_time"] == dt.datetime(2024, 9, 10, 14, 0, 0, 10000)
    assert rows[0]["duration_ms"] == pytest.approx(9.87)
    assert rows[1]["start_time"] == dt.datetime(2024, 9, 10, 14, 5, 0)
    assert rows[1]["duration_ms"] == pytest.approx(299.99)
    assert {r["function_name"] for r in rows} == {"catalog-api"}


def test_export_permission_check_object_adds_nothing(ingest, write):
    """CloudWatch Logs writes `aws-logs-write-test` containing this text beside every export."""
    store, counts = ingest(write("aws-logs-write-test", "Permission Check Successful"))
    assert counts == {
        "log_events": 0,
        "invocations": 0,
        "destination_records": 0,
        "dead_letters": 0,
        "quarantined": 0,
    }


def test_export_object_under_its_s3_key_gets_the_stream_from_the_key(ingest, tmp_path):
    """An export object synced from S3 keeps its key as its path: <prefix>/<task id>/<stream>/000000.gz."""
    stream = "2026/11/20/[$LATEST]0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    obj = tmp_path / "bucket" / "exports" / "5f0e1d2c-3b4a-4958-8776-655443322110" / stream / "000000.gz"
    obj.parent.mkdir(parents=True)
    rid = "13579bdf-2468-4ace-8bdf-13579bdf2468"
    obj.write_bytes(
        gzip.compress(
            f"2026-11-20T08:00:00.100Z START RequestId: {rid} Version: $LATEST\n\n"
            f"2026-11-20T08:00:00.180Z REPORT RequestId: {rid}\tDuration: 80.00 ms\tBilled Duration: 80 ms\t"
            "Memory Size: 128 MB\tMax Memory Used: 40 MB\t\n".encode()
        )
    )
    store, counts = ingest(obj)
    assert counts["log_events"] == 2 and counts["invocations"] == 1
    assert store.query("SELECT DISTINCT log_stream FROM log_events") == [{"log_stream": stream}]
    assert store.query("SELECT log_stream, status FROM invocations") == [
        {"log_stream": stream, "status": "success"}
    ]
