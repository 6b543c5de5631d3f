"""The lab's runtime emulation against Lambda's documented behaviour (lambda-semantics.md §5) and the
published log captures: environments and cold starts, concurrency, the text and JSON log formats, the
runtime's error records and error objects, timeouts, crashes, out-of-memory, init errors, faults
before and after the handler, and the context object.

Expected values are worked out by hand from those documents, never copied from the lab's output.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import HANDLERS, LabRun, RunLab

from tracekit import jsonio
from tracekit.lab.runtime import LambdaFunction
from tracekit.lab.scenario import FunctionSpec
from tracekit.lab.world import World

START = "2026-11-22T09:00:00Z"
START_MS = 1795338000000
NBSP = "\u00a0"
STREAM_NAME = re.compile(r"^2026/11/22/\[\$LATEST\][0-9a-f]{32}$")
WARNING_PREFIX = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function code."
)


def scenario(
    handler: str,
    events: str,
    *,
    function: str = "",
    retries: int = 0,
    extra: str = "",
    name: str = "rt-fn",
    timeout_s: int = 3,
) -> str:
    """An async scenario around `handler` (a file in tests/lab/handlers) with no retries by default."""
    return f"""
name = "runtime"
start = "{START}"
{extra}
[function]
name = "{name}"
handler = "{{handlers}}/{handler}:handler"
timeout_s = {timeout_s}
{function}
[source]
type = "async"
maximum_retry_attempts = {retries}

{events}
"""


def events_at(*faults: str, gap_s: int = 10, payload: str = "{ order_id = 7 }") -> str:
    """One event per fault (a TOML inline value or ""), `gap_s` apart."""
    blocks = []
    for i, fault in enumerate(faults):
        line = f"fault = {fault}\nfail_times = 1\n" if fault else ""
        blocks.append(f"[[events]]\nat = {i * gap_s}\npayload = {payload}\n{line}")
    return "\n".join(blocks)


def messages(run: LabRun) -> list[str]:
    return [e["message"] for e in run.logs()]


def between(run: LabRun, rid: str) -> list[str]:
    """The messages from `START RequestId: rid` up to its END (text format), in order."""
    out: list[str] = []
    inside = False
    for message in messages(run):
        if message.startswith(f"START RequestId: {rid}"):
            inside = True
            continue
        if message.startswith(f"END RequestId: {rid}"):
            return out
        if inside:
            out.append(message)
    raise AssertionError(f"no END for {rid}")


def report_line(run: LabRun, rid: str, nth: int = 0) -> str:
    return [m for m in messages(run) if m.startswith(f"REPORT RequestId: {rid}")][nth]


def report_fields(line: str) -> dict[str, str]:
    """`REPORT RequestId: x\\tDuration: 1.00 ms\\t...` as {"Duration": "1.00 ms", ...}."""
    fields = {}
    for part in line.rstrip("\n").split("\t"):
        if ": " in part:
            key, _, value = part.partition(": ")
            fields[key] = value
    return fields


def cold_flags(run: LabRun) -> list[bool]:
    """For each attempt in time order: did an INIT_START precede its START in its stream since the
    stream's previous REPORT? (Lambda logs INIT_START only when it initialises an environment.)"""
    flags: list[bool] = []
    init_pending: dict[str, bool] = {}
    for event in run.logs():
        stream, message = event["logStreamName"], event["message"]
        if message.startswith("INIT_START") or '"type":"platform.initStart"' in message:
            init_pending[stream] = True
        elif message.startswith("START RequestId:") or '"type":"platform.start"' in message:
            flags.append(init_pending.pop(stream, False))
    return flags


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


# -- environments ------------------------------------------------------------------------------------------


def test_first_use_is_cold_and_the_environment_is_then_reused_warm(run_lab: RunLab) -> None:
    run = run_lab(scenario("rt_output.py", events_at("", "", "")))
    logs = run.logs()
    assert messages(run)[0].startswith("INIT_START Runtime Version: python:3.12")
    assert cold_flags(run) == [True, False, False]
    streams = {e["logStreamName"] for e in logs}
    assert len(streams) == 1, "one environment, reused"
    assert STREAM_NAME.match(streams.pop())
    rids = [e["event_id"] for e in run.events]
    assert "Init Duration: " in report_line(run, rids[0])
    assert "Init Duration" not in report_line(run, rids[1])
    assert "Init Duration" not in report_line(run, rids[2])


def test_crash_timeout_and_out_of_memory_make_the_next_attempt_cold_but_an_exception_does_not(
    run_lab: RunLab,
) -> None:
    faults = ('""', '"crash"', '""', '"timeout"', '""', '"out_of_memory"', '""', '"error"', '""')
    run = run_lab(scenario("rt_output.py", events_at(*(f if f != '""' else "" for f in faults))))
    assert [e["attempts"][0]["outcome"] for e in run.events] == [
        "success", "crash", "success", "timeout", "success", "out_of_memory", "success", "error", "success",
    ]  # fmt: skip
    # The runtime restarts after a crash, a timeout and running out of memory; an exception the
    # runtime caught leaves the environment warm.
    assert cold_flags(run) == [True, False, True, False, True, False, True, False, False]
    assert len({e["logStreamName"] for e in run.logs()}) == 1


def test_concurrency_caps_environments_and_a_request_finding_none_free_is_throttled(tmp_path: Path) -> None:
    spec = FunctionSpec(
        name="busy-fn",
        handler_file=HANDLERS / "rt_output.py",
        handler_name="handler",
        concurrency=2,
    )
    world = World(START_MS, seed=5, region=spec.region, account=spec.account)
    function = LambdaFunction(spec, world)
    first = function.invoke({"order_id": 1})
    second = function.invoke({"order_id": 2})
    third = function.invoke({"order_id": 3})
    assert (first.outcome, second.outcome, third.outcome) == ("success", "success", "throttled")
    assert first.log_stream != second.log_stream
    assert third.log_stream is None and not third.handler_ran
    assert not any(third.request_id and third.request_id in e.message for e in world.logs)
    world.clock.now = max(first.end, second.end) + 1000
    fourth = function.invoke({"order_id": 4})
    assert fourth.outcome == "success"
    assert fourth.log_stream in (first.log_stream, second.log_stream)
    assert not fourth.cold_start and first.cold_start and second.cold_start
    assert len({e.log_stream for e in world.logs}) == 2


# -- output lines ------------------------------------------------------------------------------------------


def test_print_lines_and_logging_records_in_text_format(run_lab: RunLab) -> None:
    run = run_lab(scenario("rt_output.py", events_at("")))
    rid = run.event()["event_id"]
    lines = between(run, rid)
    assert lines[:3] == ["first print line\n", "two lines\n", "in one print\n"]
    records = lines[3:]
    assert len(records) == 3
    for record, (level, text) in zip(
        records,
        [("INFO", "processing order 7"), ("WARNING", "stock is low"), ("ERROR", "card declined")],
        strict=True,
    ):
        tag, ts, request_id, message = record.split("\t")
        assert (tag, request_id, message) == (f"[{level}]", rid, text + "\n")
        assert re.fullmatch(r"2026-11-22T09:00:00\.\d{3}Z", ts)
    by_message = {e["message"]: e for e in run.logs()}
    info = by_message[records[0]]
    assert records[0].split("\t")[1] == datetime.fromtimestamp(info["timestamp"] / 1000, UTC).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z"), "a logging record's time is its log event's time"


def test_unhandled_exception_is_one_event_with_nbsp_indented_traceback(run_lab: RunLab) -> None:
    run = run_lab(scenario("rt_raise.py", events_at("")))
    rid = run.event()["event_id"]
    lines = between(run, rid)
    assert lines[0] == "charging order 7\n"
    assert len(lines) == 2, "the warning, the error and its traceback are one log event"
    expected = (
        WARNING_PREFIX,
        "\r[ERROR] ValueError: card declined for order 7\r"
        "Traceback (most recent call last):\r"
        f'{NBSP * 2}File "/var/task/rt_raise.py", line 6, in handler\r'
        f"{NBSP * 4}return charge(event)\r"
        f'{NBSP * 2}File "/var/task/rt_raise.py", line 10, in charge\r'
        f"{NBSP * 4}raise ValueError(f\"card declined for order {{event['order_id']}}\")\n",
    )
    assert lines[1].startswith(expected[0])
    assert lines[1].endswith("runtimes-update.html" + expected[1])


def test_telemetry_sink_writes_the_warning_and_the_error_record_as_two_events(run_lab: RunLab) -> None:
    run = run_lab(scenario("rt_raise.py", events_at(""), function='log_sink = "telemetry"'))
    rid = run.event()["event_id"]
    warning, record = between(run, rid)[1:]
    assert warning.startswith(WARNING_PREFIX) and warning.endswith("runtimes-update.html\r")
    assert record == (
        "[ERROR] ValueError: card declined for order 7\n"
        "Traceback (most recent call last):\n"
        f'{NBSP * 2}File "/var/task/rt_raise.py", line 6, in handler\n'
        f"{NBSP * 4}return charge(event)\n"
        f'{NBSP * 2}File "/var/task/rt_raise.py", line 10, in charge\n'
        f"{NBSP * 4}raise ValueError(f\"card declined for order {{event['order_id']}}\")"
    ), "a telemetry frame keeps \\n inside and has no final newline (as in the f06 capture)"


def test_error_object_names_type_message_request_id_and_var_task_frames(run_lab: RunLab) -> None:
    run = run_lab(
        scenario("rt_raise.py", events_at(""), extra="[destinations]\non_failure = 'sqs:rt-failures'")
    )
    rid = run.event()["event_id"]
    [record] = run.bodies("rt-failures")
    assert record["responsePayload"] == {
        "errorMessage": "card declined for order 7",
        "errorType": "ValueError",
        "requestId": rid,
        "stackTrace": [
            '  File "/var/task/rt_raise.py", line 6, in handler\n    return charge(event)\n',
            '  File "/var/task/rt_raise.py", line 10, in charge\n'
            "    raise ValueError(f\"card declined for order {event['order_id']}\")\n",
        ],
    }


def test_error_object_keeps_standard_library_frames_where_lambda_has_them(run_lab: RunLab) -> None:
    run = run_lab(
        scenario(
            "rt_stdlib.py",
            events_at("", payload='{ body = "{not json" }'),
            extra="[destinations]\non_failure = 'sqs:rt-failures'",
        )
    )
    [record] = run.bodies("rt-failures")
    error = record["responsePayload"]
    assert error["errorType"] == "JSONDecodeError"
    frames = error["stackTrace"]
    assert (
        frames[0]
        == '  File "/var/task/rt_stdlib.py", line 7, in handler\n    return json.loads(event["body"])\n'
    )
    assert len(frames) > 1
    assert all(f.startswith('  File "/var/lang/lib/python3.12/json/') for f in frames[1:])
    assert not any("tracekit" in f for f in frames), "the lab's own frames never show"


# -- timeouts, crashes, out of memory ----------------------------------------------------------------------


@pytest.mark.parametrize("style", ["new", "old"])
def test_timeout_lines_and_error_payload(run_lab: RunLab, style: str) -> None:
    run = run_lab(
        scenario(
            "rt_output.py",
            events_at('"timeout"'),
            function=f'timeout_style = "{style}"',
            extra="[destinations]\non_failure = 'sqs:rt-failures'",
        )
    )
    event = run.event()
    rid = event["event_id"]
    [attempt] = event["attempts"]
    assert attempt["outcome"] == "timeout"
    report = report_fields(report_line(run, rid))
    duration = float(report["Duration"].removesuffix(" ms"))
    assert duration >= 3000.0, "a timed-out attempt ran for the whole 3 s"
    assert ms(attempt["end"]) - ms(attempt["start"]) >= 3000
    [record] = run.bodies("rt-failures")
    timed_out = [m for m in messages(run) if "Task timed out" in m]
    if style == "new":
        assert report["Status"] == "timeout"
        assert "Error Type" not in report
        assert timed_out == []
        assert record["responsePayload"] == {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {rid} Error: Task timed out after 3.00 seconds",
        }
    else:
        assert "Status" not in report
        [line] = timed_out
        assert re.fullmatch(
            rf"2026-11-22T09:00:0\d\.\d{{3}}Z {rid} Task timed out after 3\.00 seconds\n+", line
        )
        assert line in between(run, rid), "the old-style line comes before END"
        assert record["responsePayload"] == {"errorMessage": line.rstrip("\n")}
    # The handler did its work before the runtime stopped it (a timeout strikes after by default).
    assert "first print line\n" in between(run, rid)


@pytest.mark.parametrize(
    ("fault", "error_type", "old_line"),
    [
        ("crash", "Runtime.ExitError", "Runtime exited without providing a reason"),
        ("out_of_memory", "Runtime.OutOfMemory", "Runtime exited with error: signal: killed"),
    ],
)
@pytest.mark.parametrize("style", ["new", "old"])
def test_crash_and_out_of_memory_lines(
    run_lab: RunLab, fault: str, error_type: str, old_line: str, style: str
) -> None:
    run = run_lab(
        scenario(
            "rt_output.py",
            events_at(f'"{fault}"'),
            function=f'timeout_style = "{style}"\nmemory_mb = 256',
            extra="[destinations]\non_failure = 'sqs:rt-failures'",
        )
    )
    event = run.event()
    rid = event["event_id"]
    assert event["attempts"][0]["outcome"] == fault
    report = report_fields(report_line(run, rid))
    assert report["Memory Size"] == "256 MB"
    used = int(report["Max Memory Used"].removesuffix(" MB"))
    if fault == "out_of_memory":
        assert used == 256, "killed at the memory limit"
    else:
        assert used < 256
    if style == "new":
        assert (report["Status"], report["Error Type"]) == ("error", error_type)
        assert not any(m.startswith("RequestId: ") for m in messages(run))
    else:
        assert "Status" not in report
        assert f"RequestId: {rid} Error: {old_line}\nRuntime.ExitError\n" in between(run, rid)
    [record] = run.bodies("rt-failures")
    assert record["responsePayload"] == {
        "errorType": error_type,
        "errorMessage": f"RequestId: {rid} Error: {old_line}",
    }
    # A `before` fault (the default for crash and out-of-memory) strikes before the handler runs,
    # but the event was handed to the function: it is a delivery, as the logs show it.
    assert "first print line\n" not in between(run, rid)
    assert event["deliveries"] == 1


# -- init errors -------------------------------------------------------------------------------------------


def test_injected_init_error_fails_init_and_invoke_phases_and_leaves_the_next_attempt_cold(
    run_lab: RunLab,
) -> None:
    run = run_lab(scenario("rt_output.py", events_at('"init_error"', "")))
    broken, fine = run.events
    rid = broken["event_id"]
    assert broken["attempts"][0]["outcome"] == "init_error"
    assert broken["deliveries"] == 0
    assert fine["attempts"][0]["outcome"] == "success"
    init_reports = [m for m in messages(run) if m.startswith("INIT_REPORT")]
    assert [report_fields(m)["Phase"] for m in init_reports] == ["init", "invoke"]
    for line in init_reports:
        fields = report_fields(line)
        assert (fields["Status"], fields["Error Type"]) == ("error", "Runtime.ImportModuleError")
    report = report_fields(report_line(run, rid))
    assert (report["Status"], report["Error Type"]) == ("error", "Runtime.ImportModuleError")
    assert cold_flags(run) == [True, True]


def test_a_module_that_fails_to_import_is_an_init_error_every_time(run_lab: RunLab) -> None:
    run = run_lab(scenario("rt_broken_import.py", events_at("", ""), retries=1))
    expected_record = (
        "[ERROR] Runtime.ImportModuleError: Unable to import module 'rt_broken_import': "
        "No module named 'tracekit_lab_missing_dependency'\rTraceback (most recent call last):\n"
    )
    for event in run.events:
        assert [a["outcome"] for a in event["attempts"]] == ["init_error", "init_error"]
        assert event["deliveries"] == 0
        assert event["outcome"] == "dropped"
    # Each attempt tries the init phase and once more inside the invoke phase.
    assert messages(run).count(expected_record) == 8
    assert cold_flags(run) == [True] * 4


# -- faults before and after the handler -------------------------------------------------------------------


@pytest.mark.parametrize(("when", "ran"), [("after", True), ("before", False)])
def test_after_faults_run_the_handler_first_and_before_faults_do_not(
    run_lab: RunLab, tmp_path: Path, when: str, ran: bool
) -> None:
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    fault = f'{{ kind = "error", type = "LedgerLost", when = "{when}" }}'
    run = run_lab(
        scenario("rt_side_effect.py", events_at(fault, payload=f'{{ order_id = 9, ledger = "{ledger}" }}'))
    )
    event = run.event()
    assert event["attempts"][0]["outcome"] == "error"
    # Either way the function was invoked with the event: a delivery, as the logs show it.
    assert event["deliveries"] == 1
    assert ledger.read_text().splitlines() == ([event["event_id"]] if ran else [])
    printed = "ledger entry written for 9\n" in between(run, event["event_id"])
    assert printed is ran
    error_lines = [m for m in messages(run) if "[ERROR] LedgerLost: " in m]
    assert len(error_lines) == 1, "the injected fault is reported like any unhandled exception"


# -- the context object ------------------------------------------------------------------------------------


def test_context_carries_what_the_python_runtime_gives(run_lab: RunLab) -> None:
    run = run_lab(
        scenario(
            "rt_context.py",
            events_at(""),
            function="memory_mb = 512",
            name="ctx-fn",
            timeout_s=5,
        )
    )
    event = run.event()
    rid = event["event_id"]
    [line] = [e for e in run.logs() if e["message"].startswith("context ")]
    seen = jsonio.loads(line["message"].removeprefix("context "))
    assert seen == {
        "aws_request_id": rid,
        "function_name": "ctx-fn",
        "function_version": "$LATEST",
        "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:ctx-fn",
        "memory_limit_in_mb": "512",
        "log_group_name": "/aws/lambda/ctx-fn",
        "log_stream_name": line["logStreamName"],
        "remaining_ms": 5000,
    }


# -- JSON log format ---------------------------------------------------------------------------------------


def json_records(run: LabRun) -> list[Any]:
    out = []
    for message in messages(run):
        try:
            out.append(jsonio.loads(message))
        except ValueError:
            out.append(message)
    return out


def test_json_format_platform_records(run_lab: RunLab) -> None:
    run = run_lab(scenario("rt_output.py", events_at("", "", '"timeout"'), function='log_format = "json"'))
    rids = [e["event_id"] for e in run.events]
    records = [r for r in json_records(run) if isinstance(r, dict) and "type" in r]
    kinds = [r["type"] for r in records]
    assert kinds == ["platform.initStart"] + ["platform.start", "platform.report"] * 3
    init = records[0]["record"]
    assert (init["initializationType"], init["phase"], init["functionName"], init["functionVersion"]) == (
        "on-demand", "init", "rt-fn", "$LATEST",
    )  # fmt: skip
    assert init["runtimeVersion"].startswith("python:3.12")
    starts = [r["record"] for r in records if r["type"] == "platform.start"]
    assert starts == [{"requestId": rid, "version": "$LATEST"} for rid in rids]
    reports = [r["record"] for r in records if r["type"] == "platform.report"]
    assert [r["requestId"] for r in reports] == rids
    assert [r["status"] for r in reports] == ["success", "success", "timeout"]
    assert list(reports[0]) == ["requestId", "metrics", "status"], "the key order of the f18 capture"
    assert set(reports[0]["metrics"]) == {
        "durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB", "initDurationMs",
    }  # fmt: skip
    assert "initDurationMs" not in reports[1]["metrics"]
    assert reports[2]["metrics"]["durationMs"] >= 3000
    for record in records:
        assert re.fullmatch(r"2026-11-22T09:0\d:\d\d\.\d{3}Z", record["time"])
    assert not any(isinstance(m, str) and m.startswith(("START", "END", "REPORT")) for m in json_records(run))


def test_json_format_application_lines(run_lab: RunLab) -> None:
    run = run_lab(scenario("rt_output.py", events_at(""), function='log_format = "json"'))
    rid = run.event()["event_id"]
    plain = [m for m in messages(run) if not m.startswith("{")]
    assert plain == ["first print line\n", "two lines\n", "in one print\n"], "print output stays text"
    app = [jsonio.loads(m) for m in messages(run) if m.startswith('{"timestamp"')]
    assert [(r["level"], r["message"], r["logger"], r["requestId"]) for r in app] == [
        ("INFO", "processing order 7", "root", rid),
        ("WARNING", "stock is low", "root", rid),
        ("ERROR", "card declined", "payments", rid),
    ]
    assert all(m.endswith("}\n") for m in messages(run) if m.startswith('{"timestamp"'))


def test_json_format_unhandled_exception_is_the_warning_joined_by_cr_to_a_json_error_record(
    run_lab: RunLab,
) -> None:
    run = run_lab(scenario("rt_raise.py", events_at(""), function='log_format = "json"'))
    rid = run.event()["event_id"]
    [event] = [m for m in messages(run) if m.startswith("LAMBDA_WARNING")]
    warning, _, record_text = event.partition("\r")
    assert warning.startswith(WARNING_PREFIX)
    assert record_text.endswith("}\n")
    record = jsonio.loads(record_text)
    assert (record["log_level"], record["errorType"], record["errorMessage"], record["requestId"]) == (
        "ERROR", "ValueError", "card declined for order 7", rid,
    )  # fmt: skip
    assert (
        record["stackTrace"][0]
        == '  File "/var/task/rt_raise.py", line 6, in handler\n    return charge(event)\n'
    )
    [report] = [r for r in json_records(run) if isinstance(r, dict) and r.get("type") == "platform.report"]
    assert report["record"]["status"] == "error"


# -- the strongest oracle: tracekit's own ingest reads the lab's logs back ---------------------------------

ORACLE_FAULTS = (
    "",
    '{ kind = "error", type = "PaymentDeclined" }',
    '"timeout"',
    '"crash"',
    '"out_of_memory"',
    '"init_error"',
    "",
)
# By hand from §5: what each attempt is, its error type, and whether it starts cold (the first use,
# and after a timeout, a crash, running out of memory or a failed init, the runtime starts over).
ORACLE_EXPECTED = [
    ("success", None, True),
    ("error", "PaymentDeclined", False),
    ("timeout", "Sandbox.Timedout", False),
    ("crash", "Runtime.ExitError", True),
    ("out_of_memory", "Runtime.OutOfMemory", True),
    ("init_error", "Runtime.ImportModuleError", True),
    ("success", None, True),
]


def assert_ingest_agrees(run: LabRun, expected: list[tuple[str, str | None, bool]]) -> None:
    assert run.quarantined() == []
    attempts = [a for e in run.events for a in e["attempts"]]
    rows = run.invocations()
    assert [a["outcome"] for a in attempts] == [o for o, _, _ in expected], "the lab ran what was asked"
    assert len(rows) == len(attempts)
    for attempt, row, (outcome, error_type, cold) in zip(attempts, rows, expected, strict=True):
        assert row["request_id"] == attempt["request_id"]
        assert (row["status"], row["error_type"], row["cold_start"]) == (outcome, error_type, cold), attempt
        assert (row["init_duration_ms"] is not None) is cold
        start = row["start_time"].replace(tzinfo=UTC)
        assert int(start.timestamp() * 1000) == ms(attempt["start"])
        assert abs(row["duration_ms"] - (ms(attempt["end"]) - ms(attempt["start"]))) <= 1.01


@pytest.mark.parametrize(
    ("log_format", "style", "sink"),
    [
        ("text", "new", "telemetry"),
        ("text", "old", "telemetry"),
        ("json", "new", "stdout"),
        ("json", "old", "stdout"),
        ("json", "new", "telemetry"),
        ("text", "new", "stdout"),
        ("text", "old", "stdout"),
    ],
)
def test_ingest_reads_back_every_attempt_as_truth_has_it(
    run_lab: RunLab, log_format: str, style: str, sink: str
) -> None:
    function = f'log_format = "{log_format}"\ntimeout_style = "{style}"\nlog_sink = "{sink}"'
    run = run_lab(scenario("rt_output.py", events_at(*ORACLE_FAULTS), function=function))
    assert_ingest_agrees(run, ORACLE_EXPECTED)


@pytest.mark.parametrize("style", ["new", "old"])
def test_ingest_reads_back_runtime_failures_in_text_format_on_stdout(run_lab: RunLab, style: str) -> None:
    without_exceptions = [f for f in ORACLE_FAULTS if "PaymentDeclined" not in f]
    expected = [e for e in ORACLE_EXPECTED if e[0] != "error"]
    expected[1] = ("timeout", "Sandbox.Timedout", False)
    function = f'timeout_style = "{style}"'
    run = run_lab(scenario("rt_output.py", events_at(*without_exceptions), function=function))
    assert_ingest_agrees(run, expected)


def test_sys_exit_in_the_handler_is_a_runtime_crash_and_the_next_attempt_starts_cold(run_lab: RunLab) -> None:
    # sys.exit ends the runtime process: Lambda reports Runtime.ExitError and must initialise again.
    events = (
        "[[events]]\npayload = { order_id = 1, exit = true }\n\n"
        "[[events]]\nat = 10\npayload = { order_id = 2 }\n"
    )
    run = run_lab(scenario("rt_exit.py", events))
    first, second = run.events
    assert [a["outcome"] for a in first["attempts"]] == ["crash"]
    assert first["outcome"] == "dropped"
    assert [a["outcome"] for a in second["attempts"]] == ["success"]
    [report] = [m for m in messages(run) if m.startswith(f"REPORT RequestId: {first['event_id']}")]
    assert "Status: error\tError Type: Runtime.ExitError" in report
    assert sum(m.startswith("INIT_START") for m in messages(run)) == 2


def test_an_init_error_fault_on_a_warm_environment_initialises_it_again(run_lab: RunLab) -> None:
    # The first event warms the only environment; the second must go through a (failing) init.
    run = run_lab(scenario("rt_output.py", events_at("", '"init_error"')))
    first, second = run.events
    assert [a["outcome"] for a in second["attempts"]] == ["init_error"]
    assert sum(m.startswith("INIT_START") for m in messages(run)) == 2
    assert sum(m.startswith("INIT_REPORT") for m in messages(run)) == 2  # init phase, then invoke phase
