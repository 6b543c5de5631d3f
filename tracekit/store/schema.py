"""The Arrow schemas of the store's tables and the schema version they belong to.

Public columns come first and are a contract (see README); columns after them are tracekit's own
bookkeeping: `uid` (content id used to skip rows already stored), `batch` (the ingest batch that
wrote the row), for logs `seq` (file order, for inputs without timestamps) and, for invocations,
`stream_key` (the log stream a derivation covers).

The analysis tables (`events`, `attempts`, `batches`) are not ingested: `tracekit analyze` derives
them from the ingest tables and writes them whole, as one generation (see ANALYSIS_SCHEMAS).
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

# A log stream's two parts over log_events rows: group and stream, or the file for logs that name
# no stream (plain text). Invocations carry them joined as stream_key; ingest finds the streams a
# batch touched, and the analyzer joins log lines to invocations, with STREAM_KEY, so all must be
# built from these same expressions.
STREAM_GROUP = "coalesce(log_group, '')"
STREAM_NAME = "coalesce(log_stream, 'file:' || source)"
STREAM_KEY = f"{STREAM_GROUP} || chr(31) || {STREAM_NAME}"

TS = pa.timestamp("us")
STR = pa.string()
I64 = pa.int64()
I32 = pa.int32()
F64 = pa.float64()
BOOL = pa.bool_()

LOG_EVENTS = pa.schema(
    [
        ("log_group", STR),
        ("log_stream", STR),
        ("timestamp", TS),
        ("ingestion_time", TS),
        ("event_id", STR),
        ("message", STR),
        ("source", STR),
        ("position", STR),
        ("uid", STR),
        ("seq", I64),
        ("time_ordered", BOOL),
        ("batch", I64),
    ]
)

INVOCATIONS = pa.schema(
    [
        ("request_id", STR),
        ("attempt", I64),
        ("function_name", STR),
        ("log_group", STR),
        ("log_stream", STR),
        ("version", STR),
        ("start_time", TS),
        ("end_time", TS),
        ("duration_ms", F64),
        ("billed_duration_ms", F64),
        ("memory_size_mb", I64),
        ("max_memory_used_mb", I64),
        ("init_duration_ms", F64),
        ("restore_duration_ms", F64),
        ("status", STR),
        ("error_type", STR),
        ("error_message", STR),
        ("xray_trace_id", STR),
        ("cold_start", BOOL),
        ("has_start", BOOL),
        ("has_report", BOOL),
        ("stream_key", STR),
        ("batch", I64),
    ]
)

DESTINATION_RECORDS = pa.schema(
    [
        ("record_id", STR),
        ("kind", STR),
        ("condition", STR),
        ("request_id", STR),
        ("function_arn", STR),
        ("function_name", STR),
        ("approximate_invoke_count", I64),
        ("timestamp", TS),
        ("request_payload", STR),
        ("response_payload", STR),
        ("function_error", STR),
        ("status_code", I64),
        ("executed_version", STR),
        ("shard_id", STR),
        ("start_sequence_number", STR),
        ("end_sequence_number", STR),
        ("batch_size", I64),
        ("source_arn", STR),
        ("arrival_first", TS),
        ("arrival_last", TS),
        ("envelope", STR),
        ("envelope_id", STR),
        ("envelope_path", STR),
        ("envelope_source", STR),
        ("partitions", STR),
        ("payload", STR),
        ("raw", STR),
        ("source", STR),
        ("position", STR),
        ("uid", STR),
        ("batch", I64),
    ]
)

DEAD_LETTERS = pa.schema(
    [
        ("message_id", STR),
        ("queue", STR),
        ("body", STR),
        ("kind", STR),
        ("request_id", STR),
        ("error_code", STR),
        ("error_message", STR),
        ("approximate_receive_count", I64),
        ("sent_timestamp", TS),
        ("dead_letter_source_arn", STR),
        ("message_group_id", STR),
        ("message_deduplication_id", STR),
        ("attributes", STR),
        ("message_attributes", STR),
        ("receipt_handle", STR),
        ("envelope", STR),
        ("envelope_id", STR),
        ("source", STR),
        ("position", STR),
        ("uid", STR),
        ("batch", I64),
    ]
)

QUARANTINE = pa.schema(
    [
        ("source", STR),
        ("position", STR),
        ("raw", STR),
        ("reason", STR),
        ("uid", STR),
        ("batch", I64),
    ]
)

# Failure configuration read by `tracekit collect function`: one row per function (and per mapping)
# per collect, so the table keeps every snapshot; a function's current configuration is the row of its
# latest batch, and its current mappings are the rows of that same batch (see analyze/audit.py).
FUNCTION_CONFIGS = pa.schema(
    [
        ("function_name", STR),
        ("qualifier", STR),
        ("function_arn", STR),
        ("region", STR),
        ("collected_at", TS),
        ("runtime", STR),
        ("timeout_s", I64),
        ("memory_size_mb", I64),
        ("log_group", STR),
        ("log_format", STR),
        ("dead_letter_target_arn", STR),
        ("has_invoke_config", BOOL),
        ("maximum_retry_attempts", I64),
        ("maximum_event_age_s", I64),
        ("on_success_destination", STR),
        ("on_failure_destination", STR),
        ("configuration", STR),
        ("invoke_config", STR),
        ("uid", STR),
        ("batch", I64),
    ]
)

EVENT_SOURCE_MAPPINGS = pa.schema(
    [
        ("uuid", STR),
        ("function_name", STR),
        ("qualifier", STR),
        ("collected_at", TS),
        ("event_source_arn", STR),
        ("source", STR),
        ("state", STR),
        ("batch_size", I64),
        ("maximum_batching_window_s", I64),
        ("bisect_batch_on_function_error", BOOL),
        ("maximum_retry_attempts", I64),
        ("maximum_record_age_s", I64),
        ("on_failure_destination", STR),
        ("report_batch_item_failures", BOOL),
        ("starting_position", STR),
        ("parallelization_factor", I64),
        ("queue_visibility_timeout_s", I64),
        ("queue_max_receive_count", I64),
        ("queue_dead_letter_target_arn", STR),
        ("configuration", STR),
        ("queue_attributes", STR),
        ("uid", STR),
        ("batch", I64),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "log_events": LOG_EVENTS,
    "invocations": INVOCATIONS,
    "destination_records": DESTINATION_RECORDS,
    "dead_letters": DEAD_LETTERS,
    "quarantine": QUARANTINE,
    "function_configs": FUNCTION_CONFIGS,
    "event_source_mappings": EVENT_SOURCE_MAPPINGS,
}

EVENTS = pa.schema(
    [
        ("event_id", STR),
        ("source", STR),
        ("function_name", STR),
        ("first_seen", TS),
        ("last_seen", TS),
        ("attempts", I32),
        ("deliveries", I32),
        ("retries", I32),
        ("outcome", STR),
        ("duplicates", I32),
        ("duplicate_kind", STR),
        ("final_error_type", STR),
        ("final_error_message", STR),
        ("destination_record_id", STR),
        ("dead_letter_message_id", STR),
        ("business_key", STR),
        ("duplicate_of", STR),
        ("evidence", STR),
        ("uncertain", BOOL),
        ("uncertain_reason", STR),
        ("payload", STR),
    ]
)

ATTEMPTS = pa.schema(
    [
        ("event_id", STR),
        ("attempt", I32),
        ("request_id", STR),
        ("log_stream", STR),
        ("start_time", TS),
        ("end_time", TS),
        ("duration_ms", F64),
        ("outcome", STR),
        ("error_type", STR),
        ("error_message", STR),
        ("gap_ms", F64),
        ("batch_id", STR),
        ("cold_start", BOOL),
        ("function_name", STR),
        ("source", STR),
    ]
)

BATCHES = pa.schema(
    [
        ("batch_id", STR),
        ("function_name", STR),
        ("shard_id", STR),
        ("first_sequence_number", STR),
        ("last_sequence_number", STR),
        ("size", I32),
        ("parent_batch_id", STR),
        ("depth", I32),
        ("request_id", STR),
        ("outcome", STR),
    ]
)

#: Tables `tracekit analyze` derives from the ingest tables; ingest batches never write them.
ANALYSIS_SCHEMAS: dict[str, pa.Schema] = {
    "events": EVENTS,
    "attempts": ATTEMPTS,
    "batches": BATCHES,
}

#: Columns that are tracekit's bookkeeping rather than part of the contract.
INTERNAL_COLUMNS = frozenset({"uid", "batch", "stream_key", "seq", "time_ordered", "has_start", "has_report"})

_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us"): "TIMESTAMP",
}


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type name for one of the Arrow types the schemas use."""
    return _DUCKDB_TYPES[arrow_type]


def empty_select(table: str) -> str:
    """A typed zero-row SELECT for a table that has no Parquet files yet."""
    schema = SCHEMAS.get(table) or ANALYSIS_SCHEMAS[table]
    cols = ", ".join(f"NULL::{duckdb_type(f.type)} AS {f.name}" for f in schema)
    return f"SELECT {cols} WHERE false"
