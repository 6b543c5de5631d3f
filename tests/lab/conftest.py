"""Shared helpers for the lab tests: run a scenario written inline, then read back what it left behind.

`run_lab(toml_text, seed=0)` writes the scenario into the test's tmp_path (`{handlers}` in the text is
replaced by this folder's `handlers/` directory), runs it with `tracekit.lab.run.run_scenario` and
returns a `LabRun`: the truth document (events, batches), the log events, the messages of each queue,
the destination records and S3 objects, and the same artifacts ingested by tracekit's own ingest into a
fresh store (`invocations()`, `quarantined()`). Given a Path instead of text, it runs that scenario file
where it is (a shipped sample, whose handler paths are relative to it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tracekit import jsonio
from tracekit.collect.ingest import ingest_paths
from tracekit.lab.run import LabReport, run_scenario
from tracekit.store import Store

HANDLERS = Path(__file__).resolve().parent / "handlers"
ARTIFACT_DIRS = ("logs", "destinations", "dlq")


@dataclass
class LabRun:
    """The artifacts of one lab run, read back as a user (or ingest) would see them."""

    out: Path
    report: LabReport | None
    truth: dict[str, Any]
    _store: Store | None = field(default=None, repr=False)

    @property
    def events(self) -> list[dict[str, Any]]:
        """truth.json's events, in the order the run created them."""
        return list(self.truth["events"])

    def event(self, index: int = 0) -> dict[str, Any]:
        return self.events[index]

    @property
    def batches(self) -> list[dict[str, Any]]:
        """truth.json's batches, in the order they were invoked."""
        return list(self.truth["batches"])

    def logs(self) -> list[dict[str, Any]]:
        """Every filter-log-events event of every log group, in file order."""
        lines: list[dict[str, Any]] = []
        for path in sorted((self.out / "logs").glob("*.ndjson")):
            lines.extend(jsonio.loads(line) for line in path.read_bytes().splitlines() if line)
        return lines

    def messages(self, queue: str) -> list[dict[str, Any]]:
        """The receive-message messages of `queue` (a destination or a DLQ), all pages in order."""
        pages = sorted(self.out.glob(f"*/{queue}.receive-message.*.json"))
        return [m for page in pages for m in jsonio.loads(page.read_bytes())["Messages"]]

    def bodies(self, queue: str) -> list[Any]:
        """The messages' bodies of `queue`, parsed as JSON."""
        return [jsonio.loads(m["Body"]) for m in self.messages(queue)]

    def destination_records(self, queue: str) -> list[dict[str, Any]]:
        """The invocation records that reached the queue `queue`, SNS notifications unwrapped."""
        bodies = self.bodies(queue)
        return [jsonio.loads(b["Message"]) if b.get("Type") == "Notification" else b for b in bodies]

    def s3_objects(self, bucket: str) -> dict[str, dict[str, Any]]:
        """The JSON objects written to the S3 destination `bucket`, by key."""
        root = self.out / "destinations" / "s3" / bucket
        return {
            p.relative_to(root).as_posix(): jsonio.loads(p.read_bytes())
            for p in root.rglob("*")
            if p.is_file()
        }

    def store(self) -> Store:
        """All artifacts ingested with tracekit's own ingest into a store of this run's own."""
        if self._store is None:
            root = self.out.parent / f"{self.out.name}-store"
            inputs = [self.out / d for d in ARTIFACT_DIRS if (self.out / d).is_dir()]
            with Store.open(root, create=True) as store:
                ingest_paths(store, inputs)
            self._store = Store.open(root)
        return self._store

    def invocations(self) -> list[dict[str, Any]]:
        """The `invocations` rows ingest derived from the logs, in time order."""
        return self.store().query("SELECT * FROM invocations ORDER BY start_time, log_stream")

    def quarantined(self) -> list[dict[str, Any]]:
        return self.store().query("SELECT * FROM quarantine")


RunLab = Callable[..., LabRun]


@pytest.fixture
def run_lab(tmp_path: Path) -> RunLab:
    """`run_lab(toml_text or path, seed=0, name="scenario")` runs a scenario; see the module docstring."""
    counter = iter(range(1_000_000))

    def run(scenario: str | Path, *, seed: int = 0, name: str = "scenario") -> LabRun:
        n = next(counter)
        if isinstance(scenario, Path):
            path = scenario
        else:
            path = tmp_path / f"{name}-{n}.toml"
            path.write_text(scenario.replace("{handlers}", HANDLERS.as_posix()), encoding="utf-8")
        out = tmp_path / f"{name}-{n}-out"
        report = run_scenario(path, out, seed=seed)
        return LabRun(out, report, jsonio.loads((out / "truth.json").read_bytes()))

    return run
