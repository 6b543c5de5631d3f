"""Fixtures for the analyzer tests: run a lab scenario, ingest what it wrote, build analyzer tables.

`lab_store(scenario, seed=1, modules=("items", "asynchronous"), settings=None)` runs the scenario
(a path, or TOML text whose `{handlers}` becomes tests/analyze/handlers and whose
`{samples}` becomes samples/handlers), ingests its logs/destinations/dlq with the function's log
group, opens a DuckDB connection on the store, creates the `function_settings` table from
`settings` ({function: {setting: value}}), runs `tracekit.analyze.<module>.build(con)` for each
module in order, and returns a `LabAnalysis` with the truth document (for comparison only), the
store and the connection.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tracekit import jsonio
from tracekit.collect.ingest import ingest_paths
from tracekit.lab.run import run_scenario
from tracekit.store import Store

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = Path(__file__).resolve().parent / "handlers"
SAMPLE_HANDLERS = ROOT / "samples" / "handlers"
SCENARIOS = ROOT / "samples" / "scenarios"


@dataclass
class LabAnalysis:
    truth: dict[str, Any]
    store: Store
    con: duckdb.DuckDBPyConnection
    out: Path

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def truth_events(self) -> dict[str, dict[str, Any]]:
        return {e["event_id"]: e for e in self.truth["events"]}

    @staticmethod
    def visible(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Truth attempts the logs can show: throttled attempts never reach a log stream."""
        return [a for a in attempts if a["outcome"] != "throttled"]


LabStore = Callable[..., LabAnalysis]


def create_function_settings(con: duckdb.DuckDBPyConnection, settings: dict[str, dict[str, Any]]) -> None:
    con.execute(
        "CREATE OR REPLACE TEMP TABLE function_settings "
        "(function_name VARCHAR, setting VARCHAR, value VARCHAR)"
    )
    rows = [(f, k, str(v)) for f, table in settings.items() for k, v in table.items()]
    if rows:
        con.executemany("INSERT INTO function_settings VALUES (?, ?, ?)", rows)


@pytest.fixture
def lab_store(tmp_path: Path) -> Iterator[LabStore]:
    opened: list[LabAnalysis] = []

    def run(
        scenario: Path | str,
        *,
        seed: int = 1,
        modules: tuple[str, ...] = ("items",),
        settings: dict[str, dict[str, Any]] | None = None,
    ) -> LabAnalysis:
        base = tmp_path / f"run{len(opened)}"
        base.mkdir()
        if isinstance(scenario, str):
            path = base / "scenario.toml"
            text = scenario.replace("{handlers}", HANDLERS.as_posix()).replace(
                "{samples}", SAMPLE_HANDLERS.as_posix()
            )
            path.write_text(text)
        else:
            path = scenario
        function = tomllib.loads(path.read_text())["function"]["name"]
        out = base / "out"
        run_scenario(path, out, seed=seed)
        store = Store.open(base / "store", create=True)
        inputs = [out / d for d in ("logs", "destinations", "dlq") if (out / d).is_dir()]
        report = ingest_paths(store, inputs, log_group=f"/aws/lambda/{function}")
        assert report.counts["quarantined"] == 0
        con = store.connect()
        create_function_settings(con, settings or {})
        for module in modules:
            importlib.import_module(f"tracekit.analyze.{module}").build(con)
        analysis = LabAnalysis(jsonio.loads((out / "truth.json").read_bytes()), store, con, out)
        opened.append(analysis)
        return analysis

    yield run
    for analysis in opened:
        analysis.con.close()
        analysis.store.release()
