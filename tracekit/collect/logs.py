"""CloudWatch log events from every shape they arrive in, as columns ready for the store.

Plain Lambda log text and CloudWatch Logs S3 export objects are cut into events here, in Python;
`aws logs filter-log-events` NDJSON is read by DuckDB directly (see `ndjson_select`), because it is
the shape that gets big. Everything else that carries log events is JSON and is handed over event
by event by `tracekit.collect.documents`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

_HEAD = re.compile(
    r"^(?:START RequestId: |END RequestId: |REPORT RequestId: |INIT_START|INIT_REPORT|RESTORE_REPORT"
    r"|EXTENSION|TELEMETRY|RequestId: \S+ |LAMBDA_WARNING|\[[A-Z]+\]\t|\[ERROR\] "
    r"|\d{4}-\d\d-\d\dT[\d:.]+Z[\t ]|\{\"(?:time|timestamp|level)\")"
)
# Records the runtime writes over several lines: what follows belongs to them until the next head.
_ABSORBS = re.compile(
    r"^(?:REPORT RequestId: |RequestId: |\[[A-Z]+\]\t|\[ERROR\] |\d{4}-\d\d-\d\dT[\d:.]+Z\t)"
)
_CONTINUATION = re.compile(
    r"^(?:[ \t\u00a0]|Traceback \(most recent call last\)|XRAY TraceId|(?:Runtime|Sandbox|Extension)\.\w+$)"
)
# The platform's END/REPORT can follow a record that lacked a final newline on the same line.
_GLUED = re.compile(r"(?<=\S)(?=(?:START|END|REPORT) RequestId: )")
_EXPORT_HEAD = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (.*)$", re.S)
# Lines only Lambda writes; a text file without any of them is not a Lambda log.
_LAMBDA_MARKER = re.compile(
    r"^(?:START|END|REPORT) RequestId: |^(?:INIT_START|INIT_REPORT|RESTORE_REPORT) |^RequestId: \S+ "
    r"|^\[[A-Z]+\]\t\d{4}-\d\d-\d\dT[^\t]*\t[^\t]+\t|^\d{4}-\d\d-\d\dT[\d:.]+Z\t[^\t]+\t",
    re.M,
)
_GROUP_HINT = re.compile(r"AWS_LAMBDA_LOG_GROUP_NAME['\"]?\s*[:=]\s*['\"]([^'\"]+)['\"]")

LOG_ROW_SCHEMA = pa.schema(
    [
        ("log_group", pa.string()),
        ("log_stream", pa.string()),
        ("ts_ms", pa.int64()),
        ("ingest_ms", pa.int64()),
        ("event_id", pa.string()),
        ("message", pa.string()),
        ("position", pa.string()),
        ("seq", pa.int64()),
        ("time_ordered", pa.bool_()),
        ("dup", pa.int64()),
    ]
)


def iso_to_ms(value: str) -> int | None:
    """Milliseconds since the epoch for an ISO-8601 time; None when it is not one."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


@dataclass
class LogRows:
    """Log events collected column by column, in the order they were read."""

    columns: dict[str, list[object]] = field(default_factory=lambda: {f.name: [] for f in LOG_ROW_SCHEMA})
    _seen: Counter[tuple[object, ...]] = field(default_factory=Counter)

    def add(
        self,
        *,
        message: str,
        position: str,
        log_group: str | None = None,
        log_stream: str | None = None,
        ts_ms: int | None = None,
        ingest_ms: int | None = None,
        event_id: str | None = None,
        time_ordered: bool = True,
    ) -> None:
        key = (log_group, log_stream, ts_ms, message)
        dup = self._seen[key]
        self._seen[key] += 1
        cols = self.columns
        cols["log_group"].append(log_group)
        cols["log_stream"].append(log_stream)
        cols["ts_ms"].append(ts_ms)
        cols["ingest_ms"].append(ingest_ms)
        cols["event_id"].append(event_id)
        cols["message"].append(message)
        cols["position"].append(position)
        cols["seq"].append(len(cols["seq"]))
        cols["time_ordered"].append(time_ordered)
        cols["dup"].append(dup)

    def __len__(self) -> int:
        return len(self.columns["seq"])

    def to_arrow(self) -> pa.Table:
        return pa.table(self.columns, schema=LOG_ROW_SCHEMA)

    def group_hint(self) -> str | None:
        """The log group the function itself printed (AWS_LAMBDA_LOG_GROUP_NAME), if only one."""
        found = {m.group(1) for msg in self.columns["message"] if (m := _GROUP_HINT.search(str(msg)))}
        return found.pop() if len(found) == 1 else None


def group_hint_in(text: str) -> str | None:
    """The single log group named by AWS_LAMBDA_LOG_GROUP_NAME in `text`, if exactly one."""
    found = {m.group(1) for m in _GROUP_HINT.finditer(text)}
    return found.pop() if len(found) == 1 else None


def is_lambda_text(text: str) -> bool:
    """True when the text holds at least one line only Lambda's platform or runtimes write."""
    return _LAMBDA_MARKER.search(text) is not None


def parse_plain_text(text: str, rows: LogRows) -> None:
    """Cut Lambda log text (a decoded `--log-type Tail` LogResult, a console paste) into events.

    The text has no timestamps of its own, so events keep file order and a NULL timestamp. A new
    event starts at every line the runtime or the platform starts; tracebacks, indented and blank
    lines, and what follows a multi-line runtime record stay with the event before them.
    """
    events: list[tuple[int, list[str], bool]] = []
    lines = text.split("\n")
    for lineno, line in enumerate(lines, start=1):
        for k, part in enumerate(_GLUED.split(line)):
            if k > 0 or _HEAD.match(part):
                events.append((lineno, [part], bool(_ABSORBS.match(part))))
            elif not events:
                events.append((lineno, [part], False))
            elif part == "" or _CONTINUATION.match(part) or events[-1][2]:
                events[-1][1].append(part)
            else:
                events.append((lineno, [part], False))
    ends_with_newline = text.endswith("\n")
    for i, (lineno, parts, _) in enumerate(events):
        message = "\n".join(parts)
        if not message.endswith("\n") and (i < len(events) - 1 or ends_with_newline):
            message += "\n"
        if message.strip() == "":
            continue
        rows.add(message=message, position=f"line {lineno}", time_ordered=False)


_EXPORT_KEY = re.compile(
    r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/(?P<stream>.+)/\d{6}(?:\.gz)?$", re.I
)


def export_stream(path: str) -> str | None:
    """The log stream an export object holds, from its S3 key `<prefix>/<task id>/<stream>/000000.gz`.

    Only the key names the stream; a synced copy of the bucket keeps the key as its path.
    """
    match = _EXPORT_KEY.search(path.replace("\\", "/"))
    return match.group("stream") if match else None


def parse_s3_export(
    text: str, rows: LogRows, problems: list[tuple[str, str, str]], *, log_stream: str | None = None
) -> None:
    """Events of a CloudWatch Logs export object: `<ISO time> <message>` lines joined by newlines.

    A message keeps its own newlines (so continuation lines and blank lines belong to the event
    before them). Lines before the first timestamp cannot be placed and become problems.
    """
    current: tuple[int, int, list[str]] | None = None

    def flush() -> None:
        if current is not None:
            rows.add(
                message="\n".join(current[2]),
                position=f"line {current[0]}",
                ts_ms=current[1],
                log_stream=log_stream,
            )

    for lineno, line in enumerate(text.split("\n"), start=1):
        head = _EXPORT_HEAD.match(line)
        ts = iso_to_ms(head.group(1)) if head else None
        if head and ts is not None:
            flush()
            current = (lineno, ts, [head.group(2)])
        elif current is not None:
            current[2].append(line)
        elif line.strip():
            problems.append((f"line {lineno}", "export line without a timestamp", line))
    flush()


NDJSON_COLUMNS = (
    "{'logStreamName': 'VARCHAR', 'timestamp': 'BIGINT', 'message': 'VARCHAR', "
    "'ingestionTime': 'BIGINT', 'eventId': 'VARCHAR'}"
)


def ndjson_select(path_sql: str) -> str:
    """A SELECT over filter-log-events NDJSON in the shape of LOG_ROW_SCHEMA.

    Rows get no position or sequence number: numbering a million lines costs more than reading
    them, and the CloudWatch eventId already names each event (and orders events within a stream).

    Lines that are not log events with a stream, time, message and id make the query fail (so the
    caller falls back to the line-by-line reader, which quarantines them with their line number).
    """
    return f"""
        SELECT NULL::VARCHAR AS log_group,
               logStreamName AS log_stream,
               CASE WHEN "timestamp" IS NULL THEN error('no timestamp') ELSE "timestamp" END AS ts_ms,
               ingestionTime AS ingest_ms,
               CASE WHEN eventId IS NULL THEN error('no eventId') ELSE eventId END AS event_id,
               CASE WHEN message IS NULL THEN error('no message') ELSE message END AS message,
               NULL::VARCHAR AS position,
               NULL::BIGINT AS seq,
               true AS time_ordered,
               0::BIGINT AS dup
        FROM read_json({path_sql}, format = 'newline_delimited', columns = {NDJSON_COLUMNS})
    """
