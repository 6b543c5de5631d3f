"""The orjson facade: one place that turns JSON text into Python and back."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import orjson


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.isoformat(timespec="milliseconds") + "Z"
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot serialise {type(value).__name__}")


# Timestamps in the store are naive UTC: say so in the text.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


def loads(text: str | bytes) -> Any:
    """Parse JSON text; raises ValueError (orjson.JSONDecodeError) on bad input."""
    return orjson.loads(text)


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Serialise to compact JSON text; datetimes become ISO-8601 UTC with a Z."""
    return dumpb(value, sort_keys=sort_keys).decode()


def dumpb(value: Any, *, sort_keys: bool = False, indent: bool = False) -> bytes:
    """Like dumps, as bytes; `indent` writes two-space indented JSON for files people read and diff."""
    option = _OPTIONS | (orjson.OPT_SORT_KEYS if sort_keys else 0) | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, default=_default, option=option)
