"""The store: a directory of Parquet datasets (the durable copy) and a DuckDB catalog over them.

Layout of a store directory::

    tracekit-store.json               format marker and schema version
    catalog.duckdb                    views over the Parquet files, for any DuckDB client
    <table>/batch=<N>/part-0.parquet  one file per table per ingest batch; never rewritten
    _batches/<N>.json                 commit marker: a batch is visible only once its marker exists
    _tmp/                             scratch space (DuckDB spill files)
    analysis/<G>/<table>.parquet      one generation of the analysis tables (events, attempts, batches)
    analysis/current.json             names the visible generation and the ingest batches it was built from

A batch is the unit of atomicity (one or more whole input files). Its Parquet files are written
first, then its marker; a crash in between leaves files without a marker, which the next writer deletes before
doing anything else. Readers only ever see files named in markers, so they never see half a batch.

`invocations` is derived from `log_events`: a batch that adds events to a log stream re-derives
that stream's invocations and writes them in its own file; the view keeps, per stream, only the
rows of the latest batch that derived it.

The analysis tables are rebuilt whole rather than appended to: a generation's files are written
first, then `analysis/current.json` is replaced to point at them, then older generations go.
Readers see the old generation or the new one, never a mix.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from tracekit import jsonio
from tracekit.errors import StoreError
from tracekit.store.schema import ANALYSIS_SCHEMAS, SCHEMA_VERSION, SCHEMAS, empty_select

MARKER = "tracekit-store.json"
CATALOG = "catalog.duckdb"
BATCHES = "_batches"
TMP = "_tmp"
LOCK = "write.lock"
ANALYSIS = "analysis"
CURRENT = "current.json"
MEMORY_LIMIT = "1GB"
#: For building an analysis, which holds its tables in memory while it sorts them: with 1 GB, 4M
#: events spill most of that to disk and take 5x the time of 1M; this keeps the build's peak RSS
#: at about 1.8 GB (tests/bench/analyze.py), under its 2 GB target.
BUILD_MEMORY_LIMIT = "1700MB"
COMPRESSION = "zstd"


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def file_list(paths: list[str]) -> str:
    """A SQL list literal of file paths, for read_parquet."""
    return "[" + ", ".join(sql_str(p) for p in paths) + "]"


@dataclass
class Batch:
    """One atomic unit of writing: the Parquet files of one input, committed together."""

    store: Store
    number: int
    files: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def path_for(self, table: str) -> Path:
        """Where this batch's file for `table` goes (the directory is created)."""
        directory = self.store.root / table / f"batch={self.number:08d}"
        directory.mkdir(parents=True, exist_ok=True)
        return directory / "part-0.parquet"

    def copy(self, con: duckdb.DuckDBPyConnection, table: str, select_sql: str, *, fast: bool = False) -> int:
        """Write the rows of `select_sql` as this batch's file for `table`; returns the row count.

        `fast` trades file size for speed (snappy instead of zstd) on the big log tables.
        """
        final = self.path_for(table)
        tmp = final.with_name(final.name + ".tmp")
        compression = "snappy" if fast else COMPRESSION
        result = con.execute(
            f"COPY ({select_sql}) TO {sql_str(str(tmp))} (FORMAT parquet, COMPRESSION {compression})"
        ).fetchone()
        rows = int(result[0]) if result else 0
        if rows == 0:
            tmp.unlink(missing_ok=True)
            final.parent.rmdir()
            return 0
        os.replace(tmp, final)
        self.files[table] = str(final.relative_to(self.store.root))
        self.counts[table] = self.counts.get(table, 0) + rows
        return rows

    def commit(self, meta: dict[str, Any]) -> None:
        """Make the batch visible: write its marker last, atomically."""
        marker = self.store.root / BATCHES / f"{self.number:08d}.json"
        tmp = marker.with_suffix(".tmp")
        body = {"batch": self.number, "files": self.files, "counts": self.counts, **meta}
        tmp.write_bytes(jsonio.dumpb(body, sort_keys=True))
        os.replace(tmp, marker)

    def abort(self) -> None:
        """Remove whatever this batch wrote; nothing of it becomes visible."""
        self.store.remove_batch_files(self.number)


@dataclass
class Generation:
    """One build of the analysis tables: invisible until `commit` points analysis/current.json at it."""

    store: Store
    number: int
    files: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.store.root / ANALYSIS / f"{self.number:08d}"

    def copy(self, con: duckdb.DuckDBPyConnection, table: str, select_sql: str) -> int:
        """Write the rows of `select_sql` as this generation's file for `table` (even when empty)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{table}.parquet"
        result = con.execute(
            f"COPY ({select_sql}) TO {sql_str(str(final))} (FORMAT parquet, COMPRESSION {COMPRESSION})"
        ).fetchone()
        rows = int(result[0]) if result else 0
        self.files[table] = str(final.relative_to(self.store.root))
        self.counts[table] = rows
        return rows

    def commit(self, meta: dict[str, Any]) -> None:
        """Make this generation the visible one (one atomic rename), then delete the others."""
        current = self.store.root / ANALYSIS / CURRENT
        tmp = current.with_suffix(".tmp")
        body = {"generation": self.number, "files": self.files, "counts": self.counts, **meta}
        tmp.write_bytes(jsonio.dumpb(body, sort_keys=True))
        os.replace(tmp, current)
        self.store.remove_old_generations()

    def abort(self) -> None:
        """Remove whatever this generation wrote; the previous one stays visible."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _latest_attempts_sql(scan: str) -> str:
    """Invocations from only the latest derivation of each log stream, numbered per request id.

    Set-based rather than two windows over the whole table: a grouped maximum picks the latest
    derivation, and only request ids seen more than once (async retries) go through the window;
    the rest are attempt 1. At millions of invocations this halves the time and grows linearly.
    NULL keys group together, as they would in a window partition. Request ids are grouped by their
    64-bit hash, a far smaller hash table than the strings: a collision only sends a request id seen
    once through the window, which numbers it 1 all the same.
    """
    # Duplicate deliveries of one request id can start in the same millisecond in two environments:
    # the one that ended first is the earlier attempt; the stream name only breaks a complete tie.
    order = "start_time NULLS LAST, end_time NULLS LAST, log_stream"
    return f"""
WITH latest AS (SELECT stream_key, max(batch) AS batch FROM {scan} GROUP BY stream_key),
kept AS (
    SELECT s.* FROM {scan} s SEMI JOIN latest l
    ON l.stream_key IS NOT DISTINCT FROM s.stream_key AND l.batch = s.batch
),
retried AS (SELECT hash(request_id) AS h FROM kept GROUP BY h HAVING count(*) > 1)
SELECT * REPLACE (1::BIGINT AS attempt)
FROM kept k ANTI JOIN retried r ON r.h = hash(k.request_id)
UNION ALL
SELECT * REPLACE (row_number() OVER (PARTITION BY request_id ORDER BY {order}) AS attempt)
FROM kept k SEMI JOIN retried r ON r.h = hash(k.request_id)"""


class Store:
    """A tracekit store directory; open with `Store.open(path)`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock_fd: int | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False) -> Store:
        """Open the store at `path`, creating it when `create` is true.

        Raises:
            StoreError: the directory is missing (and not creating) or is not a tracekit store.
        """
        root = Path(path).expanduser().resolve()
        marker = root / MARKER
        if not marker.exists():
            if not create:
                raise StoreError(
                    "no tracekit store", str(root), "Run `tracekit ingest PATH` first or pass --store DIR"
                )
            if (
                root.exists()
                and any(p.name != MARKER for p in root.iterdir())
                and not (root / BATCHES).exists()
            ):
                raise StoreError(
                    "directory is not empty and is not a tracekit store",
                    str(root),
                    "Choose an empty directory for --store",
                )
            root.mkdir(parents=True, exist_ok=True)
            (root / BATCHES).mkdir(exist_ok=True)
            marker.write_bytes(jsonio.dumpb({"format": "tracekit-store", "schema_version": SCHEMA_VERSION}))
        meta = jsonio.loads(marker.read_bytes())
        if meta.get("schema_version", 0) > SCHEMA_VERSION:
            raise StoreError("store was written by a newer tracekit", str(root), "Upgrade tracekit")
        (root / BATCHES).mkdir(exist_ok=True)
        return cls(root)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- reading ---------------------------------------------------------------------------

    def markers(self) -> list[dict[str, Any]]:
        """The commit markers of all visible batches, oldest first."""
        out = []
        for path in sorted((self.root / BATCHES).glob("*.json")):
            out.append(jsonio.loads(path.read_bytes()))
        return out

    def committed_files(self) -> dict[str, list[str]]:
        """Absolute paths of the committed Parquet files, per table."""
        files: dict[str, list[str]] = {t: [] for t in SCHEMAS}
        for marker in self.markers():
            for table, rel in marker.get("files", {}).items():
                files.setdefault(table, []).append(str(self.root / rel))
        return files

    def ingest_batches(self) -> list[int]:
        """The committed batches that stored rows (a re-ingest that added nothing changes nothing)."""
        return [m["batch"] for m in self.markers() if m.get("files")]

    def current_analysis(self) -> dict[str, Any] | None:
        """The marker of the visible analysis generation, or None before the first analysis."""
        path = self.root / ANALYSIS / CURRENT
        try:
            meta: dict[str, Any] = jsonio.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        return meta

    def analysis_files(self) -> dict[str, list[str]]:
        """Absolute paths of the visible analysis generation's Parquet files, per analysis table."""
        current = self.current_analysis() or {}
        named = current.get("files", {})
        return {t: [str(self.root / named[t])] if t in named else [] for t in ANALYSIS_SCHEMAS}

    def new_generation(self) -> Generation:
        """A new analysis generation numbered after every one on disk, visible or not."""
        numbers = [int(d.name) for d in (self.root / ANALYSIS).glob("*") if d.is_dir() and d.name.isdigit()]
        current = self.current_analysis()
        if current:
            numbers.append(int(current["generation"]))
        return Generation(self, max(numbers, default=0) + 1)

    def remove_old_generations(self) -> None:
        """Delete every analysis generation but the visible one (and any half-written file)."""
        current = self.current_analysis()
        keep = f"{int(current['generation']):08d}" if current else None
        for d in (self.root / ANALYSIS).glob("*"):
            if d.is_dir() and d.name != keep:
                shutil.rmtree(d, ignore_errors=True)
        (self.root / ANALYSIS / CURRENT).with_suffix(".tmp").unlink(missing_ok=True)

    def view_sql(self, table: str, files: list[str]) -> str:
        """The SELECT behind the view of `table` over `files`."""
        if not files:
            return empty_select(table)
        scan = f"read_parquet({file_list(files)}, union_by_name = true)"
        if table == "invocations":
            return _latest_attempts_sql(scan)
        return f"SELECT * FROM {scan}"

    def connect(
        self, *, threads: int | None = None, analysis: bool = True, memory_limit: str = MEMORY_LIMIT
    ) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per table over the committed files.

        `analysis=False` leaves out the analysis views (events, attempts, batches): building a new
        analysis must not read the previous one. Past `memory_limit` DuckDB spills to the store's
        _tmp/ directory.
        """
        config: dict[str, Any] = {"memory_limit": memory_limit, "temp_directory": str(self.root / TMP)}
        if threads:
            config["threads"] = threads
        con = duckdb.connect(config=config)
        files = self.committed_files()
        for table in SCHEMAS:
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {table} AS {self.view_sql(table, files.get(table, []))}"
            )
        if analysis:
            for table, paths in self.analysis_files().items():
                con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS {self.view_sql(table, paths)}")
        return con

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Run one SELECT and return its rows as dicts (for tests and small results)."""
        con = self.connect()
        try:
            cur = con.execute(sql, params or [])
            names = [d[0] for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            con.close()

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[Store]:
        """Hold the store's write lock; clean up what a crashed writer left behind."""
        (self.root / TMP).mkdir(exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                "store is being written by another tracekit process",
                str(self.root),
                "Wait for it to finish and run the command again",
            ) from None
        self._lock_fd = fd
        try:
            self.recover()
            yield self
        finally:
            self.refresh_catalog()
            self.release()

    def release(self) -> None:
        """Release the write lock if held."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def next_batch(self) -> Batch:
        """A new batch numbered after every batch on disk, committed or not."""
        numbers = [m["batch"] for m in self.markers()]
        for table in SCHEMAS:
            for d in (self.root / table).glob("batch=*"):
                numbers.append(int(d.name.split("=", 1)[1]))
        return Batch(self, max(numbers, default=0) + 1)

    def recover(self) -> None:
        """Delete files of batches that never committed (a writer crashed mid-batch)."""
        committed = {m["batch"] for m in self.markers()}
        for table in SCHEMAS:
            for d in (self.root / table).glob("batch=*"):
                if int(d.name.split("=", 1)[1]) not in committed:
                    shutil.rmtree(d, ignore_errors=True)
        for leftover in (self.root / BATCHES).glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        self.remove_old_generations()

    def remove_batch_files(self, number: int) -> None:
        """Delete every file of batch `number` (used when a batch is aborted)."""
        for table in SCHEMAS:
            shutil.rmtree(self.root / table / f"batch={number:08d}", ignore_errors=True)

    def refresh_catalog(self) -> None:
        """Rewrite the persistent catalog's views; skipped when another client holds it open."""
        try:
            con = duckdb.connect(str(self.root / CATALOG))
        except duckdb.Error:
            return
        try:
            files = self.committed_files()
            for table in SCHEMAS:
                con.execute(f"CREATE OR REPLACE VIEW {table} AS {self.view_sql(table, files.get(table, []))}")
            for table, paths in self.analysis_files().items():
                con.execute(f"CREATE OR REPLACE VIEW {table} AS {self.view_sql(table, paths)}")
        finally:
            con.close()
