"""The log lines the Lambda service and the Python runtime write, in text and JSON log format.

Each function returns one CloudWatch log event's message, shaped like the published captures:
tab-separated REPORT fields, tracebacks indented with non-breaking spaces, the 2024 `Status:` field
on REPORT ("new" style) or the older `Task timed out` / `Runtime exited` lines ("old" style).
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
    "information, see https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html"
)
NBSP = "\u00a0"

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

    def __init__(self, region: str) -> None:
        self.region = region

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
        trace = "".join(_nbsp(frame) for frame in error.get("stackTrace", []))
        return [UNHANDLED_WARNING + "\n", _error_record(error) + trace]

    def init_error(self, at: float, error: dict[str, Any]) -> list[str]:
        return [_error_record(error)]

    def old_style_timeout(self, at: float, request_id: str, timeout_s: float) -> str:
        return f"{iso_ms(at)} {request_id} Task timed out after {timeout_s:.2f} seconds\n\n"

    def old_style_exit(self, request_id: str, kind: str) -> str:
        return f"RequestId: {request_id} Error: {SYSTEM_ERRORS[kind][1]}\nRuntime.ExitError\n"


class JsonFormat:
    """Lambda's JSON log format (LogFormat=JSON): platform.* records and JSON application records."""

    json = True

    def __init__(self, region: str) -> None:
        self.region = region

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
        return jsonio.dumps(
            {
                "timestamp": iso_ms(at),
                "level": level,
                "message": message,
                "logger": logger,
                "requestId": request_id,
            }
        )

    def unhandled(self, at: float, request_id: str, error: dict[str, Any]) -> list[str]:
        record = {
            "timestamp": iso_ms(at),
            "log_level": "ERROR",
            "errorMessage": error["errorMessage"],
            "errorType": error["errorType"],
            "requestId": request_id,
            "stackTrace": error.get("stackTrace", []),
        }
        return [UNHANDLED_WARNING + "\r" + jsonio.dumps(record)]

    def init_error(self, at: float, error: dict[str, Any]) -> list[str]:
        record = {
            "timestamp": iso_ms(at),
            "log_level": "ERROR",
            "errorMessage": error["errorMessage"],
            "errorType": error["errorType"],
            "requestId": "",
            "stackTrace": [],
        }
        return [jsonio.dumps(record)]

    def old_style_timeout(self, at: float, request_id: str, timeout_s: float) -> str | None:
        return None  # the JSON format reports timeouts only in platform.report

    def old_style_exit(self, request_id: str, kind: str) -> str | None:
        return None


def _error_record(error: dict[str, Any]) -> str:
    """The Python runtime's text-format error record, up to the traceback's frames."""
    return f"[ERROR] {error['errorType']}: {error['errorMessage']}\nTraceback (most recent call last):\n"


def _nbsp(frame: str) -> str:
    """Lambda indents traceback lines with non-breaking spaces instead of spaces."""
    lines = frame.splitlines(keepends=True)
    return "".join(NBSP * (len(line) - len(line.lstrip(" "))) + line.lstrip(" ") for line in lines)


LogFormat = TextFormat | JsonFormat


def log_format(name: str, region: str) -> LogFormat:
    return JsonFormat(region) if name == "json" else TextFormat(region)
