"""The kill test (issue 6): `tracekit replay run --apply` over 1,000 entries, SIGKILLed at twenty
seeded-random instants and resumed each time, ends with every entry confirmed, every planned message in
the target queue (moto, read back in full), and duplicates only of copies the journal showed in flight
when a kill landed.

The rate is held low enough (60 msg/s) that the twenty kills land while sending, not after the end:
each run gets a fraction of a second past its start-up before the kill. The entries go to five queues
of 200: moto's SendMessageBatch and ReceiveMessage slow down with every message a queue holds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

from tracekit import jsonio
from tracekit.replay import journal as jn
from tracekit.replay.model import MARKER, Entry, Plan, Source, SourceKind, Target, TargetType, save_plan

REGION = "eu-west-1"
ACCOUNT = "123456789012"
ENTRIES = 1000
KILLS = 20
QUEUES = 5


def write_plan(path: Path, urls: list[str]) -> Path:
    entries = [
        Entry(
            entry_id=f"e{i}",
            event_id=f"ev{i}",
            function_name="orders",
            source=Source(SourceKind.DESTINATION_RECORD, id=f"r{i}"),
            target=Target(TargetType.SQS, url=urls[i % len(urls)]),
            payload=jsonio.dumps({"order": i}),
        )
        for i in range(ENTRIES)
    ]
    save_plan(Plan("kill", "2026-11-26T00:00:00.000Z", {}, "", entries), path)
    return path


def read_queue(url: str) -> list[dict[str, Any]]:
    """Every message, each received once (held for ten minutes rather than deleted: fewer calls)."""
    sqs, seen = boto3.client("sqs", region_name=REGION), []
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=600
        ).get("Messages", [])
        if not got:
            return seen
        seen.extend(got)


def test_kill_twenty_times_and_resume_loses_nothing(aws_endpoint: str, tmp_path: Path) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    urls = [sqs.create_queue(QueueName=f"orders-{n}")["QueueUrl"] for n in range(QUEUES)]
    plan = write_plan(tmp_path / "kill.json", urls)
    command = [sys.executable, "-m", "tracekit", "replay", "run", str(plan), "--apply", "--resume"]
    command += ["--rate", "60", "--concurrency", "4", "--allow-account", ACCOUNT, "--region", REGION]
    command += ["--quiet", "--format", "json"]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    rng = random.Random(20261126)
    in_flight_at_kills: set[str] = set()
    journal = jn.journal_path(plan)

    for _ in range(KILLS):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.6, 1.6))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        if journal.exists():
            in_flight_at_kills |= set(jn.read_journal(journal).in_flight())
    confirmed_before_last = jn.read_journal(journal).counts()["confirmed"]

    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    assert final.returncode == 0, final.stderr
    report = json.loads(final.stdout)
    assert report["counts"]["confirmed"] == ENTRIES and report["failures"] == []
    assert 0 < confirmed_before_last < ENTRIES  # the kills landed while sending, not after the end
    messages = [m for url in urls for m in read_queue(url)]
    arrived = Counter(m["MessageAttributes"][MARKER]["StringValue"].split(":")[1] for m in messages)
    assert set(arrived) == {f"e{i}" for i in range(ENTRIES)}  # no loss
    duplicated = {f"{entry}#0" for entry, n in arrived.items() if n > 1}
    assert duplicated <= in_flight_at_kills  # duplicates only where the journal said in flight
    assert {d["key"] for d in report["possibly_duplicated"]} == in_flight_at_kills
    assert sum(arrived.values()) == ENTRIES + sum(n - 1 for n in arrived.values())
