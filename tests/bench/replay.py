"""Benchmark `tracekit replay run` against a local moto server: API calls per message, tracekit's own CPU
time per message, and the achieved vs requested rate, per target (SQS, EventBridge, Kinesis).

Run by hand, not by pytest:

    .venv/bin/python tests/bench/replay.py [--seconds S] [--rates 50,200,500] [--concurrency C]

moto runs in a subprocess, so the CPU time this process spends (time.process_time around
`run_plan`) is tracekit's own: plan loading, the journal, batching, boto3 and the HTTP client. For each
target and rate it writes a plan of rate × S entries, runs it with `--apply --rate R` in-process
through `tracekit.replay.run.run_plan` and counts API calls with a botocore hook on the clients the
run uses (independent of the engine's own count). The achieved rate is measured from the calls:
messages sent after the first call, over the time from the first call to the last. Targets the
issue sets: ≤ 0.11 calls per message, achieved rate within 5% of the requested one.

What shapes the numbers: moto's SendMessageBatch slows down as the queue grows, so SQS runs purge the
queue every 0.2 s (the bench measures tracekit's pacing, not moto's queue). Before each target's runs
the bench measures the endpoint's ceiling: the senders alone, unpaced, on as many threads. A rate near
that ceiling measures moto (on a busy 2-core machine moto's SQS tops out around 400-520 msg/s), so it
is shown but not judged; nor is a run of fewer than 10 calls (Kinesis sends 500 records per call). So
that SQS at 500 msg/s is judged all the same, the SQS runs are repeated against a stand-in in its own
process that acknowledges every message at once ("sqs stand-in"; STS still goes to moto).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tracekit import jsonio  # noqa: E402
from tracekit.aws import Aws  # noqa: E402
from tracekit.replay.model import Entry, Plan, Source, SourceKind, Target, TargetType, save_plan  # noqa: E402
from tracekit.replay.run import RunOptions, run_plan  # noqa: E402
from tracekit.replay.targets import outgoing, sender_for  # noqa: E402

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's account
OPERATIONS = {
    TargetType.SQS: "SendMessageBatch",
    TargetType.EVENTBRIDGE: "PutEvents",
    TargetType.KINESIS: "PutRecords",
}
MIN_CALLS_FOR_RATE = 10
CEILING_SHARE = 0.9  # a requested rate above this share of the endpoint's ceiling is not judged
SERVICES = {TargetType.SQS: "sqs", TargetType.EVENTBRIDGE: "events", TargetType.KINESIS: "kinesis"}


@dataclass
class Calls:
    """When each send call of one run went out (a botocore before-send hook: retries count too)."""

    times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR": "false"},  # purge at will
    )
    return process, _wait_for(f"http://127.0.0.1:{port}", "/moto-api/", process)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(url: str, path: str, process: subprocess.Popen[bytes]) -> str:
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}{path}", timeout=1).close()
            return url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{url} did not start")


def make_target(kind: TargetType, name: str) -> Target:
    if kind is TargetType.SQS:
        url = boto3.client("sqs", region_name=REGION).create_queue(QueueName=name)["QueueUrl"]
        return Target(kind, url=url)
    if kind is TargetType.EVENTBRIDGE:
        arn = boto3.client("events", region_name=REGION).create_event_bus(Name=name)["EventBusArn"]
        return Target(kind, arn=arn)
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName=name, ShardCount=4)
    return Target(kind, arn=kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"])


def make_plan(target: Target, n: int, plan_id: str) -> Plan:
    attributes = (
        {"RequestID": {"DataType": "String", "StringValue": "req"}} if target.type is TargetType.SQS else {}
    )
    entries = [
        Entry(
            entry_id=f"e{i}",
            event_id=f"ev{i}",
            function_name="orders",
            source=Source(SourceKind.DESTINATION_RECORD, id=f"r{i}"),
            target=target,
            payload=jsonio.dumps({"order": f"o-{i}", "amount": i, "note": "x" * 200}),
            attributes=attributes,
            partition_key=f"customer-{i % 50}" if target.type is TargetType.KINESIS else None,
        )
        for i in range(n)
    ]
    return Plan(
        plan_id=plan_id, created_at="2026-11-26T00:00:00.000Z", selectors={}, store="", entries=entries
    )


@dataclass
class Row:
    target: str
    rate: float
    messages: int
    confirmed: int
    calls: int
    cpu_s: float
    wall_s: float
    achieved: float
    engine_achieved: float
    #: What the senders alone reach against this endpoint, unpaced, with as many threads.
    ceiling: float


def bench_target(
    target: Target, options: argparse.Namespace, tmp: Path, rates: list[float], label: str
) -> list[Row]:
    """Every requested rate against one target, after measuring the endpoint's ceiling."""
    with purging(target):
        ceiling = capacity(target, options.concurrency)
        rows = [run_once(target, rate, options, tmp, ceiling) for rate in rates]
    for row in rows:
        row.target = label
    return rows


def run_once(target: Target, rate: float, options: argparse.Namespace, tmp: Path, ceiling: float) -> Row:
    n = int(rate * options.seconds)
    plan_path = Path(tempfile.mkdtemp(dir=tmp)) / f"{target.type.value}-{rate:g}.json"
    save_plan(make_plan(target, n, f"bench-{target.type.value}-{rate:g}"), plan_path)
    aws = Aws(REGION, verb="cannot replay")
    calls = Calls()
    service = SERVICES[target.type]
    aws.client(service).meta.events.register(
        f"before-send.{service}.{OPERATIONS[target.type]}", _count(calls)
    )
    run_options = RunOptions(apply=True, rate=rate, concurrency=options.concurrency, allow_accounts=[ACCOUNT])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    report = run_plan(plan_path, aws, run_options)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    confirmed = int(report.counts.get("confirmed", 0))
    achieved = _achieved(calls, n)
    return Row(
        target.type.value,
        rate,
        n,
        confirmed,
        len(calls.times),
        cpu,
        wall,
        achieved,
        report.rate_achieved,
        ceiling,
    )


def capacity(target: Target, threads: int, n: int = 1000) -> float:
    """Messages per second the senders alone reach, unpaced, no journal: the endpoint's ceiling."""
    plan = make_plan(target, n, "ceiling")
    sender = sender_for(target, Aws(REGION))
    batches = list(sender.batches([outgoing(plan, entry, entry.payload or "") for entry in plan.entries]))
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = [r for batch in pool.map(sender.send, batches) for r in batch]
    elapsed = time.perf_counter() - started
    if not all(r.ok for r in results):
        raise SystemExit(f"the ceiling run to {target.type.value} failed: {results[0]}")
    return n / elapsed


@contextlib.contextmanager
def purging(target: Target) -> Iterator[None]:
    """Keep an SQS bench queue short: moto's SendMessageBatch slows down as a queue grows (from ~20 ms
    to ~200 ms per call over 600 messages), which would measure moto's queue, not tracekit."""
    if target.type is not TargetType.SQS or "AWS_ENDPOINT_URL_SQS" in os.environ:
        yield  # not SQS, or the acknowledging stand-in, which keeps nothing
        return
    done = threading.Event()

    def purge() -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        while not done.wait(0.2):
            sqs.purge_queue(QueueUrl=target.url)

    purger = threading.Thread(target=purge, daemon=True)
    purger.start()
    try:
        yield
    finally:
        done.set()
        purger.join()


def _count(calls: Calls) -> Any:
    def before_send(**_: Any) -> None:
        with calls.lock:
            calls.times.append(time.perf_counter())

    return before_send


def _achieved(calls: Calls, n: int) -> float:
    """Messages per second between the first and the last call: the messages of every call after
    the first (a batch's messages leave with its call), over the time they took."""
    if len(calls.times) < 2:
        return float("nan")
    times = sorted(calls.times)
    first_batch = n / len(times)  # batches are full but for the last; close enough for the estimate
    return (n - first_batch) / (times[-1] - times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of sending per run (default 6)")
    parser.add_argument("--rates", default="50,200,500", help="requested rates, msg/s (default 50,200,500)")
    parser.add_argument("--concurrency", type=int, default=4, help="replay run --concurrency (default 4)")
    parser.add_argument("--targets", default="sqs,eventbridge,kinesis", help="target types to run")
    parser.add_argument("--no-stand-in", action="store_true", help="skip the SQS stand-in runs")
    parser.add_argument("--serve-stand-in", type=int, metavar="PORT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_stand_in:
        serve_stand_in(options.serve_stand_in)
        return
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    rates = [float(r) for r in options.rates.split(",")]
    kinds = [TargetType(t.strip()) for t in options.targets.split(",")]

    process, url = start_moto()
    os.environ["AWS_ENDPOINT_URL"] = url
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in kinds:
                target = make_target(kind, f"bench-{kind.value}")
                rows.extend(bench_target(target, options, Path(tmp), rates, kind.value))
                print(f"  {kind.value} done", file=sys.stderr)
            if TargetType.SQS in kinds and not options.no_stand_in:
                rows.extend(bench_stand_in(options, Path(tmp), rates))
    finally:
        process.terminate()
        process.wait(timeout=10)
    print_table(rows, options)


def bench_stand_in(options: argparse.Namespace, tmp: Path, rates: list[float]) -> list[Row]:
    """The SQS runs again against a stand-in that acknowledges every message at once (STS and the
    rest still go to moto): the pacing measured without moto's own ceiling."""
    process, url = start_stand_in()
    os.environ["AWS_ENDPOINT_URL_SQS"] = url
    try:
        target = Target(TargetType.SQS, url=f"{url}/{ACCOUNT}/stand-in")
        return bench_target(target, options, tmp, rates, "sqs stand-in")
    finally:
        del os.environ["AWS_ENDPOINT_URL_SQS"]
        process.terminate()
        process.wait(timeout=10)


def start_stand_in() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    script = [sys.executable, __file__, "--serve-stand-in", str(port)]
    process = subprocess.Popen(script, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, _wait_for(f"http://127.0.0.1:{port}", "/", process)


def serve_stand_in(port: int) -> None:
    """Answer every SendMessageBatch (SQS JSON protocol) with success for each entry."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:
            self._answer(b"{}")

        def do_POST(self) -> None:
            body = jsonio.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            entries = body.get("Entries", []) if isinstance(body, dict) else []
            ok = [
                {"Id": e["Id"], "MessageId": str(uuid.uuid4()), "MD5OfMessageBody": _md5(e["MessageBody"])}
                for e in entries
            ]
            self._answer(jsonio.dumpb({"Successful": ok, "Failed": []}))

        def _answer(self, data: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def print_table(rows: list[Row], options: argparse.Namespace) -> None:
    header = ("target", "rate asked", "messages", "confirmed", "API calls", "calls/msg", "CPU ms/msg",
              "achieved/s", "engine says", "ceiling/s", "off by", "verdict")  # fmt: skip
    lines = [_line(r) for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    print(f"tracekit replay run against moto (tests/bench/replay.py, {options.seconds:g} s per run, "
          f"concurrency {options.concurrency})")  # fmt: skip
    for line in [header, *lines]:
        print("  ".join(str(x).rjust(w) for x, w in zip(line, widths, strict=True)))
    print("targets: ≤ 0.11 API calls per message; achieved rate within 5% of the requested one; every copy")
    print(
        "confirmed (the journal's count). ceiling/s: the senders alone, unpaced, against the same endpoint;"
    )
    print(f"the rate is not judged above {CEILING_SHARE:.0%} of it (endpoint-bound) or with fewer than")
    print(f"{MIN_CALLS_FOR_RATE} calls (few calls: 500-record Kinesis batches).")


def _line(r: Row) -> tuple[str, ...]:
    off = (r.achieved - r.rate) / r.rate
    if r.calls < MIN_CALLS_FOR_RATE:
        rate_note, rate_ok = "few calls", True
    elif r.rate > CEILING_SHARE * r.ceiling:
        rate_note, rate_ok = f"{off:+.1%} endpoint-bound", True
    else:
        rate_note, rate_ok = f"{off:+.1%}", abs(off) <= 0.05
    calls_ok = r.calls / r.messages <= 0.11
    verdict = "ok" if calls_ok and rate_ok and r.confirmed == r.messages else "MISSED"
    achieved = f"{r.achieved:.1f}" if r.calls > 1 else "-"
    return (r.target, f"{r.rate:g}", f"{r.messages:,}", f"{r.confirmed:,}", f"{r.calls:,}",
            f"{r.calls / r.messages:.3f}", f"{r.cpu_s / r.messages * 1000:.2f}", achieved,
            f"{r.engine_achieved:.1f}", f"{r.ceiling:.0f}", rate_note, verdict)  # fmt: skip


if __name__ == "__main__":
    main()
