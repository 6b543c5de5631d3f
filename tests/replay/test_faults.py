"""Fault specs: parsing (one clear line per bad spec), and what each fault does to the send schedule."""

from __future__ import annotations

import json

import pytest

from tracekit.replay.faults import (
    Burst,
    Corrupt,
    Delay,
    Drop,
    Duplicate,
    FaultError,
    Reorder,
    Throttle,
    corrupt,
    parse_fault,
    parse_faults,
    schedule,
)
from tracekit.replay.model import Entry, Source, SourceKind, Target, TargetType


def entries(n: int, groups: list[str] | None = None) -> list[Entry]:
    return [
        Entry(
            entry_id=f"e{i}",
            event_id=f"ev{i}",
            function_name="orders",
            source=Source(SourceKind.DEAD_LETTER, id=f"m{i}"),
            target=Target(TargetType.SQS, url="http://q/orders.fifo"),
            payload="{}",
            message_group_id=groups[i] if groups else None,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("duplicate=2", Duplicate(count=2)),
        ("duplicate=2@500ms", Duplicate(count=2, spacing_ms=500)),
        ("duplicate=1@2s", Duplicate(count=1, spacing_ms=2000)),
        ("delay=200", Delay(delay_ms=200)),
        ("delay=200ms±50ms", Delay(delay_ms=200, jitter_ms=50)),
        ("delay=1s+-100", Delay(delay_ms=1000, jitter_ms=100)),
        ("reorder=10", Reorder(window=10)),
        ("reorder=FIFO", Reorder(fifo=True)),
        ("burst=100", Burst(count=100)),
        ("corrupt=order.amount", Corrupt(field="order.amount")),
        ("drop=0.1", Drop(probability=0.1)),
        (" throttle = 1 ", Throttle(probability=1.0)),
    ],
)
def test_parse_fault(text: str, spec: object) -> None:
    assert parse_fault(text) == spec


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("duplicate=x", "bad fault 'duplicate=x': N must be a whole number ≥ 1. e.g. duplicate=2"),
        ("duplicate=0", "bad fault 'duplicate=0': N must be a whole number ≥ 1. e.g. duplicate=2"),
        (
            "duplicate=2@soon",
            "bad fault 'duplicate=2@soon': SPACING must be a duration like 500ms or 2s. e.g. duplicate=2",
        ),
        ("delay=-5", "bad fault 'delay=-5': MS must be a duration like 500ms or 2s. e.g. delay=200ms±50ms"),
        ("reorder=1", "bad fault 'reorder=1': WINDOW must be at least 2 (or fifo). e.g. reorder=10"),
        ("drop=1.5", "bad fault 'drop=1.5': P must be a probability from 0 to 1. e.g. drop=0.1"),
        (
            "throttle=lots",
            "bad fault 'throttle=lots': P must be a probability from 0 to 1. e.g. throttle=0.2",
        ),
        ("corrupt=", "bad fault 'corrupt=': it needs a value. e.g. corrupt=order.amount"),
        ("burst", "bad fault 'burst': it needs a value. e.g. burst=100"),
        (
            "dup=2",
            "unknown fault 'dup=2': use one of duplicate, delay, reorder, burst, corrupt, drop, throttle. "
            "e.g. duplicate=2",
        ),
    ],
)
def test_bad_fault_is_one_clear_line(text: str, line: str) -> None:
    with pytest.raises(FaultError) as caught:
        parse_fault(text)
    assert str(caught.value) == line


def test_spec_text_round_trips() -> None:
    for text in [
        "duplicate=2@500ms",
        "delay=200ms±50ms",
        "reorder=fifo",
        "reorder=4",
        "burst=3",
        "drop=0.25",
    ]:
        assert parse_fault(parse_fault(text).text) == parse_fault(text)


def test_no_faults_one_copy_per_entry_in_plan_order() -> None:
    copies = schedule(entries(4), [])
    assert [c.key for c in copies] == ["e0#0", "e1#0", "e2#0", "e3#0"]
    assert all(c.faults == [] and c.delay_ms == 0 and not (c.drop or c.burst or c.throttle) for c in copies)


def test_duplicate_adds_spaced_copies_after_each_original() -> None:
    copies = schedule(entries(2), parse_faults(["duplicate=2@500ms"]))
    assert [c.key for c in copies] == ["e0#0", "e0#1", "e0#2", "e1#0", "e1#1", "e1#2"]
    assert [c.delay_ms for c in copies] == [0, 500, 500, 0, 500, 500]
    assert all(c.faults == ["duplicate=2@500ms"] for c in copies)


def test_corrupt_adds_a_poison_copy_after_the_good_ones() -> None:
    copies = schedule(entries(2), parse_faults(["corrupt=amount", "duplicate=1"]))
    assert [(c.key, c.corrupt_field) for c in copies] == [
        ("e0#0", None),
        ("e0#1", None),
        ("e0#2", "amount"),
        ("e1#0", None),
        ("e1#1", None),
        ("e1#2", "amount"),
    ]
    assert copies[2].faults == ["corrupt=amount"]


def test_reorder_shuffles_within_windows_deterministically() -> None:
    faults = parse_faults(["reorder=4"])
    first = [c.key for c in schedule(entries(12), faults, seed=7)]
    assert first == [c.key for c in schedule(entries(12), faults, seed=7)]
    for start in range(0, 12, 4):  # each window holds the same copies as before
        assert sorted(first[start : start + 4]) == sorted(f"e{i}#0" for i in range(start, start + 4))
    others = {tuple(c.key for c in schedule(entries(12), faults, seed=s)) for s in range(5)}
    assert len(others) > 1  # the seed matters
    moved = [c for c in schedule(entries(12), faults, seed=7) if c.faults]
    assert all(c.faults == ["reorder=4"] for c in moved) and moved


def test_reorder_fifo_inverts_each_group_in_its_own_positions() -> None:
    copies = schedule(entries(6, groups=["a", "b", "a", "a", "b", "c"]), parse_faults(["reorder=fifo"]))
    # a held positions 0, 2, 3 (e0, e2, e3), b positions 1, 4 (e1, e4), c position 5 alone.
    assert [c.key for c in copies] == ["e3#0", "e4#0", "e2#0", "e0#0", "e1#0", "e5#0"]
    assert [bool(c.faults) for c in copies] == [True, True, False, True, True, False]


def test_delay_jitter_stays_in_range_and_is_seeded() -> None:
    copies = schedule(entries(50), parse_faults(["delay=100ms±20ms"]), seed=3)
    delays = [c.delay_ms for c in copies]
    assert all(80 <= d <= 120 for d in delays) and len(set(delays)) > 5
    assert delays == [c.delay_ms for c in schedule(entries(50), parse_faults(["delay=100±20"]), seed=3)]


def test_burst_marks_the_first_n_copies() -> None:
    copies = schedule(entries(5), parse_faults(["burst=3"]))
    assert [c.burst for c in copies] == [True, True, True, False, False]


def test_drop_and_throttle_pick_about_p_independently() -> None:
    alone = schedule(entries(1000), parse_faults(["drop=0.3"]), seed=1)
    dropped = {c.key for c in alone if c.drop}
    assert 240 <= len(dropped) <= 360
    both = schedule(entries(1000), parse_faults(["throttle=0.5", "drop=0.3"]), seed=1)
    assert {c.key for c in both if c.drop} == dropped  # another fault does not change drop's picks
    throttled = [c for c in both if c.throttle]
    assert 420 <= len(throttled) <= 580 and all("throttle=0.5" in c.faults for c in throttled)
    assert not any(c.drop for c in schedule(entries(100), parse_faults(["drop=0"])))
    assert all(c.drop for c in schedule(entries(100), parse_faults(["drop=1"])))


def test_corrupt_mangles_the_field_to_a_wrong_type() -> None:
    payload = '{"order": {"amount": 12.5, "items": [1, 2]}, "id": "o-1"}'
    assert json.loads(corrupt(payload, "order.amount")) == {
        "order": {"amount": {"tracekit-corrupted": 12.5}, "items": [1, 2]},
        "id": "o-1",
    }
    assert json.loads(corrupt(payload, "order.items"))["order"]["items"] == "tracekit-corrupted"


@pytest.mark.parametrize(
    ("payload", "line"),
    [
        ('{"id": 1}', "cannot apply corrupt=order.amount: the payload has no field order.amount"),
        ("[1, 2]", "cannot apply corrupt=order.amount: the payload is not a JSON object"),
        ("plain text", "cannot apply corrupt=order.amount: the payload is not a JSON object"),
    ],
)
def test_corrupt_refuses_what_it_cannot_mangle(payload: str, line: str) -> None:
    with pytest.raises(FaultError) as caught:
        corrupt(payload, "order.amount")
    assert str(caught.value) == line
