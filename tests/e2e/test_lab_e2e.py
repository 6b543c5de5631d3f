"""Every shipped scenario runs from the command line, its artifacts ingest without a quarantined row,
and the committed samples/lab/ output is exactly what the scenarios produce today."""

from __future__ import annotations

import filecmp
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tracekit import jsonio

CliRun = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "samples" / "scenarios").glob("*.toml"))
SAMPLE_SEED = "1"  # the seed `make samples` uses


def test_at_least_six_scenarios_ship() -> None:
    assert len(SCENARIOS) >= 6


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_artifacts_ingest_cleanly(scenario: Path, tmp_path: Path, tracekit_cli: CliRun) -> None:
    out = tmp_path / "out"
    run = tracekit_cli("lab", "run", scenario, "--out", out, "--seed", SAMPLE_SEED, "-f", "json")
    assert run.returncode == 0, run.stderr
    truth = jsonio.loads((out / "truth.json").read_bytes())
    assert truth["events"], "a scenario must produce events"
    inputs = [out / d for d in ("logs", "destinations", "dlq") if (out / d).is_dir()]
    [log_file] = (out / "logs").iterdir()
    group = "/aws/lambda/" + truth["events"][0]["function"]
    store = tmp_path / "store"
    ingest = tracekit_cli("ingest", *inputs, "--store", store, "--log-group", group, "-f", "json")
    assert ingest.returncode == 0, ingest.stderr
    counts = jsonio.loads(ingest.stdout)
    assert counts["quarantined"] == 0, ingest.stderr
    assert counts["log_events"] == sum(1 for _ in log_file.open())
    assert counts["invocations"] > 0


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_committed_samples_match_their_scenario(scenario: Path, tmp_path: Path, tracekit_cli: CliRun) -> None:
    committed = ROOT / "samples" / "lab" / scenario.stem
    assert committed.is_dir(), f"run `make samples`: {committed} is missing"
    out = tmp_path / scenario.stem
    run = tracekit_cli("lab", "run", scenario, "--out", out, "--seed", SAMPLE_SEED, "-f", "json")
    assert run.returncode == 0, run.stderr
    assert _tree(out) == _tree(committed), "samples/lab is stale: run `make samples`"
    for rel in _tree(out):
        assert filecmp.cmp(out / rel, committed / rel, shallow=False), f"{rel} differs: run `make samples`"


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
