"""`tracekit chaos run` as a user runs it: the installed CLI in a subprocess, on the shipped experiment."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = REPO / "replays" / "experiments" / "orders-duplicates.toml"
CliRun = Callable[..., subprocess.CompletedProcess[str]]  # the tracekit_cli fixture


def test_shipped_experiment_judges_the_idempotent_consumer(tracekit_cli: CliRun, tmp_path: Path) -> None:
    store = tmp_path / "store"
    done = tracekit_cli(
        "chaos", "run", EXPERIMENT, "--store", store, "--workdir", tmp_path / "w", "-f", "json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["counts"] == {"idempotent": 3, "not_idempotent": 0, "inconclusive": 0}
    assert [e["key"] for e in report["events"]] == ["4716", "4717", "4718"]
    assert report["checks"] == []
    # Three clean deliveries and nine faulted ones (duplicate=2: the original and two copies each),
    # all in the store from the lab's logs.
    assert report["phases"]["clean"]["copies"] == 3 and report["phases"]["faulted"]["copies"] == 9
    rows = tracekit_cli(
        "sql",
        "SELECT count(*) AS n FROM invocations WHERE status = 'success'",
        "--store",
        store,
        "-f",
        "json",
    )
    assert json.loads(rows.stdout) == [{"n": 12}]
    # The consumer's own state, per phase: each order written once.
    state = json.loads((tmp_path / "w" / "faulted" / "orders.json").read_text())
    assert sorted(state["orders"]) == ["4716", "4717", "4718"]


def test_counter_consumer_table_output_shows_the_difference(tracekit_cli: CliRun, tmp_path: Path) -> None:
    text = EXPERIMENT.read_text().replace("orders_idempotent.py", "orders_counter.py")
    experiment = tmp_path / "counter.toml"
    experiment.write_text(text.replace("../../samples", str(REPO / "samples")))
    done = tracekit_cli("chaos", "run", experiment)
    assert done.returncode == 0, done.stderr
    assert "0 idempotent, 3 not_idempotent, 0 inconclusive" in done.stdout
    # order 4718 has quantity 5: one delivery reserved 5, three reserved 15.
    (line,) = [line for line in done.stdout.splitlines() if "order-4718" in line]
    cells = [cell.strip() for cell in line.split("│")[1:-1]]
    assert cells[2:5] == ["not_idempotent", "3", "3"]
    assert cells[6:] == ["order-record", '{"deliveries":1,"reserved":5}', '{"deliveries":3,"reserved":15}']


def test_bad_experiment_is_one_error_line(tracekit_cli: CliRun, tmp_path: Path) -> None:
    experiment = tmp_path / "bad.toml"
    experiment.write_text('target = "lab"\nfaults = ["duplicate=two"]\n')
    done = tracekit_cli("chaos", "run", experiment)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"Error: bad experiment: {experiment}. no [[probes]]: nothing would read the consumer's effect"
    ]
