"""Which items (SQS messages, stream records, …) each invocation handled, read from its log lines.

One job: build the analyzer's `items` and `item_results` temp tables (see the analyzer contract)
from `log_events` and `invocations`, in set-based SQL.

Evidence, strongest first; an invocation keeps only its strongest kind:

1. `recorder`: the "in" line of tracekit.recorder names the source, its ARN and every item (id,
   receive count, sequence number) in batch order; `count` is the batch size even when `omitted`
   items were left off the line, so such a batch has fewer rows than its `batch_size`.
2. `logged_event`: the function logged its incoming event, a JSON object whose `Records` come from
   `aws:sqs`, `aws:kinesis` or `aws:dynamodb` (the first one logged per invocation counts).
3. `logged_fields`: structured log records with `messageId`, `eventID` or `sequenceNumber` at the
   top level or inside `message` (one row per distinct item per invocation; `position` is the order
   of first mention and `batch_size` the number of distinct items mentioned, a lower bound). An
   `eventID` of the Kinesis form `shardId-…:sequenceNumber` is a Kinesis record, any other one a
   DynamoDB record; a `sequenceNumber` logged without an `eventID` or a `shardId` field leaves
   `item_id` NULL, as the record's shard is unknown.

Each kind is read wherever Lambda puts a line: the whole message (text format, `print`), the JSON
text after a Python `[LEVEL]\\t<time>\\t<request id>\\t` or Node `<time>\\t<request id>\\t<LEVEL>\\t`
prefix, or the `message` field (an object or a JSON string) of a JSON-format application record.

A line belongs to the invocation its request id names (the recorder's `requestId`, the text
prefix, a JSON record's `requestId` / `function_request_id`); otherwise to the invocation of the
same log stream whose [start_time, end_time] holds its timestamp (the one that started last, when
one attempt ends in the millisecond the next starts); plain text without timestamps goes by file
order to the START before it. Async retries that reuse a request id in one log stream share one
(request_id, log_stream) key, so their items are listed once.

`item_results` comes from the recorder's "out" lines only: Lambda never logs a handler's response,
so a partial-batch response is known only when the recorder wrote it down. `failed_item_ids` is NULL
when the response had no `batchItemFailures` or a null one and empty when it had an empty list (all
three mean success to Lambda); an entry whose identifier is missing, empty or not a string (Lambda
fails the whole batch for it) is a NULL element.
Entries past the recorder's limit (`omittedFailures`) are not listed. For a key shared by async
retries, the last "out" line is kept.

Item columns per source: `shard_id` is the queue (SQS) or topic (SNS) name from the source ARN, the
Kinesis shard from the eventID, the bucket for S3, NULL for DynamoDB (no shard in the event);
`sequence_number` is the Kinesis/DynamoDB sequence number, the FIFO SequenceNumber, or S3's
sequencer. S3 items have `item_id` `s3://bucket/key`; an event of unknown shape its recorder digest.
"""

from __future__ import annotations

from typing import Any

import duckdb

from tracekit import jsonio
from tracekit.store.catalog import sql_str
from tracekit.store.schema import STREAM_KEY

# A cheap filter before parsing: a line of interest starts as JSON (`{`), a Python logging line (`[`)
# or a Node line (a digit), is not one of the platform's JSON records, and contains one of these
# words (JSON-escaped or not).
_WANTED = ("tracekit", "Records", "messageId", "eventID", "equenceNumber")
_PLATFORM_RECORD = (
    """starts_with(message, '{"time":"') AND contains(left(message, 80), '"type":"platform.')"""
)
_WANTED_SQL = (
    "(starts_with(message, '[') OR (message >= '0' AND message < ':')"
    f" OR (starts_with(message, '{{') AND NOT ({_PLATFORM_RECORD}))) AND ("
    + " OR ".join(f"contains(message, '{word}')" for word in _WANTED)
    + ")"
)

# What a logged record of the Records array tells about its item.
_RECORD: dict[str, Any] = {
    "eventSource": "VARCHAR",
    "messageId": "VARCHAR",
    "eventID": "VARCHAR",
    "eventSourceARN": "VARCHAR",
    "attributes": {"ApproximateReceiveCount": "VARCHAR", "SequenceNumber": "VARCHAR"},
    "kinesis": {"sequenceNumber": "VARCHAR"},
    "dynamodb": {"SequenceNumber": "VARCHAR"},
}
# Every field any kind of evidence reads, so that a line's JSON is parsed once (json_transform
# leaves a field NULL when it is missing or of another type). A whole logged record (with its
# messageId or eventID at the top) is read by the same fields as a record inside Records.
_LINE: dict[str, Any] = {
    "tracekit": "VARCHAR",
    "phase": "VARCHAR",
    "requestId": "VARCHAR",
    "function_request_id": "VARCHAR",
    "source": "VARCHAR",
    "sourceArn": "VARCHAR",
    "shard": "VARCHAR",
    "count": "BIGINT",
    "items": [
        {
            "id": "VARCHAR",
            "receiveCount": "VARCHAR",
            "seq": "VARCHAR",
            "bucket": "VARCHAR",
            "key": "VARCHAR",
            "sequencer": "VARCHAR",
            "digest": "VARCHAR",
        }
    ],
    "result": "VARCHAR",
    "errorType": "VARCHAR",
    "batchItemFailures": "JSON",
    "Records": [_RECORD],
    **_RECORD,
    "sequenceNumber": "VARCHAR",
    "shardId": "VARCHAR",
    "ApproximateReceiveCount": "VARCHAR",
    "receiveCount": "VARCHAR",
    "message": "JSON",
}


def _kind(doc: str) -> str:
    """SQL: which evidence the parsed line `doc` is, or NULL."""
    return f"""CASE
        WHEN {doc}.tracekit = 'recorder' AND {doc}.phase IN ('in', 'out') THEN 'recorder_' || {doc}.phase
        WHEN {doc}."Records"[1].eventSource IN ('aws:sqs', 'aws:kinesis', 'aws:dynamodb') THEN 'logged_event'
        WHEN coalesce({doc}.messageId, {doc}.eventID, {doc}.sequenceNumber) IS NOT NULL THEN 'logged_fields'
    END"""


#: A log line's JSON (`body`: the whole message, or what follows a Python `[LEVEL]\t<time>\t<request id>\t`
#: or Node `<time>\t<request id>\t<LEVEL>\t` prefix) and the request id such a prefix names (`text_rid`).
LINE_PARTS = r"""CASE
            WHEN starts_with(message, '{') THEN message
            WHEN starts_with(message, '[')
                THEN regexp_extract(message, '^\[[A-Z]+\]\t[^\t]*\t[^\t\n]*\t(\{.*\})\s*$', 1)
            ELSE regexp_extract(message, '^\d{4}-\d\d-\d\dT[0-9:.]+Z\t[^\t\n]*\t[A-Z]+\t(\{.*\})\s*$', 1)
        END AS body,
        CASE
            WHEN starts_with(message, '[')
                THEN regexp_extract(message, '^\[[A-Z]+\]\t[^\t]*\t([^\t\n]*)\t', 1)
            WHEN NOT starts_with(message, '{')
                THEN regexp_extract(message, '^\d{4}-\d\d-\d\dT[0-9:.]+Z\t([^\t\n]*)\t[A-Z]+\t', 1)
        END AS text_rid"""


# Step 1: the candidate lines, parsed once: their evidence `e` (the line's JSON, or the JSON in
# its `message` field) and the request id they name.
LINES = r"""
CREATE OR REPLACE TEMP TABLE tk_item_lines AS
WITH raw AS (
    SELECT log_group, log_stream, "timestamp" AS ts, seq, event_id, {stream_key} AS stream_key,
        {line_parts}
    FROM log_events
    WHERE {wanted}
),
outer_doc AS (
    SELECT * EXCLUDE (body), TRY(json_transform(body, {schema})) AS top
    FROM raw WHERE body <> ''
),
outer_kind AS (
    SELECT *, {top_kind} AS top_kind,
        CASE WHEN json_type(top.message) = 'OBJECT' THEN top.message
             WHEN json_type(top.message) = 'VARCHAR' AND starts_with(ltrim(top.message ->> '$'), '{')
                THEN top.message ->> '$'
        END AS message_json
    FROM outer_doc WHERE top IS NOT NULL
),
inner_doc AS (
    SELECT *, CASE WHEN top_kind IS NULL AND message_json IS NOT NULL
                   THEN TRY(json_transform(message_json, {schema})) END AS msg_doc
    FROM outer_kind
),
evidence AS (
    SELECT *, coalesce(top_kind, {inner_kind}) AS kind,
        CASE WHEN top_kind IS NOT NULL THEN top ELSE msg_doc END AS e
    FROM inner_doc
)
SELECT log_group, log_stream, ts, seq, event_id, stream_key, kind,
    coalesce(CASE WHEN starts_with(kind, 'recorder') THEN e.requestId END, nullif(text_rid, ''),
             top.requestId, top.function_request_id) AS rid,
    -- only what each kind is read for, so that the rows stay narrow
    CASE WHEN kind = 'recorder_in' THEN e.source END AS rec_source,
    CASE WHEN kind = 'recorder_in' THEN e.sourceArn END AS rec_arn,
    CASE WHEN kind = 'recorder_in' THEN e.shard END AS rec_shard,
    CASE WHEN kind = 'recorder_in' THEN e.count END AS rec_count,
    CASE WHEN kind = 'recorder_in' THEN e.items END AS rec_items,
    CASE WHEN kind = 'recorder_out' THEN e.result END AS out_result,
    CASE WHEN kind = 'recorder_out' THEN e.errorType END AS out_error_type,
    CASE WHEN kind = 'recorder_out' THEN e.batchItemFailures END AS out_failures,
    CASE WHEN kind = 'logged_event' THEN e."Records" END AS records,
    CASE WHEN kind = 'logged_fields' THEN e.messageId END AS f_message_id,
    CASE WHEN kind = 'logged_fields' THEN e.eventID END AS f_record_id,
    CASE WHEN kind = 'logged_fields' THEN e.shardId END AS f_shard,
    CASE WHEN kind = 'logged_fields' THEN e.eventSourceARN END AS f_arn,
    -- a whole logged record carries its sequence number and receive count one level down
    CASE WHEN kind = 'logged_fields' THEN coalesce(e.sequenceNumber, e.kinesis.sequenceNumber,
        e.dynamodb.SequenceNumber, e.attributes.SequenceNumber) END AS f_seq,
    CASE WHEN kind = 'logged_fields' THEN TRY_CAST(coalesce(e.ApproximateReceiveCount, e.receiveCount,
        e.attributes.ApproximateReceiveCount) AS INTEGER) END AS f_receive_count
FROM evidence
WHERE kind IS NOT NULL
"""

# Step 2: give each line its invocation: the request id it names, else (TIMED) the invocation of
# its log stream that holds its timestamp, else (UNTIMED, plain text) the START before it.
KEYS = r"""
CREATE OR REPLACE TEMP TABLE tk_item_keys AS
SELECT rowid AS line, rid, stream_key, log_group, log_stream, ts, seq, event_id, kind FROM tk_item_lines
"""

TIMED = r"""
SELECT k.* EXCLUDE (rid), i.request_id AS rid
FROM (SELECT * FROM tk_item_keys WHERE rid IS NULL AND ts IS NOT NULL) k
ASOF JOIN (SELECT stream_key, start_time, end_time, request_id FROM invocations
           WHERE start_time IS NOT NULL) i
    ON k.stream_key = i.stream_key AND k.ts >= i.start_time
WHERE i.end_time IS NULL OR k.ts <= i.end_time
"""

UNTIMED = r"""
SELECT k.* EXCLUDE (rid), s.rid
FROM (SELECT * FROM tk_item_keys WHERE rid IS NULL AND ts IS NULL) k
ASOF JOIN (
    SELECT {stream_key} AS stream_key, seq, regexp_extract(message, '^START RequestId: (\S+)', 1) AS rid
    FROM log_events WHERE "timestamp" IS NULL AND starts_with(message, 'START RequestId: ')
) s ON k.stream_key = s.stream_key AND k.seq > s.seq
"""

# The function: from the log group /aws/lambda/<name>, else (BY_INVOCATION) as the invocation says.
OWNED = r"""
CREATE OR REPLACE TEMP TABLE tk_item_owned AS
SELECT n.*,
    CASE WHEN starts_with(n.log_group, '/aws/lambda/') THEN substr(n.log_group, 13) END AS function_name,
    CASE n.kind WHEN 'recorder_in' THEN 1 WHEN 'logged_event' THEN 2 WHEN 'logged_fields' THEN 3 END AS rank
FROM ({named}) n
WHERE n.rid IS NOT NULL AND n.rid <> ''
"""

BY_INVOCATION = r"""
UPDATE tk_item_owned o SET function_name = f.function_name
FROM (
    SELECT request_id, stream_key, any_value(function_name) AS function_name
    FROM invocations WHERE request_id IN (SELECT rid FROM tk_item_owned WHERE function_name IS NULL)
    GROUP BY request_id, stream_key
) f
WHERE o.function_name IS NULL AND f.request_id = o.rid AND f.stream_key = o.stream_key
"""

# Step 3: per invocation, the strongest evidence: its first recorder "in" line, else its first
# logged event, else every logged-fields line.
CHOSEN = r"""
CREATE OR REPLACE TEMP TABLE tk_item_chosen AS
WITH best AS (
    SELECT rid, stream_key, min(rank) AS best, arg_min(line, (rank, ts, seq, event_id)) AS first_line
    FROM tk_item_owned WHERE rank IS NOT NULL
    GROUP BY rid, stream_key
)
SELECT o.line, o.rid, o.log_stream, o.function_name, o.rank, o.ts, o.seq, o.event_id
FROM tk_item_owned o JOIN best b ON o.rid = b.rid AND o.stream_key = b.stream_key
WHERE o.line = b.first_line OR (b.best = 3 AND o.rank = 3)
"""

SOURCE_NAME = r"""CASE {src} WHEN 'aws:sqs' THEN 'sqs' WHEN 'aws:kinesis' THEN 'kinesis'
    WHEN 'aws:dynamodb' THEN 'dynamodb' WHEN 'aws:s3' THEN 's3' WHEN 'aws:sns' THEN 'sns'
    WHEN 'aws:events' THEN 'eventbridge' ELSE 'unknown' END"""

# Step 4: one row per item.
FROM_RECORDER = r"""
WITH listed AS (
    SELECT c.rid, c.log_stream, c.function_name, {source} AS source, l.rec_arn AS arn,
        l.rec_shard AS shard, CAST(l.rec_count AS INTEGER) AS batch_size,
        unnest(l.rec_items) AS item, generate_subscripts(l.rec_items, 1) - 1 AS position
    FROM tk_item_chosen c JOIN tk_item_lines l ON l.rowid = c.line
    WHERE c.rank = 1
)
SELECT rid, log_stream, function_name, source,
    CASE source
        WHEN 's3' THEN 's3://' || item.bucket || '/' || item.key
        ELSE coalesce(item.id, item.digest)
    END AS item_id,
    CASE
        WHEN source IN ('sqs', 'sns') THEN regexp_extract(arn, '[^:]*$')
        WHEN source = 'kinesis' THEN coalesce(shard, nullif(split_part(item.id, ':', 1), ''))
        WHEN source = 's3' THEN item.bucket
    END AS shard_id,
    CASE WHEN source = 's3' THEN item.sequencer ELSE item.seq END AS sequence_number,
    CASE WHEN source = 'sqs' THEN TRY_CAST(item.receiveCount AS INTEGER) END AS receive_count,
    position, batch_size, 'recorder' AS evidence
FROM listed
"""

FROM_EVENT = r"""
WITH listed AS (
    SELECT c.rid, c.log_stream, c.function_name, CAST(len(l.records) AS INTEGER) AS batch_size,
        unnest(l.records) AS record, generate_subscripts(l.records, 1) - 1 AS position
    FROM tk_item_chosen c JOIN tk_item_lines l ON l.rowid = c.line
    WHERE c.rank = 2
),
named AS (SELECT *, {source} AS source FROM listed)
SELECT rid, log_stream, function_name, source,
    CASE WHEN source = 'sqs' THEN record.messageId ELSE record.eventID END AS item_id,
    CASE source
        WHEN 'sqs' THEN regexp_extract(record.eventSourceARN, '[^:]*$')
        WHEN 'kinesis' THEN nullif(split_part(record.eventID, ':', 1), '')
    END AS shard_id,
    CASE source
        WHEN 'sqs' THEN record.attributes.SequenceNumber
        WHEN 'kinesis' THEN record.kinesis.sequenceNumber
        ELSE record.dynamodb.SequenceNumber
    END AS sequence_number,
    CASE WHEN source = 'sqs' THEN TRY_CAST(record.attributes.ApproximateReceiveCount AS INTEGER) END
        AS receive_count,
    position, batch_size, 'logged_event' AS evidence
FROM named
"""

FROM_FIELDS = r"""
WITH fields AS (
    SELECT c.line, c.rid, c.log_stream, c.function_name, c.ts, c.seq, l.f_message_id AS message_id,
        l.f_record_id AS record_id, l.f_shard AS shard_field, l.f_arn AS arn, l.f_seq AS seq_no,
        l.f_receive_count AS receive_count
    FROM tk_item_chosen c JOIN tk_item_lines l ON l.rowid = c.line
    WHERE c.rank = 3
),
named AS (
    SELECT *,
        CASE WHEN message_id IS NOT NULL THEN 'sqs'
             WHEN regexp_matches(record_id, '^shardId-[^:]+:\d+$') THEN 'kinesis'
             WHEN record_id IS NOT NULL THEN 'dynamodb'
             ELSE 'kinesis'
        END AS source
    FROM fields
),
identified AS (
    SELECT line, rid, log_stream, function_name, source, ts, seq,
        CASE source
            WHEN 'sqs' THEN message_id
            WHEN 'kinesis' THEN coalesce(record_id, shard_field || ':' || seq_no)
            ELSE record_id
        END AS item_id,
        CASE source
            WHEN 'sqs' THEN regexp_extract(arn, '[^:]*$')
            WHEN 'kinesis' THEN coalesce(nullif(split_part(record_id, ':', 1), ''), shard_field)
        END AS shard_id,
        CASE WHEN source = 'kinesis' THEN coalesce(seq_no, nullif(split_part(record_id, ':', 2), ''))
             ELSE seq_no END AS sequence_number,
        CASE WHEN source = 'sqs' THEN receive_count END AS receive_count
    FROM named
),
-- An item mentioned on several lines is listed once, from its first line. Grouped by 64-bit hashes
-- with numbers as payload: text keys and payloads cost seconds at millions of lines.
keyed AS (
    SELECT *, hash(rid, log_stream) AS invocation,
        hash(rid, log_stream, source, item_id, sequence_number) AS item_key
    FROM identified
),
firsts AS (
    SELECT item_key, any_value(invocation) AS invocation, arg_min(line, ts) AS line, min(ts) AS first_ts,
        min(seq) AS first_seq, max(receive_count) AS receive_count, max(shard_id) AS shard_id
    FROM keyed
    GROUP BY item_key
),
ordered AS (
    SELECT *,
        row_number() OVER (PARTITION BY invocation ORDER BY first_ts, first_seq, item_key) - 1 AS position,
        count(*) OVER (PARTITION BY invocation) AS batch_size
    FROM firsts
)
SELECT k.rid, k.log_stream, k.function_name, k.source, k.item_id, o.shard_id, k.sequence_number,
    o.receive_count, o.position, o.batch_size, 'logged_fields' AS evidence
FROM ordered o JOIN keyed k ON k.line = o.line AND k.item_key = o.item_key
"""

ITEMS = r"""
CREATE OR REPLACE TEMP TABLE items AS
SELECT CAST(rid AS VARCHAR) AS request_id, CAST(log_stream AS VARCHAR) AS log_stream,
    CAST(function_name AS VARCHAR) AS function_name, CAST(source AS VARCHAR) AS source,
    CAST(item_id AS VARCHAR) AS item_id, CAST(shard_id AS VARCHAR) AS shard_id,
    CAST(sequence_number AS VARCHAR) AS sequence_number, CAST(receive_count AS INTEGER) AS receive_count,
    CAST(position AS INTEGER) AS position, CAST(batch_size AS INTEGER) AS batch_size,
    CAST(evidence AS VARCHAR) AS evidence
FROM (({from_recorder}) UNION ALL BY NAME ({from_event}) UNION ALL BY NAME ({from_fields}))
"""

# The recorder's "out" lines, the last one per (request id, log stream).
RESULTS = r"""
CREATE OR REPLACE TEMP TABLE item_results AS
WITH last_out AS (
    SELECT rid, any_value(log_stream) AS log_stream, arg_max(line, (ts, seq, event_id)) AS line
    FROM tk_item_owned WHERE kind = 'recorder_out'
    GROUP BY rid, stream_key
)
SELECT CAST(o.rid AS VARCHAR) AS request_id, CAST(o.log_stream AS VARCHAR) AS log_stream,
    CAST(l.out_result AS VARCHAR) AS result, CAST(l.out_error_type AS VARCHAR) AS error_type,
    CAST(CASE json_type(l.out_failures)
        WHEN 'ARRAY' THEN list_transform(json_extract(l.out_failures, '$[*]'),
            lambda v: CASE WHEN json_type(v) = 'VARCHAR' AND (v ->> '$') <> '' THEN v ->> '$' END)
    END AS VARCHAR[]) AS failed_item_ids,
    CAST('recorder' AS VARCHAR) AS evidence
FROM last_out o JOIN tk_item_lines l ON l.rowid = o.line
"""


def build(con: duckdb.DuckDBPyConnection) -> None:
    """Create the `items` and `item_results` temp tables on `con` (a store connection)."""
    _parse_lines(con)
    _own_lines(con)
    con.execute(CHOSEN)
    record_source = "record.eventSource"
    con.execute(
        ITEMS.replace("{from_recorder}", FROM_RECORDER.replace("{source}", _source_name("l.rec_source")))
        .replace("{from_event}", FROM_EVENT.replace("{source}", _source_name(record_source)))
        .replace("{from_fields}", FROM_FIELDS)
    )
    con.execute(RESULTS)


def _source_name(src: str) -> str:
    return SOURCE_NAME.replace("{src}", src)


def _parse_lines(con: duckdb.DuckDBPyConnection) -> None:
    schema = sql_str(jsonio.dumps(_LINE))
    con.execute(
        LINES.replace("{line_parts}", LINE_PARTS)
        .replace("{stream_key}", STREAM_KEY)
        .replace("{wanted}", _WANTED_SQL)
        .replace("{schema}", schema)
        .replace("{top_kind}", _kind("top"))
        .replace("{inner_kind}", _kind("msg_doc"))
    )


def _own_lines(con: duckdb.DuckDBPyConnection) -> None:
    """tk_item_owned: each line with its invocation's request id and function."""
    con.execute(KEYS)
    row = con.execute(
        "SELECT bool_or(ts IS NOT NULL), bool_or(ts IS NULL) FROM tk_item_keys WHERE rid IS NULL"
    ).fetchone()
    timed, untimed = (bool(row[0]), bool(row[1])) if row else (False, False)
    # Only what the lines need: the invocations and a second pass over the logs cost time at scale.
    named = ["SELECT * FROM tk_item_keys WHERE rid IS NOT NULL"]
    if timed:
        named.append(TIMED)
    if untimed:
        named.append(UNTIMED.replace("{stream_key}", STREAM_KEY))
    con.execute(OWNED.replace("{named}", " UNION ALL BY NAME ".join(named)))
    missing = con.execute("SELECT count(*) FROM tk_item_owned WHERE function_name IS NULL").fetchone()
    if missing and missing[0]:
        con.execute(BY_INVOCATION)
