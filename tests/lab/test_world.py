"""The lab's clock arithmetic: truth times must equal the timestamps of the log events they describe."""

from __future__ import annotations

from tracekit.lab.world import Clock, iso_ms


def test_iso_ms_truncates_to_the_millisecond_as_log_timestamps_do() -> None:
    # 1795384044430.9995 ms: float division by 1000 rounds up to ...44.431 s; the log event's
    # timestamp is int(ms): 46,044,430 ms after 09:00:00.000, i.e. 21:47:24.430.
    assert iso_ms(1795384044430.9995) == "2026-11-22T21:47:24.430Z"
    assert iso_ms(1795338000000) == "2026-11-22T09:00:00.000Z"
    assert iso_ms(1795338000999.9) == "2026-11-22T09:00:00.999Z"


def test_clock_runs_actions_in_time_order_and_stops_at_until() -> None:
    clock = Clock(1000)
    seen: list[tuple[str, float]] = []
    clock.at(3000, lambda: seen.append(("c", clock.now)))
    clock.at(2000, lambda: seen.append(("b", clock.now)))
    clock.at(2000, lambda: seen.append(("b2", clock.now)))  # same time: in scheduling order
    clock.at(9000, lambda: seen.append(("late", clock.now)))
    clock.run(until_ms=5000)
    assert seen == [("b", 2000), ("b2", 2000), ("c", 3000)]
    assert clock.now == 5000
