"""`tracekit collect queue`: copy every message of an SQS queue (a dead-letter queue or a destination
queue) into the store, leaving the queue as it was unless asked to drain it.

Snapshot (the default) holds, then releases. Issue 5 asks that messages be "made visible again at
once (ChangeMessageVisibilityBatch to 0)". Releasing each page as soon as it arrives would make the
next ReceiveMessage return the same messages again: the snapshot could never tell when it has seen
everything, and every extra receive raises ApproximateReceiveCount, which on a queue with a redrive
policy pushes messages on to *its* DLQ. So a snapshot receives with VisibilityTimeout = `hold_s`,
keeps each message's newest receipt handle, stops when it has seen every message
ApproximateNumberOfMessages counted (and a second look finds none visible: the count is
approximate) or when two long-polling receives in a row bring nothing new, and then sets every
held message's visibility to 0 (in `finally`, so Ctrl-C releases them too; a killed run leaves
them to reappear when the hold ends: never lost). Each message is received once
per snapshot, so its receive count rises by exactly one; the command says so, and how close that
brings messages to the queue's own redrive.

FIFO queues lock a message group while any of its messages is in flight, so a snapshot sees only
the first messages of each group (up to ten per receive); it warns when it saw fewer messages than
the queue counts and names `--drain` as the way to read them all.

Drain receives a chunk (held), spools it, ingests it (the batch is committed) and only then deletes
those messages with their receipt handles, until the queue is empty. A message whose delete fails
stays in the queue, already in the store; the next drain reads it again (content ids make that
harmless).

Every ReceiveMessage page is spooled as `{"Messages": [...]}` and ingested with the queue's ARN, so
rows name the queue. `role` is what the queue holds: "dlq" messages become dead letters, except that
a body which is itself a destination record stays a destination record (ingest routes by content: a
redrive DLQ behind a destination queue holds destination records). "destination" messages must be
destination records (bare, or wrapped in SNS or EventBridge); anything else is quarantined as "not a
destination record" rather than passed off as a dead letter.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tracekit import jsonio
from tracekit.aws import Aws, resend_failed
from tracekit.collect.live import CollectError, CollectReport
from tracekit.collect.progress import Meter
from tracekit.collect.spool import Spool, collect_key
from tracekit.render import counted
from tracekit.store import Store

ROLES = ("dlq", "destination")
MAX_HOLD_S = 43200  # SQS's longest visibility timeout (12 hours)
RECEIVE_MAX = 10  # messages per ReceiveMessage, and entries per *Batch call
WAIT_S = 2  # long polling: an empty answer means no server of the queue had a visible message
EMPTY_RECEIVES = 2  # receives in a row with nothing new that end a read
DRAIN_CHUNK = 1000  # messages held, ingested and then deleted together
HOLD_MARGIN = 0.8  # a snapshot stops receiving at this share of the hold, before anything reappears
QUEUE_MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
KMS_CODES = tuple(
    f"KMS.{code}"
    for code in (
        "AccessDeniedException",
        "DisabledException",
        "InvalidStateException",
        "NotFoundException",
        "KeyUnavailableException",
    )
)
_ARN = re.compile(r"^arn:aws[\w-]*:sqs:(?P<region>[\w-]+):(?P<account>\d+):(?P<name>[\w.-]+)$")
_URL_REGION = re.compile(r"^https?://(?:sqs\.)?(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.(?:queue\.)?amazonaws")


@dataclass
class QueueInfo:
    """What GetQueueAttributes says about the queue when a collect starts."""

    url: str
    arn: str
    fifo: bool
    #: ApproximateNumberOfMessages: visible messages.
    visible: int
    #: ApproximateNumberOfMessagesNotVisible: held by a consumer right now.
    in_flight: int
    #: ApproximateNumberOfMessagesDelayed: sent with a delay that has not passed.
    delayed: int
    #: The queue's own redrive policy: (maxReceiveCount, deadLetterTargetArn), or None.
    redrive: tuple[int, str] | None

    @property
    def name(self) -> str:
        return self.arn.rsplit(":", 1)[-1]


@dataclass
class Held:
    """Messages this run received and has not released or deleted yet."""

    #: message id -> its newest receipt handle (a message received twice is released with the last).
    handles: dict[str, str] = field(default_factory=dict)
    #: message id -> ApproximateReceiveCount after this run's last receive of it.
    receive_counts: dict[str, int] = field(default_factory=dict)
    #: Messages received more than once in this run (the hold ran out).
    received_again: int = 0

    def add(self, messages: list[dict[str, Any]]) -> int:
        """Hold the messages of one receive; returns how many this run had not seen."""
        new = 0
        for message in messages:
            message_id = str(message.get("MessageId"))
            if message_id in self.handles:
                self.received_again += 1
            else:
                new += 1
            self.handles[message_id] = str(message.get("ReceiptHandle"))
            count = (message.get("Attributes") or {}).get("ApproximateReceiveCount")
            if count is not None and str(count).isdigit():
                self.receive_counts[message_id] = int(count)
        return new

    def __len__(self) -> int:
        return len(self.handles)


def queue_region(queue: str) -> str | None:
    """The region an SQS queue ARN or AWS queue URL names (None for a bare name or another endpoint)."""
    found = _ARN.match(queue) or _URL_REGION.match(queue)
    return found.group("region") if found else None


def collect_queue(
    store: Store,
    aws: Aws,
    queue: str,
    *,
    role: str = "dlq",
    drain: bool = False,
    hold_s: int = 120,
    meter: Meter | None = None,
    wait_s: int = WAIT_S,
) -> CollectReport:
    """Copy every message of `queue` into the store; caller holds `store.writing()`.

    Args:
        store: an open store whose write lock the caller holds.
        aws: AWS access (see `collect_aws`).
        queue: queue URL, name or ARN.
        role: "dlq" (messages become dead letters) or "destination" (messages are destination
            records; others are quarantined).
        drain: delete each message once it is committed to the store, until the queue is empty.
        hold_s: visibility timeout while messages are held (1 to 43200 seconds).
        meter: progress line to advance (messages, receives).
        wait_s: long-polling wait of each ReceiveMessage (0 to 20 seconds).

    Returns:
        Rows added, API calls made, messages received and warnings.

    Raises:
        CollectError: the queue does not exist, a permission is missing or AWS kept failing.
        ValueError: `role` or `hold_s` is out of range.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not 1 <= hold_s <= MAX_HOLD_S:
        raise ValueError(f"hold must be 1 to {MAX_HOLD_S} seconds, not {hold_s}")
    report = CollectReport()
    info = describe_queue(aws, queue, report)
    reader = _Reader(store, aws, info, report, role=role, hold_s=hold_s, wait_s=wait_s, meter=meter)
    # A killed run's spooled pages first: those messages may since have been deleted (drain).
    report.add_ingest(reader.spool.ingest(None, queue=info.arn, role=role))
    if drain:
        reader.drain()
    else:
        reader.snapshot()
    report.resources.append(f"queue {info.arn} (as {role}{', drained' if drain else ''})")
    return report


def describe_queue(aws: Aws, queue: str, report: CollectReport) -> QueueInfo:
    """Resolve a queue URL, name or ARN and read its attributes; a missing queue is one clear line."""
    url = queue if queue.startswith(("https://", "http://")) else _queue_url(aws, queue, report)
    report.call("GetQueueAttributes")
    response = aws.call(
        "sqs",
        "GetQueueAttributes",
        f"queue {queue}",
        tolerate=QUEUE_MISSING,
        QueueUrl=url,
        AttributeNames=["All"],
    )
    if "Attributes" not in response:
        raise _missing(aws, queue)
    attributes = response["Attributes"]
    return QueueInfo(
        url=url,
        arn=str(attributes.get("QueueArn") or queue),
        fifo=str(attributes.get("FifoQueue", "")).lower() == "true",
        visible=_count(attributes, "ApproximateNumberOfMessages"),
        in_flight=_count(attributes, "ApproximateNumberOfMessagesNotVisible"),
        delayed=_count(attributes, "ApproximateNumberOfMessagesDelayed"),
        redrive=_redrive(attributes.get("RedrivePolicy")),
    )


def _queue_url(aws: Aws, queue: str, report: CollectReport) -> str:
    arn = _ARN.match(queue)
    params = {"QueueName": arn.group("name"), "QueueOwnerAWSAccountId": arn.group("account")} if arn else {}
    report.call("GetQueueUrl")
    response = aws.call(
        "sqs", "GetQueueUrl", f"queue {queue}", tolerate=QUEUE_MISSING, **(params or {"QueueName": queue})
    )
    if "QueueUrl" not in response:
        raise _missing(aws, queue)
    return str(response["QueueUrl"])


def _missing(aws: Aws, queue: str) -> CollectError:
    return CollectError(
        "cannot collect: no such SQS queue",
        f"{queue} (region {aws.region})",
        "Check the queue URL, name or ARN, --region and --profile",
    )


def _count(attributes: dict[str, Any], name: str) -> int:
    value = str(attributes.get(name, "0"))
    return int(value) if value.isdigit() else 0


def _redrive(policy: Any) -> tuple[int, str] | None:
    if not policy:
        return None
    try:
        value = jsonio.loads(policy) if isinstance(policy, str) else policy
        return int(value["maxReceiveCount"]), str(value["deadLetterTargetArn"])
    except (ValueError, KeyError, TypeError):
        return None


class _Reader:
    """One collect run over one queue: receive, spool, then release (snapshot) or delete (drain)."""

    def __init__(
        self,
        store: Store,
        aws: Aws,
        info: QueueInfo,
        report: CollectReport,
        *,
        role: str,
        hold_s: int,
        wait_s: int,
        meter: Meter | None,
    ) -> None:
        self.aws = aws
        self.info = info
        self.report = report
        self.role = role
        self.hold_s = hold_s
        self.wait_s = wait_s
        self.meter = meter
        self.spool = Spool(store, collect_key("queue", info.arn))
        self.started = dt.datetime.now(dt.UTC)
        self.where = f"queue {info.arn}"

    def mark(self, messages: int, *, drained: bool) -> dict[str, Any]:
        """This queue's checkpoint, committed with the rows."""
        at = self.started.isoformat(timespec="seconds").replace("+00:00", "Z")
        return {"snapshot_at": at, "messages": messages, "drained": drained, "role": self.role}

    # -- snapshot --------------------------------------------------------------------------

    def snapshot(self) -> None:
        """Receive every visible message once, holding it; release them all; store what was read."""
        held = Held()
        deadline = time.monotonic() + self.hold_s * HOLD_MARGIN
        target, complete = self.info.visible, False

        def done() -> bool:
            nonlocal target, complete
            if time.monotonic() >= deadline:
                return True
            if target <= 0 or len(held) < target:
                return False
            # The count is approximate: while this run holds what it saw, none should be visible.
            still = self.visible_now()
            target, complete = len(held) + still, still == 0
            return complete

        try:
            looked_empty = self.fill(held, done, probe=True)
        finally:
            self.release(held)
        self.report.add_ingest(
            self.spool.ingest(self.mark(len(held), drained=False), queue=self.info.arn, role=self.role)
        )
        self.snapshot_warnings(held, out_of_time=not (looked_empty or complete))

    def visible_now(self) -> int:
        """ApproximateNumberOfMessages now."""
        self.report.call("GetQueueAttributes")
        response = self.aws.call(
            "sqs",
            "GetQueueAttributes",
            self.where,
            QueueUrl=self.info.url,
            AttributeNames=["ApproximateNumberOfMessages"],
        )
        return _count(response.get("Attributes", {}), "ApproximateNumberOfMessages")

    def fill(self, held: Held, done: Callable[[], bool], *, probe: bool = False) -> bool:
        """Receive, spool and hold until `done()` or EMPTY_RECEIVES receives in a row bring nothing
        new; True when it stopped because the queue looked empty (or, FIFO, all locked). `probe`
        checks, on the first page, that these credentials may change visibility, before the whole
        queue is held."""
        quiet = 0
        while not done():
            messages = self.receive()
            new = held.add(messages)  # before anything can fail: whatever is held gets released
            if messages:
                self.spool.add(_page(messages), f"sqs ReceiveMessage {self.info.arn}")
            if probe and messages:
                self.change_visibility(list(held.handles.items()), self.hold_s)
                probe = False
            if self.meter is not None:
                self.meter.advance(items=new, pages=1)
            quiet = 0 if new else quiet + 1
            # In a FIFO queue, what this run holds locks its groups: once a receive brings nothing
            # new, waiting longer cannot unlock them.
            if quiet >= (1 if self.info.fifo and held else EMPTY_RECEIVES):
                return True
        return False

    def receive(self) -> list[dict[str, Any]]:
        """One long-polling ReceiveMessage holding what it returns for `hold_s`."""
        self.report.call("ReceiveMessage")
        response = self.aws.call(
            "sqs",
            "ReceiveMessage",
            self.where,
            tolerate=KMS_CODES,
            QueueUrl=self.info.url,
            MaxNumberOfMessages=RECEIVE_MAX,
            VisibilityTimeout=self.hold_s,
            WaitTimeSeconds=self.wait_s,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        error = response.get("Error")
        if error:
            raise CollectError(
                "cannot collect: sqs ReceiveMessage failed",
                f"{self.where} ({error.get('Code')}: {error.get('Message', '')})",
                "Allow kms:Decrypt on the queue's KMS key for these credentials",
            )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        self.report.fetched += len(messages)
        return messages

    def release(self, held: Held) -> None:
        """Make every held message visible again (their newest receipt handles)."""
        if not held:
            return
        try:
            lapsed = self.change_visibility(list(held.handles.items()), 0)
        except CollectError as exc:
            raise CollectError(
                exc.what,
                exc.where,
                f"{exc.todo}; the {len(held)} held messages reappear by themselves within {self.hold_s} s",
            ) from None
        if lapsed:
            self.report.warnings.append(
                f"{lapsed} of the messages held from {self.info.name} could not be released "
                f"({', '.join(sorted(set(lapsed.values())))}); they reappear by themselves within "
                f"{self.hold_s} s"
            )

    def change_visibility(self, handles: list[tuple[str, str]], seconds: int) -> dict[str, str]:
        """ChangeMessageVisibilityBatch for (message id, receipt handle) pairs; returns the messages
        SQS refused for good (e.g. receipt no longer valid) with the error code."""
        entries = [
            {"Id": f"m{n}", "ReceiptHandle": handle, "VisibilityTimeout": seconds}
            for n, (_, handle) in enumerate(handles)
        ]
        ids = {f"m{n}": message_id for n, (message_id, _) in enumerate(handles)}
        refused = self.batch_call("ChangeMessageVisibilityBatch", entries)
        return {ids[entry_id]: code for entry_id, code in refused.items()}

    def batch_call(self, operation: str, entries: list[dict[str, Any]]) -> dict[str, str]:
        """Call a *Batch operation ten entries at a time, resending what SQS failed on its side;
        returns the entry ids it refused as the caller's fault, with their codes."""
        refused: dict[str, str] = {}

        def send(pending: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
            self.report.call(operation)
            response = self.aws.call("sqs", operation, self.where, QueueUrl=self.info.url, Entries=pending)
            by_id = {entry["Id"]: entry for entry in pending}
            retry = []
            for failure in response.get("Failed", []):
                code = str(failure.get("Code"))
                if failure.get("SenderFault"):
                    refused[failure["Id"]] = code
                else:
                    retry.append((by_id[failure["Id"]], code))
            return retry

        for start in range(0, len(entries), RECEIVE_MAX):
            resend_failed(
                send,
                entries[start : start + RECEIVE_MAX],
                f"sqs {operation} on {self.where}",
                error_class=CollectError,
                verb="cannot collect",
            )
        return refused

    def snapshot_warnings(self, held: Held, out_of_time: bool) -> None:
        """What the user should know about this snapshot and the queue it left behind."""
        info, warnings = self.info, self.report.warnings
        if held:
            warnings.append(
                f"the snapshot raised the receive count (ApproximateReceiveCount) of {_messages(len(held))} "
                f"of {info.name} by one"
            )
        if held.received_again:
            warnings.append(
                f"{_messages(held.received_again)} of {info.name} received again after the "
                f"{self.hold_s} s hold ran out, raising the receive count once more; use a longer --hold"
            )
        if out_of_time:
            warnings.append(
                f"snapshot of {info.name} incomplete: it stopped after {_messages(len(held))} so that none "
                f"reappears before the {self.hold_s} s hold ends; run again with a longer --hold"
            )
        elif info.fifo and len(held) < info.visible:
            warnings.append(
                f"{info.name} is a FIFO queue: receiving locks each message group until its messages are "
                f"released, so the snapshot saw {len(held)} of about {info.visible} messages; "
                "--drain reads them all (and deletes them)"
            )
        if info.in_flight:
            warnings.append(
                f"not in the snapshot: {_messages(info.in_flight)} of {info.name} in flight (held by "
                "another consumer)"
            )
        if info.delayed:
            warnings.append(f"not in the snapshot: {_messages(info.delayed)} of {info.name} still delayed")
        if info.redrive and held:
            warnings.append(self.redrive_warning(held, *info.redrive))

    def redrive_warning(self, held: Held, max_receives: int, dlq: str) -> str:
        """How close the held messages now are to the queue's own redrive."""
        counts = list(held.receive_counts.values())
        moving = sum(1 for c in counts if c >= max_receives)
        next_to = sum(1 for c in counts if c == max_receives - 1)
        text = (
            f"{self.info.name} moves a message to {dlq} when it is received more than {max_receives} "
            f"times: {_messages(moving)} {'moves' if moving == 1 else 'move'} on the next receive"
        )
        if next_to:
            text += f", {next_to} more {'is' if next_to == 1 else 'are'} one receive further away"
        return text

    # -- drain -----------------------------------------------------------------------------

    def drain(self) -> None:
        """Receive, store and then delete, chunk by chunk, until the queue is empty."""
        total = 0
        while True:
            received, looked_empty = self.drain_chunk(total)
            total += received
            # A FIFO group unlocks once its held messages are deleted: read on until nothing comes.
            if not received or (looked_empty and not self.info.fifo):
                break
        mark = self.mark(total, drained=True)
        self.report.add_ingest(self.spool.ingest(mark, queue=self.info.arn, role=self.role))

    def drain_chunk(self, total: int) -> tuple[int, bool]:
        """Receive up to DRAIN_CHUNK messages, commit them to the store, then delete them; returns
        how many were received and whether the queue looked empty."""
        held = Held()
        deadline = time.monotonic() + self.hold_s / 2
        try:
            looked_empty = self.fill(held, lambda: len(held) >= DRAIN_CHUNK or time.monotonic() >= deadline)
            received = len(held)
            if received:
                mark = self.mark(total + received, drained=False)
                self.report.add_ingest(self.spool.ingest(mark, queue=self.info.arn, role=self.role))
                self.delete(held)  # only now: the batch holding these messages is committed
        finally:
            self.release(held)  # after an error: what was not deleted reappears at once
        return received, looked_empty

    def delete(self, held: Held) -> None:
        """DeleteMessageBatch every held message (they are in the store); forget those deleted."""
        handles = list(held.handles.items())
        entries = [{"Id": f"m{n}", "ReceiptHandle": handle} for n, (_, handle) in enumerate(handles)]
        refused = self.batch_call("DeleteMessageBatch", entries)
        # A refused receipt is no longer valid (the hold ran out): nothing left to release.
        held.handles = {}
        if refused:
            self.report.warnings.append(
                f"{_messages(len(refused))} of {self.info.name} could not be deleted "
                f"({', '.join(sorted(set(refused.values())))}); they are in the store and stay in the "
                "queue, where the next --drain reads and deletes them"
            )


def _messages(n: int) -> str:
    return counted(n, "message")


def _page(messages: list[dict[str, Any]]) -> bytes:
    """A ReceiveMessage page as `aws sqs receive-message` prints it (binary values as base64)."""
    return jsonio.dumpb({"Messages": [_printable(m) for m in messages]})


def _printable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value
