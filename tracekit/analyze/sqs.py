"""SQS lifecycles: every message an SQS event source mapping delivered, rebuilt in SQL from the items each
invocation handled and the source queue's redrive DLQ (lambda-semantics.md §3).

A message is an event; its id is the messageId (stable across receives and into the DLQ). Every invocation
whose items include the message is one attempt (one receive); the invocation is its batch, and the batch
id is the invocation's request id. An attempt's outcome is the invocation's status, except that a message a
successful invocation sent back counts as `error`: one it named in `batchItemFailures`, or every message of
the batch when the response was invalid (a null, empty or unknown `itemIdentifier`; see
tracekit/lab/models/batch_response.py).

Where a message ended:
- `dead_lettered`: a source_dlq message carries its messageId (redrive keeps it). This wins over a
  success: a message SQS moved to the DLQ was never deleted, so the success was an at-least-once copy.
- `succeeded` / `succeeded_after_retry`: the first success decides: did an attempt the logs show fail
  before it? Receives that left no trace show as a jump in ApproximateReceiveCount: throttled (which is
  no retry), or an invocation whose log lines do not name the message. A jump before the first receive
  seen counts as a failed receive when the function has failed invocations that do not name their
  messages (throttles leave no invocation); the event is uncertain either way.
- `dropped`: it failed, no DLQ message names it, and the mapping kept receiving from its queue past the
  message's retention: SQS deleted it.
- `in_flight`: it failed and may still come back.

Duplicates are successes beyond the first: `redelivery` when a failed attempt came before one of them (the
message came back after a failure), else `at_least_once` (received again without any error).

Only the recorder's "out" line shows a handler's response. Without it, a message that comes back after a
successful invocation (received again, or dead-lettered) was either reported in `batchItemFailures` or
delivered twice. When the mapping reads responses (the `report_batch_item_failures` setting, or detected:
a dead-lettered message whose last receive "succeeded" can only have been reported) such a receive counts as
a reported failure; otherwise (the AWS default) the later receive is an at-least-once duplicate. A return
is impossible when the next receive came within the queue's visibility timeout (when known). Either way the
event is marked uncertain, with the reason.

Optional per-function settings (the `function_settings` table, from tracekit.toml): `queue` (the source
queue's name or ARN: ties DLQ messages nobody logged to the function), `max_receive_count` (the redrive
policy; `none` for a queue without one), `message_retention_s` (default 345600, SQS's 4 days),
`visibility_timeout_s` and `report_batch_item_failures` (true/false).
"""

from __future__ import annotations

import duckdb

DEFAULT_RETENTION_S = 345_600  # SQS's default MessageRetentionPeriod, 4 days

#: Working tables of this module, dropped when `build` is done.
SCRATCH = ("_sqs_dead_letters", "_sqs_raw", "_sqs_receives")

EMPTY_SETTINGS = (
    "SELECT NULL::VARCHAR AS function_name, NULL::VARCHAR AS setting, NULL::VARCHAR AS value WHERE false"
)

# The settings this module reads, one row per function; a value that does not parse is unknown (NULL).
SETTINGS_SQL = """
CREATE OR REPLACE TEMP VIEW _sqs_setting AS
SELECT function_name,
    max(TRY_CAST(value AS BIGINT)) FILTER (WHERE setting = 'max_receive_count') AS max_receive_count,
    -- Any value that is not a number ('none') says the queue has no redrive policy.
    bool_or(setting = 'max_receive_count') AS redrive_known,
    max(TRY_CAST(value AS DOUBLE)) FILTER (WHERE setting = 'message_retention_s') AS retention_s,
    max(TRY_CAST(value AS DOUBLE)) FILTER (WHERE setting = 'visibility_timeout_s') AS visibility_s,
    bool_or(TRY_CAST(lower(value) AS BOOLEAN)) FILTER (WHERE setting = 'report_batch_item_failures') AS rbif
FROM _sqs_settings GROUP BY function_name
"""

# One row per message in the source queue's redrive DLQ (a message read twice from the DLQ is listed
# twice); `queue` is the source queue the DLQ copy names.
DEAD_LETTERS_SQL = """
CREATE OR REPLACE TEMP TABLE _sqs_dead_letters AS
SELECT message_id, coalesce(split_part(dead_letter_source_arn, ':', 6), '') AS queue, body,
    approximate_receive_count,
    coalesce(make_timestamp(TRY_CAST(json_extract_string(attributes, '$.ApproximateFirstReceiveTimestamp')
                                     AS BIGINT) * 1000), sent_timestamp) AS first_received
FROM dead_letters
WHERE kind = 'source_dlq' AND message_id IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY message_id, queue ORDER BY approximate_receive_count NULLS LAST,
                                                                 position) = 1
"""

# Each SQS item of each invocation, with the invocation's log record and batch response. A response
# counts only for an invocation that succeeded: Lambda reads batchItemFailures from a returned value.
RAW_SQL = """
CREATE OR REPLACE TEMP TABLE _sqs_raw AS
WITH item AS (
    SELECT * FROM items WHERE source = 'sqs'
),
invocation AS (
    SELECT request_id, log_stream, function_name, start_time, end_time, duration_ms, init_duration_ms,
           status, error_type, error_message, cold_start
    FROM invocations
    WHERE request_id IN (SELECT request_id FROM item)
    QUALIFY row_number() OVER (PARTITION BY request_id, log_stream ORDER BY attempt DESC) = 1
),
response AS (
    SELECT request_id, log_stream, failed_item_ids AS failed, result FROM item_results
),
batch AS (
    SELECT request_id, log_stream, any_value(function_name) AS item_function, list(item_id) AS ids,
           count(*) AS seen, max(batch_size) AS batch_size
    FROM item GROUP BY request_id, log_stream
),
judged AS (
    SELECT b.*, coalesce(v.function_name, b.item_function) AS function_name,
        v.request_id IS NOT NULL AS logged, r.request_id IS NOT NULL AS response_known, r.failed,
        v.start_time, v.end_time, v.duration_ms, v.init_duration_ms, v.error_type, v.error_message,
        v.cold_start,
        coalesce(v.status, CASE WHEN r.result IN ('success', 'error') THEN r.result END, 'unknown') AS status
    FROM batch b
    LEFT JOIN invocation v USING (request_id, log_stream)
    LEFT JOIN response r USING (request_id, log_stream)
),
read_response AS (
    SELECT j.*,
        CASE
            WHEN j.status <> 'success' OR j.failed IS NULL OR len(j.failed) = 0
                 OR j.function_name IN (SELECT function_name FROM _sqs_setting WHERE NOT rbif) THEN 'success'
            WHEN len(list_filter(j.failed, lambda x: x IS NULL)) > 0 THEN 'invalid_response'
            -- An identifier naming no message of the batch: checkable only when every item is known.
            WHEN j.seen >= coalesce(j.batch_size, j.seen)
                 AND len(list_filter(j.failed, lambda x: NOT list_contains(j.ids, x))) > 0
                THEN 'invalid_response'
            ELSE 'partial_failure'
        END AS response_outcome
    FROM judged j
),
ordered AS (
    SELECT i.item_id, i.position, i.receive_count, i.sequence_number, i.evidence, i.shard_id AS queue,
        r.* EXCLUDE (ids, failed, item_function),
        r.response_outcome = 'invalid_response'
            OR (r.response_outcome = 'partial_failure' AND list_contains(r.failed, i.item_id)) AS reported,
        row_number() OVER w AS attempt,
        lag(r.end_time) OVER w AS previous_end,
        -- Receives between this one and the previous one that no log line shows.
        greatest(i.receive_count - coalesce(lag(i.receive_count) OVER w, 0) - 1, 0) AS receives_unseen,
        lead(r.start_time) OVER w AS next_start,
        lead(r.request_id) OVER w IS NULL AS is_last
    FROM item i JOIN read_response r USING (request_id, log_stream)
    WINDOW w AS (PARTITION BY r.function_name, i.item_id ORDER BY r.start_time NULLS LAST, r.request_id,
                                                                  i.position)
)
SELECT o.*, d.message_id IS NOT NULL AS dead_lettered
FROM ordered o
LEFT JOIN _sqs_dead_letters d
    ON d.message_id = o.item_id AND (d.queue = o.queue OR d.queue = '' OR o.queue IS NULL)
"""

# Receives after which a message came back although its invocation succeeded and its response is not in
# the logs, judged per function (see the module docstring); then every attempt's outcome and error.
RECEIVES_SQL = """
CREATE OR REPLACE TEMP TABLE _sqs_receives AS
WITH detected AS (
    SELECT DISTINCT function_name FROM _sqs_raw
    WHERE is_last AND dead_lettered AND status = 'success' AND NOT response_known
),
mapping AS (
    SELECT f.function_name, s.rbif AS rbif_setting,
        coalesce(s.rbif, d.function_name IS NOT NULL) AS reads_responses, s.visibility_s
    FROM (SELECT DISTINCT function_name FROM _sqs_raw) f
    LEFT JOIN _sqs_setting s USING (function_name)
    LEFT JOIN detected d USING (function_name)
),
returned AS (
    SELECT r.*, m.rbif_setting, m.reads_responses,
        r.status = 'success' AND NOT r.response_known AND NOT r.reported
        AND (r.dead_lettered OR NOT r.is_last)
        -- Back within the visibility timeout of this receive: a second copy, not a return.
        AND NOT coalesce(r.next_start < r.start_time - to_milliseconds(coalesce(r.init_duration_ms, 0))
                                       + to_seconds(m.visibility_s), false) AS came_back
    FROM _sqs_raw r LEFT JOIN mapping m USING (function_name)
)
SELECT *,
    came_back AND reads_responses AS inferred_failure,
    came_back AND NOT reads_responses AND rbif_setting IS NULL AS unsure_duplicate,
    CASE WHEN reported OR (came_back AND reads_responses) THEN 'error' ELSE status END AS outcome,
    CASE WHEN response_outcome = 'success' AND NOT (came_back AND reads_responses) THEN error_type END
        AS attempt_error_type,
    CASE
        WHEN response_outcome = 'invalid_response'
            THEN 'invalid batchItemFailures response: Lambda failed the whole batch'
        WHEN reported THEN 'reported in batchItemFailures'
        WHEN came_back AND reads_responses
            THEN 'not deleted after a successful invocation: presumably reported in batchItemFailures'
        ELSE error_message
    END AS attempt_error_message
FROM returned
"""

ATTEMPTS_SQL = """
CREATE OR REPLACE TEMP TABLE sqs_attempts AS
SELECT CAST(item_id AS VARCHAR) AS event_id,
    CAST(attempt AS INTEGER) AS attempt,
    CAST(request_id AS VARCHAR) AS request_id,
    CAST(log_stream AS VARCHAR) AS log_stream,
    CAST(start_time AS TIMESTAMP) AS start_time,
    CAST(end_time AS TIMESTAMP) AS end_time,
    CAST(duration_ms AS DOUBLE) AS duration_ms,
    CAST(outcome AS VARCHAR) AS outcome,
    CAST(attempt_error_type AS VARCHAR) AS error_type,
    CAST(attempt_error_message AS VARCHAR) AS error_message,
    CAST(date_diff('microsecond', previous_end, start_time) / 1000.0 AS DOUBLE) AS gap_ms,
    CAST(request_id AS VARCHAR) AS batch_id,
    CAST(cold_start AS BOOLEAN) AS cold_start,
    CAST(function_name AS VARCHAR) AS function_name,
    CAST('sqs' AS VARCHAR) AS source
FROM _sqs_receives
"""

# A standard queue has no sequence numbers: as in the truth file, its first and last message are named by
# messageId.
BATCHES_SQL = """
CREATE OR REPLACE TEMP TABLE sqs_batches AS
SELECT CAST(request_id AS VARCHAR) AS batch_id,
    CAST(any_value(function_name) AS VARCHAR) AS function_name,
    CAST(any_value(queue) AS VARCHAR) AS shard_id,
    CAST(arg_min(coalesce(sequence_number, item_id), position) AS VARCHAR) AS first_sequence_number,
    CAST(arg_max(coalesce(sequence_number, item_id), position) AS VARCHAR) AS last_sequence_number,
    CAST(greatest(count(*), coalesce(max(batch_size), 0)) AS INTEGER) AS size,
    CAST(NULL AS VARCHAR) AS parent_batch_id,
    CAST(0 AS INTEGER) AS depth,
    CAST(request_id AS VARCHAR) AS request_id,
    CAST(CASE
        WHEN any_value(response_outcome) <> 'success' THEN any_value(response_outcome)
        WHEN bool_or(inferred_failure) THEN 'partial_failure'
        ELSE any_value(status)
    END AS VARCHAR) AS outcome
FROM _sqs_receives
GROUP BY request_id, log_stream
"""

EVENTS_SQL = f"""
CREATE OR REPLACE TEMP TABLE sqs_events AS
WITH received AS (
    SELECT function_name, item_id AS event_id, any_value(queue) AS queue,
        min(start_time) AS first_seen, max(end_time) AS last_seen,
        count(*) AS attempts,
        count(*) FILTER (WHERE outcome <> 'init_error') AS deliveries,
        count(*) FILTER (WHERE outcome = 'success') AS successes,
        min(attempt) FILTER (WHERE outcome = 'success') AS first_success,
        max(attempt) FILTER (WHERE outcome = 'success') AS last_success,
        min(attempt) FILTER (WHERE outcome NOT IN ('success', 'unknown')) AS first_failure,
        arg_min(receives_unseen, attempt) AS unseen_before_first,
        arg_max(receive_count, attempt) AS last_receive_count,
        arg_max(outcome, attempt) AS last_outcome,
        max(receive_count) AS max_receive_seen,
        sum(receives_unseen) AS receives_unseen,
        bool_or(inferred_failure) AS inferred_failure,
        bool_or(unsure_duplicate) AS unsure_duplicate,
        arg_max(attempt_error_type, attempt) FILTER (WHERE outcome <> 'success') AS final_error_type,
        arg_max(attempt_error_message, attempt) FILTER (WHERE outcome <> 'success') AS final_error_message,
        bool_or(evidence = 'recorder') AS by_recorder,
        bool_or(evidence = 'logged_event') AS by_logged_event,
        bool_or(evidence = 'logged_fields') AS by_logged_fields,
        bool_or(logged) AS by_logs
    FROM _sqs_receives
    GROUP BY function_name, item_id
),
-- Failed invocations whose log lines may not name all their messages: none named, or only those the
-- handler logged one by one before it failed. Throttles leave no invocation at all.
unnamed_failures AS (
    SELECT DISTINCT v.function_name FROM invocations v
    WHERE v.status NOT IN ('success', 'unknown')
      AND v.function_name IN (SELECT DISTINCT function_name FROM _sqs_receives)
      AND NOT EXISTS (SELECT 1 FROM items i WHERE i.request_id = v.request_id AND i.log_stream = v.log_stream
                                            AND i.evidence <> 'logged_fields')
),
queue_activity AS (
    SELECT function_name, queue, max(start_time) AS last_receive FROM _sqs_receives GROUP BY ALL
),
queue_function AS (
    SELECT queue, min(function_name) AS function_name FROM (
        SELECT DISTINCT shard_id AS queue, function_name FROM items
        WHERE source = 'sqs' AND shard_id IS NOT NULL AND function_name IS NOT NULL
        UNION
        SELECT CASE WHEN value LIKE 'arn:%' THEN split_part(value, ':', 6) ELSE value END, function_name
        FROM _sqs_settings WHERE setting = 'queue'
    ) GROUP BY queue
),
sole_function AS (
    SELECT min(function_name) AS function_name FROM invocations HAVING count(DISTINCT function_name) = 1
),
joined AS (
    SELECT coalesce(r.event_id, d.message_id) AS event_id,
        coalesce(r.function_name, qf.function_name, (SELECT function_name FROM sole_function))
            AS function_name,
        r.* EXCLUDE (event_id, function_name),
        d.message_id AS dead_letter_message_id, d.body AS dead_letter_body,
        d.approximate_receive_count AS dead_letter_receive_count, d.first_received AS dead_letter_first,
        qa.last_receive AS queue_last_receive
    FROM received r
    FULL OUTER JOIN _sqs_dead_letters d
        ON d.message_id = r.event_id AND (d.queue = r.queue OR d.queue = '' OR r.queue IS NULL)
    LEFT JOIN queue_function qf ON qf.queue = d.queue
    LEFT JOIN queue_activity qa
        ON qa.function_name = r.function_name AND qa.queue IS NOT DISTINCT FROM r.queue
),
judged AS (
    SELECT j.*, s.max_receive_count, coalesce(s.redrive_known, false) AS redrive_known,
        coalesce(s.retention_s, {DEFAULT_RETENTION_S}) AS retention_s,
        s.retention_s IS NULL AS default_retention,
        CASE
            WHEN j.dead_letter_message_id IS NOT NULL THEN 'dead_lettered'
            -- Receives before the first one seen: failed ones are likelier when the function has failed
            -- invocations that do not name their messages, else throttles (which are no retry).
            WHEN j.first_success = 1 AND j.unseen_before_first > 0
                 AND j.function_name IN (SELECT function_name FROM unnamed_failures)
                THEN 'succeeded_after_retry'
            WHEN j.first_success = 1 THEN 'succeeded'
            WHEN j.first_success IS NOT NULL THEN 'succeeded_after_retry'
            -- Sent no later than first seen, so gone by first_seen + retention; the mapping polled on.
            WHEN j.queue_last_receive > j.first_seen
                 + to_seconds(coalesce(s.retention_s, {DEFAULT_RETENTION_S})) THEN 'dropped'
            ELSE 'in_flight'
        END AS outcome
    FROM joined j LEFT JOIN _sqs_setting s USING (function_name)
),
explained AS (
    SELECT *, CASE
        WHEN attempts IS NULL THEN
            'Known only from its dead-letter queue message: no log line names it, so its attempts are unknown'
            || coalesce(' (the DLQ copy shows ApproximateReceiveCount ' || dead_letter_receive_count
                        || ', reads of the DLQ included)', '') || '.'
        WHEN receives_unseen > 0 THEN
            'SQS received it at least ' || max_receive_seen || ' times but ' || receives_unseen
            || ' of those receives left no trace in the logs (a throttled invoke, or an invocation whose '
            || 'log lines do not name this message): its attempts are the receives seen.'
        WHEN inferred_failure THEN
            'The handler''s batchItemFailures response is not in the logs (no recorder "out" line): '
            || 'receives after which it came back are taken as reported failures.'
        WHEN unsure_duplicate THEN
            'It was received again after a success and the handler''s response is not in the logs: taken '
            || 'as an at-least-once duplicate (set report_batch_item_failures in tracekit.toml if the '
            || 'mapping reports batch item failures).'
        -- Certain only when the settings say where a failed message goes: back to the queue until its
        -- receives or its retention run out.
        WHEN outcome IN ('dropped', 'in_flight') AND last_outcome = 'unknown' THEN
            'Its last attempt has no REPORT line in the logs: it may still be running.'
        WHEN outcome = 'dropped' AND (NOT redrive_known OR default_retention
                                      OR last_receive_count >= max_receive_count) THEN
            'It failed and was not received again within the queue''s message retention ('
            || CAST(retention_s AS BIGINT) || ' s'
            || CASE WHEN default_retention THEN ', the SQS default' ELSE '' END
            || ') and no DLQ message names it: deleted by SQS, unless it went to a DLQ nobody collected.'
        WHEN outcome = 'in_flight' AND NOT redrive_known THEN
            'It failed and was not received again, and no DLQ message names it: it may still be in the '
            || 'queue, or in a DLQ that was not collected (set max_receive_count in tracekit.toml).'
        WHEN outcome = 'in_flight' AND last_receive_count >= max_receive_count THEN
            'It failed its last allowed receive (max_receive_count ' || max_receive_count
            || ') but no DLQ message for it was collected: SQS moves it to the DLQ on its next receive.'
    END AS uncertain_reason
    FROM judged
)
SELECT CAST(event_id AS VARCHAR) AS event_id,
    CAST('sqs' AS VARCHAR) AS source,
    CAST(function_name AS VARCHAR) AS function_name,
    CAST(coalesce(first_seen, dead_letter_first) AS TIMESTAMP) AS first_seen,
    CAST(last_seen AS TIMESTAMP) AS last_seen,
    CAST(coalesce(attempts, 0) AS INTEGER) AS attempts,
    CAST(coalesce(deliveries, 0) AS INTEGER) AS deliveries,
    CAST(greatest(coalesce(attempts, 0) - 1, 0) AS INTEGER) AS retries,
    CAST(outcome AS VARCHAR) AS outcome,
    CAST(greatest(coalesce(successes, 0) - 1, 0) AS INTEGER) AS duplicates,
    CAST(CASE
        WHEN coalesce(successes, 0) < 2 THEN NULL
        WHEN first_failure < last_success THEN 'redelivery'
        ELSE 'at_least_once'
    END AS VARCHAR) AS duplicate_kind,
    CAST(CASE WHEN outcome NOT LIKE 'succeeded%' THEN final_error_type END AS VARCHAR) AS final_error_type,
    CAST(CASE WHEN outcome NOT LIKE 'succeeded%' THEN final_error_message END AS VARCHAR)
        AS final_error_message,
    CAST(NULL AS VARCHAR) AS destination_record_id,
    CAST(dead_letter_message_id AS VARCHAR) AS dead_letter_message_id,
    CAST(CASE
        WHEN dead_letter_body IS NULL THEN NULL
        WHEN json_valid(dead_letter_body) THEN dead_letter_body
        ELSE to_json(dead_letter_body)
    END AS VARCHAR) AS payload,
    -- In alphabetical order, as the contract asks.
    CAST(concat_ws(',',
        CASE WHEN dead_letter_message_id IS NOT NULL THEN 'dead_letter' END,
        CASE WHEN by_logged_event THEN 'logged_event' END,
        CASE WHEN by_logged_fields THEN 'logged_fields' END,
        CASE WHEN by_logs THEN 'logs' END,
        CASE WHEN by_recorder THEN 'recorder' END) AS VARCHAR) AS evidence,
    CAST(uncertain_reason IS NOT NULL AS BOOLEAN) AS uncertain,
    CAST(uncertain_reason AS VARCHAR) AS uncertain_reason
FROM explained
"""


def build(con: duckdb.DuckDBPyConnection) -> None:
    """Create `sqs_events`, `sqs_attempts` and `sqs_batches` (empty when no SQS message is in evidence)."""
    settings = "function_settings" if _has_table(con, "function_settings") else f"({EMPTY_SETTINGS})"
    con.execute(f"CREATE OR REPLACE TEMP VIEW _sqs_settings AS SELECT * FROM {settings}")
    try:
        for sql in (
            SETTINGS_SQL,
            DEAD_LETTERS_SQL,
            RAW_SQL,
            RECEIVES_SQL,
            ATTEMPTS_SQL,
            BATCHES_SQL,
            EVENTS_SQL,
        ):
            con.execute(sql)
    finally:
        for table in SCRATCH:
            con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute("DROP VIEW IF EXISTS _sqs_setting")
        con.execute("DROP VIEW IF EXISTS _sqs_settings")


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchone()
    return bool(found and found[0])
