"""Read a lab scenario (TOML) into typed settings, with one-line errors for anything malformed.

A scenario names the function (handler, memory, timeout, log format, environments), the
invocation model and its settings (`[source]`), where failures go (`[destinations]`), the input
events with their faults, and optionally a seeded random bulk mode (`[random]`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracekit.errors import TracekitError

FAULT_KINDS = ("ok", "error", "timeout", "out_of_memory", "crash", "throttle", "init_error")
SOURCE_TYPES = ("async", "sqs", "kinesis", "dynamodb")
DESTINATION_TYPES = ("sqs", "sns", "eventbridge", "s3", "lambda")
DEFAULT_START = "2026-11-22T09:00:00Z"


class ScenarioError(TracekitError):
    """A scenario file cannot be read or says something the lab cannot run."""


@dataclass(frozen=True)
class Fault:
    """What goes wrong in one attempt; `kind` is one of FAULT_KINDS.

    `when` says whether the fault strikes before the handler runs or after it has done its work
    (the adversarial case for idempotency: side effects happened, yet the attempt failed).
    """

    kind: str
    error_type: str | None = None
    error_message: str | None = None
    when: str = "before"

    @property
    def reaches_handler(self) -> bool:
        return self.kind not in ("throttle", "init_error") and (self.when == "after" or self.kind == "ok")


OK = Fault("ok")


@dataclass(frozen=True)
class EventSpec:
    """One input event: its payload, when it arrives, and the fault of each of its attempts."""

    payload: Any
    at_s: float = 0.0
    faults: tuple[Fault, ...] = ()
    key: str | None = None  # Kinesis partition key / DynamoDB key / FIFO message group
    message_attributes: dict[str, Any] = field(default_factory=dict)
    duplicate: bool = False  # deliver one extra copy without any error (at-least-once)

    def fault_for(self, attempt: int) -> Fault:
        """The fault of the 1-based `attempt`; attempts past the list succeed."""
        return self.faults[attempt - 1] if attempt <= len(self.faults) else OK


@dataclass(frozen=True)
class RandomSpec:
    """Seeded bulk mode: `events` payloads from a template, each attempt drawing its fault."""

    events: int
    rate_per_s: float = 10.0
    payload: Any = field(default_factory=lambda: {"n": "{n}"})
    fault_rates: dict[str, float] = field(default_factory=dict)
    duplicate_rate: float = 0.0
    keys: int = 16


@dataclass(frozen=True)
class FunctionSpec:
    """The deployed function as Lambda would run it."""

    name: str
    handler_file: Path
    handler_name: str
    runtime: str = "python3.12"
    memory_mb: int = 128
    timeout_s: float = 3.0
    log_format: str = "text"
    timeout_style: str = "new"  # "old": `Task timed out` line; "new": `Status: timeout` on REPORT
    # How the runtime's own error records reach the log (see logformat): "stdout" (one event, lines
    # joined by \r) or "telemetry" (the warning and the record as two events, lines joined by \n).
    log_sink: str = "stdout"
    concurrency: int = 1
    version: str = "$LATEST"
    region: str = "us-east-1"
    account: str = "123456789012"
    duration_ms: float = 40.0
    per_item_ms: float = 4.0
    init_ms: float = 250.0
    recorder: bool = False
    tracing: bool = False

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.name}"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"


@dataclass(frozen=True)
class Destination:
    """Where Lambda sends a record: `type` is one of DESTINATION_TYPES, `name` the resource name."""

    type: str
    name: str


@dataclass(frozen=True)
class Scenario:
    """A whole lab run: function, source model settings, destinations and events."""

    name: str
    path: Path
    start: datetime
    function: FunctionSpec
    source: str
    settings: dict[str, Any]
    on_success: Destination | None
    on_failure: Destination | None
    dlq: Destination | None
    events: tuple[EventSpec, ...]
    random: RandomSpec | None
    description: str = ""
    stop_s: float | None = None  # end the run this long after start, leaving what is unfinished in flight

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)


def load_scenario(path: Path) -> Scenario:
    """Parse and check a scenario file; raise ScenarioError naming the file and the problem."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError("cannot read scenario", str(path), exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("scenario is not valid TOML", str(path), str(exc)) from None
    try:
        return _scenario(doc, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise ScenarioError("bad scenario", str(path), _reason(exc)) from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing setting {exc.args[0]!r}"
    return str(exc)


def _scenario(doc: dict[str, Any], path: Path) -> Scenario:
    source = dict(doc["source"])
    source_type = _choice(source.pop("type"), SOURCE_TYPES, "source.type")
    destinations = doc.get("destinations", {})
    events = tuple(_event(e, i) for i, e in enumerate(doc.get("events", []), 1))
    random = _random(doc["random"]) if "random" in doc else None
    if not events and random is None:
        raise ValueError("no [[events]] and no [random] section: nothing to run")
    return Scenario(
        name=str(doc.get("name", path.stem)),
        path=path,
        start=_timestamp(doc.get("start", DEFAULT_START)),
        function=_function(doc["function"], path.parent),
        source=source_type,
        settings=source,
        on_success=_destination(destinations.get("on_success"), "destinations.on_success"),
        on_failure=_destination(destinations.get("on_failure"), "destinations.on_failure"),
        dlq=_destination(destinations.get("dlq"), "destinations.dlq"),
        events=events,
        random=random,
        description=str(doc.get("description", "")),
        stop_s=float(doc["stop"]) if "stop" in doc else None,
    )


def _function(doc: dict[str, Any], base: Path) -> FunctionSpec:
    module, _, function = str(doc["handler"]).rpartition(":")
    if not module or not function:
        raise ValueError("function.handler must be 'path/to/module:function'")
    handler_file = (base / (module if module.endswith(".py") else module + ".py")).resolve()
    known = {k: v for k, v in doc.items() if k not in ("handler", "name")}
    unknown = set(known) - set(FunctionSpec.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown function setting {sorted(unknown)[0]!r}")
    spec = FunctionSpec(name=str(doc["name"]), handler_file=handler_file, handler_name=function, **known)
    _choice(spec.log_format, ("text", "json"), "function.log_format")
    _choice(spec.timeout_style, ("old", "new"), "function.timeout_style")
    _choice(spec.log_sink, ("stdout", "telemetry"), "function.log_sink")
    if spec.concurrency < 1:
        raise ValueError("function.concurrency must be at least 1")
    return spec


def _event(doc: dict[str, Any], index: int) -> EventSpec:
    if "payload" not in doc:
        raise ValueError(f"events[{index}] has no payload")
    return EventSpec(
        payload=doc["payload"],
        at_s=float(doc.get("at", 0.0)),
        faults=_faults(doc, f"events[{index}]"),
        key=doc.get("key"),
        message_attributes=dict(doc.get("message_attributes", {})),
        duplicate=bool(doc.get("duplicate", False)),
    )


def _faults(doc: dict[str, Any], where: str) -> tuple[Fault, ...]:
    """`faults = [...]` per attempt, or `fault` + `fail_times` ("succeeds after k failures")."""
    if "faults" in doc:
        return tuple(_fault(f, where) for f in doc["faults"])
    if "fault" in doc:
        fault = _fault(doc["fault"], where)
        return (fault,) * int(doc.get("fail_times", 1_000_000))
    return ()


def _fault(value: Any, where: str) -> Fault:
    if isinstance(value, str):
        value = {"kind": value}
    kind = _choice(value["kind"], FAULT_KINDS, f"{where} fault kind")
    when = _choice(value.get("when", "after" if kind == "timeout" else "before"), ("before", "after"), "when")
    return Fault(kind, value.get("type"), value.get("message"), when)


def _random(doc: dict[str, Any]) -> RandomSpec:
    rates = {str(k): float(v) for k, v in doc.get("faults", {}).items()}
    for kind in rates:
        _choice(kind, FAULT_KINDS, "random.faults")
    if sum(rates.values()) > 1:
        raise ValueError("random.faults rates add up to more than 1")
    return RandomSpec(
        events=int(doc["events"]),
        rate_per_s=float(doc.get("rate_per_s", 10.0)),
        payload=doc.get("payload", {"n": "{n}"}),
        fault_rates=rates,
        duplicate_rate=float(doc.get("duplicate_rate", 0.0)),
        keys=int(doc.get("keys", 16)),
    )


def _destination(value: str | None, where: str) -> Destination | None:
    if value is None:
        return None
    kind, sep, name = str(value).partition(":")
    if not sep or not name:
        raise ValueError(f"{where} must be 'TYPE:NAME', e.g. 'sqs:orders-dlq'")
    return Destination(_choice(kind, DESTINATION_TYPES, where), name)


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ValueError(f"{where} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
