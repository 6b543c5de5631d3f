"""What all live collectors share: time conversion and the report."""

from __future__ import annotations

import datetime as dt

from tracekit.collect.live import CollectReport, to_ms


def test_naive_times_are_utc_whatever_the_local_zone(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TZ", "America/New_York")
    import time

    time.tzset()
    try:
        assert to_ms(dt.datetime(1970, 1, 1, 0, 0, 1)) == 1000
        assert to_ms(dt.datetime(1970, 1, 1, 1, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == 1000
        assert to_ms(None) is None
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_merged_reports_add_rows_calls_and_warnings() -> None:
    first, second = CollectReport(), CollectReport()
    first.counts["log_events"] = 3
    first.call("FilterLogEvents", 2)
    second.counts["log_events"] = 4
    second.counts["dead_letters"] = 1
    second.call("FilterLogEvents")
    second.call("ReceiveMessage", 5)
    second.warnings.append("held")
    second.resources.append("queue q")
    first.merge(second)
    assert first.counts["log_events"] == 7 and first.counts["dead_letters"] == 1
    assert first.calls == {"FilterLogEvents": 3, "ReceiveMessage": 5}
    assert first.warnings == ["held"] and first.resources == ["queue q"]
