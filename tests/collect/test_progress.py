"""The progress line: shown only after a delay, even while one long step is still running."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from tracekit.collect import progress
from tracekit.collect.progress import Meter


def wait_until_shown(meter: Meter, limit_s: float = 10.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if meter._progress is not None:
            return True
        time.sleep(0.01)
    return False


def test_the_line_appears_during_a_long_step_without_any_advance(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.05)
    with Meter("big.ndjson (1 of 1)", "files", pages=False) as meter:
        # Nothing calls advance() while one big file is read: the timer alone must show the line.
        assert wait_until_shown(meter)
    err = capsys.readouterr().err
    assert "big.ndjson (1 of 1)" in err
    assert "0 files" in err
    assert "pages" not in err


def test_a_quick_command_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with Meter("quick", "files") as meter:
        meter.note("quick (1 of 1)")
        meter.advance(items=1)
    assert capsys.readouterr().err == ""


def test_a_disabled_meter_counts_but_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.0)
    with Meter("quiet", "messages", enabled=False) as meter:
        meter.advance(items=10, pages=1)
        time.sleep(0.05)
        assert meter._progress is None
    assert (meter.items, meter.pages) == (10, 1)


@pytest.mark.parametrize(
    ("unit", "done", "pages", "expected"),
    [
        ("files", 1, None, "1 file, "),
        ("files", 2, None, "2 files, "),
        ("events", 1, 1, "1 event, 1 page, "),
        ("events", 12_500, 3, "12,500 events, 3 pages, "),
    ],
)
def test_counts_read_as_english(unit: str, done: int, pages: int | None, expected: str) -> None:
    column = progress._Counts(unit, pages is not None)
    task = SimpleNamespace(completed=done, elapsed=None, fields={"pages": pages or 0})
    assert str(column.render(task)).startswith(expected)  # type: ignore[arg-type]
