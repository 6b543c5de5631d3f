"""Run a chaos experiment: clean phase, probe, faulted phase, probe, logs, then judge every event.

The clean phase delivers each event once; the faulted phase delivers the copies `schedule` makes of
them under the experiment's faults. In the lab each phase starts from empty consumer state, so the
faulted effect is compared with the effect of exactly one delivery: extra copies that change it make
the event `not_idempotent`, and a reorder alone (no extra copies) leaves a counter unchanged.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tracekit.chaos.experiment import Experiment, load_experiment
from tracekit.chaos.lab_target import Phase, lab_plan, run_phase
from tracekit.chaos.probes import ProbeContext, ProbeError, read_probe
from tracekit.chaos.verdict import (
    VERDICTS,
    EventVerdict,
    Finding,
    Reading,
    check_dedup_window,
    check_key_setting,
    check_recorded_keys,
    event_ages,
    judge,
)
from tracekit.replay.faults import Copy, parse_faults, schedule
from tracekit.replay.model import Plan

PHASE_GAP_MS = 60_000  # the faulted phase starts a minute after the clean one, so their logs do not mix


@dataclass
class ChaosReport:
    """What an experiment found: per-event verdicts, static checks, and what each phase did."""

    experiment: str
    target: str
    faults: list[str]
    seed: int
    workdir: str
    events: list[EventVerdict]
    checks: list[Finding]
    phases: dict[str, dict[str, int]] = field(default_factory=dict)
    logs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON-ready object (what `chaos run --format json` prints)."""
        return {
            "experiment": self.experiment,
            "target": self.target,
            "faults": self.faults,
            "seed": self.seed,
            "workdir": self.workdir,
            "counts": self.counts,
            "events": [asdict(e) for e in self.events],
            "checks": [asdict(f) for f in self.checks],
            "phases": self.phases,
            "logs": self.logs,
        }

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for event in self.events:
            out[event.verdict] += 1
        return out


def run_experiment(
    path: Path,
    *,
    store: Path | None = None,
    seed: int | None = None,
    workdir: Path | None = None,
    region: str | None = None,
    profile: str | None = None,
) -> ChaosReport:
    """Run the experiment at `path` and judge every event.

    Raises:
        ExperimentError: the file cannot be used. FaultError: a fault spec is bad. PlanError,
        ReplayError, AwsError (aws target): the plan, a replay guard or an AWS call.
    """
    experiment = load_experiment(path)
    faults = parse_faults(list(experiment.faults))
    seed = experiment.seed if seed is None else seed
    work = workdir or Path(tempfile.mkdtemp(prefix=f"tracekit-chaos-{experiment.name}-"))
    report = ChaosReport(
        experiment.name, experiment.target, [f.text for f in faults], seed, str(work), [], []
    )
    if experiment.target == "lab":
        plan, clean, faulted, before, after = _run_lab(experiment, faults, seed, work, store, report)
        ages = event_ages({e.event_id: e.sent_at for e in experiment.events}, dt.datetime.now(dt.UTC))
    else:
        from tracekit.chaos.aws_target import event_first_seen

        plan, clean, faulted, before, after = _run_aws(experiment, seed, work, store, region, profile, report)
        first_seen = event_first_seen(store, [e.event_id for e in plan.entries])
        ages = event_ages(first_seen, dt.datetime.now(dt.UTC))
    report.events = _verdicts(experiment, plan, clean, faulted, before, after)
    report.checks = _checks(experiment, clean, before, ages)
    return report


Readings = dict[str, dict[str, Reading]]
Outcome = tuple[Plan, Phase, Phase, Readings, Readings]


def _run_lab(
    experiment: Experiment, faults: list[Any], seed: int, work: Path, store: Path | None, report: ChaosReport
) -> Outcome:
    """Both phases in the lab, each from empty consumer state; their logs go to the store when given."""
    plan = lab_plan(experiment)
    clean_copies = schedule(plan.entries, [], seed=seed)
    faulted_copies = schedule(plan.entries, faults, seed=seed)
    clean = run_phase(experiment, plan, clean_copies, name="clean", state_dir=work / "clean", seed=seed)
    ctx = ProbeContext(base=experiment.base, store=store)
    before = _read_all(experiment, plan, ctx, clean)
    assert clean.world is not None
    faulted = run_phase(
        experiment,
        plan,
        faulted_copies,
        name="faulted",
        state_dir=work / "faulted",
        seed=seed + 1,
        start_ms=int(clean.world.now) + PHASE_GAP_MS,
    )
    after = _read_all(experiment, plan, ctx, faulted)
    report.phases = {
        p.name: _phase_counts(p, copies) for p, copies in ((clean, clean_copies), (faulted, faulted_copies))
    }
    report.logs = _logs(experiment, [clean, faulted], work, store)
    return plan, clean, faulted, before, after


def _run_aws(
    experiment: Experiment,
    seed: int,
    work: Path,
    store: Path | None,
    region: str | None,
    profile: str | None,
    report: ChaosReport,
) -> Outcome:
    """Both phases as replays of the plan to the staging account; the faulted one on top of the clean one."""
    from tracekit.chaos.aws_target import chaos_aws, collect_consumer_logs, experiment_plan, run_aws_phase

    aws = chaos_aws(experiment, region, profile)
    plan = experiment_plan(experiment, store, aws)
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    ctx = ProbeContext(base=experiment.base, store=store, aws=aws)
    phases = []
    readings = []
    for name, faults in (("clean", []), ("faulted", list(experiment.faults))):
        copies = schedule(plan.entries, parse_faults(faults), seed=seed)
        phase, run = run_aws_phase(
            experiment, plan, copies, aws, name=name, work=work, faults=faults, seed=seed, store=store
        )
        readings.append(_read_all(experiment, plan, ctx, phase))
        phases.append(phase)
        report.phases[name] = {**_phase_counts(phase, copies), "calls": run.calls, "throttled": run.throttled}
    report.logs = collect_consumer_logs(experiment, aws, store, started)
    return plan, phases[0], phases[1], readings[0], readings[1]


def _read_all(
    experiment: Experiment, plan: Plan, ctx: ProbeContext, phase: Phase
) -> dict[str, dict[str, Reading]]:
    """Every probe's reading for every event after `phase`."""
    ctx.state_dir = phase.state_dir
    ctx.environment = phase.environment
    ctx._snapshots.clear()
    readings: dict[str, dict[str, Reading]] = {}
    for entry in plan.entries:
        payload = _payload(entry.payload)
        readings[entry.entry_id] = {}
        for spec in experiment.probes:
            try:
                reading = Reading(read_probe(spec, ctx, entry.event_id, payload))
            except ProbeError as exc:
                reading = Reading(error=exc.line())
            readings[entry.entry_id][spec.name] = reading
    return readings


def _payload(text: str | None) -> Any:
    from tracekit import jsonio

    if text is None:
        return None
    try:
        return jsonio.loads(text)
    except ValueError:
        return text


def _verdicts(
    experiment: Experiment,
    plan: Plan,
    clean: Phase,
    faulted: Phase,
    before: dict[str, dict[str, Reading]],
    after: dict[str, dict[str, Reading]],
) -> list[EventVerdict]:
    out = []
    for entry in plan.entries:
        key = _business_key(experiment.key, _payload(entry.payload))
        mine = [d for d in clean.deliveries if d.entry_id == entry.entry_id]
        theirs = [d for d in faulted.deliveries if d.entry_id == entry.entry_id]
        out.append(judge(entry.event_id, key, mine, theirs, before[entry.entry_id], after[entry.entry_id]))
    return out


def _business_key(path: str | None, payload: Any) -> str | None:
    from tracekit.analyze.keys import parse_path

    if not path:
        return None
    value = payload
    for step in parse_path(path):
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and step < len(value) else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
        if value is None:
            return None
    return str(value)


def _checks(experiment: Experiment, clean: Phase, before: Readings, ages: dict[str, float]) -> list[Finding]:
    findings = check_key_setting(experiment.idempotency_key)
    by_event: dict[str, list[Any]] = {}
    for d in clean.deliveries:
        by_event.setdefault(d.entry_id, []).append(d)
    findings += check_recorded_keys(by_event, before)
    findings += check_dedup_window(experiment.dedup_window_s, ages)
    return findings


def _phase_counts(phase: Phase, copies: list[Copy]) -> dict[str, int]:
    return {
        "copies": len(copies),
        "delivered": sum(not d.dropped for d in phase.deliveries),
        "dropped": sum(d.dropped for d in phase.deliveries),
        "succeeded": sum(d.succeeded for d in phase.deliveries),
        "failed": sum(not d.dropped and not d.succeeded for d in phase.deliveries),
        **({"log_events": len(phase.world.logs)} if phase.world is not None else {}),
    }


def _logs(experiment: Experiment, phases: list[Phase], work: Path, store: Path | None) -> dict[str, Any]:
    """Write each phase's logs as filter-log-events output; ingest them into the store when given."""
    from tracekit.lab.artifacts import write_artifacts

    dirs = []
    for phase in phases:
        assert phase.world is not None
        out = work / "artifacts" / phase.name
        write_artifacts(
            phase.world, out, scenario=f"{experiment.name}-{phase.name}", dead_letter_queues=set()
        )
        dirs.append(out / "logs")
    result: dict[str, Any] = {"files": [str(d) for d in dirs]}
    if store is not None:
        from tracekit.collect.ingest import ingest_paths
        from tracekit.store import Store

        with Store.open(store, create=True) as st:
            ingested = ingest_paths(st, dirs)
        result["store"] = str(store)
        result["ingested"] = dict(ingested.counts)
    return result
