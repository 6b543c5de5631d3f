"""Read-only SQL over a store: only statements that cannot change anything are run."""

from __future__ import annotations

import re
from typing import Any

import duckdb

from tracekit.errors import QueryError, first_line
from tracekit.store.catalog import Store

_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?", re.I)

DEMO_QUERIES: list[tuple[str, str]] = [
    (
        "Invocation attempts per function and status",
        "SELECT function_name, status, count(*) AS attempts, count(DISTINCT request_id) AS request_ids "
        "FROM invocations GROUP BY ALL ORDER BY function_name, status",
    ),
    (
        "Destination records",
        "SELECT function_name, kind, condition, approximate_invoke_count, envelope, "
        "coalesce(request_id, '') AS request_id FROM destination_records ORDER BY timestamp",
    ),
    (
        "Dead letters",
        "SELECT kind, queue, dead_letter_source_arn, message_id, "
        "approximate_receive_count, "
        "coalesce(error_message, '') AS error_message FROM dead_letters ORDER BY sent_timestamp",
    ),
    (
        "Quarantined input",
        "SELECT source, position, reason FROM quarantine ORDER BY source, position",
    ),
]


def run_read_only(store: Store, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run `sql` against the store's views; return the last statement's columns and rows.

    Raises:
        QueryError: the SQL does not parse, changes something, or fails.
    """
    con = store.connect()
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError("SQL does not parse", first_line(exc), "Check the query") from None
        if not statements:
            raise QueryError(
                "no SQL statement given", None, 'Pass a query such as "SELECT * FROM invocations"'
            )
        for statement in statements:
            kind = _effective_type(con, statement)
            if kind != "SELECT":
                raise QueryError(
                    f"only read-only queries are allowed, got {kind}",
                    sql.strip()[:80],
                    "Use SELECT; the store is changed only by tracekit commands",
                )
        try:
            cur = None
            for statement in statements:
                cur = con.execute(statement.query)
            assert cur is not None
            columns = [d[0] for d in cur.description or []]
            return columns, cur.fetchall()
        except duckdb.Error as exc:
            raise QueryError(
                "query failed", first_line(exc), "Check table and column names in the README"
            ) from None
    finally:
        con.close()


def _effective_type(con: duckdb.DuckDBPyConnection, statement: Any) -> str:
    """The statement's type; for EXPLAIN [ANALYZE], the type of what it explains (ANALYZE runs it)."""
    kind = statement.type.name
    if kind != "EXPLAIN":
        return kind
    inner = con.extract_statements(_EXPLAIN.sub("", statement.query, count=1))
    kinds = {s.type.name for s in inner}
    return "SELECT" if kinds == {"SELECT"} else f"EXPLAIN {'/'.join(sorted(kinds))}"
