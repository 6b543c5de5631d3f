"""Kinesis and DynamoDB Streams lifecycles: every stream record's attempts, the batch trees that
bisect, retries and checkpoints grow, duplicates, and where each record ended.

One job: build the `streams_events`, `streams_attempts` and `streams_batches` temp tables (see the
analyzer contract) from `items` / `item_results` (items.build), `invocations` and
`destination_records`, in set-based SQL.

A batch is one invocation (batch id = its request id) and holds the records `items` lists for it. A
record's event id is its Kinesis eventID (`shardId-…:sequenceNumber`) or DynamoDB eventID; every
batch it was in is an attempt. Sequence numbers (56 digits for Kinesis, beyond any integer type) are
compared zero-padded.

The tree (lambda-semantics §2). Per record, the batch it was in just before (by start time) is its
previous batch; when every record of batch C shares the same previous batch P and P failed, C came
out of P:
- C holds exactly P's records: a retry of P, with P's parent and depth.
- C is a proper part of P after a function error: a split (parent P, depth + 1) when the mapping
  bisects, else a retry that left out records past their maximum age. A left half (C starts where P
  starts) only comes from bisection, so seeing one tells that the function's mapping bisects; the
  `bisect_batch_on_function_error` setting says so up front.
- After a partial batch response (ReportBatchItemFailures) Lambda goes on from the lowest reported
  sequence number: without bisect that is a retry of P (the same batch, as the lab's truth has it),
  with bisect a split at the checkpoint. An invalid response fails the whole batch, retried whole.
  A response is known only from the recorder. Without it, a successful invocation is taken as a
  partial failure at record R when its tail from R comes back, or when it was the last batch holding
  R before an on-failure record with `functionError` null starts at R (uncertain: which records
  after R it reported is unknown).
- Otherwise C is an original batch (depth 0), including an at-least-once re-read after a success.
A retry's place in the tree is that of the batch it retries: the latest non-retry batch of the same
shard ending at the same record (retries drop records only from the front).

A record's attempt outcome is its invocation's status; in a successful invocation a record reported
in batchItemFailures (or all of them, for an invalid response) failed ('error'). The first success
decides the outcome; else an on-failure record whose shard and [start, end] sequence range covers
the record (written after its last attempt) means `sent_to_destination`; else `dropped` when the
shard moved on (a later batch of its shard started after its last attempt) or its retries ran out by
the `maximum_retry_attempts` setting, and `in_flight` otherwise. Without that setting, dropped and
in_flight rest on the shard moving on alone: uncertain. DynamoDB records carry no shard id, so their
"shard" is the function's whole stream. Duplicates are successful deliveries beyond the first:
`batch_retry` when one came in the same batch tree as the first success (a retry, a split, or a
checkpoint re-ran it), `at_least_once` when only a later original batch re-read it.

A failed invocation of the function that names no records (an "orphan": an init failure runs no
handler, so it leaves no recorder line or logged event) may have been an attempt of a record whose
lifecycle spans it, or the original batch (or a split) that the record's first logged batch came out
of; splits and fresh reads look alike, so the first records each shard reads after an orphan, as many
as its batch can hold (`batch_size` setting, else twice the biggest batch seen), are uncertain too.
So are records in a batch the recorder listed only in part.

Records known only from an on-failure record: an S3 destination's `payload` lists them; otherwise the
record's first and last sequence numbers name two events (Kinesis `shardId:sequenceNumber`; DynamoDB
has no eventID there, so the same form), uncertain when the range holds records that can't be named.

Optional settings (function_settings): `maximum_retry_attempts`, `bisect_batch_on_function_error`,
`report_batch_item_failures` (false rules out inferring partial responses).
"""

from __future__ import annotations

import duckdb

EMPTY_ITEMS = """(SELECT NULL::VARCHAR AS request_id, NULL::VARCHAR AS log_stream,
    NULL::VARCHAR AS function_name, NULL::VARCHAR AS source, NULL::VARCHAR AS item_id,
    NULL::VARCHAR AS shard_id, NULL::VARCHAR AS sequence_number, NULL::INTEGER AS receive_count,
    NULL::INTEGER AS position, NULL::INTEGER AS batch_size, NULL::VARCHAR AS evidence WHERE false)"""
EMPTY_RESULTS = """(SELECT NULL::VARCHAR AS request_id, NULL::VARCHAR AS log_stream, NULL::VARCHAR AS result,
    NULL::VARCHAR AS error_type, NULL::VARCHAR[] AS failed_item_ids, NULL::VARCHAR AS evidence WHERE false)"""
EMPTY_SETTINGS = (
    "(SELECT NULL::VARCHAR AS function_name, NULL::VARCHAR AS setting, NULL::VARCHAR AS value WHERE false)"
)

# Sequence numbers as sortable text: Kinesis's 56 digits overflow HUGEINT and DECIMAL(38).
SEQ_KEY = "lpad({0}, 80, '0')"
TRUE_TEXT = "('true', '1', 'yes', 'on')"

SETTINGS = f"""
CREATE OR REPLACE TEMP TABLE tk_streams_settings AS
SELECT function_name,
    max(TRY_CAST(value AS INTEGER)) FILTER (WHERE setting = 'maximum_retry_attempts') AS max_retries,
    max(TRY_CAST(value AS INTEGER)) FILTER (WHERE setting = 'batch_size') AS batch_size,
    bool_or(lower(value) IN {TRUE_TEXT}) FILTER (WHERE setting = 'bisect_batch_on_function_error') AS bisect,
    bool_or(lower(value) IN {TRUE_TEXT}) FILTER (WHERE setting = 'report_batch_item_failures') AS rbif
FROM {{settings}} GROUP BY function_name
"""

# The stream records each invocation handled. `grp` is the unit the shard "moves on" in.
ITEMS = f"""
CREATE OR REPLACE TEMP TABLE tk_streams_items AS
SELECT request_id, log_stream, function_name, source, item_id, shard_id, sequence_number,
    {SEQ_KEY.format("sequence_number")} AS seq_key, position, batch_size, evidence,
    source || chr(31) || coalesce(function_name, '') || chr(31) || coalesce(shard_id, '') AS grp
FROM {{items}}
WHERE source IN ('kinesis', 'dynamodb') AND item_id IS NOT NULL AND request_id IS NOT NULL
"""

# One row per invocation that handled stream records, with its status and recorded response.
BATCHES = f"""
CREATE OR REPLACE TEMP TABLE tk_streams_batch AS
WITH b AS (
    SELECT request_id, any_value(log_stream) AS item_stream, any_value(function_name) AS function_name,
        any_value(source) AS source, any_value(shard_id) AS shard_id, any_value(grp) AS grp,
        arg_min(sequence_number, position) AS first_seq, arg_max(sequence_number, position) AS last_seq,
        count(*) AS n_items, max(batch_size) AS size
    FROM tk_streams_items GROUP BY request_id
),
inv AS (
    SELECT request_id, log_stream, start_time, end_time, duration_ms, status, error_type, error_message,
        cold_start
    FROM invocations WHERE request_id IN (SELECT request_id FROM b)
    QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY attempt, log_stream) = 1
),
res AS (
    SELECT request_id, result, error_type, failed_item_ids FROM {{item_results}}
    WHERE request_id IN (SELECT request_id FROM b)
    QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY log_stream) = 1
)
SELECT b.* EXCLUDE (item_stream), coalesce(i.log_stream, b.item_stream) AS log_stream,
    {SEQ_KEY.format("b.first_seq")} AS first_key, {SEQ_KEY.format("b.last_seq")} AS last_key,
    i.start_time, i.end_time, i.duration_ms, i.cold_start,
    CASE WHEN i.status IS NOT NULL AND i.status <> 'unknown' THEN i.status
         WHEN r.result IN ('success', 'error') THEN r.result
         ELSE coalesce(i.status, 'unknown') END AS status,
    coalesce(i.error_type, r.error_type) AS error_type, i.error_message,
    r.request_id IS NOT NULL AS has_result, r.failed_item_ids
FROM b LEFT JOIN inv i USING (request_id) LEFT JOIN res r USING (request_id)
"""

# Recorded partial batch responses: each reported identifier matched to a record of the batch. An
# identifier that is missing, empty or names no record of the batch fails the whole batch.
REPORTED = """
CREATE OR REPLACE TEMP TABLE tk_streams_reported AS
WITH f AS (
    SELECT request_id, unnest(failed_item_ids) AS fid FROM tk_streams_batch
    WHERE status = 'success' AND len(failed_item_ids) > 0
)
SELECT f.request_id, f.fid, i.seq_key, i.position
FROM f LEFT JOIN tk_streams_items i ON i.request_id = f.request_id AND i.sequence_number = f.fid;

CREATE OR REPLACE TEMP TABLE tk_streams_partial AS
SELECT request_id, bool_or(position IS NULL) AS malformed
FROM tk_streams_reported GROUP BY request_id;
"""

# Each record's batches in time order, and the batch every record of a batch was in just before.
LINKS = """
CREATE OR REPLACE TEMP TABLE tk_streams_member AS
SELECT i.request_id, i.function_name, i.source, i.item_id, i.shard_id, i.sequence_number, i.seq_key,
    i.position, i.evidence, i.grp, b.start_time, b.end_time,
    lag(i.request_id) OVER (PARTITION BY i.function_name, i.source, i.item_id
                            ORDER BY b.start_time NULLS LAST, b.end_time, i.request_id) AS prev_rid
FROM tk_streams_items i JOIN tk_streams_batch b USING (request_id);

CREATE OR REPLACE TEMP TABLE tk_streams_link AS
WITH prev AS (
    SELECT request_id, count(prev_rid) AS with_prev, count(DISTINCT prev_rid) AS prevs, min(prev_rid) AS p
    FROM tk_streams_member GROUP BY request_id
)
SELECT c.request_id, c.grp, c.function_name, c.start_time, c.first_key, c.last_key, c.n_items,
    CASE WHEN pr.prevs = 1 AND pr.with_prev = c.n_items THEN pr.p END AS p
FROM tk_streams_batch c JOIN prev pr USING (request_id);
"""

# What each batch is to the batch it came out of: original, retry or split (see the docstring).
KINDS = """
CREATE OR REPLACE TEMP TABLE tk_streams_kind AS
WITH l AS (
    SELECT l.*, p.status AS p_status, p.has_result AS p_has_result, p.first_key AS p_first_key,
        p.last_key AS p_last_key, p.n_items AS p_n, pa.request_id IS NOT NULL AS p_partial,
        s.bisect AS bisect_setting, coalesce(s.rbif, true) AS rbif_possible
    FROM tk_streams_link l
    LEFT JOIN tk_streams_batch p ON p.request_id = l.p
    LEFT JOIN tk_streams_partial pa ON pa.request_id = l.p
    LEFT JOIN tk_streams_settings s ON s.function_name = l.function_name
),
st AS (
    SELECT *, CASE
        WHEN p IS NULL THEN NULL
        WHEN p_status <> 'success' THEN 'error'
        WHEN p_partial THEN 'partial'
        -- No response on record, yet its tail came back: a partial response checkpointed there.
        WHEN NOT p_has_result AND rbif_possible AND last_key = p_last_key THEN 'inferred'
        ELSE 'ok'
    END AS p_state
    FROM l
),
fn AS (
    SELECT function_name,
        coalesce(any_value(bisect_setting),
                 bool_or(p_state = 'error' AND first_key = p_first_key AND n_items < p_n), false) AS bisect
    FROM st GROUP BY function_name
)
SELECT st.*, fn.bisect,
    CASE
        WHEN p_state IS NULL OR p_state = 'ok' THEN 'original'
        WHEN n_items = p_n THEN 'retry'
        WHEN p_state = 'error' AND (first_key = p_first_key OR fn.bisect) THEN 'split'
        WHEN p_state IN ('partial', 'inferred') AND fn.bisect THEN 'split'
        ELSE 'retry'
    END AS kind
FROM st JOIN fn USING (function_name);

CREATE OR REPLACE TEMP TABLE tk_streams_inferred AS
WITH from_tail AS (
    SELECT p AS request_id, min(first_key) AS checkpoint_key
    FROM tk_streams_kind WHERE p_state = 'inferred' AND kind <> 'original' GROUP BY p
),
last_holder AS (
    -- Given up on after partial responses, a batch's on-failure record (functionError null)
    -- starts at the checkpoint of its last attempt: the latest batch holding that record by then.
    SELECT d.lo AS checkpoint_key, m.request_id
    FROM tk_streams_dest d
    JOIN tk_streams_member m
        ON m.source = d.source AND coalesce(d.function_name, m.function_name) = m.function_name
        AND (m.source = 'dynamodb' OR m.shard_id = d.shard_id) AND m.seq_key = d.lo AND m.start_time <= d.ts
    WHERE d.condition = 'RetryAttemptsExhausted' AND d.function_error IS NULL
    QUALIFY row_number() OVER (PARTITION BY d.record_id ORDER BY m.start_time DESC) = 1
),
from_record AS (
    SELECT h.request_id, h.checkpoint_key
    FROM last_holder h JOIN tk_streams_batch b USING (request_id)
    LEFT JOIN tk_streams_settings s ON s.function_name = b.function_name
    WHERE b.status = 'success' AND NOT b.has_result AND coalesce(s.rbif, true)
)
SELECT request_id, min(checkpoint_key) AS checkpoint_key
FROM (SELECT * FROM from_tail UNION ALL SELECT * FROM from_record) GROUP BY request_id;
"""

# The tree node of every batch (a retry belongs to the batch it retries), each node's depth, and the
# batches table.
TREE = """
CREATE OR REPLACE TEMP TABLE tk_streams_node AS
WITH heads AS (
    SELECT request_id AS head, grp, last_key, start_time FROM tk_streams_kind
    WHERE kind <> 'retry' AND start_time IS NOT NULL
),
retried AS (
    SELECT k.request_id, h.head
    FROM (SELECT * FROM tk_streams_kind WHERE kind = 'retry') k
    ASOF LEFT JOIN heads h ON k.grp = h.grp AND k.last_key = h.last_key AND k.start_time >= h.start_time
)
SELECT k.request_id, k.kind, k.p,
    CASE WHEN k.kind = 'retry' THEN coalesce(r.head, k.p) ELSE k.request_id END AS node
FROM tk_streams_kind k LEFT JOIN retried r USING (request_id);

CREATE OR REPLACE TEMP TABLE tk_streams_depth AS
WITH RECURSIVE d(request_id, depth, root) AS (
    SELECT request_id, 0, request_id FROM tk_streams_node WHERE kind = 'original'
    UNION ALL
    SELECT h.request_id, d.depth + 1, d.root
    FROM d
    JOIN tk_streams_node chain ON chain.node = d.request_id
    JOIN tk_streams_node h ON h.p = chain.request_id AND h.kind = 'split'
)
SELECT request_id, min(depth) AS depth, arg_min(root, depth) AS root FROM d GROUP BY request_id;

CREATE OR REPLACE TEMP TABLE streams_batches AS
SELECT
    CAST(b.request_id AS VARCHAR) AS batch_id,
    CAST(b.function_name AS VARCHAR) AS function_name,
    CAST(b.shard_id AS VARCHAR) AS shard_id,
    CAST(b.first_seq AS VARCHAR) AS first_sequence_number,
    CAST(b.last_seq AS VARCHAR) AS last_sequence_number,
    CAST(coalesce(b.size, b.n_items) AS INTEGER) AS size,
    CAST(CASE n.kind WHEN 'split' THEN n.p
                     WHEN 'retry' THEN CASE WHEN head.kind = 'split' THEN head.p END END AS VARCHAR)
        AS parent_batch_id,
    CAST(coalesce(d.depth, 0) AS INTEGER) AS depth,
    CAST(b.request_id AS VARCHAR) AS request_id,
    CAST(CASE WHEN b.status = 'success' AND (pa.request_id IS NOT NULL OR inf.request_id IS NOT NULL)
              THEN 'partial_failure' ELSE b.status END AS VARCHAR) AS outcome,
    -- Not in the contract: how the batch relates to the one it came out of, and when it ran.
    CAST(n.kind AS VARCHAR) AS relation,
    CAST(b.start_time AS TIMESTAMP) AS start_time,
    CAST(b.source AS VARCHAR) AS source
FROM tk_streams_batch b
JOIN tk_streams_node n USING (request_id)
LEFT JOIN tk_streams_node head ON head.request_id = n.node
LEFT JOIN tk_streams_depth d ON d.request_id = n.node
LEFT JOIN tk_streams_partial pa ON pa.request_id = b.request_id
LEFT JOIN tk_streams_inferred inf ON inf.request_id = b.request_id
"""

# Every (record, batch) pair is an attempt of that record.
ATTEMPTS = """
CREATE OR REPLACE TEMP TABLE tk_streams_tries AS
WITH t AS (
    SELECT m.*, b.log_stream, b.duration_ms, b.cold_start, n.kind, n.node, coalesce(d.root, n.node) AS root,
        CASE WHEN b.status <> 'success' THEN b.status
             WHEN pa.malformed OR r.request_id IS NOT NULL OR inf.checkpoint_key = m.seq_key THEN 'error'
             ELSE 'success' END AS outcome,
        CASE WHEN b.status <> 'success' THEN b.error_type END AS error_type,
        CASE WHEN b.status <> 'success' THEN b.error_message
             WHEN pa.malformed THEN 'The batchItemFailures response was invalid, so the whole batch failed'
             WHEN r.request_id IS NOT NULL THEN 'Reported as failed in batchItemFailures'
             WHEN inf.checkpoint_key = m.seq_key THEN 'Lambda retried the batch from this record (checkpoint)'
        END AS error_message,
        coalesce(inf.checkpoint_key < m.seq_key, false) AS guessed,
        coalesce(b.n_items < b.size, false) AS truncated
    FROM tk_streams_member m
    JOIN tk_streams_batch b USING (request_id)
    JOIN tk_streams_node n USING (request_id)
    LEFT JOIN tk_streams_depth d ON d.request_id = n.node
    LEFT JOIN tk_streams_partial pa USING (request_id)
    LEFT JOIN (SELECT DISTINCT request_id, seq_key FROM tk_streams_reported WHERE position IS NOT NULL) r
        ON r.request_id = m.request_id AND r.seq_key = m.seq_key
    LEFT JOIN tk_streams_inferred inf ON inf.request_id = m.request_id
)
SELECT *,
    row_number() OVER w AS attempt,
    date_diff('microsecond', lag(end_time) OVER w, start_time) / 1000.0 AS gap_ms,
    count(*) FILTER (WHERE outcome = 'success') OVER (w ROWS UNBOUNDED PRECEDING) AS successes_so_far,
    arg_min(root, start_time) FILTER (WHERE outcome = 'success')
        OVER (PARTITION BY function_name, source, item_id) AS first_success_root,
    count(*) OVER (PARTITION BY function_name, source, item_id, node) AS node_tries
FROM t
WINDOW w AS (PARTITION BY function_name, source, item_id
             ORDER BY start_time NULLS LAST, end_time, request_id);

CREATE OR REPLACE TEMP TABLE streams_attempts AS
SELECT
    CAST(item_id AS VARCHAR) AS event_id,
    CAST(attempt AS INTEGER) AS attempt,
    CAST(request_id AS VARCHAR) AS request_id,
    CAST(log_stream AS VARCHAR) AS log_stream,
    CAST(start_time AS TIMESTAMP) AS start_time,
    CAST(end_time AS TIMESTAMP) AS end_time,
    CAST(duration_ms AS DOUBLE) AS duration_ms,
    CAST(outcome AS VARCHAR) AS outcome,
    CAST(error_type AS VARCHAR) AS error_type,
    CAST(error_message AS VARCHAR) AS error_message,
    CAST(gap_ms AS DOUBLE) AS gap_ms,
    CAST(request_id AS VARCHAR) AS batch_id,
    CAST(cold_start AS BOOLEAN) AS cold_start,
    CAST(function_name AS VARCHAR) AS function_name,
    CAST(source AS VARCHAR) AS source
FROM tk_streams_tries
"""

# On-failure records of stream mappings, and the records each one names: every entry of an S3
# destination's payload, else the first and last sequence numbers of its range.
DESTINATIONS = f"""
CREATE OR REPLACE TEMP TABLE tk_streams_dest AS
SELECT record_id, kind AS source, function_name, shard_id, source_arn, condition, request_id,
    approximate_invoke_count, batch_size, "timestamp" AS ts, payload, function_error,
    start_sequence_number, end_sequence_number,
    {SEQ_KEY.format("start_sequence_number")} AS lo, {SEQ_KEY.format("end_sequence_number")} AS hi,
    coalesce(json_type(payload, '$.Records') = 'ARRAY', false) AS listed
FROM destination_records
WHERE kind IN ('kinesis', 'dynamodb') AND start_sequence_number IS NOT NULL;

CREATE OR REPLACE TEMP TABLE tk_streams_named AS
WITH listed AS (
    SELECT d.record_id, d.source, d.function_name, d.shard_id, d.condition, d.ts,
        d.approximate_invoke_count, d.batch_size, true AS listed, e.entry,
        CASE d.source WHEN 'kinesis' THEN e.entry ->> '$.kinesis.sequenceNumber'
                      ELSE e.entry ->> '$.dynamodb.SequenceNumber' END AS sequence_number
    FROM (SELECT * FROM tk_streams_dest WHERE listed) d,
        unnest(json_extract(d.payload, '$.Records[*]')) AS e(entry)
),
ends AS (
    SELECT record_id, source, function_name, shard_id, condition, ts, approximate_invoke_count, batch_size,
        false AS listed, NULL::JSON AS entry,
        unnest(list_distinct([start_sequence_number, end_sequence_number])) AS sequence_number
    FROM tk_streams_dest WHERE NOT listed
)
SELECT *, {SEQ_KEY.format("sequence_number")} AS seq_key,
    coalesce(entry ->> '$.eventID', shard_id || ':' || sequence_number) AS event_id,
    CASE WHEN entry IS NOT NULL THEN CAST(entry AS VARCHAR) END AS payload
FROM (SELECT * FROM listed UNION ALL BY NAME SELECT * FROM ends);
"""

# Per record: what its attempts add up to, the on-failure record that covers it and how far its
# shard got; then its outcome.
EVENTS = """
CREATE OR REPLACE TEMP TABLE tk_streams_life AS
WITH agg AS (
    SELECT function_name, source, item_id AS event_id,
        any_value(shard_id) AS shard_id, any_value(seq_key) AS seq_key, any_value(grp) AS grp,
        min(start_time) AS first_start, max(start_time) AS last_start,
        max(coalesce(end_time, start_time)) AS last_end,
        count(*) AS attempts,
        count(*) FILTER (WHERE outcome <> 'init_error') AS deliveries,
        count(*) FILTER (WHERE outcome = 'success') AS successes,
        min(attempt) FILTER (WHERE outcome = 'success') AS first_success,
        -- Processed again within the tree of its first success: its batch (or a split) was retried.
        bool_or(outcome = 'success' AND successes_so_far > 1 AND root = first_success_root)
            AS retried_success,
        arg_max(error_type, attempt) FILTER (WHERE outcome <> 'success') AS last_error_type,
        arg_max(error_message, attempt) FILTER (WHERE outcome <> 'success') AS last_error_message,
        arg_max(node_tries, attempt) AS node_tries,
        bool_or(guessed) AS guessed, bool_or(truncated) AS truncated,
        list_sort(list_distinct(list(evidence))) AS evidence
    FROM tk_streams_tries GROUP BY function_name, source, item_id
),
shard_reach AS (
    SELECT grp, max(start_time) AS last_batch_start FROM tk_streams_batch GROUP BY grp
),
failed AS (SELECT * FROM agg WHERE successes = 0),
covered AS (
    SELECT f.function_name, f.source, f.event_id, d.record_id
    FROM failed f JOIN tk_streams_dest d
        ON d.source = f.source AND coalesce(d.function_name, f.function_name) = f.function_name
        AND (f.source = 'dynamodb' OR d.shard_id = f.shard_id)
        AND f.seq_key >= d.lo AND f.seq_key <= d.hi AND d.ts >= f.last_start
    QUALIFY row_number() OVER (PARTITION BY f.function_name, f.source, f.event_id
                               ORDER BY d.ts, d.record_id) = 1
),
orphans AS (
    -- Failed invocations of these functions that no record names: an init failure runs no handler,
    -- so no recorder line or logged event says which batch it was.
    SELECT function_name, start_time FROM invocations
    WHERE function_name IN (SELECT DISTINCT function_name FROM tk_streams_batch)
      AND request_id NOT IN (SELECT request_id FROM tk_streams_batch)
      AND status <> 'success' AND start_time IS NOT NULL
),
payloads AS (
    SELECT function_name, source, seq_key, any_value(payload) AS payload
    FROM tk_streams_named WHERE payload IS NOT NULL GROUP BY ALL
),
ranked AS (
    SELECT function_name, source, event_id, grp, first_start,
        row_number() OVER (PARTITION BY grp ORDER BY first_start, seq_key) AS rn
    FROM agg
),
reach AS (
    -- How many records an orphan's batch can hold: the mapping's batch_size, else twice the biggest
    -- batch seen (the orphan may be the parent of the biggest one seen).
    SELECT b.function_name, coalesce(any_value(s.batch_size), 2 * max(coalesce(b.size, b.n_items))) AS most
    FROM tk_streams_batch b LEFT JOIN tk_streams_settings s USING (function_name)
    GROUP BY b.function_name
),
after_orphan AS (
    -- A split and a fresh read look alike: the first records read after an orphan, as many as its
    -- batch can hold, may have had it (or a batch tree grown from it) as their first attempts.
    SELECT r.*, o.start_time AS orphan_before
    FROM ranked r ASOF LEFT JOIN orphans o
        ON o.function_name = r.function_name AND r.first_start > o.start_time
),
hidden AS (
    SELECT a.function_name, a.source, a.event_id
    FROM after_orphan a
    ASOF LEFT JOIN ranked k ON k.grp = a.grp AND a.orphan_before > k.first_start
    JOIN reach m ON m.function_name = a.function_name
    WHERE a.orphan_before IS NOT NULL AND a.rn - coalesce(k.rn, 0) <= m.most
)
SELECT a.*, c.record_id AS destination_record_id, r.last_batch_start, s.max_retries, p.payload,
    -- An orphan during its lifecycle may have been one more attempt of it.
    h.event_id IS NOT NULL OR o.start_time <= a.last_end AS orphaned
FROM agg a
LEFT JOIN covered c USING (function_name, source, event_id)
LEFT JOIN shard_reach r USING (grp)
LEFT JOIN tk_streams_settings s USING (function_name)
LEFT JOIN payloads p ON p.function_name IS NOT DISTINCT FROM a.function_name AND p.source = a.source
    AND p.seq_key = a.seq_key
LEFT JOIN hidden h USING (function_name, source, event_id)
ASOF LEFT JOIN orphans o ON o.function_name = a.function_name AND o.start_time >= a.first_start;

CREATE OR REPLACE TEMP TABLE tk_streams_fates AS
SELECT *,
    CASE
        WHEN first_success = 1 THEN 'succeeded'
        WHEN first_success IS NOT NULL THEN 'succeeded_after_retry'
        WHEN destination_record_id IS NOT NULL THEN 'sent_to_destination'
        WHEN last_batch_start > last_start OR exhausted THEN 'dropped'
        ELSE 'in_flight'
    END AS outcome
FROM (SELECT *, max_retries >= 0 AND node_tries > max_retries AS exhausted FROM tk_streams_life);

CREATE OR REPLACE TEMP TABLE tk_streams_item_events AS
SELECT *,
    CASE
        WHEN orphaned THEN
            'A failed invocation that names no records (an init failure, say) ran during or just before '
            || 'its lifecycle: it may have been one more attempt of it.'
        WHEN truncated THEN
            'A batch it was in held more records than the recorder listed, so the batch tree around it '
            || 'is partly guessed.'
        WHEN guessed THEN
            'Its batch came back from an earlier record without a logged partial batch response, so '
            || 'whether that response reported this record too is a guess.'
        WHEN outcome = 'dropped' AND max_retries IS NULL THEN
            'Its shard moved on after its last failed attempt and no on-failure record covers it; '
            || 'without the mapping''s maximum_retry_attempts (tracekit.toml) tracekit can''t confirm '
            || 'that its retries ran out.'
        WHEN outcome = 'dropped' AND NOT coalesce(exhausted, false) THEN
            'Its shard moved on before maximum_retry_attempts ran out and no on-failure record covers it: '
            || 'probably its maximum record age passed.'
        WHEN outcome = 'in_flight' AND max_retries IS NULL THEN
            'No later batch of its shard after its last failed attempt: Lambda may still be retrying it '
            || '(by default until the record expires), unless a retry or age limit ended it.'
    END AS uncertain_reason
FROM tk_streams_fates;

CREATE OR REPLACE TEMP TABLE tk_streams_dest_events AS
WITH recorded AS (
    SELECT DISTINCT function_name FROM tk_streams_items WHERE evidence = 'recorder'
),
named AS (
    SELECT n.*, count(*) OVER (PARTITION BY n.record_id) AS names,
        n.function_name IN (SELECT function_name FROM recorded) AS recorded
    FROM tk_streams_named n
    WHERE NOT EXISTS (
        SELECT 1 FROM tk_streams_items i
        WHERE i.source = n.source AND i.function_name IS NOT DISTINCT FROM n.function_name
          AND (i.item_id = n.event_id OR i.seq_key = n.seq_key)
    )
)
SELECT *,
    CASE WHEN recorded OR condition = 'RecordAgeExceeded' THEN 0
         ELSE coalesce(approximate_invoke_count, 0) END AS tries,
    CASE
        WHEN NOT listed AND coalesce(batch_size, names) > names THEN
            'Known only from an on-failure record covering ' || batch_size || ' records: only the first and '
            || 'last can be named without reading the stream, and no log shows the invocations they were in.'
        WHEN NOT listed AND source = 'dynamodb' THEN
            'Known only from an on-failure record, which carries no DynamoDB eventID: named by shard and '
            || 'sequence number, and no log shows the invocations it was in.'
        WHEN recorded AND condition = 'RecordAgeExceeded' THEN NULL
        WHEN recorded THEN
            'An on-failure record covers it, but no recorded invocation handled it (an init failure leaves '
            || 'no recorder line).'
        ELSE 'Known only from its on-failure record: no log shows the invocations it was in, and its '
            || 'attempts are the record''s approximateInvokeCount, which leaves out attempts before a split.'
    END AS uncertain_reason
FROM named
QUALIFY row_number() OVER (PARTITION BY function_name, source, event_id ORDER BY ts, record_id) = 1;

CREATE OR REPLACE TEMP TABLE streams_events AS
SELECT
    CAST(event_id AS VARCHAR) AS event_id,
    CAST(source AS VARCHAR) AS source,
    CAST(function_name AS VARCHAR) AS function_name,
    CAST(first_start AS TIMESTAMP) AS first_seen,
    CAST(last_end AS TIMESTAMP) AS last_seen,
    CAST(attempts AS INTEGER) AS attempts,
    CAST(deliveries AS INTEGER) AS deliveries,
    CAST(attempts - 1 AS INTEGER) AS retries,
    CAST(outcome AS VARCHAR) AS outcome,
    CAST(greatest(successes - 1, 0) AS INTEGER) AS duplicates,
    CAST(CASE WHEN successes < 2 THEN NULL WHEN retried_success THEN 'batch_retry' ELSE 'at_least_once' END
         AS VARCHAR) AS duplicate_kind,
    CAST(CASE WHEN first_success IS NULL THEN last_error_type END AS VARCHAR) AS final_error_type,
    CAST(CASE WHEN first_success IS NULL THEN last_error_message END AS VARCHAR) AS final_error_message,
    CAST(destination_record_id AS VARCHAR) AS destination_record_id,
    CAST(NULL AS VARCHAR) AS dead_letter_message_id,
    CAST(payload AS VARCHAR) AS payload,
    CAST(array_to_string(list_sort(list_distinct(
        evidence || ['logs']
        || CASE WHEN destination_record_id IS NOT NULL THEN ['destination_record'] ELSE [] END
    )), ',') AS VARCHAR) AS evidence,
    CAST(uncertain_reason IS NOT NULL AS BOOLEAN) AS uncertain,
    CAST(uncertain_reason AS VARCHAR) AS uncertain_reason
FROM tk_streams_item_events
UNION ALL
SELECT
    CAST(event_id AS VARCHAR),
    CAST(source AS VARCHAR),
    CAST(function_name AS VARCHAR),
    CAST(ts AS TIMESTAMP),
    CAST(ts AS TIMESTAMP),
    CAST(tries AS INTEGER),
    CAST(tries AS INTEGER),
    CAST(greatest(tries - 1, 0) AS INTEGER),
    'sent_to_destination',
    0,
    CAST(NULL AS VARCHAR),
    CAST(NULL AS VARCHAR),
    CAST(NULL AS VARCHAR),
    CAST(record_id AS VARCHAR),
    CAST(NULL AS VARCHAR),
    CAST(payload AS VARCHAR),
    'destination_record',
    CAST(uncertain_reason IS NOT NULL AS BOOLEAN),
    CAST(uncertain_reason AS VARCHAR)
FROM tk_streams_dest_events
"""


def build(con: duckdb.DuckDBPyConnection) -> None:
    """Create `streams_events`, `streams_attempts` and `streams_batches` on `con` (a store connection
    on which items.build has run)."""
    relations = {
        "{items}": "items" if _has_table(con, "items") else EMPTY_ITEMS,
        "{item_results}": "item_results" if _has_table(con, "item_results") else EMPTY_RESULTS,
        "{settings}": "function_settings" if _has_table(con, "function_settings") else EMPTY_SETTINGS,
    }
    for step in (SETTINGS, ITEMS, DESTINATIONS, BATCHES, REPORTED, LINKS, KINDS, TREE, ATTEMPTS, EVENTS):
        sql = step
        for name, relation in relations.items():
            sql = sql.replace(name, relation)
        con.execute(sql)


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()
    return bool(found and found[0])
