"""Replayed copies: find the events whose content carries tracekit's replay marker, so that the events
table can call them `replay` duplicates of the event they copy.

`tracekit replay run` puts the marker `tracekit-replay-id` = `<plan_id>:<entry_id>:<event_id>` on every
copy it sends: a message attribute for SQS and SNS targets, a top-level payload field for Lambda,
EventBridge and Kinesis. The original's event id is the part after the second colon, so no plan file is
needed. The marker is read, in set-based SQL, from:

- dead letters: the message attribute (an SQS copy that failed again: the event is its messageId), or the
  payload field of the body (an async copy in the function's DLQ: the event is its RequestID);
- async destination records: the payload field of `requestPayload` (the event is the request id);
- logged events: an SQS event's records with the attribute (`messageAttributes`, as Lambda delivers
  them), a logged SQS record on its own, Kinesis records whose decoded data has the field (the event is
  the record's eventID), and an async event with the field at the top, on a line that names its request
  id (a Python or Node log prefix, or a JSON-format record's requestId).

Not read: recorder lines (they list item ids, not attributes) and plain `print` lines, which name no
request id.

`build` leaves the temp table `replay_marks(event_id, marker, original_event_id)`; `mark_replays` turns
the events relation's rows it names into `duplicate_kind = 'replay'`, `duplicate_of = original`.
"""

from __future__ import annotations

import duckdb

from tracekit.analyze.items import LINE_PARTS

MARKER = "tracekit-replay-id"

# The JSON of a log line (items.LINE_PARTS); a JSON-format record's `message` object (or JSON string) is
# opened one level.
_LOGGED = r"""
WITH raw AS (
    SELECT {line_parts}
    FROM log_events
    WHERE contains(message, '{marker}')
),
docs AS (
    SELECT text_rid, body AS doc FROM raw WHERE body <> '' AND json_valid(body)
),
opened AS (
    SELECT coalesce(nullif(text_rid, ''), json_extract_string(doc, '$.requestId')) AS rid,
        CASE
            WHEN json_type(doc, '$.message') = 'OBJECT' THEN CAST(json_extract(doc, '$.message') AS VARCHAR)
            WHEN json_type(doc, '$.message') = 'VARCHAR'
                 AND json_valid(json_extract_string(doc, '$.message'))
                THEN json_extract_string(doc, '$.message')
            ELSE doc
        END AS event
    FROM docs
),
records AS (
    SELECT rid, event, unnest(CASE WHEN json_type(event, '$.Records') = 'ARRAY'
                                   THEN json_extract(event, '$.Records[*]') ELSE [] END) AS record
    FROM opened
)
SELECT json_extract_string(record, '$.messageId') AS event_id,
    json_extract_string(record, '$.messageAttributes."{marker}".stringValue') AS marker
FROM records WHERE json_extract_string(record, '$.eventSource') = 'aws:sqs'
UNION ALL
SELECT json_extract_string(record, '$.eventID'),
    json_extract_string(TRY(decode(from_base64(json_extract_string(record, '$.kinesis.data')))),
                        '$."{marker}"')
FROM records WHERE json_extract_string(record, '$.eventSource') = 'aws:kinesis'
UNION ALL
SELECT json_extract_string(event, '$.messageId'),
    json_extract_string(event, '$.messageAttributes."{marker}".stringValue')
FROM opened WHERE json_exists(event, '$.messageId')
UNION ALL
SELECT rid, json_extract_string(event, '$."{marker}"')
FROM opened WHERE rid IS NOT NULL AND rid <> ''
"""

MARKS = r"""
CREATE OR REPLACE TEMP TABLE replay_marks AS
WITH marked AS (
    SELECT CASE WHEN kind = 'async_dlq' THEN request_id ELSE message_id END AS event_id,
        coalesce(
            json_extract_string(message_attributes, '$."{marker}".StringValue'),
            json_extract_string(message_attributes, '$."{marker}".Value'),
            CASE WHEN json_valid(body) THEN json_extract_string(body, '$."{marker}"') END
        ) AS marker
    FROM dead_letters
    WHERE contains(coalesce(message_attributes, '') || coalesce(body, ''), '{marker}')
    UNION ALL
    SELECT request_id, json_extract_string(request_payload, '$."{marker}"')
    FROM destination_records
    WHERE kind = 'async' AND contains(request_payload, '{marker}') AND json_valid(request_payload)
    UNION ALL
    ({logged})
),
parsed AS (
    SELECT event_id, marker, nullif(list_aggregate(string_split(marker, ':')[3:], 'string_agg', ':'), '')
        AS original_event_id
    FROM marked
    WHERE event_id IS NOT NULL AND marker IS NOT NULL
)
SELECT event_id, min(marker) AS marker, min(original_event_id) AS original_event_id
FROM parsed
WHERE original_event_id IS NOT NULL AND original_event_id <> event_id
GROUP BY event_id
"""


def build(con: duckdb.DuckDBPyConnection) -> None:
    """Create the temp table `replay_marks` on `con` (a store connection)."""
    logged = _LOGGED.replace("{line_parts}", LINE_PARTS)
    con.execute(MARKS.replace("{logged}", logged).replace("{marker}", MARKER))


def mark_replays(events_sql: str) -> str:
    """The rows of `events_sql` with every replayed copy in `replay_marks` made a `replay` duplicate of
    its original (this wins over `client_retry`: a copy carries its original's business key)."""
    return (
        "SELECT e.* REPLACE (CASE WHEN m.original_event_id IS NOT NULL THEN 'replay' "
        "ELSE e.duplicate_kind END AS duplicate_kind, "
        "coalesce(m.original_event_id, e.duplicate_of) AS duplicate_of) "
        f"FROM ({events_sql}) e LEFT JOIN replay_marks m ON m.event_id = e.event_id"
    )
