"""Shared helpers for the collect tests.

Every test ingests into a real store (Parquet + DuckDB) under its own `tmp_path` through the Python
API, exactly as `tracekit ingest` does, and reads the tables back with SQL.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tracekit import jsonio
from tracekit.collect.ingest import ingest_paths
from tracekit.store import Store

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TABLES = ("log_events", "invocations", "destination_records", "dead_letters", "quarantine")


def fixture_path(relative: str) -> Path:
    """A file under tests/fixtures (e.g. "logs/old_style_timeout.txt")."""
    path = FIXTURES / relative
    assert path.is_file(), f"missing fixture {path}"
    return path


def totals(store: Store) -> dict[str, int]:
    """Rows per table currently visible in `store`."""
    return {t: store.query(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in TABLES}


def awslogs_data(payload: dict[str, Any]) -> str:
    """base64(gzip(json)) as CloudWatch Logs puts it in a subscription event's awslogs.data."""
    return base64.b64encode(gzip.compress(jsonio.dumpb(payload))).decode("ascii")


class Ingest:
    """Ingest files into one store per test; call it as `store, counts = ingest(path, ...)`.

    Also carries the helpers (`fixture`, `write`, `totals`, `awslogs_data`) so test modules need not
    import this conftest by name.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store_path = root / "store"
        self.inputs = root / "inputs"
        self.inputs.mkdir(parents=True, exist_ok=True)

    def __call__(
        self, *files: Path | str, log_group: str | None = None, queue: str | None = None
    ) -> tuple[Store, dict[str, int]]:
        with Store.open(self.store_path, create=True) as store:
            report = ingest_paths(store, [Path(f) for f in files], log_group=log_group, queue=queue)
        return Store.open(self.store_path), dict(report.counts)

    fixture = staticmethod(fixture_path)
    totals = staticmethod(totals)
    awslogs_data = staticmethod(awslogs_data)

    def write(self, name: str, content: str | bytes) -> Path:
        """Write an inline input file (text is written as UTF-8, byte for byte)."""
        path = self.inputs / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path


@pytest.fixture
def ingest(tmp_path: Path) -> Ingest:
    return Ingest(tmp_path)


@pytest.fixture
def write(ingest: Ingest) -> Callable[[str, str | bytes], Path]:
    return ingest.write
