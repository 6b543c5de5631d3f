"""Write what a lab run left behind as the files a user would have pulled from a real account.

`logs/` holds `aws logs filter-log-events` output as NDJSON, one file per log group; `destinations/`
and `dlq/` hold `aws sqs receive-message --attribute-names All --message-attribute-names All` output,
ten messages per page as the API returns them; S3 destinations become objects under
`destinations/s3/BUCKET/KEY`; `truth.json` is the ground truth.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from tracekit import jsonio
from tracekit.lab.world import Queue, World, md5_hex

RECEIVE_PAGE = 10  # ReceiveMessage returns at most ten messages
INGESTION_DELAY_MS = (20, 900)


def write_artifacts(
    world: World, out: Path, *, scenario: str, dead_letter_queues: set[str]
) -> dict[str, int]:
    """Write every artifact of the run under `out`; return how many items of each kind were written."""
    counts = {"log_events": _write_logs(world, out / "logs")}
    counts["destination_messages"] = 0
    counts["dead_letters"] = 0
    for queue in world.queues.values():
        if queue.name in dead_letter_queues:
            counts["dead_letters"] += _write_queue(world, queue, out / "dlq")
        else:
            counts["destination_messages"] += _write_queue(world, queue, out / "destinations")
    for key, body in world.objects.items():
        path = out / "destinations" / ("s3" if not key.startswith("lambda/") else "") / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        counts["destination_messages"] += 1
    _write_json(out / "truth.json", truth(world, scenario))
    return counts


def truth(world: World, scenario: str) -> dict[str, Any]:
    """The ground-truth document: every event's lifecycle and every stream batch."""
    return {
        "scenario": scenario,
        "events": [event.to_json() for event in world.events.values()],
        "batches": [batch.to_json() for batch in world.batches],
    }


def _write_logs(world: World, directory: Path) -> int:
    by_group: dict[str, list[Any]] = defaultdict(list)
    for event in world.logs:
        by_group[event.log_group].append(event)
    rng = random.Random(len(world.logs))
    directory.mkdir(parents=True, exist_ok=True)
    for group, events in by_group.items():
        events.sort(key=lambda e: e.timestamp)  # FilterLogEvents interleaves streams by time
        lines = []
        for event in events:
            lines.append(
                jsonio.dumpb(
                    {
                        "logStreamName": event.log_stream,
                        "timestamp": event.timestamp,
                        "message": event.message,
                        "ingestionTime": event.timestamp + rng.randint(*INGESTION_DELAY_MS),
                        "eventId": f"{rng.getrandbits(185):056d}",
                    }
                )
            )
        name = group.strip("/").replace("/", "-")
        (directory / f"{name}.filter-log-events.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return len(world.logs)


def _write_queue(world: World, queue: Queue, directory: Path) -> int:
    """Pages of receive-message output, as a user draining a snapshot of the queue would save them."""
    directory.mkdir(parents=True, exist_ok=True)
    messages = [_received(world, m) for m in queue.messages]
    for page, start in enumerate(range(0, max(len(messages), 1), RECEIVE_PAGE), 1):
        chunk = messages[start : start + RECEIVE_PAGE]
        if chunk:
            _write_json(directory / f"{queue.name}.receive-message.{page:04d}.json", {"Messages": chunk})
    return len(messages)


def _received(world: World, message: Any) -> dict[str, Any]:
    message.receive(world.now)
    out: dict[str, Any] = {
        "MessageId": message.message_id,
        "ReceiptHandle": world.ids.hex(64),
        "MD5OfBody": md5_hex(message.body),
        "Body": message.body,
        "Attributes": message.system_attributes(),
    }
    if message.message_attributes:
        out["MD5OfMessageAttributes"] = world.ids.hex(32)
        out["MessageAttributes"] = message.message_attributes
    return out


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsonio.dumpb(value, sort_keys=False) + b"\n")
