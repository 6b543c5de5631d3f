"""`tracekit replay run`: send a plan's copies, journaled so that no kill loses or silently doubles one.

The order of a run, and why:

1. Dry run (the default): say what would be sent where; no AWS call at all.
2. Guards, before anything is sent: STS GetCallerIdentity names the account; it must be on the
   allow-list (`--allow-account`, or `[replay] allow_accounts` in tracekit.toml), and so must every
   target account that is not the caller's. Region and account are announced before sending.
3. The journal (`<plan>.journal`, see journal.py) lists every planned copy as pending. A copy is
   `sending` on disk before the call that sends it, and `confirmed` (with the id the target returned)
   or `failed` (with the reason) after. A resume sends only what is not final; copies caught in
   flight by the kill are sent again and reported as possibly duplicated.
4. Sending: copies are split into `concurrency` lanes, each sent by one thread in order. Copies of a
   FIFO message group share a lane, so their order is kept; other copies go to lanes ten at a time.
   A token bucket paces messages (AIMD: halved on throttling, added back on success); per-entry
   failures that are retryable are sent again with growing pauses, the rest fail with their reason.
5. `--delete-source`: a dead letter is deleted from its DLQ only once its planned copy (`#0`) is
   confirmed in the journal, with a receipt handle received just now.
6. The report: counts per state, failures, possibly duplicated copies, the time range, account,
   region and the rate achieved, printed and written to `<plan>.report.json`.
"""

from __future__ import annotations

import hashlib
import threading
import time
import tomllib
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from tracekit import jsonio
from tracekit.errors import TracekitError, first_line
from tracekit.render import counted
from tracekit.replay import journal as jn
from tracekit.replay.faults import Copy, parse_faults, schedule
from tracekit.replay.model import Entry, Plan, SourceKind, Target, load_plan
from tracekit.replay.rate import DEFAULT_RATE, Aimd, TokenBucket

if TYPE_CHECKING:
    from tracekit.aws import Aws
    from tracekit.replay.targets import Outgoing, Sender, SendResult
    from tracekit.store import Store

DEFAULT_CONCURRENCY = 4
MAX_ATTEMPTS = 8  # sends of one copy that keeps getting retryable failures before it fails
BACKOFF_S = 0.1  # first pause before resending retryable failures; doubles, up to MAX_BACKOFF_S
MAX_BACKOFF_S = 5.0
DELETE_HOLD_S = 60  # visibility hold of DLQ messages while their dead letters are looked for
DELETE_EMPTY_RECEIVES = 2  # receives in a row with nothing new that end the search of a DLQ
PREVIEW = 3  # entries a dry run lists per target
CONFIG_NAME = "tracekit.toml"
QUEUE_MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


class ReplayError(TracekitError):
    """A replay run cannot start or must stop (guards, journal, configuration)."""


class Progress(Protocol):
    """What the run advances: copies confirmed, API calls made (tracekit.collect.progress.Meter)."""

    def advance(self, items: int = 0, pages: int = 0) -> None: ...


@dataclass
class RunOptions:
    """How to run a plan (the command's options)."""

    apply: bool = False
    resume: bool = False
    #: With resume: copies that failed for good are sent again (after the cause was fixed).
    retry_failed: bool = False
    #: Messages per second (token bucket); halved on throttling, never above this.
    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    #: Accounts allowed to receive; empty: tracekit.toml's [replay] allow_accounts.
    allow_accounts: list[str] = field(default_factory=list)
    delete_source: bool = False
    #: --fault specs, as given.
    faults: list[str] = field(default_factory=list)
    seed: int = 0
    #: Where redacted payloads are re-read from (default: the store the plan names).
    store: Path | None = None


@dataclass
class TargetSummary:
    """What a dry run would send to one target."""

    target: str
    copies: int
    first: list[str]


@dataclass
class RunReport:
    """What a run did (or, dry, would do); `to_json` is what `<plan>.report.json` holds."""

    plan: str
    plan_id: str
    dry_run: bool
    account: str | None = None
    region: str | None = None
    #: Copies per journal state, plus source messages deleted from and kept in their DLQ.
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    #: Copies that were in flight at an interruption and sent again: they may have arrived twice.
    possibly_duplicated: list[dict[str, Any]] = field(default_factory=list)
    #: Copies not sent on purpose (drop= faults), and every copy a fault shaped.
    faulted: list[dict[str, Any]] = field(default_factory=list)
    #: When the replayed events were first and last seen (from the plan): the incident window.
    events_first_seen: str | None = None
    events_last_seen: str | None = None
    first_send: str | None = None
    last_send: str | None = None
    rate_requested: float = 0.0
    #: Copies confirmed by this run per second of its sending.
    rate_achieved: float = 0.0
    calls: int = 0
    throttled: int = 0
    #: Dead letters whose copy was confirmed but that were not found in their DLQ to delete.
    not_deleted: list[dict[str, Any]] = field(default_factory=list)
    targets: list[TargetSummary] = field(default_factory=list)
    report_path: str | None = None
    journal_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------ entry


def run_plan(
    plan_path: Path,
    aws: Aws,
    options: RunOptions,
    *,
    progress: Progress | None = None,
    notify: Callable[[str], None] = lambda line: None,
    sender_for: Callable[[Target, Aws], Sender] | None = None,
) -> RunReport:
    """Run (or, without `options.apply`, describe) the replay plan at `plan_path`.

    Args:
        plan_path: a plan written by `tracekit replay plan`.
        aws: AWS access for STS, the targets and the DLQs.
        options: the command's options.
        progress: advanced per call with copies confirmed.
        notify: receives lines the user must see before sending starts (account, region, resume).
        sender_for: builds the sender of a target (default: tracekit.replay.targets.sender_for).

    Returns:
        The report (also written to `<plan>.report.json` by an applied run).

    Raises:
        ReplayError: a guard refused, the journal is in the way or belongs to another plan.
        PlanError, JournalError, FaultError: the plan, journal or a fault spec cannot be used.
    """
    plan = load_plan(plan_path)
    digest = hashlib.sha256(plan_path.read_bytes()).hexdigest()[:16]
    path = jn.journal_path(plan_path)
    if not options.apply:
        return _dry_run(plan, plan_path, options, path)
    if options.retry_failed and not options.resume:
        raise ReplayError("--retry-failed finishes an earlier run", str(path), "Add --resume")
    if path.exists() and not options.resume:
        raise ReplayError(
            "this plan already has a journal",
            str(path),
            "Use --resume to finish it, or move it away to start over",
        )
    account = check_guards(aws, plan, allow_list(options.allow_accounts))
    journal, interrupted = _open_journal(plan, path, digest, options)
    with journal:
        journal.write([{"run": "started", "account": account, "region": aws.region}])
        notify(f"Replaying plan {plan.plan_id} to account {account} in region {aws.region}.")
        if interrupted:
            notify(f"{len(interrupted)} copies were in flight when the last run stopped: sending them again.")
        if options.retry_failed:
            failed = [key for key, copy in journal.state.copies.items() if copy.state == jn.FAILED]
            journal.mark(failed, jn.PENDING)
            notify(f"{len(failed)} failed copies go back to pending (--retry-failed).")
        engine = _Engine(plan, journal, options, progress)
        try:
            engine.send(_work(plan, journal, options, aws, sender_for))
        except TracekitError:
            # A whole call failed and the run stopped: the report still says how far it got.
            partial = _report(plan, plan_path, journal.state, engine, account, aws.region, [])
            _save_report(partial, plan_path)
            raise
        not_deleted = delete_sources(aws, plan, journal) if options.delete_source else []
        report = _report(plan, plan_path, journal.state, engine, account, aws.region, not_deleted)
    _save_report(report, plan_path)
    return report


def allow_list(given: list[str], *, cwd: Path | None = None) -> list[str]:
    """The accounts replays may send to: --allow-account, else tracekit.toml's [replay] allow_accounts."""
    if given:
        return [str(a).strip() for a in given]
    path = (cwd or Path.cwd()) / CONFIG_NAME
    if not path.is_file():
        return []
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ReplayError(f"cannot read config ({first_line(exc)})", str(path), "Fix the file") from None
    accounts = (document.get("replay") or {}).get("allow_accounts", [])
    if not isinstance(accounts, list):
        raise ReplayError(
            "[replay] allow_accounts must be a list", str(path), 'Write allow_accounts = ["123456789012"]'
        )
    return [str(a).strip() for a in accounts]


def check_guards(aws: Aws, plan: Plan, allowed: list[str]) -> str:
    """The caller's account, once it and every target account are allowed (nothing is sent before).

    Raises:
        ReplayError: no allow-list, or the caller's or a target's account is not on it.
    """
    identity = aws.call("sts", "GetCallerIdentity", "the credentials' identity")
    account = str(identity.get("Account", ""))
    where = f"credentials are for account {account}, region {aws.region}"
    if not allowed:
        raise ReplayError(
            "refusing to replay: no account allow-list",
            where,
            f"Pass --allow-account {account} or set [replay] allow_accounts in tracekit.toml",
        )
    if account not in allowed:
        raise ReplayError(
            "refusing to replay: account not allowed",
            f"{where}; allowed: {', '.join(allowed)}",
            "Use credentials of an allowed account, or add it with --allow-account",
        )
    for entry in plan.entries:
        other = target_account(entry.target)
        if other and other != account and other not in allowed:
            raise ReplayError(
                "refusing to replay: a target is in an account not allowed",
                f"{_describe(entry.target)} (account {other}, entry {entry.entry_id})",
                f"Add it with --allow-account {other} if that is intended",
            )
    return account


def target_account(target: Target) -> str | None:
    """The account a target ARN or SQS queue URL names (None when it names none)."""
    if target.arn and target.arn.startswith("arn:"):
        parts = target.arn.split(":")
        return parts[4] if len(parts) > 4 and parts[4] else None
    if target.url:
        segments = [s for s in target.url.split("://", 1)[-1].split("/")[1:] if s]
        if segments and segments[0].isdigit():
            return segments[0]
    return None


# ---------------------------------------------------------------------------------------- journal


def _copies(plan: Plan, faults: list[str], seed: int) -> list[Copy]:
    return schedule(plan.entries, parse_faults(faults), seed=seed)


def _open_journal(plan: Plan, path: Path, digest: str, options: RunOptions) -> tuple[jn.Journal, list[str]]:
    faults = [spec.text for spec in parse_faults(options.faults)]
    if not path.exists():
        header = {"plan_id": plan.plan_id, "plan_digest": digest, "faults": faults, "seed": options.seed}
        copies = _copies(plan, faults, options.seed)
        states = (jn.CopyState(key=c.key, entry_id=c.entry_id, faults=list(c.faults)) for c in copies)
        return jn.Journal.create(path, header, states), []
    existing = jn.read_journal(path)
    previous: dict[str, Any] = existing.header
    if previous.get("plan_id") != plan.plan_id or previous.get("plan_digest") != digest:
        raise ReplayError(
            "the plan changed since its journal was written",
            str(path),
            "Restore the plan, or move the journal away to start over",
        )
    if options.faults and faults != previous.get("faults"):
        raise ReplayError(
            "--fault differs from the interrupted run's",
            f"{', '.join(previous.get('faults') or []) or 'none'} in {path}",
            "Resume without --fault (the journal's faults are used)",
        )
    expected = [
        c.key for c in _copies(plan, list(previous.get("faults") or []), int(previous.get("seed", 0)))
    ]
    if expected != list(existing.copies):
        raise ReplayError(
            "the journal's copies do not match the plan's", str(path), "Move the journal away to start over"
        )
    return jn.Journal.resume(path)


# ---------------------------------------------------------------------------------------- sending


@dataclass
class _Item:
    copy: Copy
    outgoing: Outgoing
    sender: Sender


def _work(
    plan: Plan,
    journal: jn.Journal,
    options: RunOptions,
    aws: Aws,
    sender_for: Callable[[Target, Aws], Sender] | None,
) -> list[_Item]:
    """The copies still to send, with their final payload and sender; copies that cannot be built
    fail in the journal with the reason."""
    from tracekit.replay.targets import outgoing

    if sender_for is None:
        from tracekit.replay.targets import sender_for as default_sender_for

        sender_for = default_sender_for
    header = journal.state.header
    copies = _copies(plan, list(header.get("faults") or []), int(header.get("seed", 0)))
    entries = {e.entry_id: e for e in plan.entries}
    senders: dict[str, Sender] = {}
    payloads = _Payloads(plan, options.store, aws)
    work: list[_Item] = []
    for copy in copies:
        if journal.state.copies[copy.key].state in jn.FINAL:
            continue
        if copy.drop:
            journal.mark([copy.key], jn.DROPPED, reason="dropped by fault")
            continue
        entry = entries[copy.entry_id]
        try:
            body = outgoing(
                plan, entry, payloads.get(entry), copy=copy.copy, corrupt_field=copy.corrupt_field
            )
            target = _describe(entry.target)
            if target not in senders:
                senders[target] = sender_for(entry.target, aws)
        except TracekitError as exc:
            journal.mark([copy.key], jn.FAILED, reason=exc.line())
            continue
        work.append(_Item(copy, body, senders[target]))
    return work


class _Payloads:
    """Payloads of entries, re-read from the store when the plan file holds none (redacted)."""

    def __init__(self, plan: Plan, store: Path | None, aws: Aws) -> None:
        self.plan = plan
        self.store_path = store or (Path(plan.store) if plan.store else None)
        self.aws = aws
        self._store: Store | None = None

    def get(self, entry: Entry) -> str:
        if entry.payload is not None and not entry.redacted:
            return entry.payload
        from tracekit.replay.plan import resolve_payload
        from tracekit.store import Store

        if self._store is None:
            if self.store_path is None:
                raise ReplayError(
                    "no store to re-read a redacted payload from", entry.entry_id, "Pass --store"
                )
            self._store = Store.open(self.store_path)
        return resolve_payload(self.plan, entry, self._store, self.aws)


class _Engine:
    """Sends items in lanes, paced by a token bucket, journaling every call."""

    def __init__(
        self, plan: Plan, journal: jn.Journal, options: RunOptions, progress: Progress | None
    ) -> None:
        self.plan = plan
        self.journal = journal
        self.options = options
        self.progress = progress
        self._stop = threading.Event()
        # Waiting for tokens ends early on a stop (Ctrl-C, another lane's error).
        self.bucket = TokenBucket(options.rate, burst=min(options.rate, 10.0), sleep=self._stop.wait)
        self.aimd = Aimd(self.bucket)
        self.calls = 0
        self.confirmed = 0
        self.started: float | None = None
        self.finished: float | None = None
        self._lock = threading.Lock()
        self._throttle_done: set[str] = set()

    def send(self, work: list[_Item]) -> None:
        """Send every item; returns when all are final (or raises what stopped a lane)."""
        if not work:
            return
        lanes = _lanes(work, max(1, self.options.concurrency))
        self.started = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="replay") as pool:
                futures = [pool.submit(self._lane, lane) for lane in lanes]
                try:
                    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                except KeyboardInterrupt:
                    self._stop.set()  # lanes finish their call in flight and journal it, then stop
                    raise
                for future in done:
                    if future.exception() is not None:
                        self._stop.set()
                        raise future.exception()  # type: ignore[misc]
        finally:
            self.finished = time.monotonic()

    def _lane(self, items: list[_Item]) -> None:
        segment: list[_Item] = []
        for item in items:
            if self._stop.is_set():
                return
            if item.copy.delay_ms:
                self._flush(segment)
                segment = []
                self._stop.wait(item.copy.delay_ms / 1000)  # delay= / duplicate=N@SPACING: a pause here
            if segment and (
                segment[-1].sender is not item.sender or segment[-1].copy.burst != item.copy.burst
            ):
                self._flush(segment)
                segment = []
            segment.append(item)
        self._flush(segment)

    def _flush(self, segment: list[_Item]) -> None:
        if not segment:
            return
        sender = segment[0].sender
        by_key = {item.outgoing.key: item for item in segment}
        for batch in sender.batches([item.outgoing for item in segment]):
            if self._stop.is_set():
                return
            self._send_batch([by_key[o.key] for o in batch])

    def _send_batch(self, batch: list[_Item]) -> None:
        """One batch through to final states: resend retryable failures with growing pauses."""
        pending = batch
        codes: dict[str, str] = {}
        for attempt in range(MAX_ATTEMPTS):
            to_call, throttled = self._injected_throttles(pending, codes)
            again = {i.outgoing.key for i in throttled}
            if to_call:
                again.update(i.outgoing.key for i in self._call(to_call, codes))
            if not again:
                return
            pending = [i for i in batch if i.outgoing.key in again]  # plan order, for FIFO groups
            if self._stop.is_set():
                return
            self._stop.wait(min(BACKOFF_S * 2**attempt, MAX_BACKOFF_S))
        reasons = [
            {
                "key": i.outgoing.key,
                "state": jn.FAILED,
                "reason": f"kept failing: {codes.get(i.outgoing.key)}",
            }
            for i in pending
        ]
        self.journal.write(reasons)

    def _injected_throttles(
        self, items: list[_Item], codes: dict[str, str]
    ) -> tuple[list[_Item], list[_Item]]:
        """throttle= fault: a picked copy's first attempt is answered as throttled, with no call made.
        Returns the items to call and the ones held back."""
        picked = [i for i in items if i.copy.throttle and i.outgoing.key not in self._throttle_done]
        if not picked:
            return items, []
        with self._lock:
            self._throttle_done.update(i.outgoing.key for i in picked)
        reason = "ThrottlingException (injected by throttle fault)"
        self.journal.mark([i.outgoing.key for i in picked], jn.PENDING, reason=reason)
        codes.update((i.outgoing.key, "ThrottlingException") for i in picked)
        self.aimd.on_throttle()
        return [i for i in items if i not in picked], picked

    def _call(self, items: list[_Item], codes: dict[str, str]) -> list[_Item]:
        """One API call for `items`, journaled before and after; returns the items to send again."""
        keys = [i.outgoing.key for i in items]
        if not items[0].copy.burst:
            self.bucket.acquire(len(items))
        if self._stop.is_set():
            return []  # stopped while waiting: these copies stay pending
        self.journal.mark(keys, jn.SENDING)
        with self._lock:
            self.calls += 1
        try:
            results = {r.key: r for r in items[0].sender.send([i.outgoing for i in items])}
        except TracekitError as exc:
            self._stop.set()
            if isinstance(exc.__context__, ClientError):
                # AWS answered and refused the whole call: nothing of it was sent.
                self.journal.mark(keys, jn.PENDING, reason=exc.line())
            # Otherwise (connection lost, timeout) the call may have arrived: the copies stay
            # `sending`, so a resume reports them as possibly duplicated.
            raise
        records: list[dict[str, Any]] = []
        retry: list[_Item] = []
        for item in items:
            result = results.get(item.outgoing.key)
            if result is not None and result.ok:
                records.append({"key": result.key, "state": jn.CONFIRMED, "provider_id": result.provider_id})
            elif result is not None and result.retryable:
                codes[result.key] = str(result.error_code)
                records.append({"key": result.key, "state": jn.PENDING, "reason": result.error_code})
                retry.append(item)
            else:
                reason = _reason(result)
                records.append({"key": item.outgoing.key, "state": jn.FAILED, "reason": reason})
        self.journal.write(records)
        confirmed = sum(1 for r in records if r["state"] == jn.CONFIRMED)
        with self._lock:
            self.confirmed += confirmed
            if self.progress is not None:
                self.progress.advance(items=confirmed, pages=1)
        if retry:
            self.aimd.on_throttle()
        else:
            self.aimd.on_success()
        return retry


def _reason(result: SendResult | None) -> str:
    if result is None:
        return "the target's answer did not mention this copy"
    return ": ".join(part for part in (result.error_code, result.reason) if part) or "failed"


def _lanes(work: list[_Item], count: int) -> list[list[_Item]]:
    """Split items into lanes of whole batches: runs of one target's copies, as many as its API takes
    per call, go to the lanes in turn; a FIFO group's copies, and a Kinesis partition key's, all go to
    one lane, in order (lanes run concurrently, so only one lane keeps an order)."""
    lanes: list[list[_Item]] = [[] for _ in range(count)]
    filling: dict[tuple[int, str], list[_Item]] = {}  # (lane, target) -> the batch being filled
    loose: dict[str, tuple[int, int]] = {}  # target -> (lane of its current batch, copies in it)
    turn = 0
    for item in work:
        target = _describe(item.outgoing.entry.target)
        size = max(1, int(getattr(item.sender, "max_count", 10)))
        entry = item.outgoing.entry
        group = entry.message_group_id if entry.message_group_id is not None else entry.partition_key
        if group is not None:
            lane = zlib.crc32(f"{target}\0{group}".encode()) % count
        else:
            lane, filled = loose.get(target, (-1, size))
            if filled >= size:
                lane, filled, turn = turn, 0, (turn + 1) % count
            loose[target] = (lane, filled + 1)
        batch = filling.setdefault((lane, target), [])
        batch.append(item)
        if len(batch) >= size:
            lanes[lane].extend(filling.pop((lane, target)))
    for (lane, _), batch in filling.items():
        lanes[lane].extend(batch)
    return [lane for lane in lanes if lane]


# ----------------------------------------------------------------------------------- delete source


#: Why a dead letter whose queue the store does not know is never deleted.
QUEUE_UNKNOWN = (
    "DLQ not known to the store (ingested without --queue): "
    "collect it with `tracekit collect queue` before planning, or delete by hand"
)


def delete_sources(aws: Aws, plan: Plan, journal: jn.Journal) -> list[dict[str, Any]]:
    """Delete from their DLQs the dead letters whose planned copy is confirmed in the journal.

    Each DLQ is received from with a visibility hold; messages that are not wanted are held too, so
    the next receive brings others, and are released (visibility 0) as soon as the search of that
    queue ends (in `finally`: an error releases them too; a kill leaves them to reappear when the hold
    ends). Wanted ones are deleted with the receipt handle just received; each deletion is journaled.

    Returns:
        The dead letters not found to delete ({"entry_id", "message_id", "queue", "reason"}).
    """
    wanted: dict[str, dict[str, str]] = {}  # queue -> message id -> entry id
    missing: list[dict[str, Any]] = []
    for entry in plan.entries:
        source = entry.source
        if source.kind is not SourceKind.DEAD_LETTER:
            continue
        copy = journal.state.copies.get(f"{entry.entry_id}#0")
        if copy is None or copy.state != jn.CONFIRMED or entry.entry_id in journal.state.deleted:
            continue
        if not source.queue:
            missing.append(
                {"entry_id": entry.entry_id, "message_id": source.id, "queue": "", "reason": QUEUE_UNKNOWN}
            )
            continue
        wanted.setdefault(source.queue, {})[source.id] = entry.entry_id
    for queue, messages in wanted.items():
        try:
            left = _delete_from(aws, queue, dict(messages), journal)
        except TracekitError as exc:
            left, reason = dict(messages), exc.line()
        else:
            reason = "not found in the DLQ (already deleted, or held by another reader)"
        missing += [
            {"entry_id": e, "message_id": m, "queue": queue, "reason": reason}
            for m, e in left.items()
            if e not in journal.state.deleted
        ]
    return missing


def _delete_from(aws: Aws, queue: str, messages: dict[str, str], journal: jn.Journal) -> dict[str, str]:
    url = _queue_url(aws, queue)
    held: dict[str, str] = {}
    empty = 0
    try:
        while messages and empty < DELETE_EMPTY_RECEIVES:
            response = aws.call(
                "sqs",
                "ReceiveMessage",
                f"queue {queue}",
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=DELETE_HOLD_S,
                WaitTimeSeconds=1,
            )
            received = response.get("Messages") or []
            new = [m for m in received if m["MessageId"] in messages or m["MessageId"] not in held]
            empty = 0 if new else empty + 1
            matches = [m for m in received if m["MessageId"] in messages]
            held.update(
                (m["MessageId"], m["ReceiptHandle"]) for m in received if m["MessageId"] not in messages
            )
            if matches:
                _delete(aws, queue, url, matches, messages, journal)
    finally:
        _release(aws, queue, url, held)
    return messages


def _delete(
    aws: Aws,
    queue: str,
    url: str,
    matches: list[dict[str, Any]],
    messages: dict[str, str],
    journal: jn.Journal,
) -> None:
    entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(matches)]
    response = aws.call("sqs", "DeleteMessageBatch", f"queue {queue}", QueueUrl=url, Entries=entries)
    deleted = [matches[int(ok["Id"])]["MessageId"] for ok in response.get("Successful", [])]
    journal.write([{"deleted": messages[m], "message_id": m, "queue": queue} for m in deleted])
    for message_id in deleted:
        messages.pop(message_id, None)


def _release(aws: Aws, queue: str, url: str, held: dict[str, str]) -> None:
    handles = list(held.values())
    for start in range(0, len(handles), 10):
        chunk = handles[start : start + 10]
        entries = [{"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": 0} for n, h in enumerate(chunk)]
        aws.call("sqs", "ChangeMessageVisibilityBatch", f"queue {queue}", QueueUrl=url, Entries=entries)


def _queue_url(aws: Aws, queue: str) -> str:
    if queue.startswith(("https://", "http://")):
        return queue
    parts = queue.split(":")
    params = (
        {"QueueName": parts[5], "QueueOwnerAWSAccountId": parts[4]}
        if len(parts) == 6
        else {"QueueName": queue}
    )
    response = aws.call("sqs", "GetQueueUrl", f"queue {queue}", **params)
    return str(response["QueueUrl"])


# ----------------------------------------------------------------------------------------- report


def _describe(target: Target) -> str:
    name = target.arn or target.url or "?"
    return f"{target.type.value} {name}" + (f" ({target.qualifier})" if target.qualifier else "")


def _dry_run(plan: Plan, plan_path: Path, options: RunOptions, path: Path) -> RunReport:
    """What an applied run would send: copies per target, the first few entries of each."""
    copies = _copies(plan, options.faults, options.seed)
    done: set[str] = set()
    if path.exists():
        state = jn.read_journal(path)
        resent = {jn.FAILED} if options.retry_failed else set()
        done = {k for k, c in state.copies.items() if c.state in jn.FINAL and c.state not in resent}
    entries = {e.entry_id: e for e in plan.entries}
    targets: dict[str, TargetSummary] = {}
    for copy in copies:
        if copy.key in done or copy.drop:
            continue
        entry = entries[copy.entry_id]
        summary = targets.setdefault(_describe(entry.target), TargetSummary(_describe(entry.target), 0, []))
        summary.copies += 1
        if len(summary.first) < PREVIEW:
            summary.first.append(f"{copy.key} (event {entry.event_id})")
    counts = {"to_send": sum(t.copies for t in targets.values()), "already_final": len(done)}
    if options.delete_source:
        pending = [
            e
            for e in plan.entries
            if e.source.kind is SourceKind.DEAD_LETTER and f"{e.entry_id}#0" not in done
        ]
        counts["dead_letters_to_delete"] = sum(1 for e in pending if e.source.queue)
        if unknown := sum(1 for e in pending if not e.source.queue):
            counts["dead_letters_queue_unknown"] = unknown
    return RunReport(
        plan=str(plan_path),
        plan_id=plan.plan_id,
        dry_run=True,
        counts=counts,
        events_first_seen=plan.events_first_seen,
        events_last_seen=plan.events_last_seen,
        targets=list(targets.values()),
        rate_requested=options.rate,
        journal_path=str(path) if path.exists() else None,
    )


def _report(
    plan: Plan,
    plan_path: Path,
    state: jn.JournalState,
    engine: _Engine,
    account: str,
    region: str,
    not_deleted: list[dict[str, Any]],
) -> RunReport:
    events = {e.entry_id: e.event_id for e in plan.entries}
    copies = list(state.copies.values())

    def row(copy: jn.CopyState, **more: Any) -> dict[str, Any]:
        return {"key": copy.key, "entry_id": copy.entry_id, "event_id": events.get(copy.entry_id), **more}

    dead_letters = [e for e in plan.entries if e.source.kind is SourceKind.DEAD_LETTER]
    counts = {**state.counts(), "deleted_from_dlq": len(state.deleted)}
    counts["kept_in_dlq"] = len(dead_letters) - sum(1 for e in dead_letters if e.entry_id in state.deleted)
    sent = [c.first_sent_at for c in copies if c.first_sent_at]
    confirmed = [c.confirmed_at for c in copies if c.confirmed_at]
    elapsed = (engine.finished or 0) - (engine.started or 0)
    return RunReport(
        plan=str(plan_path),
        plan_id=plan.plan_id,
        dry_run=False,
        account=account,
        region=region,
        counts=counts,
        failures=[row(c, reason=c.reason) for c in copies if c.state == jn.FAILED],
        possibly_duplicated=[
            row(c, reason="in flight at interruption", state=c.state) for c in copies if c.interrupted
        ],
        faulted=[row(c, faults=c.faults, state=c.state) for c in copies if c.faults],
        events_first_seen=plan.events_first_seen,
        events_last_seen=plan.events_last_seen,
        first_send=min(sent) if sent else None,
        last_send=max(confirmed + sent) if sent else None,
        rate_requested=engine.options.rate,
        rate_achieved=round(engine.confirmed / elapsed, 1) if elapsed > 0 else 0.0,
        calls=engine.calls,
        throttled=engine.aimd.throttled,
        not_deleted=not_deleted,
        journal_path=str(jn.journal_path(plan_path)),
        report_path=str(report_path(plan_path)),
    )


def report_path(plan_path: Path) -> Path:
    """Where a run's report goes: next to the plan, `<plan stem>.report.json`."""
    return plan_path.with_suffix(".report.json")


def _save_report(report: RunReport, plan_path: Path) -> None:
    path = report_path(plan_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(jsonio.dumpb(report.to_json(), sort_keys=True, indent=True) + b"\n")
    tmp.replace(path)


def iter_lines(report: RunReport) -> Iterator[str]:
    """The report as the lines the command prints (table format)."""
    if report.dry_run:
        yield f"Dry run of plan {report.plan_id}: nothing sent. Add --apply to send."
        if report.events_first_seen:
            yield f"  events first seen {report.events_first_seen}, last seen {report.events_last_seen}"
        for target in report.targets:
            yield f"  {counted(target.copies, 'copy', 'copies')} -> {target.target}"
            for first in target.first:
                yield f"      {first}"
        if report.counts.get("already_final"):
            final = counted(report.counts["already_final"], "copy", "copies")
            yield f"  {final} already final in {report.journal_path}"
        if "dead_letters_to_delete" in report.counts:
            deletes = report.counts["dead_letters_to_delete"]
            yield f"  {deletes} dead letters to delete from their DLQs once confirmed"
        if report.counts.get("dead_letters_queue_unknown"):
            unknown = report.counts["dead_letters_queue_unknown"]
            yield f"  {unknown} dead letters stay in their DLQs: {QUEUE_UNKNOWN}"
        yield "  The account allow-list is checked (STS) when sending."
        return
    yield f"Replayed plan {report.plan_id} to account {report.account} in region {report.region}."
    yield "  " + ", ".join(f"{state} {count}" for state, count in report.counts.items())
    if report.events_first_seen:
        yield f"  events first seen {report.events_first_seen}, last seen {report.events_last_seen}"
    yield f"  sent from {report.first_send or '-'} to {report.last_send or '-'}"
    yield (
        f"  {counted(report.calls, 'call')}, "
        f"{report.rate_achieved:g} msg/s achieved of {report.rate_requested:g} "
        f"requested, {report.throttled} throttled"
    )
    for failure in report.failures:
        yield f"  failed {failure['key']} (event {failure['event_id']}): {failure['reason']}"
    for dup in report.possibly_duplicated:
        yield f"  possibly duplicated {dup['key']} (event {dup['event_id']}): in flight at interruption"
    for kept in report.not_deleted:
        yield f"  not deleted {kept['message_id']} from {kept['queue'] or 'its DLQ'}: {kept['reason']}"
    yield f"  report: {report.report_path}"
