"""Invocation attempts rebuilt from log events, in SQL: one row per START…REPORT group.

How lines are grouped (see README, "invocations"):

* A line that names a request id in a runtime's or the platform's own format (START, END, REPORT,
  `Task timed out`, `RequestId: … Error:`, Node runtime lines, Python logging lines, JSON-format
  `platform.*` and application records) belongs to that request id's attempt in progress in its log
  stream. A new attempt starts at START (or `platform.start`) or at the first line after a REPORT:
  async retries reuse the request id, often in the same stream.
* Lines without a request id that only the runtime writes (Python's `[ERROR] Type: msg` record,
  the JSON error records of other runtimes, INIT_START, INIT_REPORT, RESTORE_REPORT,
  `platform.initReport`) belong to the attempt in progress in their stream, or else to the next one.
* Status comes from the runtime, never from application log levels.

Within a stream, events are ordered by time, then START first and END/REPORT last among equal
times (except a runtime error record without a request id, which goes before a START of the same
millisecond: it ends the attempt before), then by their place in the file; plain text without
timestamps keeps file order.
"""

from __future__ import annotations

import duckdb

from tracekit.store.schema import STREAM_GROUP, STREAM_NAME

# Classify each event and pull out the fields later steps need. Only events that can matter to an
# invocation survive this step. Events carry their stream's number (tk_streams), not its two names.
CLASSIFY = r"""
WITH base AS (
    SELECT st.sid, "timestamp" AS ts, seq, time_ordered,
        -- The Python runtime writing to stdout joins the warning and its text error record with \r
        -- in one event: read that event from its [ERROR] record on.
        -- (Nested CASE, not AND: a projected AND runs the regex on every row.)
        CASE WHEN starts_with(message, 'LAMBDA_WARNING')
             THEN CASE WHEN regexp_matches(message, '[\r\n]\[ERROR\] ')
                       THEN regexp_replace(message, '^LAMBDA_WARNING[^\r\n]*[\r\n]+', '') ELSE message END
             ELSE message END AS message,
        CASE
            WHEN starts_with(message, 'START RequestId: ') THEN 'start'
            WHEN starts_with(message, 'END RequestId: ') THEN 'end'
            WHEN starts_with(message, 'REPORT RequestId: ') THEN 'report'
            WHEN starts_with(message, 'INIT_START') THEN 'init_start'
            WHEN starts_with(message, 'INIT_REPORT') THEN 'init_report'
            WHEN starts_with(message, 'RESTORE_REPORT') THEN 'restore_report'
            WHEN starts_with(message, 'RequestId: ') THEN 'runtime_exit'
            WHEN starts_with(message, '{') THEN 'json'
            WHEN starts_with(message, '[ERROR] ') THEN 'py_error'
            WHEN starts_with(message, 'LAMBDA_WARNING') AND regexp_matches(message, '[\r\n]\[ERROR\] ')
                THEN 'py_error'
            WHEN starts_with(message, 'LAMBDA_WARNING') THEN 'lambda_warning'
            WHEN starts_with(message, '[') AND regexp_matches(message, '^\[[A-Z]+\]\t') THEN 'py_app'
            WHEN regexp_matches(message, '^\d{4}-\d\d-\d\dT[0-9:.]+Z[\t ]') THEN 'ts_line'
            WHEN starts_with(message, 'Critical exception from handler') THEN 'ruby_error'
        END AS kind0
    FROM {source} e JOIN tk_streams st ON st.sg = {stream_group} AND st.ss = {stream_name}
),
j0 AS (
    SELECT *,
        CASE WHEN kind0 = 'json' AND NOT (contains(message, '"type"') OR contains(message, 'equestId')
                  OR contains(message, 'errorType') OR contains(message, 'request_id')) THEN NULL
             WHEN kind0 = 'json' AND json_valid(message) THEN message
             -- LAMBDA_WARNING or a JSON record joined by \r to the runtime's JSON error record
             WHEN kind0 IN ('json', 'lambda_warning') THEN nullif(regexp_extract(message, '[\r\n](\{.*\})\s*$', 1), '')
        END AS js0
    FROM base WHERE kind0 IS NOT NULL
),
j AS (SELECT * EXCLUDE (js0), CASE WHEN js0 IS NOT NULL AND json_valid(js0) THEN js0 END AS js FROM j0),
k AS (
    SELECT *,
        json_extract_string(js, '$.type') AS jtype,
        -- The runtime's own error record has errorType/errorMessage at the top and no message or
        -- logger (an exception logged by the application carries both); Node nests it in message.
        CASE WHEN json_extract(js, '$.message') IS NULL AND json_extract(js, '$.logger') IS NULL
             THEN json_extract_string(js, '$.errorType')
             ELSE json_extract_string(js, '$.message.errorType') END AS j_error_type,
        CASE WHEN json_extract(js, '$.message') IS NULL AND json_extract(js, '$.logger') IS NULL
             THEN json_extract_string(js, '$.errorMessage')
             ELSE json_extract_string(js, '$.message.errorMessage') END AS j_error_message,
        coalesce(json_extract_string(js, '$.record.requestId'), json_extract_string(js, '$.requestId'),
                 json_extract_string(js, '$.function_request_id'), json_extract_string(js, '$.AWSRequestId'))
            AS j_rid
    FROM j
),
c AS (
    SELECT *,
        CASE
            WHEN kind0 IN ('start', 'end', 'report', 'init_start', 'init_report', 'restore_report') THEN kind0
            WHEN kind0 = 'runtime_exit' THEN 'runtime_exit'
            WHEN kind0 = 'json' AND jtype = 'platform.start' THEN 'start'
            WHEN kind0 = 'json' AND jtype = 'platform.report' THEN 'report'
            WHEN kind0 = 'json' AND jtype = 'platform.runtimeDone' THEN 'end'
            WHEN kind0 = 'json' AND jtype = 'platform.initStart' THEN 'init_start'
            WHEN kind0 = 'json' AND jtype IN ('platform.initReport', 'platform.initRuntimeDone') THEN 'init_report'
            WHEN kind0 = 'json' AND jtype = 'platform.restoreReport' THEN 'restore_report'
            WHEN kind0 = 'json' AND jtype LIKE 'platform.%' THEN NULL
            WHEN kind0 IN ('json', 'lambda_warning') AND j_error_type IS NOT NULL AND j_error_message IS NOT NULL
                THEN 'rt_error'
            WHEN kind0 = 'json' AND j_rid IS NOT NULL THEN 'app'
            WHEN kind0 = 'py_error' AND regexp_matches(message, '^\[ERROR\] [A-Za-z_][\w.]*:') THEN 'rt_error'
            WHEN kind0 = 'py_app' THEN 'app'
            WHEN kind0 = 'ts_line' AND regexp_matches(message, '^\S+ \S+ Task timed out after') THEN 'timeout'
            WHEN kind0 = 'ts_line' AND regexp_matches(message,
                -- Node 10+ runtime records, and Node 8's bare JSON error record (errorMessage first)
                '^\S+\t[^\t]+\t(?:ERROR\t)?(?:Invoke Error|Unhandled Promise Rejection|Uncaught Exception|\{"errorMessage":)')
                THEN 'rt_error'
            WHEN kind0 = 'ts_line' AND regexp_matches(message, '^\S+\t[^\t\n]+\t') THEN 'app'
            WHEN kind0 = 'ruby_error' THEN 'rt_error'
        END AS kind
    FROM k
)
SELECT sid, ts, seq, time_ordered, kind,
    -- Keep the text only where a later step reads it: the helper tables stay narrow.
    CASE WHEN kind NOT IN ('app', 'end', 'start') THEN message END AS message,
    CASE WHEN kind = 'start' THEN nullif(regexp_extract(message, '^START RequestId: \S+ Version: (\S+)', 1), '') END
        AS start_version,
    CASE WHEN kind <> 'app' OR contains(js, 'xray_trace_id') THEN js END AS js,
    jtype,
    CASE
        WHEN kind0 IN ('start', 'end', 'report') THEN regexp_extract(message, '^\w+ RequestId: (\S+)', 1)
        WHEN kind0 = 'runtime_exit' THEN regexp_extract(message, '^RequestId: (\S+)', 1)
        WHEN kind0 IN ('json', 'lambda_warning') THEN j_rid
        WHEN kind0 = 'py_app' THEN regexp_extract(message, '^\[[A-Z]+\]\t[^\t]*\t([^\t\n]+)', 1)
        WHEN kind = 'timeout' THEN regexp_extract(message, '^\S+ (\S+) Task timed out', 1)
        WHEN kind0 = 'ts_line' THEN regexp_extract(message, '^\S+\t([^\t\n]+)', 1)
    END AS rid,
    -- A runtime error record without a request id, stamped in the same millisecond as the END of
    -- its attempt and the START of the next one in the stream, belongs to the attempt ending then.
    CASE WHEN kind = 'rt_error' AND kind0 <> 'ts_line' AND j_rid IS NULL THEN 0
         WHEN kind IN ('start', 'init_start') THEN 1 WHEN kind = 'end' THEN 3 WHEN kind = 'report' THEN 4
         ELSE 2 END AS rank,
    j_error_type, j_error_message
FROM c WHERE kind IS NOT NULL
"""

# One sortable key per event: time, then rank (START first, END/REPORT last), then file order.
# Plain text has no time, so file order alone.
ORDERED = r"""
SELECT *,
    CASE WHEN time_ordered AND ts IS NOT NULL
         THEN (CAST(epoch_ms(ts) AS HUGEINT) * 8 + rank) * 4294967296 + coalesce(seq, 0)
         ELSE CAST(seq AS HUGEINT) END AS ord
FROM ({classified})
"""

# The log streams of the input, numbered: events carry the number, not the two names, so the
# tables that group them stay narrow.
STREAMS = r"""
CREATE OR REPLACE TEMP TABLE tk_streams AS
SELECT row_number() OVER () AS sid, *
FROM (
    SELECT {stream_group} AS sg, {stream_name} AS ss, any_value(log_group) AS lg, any_value(log_stream) AS ls
    FROM {source} GROUP BY ALL
)
"""

# Group the events into attempts and aggregate each attempt's evidence.
# What each attempt keeps of its events.
ATTEMPT_COLUMNS = r"""
    min(ord) AS first_ord, max(ord) AS last_ord,
    min(ts) FILTER (WHERE kind = 'start') AS start_ts,
    max(ts) FILTER (WHERE kind = 'report') AS report_ts,
    max(ts) FILTER (WHERE kind = 'end') AS end_ts,
    min(ts) AS first_ts,
    bool_or(kind = 'start') AS has_start,
    bool_or(kind = 'report') AS has_report,
    any_value(start_version) AS start_version,
    any_value(js) FILTER (WHERE kind = 'start') AS start_json,
    any_value(message) FILTER (WHERE kind = 'report' AND jtype IS NULL) AS report_text,
    any_value(js) FILTER (WHERE kind = 'report' AND jtype IS NOT NULL) AS report_json,
    any_value(js) FILTER (WHERE jtype IS NOT NULL AND kind IN ('start', 'report')) AS trace_json,
    any_value(js) FILTER (WHERE kind = 'app' AND js IS NOT NULL AND contains(js, 'xray_trace_id')) AS app_json,
    bool_or(kind = 'timeout' OR (kind = 'end' AND jtype IS NOT NULL AND contains(js, '"timeout"'))
            OR (kind = 'runtime_exit' AND contains(message, 'Task timed out'))) AS timed_out,
    any_value(message) FILTER (WHERE kind = 'timeout'
            OR (kind = 'runtime_exit' AND contains(message, 'Task timed out'))) AS timeout_text,
    any_value(message) FILTER (WHERE kind = 'runtime_exit' AND NOT contains(message, 'Task timed out'))
        AS exit_text,
    any_value(js) FILTER (WHERE kind = 'end' AND jtype IS NOT NULL) AS runtime_done_json,
    arg_min(message, ord) FILTER (WHERE kind = 'rt_error') AS rid_err_text,
    arg_min(j_error_type, ord) FILTER (WHERE kind = 'rt_error') AS rid_err_type,
    arg_min(j_error_message, ord) FILTER (WHERE kind = 'rt_error') AS rid_err_message
"""

# Group events into attempts. Most request ids have one START and one REPORT in a stream: one
# attempt, a plain hash aggregate. Only request ids with several (async retries reusing the id)
# go through the window that splits them at each START and after each REPORT.
ATTEMPTS = r"""
CREATE OR REPLACE TEMP TABLE tk_attempts AS
SELECT sid, rid, 1 AS grp, count(*) FILTER (WHERE kind = 'start') AS n_start,
    count(*) FILTER (WHERE kind = 'report') AS n_report, {cols}
FROM tk_ordered WHERE rid IS NOT NULL AND rid <> '' GROUP BY sid, rid;

CREATE OR REPLACE TEMP TABLE tk_split AS
SELECT sid, rid, grp, {cols}
FROM (
    SELECT *, sum(CASE WHEN kind = 'start' OR prev_kind = 'report' OR prev_kind IS NULL THEN 1 ELSE 0 END)
            OVER (PARTITION BY sid, rid ORDER BY ord ROWS UNBOUNDED PRECEDING) AS grp
    FROM (
        SELECT o.*, lag(kind) OVER (PARTITION BY sid, rid ORDER BY ord) AS prev_kind
        FROM tk_ordered o SEMI JOIN (SELECT sid, rid FROM tk_attempts WHERE n_start > 1 OR n_report > 1) m
            ON o.sid = m.sid AND o.rid = m.rid
    )
)
GROUP BY sid, rid, grp;

-- Replace the few merged rows in place rather than copying every attempt into a new table.
DELETE FROM tk_attempts WHERE n_start > 1 OR n_report > 1;
INSERT INTO tk_attempts BY NAME SELECT * FROM tk_split;
""".replace("{cols}", ATTEMPT_COLUMNS.strip())

# Stream-scoped evidence (no request id): attach to the attempt in progress, else the next one.
SCOPED = r"""
CREATE OR REPLACE TEMP TABLE tk_scoped AS
WITH ev AS (
    SELECT * FROM tk_ordered
    WHERE kind IN ('init_start', 'init_report', 'restore_report')
       OR (kind = 'rt_error' AND (rid IS NULL OR rid = ''))
),
prev AS (
    SELECT ev.*, a.first_ord AS prev_first, a.last_ord AS prev_last
    FROM ev ASOF LEFT JOIN tk_attempts a ON ev.sid = a.sid AND ev.ord >= a.first_ord
),
nxt AS (
    SELECT p.*, n.first_ord AS next_first
    FROM prev p ASOF LEFT JOIN tk_attempts n ON p.sid = n.sid AND p.ord < n.first_ord
)
SELECT *, CASE WHEN prev_first IS NOT NULL AND prev_last >= ord AND kind <> 'init_start' THEN prev_first
               ELSE next_first END AS attempt_first
FROM nxt;

CREATE OR REPLACE TEMP TABLE tk_scoped_by_attempt AS
SELECT sid, attempt_first,
    bool_or(kind = 'init_start') AS saw_init_start,
    any_value(message) FILTER (WHERE kind = 'init_report' AND jtype IS NULL
        AND regexp_matches(message, 'Status: (error|timeout|failure)')) AS init_fail_text,
    any_value(js) FILTER (WHERE kind = 'init_report' AND jtype IS NOT NULL
        AND json_extract_string(js, '$.record.status') IN ('error', 'timeout', 'failure')) AS init_fail_json,
    max(TRY_CAST(regexp_extract(message, 'Init Duration: ([0-9.]+)', 1) AS DOUBLE))
        FILTER (WHERE kind = 'init_report' AND jtype IS NULL) AS init_report_ms,
    max(TRY_CAST(json_extract_string(js, '$.record.metrics.durationMs') AS DOUBLE))
        FILTER (WHERE kind = 'init_report' AND jtype = 'platform.initReport') AS init_report_json_ms,
    max(TRY_CAST(regexp_extract(message, 'Restore Duration: ([0-9.]+)', 1) AS DOUBLE))
        FILTER (WHERE kind = 'restore_report') AS restore_report_ms,
    arg_min(message, ord) FILTER (WHERE kind = 'rt_error') AS scoped_err_text,
    arg_min(j_error_type, ord) FILTER (WHERE kind = 'rt_error') AS scoped_err_type,
    arg_min(j_error_message, ord) FILTER (WHERE kind = 'rt_error') AS scoped_err_message
FROM tk_scoped WHERE attempt_first IS NOT NULL GROUP BY sid, attempt_first;
"""

# Pick the runtime error record of each attempt (its first one) and compute the final row.
FINAL = r"""
WITH stream_fn AS (
    SELECT sid, any_value(coalesce(json_extract_string(js, '$.record.functionName'),
        split_part(json_extract_string(js, '$.record.functionArn'), ':', 7))) AS fn
    FROM tk_ordered WHERE jtype IN ('platform.initStart', 'platform.start') GROUP BY sid
),
f AS (
    SELECT a.*, s.* EXCLUDE (sid), st.sg, st.ss, st.lg AS log_group, st.ls AS log_stream,
        sf.fn AS stream_function,
        coalesce(a.rid_err_text, s.scoped_err_text) AS err_text,
        CASE WHEN a.rid_err_text IS NOT NULL THEN a.rid_err_type ELSE s.scoped_err_type END AS j_error_type,
        CASE WHEN a.rid_err_text IS NOT NULL THEN a.rid_err_message ELSE s.scoped_err_message END AS j_error_message,
        coalesce(start_version, json_extract_string(start_json, '$.record.version')) AS version,
        json_extract_string(start_json, '$.record.functionArn') AS function_arn,
        json_extract_string(trace_json, '$.record.tracing.value') AS trace_header,
        json_extract_string(app_json, '$.xray_trace_id') AS app_trace_id,
        json_extract_string(runtime_done_json, '$.record.status') AS runtime_done_status,
        regexp_extract(timeout_text, 'Task timed out after [0-9.]+ seconds') AS timeout_message,
        TRY_CAST(regexp_extract(report_text, '^REPORT RequestId: \S+\s+Duration: ([0-9.]+)', 1) AS DOUBLE)
            AS r_duration,
        TRY_CAST(regexp_extract(report_text, 'Billed Duration: ([0-9.]+)', 1) AS DOUBLE) AS r_billed,
        TRY_CAST(regexp_extract(report_text, 'Memory Size: ([0-9]+)', 1) AS BIGINT) AS r_memory,
        TRY_CAST(regexp_extract(report_text, 'Max Memory Used: ([0-9]+)', 1) AS BIGINT) AS r_max_memory,
        TRY_CAST(regexp_extract(report_text, 'Init Duration: ([0-9.]+)', 1) AS DOUBLE) AS r_init,
        TRY_CAST(regexp_extract(report_text, 'Restore Duration: ([0-9.]+)', 1) AS DOUBLE) AS r_restore,
        nullif(regexp_extract(report_text, 'Status: (\w+)', 1), '') AS r_status,
        nullif(regexp_extract(report_text, 'Error Type: ([^\s]+)', 1), '') AS r_error_type,
        nullif(regexp_extract(report_text, 'XRAY TraceId: ([^\s]+)', 1), '') AS r_trace,
        TRY_CAST(json_extract_string(report_json, '$.record.metrics.durationMs') AS DOUBLE) AS j_duration,
        TRY_CAST(json_extract_string(report_json, '$.record.metrics.billedDurationMs') AS DOUBLE) AS j_billed,
        TRY_CAST(json_extract_string(report_json, '$.record.metrics.memorySizeMB') AS BIGINT) AS j_memory,
        TRY_CAST(json_extract_string(report_json, '$.record.metrics.maxMemoryUsedMB') AS BIGINT) AS j_max_memory,
        TRY_CAST(json_extract_string(report_json, '$.record.metrics.initDurationMs') AS DOUBLE) AS j_init,
        TRY_CAST(json_extract_string(report_json, '$.record.metrics.restoreDurationMs') AS DOUBLE) AS j_restore,
        json_extract_string(report_json, '$.record.status') AS j_status,
        json_extract_string(report_json, '$.record.errorType') AS j_report_error_type,
        coalesce(json_extract_string(report_json, '$.record.tracing.value'), trace_header) AS j_trace_header
    FROM tk_attempts a
    JOIN tk_streams st ON st.sid = a.sid
    LEFT JOIN tk_scoped_by_attempt s ON s.sid = a.sid AND s.attempt_first = a.first_ord
    LEFT JOIN stream_fn sf ON sf.sid = a.sid
),
g AS (
    SELECT *,
        coalesce(r_duration, j_duration) AS duration_ms,
        coalesce(r_billed, j_billed) AS billed_duration_ms,
        coalesce(r_memory, j_memory) AS memory_size_mb,
        coalesce(r_max_memory, j_max_memory) AS max_memory_used_mb,
        coalesce(r_init, j_init, init_report_ms, init_report_json_ms) AS init_duration_ms,
        coalesce(r_restore, j_restore, restore_report_ms) AS restore_duration_ms,
        coalesce(r_status, j_status) AS report_status,
        coalesce(r_error_type, j_report_error_type) AS report_error_type,
        coalesce(init_fail_text, init_fail_json) IS NOT NULL AS init_failed,
        CASE WHEN err_text IS NULL THEN NULL
             WHEN j_error_type IS NOT NULL THEN j_error_type
             WHEN starts_with(err_text, '[ERROR] ') THEN regexp_extract(err_text, '^\[ERROR\] ([A-Za-z_][\w.]*):', 1)
             ELSE coalesce(nullif(regexp_extract(err_text, '"errorType"\s*:\s*"([^"]*)"', 1), ''),
                           nullif(regexp_extract(err_text, '^\S+\t[^\t]+\t(?:ERROR\t)?([A-Za-z ]+?)\s*\t', 1), ''))
        END AS rt_error_type,
        CASE WHEN err_text IS NULL THEN NULL
             WHEN j_error_message IS NOT NULL THEN j_error_message
             WHEN starts_with(err_text, '[ERROR] ') THEN regexp_extract(err_text, '^\[ERROR\] [A-Za-z_][\w.]*: ?([^\r\n]*)', 1)
             ELSE nullif(regexp_extract(err_text, '"errorMessage"\s*:\s*"((?:[^"\\]|\\.)*)"', 1), '')
        END AS rt_error_message,
        coalesce(exit_text LIKE '%Process exited before completing request%'
                 OR exit_text LIKE '%signal: killed%', false) AS killed
    FROM f
),
s AS (
    SELECT *,
        CASE
            WHEN init_failed OR report_error_type IN ('Runtime.ImportModuleError', 'Runtime.InvalidEntrypoint',
                 'Runtime.HandlerNotFound') OR rt_error_type IN ('Runtime.ImportModuleError',
                 'Runtime.InvalidEntrypoint', 'Runtime.HandlerNotFound') THEN 'init_error'
            WHEN report_status = 'timeout' OR timed_out OR runtime_done_status = 'timeout' THEN 'timeout'
            WHEN report_error_type = 'Runtime.OutOfMemory' OR rt_error_type = 'Runtime.OutOfMemory'
                 OR (killed AND max_memory_used_mb IS NOT NULL AND max_memory_used_mb >= memory_size_mb)
                 THEN 'out_of_memory'
            WHEN report_error_type = 'Runtime.ExitError' OR exit_text IS NOT NULL THEN 'crash'
            -- platform.report states the outcome; an error-shaped application record does not override it
            WHEN report_json IS NOT NULL AND report_status = 'success' THEN 'success'
            WHEN rt_error_type IS NOT NULL OR report_status IN ('error', 'failure')
                 OR runtime_done_status IN ('error', 'failure') THEN 'error'
            WHEN has_report THEN 'success'
            ELSE 'unknown'
        END AS status
    FROM g
)
SELECT
    rid AS request_id,
    NULL::BIGINT AS attempt,
    coalesce(CASE WHEN starts_with(log_group, '/aws/lambda/') THEN substr(log_group, 13) END,
             split_part(function_arn, ':', 7), stream_function) AS function_name,
    log_group, log_stream,
    version,
    coalesce(start_ts, report_ts - to_microseconds(CAST(round(duration_ms * 1000) AS BIGINT)), first_ts)
        AS start_time,
    coalesce(report_ts, end_ts) AS end_time,
    duration_ms, billed_duration_ms, memory_size_mb, max_memory_used_mb, init_duration_ms, restore_duration_ms,
    status,
    CASE status
        WHEN 'init_error' THEN coalesce(
            CASE WHEN init_fail_text IS NOT NULL THEN coalesce(
                nullif(regexp_extract(init_fail_text, 'Error Type: ([^\s]+)', 1), ''),
                CASE WHEN contains(init_fail_text, 'Status: timeout') THEN 'Sandbox.Timedout' END) END,
            json_extract_string(init_fail_json, '$.record.errorType'),
            CASE WHEN json_extract_string(init_fail_json, '$.record.status') = 'timeout' THEN 'Sandbox.Timedout' END,
            report_error_type, rt_error_type)
        WHEN 'timeout' THEN coalesce(report_error_type, 'Sandbox.Timedout')
        WHEN 'out_of_memory' THEN 'Runtime.OutOfMemory'
        WHEN 'crash' THEN coalesce(report_error_type,
            nullif(regexp_extract(exit_text, '((?:Runtime|Sandbox)\.\w+)', 1), ''), 'Runtime.ExitError')
        WHEN 'error' THEN coalesce(rt_error_type, report_error_type)
    END AS error_type,
    CASE status
        WHEN 'timeout' THEN timeout_message
        WHEN 'crash' THEN nullif(regexp_extract(exit_text, '^RequestId: \S+ (?:Error: )?([^\r\n]*)', 1), '')
        WHEN 'out_of_memory' THEN nullif(regexp_extract(exit_text, '^RequestId: \S+ (?:Error: )?([^\r\n]*)', 1), '')
        ELSE rt_error_message
    END AS error_message,
    coalesce(r_trace, nullif(regexp_extract(j_trace_header, 'Root=([^;]+)', 1), ''), app_trace_id) AS xray_trace_id,
    coalesce(init_duration_ms IS NOT NULL OR saw_init_start, false) AS cold_start,
    has_start, has_report,
    sg || chr(31) || ss AS stream_key,
    {batch}::BIGINT AS batch
FROM s
"""


def derive(con: duckdb.DuckDBPyConnection, source_sql: str, batch: int) -> str:
    """Build the helper tables for `source_sql` (log events) and return the SELECT of invocation rows.

    Args:
        con: a DuckDB connection; temporary tables named `tk_*` are created on it.
        source_sql: a parenthesised SELECT (or table function) yielding log_events rows.
        batch: the batch number stamped on every row.
    """

    def bind(sql: str) -> str:
        return (
            sql.replace("{source}", source_sql)
            .replace("{stream_group}", STREAM_GROUP)
            .replace("{stream_name}", STREAM_NAME)
        )

    con.execute(bind(STREAMS))
    classified = bind(CLASSIFY)
    con.execute(f"CREATE OR REPLACE TEMP TABLE tk_ordered AS {ORDERED.replace('{classified}', classified)}")
    for sql in (ATTEMPTS, SCOPED):
        for statement in sql.split(";"):
            if statement.strip():
                con.execute(statement)
    return FINAL.replace("{batch}", str(int(batch)))
