"""The vocabulary of the store: table names and the closed sets of values its columns take."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """How one invocation attempt ended, as the runtime reported it."""

    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    INIT_ERROR = "init_error"
    CRASH = "crash"
    UNKNOWN = "unknown"


class Envelope(StrEnum):
    """What carried a destination record or dead letter to the file tracekit read."""

    RAW = "raw"
    SQS = "sqs"
    SNS = "sns"
    EVENTBRIDGE = "eventbridge"
    S3 = "s3"
    LAMBDA = "lambda"
    KAFKA = "kafka"


class DeadLetterKind(StrEnum):
    """Which kind of dead-letter queue a message sits in, when its content says so."""

    ASYNC_DLQ = "async_dlq"
    SOURCE_DLQ = "source_dlq"
    UNKNOWN = "unknown"


#: The counts `tracekit ingest --format json` reports, in order.
COUNT_KEYS = ("log_events", "invocations", "destination_records", "dead_letters", "quarantined")
