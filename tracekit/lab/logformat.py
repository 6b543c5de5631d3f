"""The log lines the Lambda service and the Python runtime write, in text and JSON log format.

Each function returns one CloudWatch log event's message, shaped like the published captures:
tab-separated REPORT fields, tracebacks indented with non-breaking spaces, the 2024 `Status:` field
on REPORT ("new" style) or the older `Task timed out` / `Runtime exited` lines ("old" style).

How the Python runtime writes its own error records depends on its log sink (`log_sink`): on stdout
("stdout") the lines of a record are joined by `\r` and end with a newline, and the LAMBDA_WARNING
(which ends in `\r`) runs into the error record, so the whole report is ONE log event (the 2024
JSON-format capture shows exactly that); through the telemetry pipe ("telemetry") each write is a
frame of its own: the warning is one event and the error record another, lines joined by `\n`
with no final newline (the console capture f06 shows that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tracekit import jsonio
from tracekit.lab.world import iso_ms

RUNTIME_VERSION = "python:3.12.v38"
RUNTIME_VERSION_ARN = (
    "arn:aws:lambda:{region}::runtime:7b620fc2e66107a1046b140b9d320295811af3ad5d4c6a011fad1fa65127e9e6"
)
UNHANDLED_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function code. However, "
    "in rare cases, a Lambda runtime update can cause unexpected function behavior. For functions using "
    "managed runtimes, runtime updates can be triggered by a function change, or can be applied "
    "automatically. To determine if the runtime has been updated, check the runtime version in the "
    "INIT_START log entry. If this error correlates with a change in the runtime version, you may be able "
    "to mitigate this error by temporarily rolling back to the previous runtime version. For more "
    "information, see https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html\r"
)
NBSP = "\u00a0"
LOG_SINKS = ("stdout", "telemetry")

# Error type and the runtime's message per failure kind that is not an exception from the handler.
SYSTEM_ERRORS = {
    "crash": ("Runtime.ExitError", "Runtime exited without providing a reason"),
    "out_of_memory": ("Runtime.OutOfMemory", "Runtime exited with error: signal: killed"),
}


@dataclass(frozen=True)
class Report:
    """The numbers on a REPORT line / platform.report record."""

    request_id: str
    duration_ms: float
    memory_mb: int
    max_memory_mb: int
    init_ms: float | None = None
    status: str = "success"  # success | error | timeout
    error_type: str | None = None
    trace_id: str | None = None
    segment_id: str | None = None

    @property
    def billed_ms(self) -> int:
        # Recent captures bill the init phase of a cold start too.
        return math.ceil(self.duration_ms + (self.init_ms or 0.0))


class TextFormat:
    """Lambda's text log format."""

    json = False

    def __init__(self, region: str, sink: str = "stdout") -> None:
        self.region = region
        self.sink = sink

    def init_start(self, at: float, function_name: str, version: str) -> str:
        arn = RUNTIME_VERSION_ARN.format(region=self.region)
        return f"INIT_START Runtime Version: {RUNTIME_VERSION}\tRuntime Version ARN: {arn}\n"

    def start(self, at: float, request_id: str, version: str, trace: str | None) -> str:
        return f"START RequestId: {request_id} Version: {version}\n"

    def end(self, request_id: str) -> str:
        return f"END RequestId: {request_id}\n"

    def report(self, at: float, report: Report, new_style: bool) -> str:
        fields = [
            f"REPORT RequestId: {report.request_id}",
            f"Duration: {report.duration_ms:.2f} ms",
            f"Billed Duration: {report.billed_ms} ms",
            f"Memory Size: {report.memory_mb} MB",
            f"Max Memory Used: {report.max_memory_mb} MB",
        ]
        if report.init_ms is not None:
            fields.append(f"Init Duration: {report.init_ms:.2f} ms")
        if new_style and (report.status == "timeout" or report.error_type):
            fields.append(f"Status: {report.status}")
            if report.error_type:
                fields.append(f"Error Type: {report.error_type}")
        text = "\t".join(fields) + "\t\n"
        if report.trace_id:
            text += f"XRAY TraceId: {report.trace_id}\tSegmentId: {report.segment_id}\tSampled: true\t\n"
        return text

    def init_report(self, at: float, init_ms: float, phase: str, error_type: str) -> str:
        return (
            f"INIT_REPORT Init Duration: {init_ms:.2f} ms\tPhase: {phase}\tStatus: error\t"
            f"Error Type: {error_type}\n"
        )

    def print_line(self, at: float, request_id: str, text: str) -> str:
        return text + "\n"

    def log_record(self, at: float, request_id: str, level: str, message: str, logger: str) -> str:
        return f"[{level}]\t{iso_ms(at)}\t{request_id}\t{message}\n"

    def unhandled(self, at: float, request_id: str, error: dict[str, Any]) -> list[str]:
        return _runtime_writes(self.sink, UNHANDLED_WARNING, _record(self.sink, _error_lines(error)))

    def init_error(self, at: float, error: dict[str, Any]) -> list[str]:
        return _runtime_writes(self.sink, _record(self.sink, _error_lines(error)))

    def old_style_timeout(self, at: float, request_id: str, timeout_s: float) -> str:
        return f"{iso_ms(at)} {request_id} Task timed out after {timeout_s:.2f} seconds\n\n"

    def old_style_exit(self, request_id: str, kind: str) -> str:
        return f"RequestId: {request_id} Error: {SYSTEM_ERRORS[kind][1]}\nRuntime.ExitError\n"


class JsonFormat:
    """Lambda's JSON log format (LogFormat=JSON): platform.* records and JSON application records."""

    json = True

    def __init__(self, region: str, sink: str = "stdout") -> None:
        self.region = region
        self.sink = sink

    def _platform(self, at: float, type_: str, record: dict[str, Any]) -> str:
        return jsonio.dumps({"time": iso_ms(at), "type": f"platform.{type_}", "record": record})

    def init_start(self, at: float, function_name: str, version: str) -> str:
        return self._platform(
            at,
            "initStart",
            {
                "initializationType": "on-demand",
                "phase": "init",
                "runtimeVersion": RUNTIME_VERSION,
                "runtimeVersionArn": RUNTIME_VERSION_ARN.format(region=self.region),
                "functionName": function_name,
                "functionVersion": version,
            },
        )

    def start(self, at: float, request_id: str, version: str, trace: str | None) -> str:
        record: dict[str, Any] = {"requestId": request_id, "version": version}
        if trace:
            record["tracing"] = {
                "spanId": trace.split("Parent=")[-1][:16],
                "type": "X-Amzn-Trace-Id",
                "value": trace,
            }
        return self._platform(at, "start", record)

    def end(self, request_id: str) -> str | None:
        return None  # JSON format has no END line; runtimeDone is off at the default system log level

    def report(self, at: float, report: Report, new_style: bool) -> str:
        metrics: dict[str, Any] = {
            "durationMs": round(report.duration_ms, 3),
            "billedDurationMs": report.billed_ms,
            "memorySizeMB": report.memory_mb,
            "maxMemoryUsedMB": report.max_memory_mb,
        }
        if report.init_ms is not None:
            metrics["initDurationMs"] = round(report.init_ms, 3)
        record: dict[str, Any] = {"requestId": report.request_id, "metrics": metrics, "status": report.status}
        if report.error_type:
            record["errorType"] = report.error_type
        if report.trace_id:
            record["tracing"] = {
                "spanId": report.segment_id,
                "type": "X-Amzn-Trace-Id",
                "value": report.trace_id,
            }
        return self._platform(at, "report", record)

    def init_report(self, at: float, init_ms: float, phase: str, error_type: str) -> str:
        record = {
            "initializationType": "on-demand",
            "phase": phase,
            "status": "error",
            "errorType": error_type,
            "metrics": {"durationMs": round(init_ms, 3)},
        }
        return self._platform(at, "initReport", record)

    def print_line(self, at: float, request_id: str, text: str) -> str:
        return text + "\n"

    def log_record(self, at: float, request_id: str, level: str, message: str, logger: str) -> str:
        record = {
            "timestamp": iso_ms(at),
            "level": level,
            "message": message,
            "logger": logger,
            "requestId": request_id,
        }
        return jsonio.dumps(record) + "\n"

    def unhandled(self, at: float, request_id: str, error: dict[str, Any]) -> list[str]:
        record = _json_error(at, error, request_id)
        return _runtime_writes(self.sink, UNHANDLED_WARNING, _record(self.sink, [record]))

    def init_error(self, at: float, error: dict[str, Any]) -> list[str]:
        return _runtime_writes(self.sink, _record(self.sink, [_json_error(at, error, "")]))

    def old_style_timeout(self, at: float, request_id: str, timeout_s: float) -> str | None:
        return None  # the JSON format reports timeouts only in platform.report

    def old_style_exit(self, request_id: str, kind: str) -> str | None:
        return None


def _error_lines(error: dict[str, Any]) -> list[str]:
    """The lines of the Python runtime's text-format error record: `[ERROR] Type: message`, then the
    traceback header and each frame line, its indentation turned into non-breaking spaces."""
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}", "Traceback (most recent call last):"]
    for frame in error.get("stackTrace", []):
        for line in frame.splitlines() or [""]:
            stripped = line.lstrip(" ")
            lines.append(NBSP * (len(line) - len(stripped)) + stripped)
    return lines


def _json_error(at: float, error: dict[str, Any], request_id: str) -> str:
    """The Python runtime's JSON-format error record (its timestamp has whole seconds)."""
    record = {
        "timestamp": iso_ms(at)[:19] + "Z",
        "log_level": "ERROR",
        "errorMessage": error["errorMessage"],
        "errorType": error["errorType"],
        "requestId": request_id,
        "stackTrace": error.get("stackTrace", []),
    }
    return jsonio.dumps(record)


def _record(sink: str, lines: list[str]) -> str:
    """One runtime error record as written to its sink: `\r`-joined lines ending in a newline on
    stdout, so that the record stays one log event; `\n`-joined in one telemetry frame."""
    return "\r".join(lines) + "\n" if sink == "stdout" else "\n".join(lines)


def _runtime_writes(sink: str, *writes: str) -> list[str]:
    """The log events that consecutive writes of the runtime become.

    Each telemetry write is a frame, hence an event. On stdout an event ends at each newline, so
    the warning (which ends in `\r`) and the record after it run together.
    """
    if sink == "telemetry":
        return list(writes)
    events = [part + "\n" for part in "".join(writes).split("\n")]
    events[-1] = events[-1][:-1]
    return [event for event in events if event]


LogFormat = TextFormat | JsonFormat


def log_format(name: str, region: str, sink: str = "stdout") -> LogFormat:
    return JsonFormat(region, sink) if name == "json" else TextFormat(region, sink)
