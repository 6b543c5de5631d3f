"""Asynchronous invocation lifecycles: every async event's attempts, retries, duplicates and final sink.

One async event is one request id: Lambda reuses it on every retry (lambda-semantics §1.2), so an
event's attempts are the START…REPORT groups of that request id, in any log stream, in start order.
The async destination record (`requestContext.requestId`) and the function DLQ message (`RequestID`)
close the lifecycle. An event whose attempts were all throttled never reaches a log stream; it can
still appear through its record or DLQ message, with no attempts.

Which invocations are async: every request id of a function that is not a batch-source function. A
function is a batch-source function when the `items` table (items.build) shows SQS, Kinesis or
DynamoDB items for any of its invocations, when a stream on-failure record names it, or when its
`source` setting (function_settings) says `sqs`, `kinesis`, `dynamodb` or `kafka`; `source = async`
keeps a function async whatever else says.

Outcome: the first success decides it (`succeeded`, or `succeeded_after_retry` when a failed
attempt ended before that success ended, as the Lambda service learns of outcomes). Otherwise a DLQ
message means `dead_lettered`, an on-failure record `sent_to_destination`; with neither, the event is
`dropped` when its retries ran out (1 + `maximum_retry_attempts` failed attempts, default 2), when
its next retry (60 s after the first failure, 120 s after the second) would start past
`maximum_event_age_s` (default 21600) counted from its first attempt, or when that retry would have
started before the newest log event of the function's log group (it would be in the logs had it
happened); else it is `in_flight`, and uncertain. Throttled attempts are invisible: an event that was
throttled and then succeeded at its first attempt in the logs reads as `succeeded`.

approximateInvokeCount cross-checks the attempt count: an on-failure record counts the failed
attempts, an on-success record at most the attempts in the logs; a disagreement makes the event
uncertain with the reason. Duplicates are successful attempts beyond the first (or success records,
when the logs lost one): `lambda_retry` when a failed attempt came before the last success (the
retry of a failure ran although another copy succeeded), else `at_least_once`.

final_error_type / final_error_message are the last failed attempt's, else the on-failure record's
responsePayload, else the DLQ message's ErrorMessage attribute, whatever the outcome: for an event
that succeeded after a retry they say which error was retried.
"""

from __future__ import annotations

import duckdb

SOURCES = ("sqs", "kinesis", "dynamodb", "kafka")
# Documented defaults (lambda-semantics §1.1); function_settings overrides them per function.
DEFAULT_MAXIMUM_RETRY_ATTEMPTS = 2
DEFAULT_MAXIMUM_EVENT_AGE_S = 21600
# Waits before the 2nd and the 3rd attempt after a function error.
RETRY_DELAYS_S = (60, 120)

EMPTY_ITEMS = (
    "(SELECT NULL::VARCHAR AS request_id, NULL::VARCHAR AS function_name, NULL::VARCHAR AS item_id, "
    "NULL::VARCHAR AS source, NULL::VARCHAR AS evidence WHERE false)"
)
EMPTY_SETTINGS = (
    "(SELECT NULL::VARCHAR AS function_name, NULL::VARCHAR AS setting, NULL::VARCHAR AS value WHERE false)"
)

# The invocations of async events (a view: each reader below scans the invocations with this filter).
ASYNC_INVOCATIONS = """
CREATE OR REPLACE TEMP VIEW tk_async_invocations AS
WITH batch_sourced AS (
    SELECT function_name FROM {items}
    WHERE source IN {sources} AND function_name IS NOT NULL
    UNION
    SELECT function_name FROM destination_records
    WHERE kind IN {sources} AND function_name IS NOT NULL
    UNION
    SELECT function_name FROM {settings}
    WHERE setting = 'source' AND lower(value) IN {sources} AND function_name IS NOT NULL
),
forced_async AS (
    SELECT function_name FROM {settings}
    WHERE setting = 'source' AND lower(value) = 'async' AND function_name IS NOT NULL
),
batch_requests AS (
    SELECT DISTINCT request_id FROM {items} WHERE source IN {sources} AND request_id IS NOT NULL
),
-- The membership tests are uncorrelated (a NULL function name is in no set) so that no row is
-- buffered to decorrelate them.
SELECT i.* FROM invocations i
WHERE i.request_id IS NOT NULL
  AND (i.function_name IN (SELECT function_name FROM forced_async)
       OR (NOT coalesce(i.function_name IN (SELECT function_name FROM batch_sourced), false)
           AND NOT coalesce(i.request_id IN (SELECT request_id FROM batch_requests), false)));

-- What the event step needs to find each function's newest log event.
CREATE OR REPLACE TEMP TABLE tk_async_log_groups AS
SELECT DISTINCT function_name, log_group FROM tk_async_invocations;
"""

ATTEMPTS = """
CREATE OR REPLACE TEMP TABLE async_attempts AS
WITH
-- Most request ids have one invocation: only the others need a window to number their attempts (a
-- request id whose invocations all have attempt 1 has exactly one).
retried AS (
    SELECT DISTINCT request_id FROM invocations WHERE attempt > 1 AND request_id IS NOT NULL
),
-- Inlined into both branches below: scanning twice is cheaper than buffering every invocation.
async_invocations AS NOT MATERIALIZED (
    SELECT * FROM tk_async_invocations
),
numbered AS (
    SELECT *, row_number() OVER w AS number, lag(end_time) OVER w AS previous_end
    FROM async_invocations WHERE request_id IN (SELECT request_id FROM retried)
    -- `attempt` (the store's numbering: start, then end, then stream) orders them; one integer key.
    WINDOW w AS (PARTITION BY request_id ORDER BY attempt)
),
single AS (
    SELECT *, 1 AS number, NULL::TIMESTAMP AS previous_end
    FROM async_invocations WHERE request_id NOT IN (SELECT request_id FROM retried)
)
SELECT
    CAST(request_id AS VARCHAR) AS event_id,
    CAST(number AS INTEGER) AS attempt,
    CAST(request_id AS VARCHAR) AS request_id,
    CAST(log_stream AS VARCHAR) AS log_stream,
    CAST(start_time AS TIMESTAMP) AS start_time,
    CAST(end_time AS TIMESTAMP) AS end_time,
    CAST(duration_ms AS DOUBLE) AS duration_ms,
    CAST(status AS VARCHAR) AS outcome,
    CAST(error_type AS VARCHAR) AS error_type,
    CAST(error_message AS VARCHAR) AS error_message,
    CAST(date_diff('microsecond', previous_end, start_time) / 1000.0 AS DOUBLE) AS gap_ms,
    CAST(NULL AS VARCHAR) AS batch_id,
    CAST(cold_start AS BOOLEAN) AS cold_start,
    CAST(function_name AS VARCHAR) AS function_name,
    CAST('async' AS VARCHAR) AS source
FROM (SELECT * FROM numbered UNION ALL BY NAME SELECT * FROM single)
"""

EVENTS = """
CREATE OR REPLACE TEMP TABLE async_events AS
WITH settings AS (
    SELECT function_name,
        max(TRY_CAST(value AS INTEGER)) FILTER (WHERE setting = 'maximum_retry_attempts') AS max_retries,
        max(TRY_CAST(value AS DOUBLE)) FILTER (WHERE setting = 'maximum_event_age_s') AS max_age_s
    FROM {settings} GROUP BY function_name
),
-- Most events have one attempt: its row is its summary. Only the others are grouped.
retried AS (
    SELECT DISTINCT event_id FROM async_attempts WHERE attempt > 1
),
single_tries AS (
    SELECT event_id, function_name,
        1 AS attempts,
        CASE WHEN outcome <> 'init_error' THEN 1 ELSE 0 END AS deliveries,
        CASE WHEN outcome = 'success' THEN 1 ELSE 0 END AS successes,
        CASE WHEN outcome <> 'success' THEN 1 ELSE 0 END AS failures,
        start_time AS first_start,
        coalesce(end_time, start_time) AS last_end,
        outcome AS last_outcome,
        coalesce(end_time, start_time) AS last_attempt_end,
        CASE WHEN outcome <> 'success' THEN error_type END AS error_type,
        CASE WHEN outcome <> 'success' THEN error_message END AS error_message,
        CASE WHEN outcome = 'success' AND coalesce(end_time, start_time) IS NOT NULL THEN attempt END
            AS first_success,
        CASE WHEN outcome = 'success' THEN attempt END AS last_success,
        false AS failed_before_first_success,
        false AS failed_before_last_success
    FROM async_attempts
    WHERE attempt = 1 AND event_id NOT IN (SELECT event_id FROM retried)
),
retried_attempts AS (
    SELECT * FROM async_attempts WHERE event_id IN (SELECT event_id FROM retried)
),
retried_tries AS (
    SELECT event_id,
        any_value(function_name) AS function_name,
        count(*) AS attempts,
        count(*) FILTER (WHERE outcome <> 'init_error') AS deliveries,
        count(*) FILTER (WHERE outcome = 'success') AS successes,
        count(*) FILTER (WHERE outcome <> 'success') AS failures,
        min(start_time) AS first_start,
        max(coalesce(end_time, start_time)) AS last_end,
        arg_max(outcome, attempt) AS last_outcome,
        arg_max(coalesce(end_time, start_time), attempt) AS last_attempt_end,
        arg_max(error_type, attempt) FILTER (WHERE outcome <> 'success') AS error_type,
        arg_max(error_message, attempt) FILTER (WHERE outcome <> 'success') AS error_message,
        arg_min(attempt, coalesce(end_time, start_time)) FILTER (WHERE outcome = 'success')
            AS first_success,
        max(attempt) FILTER (WHERE outcome = 'success') AS last_success
    FROM retried_attempts GROUP BY event_id
),
-- How each failure stands to the successes: the service learns an attempt's outcome when it ends.
order_of_failures AS (
    SELECT a.event_id,
        bool_or(coalesce(a.end_time, a.start_time) < coalesce(s.end_time, s.start_time)
                OR (coalesce(a.end_time, a.start_time) = coalesce(s.end_time, s.start_time)
                    AND a.attempt < s.attempt)) AS failed_before_first_success,
        bool_or(a.attempt < l.attempt) AS failed_before_last_success
    FROM retried_attempts a
    JOIN retried_tries t ON t.event_id = a.event_id
    JOIN retried_attempts s ON s.event_id = a.event_id AND s.attempt = t.first_success
    JOIN retried_attempts l ON l.event_id = a.event_id AND l.attempt = t.last_success
    WHERE a.outcome <> 'success'
    GROUP BY a.event_id
),
tries AS (
    SELECT * FROM single_tries
    UNION ALL
    SELECT t.*, coalesce(o.failed_before_first_success, false), coalesce(o.failed_before_last_success, false)
    FROM retried_tries t LEFT JOIN order_of_failures o USING (event_id)
),
newest_log AS (
    SELECT g.function_name, max(e."timestamp") AS newest
    FROM tk_async_log_groups g
    JOIN log_events e ON e.log_group = g.log_group
    GROUP BY g.function_name
),
records AS (
    SELECT request_id,
        any_value(function_name) AS function_name,
        min("timestamp") AS first_ts, max("timestamp") AS last_ts,
        count(*) FILTER (WHERE condition = 'Success') AS success_records,
        max(approximate_invoke_count) FILTER (WHERE condition = 'Success') AS success_count,
        arg_min(record_id, {first_ts}) FILTER (WHERE condition = 'Success') AS success_record_id,
        arg_max(record_id, {last_ts}) FILTER (WHERE condition IS DISTINCT FROM 'Success')
            AS failure_record_id,
        arg_max(approximate_invoke_count, {last_ts}) FILTER (WHERE condition IS DISTINCT FROM 'Success')
            AS failure_count,
        arg_max(CASE WHEN json_valid(response_payload) THEN response_payload END, {last_ts})
            FILTER (WHERE condition IS DISTINCT FROM 'Success') AS failure_response,
        arg_min(request_payload, {first_ts}) FILTER (WHERE request_payload IS NOT NULL) AS payload
    FROM destination_records
    WHERE kind = 'async' AND request_id IS NOT NULL
    GROUP BY request_id
),
dead AS (
    SELECT request_id,
        min(sent_timestamp) AS first_ts, max(sent_timestamp) AS last_ts,
        arg_min(message_id, coalesce(sent_timestamp, 'infinity'::TIMESTAMP)) AS message_id,
        arg_min(body, coalesce(sent_timestamp, 'infinity'::TIMESTAMP)) AS body,
        arg_min(error_message, coalesce(sent_timestamp, 'infinity'::TIMESTAMP)) AS error_message,
        any_value(coalesce(queue, source)) AS dlq
    FROM dead_letters
    WHERE kind = 'async_dlq' AND request_id IS NOT NULL
    GROUP BY request_id
),
-- The function the attempts name (tries.function_name) for the few events a record or a DLQ message
-- names; read from the attempts so that `tries` has one reader and is never buffered.
sunk_function AS (
    SELECT event_id, function_name FROM retried_tries
    UNION ALL
    SELECT event_id, function_name FROM async_attempts
    WHERE attempt = 1 AND event_id NOT IN (SELECT event_id FROM retried)
      AND event_id IN (SELECT request_id FROM records UNION ALL SELECT request_id FROM dead)
),
-- A DLQ message names no function: take the one whose other events reached the same queue.
dlq_function AS (
    SELECT d.dlq, CASE WHEN count(DISTINCT t.function_name) = 1 THEN any_value(t.function_name) END
        AS function_name
    FROM dead d JOIN sunk_function t ON t.event_id = d.request_id
    GROUP BY d.dlq
),
-- Grouped over all items: only async events' request ids find theirs in the join below.
item_evidence AS (
    SELECT request_id, list(DISTINCT evidence) AS kinds FROM {items}
    WHERE evidence IS NOT NULL
    GROUP BY request_id
),
facts AS (
    SELECT coalesce(t.event_id, r.request_id, d.request_id) AS event_id,
        coalesce(t.function_name, r.function_name, df.function_name) AS function_name,
        coalesce(t.attempts, 0) AS attempts,
        coalesce(t.deliveries, 0) AS deliveries,
        coalesce(t.successes, 0) AS successes,
        coalesce(t.failures, 0) AS failures,
        t.first_start, t.last_end, t.last_outcome, t.last_attempt_end,
        coalesce(t.failed_before_first_success, false) AS failed_before_first_success,
        coalesce(t.failed_before_last_success, false) AS failed_before_last_success,
        coalesce(r.success_records, 0) AS success_records, r.success_count, r.success_record_id,
        r.failure_record_id, r.failure_count,
        least(t.first_start, r.first_ts, d.first_ts) AS first_seen,
        greatest(t.last_end, r.last_ts, d.last_ts) AS last_seen,
        coalesce(t.error_type, json_extract_string(r.failure_response, '$.errorType')) AS final_error_type,
        coalesce(t.error_message, json_extract_string(r.failure_response, '$.errorMessage'), d.error_message)
            AS final_error_message,
        d.message_id AS dead_letter_message_id,
        coalesce(r.payload, d.body) AS payload,
        -- list_distinct (below) drops the NULLs.
        [CASE WHEN t.event_id IS NOT NULL THEN 'logs' END,
         CASE WHEN r.request_id IS NOT NULL THEN 'destination_record' END,
         CASE WHEN d.request_id IS NOT NULL THEN 'dead_letter' END]
            || coalesce(ie.kinds, []) AS evidence,
        coalesce(s.max_retries, {default_retries}) AS max_retries,
        coalesce(s.max_age_s, {default_age_s}) AS max_age_s,
        t.last_attempt_end + to_seconds(CASE WHEN t.failures <= 1 THEN {delay_1} ELSE {delay_2} END)
            AS next_retry,
        n.newest
    -- Every event id once: from its attempts, its destination records or its DLQ messages.
    FROM tries t
    FULL JOIN records r ON r.request_id = t.event_id
    FULL JOIN dead d ON d.request_id = coalesce(t.event_id, r.request_id)
    LEFT JOIN dlq_function df ON df.dlq = d.dlq
    LEFT JOIN item_evidence ie ON ie.request_id = coalesce(t.event_id, r.request_id, d.request_id)
    LEFT JOIN settings s ON s.function_name = coalesce(t.function_name, r.function_name, df.function_name)
    LEFT JOIN newest_log n ON n.function_name = t.function_name
),
judged AS (
    SELECT *,
        CASE
            WHEN successes > 0 THEN
                CASE WHEN failed_before_first_success THEN 'succeeded_after_retry' ELSE 'succeeded' END
            WHEN success_records > 0 THEN
                CASE WHEN failures > 0 OR success_count > 1 THEN 'succeeded_after_retry' ELSE 'succeeded' END
            WHEN dead_letter_message_id IS NOT NULL THEN 'dead_lettered'
            WHEN failure_record_id IS NOT NULL THEN 'sent_to_destination'
            WHEN last_outcome = 'unknown' THEN 'in_flight'
            WHEN failures >= max_retries + 1 THEN 'dropped'
            WHEN date_diff('millisecond', first_start, next_retry) > max_age_s * 1000 THEN 'dropped'
            WHEN next_retry <= newest THEN 'dropped'
            ELSE 'in_flight'
        END AS outcome,
        greatest(successes, success_records) - 1 AS extra_successes
    FROM facts
),
-- A function is known to be invoked asynchronously when one of its events was retried or reached a
-- destination or DLQ, or tracekit.toml says so. When the store also holds redrive-DLQ messages that
-- no invocation's items name, an SQS consumer exists whose batches nothing in the logs names, and an
-- unproven function's invocations may be those batches rather than async events.
orphan_dead_letters AS (
    SELECT count(*) AS n FROM dead_letters d
    WHERE d.kind = 'source_dlq'
      AND NOT EXISTS (SELECT 1 FROM {items} i WHERE i.item_id = d.message_id)
),
-- The events that prove it (more than one attempt, a destination record or a DLQ message), each with
-- the function facts.function_name gives it; from the few such events, so that `judged` has one reader.
proof AS (
    SELECT event_id FROM retried
    UNION SELECT request_id FROM records WHERE success_records > 0 OR failure_record_id IS NOT NULL
    UNION SELECT request_id FROM dead WHERE message_id IS NOT NULL
),
proven AS (
    SELECT DISTINCT coalesce(t.function_name, r.function_name, df.function_name) AS function_name
    FROM proof p
    LEFT JOIN sunk_function t ON t.event_id = p.event_id
    LEFT JOIN records r ON r.request_id = p.event_id
    LEFT JOIN dead d ON d.request_id = p.event_id
    LEFT JOIN dlq_function df ON df.dlq = d.dlq
    UNION
    SELECT function_name FROM {settings} WHERE setting = 'source' AND lower(value) = 'async'
),
reasons AS (
    SELECT *,
        concat_ws(' ',
            CASE WHEN (SELECT n FROM orphan_dead_letters) > 0
                  AND NOT coalesce(judged.function_name IN (SELECT function_name FROM proven), false)
            THEN format(
                'Nothing shows that {{}} is invoked asynchronously (no retry, destination record or DLQ '
                || 'message), and redrive-DLQ messages in the store come from an SQS consumer whose '
                || 'batches no log names: these invocations may be its batches, not events. Set source '
                || 'in tracekit.toml to say which.', coalesce(function_name, 'the function'))
            END,
            CASE WHEN outcome = 'in_flight' AND last_outcome = 'unknown' THEN
                'Its last attempt has no REPORT line in the logs: it may still have been running.'
            END,
            CASE WHEN outcome = 'in_flight' AND last_outcome IS DISTINCT FROM 'unknown' THEN format(
                'No destination record or DLQ message, and its next retry (due {{}} UTC) would come after '
                || 'the newest log line: it may still be retried, or it was dropped.',
                strftime(next_retry, '%Y-%m-%d %H:%M:%S'))
            END,
            CASE WHEN failure_count > failures THEN format(
                'The on-failure record counts {{}} attempts but the logs show {{}} failed: '
                || 'the others are missing from the logs.', failure_count, failures)
            END,
            CASE WHEN failure_count < failures THEN format(
                'The logs show {{}} failed attempts but the on-failure record counts {{}}.',
                failures, failure_count)
            END,
            CASE WHEN success_count > attempts THEN format(
                'The on-success record counts {{}} attempts but the logs show {{}}: '
                || 'the others are missing from the logs.', success_count, attempts)
            END
        ) AS reason
    FROM judged
)
SELECT
    CAST(event_id AS VARCHAR) AS event_id,
    CAST('async' AS VARCHAR) AS source,
    CAST(function_name AS VARCHAR) AS function_name,
    CAST(first_seen AS TIMESTAMP) AS first_seen,
    CAST(last_seen AS TIMESTAMP) AS last_seen,
    CAST(attempts AS INTEGER) AS attempts,
    CAST(deliveries AS INTEGER) AS deliveries,
    CAST(greatest(attempts - 1, 0) AS INTEGER) AS retries,
    CAST(outcome AS VARCHAR) AS outcome,
    CAST(greatest(extra_successes, 0) AS INTEGER) AS duplicates,
    CAST(CASE WHEN extra_successes > 0 THEN
        CASE WHEN failed_before_last_success THEN 'lambda_retry' ELSE 'at_least_once' END
    END AS VARCHAR) AS duplicate_kind,
    CAST(final_error_type AS VARCHAR) AS final_error_type,
    CAST(final_error_message AS VARCHAR) AS final_error_message,
    CAST(coalesce(failure_record_id, success_record_id) AS VARCHAR) AS destination_record_id,
    CAST(dead_letter_message_id AS VARCHAR) AS dead_letter_message_id,
    CAST(payload AS VARCHAR) AS payload,
    CAST(array_to_string(list_sort(list_distinct(evidence)), ',') AS VARCHAR) AS evidence,
    CAST(reason <> '' AS BOOLEAN) AS uncertain,
    CAST(nullif(reason, '') AS VARCHAR) AS uncertain_reason
FROM reasons
"""


def build(con: duckdb.DuckDBPyConnection) -> None:
    """Create the temp tables `async_attempts` and `async_events` (see the module docstring)."""
    items = "items" if _has_table(con, "items") else EMPTY_ITEMS
    settings = "function_settings" if _has_table(con, "function_settings") else EMPTY_SETTINGS
    sources = "(" + ", ".join(f"'{s}'" for s in SOURCES) + ")"
    try:
        con.execute(ASYNC_INVOCATIONS.format(items=items, settings=settings, sources=sources))
        con.execute(ATTEMPTS)
        con.execute(
            EVENTS.format(
                items=items,
                settings=settings,
                default_retries=DEFAULT_MAXIMUM_RETRY_ATTEMPTS,
                default_age_s=DEFAULT_MAXIMUM_EVENT_AGE_S,
                delay_1=RETRY_DELAYS_S[0],
                delay_2=RETRY_DELAYS_S[1],
                first_ts="coalesce(\"timestamp\", 'infinity'::TIMESTAMP)",
                last_ts="coalesce(\"timestamp\", '-infinity'::TIMESTAMP)",
            )
        )
    finally:
        con.execute("DROP TABLE IF EXISTS tk_async_log_groups")
        con.execute("DROP VIEW IF EXISTS tk_async_invocations")


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether a table or view of that name is visible (items.build or build.py may not have run)."""
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()
    return bool(found and found[0])
