"""Chaos experiments in the lab: the sample consumers' verdicts, inconclusive cases, static checks, probes.

Every expected verdict and value is worked out by hand from the handler's code and the faults: the
idempotent consumer writes an order once, the counter adds 1 (and the quantity) per successful
delivery, and each lab phase starts from empty state.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tracekit.chaos.experiment import ExperimentError, load_experiment
from tracekit.chaos.lab_target import Delivery
from tracekit.chaos.probes import ProbeContext, ProbeError, fill, read_probe
from tracekit.chaos.run import ChaosReport, run_experiment
from tracekit.chaos.verdict import Reading, judge
from tracekit.replay.faults import FaultError, parse_faults, schedule
from tracekit.replay.model import Entry, Source, SourceKind, Target, TargetType

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples" / "handlers"
HERE = Path(__file__).parent / "handlers"
ORDERS = [(4716, "SKU-1042", 2), (4717, "SKU-2001", 1), (4718, "SKU-3310", 5)]


def write_experiment(
    tmp_path: Path,
    handler: Path,
    faults: list[str],
    *,
    events: str | None = None,
    probes: str | None = None,
    extra: str = "",
    source: str = "sqs",
) -> Path:
    """An experiment over ORDERS (or `events`) with a JSON-file probe on the order's record."""
    events = events or "".join(
        f'[[events]]\nid = "order-{o}"\npayload = {{ orderId = {o}, sku = "{s}", quantity = {q} }}\n\n'
        for o, s, q in ORDERS
    )
    probes = probes or (
        '[[probes]]\nname = "order-record"\ntype = "json_file"\npath = "{state_dir}/orders.json"\n'
        "select = '$.orders[\"{orderId}\"]'\n"
    )
    toml_faults = "[" + ", ".join(f'"{f}"' for f in faults) + "]"
    text = (
        f'name = "t"\ntarget = "lab"\nfaults = {toml_faults}\nseed = 1\nkey = "$.orderId"\n{extra}\n'
        f'[lab]\nhandler = "{handler}:handler"\nsource = "{source}"\n'
        'environment = { ORDERS_STATE = "{state_dir}/orders.json" }\n\n'
        f"{events}{probes}"
    )
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    return path


def run(tmp_path: Path, handler: Path, faults: list[str], **kw: Any) -> ChaosReport:
    return run_experiment(write_experiment(tmp_path, handler, faults, **kw), workdir=tmp_path / "work")


def verdicts(report: ChaosReport) -> dict[str, str]:
    return {e.event_id: e.verdict for e in report.events}


# ------------------------------------------------------------------------ the two sample consumers


def test_idempotent_consumer_under_duplicate_2(tmp_path: Path) -> None:
    report = run(tmp_path, SAMPLES / "orders_idempotent.py", ["duplicate=2"])
    assert verdicts(report) == dict.fromkeys(("order-4716", "order-4717", "order-4718"), "idempotent")
    assert [(e.delivered, e.succeeded) for e in report.events] == [(3, 3)] * 3
    assert report.phases["faulted"]["copies"] == 9 and report.phases["clean"]["copies"] == 3
    assert report.checks == []


def test_counter_under_duplicate_2_is_not_idempotent_and_shows_the_difference(tmp_path: Path) -> None:
    report = run(tmp_path, SAMPLES / "orders_counter.py", ["duplicate=2"])
    assert set(verdicts(report).values()) == {"not_idempotent"}
    by_id = {e.event_id: e for e in report.events}
    for order, _, quantity in ORDERS:
        (difference,) = by_id[f"order-{order}"].differences
        assert difference == {
            "probe": "order-record",
            "before": {"deliveries": 1, "reserved": quantity},
            "after": {"deliveries": 3, "reserved": 3 * quantity},
        }


@pytest.mark.parametrize("handler", ["orders_idempotent.py", "orders_counter.py"])
def test_reorder_alone_changes_no_count(tmp_path: Path, handler: str) -> None:
    """reorder=3 shuffles the three orders' single copies: no extra delivery, so even the counter's
    effect (1 delivery per order) is what one clean delivery leaves."""
    report = run(tmp_path, SAMPLES / handler, ["reorder=3"])
    assert set(verdicts(report).values()) == {"idempotent"}
    assert all(e.delivered == 1 for e in report.events)
    assert all("no duplicate was tested" in e.reason for e in report.events)
    # The seed really moved copies (the schedule marks the copies the reorder moved).
    assert any("reorder=3" in e.faults for e in report.events)


def test_reorder_changes_an_order_sensitive_consumer(tmp_path: Path) -> None:
    """A consumer that keeps the last order per customer: after a reorder the last one is whichever
    copy the schedule now sends last, which `schedule` itself tells us."""
    events = "".join(
        f'[[events]]\nid = "o{n}"\npayload = {{ orderId = {n}, customer = "c1" }}\n\n' for n in (1, 2, 3)
    )
    probes = (
        '[[probes]]\nname = "last-order"\ntype = "callable"\n'
        f'function = "{HERE / "orders_last_writer.py"}:probe_customer"\n'
    )
    path = write_experiment(
        tmp_path, HERE / "orders_last_writer.py", ["reorder=3"], events=events, probes=probes
    )
    report = run_experiment(path, workdir=tmp_path / "work")
    entries = [_entry(f"o{n}") for n in (1, 2, 3)]
    last = int(schedule(entries, parse_faults(["reorder=3"]), seed=1)[-1].entry_id[1:])
    expected = "idempotent" if last == 3 else "not_idempotent"
    assert set(verdicts(report).values()) == {expected}
    if expected == "not_idempotent":
        assert report.events[0].differences[0]["before"] == 3
        assert report.events[0].differences[0]["after"] == last


def test_async_source_delivers_the_payload(tmp_path: Path) -> None:
    report = run(tmp_path, SAMPLES / "orders_counter.py", ["duplicate=1"], source="async")
    assert set(verdicts(report).values()) == {"not_idempotent"}
    assert report.events[1].differences[0]["after"] == {"deliveries": 2, "reserved": 2}


def test_poison_copy_fails_but_the_good_copy_decides(tmp_path: Path) -> None:
    """corrupt=quantity adds a copy whose quantity is an object: int() raises before the counter saves."""
    report = run(tmp_path, SAMPLES / "orders_counter.py", ["corrupt=quantity"])
    assert set(verdicts(report).values()) == {"idempotent"}
    assert [(e.delivered, e.succeeded) for e in report.events] == [(2, 1)] * 3
    assert report.phases["faulted"]["failed"] == 3


def test_throttled_copies_are_retried_and_delivered(tmp_path: Path) -> None:
    report = run(tmp_path, SAMPLES / "orders_counter.py", ["throttle=1", "duplicate=1"])
    assert [(e.delivered, e.succeeded) for e in report.events] == [(2, 2)] * 3
    assert set(verdicts(report).values()) == {"not_idempotent"}


# ------------------------------------------------------------------------------------ inconclusive


def test_every_copy_dropped_is_inconclusive(tmp_path: Path) -> None:
    report = run(tmp_path, SAMPLES / "orders_counter.py", ["drop=1"])
    assert set(verdicts(report).values()) == {"inconclusive"}
    assert all(e.reason == "the faults dropped every copy" for e in report.events)


def test_probe_that_finds_nothing_is_inconclusive(tmp_path: Path) -> None:
    probes = (
        '[[probes]]\nname = "wrong"\ntype = "json_file"\npath = "{state_dir}/orders.json"\n'
        "select = '$.orders[\"x{orderId}\"]'\n"
    )
    report = run(tmp_path, SAMPLES / "orders_idempotent.py", ["duplicate=2"], probes=probes)
    assert all(
        e.reason == "the probes found nothing for the event after the clean run" for e in report.events
    )
    assert set(verdicts(report).values()) == {"inconclusive"}


def test_failing_clean_delivery_is_inconclusive(tmp_path: Path) -> None:
    events = '[[events]]\nid = "bad"\npayload = { orderId = 1, sku = "S" }\n\n'
    report = run(tmp_path, SAMPLES / "orders_idempotent.py", ["duplicate=2"], events=events)
    (event,) = report.events
    assert event.verdict == "inconclusive"
    assert event.reason == "the clean delivery failed (KeyError: 'quantity')"


def test_handler_failing_every_faulted_copy_is_inconclusive() -> None:
    ok = Delivery("e", 0, [], outcome="success")
    failed = [Delivery("e", n, ["duplicate=1"], outcome="error", error="Boom: no") for n in (0, 1)]
    reading = {"p": Reading({"n": 1})}
    verdict = judge("e", None, [ok], failed, reading, reading)
    assert (verdict.verdict, verdict.reason) == (
        "inconclusive",
        "the handler failed on every copy (Boom: no)",
    )


def test_probe_failure_is_inconclusive_with_its_reason() -> None:
    ok = [Delivery("e", 0, [], outcome="success")]
    verdict = judge("e", None, ok, ok, {"p": Reading(1)}, {"p": Reading(error="disk on fire")})
    assert verdict.verdict == "inconclusive"
    assert verdict.reason == "probe p failed after the faulted run: disk on fire"


# ----------------------------------------------------------------------------------- static checks


def test_message_id_keyed_consumer_is_caught_from_what_it_recorded(tmp_path: Path) -> None:
    """It keeps the messageIds it saw per order: a replayed copy has a new one, so the list grows."""
    report = run(tmp_path, HERE / "orders_by_message_id.py", ["duplicate=2"])
    assert set(verdicts(report).values()) == {"not_idempotent"}
    assert [len(d["after"]) for e in report.events for d in e.differences] == [3, 3, 3]
    (finding,) = report.checks
    assert (finding.check, finding.basis) == ("message-id-key", "observed")
    assert finding.events == ["order-4716", "order-4717", "order-4718"]


@pytest.mark.parametrize(
    ("key", "check"),
    [
        ("messageId", "message-id-key"),
        ("$.Records[0].messageId", "message-id-key"),
        ("$.Records[0].attributes.SentTimestamp", "envelope-timestamp-key"),
        ("orderId + requestContext.timeEpoch", "envelope-timestamp-key"),
    ],
)
def test_idempotency_key_setting_fires_its_check(tmp_path: Path, key: str, check: str) -> None:
    report = run(tmp_path, SAMPLES / "orders_idempotent.py", [], extra=f'idempotency_key = "{key}"')
    assert [(f.check, f.basis) for f in report.checks] == [(check, "experiment")]


def test_dedup_window_shorter_than_event_age(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    old, fresh = (now - dt.timedelta(days=2)).isoformat(), (now - dt.timedelta(minutes=10)).isoformat()
    events = "".join(
        f'[[events]]\nid = "{name}"\nsent_at = "{at}"\n'
        f'payload = {{ orderId = {n}, sku = "S", quantity = 1 }}\n\n'
        for n, (name, at) in enumerate((("old", old), ("new", fresh)))
    )
    report = run(tmp_path, SAMPLES / "orders_idempotent.py", [], events=events, extra="dedup_window_s = 3600")
    (finding,) = report.checks
    assert (finding.check, finding.events) == ("dedup-window", ["old"])
    assert "oldest 2.0 d" in finding.message
    quiet = run(
        tmp_path, SAMPLES / "orders_idempotent.py", [], events=events, extra="dedup_window_s = 259200"
    )
    assert quiet.checks == []


def test_shipped_experiment_is_clean(tmp_path: Path) -> None:
    report = run_experiment(REPO / "replays/experiments/orders-duplicates.toml", workdir=tmp_path)
    assert report.checks == []
    assert report.counts == {"idempotent": 3, "not_idempotent": 0, "inconclusive": 0}


# ------------------------------------------------------------------------------ probes and errors


def test_probe_templates_fill_from_the_payload() -> None:
    filled = fill({"k": ["ORDER#{order.id}", "{event_id}"]}, "e1", {"order": {"id": 7}}, None)
    assert filled == {"k": ["ORDER#7", "e1"]}
    with pytest.raises(ProbeError, match=r"payload lacks.*\{missing\}"):
        fill("{missing}", "e1", {}, None)


def test_sqlite_and_sql_probes(tmp_path: Path) -> None:
    from tracekit.chaos.experiment import ProbeSpec

    db = tmp_path / "state.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE orders (id INTEGER, n INTEGER)")
    con.execute("INSERT INTO orders VALUES (4716, 2)")
    con.commit()
    con.close()
    ctx = ProbeContext(base=tmp_path)
    spec = ProbeSpec(
        "rows",
        "sqlite",
        {"path": "state.sqlite", "query": "SELECT n FROM orders WHERE id = ?", "params": ["{orderId}"]},
    )
    assert read_probe(spec, ctx, "e", {"orderId": 4716}) == [[2]]
    assert read_probe(spec, ctx, "e", {"orderId": 1}) is None
    sql = ProbeSpec("store", "sql", {"query": "SELECT 1"})
    with pytest.raises(ProbeError, match="no --store"):
        read_probe(sql, ctx, "e", {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('target = "lab"\n[lab]\nhandler = "x.py:handler"\n', "no \\[\\[probes\\]\\]"),
        ('target = "moon"\n', "target must be one of lab, aws, not 'moon'"),
        ("faults = 3\n", "faults must be a list"),
        ("= broken", "not valid TOML"),
    ],
)
def test_bad_experiment_files_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ExperimentError, match=message) as info:
        load_experiment(path)
    assert "\n" not in info.value.line() and str(path) in info.value.line()


def test_bad_fault_spec_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(FaultError, match="unknown fault 'explode=1'"):
        run(tmp_path, SAMPLES / "orders_idempotent.py", ["explode=1"])


def _entry(entry_id: str) -> Entry:
    return Entry(
        entry_id=entry_id,
        event_id=entry_id,
        function_name="f",
        source=Source(SourceKind.DEAD_LETTER, entry_id),
        target=Target(TargetType.SQS, url="https://sqs/q"),
        payload="{}",
    )
