"""`tracekit.analyze.audit`: dangerous settings, from hand-written tracekit.toml files and from lab stores.

The configuration cases work each rule out by hand from lambda-semantics.md (§1.1 async retries 1 and
then 2 minutes apart; §3 visibility timeout ≥ 6x the function timeout, maxReceiveCount ≥ 5, no
function DLQ for SQS sources; §2 bisect, infinite retries, on-failure destinations). The lab cases run
a scenario, analyze what it wrote, and audit the store with no tracekit.toml: what the findings say
comes from the scenario file and truth.json, never from the audit's own output.
"""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import SCENARIOS, LabStore

from tracekit import jsonio
from tracekit.analyze.audit import (
    RULE_IDS,
    AuditReport,
    Finding,
    audit,
    audit_configuration,
)
from tracekit.analyze.build import analyze
from tracekit.analyze.keys import Config, ConfigError, load_config
from tracekit.collect.functions import Discovery, store_configuration
from tracekit.store import Store


def configured(tmp_path: Path, toml: str) -> AuditReport:
    path = tmp_path / "tracekit.toml"
    path.write_text(textwrap.dedent(toml))
    return audit_configuration(load_config(path))


def only(report: AuditReport, rule: str, function: str | None = None) -> Finding:
    [finding] = [f for f in report.findings if f.rule == rule and function in (None, f.function)]
    return finding


def rules(report: AuditReport, function: str | None = None) -> set[str]:
    return {f.rule for f in report.findings if function in (None, f.function)}


def unchecked(report: AuditReport, function: str | None = None) -> dict[str, tuple[str, ...]]:
    return {u.rule: u.needs for u in report.unchecked if function in (None, u.function)}


# ---------------------------------------------------------------------- a safe configuration


def test_a_safe_configuration_has_no_finding_and_nothing_unchecked(tmp_path: Path) -> None:
    report = configured(
        tmp_path,
        """
        [functions.orders-notify]
        key = "$.order_id"
        source = "async"
        on_failure = "arn:aws:sqs:us-east-1:123456789012:orders-notify-failures"
        dlq = "none"
        maximum_retry_attempts = 2
        maximum_event_age_s = 3600            # > 180 s: both retries fit

        [functions.orders-worker]
        source = "sqs"
        timeout_s = 10
        visibility_timeout_s = 60             # exactly 6 x 10
        max_receive_count = 5
        dlq = "none"
        report_batch_item_failures = true

        [functions.orders-stream]
        source = "kinesis"
        bisect_batch_on_function_error = true
        maximum_retry_attempts = 3
        on_failure = "sns:orders-stream-failures"
        """,
    )
    assert report.findings == []
    assert report.unchecked == []
    assert {f["function"]: (f["source"], f["source_basis"]) for f in report.functions} == {
        "orders-notify": ("async", "configuration"),
        "orders-worker": ("sqs", "configuration"),
        "orders-stream": ("kinesis", "configuration"),
    }


# ---------------------------------------------------------------------- async


def test_an_async_function_with_neither_dlq_nor_destination_is_high(tmp_path: Path) -> None:
    report = configured(
        tmp_path,
        """
        [functions.f]
        source = "async"
        dlq = "none"
        on_failure = ""
        maximum_event_age_s = 21600
        """,
    )
    finding = only(report, "async-no-failure-sink")
    assert (finding.severity, finding.basis, finding.function) == ("high", "configuration", "f")
    assert finding.value == "dlq = none; on_failure = "
    assert "invocation-async" in finding.why
    assert report.unchecked == []


@pytest.mark.parametrize("sink", ['dlq = "orders-dlq"', 'on_failure = "eventbridge:bus"'])
def test_either_sink_is_enough_for_an_async_function(tmp_path: Path, sink: str) -> None:
    report = configured(tmp_path, f'[functions.f]\nsource = "async"\n{sink}\nmaximum_event_age_s = 21600\n')
    assert report.findings == []
    assert report.unchecked == []


def test_a_silent_configuration_leaves_the_async_sink_unchecked(tmp_path: Path) -> None:
    report = configured(tmp_path, '[functions.f]\nsource = "async"\ndlq = "none"\n')
    assert report.findings == []
    # The DLQ is known to be absent; whether there is an on-failure destination is not.
    assert unchecked(report) == {
        "async-no-failure-sink": ("on_failure",),
        "async-event-age-blocks-retries": ("maximum_event_age_s",),
    }


@pytest.mark.parametrize(
    ("age", "retries", "expected"),
    [
        # Retry 1 starts 60 s after the event was queued at the earliest, retry 2 60 + 120 = 180 s.
        (60, None, "so no retry can happen"),  # AWS made one attempt at 60 s
        (60, 1, "so no retry can happen"),
        (90, 2, "so only 1 of the 2 retries can happen"),  # AWS made two attempts at 90 s
        (180, 2, "so only 1 of the 2 retries can happen"),
        (181, 2, None),
        (90, 1, None),
        (60, 0, None),
    ],
)
def test_an_event_age_too_short_for_the_retries_is_medium(
    tmp_path: Path, age: int, retries: int | None, expected: str | None
) -> None:
    retry_line = "" if retries is None else f"maximum_retry_attempts = {retries}"
    report = configured(
        tmp_path, f'[functions.f]\nsource = "async"\ndlq = "q"\nmaximum_event_age_s = {age}\n{retry_line}\n'
    )
    if expected is None:
        assert report.findings == []
        return
    finding = only(report, "async-event-age-blocks-retries")
    assert finding.severity == "medium"
    assert expected in finding.why
    assert finding.value.startswith(f"maximum_event_age_s = {age}; ")
    if retries is None:
        assert "maximum_retry_attempts unset (AWS default 2)" in finding.value
    assert "above 180 s" in finding.fix if (retries or 2) == 2 else "above 60 s" in finding.fix


# ---------------------------------------------------------------------- SQS


def sqs(tmp_path: Path, settings: str) -> AuditReport:
    return configured(tmp_path, f'[functions.w]\nsource = "sqs"\n{settings}\n')


@pytest.mark.parametrize(
    ("visibility", "severity"),
    [(5, "high"), (10, "medium"), (30, "medium"), (59.5, "medium"), (60, None), (900, None)],
)
def test_a_visibility_timeout_under_six_function_timeouts(
    tmp_path: Path, visibility: float, severity: str | None
) -> None:
    report = sqs(tmp_path, f"timeout_s = 10\nvisibility_timeout_s = {visibility}")
    if severity is None:
        assert "sqs-visibility-timeout" not in rules(report)
        assert "sqs-visibility-timeout" not in unchecked(report)
        return
    finding = only(report, "sqs-visibility-timeout")
    assert finding.severity == severity
    assert finding.value == f"visibility_timeout_s = {visibility}; timeout_s = 10"
    assert "at least 60 s (6 x 10 s)" in finding.fix
    # Under the function timeout itself a batch can come back while its invocation still runs.
    assert ("shorter than the function timeout" in finding.why) == (severity == "high")


def test_the_visibility_rule_names_the_setting_it_lacks(tmp_path: Path) -> None:
    report = sqs(tmp_path, "visibility_timeout_s = 30")
    assert unchecked(report)["sqs-visibility-timeout"] == ("timeout_s",)
    report = sqs(tmp_path, "timeout_s = 30")
    assert unchecked(report)["sqs-visibility-timeout"] == ("visibility_timeout_s",)


@pytest.mark.parametrize(("count", "flagged"), [(1, True), (4, True), (5, False), (1000, False)])
def test_a_max_receive_count_under_five(tmp_path: Path, count: int, flagged: bool) -> None:
    report = sqs(tmp_path, f"max_receive_count = {count}")
    assert ("sqs-max-receive-count" in rules(report)) == flagged
    assert "sqs-no-redrive-dlq" not in rules(report) | set(unchecked(report))
    if flagged:
        finding = only(report, "sqs-max-receive-count")
        assert (finding.severity, finding.value) == ("medium", f"max_receive_count = {count}")


def test_a_queue_without_a_redrive_policy_is_high(tmp_path: Path) -> None:
    report = sqs(tmp_path, 'max_receive_count = "none"')
    finding = only(report, "sqs-no-redrive-dlq")
    assert (finding.severity, finding.basis, finding.value) == (
        "high",
        "configuration",
        "max_receive_count = none",
    )
    assert "sqs-max-receive-count" not in rules(report) | set(unchecked(report))


def test_a_function_dlq_on_an_sqs_function_is_flagged(tmp_path: Path) -> None:
    report = sqs(tmp_path, 'dlq = "arn:aws:sqs:eu-west-1:123456789012:worker-dlq"')
    finding = only(report, "sqs-function-dlq")
    assert finding.severity == "medium"
    assert finding.value == "dlq = arn:aws:sqs:eu-west-1:123456789012:worker-dlq"
    assert "redrive" in finding.fix
    assert "sqs-function-dlq" not in rules(sqs(tmp_path, 'dlq = "none"'))


@pytest.mark.parametrize(
    ("settings", "value"),
    [
        (
            "report_batch_item_failures = false",
            "report_batch_item_failures = false; batch_size unset (AWS default 10)",
        ),
        (
            "report_batch_item_failures = false\nbatch_size = 2",
            "report_batch_item_failures = false; batch_size = 2",
        ),
        ("report_batch_item_failures = false\nbatch_size = 1", None),
        ("report_batch_item_failures = true\nbatch_size = 10", None),
    ],
)
def test_batch_item_failures_off_with_batches_of_several_messages(
    tmp_path: Path, settings: str, value: str | None
) -> None:
    report = sqs(tmp_path, settings)
    if value is None:
        assert "sqs-no-batch-item-failures" not in rules(report) | set(unchecked(report))
        return
    finding = only(report, "sqs-no-batch-item-failures")
    assert (finding.severity, finding.value, finding.basis) == ("medium", value, "configuration")


# ---------------------------------------------------------------------- Kinesis and DynamoDB Streams


def stream(tmp_path: Path, settings: str, source: str = "kinesis") -> AuditReport:
    return configured(tmp_path, f'[functions.s]\nsource = "{source}"\n{settings}\n')


@pytest.mark.parametrize("source", ["kinesis", "dynamodb"])
def test_a_stream_mapping_without_bisect(tmp_path: Path, source: str) -> None:
    report = stream(tmp_path, "bisect_batch_on_function_error = false", source)
    finding = only(report, "stream-no-bisect")
    assert (finding.severity, finding.value) == ("medium", "bisect_batch_on_function_error = false")
    assert finding.source == source
    # Bisect cannot split a batch of one record: nothing to flag.
    report = stream(tmp_path, "bisect_batch_on_function_error = false\nbatch_size = 1", source)
    assert "stream-no-bisect" not in rules(report)


@pytest.mark.parametrize(
    ("settings", "severity"),
    [
        ('maximum_retry_attempts = -1\non_failure = "none"', "high"),
        ("maximum_retry_attempts = -1", "high"),  # no destination known
        ('maximum_retry_attempts = -1\nmaximum_record_age_s = -1\non_failure = "sqs:f"', "medium"),
        ("maximum_retry_attempts = -1\nmaximum_record_age_s = 3600", None),  # the age ends the retries
        ('maximum_retry_attempts = 10000\non_failure = "none"', None),
    ],
)
def test_infinite_retries_on_a_stream_mapping(tmp_path: Path, settings: str, severity: str | None) -> None:
    report = stream(tmp_path, settings)
    if severity is None:
        assert "stream-infinite-retries" not in rules(report) | set(unchecked(report))
        return
    finding = only(report, "stream-infinite-retries")
    assert finding.severity == severity
    assert finding.value.startswith("maximum_retry_attempts = -1; maximum_record_age_s")
    assert ("No on-failure destination" in finding.why) == (severity == "high")


def test_a_stream_mapping_without_an_on_failure_destination(tmp_path: Path) -> None:
    finding = only(stream(tmp_path, 'on_failure = "none"'), "stream-no-on-failure")
    assert (finding.severity, finding.value) == ("high", "on_failure = none")
    assert "DLQ" not in finding.why
    # A function DLQ catches no stream records (it serves asynchronous invocations): the finding says so.
    finding = only(stream(tmp_path, 'on_failure = "none"\ndlq = "orders-dlq"'), "stream-no-on-failure")
    assert finding.value == "on_failure = none; dlq = orders-dlq"
    assert "The function's DLQ does not help" in finding.why
    assert "stream-no-on-failure" not in rules(stream(tmp_path, 'on_failure = "s3:archive"'))


# ---------------------------------------------------------------------- configuration errors and sources


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('visibility_timeout_s = "thirty"', "functions.w.visibility_timeout_s = 'thirty' is not a number"),
        ('source = "ftp"', "functions.w.source = 'ftp' is not one of async | sqs"),
        ('report_batch_item_failures = "maybe"', "is not true or false"),
        ("max_receive_count = 2.5", 'is not a whole number or "none"'),
    ],
)
def test_a_value_audit_cannot_use_is_a_config_error(tmp_path: Path, setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
        configured(tmp_path, f"[functions.w]\n{setting}\n")


def test_a_function_of_unknown_source_is_listed_unchecked(tmp_path: Path) -> None:
    report = configured(
        tmp_path,
        """
        [functions.orders-notify]
        key = "$.order_id"
        [functions."*"]
        key = "$.orderId"
        visibility_timeout_s = 1   # settings belong to named functions; "*" gives keys only
        [functions.orders-kafka]
        source = "kafka"
        """,
    )
    assert report.findings == []
    assert [(u.function, u.rule, u.needs) for u in report.unchecked] == [
        ("orders-notify", "source", ("source",))
    ]
    assert {f["function"]: f["audited"] for f in report.functions} == {
        "orders-kafka": False,
        "orders-notify": False,
    }


def test_every_rule_id_is_documented_in_the_readme() -> None:
    readme = (SCENARIOS.parents[1] / "README.md").read_text()
    section = re.split(r"\n##+ ", readme.split("### `tracekit audit", 1)[1], maxsplit=1)[0]
    for rule in RULE_IDS:
        assert f"`{rule}`" in section


# ---------------------------------------------------------------------- observed in lab stores


def lab_audit(
    lab_store: LabStore, scenario: Path | str, config: Config | None = None
) -> tuple[Any, AuditReport]:
    """Run the scenario, analyze the store it leaves, and audit it with `config` (none by default)."""
    run = lab_store(scenario, modules=())
    config = config or Config()
    analyze(run.store, config)
    con = run.store.connect()
    try:
        return run, audit(con, config)
    finally:
        con.close()


def test_a_redrive_dlq_copy_shows_a_max_receive_count_under_five(lab_store: LabStore) -> None:
    run, report = lab_audit(lab_store, SCENARIOS / "sqs-redrive.toml")
    assert report.functions == [
        {"function": "orders-worker", "source": "sqs", "source_basis": "observed", "audited": True}
    ]
    # maxReceiveCount is 3: SQS moves order 4720 on its fourth receive, and the DLQ copy read back
    # shows ApproximateReceiveCount 4 (as AWS's recording with maxReceiveCount 1 shows 2).
    [dead] = [e for e in run.truth["events"] if e["outcome"] == "dead_lettered"]
    assert len([a for a in dead["attempts"] if a["outcome"] != "throttled"]) == 3
    finding = only(report, "sqs-max-receive-count")
    assert (finding.severity, finding.basis) == ("medium", "observed")
    assert "max_receive_count at most 4" in finding.value
    # The DLQ message proves the redrive policy; the function timeout (10 s) shows in the timeout of
    # order 4731's batch; the visibility timeout itself is not in any artifact.
    assert rules(report) == {"sqs-max-receive-count"}
    assert unchecked(report) == {
        "sqs-visibility-timeout": ("visibility_timeout_s",),
        "sqs-function-dlq": ("dlq",),
        "sqs-no-batch-item-failures": ("report_batch_item_failures",),
    }


def test_configuration_and_observation_combine(lab_store: LabStore, tmp_path: Path) -> None:
    path = tmp_path / "tracekit.toml"
    # The scenario's queue (visibility 30 s here, under 6 x the 10 s timeout), all-or-nothing batches.
    path.write_text(
        "[functions.orders-worker]\nvisibility_timeout_s = 30\nreport_batch_item_failures = false\n"
    )
    _, report = lab_audit(lab_store, SCENARIOS / "sqs-redrive.toml", load_config(path))
    visibility = only(report, "sqs-visibility-timeout")
    assert visibility.severity == "medium"
    assert visibility.basis == "configuration, observed"
    assert visibility.value == "visibility_timeout_s = 30; timeout 10 s (1 timed-out invocation)"
    batches = only(report, "sqs-no-batch-item-failures")
    # batch_size 4 in the scenario: the first six orders arrive at once, so a batch of 4 is seen.
    assert batches.value == "report_batch_item_failures = false; batches of up to 4 seen"
    assert batches.basis == "configuration, observed"


ASYNC_WITHOUT_SINKS = """
name = "async-no-sinks"
start = "2026-11-22T09:00:00Z"

[function]
name = "orders-capture"
handler = "{handlers}/async_orders.py:handler"
timeout_s = 3

[source]
type = "async"

[[events]]
payload = { order_id = 1 }

[[events]]
at = 5
payload = { order_id = 2, reject = true }

[[events]]
at = 9
payload = { order_id = 3, reject = true }
"""


def test_async_events_dropped_with_nowhere_to_go_are_observed(lab_store: LabStore) -> None:
    run, report = lab_audit(lab_store, ASYNC_WITHOUT_SINKS)
    dropped = [e for e in run.truth["events"] if e["outcome"] == "dropped"]
    assert len(dropped) == 2  # both rejected orders fail three times, with no DLQ or destination
    finding = only(report, "async-no-failure-sink")
    assert (finding.function, finding.severity, finding.basis) == ("orders-capture", "high", "observed")
    assert finding.value == "2 events ended dropped, held by nothing"


def test_async_dead_letters_and_failure_records_prove_the_sinks(lab_store: LabStore) -> None:
    _, report = lab_audit(lab_store, SCENARIOS / "async-retries.toml")
    assert report.findings == []
    # Only the event age is beyond what the artifacts show.
    assert unchecked(report) == {"async-event-age-blocks-retries": ("maximum_event_age_s",)}


def test_a_failed_stream_batch_retried_whole_shows_bisect_is_off(lab_store: LabStore) -> None:
    run, report = lab_audit(lab_store, SCENARIOS / "dynamodb-partial-batch.toml")
    # The scenario sets no bisect (AWS default: off); the batch of orders 7002 (cancelled) and 7004
    # (removed) fails once with ConnectionResetError and is retried with the same two records.
    [failed] = [b for b in run.truth["batches"] if b["outcome"] == "error"]
    assert failed["size"] == 2
    finding = only(report, "stream-no-bisect")
    assert (finding.severity, finding.basis, finding.source) == ("medium", "observed", "dynamodb")
    assert finding.value == f"off: batch {failed['request_id']} of 2 records failed and was retried whole"
    # The S3 on-failure record proves the destination.
    assert "stream-no-on-failure" not in rules(report) | set(unchecked(report))
    assert unchecked(report) == {"stream-infinite-retries": ("maximum_retry_attempts",)}


def kinesis(bisect: bool) -> str:
    return f"""
name = "kinesis-audit"
start = "2026-11-22T09:00:00Z"

[function]
name = "orders-stream"
handler = "{{samples}}/orders_stream.py:handler"
recorder = true
timeout_s = 10

[source]
type = "kinesis"
batch_size = 10
bisect_batch_on_function_error = {str(bisect).lower()}
maximum_retry_attempts = 1

[[events]]
payload = {{ order_id = 1, amount = 1 }}
[[events]]
payload = {{ order_id = 2, amount = -1 }}
[[events]]
payload = {{ order_id = 3, amount = 1 }}
[[events]]
payload = {{ order_id = 4, amount = 1 }}
"""


def test_split_batches_show_bisect_is_on_and_dropped_records_show_no_destination(
    lab_store: LabStore, tmp_path: Path
) -> None:
    path = tmp_path / "tracekit.toml"
    # The mapping's retry limit, so the analysis can tell dropped records from ones still retrying.
    path.write_text("[functions.orders-stream]\nmaximum_retry_attempts = 1\n")
    run, report = lab_audit(lab_store, kinesis(bisect=True), load_config(path))
    # Bisect splits the failing batch of 4 down to order 2 alone, which fails its retry and, with no
    # on-failure destination, is dropped.
    assert {b["size"] for b in run.truth["batches"]} >= {4, 2, 1}
    dropped = [e for e in run.truth["events"] if e["outcome"] == "dropped"]
    assert len(dropped) == 1
    assert "stream-no-bisect" not in rules(report) | set(unchecked(report))
    finding = only(report, "stream-no-on-failure")
    assert (finding.severity, finding.basis, finding.value) == (
        "high",
        "observed",
        "1 record ended dropped, held by nothing",
    )
    assert report.unchecked == []


def test_the_same_failure_without_bisect_retries_the_whole_batch(lab_store: LabStore) -> None:
    run, report = lab_audit(lab_store, kinesis(bisect=False))
    sizes = [b["size"] for b in run.truth["batches"]]
    assert sizes == [4, 4]  # the batch and its one retry, whole
    finding = only(report, "stream-no-bisect")
    assert finding.basis == "observed"
    assert finding.value.endswith("of 4 records failed and was retried whole")


# ---------------------------------------------------------------------- collected by `collect function`

FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:{name}"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:{name}"


def snapshot(
    name: str,
    *,
    timeout: int = 10,
    dlq: str | None = None,
    invoke_config: dict[str, Any] | None = None,
    mapping: dict[str, Any] | None = None,
    queue: dict[str, Any] | None = None,
) -> Discovery:
    """What `collect function` reads from the APIs, written here as the API reference shapes it."""
    configuration: dict[str, Any] = {"FunctionName": name, "FunctionArn": FUNCTION_ARN.format(name=name)}
    configuration["Timeout"] = timeout
    if dlq:
        configuration["DeadLetterConfig"] = {"TargetArn": dlq}
    found = Discovery(name, None, "eu-west-1", configuration, invoke_config)
    if mapping is not None:
        found.mappings = [{"UUID": f"uuid-{name}", "State": "Enabled", **mapping}]
        if queue is not None:
            found.queues[mapping["EventSourceArn"]] = queue
    return found


def audit_collected(tmp_path: Path, *snapshots: Discovery, toml: str = "") -> AuditReport:
    """Audit a store holding only the collected configuration `snapshots` (oldest first)."""
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "tracekit.toml"
    path.write_text(textwrap.dedent(toml))
    with Store.open(tmp_path / "store", create=True) as store, store.writing():
        for n, found in enumerate(snapshots):
            store_configuration(store, found, dt.datetime(2026, 11, 26, 12, n))
    con = store.connect()
    try:
        return audit(con, load_config(path))
    finally:
        con.close()


def test_a_collected_configuration_beats_tracekit_toml_and_says_so(tmp_path: Path) -> None:
    # tracekit.toml believes there is a DLQ; the account says the function has neither a DLQ nor an
    # invoke config (so no on-failure destination, AWS's default retries and event age).
    report = audit_collected(
        tmp_path,
        snapshot("notify"),
        toml='[functions.notify]\nsource = "async"\ndlq = "orders-dlq"\n',
    )
    finding = only(report, "async-no-failure-sink")
    assert (finding.severity, finding.basis) == ("high", "collected")
    assert finding.value == "no DeadLetterConfig; no OnFailure destination"
    assert rules(report) == {"async-no-failure-sink"}  # 21600 s leaves room for both retries
    assert report.unchecked == []


def test_a_collected_invoke_config_decides_the_async_rules(tmp_path: Path) -> None:
    invoke = {
        "MaximumRetryAttempts": 2,
        "MaximumEventAgeInSeconds": 90,
        "DestinationConfig": {"OnFailure": {"Destination": QUEUE_ARN.format(name="notify-failures")}},
    }
    report = audit_collected(
        tmp_path, snapshot("notify", invoke_config=invoke), toml='[functions.notify]\nsource = "async"\n'
    )
    # 90 s: past the first retry at 60 s, before the second at 180 s (lambda-semantics §1.1).
    finding = only(report, "async-event-age-blocks-retries")
    assert (finding.basis, finding.value) == (
        "collected",
        "MaximumEventAgeInSeconds = 90; MaximumRetryAttempts = 2",
    )
    assert "only 1 of the 2 retries" in finding.why
    assert "async-no-failure-sink" not in rules(report)


def test_a_collected_sqs_mapping_and_its_source_queue_decide_the_sqs_rules(tmp_path: Path) -> None:
    source = QUEUE_ARN.format(name="orders-in")
    mapping = {"EventSourceArn": source, "BatchSize": 10, "FunctionResponseTypes": []}
    queue = {
        "QueueArn": source,
        "VisibilityTimeout": "5",
        "RedrivePolicy": jsonio.dumps(
            {"deadLetterTargetArn": QUEUE_ARN.format(name="orders-in-dlq"), "maxReceiveCount": 3}
        ),
    }
    # tracekit.toml's safe values lose to what the account says.
    toml = """
        [functions.worker]
        visibility_timeout_s = 600
        max_receive_count = 10
        report_batch_item_failures = true
        """
    report = audit_collected(
        tmp_path, snapshot("worker", timeout=10, mapping=mapping, queue=queue), toml=toml
    )
    assert report.functions == [
        {"function": "worker", "source": "sqs", "source_basis": "collected", "audited": True}
    ]
    visibility = only(report, "sqs-visibility-timeout")
    assert (visibility.severity, visibility.basis) == ("high", "collected")  # 5 s < the 10 s timeout
    assert visibility.value == "source queue VisibilityTimeout = 5 s; Timeout = 10 s"
    assert only(report, "sqs-max-receive-count").value == "source queue maxReceiveCount = 3"
    assert only(report, "sqs-no-batch-item-failures").basis == "collected"
    assert rules(report) == {"sqs-visibility-timeout", "sqs-max-receive-count", "sqs-no-batch-item-failures"}
    assert report.unchecked == []


def test_the_latest_snapshot_is_the_configuration(tmp_path: Path) -> None:
    source = QUEUE_ARN.format(name="orders-in")
    mapping = {"EventSourceArn": source, "BatchSize": 1}
    before = {"QueueArn": source, "VisibilityTimeout": "60"}  # no redrive policy yet
    after = {
        **before,
        "RedrivePolicy": jsonio.dumps({"deadLetterTargetArn": source + "-dlq", "maxReceiveCount": 5}),
    }
    stale = audit_collected(tmp_path / "one", snapshot("worker", mapping=mapping, queue=before))
    assert only(stale, "sqs-no-redrive-dlq").value == "source queue has no RedrivePolicy"
    fixed = audit_collected(
        tmp_path / "two",
        snapshot("worker", mapping=mapping, queue=before),
        snapshot("worker", mapping=mapping, queue=after),
    )
    assert fixed.findings == []


def test_a_collected_stream_mapping_decides_the_stream_rules(tmp_path: Path) -> None:
    mapping = {
        "EventSourceArn": "arn:aws:kinesis:eu-west-1:123456789012:stream/orders",
        "BatchSize": 100,
        "BisectBatchOnFunctionError": False,
        "MaximumRetryAttempts": -1,
        "MaximumRecordAgeInSeconds": -1,
        "DestinationConfig": {"OnFailure": {}},
    }
    report = audit_collected(tmp_path, snapshot("stream-fn", mapping=mapping))
    assert report.functions[0]["source"] == "kinesis"
    assert rules(report) == {"stream-no-bisect", "stream-infinite-retries", "stream-no-on-failure"}
    infinite = only(report, "stream-infinite-retries")
    assert infinite.severity == "high"  # and no destination keeps the records it gives up on
    assert {f.basis for f in report.findings} == {"collected"}


def test_an_invoke_config_says_nothing_about_a_stream_function(tmp_path: Path) -> None:
    # The mapping was not collected (a DynamoDB stream the lab cannot publish, say): the function's
    # missing invoke config must not read as "no on-failure destination" for its stream source.
    toml = """
        [functions.projector]
        source = "dynamodb"
        bisect_batch_on_function_error = true
        maximum_retry_attempts = 2
        """
    report = audit_collected(tmp_path, snapshot("projector"), toml=toml)
    assert report.findings == []
    assert unchecked(report) == {"stream-no-on-failure": ("on_failure",)}
