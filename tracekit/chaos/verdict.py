"""The idempotency verdict per event, and the static checks beside it.

An event is `idempotent` when every probe reads the same effect after the faulted phase as after the
clean one, `not_idempotent` when one differs (the difference is shown, before and after), and
`inconclusive` when the evidence cannot say: the clean delivery failed, the probes found nothing
for the event, a probe failed, the faults dropped every copy, or the handler failed on every copy.

Static checks (lambda-semantics.md §3) flag idempotency designs that a replay defeats even when this
run could not show it: keys on the SQS messageId (a DLQ redrive and any re-publish mint a new one)
or on the async request id (every Invoke mints one), keys that include envelope timestamps, and a
dedup window shorter than the age of the events replayed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from tracekit import jsonio
from tracekit.chaos.lab_target import Delivery

IDEMPOTENT = "idempotent"
NOT_IDEMPOTENT = "not_idempotent"
INCONCLUSIVE = "inconclusive"
VERDICTS = (IDEMPOTENT, NOT_IDEMPOTENT, INCONCLUSIVE)

#: Envelope fields that carry a time: a key made of one differs on every delivery (lowercase).
TIMESTAMP_FIELDS = (
    "senttimestamp",
    "approximatefirstreceivetimestamp",
    "timeepoch",
    "requesttime",
    "approximatearrivaltimestamp",
    "approximatecreationdatetime",
    "eventtime",
)
MESSAGE_ID_FIELDS = ("messageid", "message_id", "requestid", "request_id", "aws_request_id")


@dataclass
class Reading:
    """What one probe read for one event after one phase (or why it could not)."""

    value: Any = None
    error: str | None = None


@dataclass
class EventVerdict:
    """One event's verdict and the evidence for it."""

    event_id: str
    key: str | None
    verdict: str
    reason: str
    #: Copies scheduled, delivered (not dropped), and that the handler finished successfully.
    copies: int = 0
    delivered: int = 0
    succeeded: int = 0
    faults: list[str] = field(default_factory=list)
    #: Per differing probe: {"probe", "before", "after"}.
    differences: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Finding:
    """A static check that fired."""

    check: str
    severity: str
    message: str
    basis: str  # "experiment" (a setting said so) or "observed" (the probes showed it)
    events: list[str] = field(default_factory=list)


def judge(
    event_id: str,
    key: str | None,
    clean: list[Delivery],
    faulted: list[Delivery],
    before: dict[str, Reading],
    after: dict[str, Reading],
) -> EventVerdict:
    """The verdict for one event from its deliveries in both phases and its probe readings."""
    good = [d for d in faulted if not d.dropped and not d.poison]
    verdict = EventVerdict(
        event_id,
        key,
        INCONCLUSIVE,
        "",
        copies=len(faulted),
        delivered=sum(not d.dropped for d in faulted),
        succeeded=sum(d.succeeded for d in faulted),
        faults=sorted({f for d in faulted for f in d.faults}),
    )
    reason = _inconclusive(clean, faulted, good, before, after)
    if reason:
        verdict.reason = reason
        return verdict
    verdict.differences = [
        {"probe": name, "before": before[name].value, "after": after[name].value}
        for name in before
        if _canonical(before[name].value) != _canonical(after[name].value)
    ]
    if verdict.differences:
        verdict.verdict = NOT_IDEMPOTENT
        verdict.reason = f"effect differs after {verdict.succeeded} successful deliveries"
    else:
        verdict.verdict = IDEMPOTENT
        verdict.reason = _same_effect(sum(d.succeeded for d in good), verdict.delivered)
    return verdict


def _inconclusive(
    clean: list[Delivery],
    faulted: list[Delivery],
    good: list[Delivery],
    before: dict[str, Reading],
    after: dict[str, Reading],
) -> str | None:
    """Why the evidence cannot decide, or None when it can."""
    if clean and not any(d.succeeded for d in clean):
        return f"the clean delivery failed ({_first_error(clean)})"
    for phase, readings in (("clean", before), ("faulted", after)):
        for name, reading in readings.items():
            if reading.error:
                return f"probe {name} failed after the {phase} run: {reading.error}"
    if all(reading.value is None for reading in before.values()):
        return "the probes found nothing for the event after the clean run"
    if faulted and all(d.dropped for d in faulted):
        return "the faults dropped every copy"
    if good and not any(d.succeeded for d in good):
        return f"the handler failed on every copy ({_first_error(good)})"
    return None


def _same_effect(succeeded: int, delivered: int) -> str:
    if succeeded <= 1:
        return "effect unchanged; only one copy was handled successfully, so no duplicate was tested"
    return f"effect unchanged by {succeeded} successful deliveries"


def _first_error(deliveries: list[Delivery]) -> str:
    for d in deliveries:
        if d.error or d.outcome not in (None, "success"):
            return d.error or str(d.outcome)
    return "no attempt"


def _canonical(value: Any) -> str:
    return jsonio.dumps(value, sort_keys=True)


# ------------------------------------------------------------------------------ static checks


def check_key_setting(idempotency_key: str | None) -> list[Finding]:
    """What the experiment's `idempotency_key` says about the consumer's design."""
    if not idempotency_key:
        return []
    text = idempotency_key.lower()
    findings = []
    if any(name in text for name in MESSAGE_ID_FIELDS):
        findings.append(_message_id_finding("experiment", [], f"idempotency_key = {idempotency_key!r}"))
    if any(name in text for name in TIMESTAMP_FIELDS) or text in ("$.time", "time"):
        findings.append(_timestamp_finding("experiment", [], f"idempotency_key = {idempotency_key!r}"))
    return findings


def check_recorded_keys(
    clean: dict[str, list[Delivery]], before: dict[str, dict[str, Reading]]
) -> list[Finding]:
    """Whether what the consumer recorded for an event holds its envelope's ids or timestamps."""
    by_id: list[str] = []
    by_time: list[str] = []
    for event_id, deliveries in clean.items():
        text = " ".join(_canonical(r.value) for r in before.get(event_id, {}).values() if r.value is not None)
        for d in deliveries:
            ids = [v for k, v in d.envelope.items() if k.lower() in MESSAGE_ID_FIELDS]
            times = [v for k, v in d.envelope.items() if k.lower() in TIMESTAMP_FIELDS]
            if any(v and v in text for v in ids):
                by_id.append(event_id)
            if any(v and v in text for v in times):
                by_time.append(event_id)
    findings = []
    if by_id:
        findings.append(_message_id_finding("observed", sorted(set(by_id)), "the consumer recorded it"))
    if by_time:
        findings.append(_timestamp_finding("observed", sorted(set(by_time)), "the consumer recorded it"))
    return findings


def check_dedup_window(window_s: float | None, ages_s: dict[str, float]) -> list[Finding]:
    """Whether any replayed event is older than the consumer's dedup window."""
    if window_s is None or not ages_s:
        return []
    old = sorted(e for e, age in ages_s.items() if age > window_s)
    if not old:
        return []
    oldest = max(ages_s.values())
    return [
        Finding(
            "dedup-window",
            "high",
            f"dedup_window_s = {window_s:g} is shorter than the age of {len(old)} replayed event(s) "
            f"(oldest {_age(oldest)}): the consumer has forgotten their first delivery, so a replay "
            "of an event whose side effects already happened is processed again. Keep dedup records "
            "longer than the oldest event you may replay (SQS retention is up to 14 days)",
            "experiment",
            old,
        )
    ]


def event_ages(sent: dict[str, dt.datetime | None], now: dt.datetime) -> dict[str, float]:
    """Seconds from each event's original send to `now` (events without a time are left out)."""
    return {e: (now - t).total_seconds() for e, t in sent.items() if t is not None}


def _message_id_finding(basis: str, events: list[str], why: str) -> Finding:
    return Finding(
        "message-id-key",
        "high",
        f"idempotency is keyed on the envelope's id ({why}): an SQS messageId changes when a DLQ "
        "redrive or any re-publish (a replay) sends the message again, and an async request id "
        "changes with every Invoke, so the copies look new. Key on a business key from the body",
        basis,
        events,
    )


def _timestamp_finding(basis: str, events: list[str], why: str) -> Finding:
    return Finding(
        "envelope-timestamp-key",
        "high",
        f"the idempotency key includes a timestamp from the envelope ({why}): SentTimestamp, "
        "ApproximateFirstReceiveTimestamp and requestContext times differ on every delivery, so no "
        "two copies share a key. Key on fields the producer set",
        basis,
        events,
    )


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
