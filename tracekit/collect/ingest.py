"""`tracekit ingest`: read artifact files into the store in atomic batches (a file is never split).

Each file is recognised by its content: filter-log-events NDJSON goes straight from DuckDB's JSON
reader into Parquet; other JSON, plain Lambda log text and CloudWatch Logs export objects are parsed
in Python into Arrow tables first. Rows already in the store (same content id) are skipped, so
ingesting the same input twice adds nothing. Whatever cannot be parsed becomes a quarantine row.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from tracekit import jsonio
from tracekit.collect import invocations
from tracekit.collect.documents import Parsed, parse_json_file
from tracekit.collect.logs import (
    export_stream,
    group_hint_in,
    is_lambda_text,
    ndjson_select,
    parse_plain_text,
    parse_s3_export,
)
from tracekit.collect.progress import Meter
from tracekit.collect.records import md5
from tracekit.collect.sources import (
    GZIP_MAGIC,
    as_text,
    expand,
    is_s3_export,
    looks_binary,
    read_input,
)
from tracekit.errors import TracekitError, first_line
from tracekit.model import COUNT_KEYS
from tracekit.store import Batch, Store
from tracekit.store.catalog import file_list, sql_str
from tracekit.store.schema import SCHEMAS, STREAM_KEY

HEAD_BYTES = 1 << 20
# CloudWatch Logs puts this object (aws-logs-write-test) beside every export; it holds no events.
EXPORT_WRITE_TEST = "Permission Check Successful"
SMALL_BATCH_FILES = 1000
SMALL_BATCH_BYTES = 64 << 20


@dataclass
class IngestReport:
    """What an ingest added, per table, and what it could not parse."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    files: int = 0

    def add(self, table: str, rows: int) -> None:
        key = "quarantined" if table == "quarantine" else table
        self.counts[key] = self.counts.get(key, 0) + rows


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    """The first `size` bytes of a file, decompressed when it is gzip."""
    with open(path, "rb") as fh:
        raw = fh.read(size)
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return zlib.decompressobj(wbits=31).decompress(raw, size)
    except zlib.error:
        return b""


def _sql_or_null(value: str | None) -> str:
    return sql_str(value) if value else "NULL::VARCHAR"


def _is_log_event_ndjson(head: bytes) -> bool:
    first = head.split(b"\n", 1)[0].strip()
    if not first.startswith(b"{"):
        return False
    try:
        value = jsonio.loads(first)
    except ValueError:
        return False
    return isinstance(value, dict) and {"logStreamName", "timestamp", "message", "eventId"} <= set(value)


class Ingestor:
    """Writes input files into a store; hold the store's write lock while using it.

    Small files are parsed one by one and written together, up to SMALL_BATCH_FILES files or
    SMALL_BATCH_BYTES of input per batch: a batch commits whole, so every file's rows still land
    all or not at all, and a folder of thousands of destination objects does not cost thousands
    of Parquet files. filter-log-events NDJSON, the shape that gets big, is a batch of its own.
    """

    def __init__(
        self,
        store: Store,
        *,
        log_group: str | None = None,
        queue: str | None = None,
        sources: dict[Path, str] | None = None,
        meta: dict[str, Any] | None = None,
        role: str | None = None,
    ) -> None:
        self.store = store
        self.log_group = log_group
        self.queue = queue
        # What the collected queue holds (`collect queue --as`); see documents.Parsed.role.
        self.role = role
        # Live collection spools API pages to files; rows name the API call, not the spool file.
        self.sources = sources or {}
        self.meta = meta or {}
        self.con = duckdb.connect(
            config={
                "memory_limit": "1GB",
                "temp_directory": str(store.root / "_tmp"),
                "preserve_insertion_order": False,
            }
        )
        self.con.execute("SET enable_progress_bar = false")
        # This process holds the write lock, so what is committed changes only through it: read the
        # markers once instead of once per input file.
        self._files = store.committed_files()
        self._next_batch = store.next_batch().number
        self._pending: list[Parsed] = []
        self._pending_bytes = 0

    def close(self) -> None:
        """Close the DuckDB connection used for writing."""
        self.con.close()

    # -- per file --------------------------------------------------------------------------

    def ingest_file(self, path: Path, report: IngestReport) -> None:
        """Read one input file; its rows are written with the next batch (all of them or none)."""
        head = read_head(path)
        if _is_log_event_ndjson(head):
            self.flush(report)
            group = self.log_group or group_hint_in(head.decode("utf-8", "replace"))
            if self._write_batch(report, [path], lambda batch: self._write_ndjson(batch, path, group)):
                return
        parsed = self._parse_file(path)
        self._pending.append(parsed)
        self._pending_bytes += parsed.size
        if len(self._pending) >= SMALL_BATCH_FILES or self._pending_bytes >= SMALL_BATCH_BYTES:
            self.flush(report)

    def flush(self, report: IngestReport) -> None:
        """Write the parsed files waiting for a batch."""
        if not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        paths = [p.path or Path(p.source) for p in pending]
        self._write_batch(report, paths, lambda batch: self._write_parsed(batch, pending))

    def _write_batch(
        self, report: IngestReport, paths: list[Path], write: Callable[[Batch], dict[str, int] | None]
    ) -> bool:
        """Run `write` in a new batch and commit it; False (nothing kept) when `write` returns None."""
        batch = Batch(self.store, self._next_batch)
        try:
            counts = write(batch)
            if counts is None:
                batch.abort()
                return False
            batch.commit({"inputs": [self.source(p) for p in paths], "counts_added": counts, **self.meta})
        except (TracekitError, KeyboardInterrupt):
            batch.abort()
            raise
        except Exception as exc:
            batch.abort()
            where = str(paths[0]) + (f" and {len(paths) - 1} more files" if len(paths) > 1 else "")
            raise TracekitError(
                f"could not store ({type(exc).__name__}: {first_line(exc)})",
                where,
                "Nothing from these files was stored; run with --debug for the traceback",
            ) from exc
        self._next_batch += 1
        for table, rel in batch.files.items():
            self._files.setdefault(table, []).append(str(self.store.root / rel))
        for table, rows in counts.items():
            report.add(table, rows)
        report.files += len(paths)
        return True

    def source(self, path: Path) -> str:
        """What rows from `path` name as their source: the file, or the API call it was spooled from."""
        return self.sources.get(path, str(path))

    def _write_ndjson(self, batch: Batch, path: Path, group: str | None) -> dict[str, int] | None:
        select = (
            f"(SELECT *, {sql_str(self.source(path))} AS source, {_sql_or_null(group)} AS fallback_group "
            f"FROM ({ndjson_select(sql_str(str(path)))}))"
        )
        rows = self._write_log_rows(batch, select, fallible=True)
        if rows is None:
            return None
        return {"log_events": rows, "invocations": self._derive(batch) if rows else 0}

    def _parse_file(self, path: Path) -> Parsed:
        item = read_input(path)
        parsed = Parsed(source=self.source(path), queue=self.queue, path=path, role=self.role)
        parsed.size = len(item.data)
        for problem in item.problems:
            parsed.reject(problem.position, problem.reason, problem.raw)
        data = item.data
        if not data.strip():
            if not item.problems:
                parsed.reject("byte 0", "empty file", "")
        elif looks_binary(data):
            parsed.reject("byte 0", "not text: unrecognised binary format", as_text(data))
        else:
            try:
                self._parse_text(data.decode("utf-8", "replace"), parsed)
            except Exception as exc:  # a parser bug must not lose the input: keep it whole in quarantine
                parsed = Parsed(
                    source=self.source(path), queue=self.queue, size=len(data), path=path, role=self.role
                )
                parsed.reject(
                    "byte 0",
                    f"tracekit failed to parse this file ({type(exc).__name__}: "
                    f"{first_line(exc)}); please report it",
                    as_text(data),
                )
        file_key = hashlib.sha1(item.data).hexdigest()
        for q in parsed.quarantine:
            q["source"] = self.source(path)
            q["uid"] = q.get("uid") or md5("\x1f".join([file_key, q["position"], q["reason"], q["raw"]]))
        return parsed

    def _write_parsed(self, batch: Batch, pending: list[Parsed]) -> dict[str, int]:
        counts = dict.fromkeys(
            ("log_events", "invocations", "destination_records", "dead_letters", "quarantine"), 0
        )
        logs = [p.logs_table(self.log_group) for p in pending if len(p.logs)]
        if logs:
            self.con.register("tk_new_logs", pa.concat_tables(logs))
            written = self._write_log_rows(batch, "tk_new_logs", fallible=False)
            self.con.unregister("tk_new_logs")
            counts["log_events"] = written or 0
            if written:
                counts["invocations"] = self._derive(batch)
        for table, attr in (
            ("destination_records", "destinations"),
            ("dead_letters", "dead_letters"),
            ("quarantine", "quarantine"),
        ):
            counts[table] = self._write_rows(batch, table, [row for p in pending for row in getattr(p, attr)])
        return counts

    def _parse_text(self, text: str, parsed: Parsed) -> None:
        if text.strip() == EXPORT_WRITE_TEST:
            return
        first = text.lstrip("\ufeff \t\r\n")[:1]
        if first in ("{", "["):
            parse_json_file(text, parsed)
        elif is_s3_export(text[:65536].encode()):
            problems: list[tuple[str, str, str]] = []
            parse_s3_export(text, parsed.logs, problems, log_stream=export_stream(parsed.source))
            for position, reason, raw in problems:
                parsed.reject(position, reason, raw)
        elif is_lambda_text(text):
            parse_plain_text(text, parsed.logs)
        else:
            parsed.reject("line 1", "unrecognised text: no Lambda log lines and not JSON", text)

    # -- tables ----------------------------------------------------------------------------

    def _existing(self, table: str) -> list[str]:
        return self._files.get(table, [])

    def _write_log_rows(self, batch: Batch, source_sql: str, *, fallible: bool) -> int | None:
        """Write log events from `source_sql` (LOG_ROW_SCHEMA plus source and fallback_group)."""
        existing = self._existing("log_events")
        # A CloudWatch eventId already identifies an event; only events without one get a content hash
        # (building strings per row is what costs most on the big inputs).
        select = f"""
            SELECT coalesce(log_group, fallback_group) AS log_group, log_stream,
                epoch_ms(ts_ms) AS "timestamp", epoch_ms(ingest_ms) AS ingestion_time,
                event_id, message, source, position,
                CASE WHEN event_id IS NOT NULL THEN event_id
                     ELSE md5(coalesce(log_group, fallback_group, '') || chr(31) || coalesce(log_stream, '')
                              || chr(31) || coalesce(CAST(ts_ms AS VARCHAR), '') || chr(31) || message
                              || chr(31) || CAST(dup AS VARCHAR)) END AS uid,
                seq, time_ordered, {batch.number}::BIGINT AS batch
            FROM {source_sql}
        """
        if existing:
            select = f"""
                SELECT n.* FROM ({select}) n ANTI JOIN read_parquet({file_list(existing)}) e
                ON e.uid = n.uid AND e.log_stream IS NOT DISTINCT FROM n.log_stream
            """
        try:
            return batch.copy(self.con, "log_events", select, fast=True)
        except (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.IOException):
            # Input DuckDB cannot read as log events (a bad line, another shape): the caller reads
            # the file line by line instead (a damaged gzip member, too). Out of memory is raised.
            if fallible:
                return None
            raise

    def _derive(self, batch: Batch) -> int:
        """Re-derive the invocations of every log stream this batch added events to."""
        new_path = str(batch.store.root / batch.files["log_events"])
        existing = self._existing("log_events")
        stream = STREAM_KEY
        keys = f"(SELECT DISTINCT {stream} FROM read_parquet({sql_str(new_path)}))"
        if existing:
            files = file_list([*existing, new_path])
            source = f"(SELECT * FROM read_parquet({files}, union_by_name = true) WHERE {stream} IN {keys})"
        else:
            source = f"read_parquet({sql_str(new_path)})"
        final = invocations.derive(self.con, source, batch.number)
        before = 0
        old = self._existing("invocations")
        if old:
            view = batch.store.view_sql("invocations", old)
            row = self.con.execute(f"SELECT count(*) FROM ({view}) WHERE stream_key IN {keys}").fetchone()
            before = int(row[0]) if row else 0
        written = batch.copy(self.con, "invocations", final)
        return max(written - before, 0)

    def _write_rows(self, batch: Batch, table: str, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        schema = SCHEMAS[table]
        fields = [f for f in schema if f.name != "batch"]
        arrow = pa.table({f.name: [r.get(f.name) for r in rows] for f in fields}, schema=pa.schema(fields))
        self.con.register("tk_new_rows", arrow)
        existing = self._existing(table)
        where = f"WHERE uid NOT IN (SELECT uid FROM read_parquet({file_list(existing)}))" if existing else ""
        select = (
            f"SELECT *, {batch.number}::BIGINT AS batch FROM tk_new_rows {where} "
            "QUALIFY row_number() OVER (PARTITION BY uid ORDER BY position) = 1"
        )
        try:
            return batch.copy(self.con, table, select)
        finally:
            self.con.unregister("tk_new_rows")


def ingest_paths(
    store: Store,
    paths: Sequence[str | os.PathLike[str]],
    *,
    log_group: str | None = None,
    queue: str | None = None,
    meter: Meter | None = None,
) -> IngestReport:
    """Ingest every file under `paths` into `store`.

    Args:
        store: an open store.
        paths: files or directories (recursed); plain or gzip.
        log_group: the log group of log files that do not name one themselves.
        queue: the queue that `aws sqs receive-message` output in `paths` was read from.
        meter: counts the files done and names the one being read.

    Returns:
        The rows added per table and how many inputs were quarantined.

    Raises:
        InputError: a path does not exist or cannot be read (before anything is written).
        StoreError: the store is locked by another writer.
    """
    files = expand(paths, skip=store.root)
    report = IngestReport()
    meter = meter or Meter("", enabled=False)
    with store.writing():
        ingestor = Ingestor(store, log_group=log_group, queue=queue)
        try:
            for n, path in enumerate(files, 1):
                meter.note(f"{path.name} ({n} of {len(files)})")
                ingestor.ingest_file(path, report)
                meter.advance(items=1)
            ingestor.flush(report)
        finally:
            ingestor.close()
    return report


# filter-log-events output does not name its log group; a user passes --log-group, the demo does it here.
DEMO_LOG_GROUPS = {"logs/orders-notify.filter-log-events.json": "/aws/lambda/orders-notify"}
DEMO_FOLDERS = ("logs", "destinations", "dlq")


def ingest_demo(store: Store, samples: Path) -> IngestReport:
    """Ingest the bundled sample incident the way a user would, file by file."""
    report = IngestReport()
    for rel, group in DEMO_LOG_GROUPS.items():
        part = ingest_paths(store, [samples / rel], log_group=group)
        _merge(report, part)
    rest = [
        p
        for folder in DEMO_FOLDERS
        for p in expand([samples / folder])
        if str(p.relative_to(samples)) not in DEMO_LOG_GROUPS
    ]
    _merge(report, ingest_paths(store, rest))
    return report


def _merge(total: IngestReport, part: IngestReport) -> None:
    for key, value in part.counts.items():
        total.counts[key] = total.counts.get(key, 0) + value
    total.files += part.files
