"""Audit: find the settings that Lambda's failure semantics turn into lost, stuck or duplicated events.

`audit(con, config)` judges every function that tracekit.toml names, `tracekit collect function`
read, or the store shows. Three kinds of evidence decide a rule, and every finding says which it rests
on:

- collected: the function's configuration as the Lambda and SQS APIs gave it to `collect function`
  (the latest snapshot in `function_configs` and `event_source_mappings`): timeout, DLQ, the event
  source mapping's source and settings with its SQS source queue's visibility timeout and redrive
  policy, and, for a function invoked asynchronously, its invoke config (AWS's defaults when it has
  none);
- configuration: the function's `[functions.<name>]` table in tracekit.toml (the same
  `function_settings` rows the analyzer reads; the `"*"` table holds business keys only);
- observed: what the store proves: the sources of the function's events in the analysis, dead letters
  and on-failure records that show a DLQ or destination exists, events that ended `dropped` (nothing
  held them), the timeout of timed-out invocations, split batches (bisect on) or a failed batch retried
  whole (bisect off), and the receive count of messages in a queue's redrive DLQ.

The account's own configuration is the strongest evidence, so a collected setting wins over
tracekit.toml, which wins over what the store shows; tracekit.toml still speaks for what the APIs do
not say (a function collected with no mapping may still be named `source = "sqs"` there, and gets its
mapping settings from it). A rule that neither can decide is reported as unchecked, naming
the settings that would decide it, instead of being guessed from an AWS default: a tracekit.toml that is
silent says nothing about the function, and some defaults have drifted (a stream mapping's
MaximumRetryAttempts). AWS's documented defaults only fill in a rule's secondary condition (the retries
an event-age limit cuts short, the batch size that makes a poison message matter), and the finding's
value says so.

Rules, from lambda-semantics.md (the AWS pages each finding cites are in RULES):
- async: no DLQ and no on-failure destination (§1.1, §1.4); a maximum event age that leaves no time
  for the configured retries, 1 and then 2 minutes apart (§1.1).
- sqs: visibility timeout under 6x the function timeout; maxReceiveCount under 5; no redrive policy
  (an SQS mapping has no on-failure destination); a function DLQ, which SQS mappings never use;
  ReportBatchItemFailures off with batches of more than one message (§3, §1.4).
- kinesis / dynamodb: no BisectBatchOnFunctionError; MaximumRetryAttempts -1 with no maximum record
  age; no on-failure destination, where a function DLQ does not help (§2, §1.4).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import duckdb

from tracekit.analyze.keys import ANY_FUNCTION, Config, ConfigError
from tracekit.render import counted
from tracekit.store.schema import ANALYSIS_SCHEMAS, SCHEMAS, empty_select


class Severity(StrEnum):
    """How bad a finding is: `high` loses or blocks events, `medium` duplicates or wastes them."""

    HIGH = "high"
    MEDIUM = "medium"


class Basis(StrEnum):
    """Where a setting's value came from."""

    COLLECTED = "collected"
    CONFIGURATION = "configuration"
    OBSERVED = "observed"


#: The sources audit has rules for, and the `source` values tracekit.toml may give.
STREAM_SOURCES = ("kinesis", "dynamodb")
SOURCES = ("async", "sqs", *STREAM_SOURCES, "kafka")

#: Documented AWS values the rules rely on (lambda-semantics §1.1, §3).
ASYNC_RETRY_DELAYS_S = (60, 120)  # waits before the 2nd and the 3rd attempt
DEFAULT_ASYNC_RETRIES = 2
MAX_EVENT_AGE_S = 21600  # the default, and the most MaximumEventAgeInSeconds allows
VISIBILITY_FACTOR = 6
MIN_RECEIVE_COUNT = 5
DEFAULT_BATCH_SIZE = {"sqs": 10, "kinesis": 100, "dynamodb": 100}

#: Values of `dlq`, `on_failure` and `max_receive_count` that mean "there is none".
NONE_WORDS = ("", "none", "false", "no", "off")
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")

#: Every setting audit reads from tracekit.toml, with the kind of value it takes.
SETTINGS = {
    "source": "source",
    "timeout_s": "seconds",
    "dlq": "target",
    "on_failure": "target",
    "maximum_retry_attempts": "integer",
    "maximum_event_age_s": "seconds",
    "maximum_record_age_s": "seconds",
    "bisect_batch_on_function_error": "boolean",
    "report_batch_item_failures": "boolean",
    "batch_size": "integer",
    "visibility_timeout_s": "seconds",
    "max_receive_count": "count",
}

GUIDE = "https://docs.aws.amazon.com/lambda/latest/dg/"
ASYNC_ERRORS = GUIDE + "invocation-async-error-handling.html"
ASYNC_RECORDS = GUIDE + "invocation-async-retain-records.html"
WITH_SQS = GUIDE + "with-sqs.html"
WITH_KINESIS = GUIDE + "with-kinesis.html"
WITH_DDB = GUIDE + "with-ddb.html"
ON_FAILURE_API = "https://docs.aws.amazon.com/lambda/latest/api/API_OnFailure.html"


@dataclass(frozen=True)
class Known:
    """One setting's value, how a finding shows it, and where it came from. `value` None means the
    setting says there is none (a `dlq = "none"`)."""

    value: Any
    shown: str
    basis: Basis


@dataclass(frozen=True)
class Finding:
    """A dangerous setting of one function."""

    function: str
    source: str
    severity: Severity
    rule: str
    setting: str
    value: str
    basis: str
    why: str
    fix: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class Unchecked:
    """A rule the evidence could not decide for one function, and the settings that would."""

    function: str
    source: str | None
    rule: str
    needs: tuple[str, ...]


@dataclass
class Observed:
    """What the store shows about one function (empty when it shows nothing)."""

    events: dict[str, int] = field(default_factory=dict)  # per source
    dropped: dict[str, int] = field(default_factory=dict)  # certain `dropped` events per source
    dead_letters: dict[str, tuple[int, str | None, int | None]] = field(default_factory=dict)
    failure_records: tuple[int, str | None] | None = None  # count, where they were delivered
    timeout: tuple[float, int] | None = None  # seconds, timed-out invocations
    largest_batch: int | None = None
    split: bool = False
    whole_retry: tuple[str, int] | None = None  # a failed multi-record batch retried unsplit: id, size


@dataclass(frozen=True)
class Profile:
    """One function: its configured settings and what the store shows."""

    function: str
    configured: dict[str, Known]
    observed: Observed

    @property
    def source(self) -> Known | None:
        if "source" in self.configured:
            return self.configured["source"]
        events = self.observed.events
        # A batch source wins: an SQS or stream function's invocations that name no items look async.
        batch = {s: n for s, n in events.items() if s != "async"}
        counted = batch or events
        if not counted:
            return None
        source = max(sorted(counted), key=lambda s: counted[s])
        return Known(source, f"{source} ({counted[source]} events in the analysis)", Basis.OBSERVED)

    @property
    def source_name(self) -> str | None:
        known = self.source
        return None if known is None else str(known.value)

    def finding(
        self,
        rule: Rule,
        severity: Severity,
        setting: str,
        facts: list[Known],
        why: str,
        fix: str,
    ) -> Finding:
        bases = sorted({f.basis.value for f in facts})
        return Finding(
            function=self.function,
            source=self.source_name or "",
            severity=severity,
            rule=rule.id,
            setting=setting,
            value="; ".join(f.shown for f in facts),
            basis=", ".join(bases),
            why=why,
            fix=fix,
            references=rule.references,
        )

    def unchecked(self, rule: Rule, missing: tuple[str, ...] | None = None) -> Unchecked:
        """The rule could not be decided; `missing` names the settings it lacked (default: all)."""
        return Unchecked(self.function, self.source_name, rule.id, missing or rule.needs)


Verdict = Finding | Unchecked | None


@dataclass(frozen=True)
class Rule:
    """One audit rule: its id, the settings that decide it, the AWS pages behind it, and its check."""

    id: str
    needs: tuple[str, ...]
    references: tuple[str, ...]
    check: Callable[[Profile, Rule], Verdict]


@dataclass
class AuditReport:
    """Every function audited, what was found, and what could not be checked."""

    functions: list[dict[str, Any]]
    findings: list[Finding]
    unchecked: list[Unchecked]

    def as_dict(self) -> dict[str, Any]:
        return {
            "functions": self.functions,
            "findings": [dataclasses.asdict(f) for f in self.findings],
            "unchecked": [dataclasses.asdict(u) for u in self.unchecked],
        }


# -- reading tracekit.toml --------------------------------------------------------------------------


def configured_settings(config: Config) -> dict[str, dict[str, Known]]:
    """Function → the settings audit reads, parsed.

    Raises:
        ConfigError: a setting audit reads has a value it cannot use.
    """
    out: dict[str, dict[str, Known]] = {name: {} for name in config.functions if name != ANY_FUNCTION}
    for function, setting, text in config.settings_rows():
        if setting in SETTINGS:
            out[function][setting] = _parse(function, setting, text, config)
    return out


def _parse(function: str, setting: str, text: str, config: Config) -> Known:
    kind = SETTINGS[setting]
    value = _value(kind, text.strip())
    if value is _BAD:
        raise ConfigError(
            f"functions.{function}.{setting} = {text!r} is not {_EXPECTED[kind]}",
            str(config.path) if config.path else None,
            "Fix the value (see README: tracekit audit)",
        )
    return Known(value, f"{setting} = {text}", Basis.CONFIGURATION)


_BAD = object()
_EXPECTED = {
    "target": "a destination",
    "boolean": "true or false",
    "source": "one of " + " | ".join(SOURCES),
    "count": 'a whole number or "none"',
    "integer": "a whole number",
    "seconds": "a number of seconds",
}


def _value(kind: str, text: str) -> Any:
    """The value of a setting of `kind` written as `text`, or _BAD."""
    word = text.lower()
    if kind == "target":
        return None if word in NONE_WORDS else text
    if kind == "boolean":
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else _BAD
    if kind == "source":
        return word if word in SOURCES else _BAD
    if kind == "count" and word in NONE_WORDS:
        return None
    try:
        number = float(word)
    except ValueError:
        return _BAD
    if not math.isfinite(number):
        return _BAD
    if kind == "seconds":
        return number
    return int(number) if number.is_integer() else _BAD


# -- reading the configuration `tracekit collect function` stored ----------------------------------

# Each function's latest snapshot (the newest batch that stored its function_configs row) and the
# mappings collected with it; an enabled mapping first (`batch` is zero-padded text, so max works).
COLLECTED_SQL = """
WITH latest AS (SELECT function_name, max(batch) AS batch FROM function_configs GROUP BY function_name)
SELECT f.function_name, f.timeout_s, f.dead_letter_target_arn, f.has_invoke_config,
    f.maximum_retry_attempts, f.maximum_event_age_s, f.on_failure_destination,
    m.uuid, m.event_source_arn, m.source, m.state, m.batch_size, m.bisect_batch_on_function_error,
    m.maximum_retry_attempts AS mapping_retries, m.maximum_record_age_s,
    m.on_failure_destination AS mapping_on_failure, m.report_batch_item_failures,
    m.queue_visibility_timeout_s, m.queue_max_receive_count, m.queue_dead_letter_target_arn,
    m.queue_attributes IS NOT NULL AS has_queue
FROM function_configs f
JOIN latest l ON l.function_name = f.function_name AND l.batch = f.batch
LEFT JOIN event_source_mappings m ON m.function_name = f.function_name AND m.batch = f.batch
ORDER BY f.function_name, m.state = 'Enabled' DESC NULLS LAST, m.uuid
"""


@dataclass(frozen=True)
class Collected:
    """One function's settings from the configuration `collect function` stored."""

    #: Settings that hold whatever its source: timeout, DLQ, and its event source mapping's.
    settings: dict[str, Known]
    #: Its async invoke config's (AWS's defaults when it has none): they decide only async rules.
    invoke: dict[str, Known]


def collected_settings(con: duckdb.DuckDBPyConnection) -> dict[str, Collected]:
    """Function → the settings audit reads, from the latest configuration `collect function` stored.

    A function with an event source mapping gets that mapping's source and settings (with several,
    an enabled one). The invoke config's retries, event age and on-failure destination are kept apart:
    they are the function's only when it is invoked asynchronously.
    """
    out: dict[str, Collected] = {}
    cur = con.execute(COLLECTED_SQL)
    names = [d[0] for d in cur.description or []]
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        if row["function_name"] in out:
            continue  # a later mapping of a function already read
        out[row["function_name"]] = Collected(_collected(row), _collected_async(row))
    return out


def _known(value: Any, shown: str) -> Known:
    return Known(value, shown, Basis.COLLECTED)


def _collected(row: dict[str, Any]) -> dict[str, Known]:
    settings: dict[str, Known] = {}
    if row["timeout_s"] is not None:
        settings["timeout_s"] = _known(row["timeout_s"], f"Timeout = {row['timeout_s']} s")
    dlq = row["dead_letter_target_arn"]
    settings["dlq"] = _known(dlq, f"DeadLetterConfig = {dlq}" if dlq else "no DeadLetterConfig")
    source = row["source"]
    if source in SOURCES:
        where = f" (mapping on {row['event_source_arn']})"
        settings["source"] = _known(source, f"{source} event source mapping {row['uuid']}")
        settings.update(_collected_sqs(row, where) if source == "sqs" else _collected_stream(row, where))
    return settings


def _collected_async(row: dict[str, Any]) -> dict[str, Known]:
    on_failure = row["on_failure_destination"]
    settings = {
        "on_failure": _known(
            on_failure, f"OnFailure destination = {on_failure}" if on_failure else "no OnFailure destination"
        )
    }
    if not row["has_invoke_config"]:
        retries = f"no event invoke config (AWS default MaximumRetryAttempts {DEFAULT_ASYNC_RETRIES})"
        settings["maximum_retry_attempts"] = _known(DEFAULT_ASYNC_RETRIES, retries)
        age = f"no event invoke config (AWS default MaximumEventAgeInSeconds {MAX_EVENT_AGE_S})"
        settings["maximum_event_age_s"] = _known(MAX_EVENT_AGE_S, age)
        return settings
    if row["maximum_retry_attempts"] is not None:
        value = row["maximum_retry_attempts"]
        settings["maximum_retry_attempts"] = _known(value, f"MaximumRetryAttempts = {value}")
    if row["maximum_event_age_s"] is not None:
        value = row["maximum_event_age_s"]
        settings["maximum_event_age_s"] = _known(value, f"MaximumEventAgeInSeconds = {value}")
    return settings


def _collected_sqs(row: dict[str, Any], where: str) -> dict[str, Known]:
    settings = {
        "batch_size": _known(row["batch_size"], f"BatchSize = {row['batch_size']}{where}"),
        "report_batch_item_failures": _known(
            bool(row["report_batch_item_failures"]),
            f"ReportBatchItemFailures {'on' if row['report_batch_item_failures'] else 'off'}{where}",
        ),
    }
    if row["has_queue"]:  # the source queue's attributes were readable
        visibility = row["queue_visibility_timeout_s"]
        settings["visibility_timeout_s"] = _known(
            visibility, f"source queue VisibilityTimeout = {visibility} s"
        )
        count = row["queue_max_receive_count"]
        shown = (
            f"source queue maxReceiveCount = {count}"
            if count is not None
            else "source queue has no RedrivePolicy"
        )
        settings["max_receive_count"] = _known(count, shown)
    return settings


def _collected_stream(row: dict[str, Any], where: str) -> dict[str, Known]:
    settings: dict[str, Known] = {}
    for setting, column, label in (
        ("batch_size", "batch_size", "BatchSize"),
        ("bisect_batch_on_function_error", "bisect_batch_on_function_error", "BisectBatchOnFunctionError"),
        ("maximum_retry_attempts", "mapping_retries", "MaximumRetryAttempts"),
        ("maximum_record_age_s", "maximum_record_age_s", "MaximumRecordAgeInSeconds"),
        ("report_batch_item_failures", "report_batch_item_failures", "ReportBatchItemFailures"),
    ):
        if row[column] is not None:
            settings[setting] = _known(row[column], f"{label} = {row[column]}{where}")
    on_failure = row["mapping_on_failure"]
    shown = f"OnFailure destination = {on_failure}" if on_failure else "no OnFailure destination"
    settings["on_failure"] = _known(on_failure, shown + where)
    return settings


# -- reading the store ------------------------------------------------------------------------------

EVENTS_SQL = """
SELECT function_name, source, count(*),
    count(*) FILTER (WHERE outcome = 'dropped' AND NOT coalesce(uncertain, false))
FROM events WHERE function_name IS NOT NULL GROUP BY ALL
"""

# Dead letters of the function's events: its own DLQ (async) or its source queue's redrive DLQ (sqs).
DEAD_LETTERS_SQL = """
SELECT e.function_name, e.source, count(DISTINCT d.message_id),
    min(coalesce(d.queue, d.dead_letter_source_arn)), min(d.approximate_receive_count)
FROM events e JOIN dead_letters d ON d.message_id = e.dead_letter_message_id
WHERE e.function_name IS NOT NULL AND e.source IN ('async', 'sqs')
GROUP BY ALL
"""

FAILURE_RECORDS_SQL = """
SELECT function_name, count(*), min(coalesce(envelope_source, envelope))
FROM destination_records
WHERE function_name IS NOT NULL AND condition IS DISTINCT FROM 'Success'
GROUP BY ALL
"""

# The function timeout: old-style logs say it ("Task timed out after 3.00 seconds"); otherwise a
# timed-out invocation's duration, which runs a few milliseconds past the whole seconds configured.
TIMEOUTS_SQL = """
SELECT function_name, count(*),
    mode(coalesce(TRY_CAST(regexp_extract(error_message, 'timed out after ([0-9.]+) seconds', 1) AS DOUBLE),
                  round(duration_ms / 1000)))
FROM invocations WHERE status = 'timeout' AND function_name IS NOT NULL GROUP BY ALL
"""

BATCHES_SQL = """
SELECT function_name, max(size), bool_or(depth > 0) FROM batches
WHERE function_name IS NOT NULL GROUP BY ALL
"""

# With BisectBatchOnFunctionError on, a function error splits any batch of two or more records, so a
# stream batch that failed and came back with exactly the same records shows bisect is off (§2).
WHOLE_RETRY_SQL = """
SELECT failed.function_name, arg_min(failed.batch_id, fi.start_time), arg_min(failed.size, fi.start_time)
FROM batches failed
JOIN invocations fi ON fi.request_id = failed.request_id
JOIN batches again ON again.function_name = failed.function_name
    AND again.shard_id IS NOT DISTINCT FROM failed.shard_id
    AND again.first_sequence_number = failed.first_sequence_number
    AND again.last_sequence_number = failed.last_sequence_number
    AND again.size = failed.size AND again.batch_id <> failed.batch_id
JOIN invocations ai ON ai.request_id = again.request_id
WHERE failed.size > 1 AND failed.outcome IN ('error', 'timeout', 'out_of_memory', 'crash')
    AND ai.start_time > fi.start_time
    AND failed.function_name IN (SELECT function_name FROM events WHERE source IN ('kinesis', 'dynamodb'))
GROUP BY ALL
"""


def observe(con: duckdb.DuckDBPyConnection) -> dict[str, Observed]:
    """Function → what the store shows about it, from the analysis and ingest tables on `con`."""
    seen: dict[str, Observed] = {}

    def of(function: str) -> Observed:
        return seen.setdefault(function, Observed())

    for function, source, events, dropped in con.execute(EVENTS_SQL).fetchall():
        of(function).events[source] = int(events)
        of(function).dropped[source] = int(dropped)
    for function, source, messages, queue, receives in con.execute(DEAD_LETTERS_SQL).fetchall():
        of(function).dead_letters[source] = (int(messages), queue, receives)
    for function, records, via in con.execute(FAILURE_RECORDS_SQL).fetchall():
        of(function).failure_records = (int(records), via)
    for function, timeouts, seconds in con.execute(TIMEOUTS_SQL).fetchall():
        if seconds is not None:
            of(function).timeout = (float(seconds), int(timeouts))
    for function, largest, split in con.execute(BATCHES_SQL).fetchall():
        of(function).largest_batch = largest
        of(function).split = bool(split)
    for function, batch_id, size in con.execute(WHOLE_RETRY_SQL).fetchall():
        of(function).whole_retry = (batch_id, int(size))
    return seen


def empty_connection() -> duckdb.DuckDBPyConnection:
    """A connection whose store and analysis tables exist and are empty (auditing tracekit.toml alone)."""
    con = duckdb.connect()
    for table in (*SCHEMAS, *ANALYSIS_SCHEMAS):
        con.execute(f"CREATE TEMP VIEW {table} AS {empty_select(table)}")
    return con


# -- the facts rules read ---------------------------------------------------------------------------


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _timeout(p: Profile) -> Known | None:
    if "timeout_s" in p.configured:
        return p.configured["timeout_s"]
    if p.observed.timeout is None:
        return None
    seconds, count = p.observed.timeout
    return Known(
        seconds, f"timeout {_seconds(seconds)} ({counted(count, 'timed-out invocation')})", Basis.OBSERVED
    )


def _failure_sink(p: Profile, setting: str) -> Known | None:
    """The function's on-failure destination (`on_failure`) or DLQ (`dlq`): configured, else proven by
    an on-failure record or a message in the function's DLQ."""
    if setting in p.configured:
        return p.configured[setting]
    if setting == "on_failure" and p.observed.failure_records:
        records, via = p.observed.failure_records
        where = f" via {via}" if via and via != "raw" else ""
        return Known(True, f"{counted(records, 'on-failure record')} in the store{where}", Basis.OBSERVED)
    if setting == "dlq" and "async" in p.observed.dead_letters:
        messages, queue, _ = p.observed.dead_letters["async"]
        where = f" ({queue})" if queue else ""
        return Known(True, f"{counted(messages, 'message')} in its DLQ{where}", Basis.OBSERVED)
    return None


def _dropped(p: Profile, source: str, item: str) -> Known | None:
    dropped = p.observed.dropped.get(source, 0)
    if not dropped:
        return None
    return Known(None, f"{counted(dropped, item)} ended dropped, held by nothing", Basis.OBSERVED)


def _batch_size(p: Profile, source: str) -> Known:
    if "batch_size" in p.configured:
        return p.configured["batch_size"]
    largest = p.observed.largest_batch
    if largest and largest > 1:
        return Known(largest, f"batches of up to {largest} seen", Basis.OBSERVED)
    default = DEFAULT_BATCH_SIZE[source]
    return Known(default, f"batch_size unset (AWS default {default})", Basis.CONFIGURATION)


def _bisect(p: Profile) -> Known | None:
    setting = "bisect_batch_on_function_error"
    if setting in p.configured:
        return p.configured[setting]
    if p.observed.split:
        return Known(True, "split batches seen", Basis.OBSERVED)
    if p.observed.whole_retry:
        batch_id, size = p.observed.whole_retry
        return Known(
            False, f"off: batch {batch_id} of {size} records failed and was retried whole", Basis.OBSERVED
        )
    return None


# -- async rules ------------------------------------------------------------------------------------


def _async_no_failure_sink(p: Profile, rule: Rule) -> Verdict:
    dlq, on_failure = _failure_sink(p, "dlq"), _failure_sink(p, "on_failure")
    if (dlq and dlq.value is not None) or (on_failure and on_failure.value is not None):
        return None
    dropped = _dropped(p, "async", "event")
    if dropped:
        facts = [f for f in (dlq, on_failure) if f] + [dropped]
    elif dlq and on_failure:
        facts = [dlq, on_failure]
    else:
        known = {"dlq": dlq, "on_failure": on_failure}
        return p.unchecked(rule, tuple(name for name, fact in known.items() if fact is None))
    return p.finding(
        rule,
        Severity.HIGH,
        "dlq, on_failure",
        facts,
        "When an asynchronous event's retries or maximum event age run out, Lambda discards it unless "
        "the function has an on-failure destination or a dead-letter queue, and no log line says it "
        "was dropped (AWS Lambda Developer Guide: invocation-async).",
        "Add an on-failure destination (aws lambda put-function-event-invoke-config --destination-config) "
        "or a DLQ (update-function-configuration --dead-letter-config); if one exists, ingest its "
        "messages so tracekit sees them.",
    )


def _async_event_age(p: Profile, rule: Rule) -> Verdict:
    age = p.configured.get("maximum_event_age_s")
    if age is None:
        return p.unchecked(rule)
    retries = p.configured.get("maximum_retry_attempts") or Known(
        DEFAULT_ASYNC_RETRIES,
        f"maximum_retry_attempts unset (AWS default {DEFAULT_ASYNC_RETRIES})",
        Basis.CONFIGURATION,
    )
    wanted = min(int(retries.value), len(ASYNC_RETRY_DELAYS_S))
    # Retry k starts at least the first k delays after the event was queued: it runs only if the
    # event is younger than that (on AWS, a 60 s age gave one attempt and 90 s gave two).
    waits = [sum(ASYNC_RETRY_DELAYS_S[: k + 1]) for k in range(wanted)]
    possible = sum(1 for wait in waits if float(age.value) > wait)
    if possible >= wanted:
        return None
    if possible == 0:
        outcome = "so no retry can happen: the first failure goes straight to the DLQ or destination"
    else:
        outcome = f"so only {possible} of the {wanted} retries can happen"
    return p.finding(
        rule,
        Severity.MEDIUM,
        "maximum_event_age_s",
        [age, retries],
        "Lambda waits 1 minute before retrying a failed asynchronous event and 2 more minutes before "
        "the next retry, and gives up once the event is older than MaximumEventAgeInSeconds, "
        f"{outcome} (AWS Lambda Developer Guide: invocation-async; observed on AWS with 60 s).",
        f"Raise MaximumEventAgeInSeconds above {waits[-1]} s so every retry can run, or set "
        f"MaximumRetryAttempts to {possible} so the configuration says what happens.",
    )


# -- SQS rules --------------------------------------------------------------------------------------


def _sqs_visibility_timeout(p: Profile, rule: Rule) -> Verdict:
    visibility, timeout = p.configured.get("visibility_timeout_s"), _timeout(p)
    if visibility is None or timeout is None:
        known = {"visibility_timeout_s": visibility, "timeout_s": timeout}
        return p.unchecked(rule, tuple(name for name, fact in known.items() if fact is None))
    needed = VISIBILITY_FACTOR * float(timeout.value)
    if float(visibility.value) >= needed:
        return None
    why = (
        f"AWS recommends a source queue visibility timeout of at least {VISIBILITY_FACTOR} times the "
        "function timeout: Lambda keeps retrying a batch whose invokes are throttled while its messages "
        "stay invisible, and once the visibility timeout runs out they are received and processed again "
        "(AWS Lambda Developer Guide: with-sqs)."
    )
    severity = Severity.MEDIUM
    if float(visibility.value) < float(timeout.value):
        severity = Severity.HIGH
        why += (
            " Here it is shorter than the function timeout, so a slow batch comes back while it still runs."
        )
    return p.finding(
        rule,
        severity,
        "visibility_timeout_s",
        [visibility, timeout],
        why,
        f"Set the queue's VisibilityTimeout to at least {_seconds(needed)} "
        f"({VISIBILITY_FACTOR} x {_seconds(float(timeout.value))}), or lower the function timeout.",
    )


def _sqs_max_receive_count(p: Profile, rule: Rule) -> Verdict:
    configured = p.configured.get("max_receive_count")
    if configured is not None:
        if configured.value is None or int(configured.value) >= MIN_RECEIVE_COUNT:
            return None
        fact = configured
    else:
        receives = p.observed.dead_letters.get("sqs", (0, None, None))[2]
        # SQS moves a message only after maxReceiveCount receives, so a DLQ copy's receive count
        # (which goes on counting) bounds the setting from above.
        if receives is None or receives >= MIN_RECEIVE_COUNT:
            return p.unchecked(rule)
        fact = Known(
            receives,
            f"max_receive_count at most {receives} "
            f"(a redrive DLQ copy shows ApproximateReceiveCount {receives})",
            Basis.OBSERVED,
        )
    return p.finding(
        rule,
        Severity.MEDIUM,
        "max_receive_count",
        [fact],
        "SQS moves a message to the redrive DLQ after maxReceiveCount receives, and receives whose "
        f"invokes were throttled count too; AWS recommends at least {MIN_RECEIVE_COUNT}, so that "
        "throttling or one transient error does not dead-letter a good message (AWS Lambda Developer "
        "Guide: with-sqs).",
        f"Set the source queue's redrive policy maxReceiveCount to {MIN_RECEIVE_COUNT} or more.",
    )


def _sqs_no_redrive(p: Profile, rule: Rule) -> Verdict:
    configured = p.configured.get("max_receive_count")
    if configured is not None:
        if configured.value is not None:
            return None
        fact = configured
    else:
        if "sqs" in p.observed.dead_letters:
            return None
        dropped = _dropped(p, "sqs", "message")
        if dropped is None:
            return p.unchecked(rule)
        fact = dropped
    return p.finding(
        rule,
        Severity.HIGH,
        "max_receive_count",
        [fact],
        "An SQS event source mapping has no on-failure destination: only the source queue's redrive DLQ "
        "keeps a message that keeps failing. Without one, a poison message is received again and again "
        "until the queue's retention period deletes it (AWS Lambda Developer Guide: with-sqs; "
        "API_OnFailure).",
        f"Give the source queue a redrive policy: a dead-letter queue and maxReceiveCount "
        f"{MIN_RECEIVE_COUNT} or more.",
    )


def _sqs_function_dlq(p: Profile, rule: Rule) -> Verdict:
    dlq = p.configured.get("dlq")
    if dlq is None:
        return p.unchecked(rule)
    if dlq.value is None:
        return None
    return p.finding(
        rule,
        Severity.MEDIUM,
        "dlq",
        [dlq],
        "Lambda does not use the function's dead-letter queue for SQS event sources; a failing message "
        "reaches only the source queue's redrive DLQ, so this DLQ stays empty and suggests a safety net "
        "that is not there (AWS Lambda Developer Guide: invocation-async, with-sqs).",
        "Remove the function's DLQ and give the source queue a redrive policy (a dead-letter queue, "
        f"maxReceiveCount {MIN_RECEIVE_COUNT} or more).",
    )


def _sqs_no_batch_item_failures(p: Profile, rule: Rule) -> Verdict:
    rbif = p.configured.get("report_batch_item_failures")
    if rbif is None:
        return p.unchecked(rule)
    size = _batch_size(p, "sqs")
    if rbif.value or int(size.value) <= 1:
        return None
    return p.finding(
        rule,
        Severity.MEDIUM,
        "report_batch_item_failures",
        [rbif, size],
        "Without ReportBatchItemFailures a function error returns the whole batch to the queue: one "
        "poison message makes every message in its batch run again and spend a receive, until its "
        "batch-mates reach the DLQ with it (AWS Lambda Developer Guide: with-sqs).",
        "Turn on ReportBatchItemFailures (FunctionResponseTypes) and return the failed messageIds in "
        "batchItemFailures.",
    )


# -- Kinesis and DynamoDB Streams rules -------------------------------------------------------------


def _stream_no_bisect(p: Profile, rule: Rule) -> Verdict:
    bisect = _bisect(p)
    if bisect is None:
        return p.unchecked(rule)
    configured_size = p.configured.get("batch_size")
    if bisect.value or (configured_size is not None and int(configured_size.value) <= 1):
        return None
    return p.finding(
        rule,
        Severity.MEDIUM,
        "bisect_batch_on_function_error",
        [bisect],
        "Without BisectBatchOnFunctionError a function error retries the whole batch and blocks its "
        "shard until the retries or the record age run out, so one bad record holds back and re-runs "
        "every record in its batch (AWS Lambda Developer Guide: with-kinesis, with-ddb).",
        "Turn on BisectBatchOnFunctionError, and return batchItemFailures (ReportBatchItemFailures) so "
        "only the failing record is retried.",
    )


def _stream_infinite_retries(p: Profile, rule: Rule) -> Verdict:
    retries = p.configured.get("maximum_retry_attempts")
    if retries is None:
        return p.unchecked(rule)
    age = p.configured.get("maximum_record_age_s")
    if int(retries.value) != -1 or (age is not None and float(age.value) > 0):
        return None
    sink = _failure_sink(p, "on_failure")
    facts = [retries, age or Known(None, "maximum_record_age_s unset", Basis.CONFIGURATION)]
    why = (
        "With MaximumRetryAttempts -1 and no maximum record age Lambda retries a failing batch until its "
        "records expire from the stream (Kinesis: up to a week, DynamoDB: a day), and the shard "
        "processes nothing else meanwhile (AWS Lambda Developer Guide: with-kinesis, with-ddb)."
    )
    severity = Severity.MEDIUM
    if sink is None or sink.value is None:
        severity = Severity.HIGH
        why += " No on-failure destination is known, so the records then vanish without a trace."
    return p.finding(
        rule,
        severity,
        "maximum_retry_attempts",
        facts + ([sink] if sink else []),
        why,
        "Set MaximumRetryAttempts (a few retries) or MaximumRecordAgeInSeconds, and add an on-failure "
        "destination to the event source mapping.",
    )


def _stream_no_on_failure(p: Profile, rule: Rule) -> Verdict:
    sink = _failure_sink(p, "on_failure")
    if sink is not None and sink.value is not None:
        return None
    fact = sink or _dropped(p, p.source_name or "", "record")
    if fact is None:
        return p.unchecked(rule)
    facts = [fact]
    why = (
        "When a batch's retries or record age run out Lambda skips its records and the shard moves on; "
        "only an on-failure destination keeps a trace of them (the shard and sequence range) (AWS Lambda "
        "Developer Guide: with-kinesis, with-ddb)."
    )
    dlq = p.configured.get("dlq")
    if dlq is not None and dlq.value is not None:
        facts.append(dlq)
        why += " The function's DLQ does not help: Lambda sends it asynchronous invocations' events only."
    return p.finding(
        rule,
        Severity.HIGH,
        "on_failure",
        facts,
        why,
        "Add an on-failure destination (SQS, SNS, S3 or Kafka) to the event source mapping; SQS and SNS "
        "records carry only the sequence range, so read the records before the stream's retention ends.",
    )


ASYNC_RULES = (
    Rule(
        "async-no-failure-sink", ("dlq", "on_failure"), (ASYNC_ERRORS, ASYNC_RECORDS), _async_no_failure_sink
    ),
    Rule(
        "async-event-age-blocks-retries",
        ("maximum_event_age_s",),
        (ASYNC_ERRORS,),
        _async_event_age,
    ),
)
SQS_RULES = (
    Rule(
        "sqs-visibility-timeout", ("visibility_timeout_s", "timeout_s"), (WITH_SQS,), _sqs_visibility_timeout
    ),
    Rule("sqs-max-receive-count", ("max_receive_count",), (WITH_SQS,), _sqs_max_receive_count),
    Rule("sqs-no-redrive-dlq", ("max_receive_count",), (WITH_SQS, ON_FAILURE_API), _sqs_no_redrive),
    Rule("sqs-function-dlq", ("dlq",), (ASYNC_RECORDS, WITH_SQS), _sqs_function_dlq),
    Rule(
        "sqs-no-batch-item-failures",
        ("report_batch_item_failures",),
        (WITH_SQS,),
        _sqs_no_batch_item_failures,
    ),
)
STREAM_RULES = (
    Rule(
        "stream-no-bisect",
        ("bisect_batch_on_function_error",),
        (WITH_KINESIS, WITH_DDB),
        _stream_no_bisect,
    ),
    Rule(
        "stream-infinite-retries",
        ("maximum_retry_attempts",),
        (WITH_KINESIS, WITH_DDB),
        _stream_infinite_retries,
    ),
    Rule(
        "stream-no-on-failure",
        ("on_failure",),
        (WITH_KINESIS, WITH_DDB, ASYNC_RECORDS),
        _stream_no_on_failure,
    ),
)

#: The rules of each source; a source without rules (kafka) is listed but not audited.
RULES: dict[str, tuple[Rule, ...]] = {
    "async": ASYNC_RULES,
    "sqs": SQS_RULES,
    "kinesis": STREAM_RULES,
    "dynamodb": STREAM_RULES,
}

#: Every rule id, for documentation and tests.
RULE_IDS = tuple(dict.fromkeys(r.id for rules in RULES.values() for r in rules))

_UNKNOWN_SOURCE = Rule("source", ("source",), (), lambda p, r: p.unchecked(r))

_SEVERITY_ORDER = {Severity.HIGH: 0, Severity.MEDIUM: 1}


# -- the audit --------------------------------------------------------------------------------------


def audit(con: duckdb.DuckDBPyConnection, config: Config) -> AuditReport:
    """Judge every function in `config` or on `con` (a store connection with the analysis tables)
    against the rules of its source.

    Raises:
        ConfigError: a setting audit reads has a value it cannot use.
    """
    configured = configured_settings(config)
    collected = collected_settings(con)
    observed = observe(con)
    profiles = [
        _profile(name, configured.get(name, {}), collected.get(name), observed.get(name, Observed()))
        for name in sorted(set(configured) | set(collected) | set(observed))
    ]
    findings: list[Finding] = []
    unchecked: list[Unchecked] = []
    for profile in profiles:
        source = profile.source_name
        rules = RULES.get(source, ()) if source else (_UNKNOWN_SOURCE,)
        for rule in rules:
            verdict = rule.check(profile, rule)
            if isinstance(verdict, Finding):
                findings.append(verdict)
            elif isinstance(verdict, Unchecked):
                unchecked.append(verdict)
    findings.sort(key=lambda f: (_SEVERITY_ORDER[f.severity], f.function, f.rule))
    return AuditReport([_summary(p) for p in profiles], findings, unchecked)


def _profile(
    name: str, configured: dict[str, Known], collected: Collected | None, observed: Observed
) -> Profile:
    """What the account said beats tracekit.toml, which still speaks where the APIs are silent; the
    invoke config's settings join only a function whose source is async."""
    if collected is None:
        return Profile(name, configured, observed)
    profile = Profile(name, {**configured, **collected.settings}, observed)
    if profile.source_name != "async":
        return profile
    return Profile(name, {**profile.configured, **collected.invoke}, observed)


def audit_configuration(config: Config) -> AuditReport:
    """The audit of tracekit.toml alone, for when there is no store."""
    con = empty_connection()
    try:
        return audit(con, config)
    finally:
        con.close()


def _summary(p: Profile) -> dict[str, Any]:
    source = p.source
    return {
        "function": p.function,
        "source": None if source is None else source.value,
        "source_basis": None if source is None else source.basis.value,
        "audited": source is not None and source.value in RULES,
    }
