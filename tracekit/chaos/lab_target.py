"""The lab target: deliver a fault schedule's copies to the consumer's real handler, one by one.

Each phase gets a fresh world, a fresh function (so a fresh handler module) and a fresh state
directory, so the faulted phase starts from the same empty state as the clean one and the two
effects compare. Copies are delivered in schedule order, each as its source would deliver a message
that a replay re-published: SQS (a one-record SQS event with a new messageId, SentTimestamp and the
replay marker attribute, as SendMessage mints them) or an asynchronous invoke (the payload, with
the marker field, and a new request id). A `delay_ms` advances virtual time; a throttled copy is
first answered as throttled, then sent again, as the engine's retry would; a dropped copy is not
delivered; a poison copy carries the corrupted payload.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracekit import jsonio
from tracekit.chaos.experiment import Experiment, InlineEvent, LabTarget
from tracekit.lab.models.sqs import _event_attributes, md5_of_message_attributes
from tracekit.lab.runtime import AttemptResult, LambdaFunction
from tracekit.lab.scenario import Fault, FunctionSpec
from tracekit.lab.world import World, md5_hex
from tracekit.replay.faults import Copy, corrupt
from tracekit.replay.model import MARKER, Entry, Plan, Source, SourceKind, Target, TargetType, now_iso

GAP_MS = 200  # virtual time between one delivery's end and the next send
THROTTLE_RETRY_MS = 1000  # the engine's first backoff after a throttle
RECEIVE_LAG_MS = 15  # SQS: from SendMessage to the poller's receive


@dataclass
class Delivery:
    """What became of one copy: dropped, or the handler's attempt and the envelope it got."""

    entry_id: str
    copy: int
    faults: list[str]
    dropped: bool = False
    poison: bool = False
    outcome: str | None = None
    error: str | None = None
    request_id: str | None = None
    #: The envelope's ids and times, for the static checks (SQS: messageId, SentTimestamp, ...).
    envelope: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"


@dataclass
class Phase:
    """One phase's deliveries and, in the lab, the world (its logs) and where the consumer kept its state."""

    name: str
    deliveries: list[Delivery]
    world: World | None
    state_dir: Path | None
    environment: dict[str, str]


def lab_plan(experiment: Experiment) -> Plan:
    """A replay plan over the experiment's inline events (entry id = event id)."""
    lab = _lab(experiment)
    target = (
        Target(TargetType.SQS, url=f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{lab.queue}")
        if lab.source == "sqs"
        else Target(TargetType.LAMBDA, arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{lab.function}")
    )
    entries = [_entry(event, lab, target) for event in experiment.events]
    return Plan(f"chaos-{experiment.name}", now_iso(), {"experiment": experiment.name}, "", entries)


REGION = "eu-west-1"
ACCOUNT = "123456789012"


def _lab(experiment: Experiment) -> LabTarget:
    assert experiment.lab is not None, "a lab experiment has a [lab] table"
    return experiment.lab


def _entry(event: InlineEvent, lab: LabTarget, target: Target) -> Entry:
    payload = event.payload if isinstance(event.payload, str) else jsonio.dumps(event.payload)
    return Entry(
        entry_id=event.event_id,
        event_id=event.event_id,
        function_name=lab.function,
        source=Source(SourceKind.DEAD_LETTER, event.event_id),
        target=target,
        payload=payload,
        attributes=_api_attributes(event.message_attributes),
        message_group_id=event.group,
    )


def _api_attributes(given: dict[str, Any]) -> dict[str, Any]:
    """Experiment message attributes in SendMessage casing (a string is a String, a number a Number)."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        if isinstance(value, dict):
            out[name] = dict(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = {"DataType": "Number", "StringValue": str(value)}
        else:
            out[name] = {"DataType": "String", "StringValue": str(value)}
    return out


def run_phase(
    experiment: Experiment,
    plan: Plan,
    copies: list[Copy],
    *,
    name: str,
    state_dir: Path,
    seed: int,
    start_ms: int | None = None,
) -> Phase:
    """Deliver `copies` to a fresh instance of the consumer; return what each copy did."""
    lab = _lab(experiment)
    state_dir.mkdir(parents=True, exist_ok=True)
    start = start_ms if start_ms is not None else int(lab.start.timestamp() * 1000)
    world = World(start, seed, REGION, ACCOUNT)
    spec = FunctionSpec(
        name=lab.function,
        handler_file=lab.handler_file,
        handler_name=lab.handler_name,
        timeout_s=lab.timeout_s,
        region=REGION,
        account=ACCOUNT,
        log_format="json",
    )
    function = LambdaFunction(spec, world)
    environment = {k: v.replace("{state_dir}", str(state_dir)) for k, v in lab.environment.items()}
    entries = {entry.entry_id: entry for entry in plan.entries}
    deliveries = []
    with _environment(environment):
        for copy in copies:
            deliveries.append(_deliver(world, function, plan, entries[copy.entry_id], copy, lab))
    return Phase(name, deliveries, world, state_dir, environment)


def _deliver(
    world: World, function: LambdaFunction, plan: Plan, entry: Entry, copy: Copy, lab: LabTarget
) -> Delivery:
    delivery = Delivery(copy.entry_id, copy.copy, list(copy.faults), poison=copy.corrupt_field is not None)
    _advance(world, world.now + copy.delay_ms)
    if copy.drop:
        delivery.dropped = True
        return delivery
    if copy.throttle:
        function.invoke({}, fault=Fault("throttle"))  # answered 429; the engine backs off and resends
        _advance(world, world.now + THROTTLE_RETRY_MS)
    payload = entry.payload or ""
    if copy.corrupt_field:
        payload = corrupt(payload, copy.corrupt_field)
    request_id = world.ids.uuid()
    if lab.source == "sqs":
        event, delivery.envelope = _sqs_event(world, plan, entry, payload, lab)
    else:
        event = _async_event(plan, entry, payload)
        delivery.envelope = {"requestId": request_id}
    result = function.invoke(event, request_id=request_id)
    _record(delivery, result)
    _advance(world, result.end + GAP_MS)
    return delivery


def _record(delivery: Delivery, result: AttemptResult) -> None:
    delivery.outcome = result.outcome
    delivery.request_id = result.request_id
    if result.error:
        delivery.error = f"{result.error.get('errorType', 'Error')}: {result.error.get('errorMessage', '')}"


def _advance(world: World, to_ms: float) -> None:
    world.clock.now = max(world.clock.now, to_ms)


def _sqs_event(
    world: World, plan: Plan, entry: Entry, payload: str, lab: LabTarget
) -> tuple[dict[str, Any], dict[str, str]]:
    """A one-record SQS event, as Lambda delivers a message a replay has just sent."""
    sent = int(world.now)
    attributes = {**entry.attributes, MARKER: {"DataType": "String", "StringValue": plan.replay_id(entry)}}
    system = {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": str(sent),
        "SenderId": "AIDACHAOSREPLAY0000000",
        "ApproximateFirstReceiveTimestamp": str(sent + RECEIVE_LAG_MS),
    }
    if entry.message_group_id is not None:
        system["MessageGroupId"] = entry.message_group_id
    message_id = world.ids.uuid()
    record = {
        "messageId": message_id,
        "receiptHandle": "AQEB" + base64.b64encode(world.ids.hex(96).encode()).decode(),
        "body": payload,
        "attributes": system,
        "messageAttributes": _event_attributes(attributes),
        "md5OfMessageAttributes": md5_of_message_attributes(attributes),
        "md5OfBody": md5_hex(payload),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{lab.queue}",
        "awsRegion": REGION,
    }
    envelope = {
        "messageId": message_id,
        "SentTimestamp": system["SentTimestamp"],
        "ApproximateFirstReceiveTimestamp": system["ApproximateFirstReceiveTimestamp"],
    }
    _advance(world, sent + RECEIVE_LAG_MS)
    return {"Records": [record]}, envelope


def _async_event(plan: Plan, entry: Entry, payload: str) -> Any:
    """The payload an asynchronous invoke hands the handler, with the marker field on an object."""
    try:
        event = jsonio.loads(payload)
    except ValueError:
        return payload
    if isinstance(event, dict):
        event[plan.marker.get("payload_field", MARKER)] = plan.replay_id(entry)
    return event


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set the consumer's environment variables while it runs, and put the old ones back."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
