"""The aws target: run each phase as a replay of the experiment's plan through the replay engine.

Each phase is a copy of the plan under its own plan id (so it gets its own journal and report in the
work directory) run with `--apply` semantics: the account allow-list is checked before anything is
sent. The consumer's state in a real account cannot be reset, so the faulted phase runs on top of
the clean one: every faulted copy is a redelivery, and an idempotent consumer's effect stays what
the clean phase left. A copy counts as succeeded when its target confirmed it; what the consumer's
handler then did shows only in its logs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path
from typing import Any

from tracekit.aws import Aws
from tracekit.chaos.experiment import AwsTarget, Experiment, ExperimentError
from tracekit.chaos.lab_target import Delivery, Phase
from tracekit.replay.faults import Copy
from tracekit.replay.model import Plan, SourceKind, load_plan, save_plan
from tracekit.replay.run import RunOptions, RunReport, run_plan


def chaos_aws(experiment: Experiment, region: str | None, profile: str | None) -> Aws:
    """AWS access for an experiment: the experiment's region unless --region says otherwise."""
    settings = _settings(experiment)
    return Aws(region or settings.region, profile=profile, verb="cannot run the chaos experiment")


def _settings(experiment: Experiment) -> AwsTarget:
    assert experiment.aws is not None, "an aws experiment has an [aws] table"
    return experiment.aws


def experiment_plan(experiment: Experiment, store: Path | None, aws: Aws) -> Plan:
    """The experiment's plan file, or the plan its [select] selectors choose from the store."""
    if experiment.plan is not None:
        return load_plan(experiment.plan)
    if store is None:
        raise ExperimentError(
            "an experiment with [select] chooses its events from a store",
            str(experiment.path),
            "Give --store DIR",
        )
    from tracekit.analyze.build import ensure_current
    from tracekit.analyze.keys import load_config
    from tracekit.analyze.lookup import EventFilter, Outcome, parse_since
    from tracekit.replay.plan import PlanRequest, make_plan
    from tracekit.store import Store

    chosen = experiment.select
    since, until = chosen.get("since"), chosen.get("until")
    request = PlanRequest(
        where=EventFilter(
            function=chosen.get("function"),
            outcome=Outcome(chosen["outcome"]) if "outcome" in chosen else None,
            since=parse_since(str(since)) if since else None,
        ),
        until=parse_since(str(until)) if until else None,
        error_type=chosen.get("error_type"),
        event_ids=[str(e) for e in chosen.get("event_ids", [])],
        sql_where=chosen.get("where"),
    )
    config = load_config(None)
    with Store.open(store) as st:
        ensure_current(st, config)
        plan = make_plan(st, config, request, lambda: aws)
    if not plan.entries:
        raise ExperimentError("the [select] selectors chose no events", str(experiment.path), "Widen them")
    return plan


def run_aws_phase(
    experiment: Experiment,
    plan: Plan,
    copies: list[Copy],
    aws: Aws,
    *,
    name: str,
    work: Path,
    faults: list[str],
    seed: int,
    store: Path | None,
) -> tuple[Phase, RunReport]:
    """Send the phase's copies through the replay engine, wait for the consumer, return what happened."""
    settings = _settings(experiment)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    phase_plan = dataclasses.replace(plan, plan_id=f"{plan.plan_id}-chaos-{name}-{stamp}")
    path = work / f"{name}.json"
    work.mkdir(parents=True, exist_ok=True)
    save_plan(phase_plan, path)
    options = RunOptions(
        apply=True, allow_accounts=list(settings.allow_accounts), faults=faults, seed=seed, store=store
    )
    report = run_plan(path, aws, options)
    time.sleep(settings.settle_s)  # the consumer reads its queue or invocation asynchronously
    deliveries = [_delivery(plan, copy, report) for copy in copies]
    return Phase(name, deliveries, None, None, {}), report


def _delivery(plan: Plan, copy: Copy, report: RunReport) -> Delivery:
    failures = {f["key"]: f.get("reason") for f in report.failures}
    delivery = Delivery(copy.entry_id, copy.copy, list(copy.faults), poison=copy.corrupt_field is not None)
    if copy.drop:
        delivery.dropped = True
    elif copy.key in failures:
        delivery.outcome, delivery.error = "failed", str(failures[copy.key] or "failed")
    else:
        delivery.outcome = "success"
    entry = next(e for e in plan.entries if e.entry_id == copy.entry_id)
    if entry.source.kind is SourceKind.DEAD_LETTER:
        # The original's messageId: a consumer that recorded it keys on what a replay changes.
        delivery.envelope = {"messageId": entry.source.id}
    return delivery


def event_first_seen(store: Path | None, event_ids: list[str]) -> dict[str, dt.datetime | None]:
    """When the store first saw each event (None when it has no such event or no analysis)."""
    out: dict[str, dt.datetime | None] = dict.fromkeys(event_ids)
    if store is None or not event_ids or not store.exists():
        return out
    from tracekit.errors import TracekitError
    from tracekit.store import Store

    marks = ", ".join("?" for _ in event_ids)
    try:
        with Store.open(store) as st:
            rows = st.query(f"SELECT event_id, first_seen FROM events WHERE event_id IN ({marks})", event_ids)
    except (TracekitError, Exception):  # noqa: BLE001 - no analysis yet: the ages are unknown, not an error
        return out
    for row in rows:
        out[str(row["event_id"])] = _utc(row["first_seen"])
    return out


def _utc(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def collect_consumer_logs(
    experiment: Experiment, aws: Aws, store: Path | None, since: dt.datetime
) -> dict[str, Any]:
    """Collect the consumer's log group from when the experiment started into the store."""
    log_group = _settings(experiment).log_group
    if store is None or not log_group:
        return {"collected": False, "why": "needs --store and [aws] log_group"}
    from tracekit.collect.cloudwatch import LogsRequest, collect_logs
    from tracekit.store import Store

    with Store.open(store, create=True) as st, st.writing():
        result = collect_logs(st, aws, LogsRequest(log_group, since=since))
    return {"collected": True, "log_group": log_group, "store": str(store), "ingested": dict(result.counts)}
