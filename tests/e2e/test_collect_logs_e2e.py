"""`tracekit collect logs` as a subprocess against moto over HTTP, killed mid-run and run again.

The oracle is what the test put into CloudWatch Logs (moto), and the eventIds moto reports to a
direct FilterLogEvents past tracekit. 25,000 events make three FilterLogEvents pages at the API's
page maximum (10,000). The fault-injecting proxy holds the second page's request; the collector is
killed while it waits, which leaves page 1 in the spool and the nextToken in the cursor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import CliRun
from tests.faultproxy import FaultProxy, Rule
from tracekit.store import Store

GROUP = "/aws/lambda/orders-worker"
STREAMS = 3
PER_STREAM = 8_334  # 25,002 events: pages of 10,000, 10,000 and 5,002
Row = tuple[str, int, str]


@pytest.fixture
def proxy(aws_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(aws_endpoint) as running:
        yield running


@pytest.fixture
def put_rows(aws_endpoint: str) -> list[Row]:
    """STREAMS streams of START lines 10 ms apart, interleaved in time, in the last hour."""
    logs = boto3.client("logs", endpoint_url=aws_endpoint, region_name="eu-west-1")
    logs.create_log_group(logGroupName=GROUP)
    start = int(time.time() * 1000) - 50 * 60_000
    rows: list[Row] = []
    for s in range(STREAMS):
        stream = f"2026/11/26/[$LATEST]{s:032x}"
        logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
        events = [
            {"timestamp": start + i * 10 + s, "message": f"START RequestId: {s}-{i:06d} Version: $LATEST\n"}
            for i in range(PER_STREAM)
        ]
        for k in range(0, len(events), 8_000):  # PutLogEvents takes at most 1 MB
            logs.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=events[k : k + 8_000])
        rows += [(stream, e["timestamp"], e["message"]) for e in events]
    return sorted(rows)


def moto_event_ids(aws_endpoint: str) -> list[str]:
    logs = boto3.client("logs", endpoint_url=aws_endpoint, region_name="eu-west-1")
    ids, token = [], None
    while True:
        page = logs.filter_log_events(logGroupName=GROUP, **({"nextToken": token} if token else {}))
        ids += [e["eventId"] for e in page["events"]]
        token = page.get("nextToken")
        if not token:
            return sorted(ids)


def stored(store: Path) -> tuple[list[Row], list[str]]:
    rows = Store.open(store).query(
        "SELECT log_stream, epoch_ms(timestamp) AS ms, message, event_id FROM log_events ORDER BY ALL"
    )
    return [(r["log_stream"], r["ms"], r["message"]) for r in rows], sorted(r["event_id"] for r in rows)


def env_for(proxy: FaultProxy) -> dict[str, str]:
    return {**os.environ, "AWS_ENDPOINT_URL": proxy.url, "PYTHONIOENCODING": "utf-8"}


def collect_args(store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tracekit", "collect", "logs", "--log-group", GROUP, "--since", "2h",
            "--store", str(store), "--max-rate", "50", *extra]  # fmt: skip


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_killed_collector_resumes_and_stores_every_event_once(
    proxy: FaultProxy, put_rows: list[Row], aws_endpoint: str, tmp_path: Path, kill: signal.Signals
) -> None:
    store = tmp_path / "store"
    proxy.add(Rule("FilterLogEvents", stall=True, skip=1, times=1))
    child = subprocess.Popen(
        collect_args(store), env=env_for(proxy), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proxy.wait_stalled(timeout=30), "the collector never asked for page 2"
        [spool] = list((store / "_spool").iterdir())
        assert sorted(p.name for p in spool.iterdir() if p.suffix == ".json") == [
            "00000001.json",
            "cursor.json",
        ]
        token = json.loads((spool / "cursor.json").read_text())["token"]
        child.send_signal(kill)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
    if kill == signal.SIGINT:
        assert child.returncode == 130
        assert "Interrupted; nothing half-written is visible in the store." in err
    assert stored(store) == ([], [])  # nothing visible yet: page 1 waits in the spool

    proxy.release()
    proxy.clear()
    proxy.add(Rule("FilterLogEvents", delay_s=0.4))  # slow enough for the progress line to show
    done = subprocess.run(
        collect_args(store, "--format", "json"),
        env=env_for(proxy),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["log_events"] == len(put_rows)
    rows, ids = stored(store)
    assert rows == put_rows  # nothing missing, nothing doubled
    assert ids == moto_event_ids(aws_endpoint)
    requests = [r.body for r in proxy.requests if r.operation == "FilterLogEvents"]
    # page 2 from the saved token, page 3, then the minutes since the killed run's window ended
    assert requests[0]["nextToken"] == token and requests[0]["limit"] == 10_000
    assert len(requests) == 3 and "nextToken" not in requests[2]
    assert "15,002 events, 3 pages" in done.stderr  # the progress line: pages 2 and 3 plus an empty one
    assert list(spool.iterdir()) == []  # every page ingested, the cursor cleared


def test_missing_log_group_is_one_error_line(aws_endpoint: str, tracekit_cli: CliRun, tmp_path: Path) -> None:
    done = tracekit_cli("collect", "logs", "--log-group", "/aws/lambda/nope", "--store", tmp_path / "s")
    assert done.returncode == 2
    assert done.stderr == (
        "Error: cannot collect: log group /aws/lambda/nope does not exist: region eu-west-1. "
        "Check --log-group, --region and --profile\n"
    )


def test_second_run_adds_nothing(
    put_rows: list[Row], aws_endpoint: str, tracekit_cli: CliRun, tmp_path: Path
) -> None:
    args: list[Any] = ["collect", "logs", "--log-group", GROUP, "--store", tmp_path / "s", "-f", "json", "-q"]
    first = tracekit_cli(*args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["log_events"] == len(put_rows)
    second = tracekit_cli(*args)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["log_events"] == 0
    assert stored(tmp_path / "s")[0] == put_rows
