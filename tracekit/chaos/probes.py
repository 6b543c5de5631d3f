"""Probes: read the consumer's effect for one event, as a JSON value that two phases can compare.

A probe is read once per event after each phase. Its settings are templates: `{orderId}` (or a dotted
`{order.id}`) takes the value from the event's payload, `{event_id}` is the event, and `{state_dir}`
the lab phase's state directory. Kinds: `callable` (`module:function` or `file.py:function`, called
with a ProbeEvent), `json_file` (a value in a JSON file), `sqlite` and `sql` (rows of a query over a
SQLite file or tracekit's store), `dynamodb` (GetItem by key, or a Query), `s3` (keys and ETags, or
bodies, under a prefix) and `sqs` (the bodies on an output queue that contain a text; read without
consuming them: received, then made visible again at once).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracekit import jsonio
from tracekit.analyze.keys import ConfigError, parse_path
from tracekit.chaos.experiment import ExperimentError, ProbeSpec
from tracekit.errors import TracekitError, first_line

_FIELD = re.compile(r"\{([A-Za-z_][\w.-]*)\}")
MISSING = None  # what a probe reads when the consumer left nothing for the event


class ProbeError(TracekitError):
    """A probe could not read the consumer's effect."""


@dataclass(frozen=True)
class ProbeEvent:
    """What a callable probe is given: the event, its payload and where the phase keeps state."""

    event_id: str
    payload: Any
    state_dir: Path | None
    environment: dict[str, str] = field(default_factory=dict)


@dataclass
class ProbeContext:
    """What probes need besides the event: the experiment's folder, the store, AWS, the state dir."""

    base: Path
    state_dir: Path | None = None
    store: Path | None = None
    aws: Any = None  # tracekit.aws.Aws for dynamodb / s3 / sqs probes
    environment: dict[str, str] = field(default_factory=dict)
    _snapshots: dict[str, list[str]] = field(default_factory=dict)


def fill(template: Any, event_id: str, payload: Any, state_dir: Path | None) -> Any:
    """The template with every `{name}` replaced from the payload (recursively through tables and lists).

    Raises:
        ProbeError: a `{name}` the payload does not have.
    """
    if isinstance(template, dict):
        return {k: fill(v, event_id, payload, state_dir) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, event_id, payload, state_dir) for v in template]
    if not isinstance(template, str):
        return template
    fields = {"event_id": event_id, "state_dir": str(state_dir) if state_dir else ""}
    return _FIELD.sub(lambda m: _field(m.group(1), fields, payload, template), template)


def _field(name: str, fields: dict[str, str], payload: Any, template: str) -> str:
    if name in fields:
        return fields[name]
    value = payload
    for step in name.split("."):
        if not isinstance(value, dict) or step not in value:
            raise ProbeError(
                "a probe template names a field the event's payload lacks", f"{{{name}}} in {template!r}"
            )
        value = value[step]
    return value if isinstance(value, str) else jsonio.dumps(value)


def read_probe(spec: ProbeSpec, ctx: ProbeContext, event_id: str, payload: Any) -> Any:
    """The probe's value for one event (None when the consumer left nothing for it)."""
    options = fill(spec.options, event_id, payload, ctx.state_dir)
    try:
        return _READERS[spec.type](
            spec, options, ctx, ProbeEvent(event_id, payload, ctx.state_dir, ctx.environment)
        )
    except TracekitError:
        raise
    except KeyError as exc:
        raise ProbeError(f"probe {spec.name!r} lacks a setting", str(exc.args[0])) from None
    except Exception as exc:  # noqa: BLE001 - a probe's own failure is reported as one line
        raise ProbeError(f"probe {spec.name!r} failed", f"{type(exc).__name__}: {first_line(exc)}") from None


def _callable(spec: ProbeSpec, options: dict[str, Any], ctx: ProbeContext, event: ProbeEvent) -> Any:
    return load_callable(str(options["function"]), ctx.base)(event)


def load_callable(text: str, base: Path) -> Callable[[ProbeEvent], Any]:
    """`package.module:function`, or `path/to/file.py:function` relative to `base`."""
    module_name, _, name = text.rpartition(":")
    if not module_name or not name:
        raise ExperimentError("a callable probe is 'module:function'", text)
    if module_name.endswith(".py") or "/" in module_name:
        file = (base / module_name).resolve()
        loader = importlib.util.spec_from_file_location(f"_tracekit_probe_{file.stem}", file)
        if loader is None or loader.loader is None or not file.is_file():
            raise ExperimentError("no such probe module", str(file))
        module = importlib.util.module_from_spec(loader)
        sys.modules[loader.name] = module
        loader.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    function = getattr(module, name, None)
    if not callable(function):
        raise ExperimentError("no such probe function", text)
    return function


def _json_file(spec: ProbeSpec, options: dict[str, Any], ctx: ProbeContext, event: ProbeEvent) -> Any:
    path = ctx.base / str(options["path"])
    if not path.exists():
        return MISSING
    value = jsonio.loads(path.read_bytes())
    try:
        steps = parse_path(str(options.get("select", "$")))
    except ConfigError as exc:
        raise ProbeError(f"probe {spec.name!r}: bad select path", exc.line()) from None
    for step in steps:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and -len(value) <= step < len(value) else MISSING
        else:
            value = value.get(step) if isinstance(value, dict) else MISSING
        if value is MISSING:
            break
    return value


def _sqlite(spec: ProbeSpec, options: dict[str, Any], ctx: ProbeContext, event: ProbeEvent) -> Any:
    path = ctx.base / str(options["path"])
    if not path.exists():
        return MISSING
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute(str(options["query"]), list(options.get("params", []))).fetchall()
    finally:
        con.close()
    return [list(row) for row in rows] or MISSING


def _sql(spec: ProbeSpec, options: dict[str, Any], ctx: ProbeContext, event: ProbeEvent) -> Any:
    from tracekit.store import Store

    if ctx.store is None:
        raise ProbeError(f"probe {spec.name!r} reads tracekit's store", "no --store", "Give --store DIR")
    with Store.open(ctx.store) as st:
        result = st.query(str(options["query"]), list(options.get("params", [])))
    rows = [{k: _plain(v) for k, v in row.items()} for row in result]
    return rows or MISSING


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _dynamodb(spec: ProbeSpec, options: dict[str, Any], ctx: ProbeContext, event: ProbeEvent) -> Any:
    table = str(options["table"])
    if "key" in options:
        got = ctx.aws.call(
            "dynamodb", "GetItem", table, TableName=table, Key=options["key"], ConsistentRead=True
        )
        return got.get("Item") or MISSING
    query = dict(options["query"])
    items: list[Any] = []
    params: dict[str, Any] = {"TableName": table, "ConsistentRead": True, **query}
    while True:
        got = ctx.aws.call("dynamodb", "Query", table, **params)
        items.extend(got.get("Items", []))
        if "LastEvaluatedKey" not in got:
            return items or MISSING
        params["ExclusiveStartKey"] = got["LastEvaluatedKey"]


def _s3(spec: ProbeSpec, options: dict[str, Any], ctx: ProbeContext, event: ProbeEvent) -> Any:
    bucket, prefix = str(options["bucket"]), str(options.get("prefix", ""))
    where = f"s3://{bucket}/{prefix}"
    objects: list[dict[str, Any]] = []
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = ctx.aws.call("s3", "ListObjectsV2", where, **params)
        for item in page.get("Contents", []):
            entry: dict[str, Any] = {"key": item["Key"], "etag": str(item.get("ETag", "")).strip('"')}
            if options.get("bodies"):
                body = ctx.aws.call("s3", "GetObject", where, Bucket=bucket, Key=item["Key"])["Body"].read()
                entry["body"] = body.decode("utf-8", "replace")
            objects.append(entry)
        if not page.get("IsTruncated"):
            return sorted(objects, key=lambda o: o["key"]) or MISSING
        params["ContinuationToken"] = page["NextContinuationToken"]


def _sqs(spec: ProbeSpec, options: dict[str, Any], ctx: ProbeContext, event: ProbeEvent) -> Any:
    queue = str(options["queue"])
    if queue not in ctx._snapshots:
        ctx._snapshots[queue] = queue_bodies(ctx.aws, queue)
    needle = str(options.get("contains", ""))
    return sorted(b for b in ctx._snapshots[queue] if needle in b) or MISSING


def queue_bodies(aws: Any, queue: str, max_empty: int = 2) -> list[str]:
    """Every body on `queue`, read without consuming: each message received is made visible again."""
    url = (
        queue
        if queue.startswith("http")
        else aws.call("sqs", "GetQueueUrl", queue, QueueName=queue)["QueueUrl"]
    )
    bodies: dict[str, str] = {}
    handles: list[str] = []
    empty = 0
    try:
        while empty < max_empty:
            got = aws.call(
                "sqs",
                "ReceiveMessage",
                url,
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                WaitTimeSeconds=0,
            )
            messages = got.get("Messages", [])
            empty = 0 if messages else empty + 1
            for message in messages:
                bodies[message["MessageId"]] = message["Body"]
                handles.append(message["ReceiptHandle"])
    finally:
        _release(aws, url, handles)
    return list(bodies.values())


def _release(aws: Any, url: str, handles: list[str]) -> None:
    """Make every held message visible again (the snapshot must not eat the consumer's output)."""
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
            for i, h in enumerate(handles[start : start + 10])
        ]
        aws.call("sqs", "ChangeMessageVisibilityBatch", url, QueueUrl=url, Entries=entries)


_READERS: dict[str, Callable[[ProbeSpec, dict[str, Any], ProbeContext, ProbeEvent], Any]] = {
    "callable": _callable,
    "json_file": _json_file,
    "sqlite": _sqlite,
    "sql": _sql,
    "dynamodb": _dynamodb,
    "s3": _s3,
    "sqs": _sqs,
}
