"""`tracekit.analyze.report` and `tracekit report`: the report's figures against the lab's truth.

Expected values come from truth.json (outcomes, attempts minus throttles, timeouts, batches), from the
scenarios by hand (error messages, when events were sent), or are computed here independently of the
report's SQL (nearest-rank percentiles over the durations the `invocations` table holds).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.analyze.conftest import SCENARIOS, LabAnalysis, LabStore
from tests.conftest import CliRun
from tracekit.analyze.build import analyze
from tracekit.analyze.keys import Config, FunctionConfig
from tracekit.analyze.report import FunctionReport, Report, bucket_seconds, build_report
from tracekit.collect.ingest import ingest_paths
from tracekit.errors import TracekitError
from tracekit.lab.run import run_scenario
from tracekit.store import Store

OUTCOMES = (
    "succeeded",
    "succeeded_after_retry",
    "dead_lettered",
    "sent_to_destination",
    "dropped",
    "in_flight",
)
CAPTURE = "orders-capture"


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def visible(event: dict[str, Any]) -> list[dict[str, Any]]:
    return LabAnalysis.visible(event["attempts"])


def nearest_rank(values: list[float], share: float) -> float:
    """The smallest value that at least `share` of the values do not exceed (exact arithmetic)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(round(share * 100) * len(ordered) / 100))
    return ordered[rank - 1]


def report_of(run: LabAnalysis, config: Config | None = None, **options: Any) -> Report:
    analyze(run.store, config or Config())
    return build_report(run.store, **options)


def only(report: Report, function: str) -> FunctionReport:
    [found] = [f for f in report.functions if f.function_name == function]
    return found


def durations(store: Store, function: str) -> list[float]:
    return [
        r["duration_ms"]
        for r in store.query(
            "SELECT duration_ms FROM invocations WHERE function_name = ? AND duration_ms IS NOT NULL",
            [function],
        )
    ]


def capture_scenario(events: str, *, source: str = "", extra: str = "") -> str:
    """An async order-capture function (tests/analyze/handlers/async_orders.py) with no destinations."""
    return f"""
name = "report-capture"
start = "2026-11-22T09:00:00Z"
[function]
name = "{CAPTURE}"
handler = "{{handlers}}/async_orders.py:handler"
timeout_s = 3
concurrency = 10
[source]
type = "async"
{source}
{events}
{extra}
"""


# ---------------------------------------------------------------------------- async-retries, by hand


@pytest.fixture
def retries(lab_store: LabStore) -> LabAnalysis:
    return lab_store(SCENARIOS / "async-retries.toml", modules=())


def test_async_retries_figures_match_truth(retries: LabAnalysis) -> None:
    report = report_of(retries)
    f = only(report, "orders-notify")
    truth = retries.truth["events"]
    assert (f.sources, f.events, f.uncertain) == (["async"], 3, 0)
    assert f.outcomes == {o: sum(e["outcome"] == o for e in truth) for o in OUTCOMES}
    assert f.outcomes["dead_lettered"] == 1 and f.outcomes["dropped"] == 0
    # 4710 once; 4711 and 4712 three times each: 0 retries once, 2 retries twice.
    expected = Counter(len(visible(e)) - 1 for e in truth)
    assert expected == {0: 1, 2: 2}
    assert f.retry_distribution == [{"retries": k, "events": n} for k, n in sorted(expected.items())]
    assert f.invocations == sum(len(visible(e)) for e in truth) == 7
    assert f.timeouts == sum(a["outcome"] == "timeout" for e in truth for a in e["attempts"]) == 2
    assert f.out_of_memory == 0
    assert f.statuses == {"success": 2, "timeout": 2, "error": 3}
    [cold] = retries.store.query("SELECT count(*) AS n FROM invocations WHERE cold_start")
    assert f.cold_starts == cold["n"] > 0
    assert f.duplicates == {"events": 0, "duplicates": 0, "by_kind": {}}
    assert f.dropped == []


def test_duration_percentiles_are_nearest_rank_over_the_invocations(retries: LabAnalysis) -> None:
    f = only(report_of(retries), "orders-notify")
    values = durations(retries.store, "orders-notify")
    assert len(values) == 7
    assert f.duration_ms == {
        "p50": nearest_rank(values, 0.5),
        "p95": nearest_rank(values, 0.95),
        "p99": nearest_rank(values, 0.99),
        "max": max(values),
    }
    # Two of seven attempts time out at the 3 s limit: p95 and p99 are a timeout, p50 is not.
    assert f.duration_ms["p95"] is not None and f.duration_ms["p95"] >= 3000
    assert f.duration_ms["p50"] is not None and f.duration_ms["p50"] < 1000


def test_top_errors_name_type_message_invocations_and_events(retries: LabAnalysis) -> None:
    f = only(report_of(retries), "orders-notify")
    # By hand from the scenario and samples/handlers/orders_notify.py: order 4712 (c@invalid) fails all
    # three attempts with ValueError; order 4711 times out twice (the runtime's Sandbox.Timedout, no message).
    assert f.top_errors == [
        {
            "error_type": "ValueError",
            "error_message": "mail service rejected the address for order 4712",
            "invocations": 3,
            "events": 1,
        },
        {"error_type": "Sandbox.Timedout", "error_message": None, "invocations": 2, "events": 1},
    ]


def test_worst_events_carry_their_attempts_in_order(retries: LabAnalysis) -> None:
    f = only(report_of(retries), "orders-notify")
    truth = retries.truth_events()
    # 4710 succeeded on its only attempt: not trouble. 4711 and 4712 have three attempts each; 4711
    # spans longer (its retries follow 3 s timeouts), so it comes first.
    trouble = [e for e in truth.values() if e["outcome"] != "succeeded" or len(visible(e)) > 1]

    def lifetime(e: dict[str, Any]) -> dt.timedelta:
        return when(visible(e)[-1]["end"]) - when(visible(e)[0]["start"])

    expected = sorted(trouble, key=lambda e: (-len(visible(e)), -lifetime(e)))
    assert [w.event_id for w in f.worst_events] == [e["event_id"] for e in expected]
    for worst in f.worst_events:
        seen = visible(truth[worst.event_id])
        assert worst.outcome == truth[worst.event_id]["outcome"]
        assert worst.attempts == len(seen)
        assert [(a["attempt"], a["request_id"], a["outcome"]) for a in worst.attempt_list] == [
            (i, a["request_id"], a["outcome"]) for i, a in enumerate(seen, 1)
        ]
        assert [a["start_time"] for a in worst.attempt_list] == [when(a["start"]) for a in seen]
    assert (
        build_report(retries.store, worst=1).functions[0].worst_events[0].event_id == expected[0]["event_id"]
    )


def test_outcomes_over_time_bucket_events_by_when_they_were_first_seen(retries: LabAnalysis) -> None:
    f = only(report_of(retries), "orders-notify")
    # Sent at 0 s, 5 s and 9 s: a 9 s span fits 1 s buckets (10 of them), one event in each of three.
    over_time = f.outcomes_over_time
    assert (over_time["bucket_s"], over_time["undated"]) == (1, 0)
    expected = [
        {"start": when(e["attempts"][0]["start"]).replace(microsecond=0), "outcomes": {e["outcome"]: 1}}
        for e in sorted(retries.truth["events"], key=lambda e: e["attempts"][0]["start"])
    ]
    assert over_time["buckets"] == expected


@pytest.mark.parametrize(
    ("span_s", "width"),
    [
        (9, 1),  # 10 one-second buckets
        (600, 15),  # 10 s would give 61 buckets, 15 s gives 41
        (6 * 3600, 600),  # 5 min would give 73, 10 min 37
        (30 * 86400, 86400),  # 31 days
        (100 * 86400, 3 * 86400),  # 2 days would give 51, 3 days 34
    ],
)
def test_bucket_widths_keep_at_most_48_round_buckets(span_s: int, width: int) -> None:
    start = dt.datetime(2026, 11, 22, 0, 0, 0)
    assert bucket_seconds(start, start + dt.timedelta(seconds=span_s)) == width


# ---------------------------------------------------------------------------- dropped events


def test_dropped_events_are_listed_and_ranked_first(lab_store: LabStore) -> None:
    events = "".join(
        f"[[events]]\nat = {n}\npayload = {{ order_id = {n}{', reject = true' if n % 3 == 0 else ''} }}\n"
        for n in range(12)
    )
    run = lab_store(capture_scenario(events, source="maximum_retry_attempts = 1"), modules=())
    config = Config(functions={CAPTURE: FunctionConfig(settings={"maximum_retry_attempts": "1"})})
    f = only(report_of(run, config), CAPTURE)
    dropped = sorted(
        (e for e in run.truth["events"] if e["outcome"] == "dropped"), key=lambda e: e["attempts"][0]["start"]
    )
    # Orders 0, 3, 6, 9 are rejected on both attempts, with no destination and no DLQ.
    assert len(dropped) == 4
    assert f.outcomes["dropped"] == 4
    assert [d.event_id for d in f.dropped] == [e["event_id"] for e in dropped]
    assert all(d.attempts == 2 and d.final_error_type == "RuntimeError" for d in f.dropped)
    assert [d.final_error_message for d in f.dropped] == [
        f"payment provider rejected order {n}" for n in (0, 3, 6, 9)
    ]

    # Only the dropped events are trouble. With two attempts each, the longest from first attempt to
    # last comes first (the 60 s retry delay is the same for all; the handler's time is not).
    def lifetime(e: dict[str, Any]) -> dt.timedelta:
        return when(e["attempts"][-1]["end"]) - when(e["attempts"][0]["start"])

    assert len({lifetime(e) for e in dropped}) == 4
    assert [w.event_id for w in f.worst_events] == [
        e["event_id"] for e in sorted(dropped, key=lifetime)[::-1]
    ]
    assert f.retry_distribution == [{"retries": 0, "events": 8}, {"retries": 1, "events": 4}]
    assert [e["error_message"] for e in f.top_errors] == [
        f"payment provider rejected order {n}" for n in (0, 3, 6, 9)
    ]
    assert all((e["invocations"], e["events"]) == (2, 1) for e in f.top_errors)


# ---------------------------------------------------------------------------- SQS batches


def test_sqs_batch_failures_count_invocations_once_and_every_event_they_hit(lab_store: LabStore) -> None:
    run = lab_store(SCENARIOS / "sqs-redrive.toml", modules=())
    f = only(report_of(run), "orders-worker")
    truth = run.truth
    batches = {b["batch_id"]: b for b in truth["batches"]}

    def events_in(outcome: str) -> int:
        return sum(
            any(batches[a["batch_id"]]["outcome"] == outcome for a in visible(e) if a["batch_id"])
            for e in truth["events"]
        )

    failed = Counter(b["outcome"] for b in truth["batches"])
    assert f.invocations == len(truth["batches"])
    assert f.timeouts == failed["timeout"] == 1
    assert f.outcomes == {o: sum(e["outcome"] == o for e in truth["events"]) for o in OUTCOMES}
    # By hand: order 4720's "two" fails int() in every batch it is in; order 4731's batch times out once.
    by_type = {e["error_type"]: e for e in f.top_errors}
    assert set(by_type) == {"ValueError", "Sandbox.Timedout"}
    assert by_type["ValueError"]["error_message"] == "invalid literal for int() with base 10: 'two'"
    assert (by_type["ValueError"]["invocations"], by_type["ValueError"]["events"]) == (
        failed["error"],
        events_in("error"),
    )
    assert (by_type["Sandbox.Timedout"]["invocations"], by_type["Sandbox.Timedout"]["events"]) == (
        1,
        events_in("timeout"),
    )
    # Order 4722 is received twice without an error: one at-least-once duplicate.
    assert sum(e["duplicates"] for e in truth["events"]) == 1
    assert f.duplicates == {
        "events": 1,
        "duplicates": 1,
        "by_kind": {"at_least_once": {"events": 1, "duplicates": 1}},
    }
    assert f.retry_distribution == [
        {"retries": k, "events": n}
        for k, n in sorted(Counter(len(visible(e)) - 1 for e in truth["events"]).items())
    ]


# ---------------------------------------------------------------------------- a seeded random run

RANDOM = """
[random]
events = 3000
rate_per_s = 60
payload = { order_id = "{n}" }
faults = { error = 0.15, timeout = 0.03, throttle = 0.03, crash = 0.01, out_of_memory = 0.01 }
duplicate_rate = 0.01
"""


def test_a_random_run_of_thousands_of_events_matches_truth(lab_store: LabStore) -> None:
    run = lab_store(
        capture_scenario("", source="maximum_retry_attempts = 1", extra=RANDOM), seed=8, modules=()
    )
    config = Config(functions={CAPTURE: FunctionConfig(settings={"maximum_retry_attempts": "1"})})
    f = only(report_of(run, config), CAPTURE)
    # An event throttled until it expired leaves nothing in the logs: not an event of the analysis.
    truth = [e for e in run.truth["events"] if visible(e)]
    assert len(truth) > 2900
    attempts = [a for e in truth for a in visible(e)]
    assert f.events == len(truth)
    assert f.outcomes == {o: sum(e["outcome"] == o for e in truth) for o in OUTCOMES}
    assert f.outcomes["dropped"] > 10
    assert f.retry_distribution == [
        {"retries": k, "events": n} for k, n in sorted(Counter(len(visible(e)) - 1 for e in truth).items())
    ]
    assert f.invocations == len(attempts)
    assert f.timeouts == sum(a["outcome"] == "timeout" for a in attempts)
    assert f.out_of_memory == sum(a["outcome"] == "out_of_memory" for a in attempts) > 0
    assert f.duplicates["duplicates"] == sum(e["duplicates"] for e in truth) > 0
    assert f.duplicates["events"] == sum(e["duplicates"] > 0 for e in truth)
    values = durations(run.store, CAPTURE)
    assert len(values) == len(attempts)
    assert [f.duration_ms[p] for p in ("p50", "p95", "p99")] == [
        nearest_rank(values, share) for share in (0.5, 0.95, 0.99)
    ]
    # Dropped first, oldest first among those listed; at most 10 worst, 50 dropped listed.
    dropped = sorted(
        (e for e in truth if e["outcome"] == "dropped"), key=lambda e: (visible(e)[0]["start"], e["event_id"])
    )
    assert [d.event_id for d in f.dropped] == [e["event_id"] for e in dropped[:50]]
    assert len(f.worst_events) == 10
    assert all(w.outcome == "dropped" for w in f.worst_events)
    buckets = f.outcomes_over_time["buckets"]
    assert sum(sum(b["outcomes"].values()) for b in buckets) == len(truth)
    assert len(buckets) <= 48


# ---------------------------------------------------------------------------- several functions, filters


def ingest_run(store: Store, scenario: Path, out: Path, seed: int, function: str) -> dict[str, Any]:
    run_scenario(scenario, out, seed=seed)
    inputs = [out / d for d in ("logs", "destinations", "dlq") if (out / d).is_dir()]
    ingest_paths(store, inputs, log_group=f"/aws/lambda/{function}")
    truth: dict[str, Any] = json.loads((out / "truth.json").read_text())
    return truth


@pytest.fixture
def two_functions(tmp_path: Path) -> Path:
    """A store holding async-retries (orders-notify, seed 1) and sqs-redrive (orders-worker, seed 2)."""
    root = tmp_path / "store"
    with Store.open(root, create=True) as store:
        ingest_run(store, SCENARIOS / "async-retries.toml", tmp_path / "a", 1, "orders-notify")
        ingest_run(store, SCENARIOS / "sqs-redrive.toml", tmp_path / "b", 2, "orders-worker")
    return root


def test_a_report_has_one_section_per_function_and_filters_by_function(two_functions: Path) -> None:
    with Store.open(two_functions) as store:
        analyze(store, Config())
        every = build_report(store)
        one = build_report(store, function="orders-worker")
        with pytest.raises(TracekitError, match="no events or invocations of this function"):
            build_report(store, function="orders-nothing")
    assert [f.function_name for f in every.functions] == ["orders-notify", "orders-worker"]
    assert every.generation == 1 and every.function is None
    assert [f.function_name for f in one.functions] == ["orders-worker"]
    assert one.functions[0] == every.functions[1]
    assert only(every, "orders-notify").events == 3


def test_an_empty_store_reports_no_functions(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store", create=True) as store:
        analyze(store, Config())
        assert build_report(store).functions == []


# ---------------------------------------------------------------------------- the command


def test_report_command_rebuilds_a_stale_analysis_and_prints_json(
    tracekit_cli: CliRun, two_functions: Path
) -> None:
    done = tracekit_cli("report", "--store", two_functions, "-f", "json")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "Analysis out of date (no analysis yet); rebuilding it."
    data = json.loads(done.stdout)
    assert [f["function_name"] for f in data["functions"]] == ["orders-notify", "orders-worker"]
    notify = data["functions"][0]
    assert notify["outcomes"] == {
        "succeeded": 1,
        "succeeded_after_retry": 1,
        "dead_lettered": 1,
        "sent_to_destination": 0,
        "dropped": 0,
        "in_flight": 0,
    }
    worst = notify["worst_events"]
    assert [len(w["attempts_detail"]) for w in worst] == [3, 3]
    assert worst[0]["attempts_detail"][0]["start_time"].endswith("Z")
    again = tracekit_cli("report", "--store", two_functions, "-f", "json", "--function", "orders-notify")
    assert again.stderr == ""
    assert json.loads(again.stdout)["functions"] == [notify]


def test_report_command_text_and_files(tracekit_cli: CliRun, two_functions: Path, tmp_path: Path) -> None:
    text = tracekit_cli("report", "--store", two_functions)
    assert text.returncode == 0, text.stderr
    for expected in (
        "orders-notify · async",
        "orders-worker · sqs",
        "Outcomes",
        "Top errors",
        "Worst events",
    ):
        assert expected in text.stdout
    assert "mail service rejected the address for order 4712" in text.stdout
    target = tmp_path / "out" / "report.txt"
    target.parent.mkdir()
    written = tracekit_cli("report", "--store", two_functions, "-o", target)
    assert written.returncode == 0, written.stderr
    assert written.stdout == ""
    body = target.read_text()
    assert written.stderr.strip() == f"Wrote {target} ({len(body.encode()):,} bytes, 2 function(s))"
    assert "\x1b[" not in body and "orders-worker · sqs" in body
    assert [p.name for p in target.parent.iterdir()] == ["report.txt"]
    page = tracekit_cli("report", "--store", two_functions, "-f", "html")
    assert page.stdout.startswith("<!DOCTYPE html>") and page.stdout.rstrip().endswith("</html>")


def test_report_command_errors_are_one_line(
    tracekit_cli: CliRun, two_functions: Path, tmp_path: Path
) -> None:
    for args, message in (
        (("--function", "orders-nothing"), "Error: no events or invocations of this function in the store: "),
        (("-o", tmp_path / "missing" / "r.html"), f"Error: cannot write the report: {tmp_path / 'missing'}"),
    ):
        done = tracekit_cli("report", "--store", two_functions, *args)
        assert done.returncode == 2, done.stdout
        lines = [
            line for line in done.stderr.splitlines() if line.strip() and not line.startswith("Analysis")
        ]
        assert len(lines) == 1 and lines[0].startswith(message), done.stderr
