"""Build the analysis tables: run the source modules over the store and publish one new generation.

The source modules (items, asynchronous, sqs, streams) each leave `<source>_events`,
`<source>_attempts` and `<source>_batches` temp tables on one DuckDB connection. This module unions
them into `events`, `attempts` and `batches` with the contract's types, adds each event's business
key, and writes the three tables as one generation under `analysis/` in the store. A generation is
visible only once `analysis/current.json` names it, so a build that fails halfway changes nothing.
"""

from __future__ import annotations

import datetime as dt
import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from tracekit.analyze.keys import Config, create_function_settings, load_config, with_business_key
from tracekit.analyze.replays import mark_replays
from tracekit.errors import TracekitError, first_line
from tracekit.render import counted
from tracekit.store.catalog import BUILD_MEMORY_LIMIT, Generation, Store, sql_str
from tracekit.store.schema import ANALYSIS_SCHEMAS, duckdb_type, empty_select

#: Bumped when the analysis tables change meaning or shape: older generations are then rebuilt.
ANALYSIS_VERSION = 4  # 4: concurrent duplicate attempts numbered by end time; 3: duplicate_kind 'replay'

#: Run in this order: items first, the lifecycle modules read its tables; replays finds the copies
#: tracekit replayed (its `replay_marks` table is applied to the events as they are written).
SOURCE_MODULES = ("items", "asynchronous", "sqs", "streams", "replays")

#: The `<source>_` prefixes of the tables the lifecycle modules create.
SOURCES = ("async", "sqs", "streams", "kinesis", "dynamodb")

#: Columns this module adds; the source modules do not produce them.
DERIVED_COLUMNS = frozenset({"business_key", "duplicate_of"})

#: The columns of `invocations` the source modules read (a module that reads another adds it here).
INVOCATION_COLUMNS = (
    "request_id",
    "attempt",
    "function_name",
    "log_group",
    "log_stream",
    "stream_key",
    "start_time",
    "end_time",
    "duration_ms",
    "init_duration_ms",
    "status",
    "error_type",
    "error_message",
    "cold_start",
)

#: Columns of that table dropped once the last module that reads them has run, to free memory for
#: the rest (stream_key, the widest, places log lines that name no request id).
LAST_READ_BY = {"items": ("stream_key",)}

#: Row order in the Parquet files of the small tables. events and attempts are written unsorted:
#: every reader orders what it shows, and at millions of rows the sort spilled to disk and made
#: the build grow faster than the data (5.3x the write time for 4x the events).
ORDER = {"batches": "function_name, shard_id, depth, first_sequence_number, batch_id"}


@dataclass
class AnalyzeReport:
    """What one `analyze` built: the generation, its inputs and its row counts."""

    generation: int
    ingest_batches: list[int]
    rows: dict[str, int]
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    uncertain: int = 0
    seconds: float = 0.0
    #: Seconds per step: "invocations" (reading the view once), each source module, "write".
    steps: dict[str, float] = field(default_factory=dict)


def analyze(store: Store, config: Config | None = None) -> AnalyzeReport:
    """Rebuild the analysis tables from everything committed in `store`, under its write lock.

    `config` defaults to ./tracekit.toml (business keys and per-function settings).

    Raises:
        StoreError: another process is writing the store.
        TracekitError: a source module failed; the previous generation stays visible.
    """
    config = config if config is not None else load_config()
    started = time.perf_counter()
    with store.writing():
        ingest_batches = store.ingest_batches()
        generation = store.new_generation()
        con = store.connect(analysis=False, memory_limit=BUILD_MEMORY_LIMIT)
        try:
            con.execute("SET enable_progress_bar = false")
            steps: dict[str, float] = {}
            _run_modules(con, config, steps)
            with _timed(steps, "write"):
                _write_tables(con, generation, config)
            report = _summarise(con, generation, ingest_batches)
            report.steps = steps
            generation.commit(
                {
                    "analysis_version": ANALYSIS_VERSION,
                    "ingest_batches": ingest_batches,
                    "config_digest": config.digest(),
                    "config": str(config.path) if config.path else None,
                    "built_at": dt.datetime.now(dt.UTC),
                }
            )
        except (TracekitError, KeyboardInterrupt):
            generation.abort()
            raise
        except Exception as exc:
            generation.abort()
            raise TracekitError(
                f"analysis failed ({type(exc).__name__}: {first_line(exc)})",
                str(store.root),
                "The previous analysis stays visible; run with --debug for the traceback",
            ) from exc
        finally:
            con.close()
    report.seconds = time.perf_counter() - started
    return report


def stale_reason(store: Store, config: Config | None = None) -> str | None:
    """Why the visible analysis no longer matches the store (None when it does).

    Stale means: no analysis yet, one built by another analysis version, committed ingest batches
    that differ from those it was built from, or other keys or settings in `config` when it was read
    from a file. Without a tracekit.toml (running from another directory) the analysis is used as
    it was built, keys included, rather than rebuilt without them.
    """
    current = store.current_analysis()
    if current is None:
        return "no analysis yet"
    if current.get("analysis_version") != ANALYSIS_VERSION:
        return "the analysis was built by another tracekit version"
    built = set(current.get("ingest_batches", []))
    now = set(store.ingest_batches())
    if now != built:
        added, gone = len(now - built), len(built - now)
        parts = [counted(added, "new ingest batch", "new ingest batches")] if added else []
        parts += [counted(gone, "ingest batch", "ingest batches") + " gone"] if gone else []
        return ", ".join(parts) + " since the last analysis"
    if config is not None and config.path is not None and current.get("config_digest") != config.digest():
        return "business keys or settings changed since the last analysis"
    return None


def is_stale(store: Store, config: Config | None = None) -> bool:
    """True when the committed ingest batches (or the keys and settings of a tracekit.toml given as
    `config`) differ from those the visible analysis was built from."""
    return stale_reason(store, config) is not None


def ensure_current(store: Store, config: Config, announce: Callable[[str], None] | None = None) -> str | None:
    """Rebuild the analysis when it is stale, first passing the reason to `announce` (a rebuild can
    take a while); returns the reason, or None when the analysis was current."""
    reason = stale_reason(store, config)
    if reason is not None:
        if announce is not None:
            announce(reason)
        analyze(store, config)
    return reason


# -- building ------------------------------------------------------------------------------------


def _run_modules(con: duckdb.DuckDBPyConnection, config: Config, steps: dict[str, float]) -> None:
    create_function_settings(con, config)
    with ExitStack() as stack:
        with _timed(steps, "invocations"):
            stack.enter_context(_invocations_once(con))
        for name in SOURCE_MODULES:
            module: Any = importlib.import_module(f"tracekit.analyze.{name}")
            with _timed(steps, name):
                module.build(con)
            for column in LAST_READ_BY.get(name, ()):
                con.execute(f"ALTER TABLE tk_invocations DROP COLUMN {column}")


@contextmanager
def _timed(steps: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - started


@contextmanager
def _invocations_once(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """While the modules run, `invocations` is a temp table of the columns they read.

    The view keeps only each log stream's latest derivation and numbers attempts, with two window
    functions over the whole table on every scan; the modules scan it several times. The table is
    dropped and the view restored afterwards, so the writing steps get the memory back.
    """
    [view] = con.execute(
        "SELECT sql FROM duckdb_views() WHERE temporary AND view_name = 'invocations'"
    ).fetchone() or (None,)
    columns = ", ".join(INVOCATION_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE tk_invocations AS SELECT {columns} FROM invocations")
    con.execute("CREATE OR REPLACE TEMP VIEW invocations AS SELECT * FROM tk_invocations")
    try:
        yield
    finally:
        con.execute("DROP VIEW invocations")
        con.execute("DROP TABLE tk_invocations")
        if view is not None:
            con.execute(view)


def _present(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The `<source>_<table>` tables the modules created, in SOURCES order."""
    wanted = [f"{source}_{table}" for source in SOURCES]
    found = {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'temp' "
            "AND list_contains(?, table_name)",
            [wanted],
        ).fetchall()
    }
    return [name for name in wanted if name in found]


def union_sql(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """All sources' rows of `table`, with the contract's columns in the store's order and types."""
    schema: pa.Schema = ANALYSIS_SCHEMAS[table]
    parts = []
    for name in _present(con, table):
        columns = [
            f"CAST({'NULL' if f.name in DERIVED_COLUMNS else f.name} AS {duckdb_type(f.type)}) AS {f.name}"
            for f in schema
        ]
        parts.append(f"SELECT {', '.join(columns)} FROM {name}")
    return " UNION ALL ".join(parts) if parts else empty_select(table)


def _write_tables(con: duckdb.DuckDBPyConnection, generation: Generation, config: Config) -> None:
    for table in ANALYSIS_SCHEMAS:
        select = union_sql(con, table)
        if table == "events":
            select = with_business_key(select, config)
            # Without key paths every business key is NULL and no event can be a client retry.
            if config.key_paths():
                select = client_retries(select)
            select = mark_replays(select)
        if table in ORDER:
            select = f"SELECT * FROM ({select}) ORDER BY {ORDER[table]}"
        generation.copy(con, table, select)
        # Written: their memory goes to the next table's sort.
        for name in _present(con, table):
            con.execute(f"DROP TABLE {name}")


def client_retries(events_sql: str) -> str:
    """Mark an event `client_retry` when an earlier event of the same function carried the same
    business key under another event id (a client sent it again); `duplicate_of` names that first
    event. `duplicates` keeps counting deliveries of this event id only."""
    # Events without a key each get a partition of their own: together they would make one partition
    # as big as the table, sorted by one thread, for a value nobody reads.
    first = (
        "first_value(event_id) OVER (PARTITION BY function_name, business_key, "
        "CASE WHEN business_key IS NULL THEN event_id END ORDER BY first_seen NULLS LAST, event_id)"
    )
    return (
        f"SELECT * REPLACE ("
        f"CASE WHEN business_key IS NOT NULL AND {first} <> event_id THEN {first} END AS duplicate_of, "
        f"CASE WHEN duplicate_kind IS NULL AND business_key IS NOT NULL AND {first} <> event_id "
        f"THEN 'client_retry' ELSE duplicate_kind END AS duplicate_kind) FROM ({events_sql})"
    )


def _summarise(con: duckdb.DuckDBPyConnection, generation: Generation, batches: list[int]) -> AnalyzeReport:
    events = sql_str(str(generation.store.root / generation.files["events"]))
    outcomes: dict[str, dict[str, int]] = {}
    uncertain = 0
    for source, outcome, count, unsure in con.execute(
        f"SELECT source, outcome, count(*), count(*) FILTER (WHERE uncertain) "
        f"FROM read_parquet({events}) GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        outcomes.setdefault(source, {})[outcome] = int(count)
        uncertain += int(unsure)
    return AnalyzeReport(generation.number, batches, dict(generation.counts), outcomes, uncertain)
