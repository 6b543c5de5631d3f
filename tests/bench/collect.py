"""Benchmark `tracekit collect logs` against a moto server: API calls per 10,000 log events and events/s.

Run by hand, not by pytest:

    .venv/bin/python tests/bench/collect.py [--events N] [--streams S] [--max-rate R]

It starts its own moto server, puts N Lambda log events (default 100,000) across S log streams,
and runs `tracekit collect logs` as a user would (a subprocess, AWS_ENDPOINT_URL pointing at the
counting proxy of tests/faultproxy.py in front of moto). It prints one table and a verdict on the
target issue 5 sets: no more FilterLogEvents calls than the page limits require (ceil(N / 10,000)).
Speed against a local emulator says little about AWS, where the pace (--max-rate, default 4
requests a second) and the network decide; it is printed, not judged.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.faultproxy import FaultProxy  # noqa: E402

GROUP = "/aws/lambda/bench-orders"
PAGE_LIMIT = 10_000  # FilterLogEvents events per page at most (the API's `limit` maximum)
PUT_BATCH = 5_000  # events per PutLogEvents call (the API takes at most 10,000 and 1 MB)


def invocation_lines(stream: int, n: int, start_ms: int) -> list[dict[str, Any]]:
    """`n` log events of one stream: START, an application line, END and REPORT per invocation."""
    events = []
    for i in range(n):
        rid = f"{stream:04x}{i // 4:08x}-0000-4000-8000-000000000000"
        kind = i % 4
        message = (
            f"START RequestId: {rid} Version: $LATEST\n",
            f"2026-11-26T10:00:00.000Z\t{rid}\tINFO\tprocessed order {i}\n",
            f"END RequestId: {rid}\n",
            f"REPORT RequestId: {rid}\tDuration: 12.50 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\t"
            "Max Memory Used: 64 MB\t\n",
        )[kind]
        events.append({"timestamp": start_ms + i * 5 + stream, "message": message})
    return events


def put_events(endpoint: str, total: int, streams: int) -> None:
    logs = boto3.client("logs", endpoint_url=endpoint, region_name="eu-west-1")
    logs.create_log_group(logGroupName=GROUP)
    start_ms = int(time.time() * 1000) - 3 * 3600_000
    for s in range(streams):
        name = f"2026/11/26/[$LATEST]{s:032x}"
        logs.create_log_stream(logGroupName=GROUP, logStreamName=name)
        events = invocation_lines(s, total // streams + (s < total % streams), start_ms)
        for k in range(0, len(events), PUT_BATCH):
            logs.put_log_events(logGroupName=GROUP, logStreamName=name, logEvents=events[k : k + PUT_BATCH])


def collect(proxy: FaultProxy, store: Path, max_rate: float) -> tuple[dict[str, Any], float]:
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
    args = [sys.executable, "-m", "tracekit", "collect", "logs", "--log-group", GROUP, "--since", "1d",
            "--store", str(store), "--max-rate", str(max_rate), "--format", "json", "--quiet"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"collect failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="log events to put (default 100,000)")
    parser.add_argument("--streams", type=int, default=4, help="log streams (default 4)")
    parser.add_argument("--max-rate", type=float, default=4.0, help="collect's --max-rate (default 4)")
    options = parser.parse_args()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    os.environ["AWS_DEFAULT_REGION"] = "eu-west-1"

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        started = time.perf_counter()
        put_events(endpoint, options.events, options.streams)
        put_s = time.perf_counter() - started
        with FaultProxy(endpoint) as proxy, tempfile.TemporaryDirectory() as tmp:
            counts, elapsed = collect(proxy, Path(tmp) / "store", options.max_rate)
            calls = proxy.counts
    finally:
        server.stop()

    filter_calls = calls.get("FilterLogEvents", 0)
    others = ", ".join(f"{k} {v}" for k, v in calls.items() if k != "FilterLogEvents") or "none"
    minimum = math.ceil(options.events / PAGE_LIMIT)
    rows = [
        ("log events put", f"{options.events:,} in {options.streams} streams ({put_s:.1f} s)"),
        ("log events stored", f"{counts['log_events']:,}"),
        ("invocations derived", f"{counts['invocations']:,}"),
        ("FilterLogEvents calls", f"{filter_calls:,}"),
        ("other API calls", others),
        ("calls per 10,000 events", f"{filter_calls / options.events * 10_000:.2f}"),
        ("minimum the page limits require", f"{minimum:,} (ceil(N / {PAGE_LIMIT:,}))"),
        ("wall time (CLI subprocess)", f"{elapsed:.2f} s at --max-rate {options.max_rate:g}"),
        ("events/s", f"{options.events / elapsed:,.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"tracekit collect logs against moto (tests/bench/collect.py)\n{'-' * (width + 40)}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    complete = counts["log_events"] == options.events
    met = filter_calls <= minimum and complete
    print(f"no more calls than the page limits require: {'met' if met else 'NOT met'}")
    if not complete:
        print(f"(stored {counts['log_events']:,} of {options.events:,} events)")


if __name__ == "__main__":
    main()
