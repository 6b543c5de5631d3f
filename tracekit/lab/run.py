"""Run one scenario end to end: build the world and the function, feed the events to the invocation
model, let virtual time run out, write the artifacts (and publish them when asked)."""

from __future__ import annotations

import copy
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tracekit.lab.runtime import LambdaFunction
from tracekit.lab.scenario import OK, EventSpec, Fault, RandomSpec, Scenario, ScenarioError, load_scenario
from tracekit.lab.world import World

MAX_RANDOM_FAULTS = 12  # a bulk event fails at most this many attempts in a row


class Model(Protocol):
    source: str

    def submit(self, spec: EventSpec, arrival: float) -> None: ...
    def dead_letter_queues(self) -> set[str]: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class LabReport:
    """What a run produced: where, how many of each artifact, and how the events ended."""

    scenario: str
    out: Path
    counts: dict[str, int]
    outcomes: dict[str, int]
    virtual_seconds: float


def run_scenario(path: Path, out: Path, *, seed: int = 0, publish: bool = False) -> LabReport:
    """Run the scenario at `path`, writing artifacts into `out` (replaced if it exists)."""
    from tracekit.lab.artifacts import write_artifacts

    scenario = load_scenario(path)
    world = World(
        scenario.start_ms,
        seed,
        scenario.function.region,
        scenario.function.account,
        namespace=scenario.name,
    )
    function = LambdaFunction(scenario.function, world)
    model = _model(scenario, world, function)
    for spec, arrival in _arrivals(scenario, world):
        model.submit(spec, arrival)
    world.clock.run(None if scenario.stop_s is None else scenario.start_ms + scenario.stop_s * 1000)
    model.finish()
    if out.exists():
        shutil.rmtree(out)
    counts = write_artifacts(
        world, out, scenario=scenario.name, dead_letter_queues=model.dead_letter_queues()
    )
    if publish:
        from tracekit.lab.publish import publish_world

        counts.update(publish_world(world, scenario, model.dead_letter_queues()))
    outcomes: dict[str, int] = {}
    for event in world.events.values():
        outcomes[event.outcome] = outcomes.get(event.outcome, 0) + 1
    return LabReport(scenario.name, out, counts, outcomes, (world.now - scenario.start_ms) / 1000)


def _model(scenario: Scenario, world: World, function: LambdaFunction) -> Model:
    try:
        if scenario.source == "async":
            from tracekit.lab.models.asynchronous import AsyncModel

            return AsyncModel(scenario, world, function)
        if scenario.source == "sqs":
            from tracekit.lab.models.sqs import SqsModel

            return SqsModel(scenario, world, function)
        from tracekit.lab.models.streams import StreamModel

        return StreamModel(scenario, world, function)
    except (KeyError, TypeError, ValueError) as exc:
        raise ScenarioError("bad [source] settings", str(scenario.path), str(exc)) from None


def _arrivals(scenario: Scenario, world: World) -> list[tuple[EventSpec, float]]:
    start = scenario.start_ms
    arrivals = [(spec, start + spec.at_s * 1000) for spec in scenario.events]
    if scenario.random:
        arrivals.extend(_random_events(scenario.random, world.rng, start))
    return arrivals


def _random_events(spec: RandomSpec, rng: random.Random, start: float) -> list[tuple[EventSpec, float]]:
    """Bulk events from the payload template; each attempt fails with the configured rates."""
    kinds = list(spec.fault_rates)
    weights = [spec.fault_rates[k] for k in kinds]
    ok_weight = 1.0 - sum(weights)
    out = []
    for n in range(spec.events):
        faults: list[Fault] = []
        while len(faults) < MAX_RANDOM_FAULTS:
            kind = rng.choices(kinds + ["ok"], weights + [ok_weight])[0] if kinds else "ok"
            if kind == "ok":
                break
            faults.append(Fault(kind, when="after" if kind == "timeout" else "before"))
        event = EventSpec(
            payload=_fill(spec.payload, n),
            faults=tuple(faults) or (OK,),
            key=f"key-{n % max(spec.keys, 1)}",
            duplicate=rng.random() < spec.duplicate_rate,
        )
        out.append((event, start + n * 1000 / spec.rate_per_s))
    return out


def _fill(template: Any, n: int) -> Any:
    """Copy the payload template with "{n}" replaced by the event's number (ints stay ints)."""
    if isinstance(template, str):
        if template == "{n}":
            return n
        return template.replace("{n}", str(n))
    if isinstance(template, dict):
        return {k: _fill(v, n) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, n) for v in template]
    return copy.copy(template)
