"""tracekit.jsonio: the one place JSON text is made, with UTC timestamps spelled with a Z."""

from __future__ import annotations

import datetime as dt
import decimal

from tracekit import jsonio


def test_naive_datetimes_are_utc_with_a_z() -> None:
    # The store keeps naive UTC timestamps; the text must say they are UTC.
    value = dt.datetime(2026, 11, 22, 9, 12, 3, 529000)
    assert jsonio.dumps({"t": value}) == '{"t":"2026-11-22T09:12:03.529000Z"}'


def test_sorted_keys_make_equal_records_equal_text() -> None:
    a = {"requestContext": {"requestId": "r", "condition": "Success"}, "version": "1.0"}
    b = {"version": "1.0", "requestContext": {"condition": "Success", "requestId": "r"}}
    assert jsonio.dumps(a, sort_keys=True) == jsonio.dumps(b, sort_keys=True)
    assert jsonio.dumps(a) != jsonio.dumps(b)


def test_decimals_and_bytes_serialise() -> None:
    assert jsonio.dumps([decimal.Decimal("1.25"), b"ab"]) == '[1.25,"ab"]'


def test_round_trip_keeps_unicode_and_nesting() -> None:
    value = {"message": "Traceback\u00a0\u00a0File", "list": [1, {"x": None}]}
    assert jsonio.loads(jsonio.dumpb(value)) == value
