"""Read a chaos experiment file (TOML) into typed settings, with one-line errors for anything malformed.

An experiment names the events (inline payloads for the lab, or a replay plan), the target (`lab`:
the lab runs the consumer's handler locally; `aws`: the replay engine sends to a staging account),
the faults (the same specs as `replay run --fault`), the probes that read the consumer's effect, and
what the static checks need to know (`idempotency_key`, `dedup_window_s`). Relative paths are
relative to the experiment file.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracekit.errors import TracekitError

TARGETS = ("lab", "aws")
LAB_SOURCES = ("sqs", "async")
PROBE_TYPES = ("callable", "json_file", "sqlite", "sql", "dynamodb", "s3", "sqs")
DEFAULT_START = "2026-11-22T10:00:00Z"


class ExperimentError(TracekitError):
    """An experiment file cannot be read or asks for something tracekit cannot run."""


@dataclass(frozen=True)
class InlineEvent:
    """One event the lab delivers: the producer's payload and what SQS would carry with it."""

    event_id: str
    payload: Any
    message_attributes: dict[str, Any] = field(default_factory=dict)
    #: FIFO queues: the MessageGroupId.
    group: str | None = None
    #: When the original was sent, for the dedup-window check (None: unknown).
    sent_at: dt.datetime | None = None


@dataclass(frozen=True)
class LabTarget:
    """The consumer the lab runs: its handler, how its events arrive, its environment."""

    handler_file: Path
    handler_name: str
    source: str = "sqs"
    queue: str = "orders-queue"
    function: str = "chaos-consumer"
    #: Environment variables set while the handler runs; "{state_dir}" is the phase's state directory.
    environment: dict[str, str] = field(default_factory=dict)
    start: dt.datetime = dt.datetime.fromisoformat(DEFAULT_START)
    timeout_s: float = 30.0


@dataclass(frozen=True)
class AwsTarget:
    """A staging account: who may be sent to, and where the consumer's logs are."""

    allow_accounts: tuple[str, ...]
    log_group: str | None = None
    #: How long to wait after each phase for the consumer to finish before probing.
    settle_s: float = 5.0
    region: str | None = None


@dataclass(frozen=True)
class ProbeSpec:
    """One probe: a name, a type (one of PROBE_TYPES) and its settings as written."""

    name: str
    type: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Experiment:
    """A whole experiment file."""

    name: str
    path: Path
    target: str
    faults: tuple[str, ...]
    probes: tuple[ProbeSpec, ...]
    description: str = ""
    seed: int = 0
    #: A JSONPath into each payload whose value names the event in the report (a business key).
    key: str | None = None
    #: What the consumer deduplicates on, as the experiment's author knows it (static checks).
    idempotency_key: str | None = None
    dedup_window_s: float | None = None
    events: tuple[InlineEvent, ...] = ()
    plan: Path | None = None
    #: aws target without a plan: `tracekit replay plan` selectors over the store (function, outcome,
    #: since, until, error_type, event_ids, where).
    select: dict[str, Any] = field(default_factory=dict)
    lab: LabTarget | None = None
    aws: AwsTarget | None = None

    @property
    def base(self) -> Path:
        return self.path.parent


def load_experiment(path: Path) -> Experiment:
    """Parse and check an experiment file; raise ExperimentError naming the file and the problem."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExperimentError("cannot read the experiment", str(path), exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError("experiment is not valid TOML", str(path), str(exc)) from None
    try:
        return _experiment(doc, path)
    except KeyError as exc:
        raise ExperimentError("bad experiment", str(path), f"missing setting {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ExperimentError("bad experiment", str(path), str(exc)) from None


def _experiment(doc: dict[str, Any], path: Path) -> Experiment:
    target = _choice(doc.get("target", "lab"), TARGETS, "target")
    faults = doc.get("faults", [])
    if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
        raise ValueError('faults must be a list of fault specs, e.g. faults = ["duplicate=2"]')
    probes = tuple(_probe(p, i) for i, p in enumerate(doc.get("probes", []), 1))
    if not probes:
        raise ValueError("no [[probes]]: nothing would read the consumer's effect")
    events = tuple(_event(e, i) for i, e in enumerate(doc.get("events", []), 1))
    plan = path.parent / str(doc["plan"]) if "plan" in doc else None
    experiment = Experiment(
        name=str(doc.get("name", path.stem)),
        path=path,
        target=target,
        faults=tuple(faults),
        probes=probes,
        description=str(doc.get("description", "")),
        seed=int(doc.get("seed", 0)),
        key=_optional_str(doc.get("key")),
        idempotency_key=_optional_str(doc.get("idempotency_key")),
        dedup_window_s=float(doc["dedup_window_s"]) if "dedup_window_s" in doc else None,
        events=events,
        plan=plan,
        select=_select(doc.get("select", {})),
        lab=_lab(doc["lab"], path.parent) if target == "lab" else None,
        aws=_aws(doc["aws"]) if target == "aws" else None,
    )
    _check_events(experiment)
    return experiment


def _check_events(experiment: Experiment) -> None:
    if experiment.target == "lab" and not experiment.events:
        raise ValueError("a lab experiment needs [[events]] with the payloads to deliver")
    if experiment.target == "aws" and (experiment.plan is None) == (not experiment.select):
        raise ValueError(
            "an aws experiment needs plan = 'PLAN.json' (from `tracekit replay plan`) or a [select] table"
        )
    ids = [e.event_id for e in experiment.events]
    if len(set(ids)) != len(ids):
        raise ValueError("two [[events]] have the same id")


SELECTORS = ("function", "outcome", "since", "until", "error_type", "event_ids", "where")


def _select(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValueError("[select] must be a table of replay plan selectors")
    unknown = sorted(set(doc) - set(SELECTORS))
    if unknown:
        raise ValueError(f"unknown selector {unknown[0]!r} in [select]; use {', '.join(SELECTORS)}")
    return dict(doc)


def _lab(doc: dict[str, Any], base: Path) -> LabTarget:
    module, _, function = str(doc["handler"]).rpartition(":")
    if not module or not function:
        raise ValueError("lab.handler must be 'path/to/module.py:function'")
    handler_file = (base / (module if module.endswith(".py") else module + ".py")).resolve()
    if not handler_file.is_file():
        raise ValueError(f"lab.handler: no such file {handler_file}")
    environment = doc.get("environment", {})
    if not isinstance(environment, dict):
        raise ValueError("lab.environment must be a table of NAME = 'value'")
    return LabTarget(
        handler_file=handler_file,
        handler_name=function,
        source=_choice(doc.get("source", "sqs"), LAB_SOURCES, "lab.source"),
        queue=str(doc.get("queue", "orders-queue")),
        function=str(doc.get("function", handler_file.stem.replace("_", "-"))),
        environment={str(k): str(v) for k, v in environment.items()},
        start=_timestamp(doc.get("start", DEFAULT_START)),
        timeout_s=float(doc.get("timeout_s", 30.0)),
    )


def _aws(doc: dict[str, Any]) -> AwsTarget:
    accounts = doc.get("allow_accounts", [])
    if isinstance(accounts, str) or not accounts:
        raise ValueError('aws.allow_accounts must list the staging account ids, e.g. ["123456789012"]')
    return AwsTarget(
        allow_accounts=tuple(str(a) for a in accounts),
        log_group=_optional_str(doc.get("log_group")),
        settle_s=float(doc.get("settle_s", 5.0)),
        region=_optional_str(doc.get("region")),
    )


def _event(doc: dict[str, Any], index: int) -> InlineEvent:
    if "payload" not in doc:
        raise ValueError(f"events[{index}] has no payload")
    return InlineEvent(
        event_id=str(doc.get("id", f"e{index}")),
        payload=doc["payload"],
        message_attributes=dict(doc.get("message_attributes", {})),
        group=_optional_str(doc.get("group")),
        sent_at=_timestamp(doc["sent_at"]) if "sent_at" in doc else None,
    )


def _probe(doc: dict[str, Any], index: int) -> ProbeSpec:
    kind = _choice(doc.get("type"), PROBE_TYPES, f"probes[{index}].type")
    options = {k: v for k, v in doc.items() if k not in ("name", "type")}
    return ProbeSpec(name=str(doc.get("name", f"{kind}-{index}")), type=kind, options=options)


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ValueError(f"{where} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _timestamp(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(dt.UTC)
