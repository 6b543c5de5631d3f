"""The replay journal: where every planned copy stands, written durably so a killed run can resume.

One JSON object per line, appended and fsynced before the call it announces returns control:
`sending` lines are on disk before the API call that sends those copies, `confirmed` / `failed` lines
after it. The first line is a header naming the plan (its id and a digest of the file), the faults
and the seed, so a resume sends the same copies. Every other line is a partial update of one copy's
state, keyed by `key` (`<entry_id>#<copy>`), or a `deleted` record for a source message removed
from its DLQ.

Loading merges the updates into one state per copy. A copy whose last state is `sending` was in
flight at an interruption: the call may or may not have reached AWS. A resume sends it again and
flags it `interrupted` for good, so the report can name it "possibly duplicated". A resume also
compacts the file (one line per copy, written to a temporary file and renamed), which drops a line
torn by a kill in the middle of a write.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracekit import jsonio
from tracekit.errors import TracekitError, first_line
from tracekit.replay.model import now_iso

JOURNAL_FORMAT = "tracekit-replay-journal"
JOURNAL_VERSION = 1
PENDING = "pending"
SENDING = "sending"
CONFIRMED = "confirmed"
FAILED = "failed"
DROPPED = "dropped"  # a drop= fault: deliberately never sent
STATES = (PENDING, SENDING, CONFIRMED, FAILED, DROPPED)
FINAL = (CONFIRMED, FAILED, DROPPED)


class JournalError(TracekitError):
    """A journal cannot be read, or does not belong to the plan it is used with."""


@dataclass
class CopyState:
    """Where one planned copy stands."""

    key: str
    entry_id: str
    state: str = PENDING
    #: The faults applied to this copy (journal of injected faults).
    faults: list[str] = field(default_factory=list)
    #: Failed: why. Pending after a retryable failure: the last error code.
    reason: str | None = None
    #: Confirmed: the MessageId / SequenceNumber / EventId the target returned.
    provider_id: str | None = None
    #: In flight (state `sending`) when a run was interrupted: it may have been delivered twice.
    interrupted: bool = False
    first_sent_at: str | None = None
    confirmed_at: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The full state as one journal line (what compaction writes)."""
        record = {k: v for k, v in vars(self).items() if v not in (None, False, [])}
        record.setdefault("faults", [])
        return record


@dataclass
class JournalState:
    """A journal merged into one state per copy."""

    header: dict[str, Any]
    #: key -> state, in the order the copies were planned.
    copies: dict[str, CopyState] = field(default_factory=dict)
    #: entry id -> when its source message was deleted from its DLQ.
    deleted: dict[str, str] = field(default_factory=dict)
    #: One record per run that wrote to the journal (account, region, start).
    runs: list[dict[str, Any]] = field(default_factory=list)

    def apply(self, record: dict[str, Any]) -> None:
        """Merge one journal line."""
        if "deleted" in record:
            self.deleted[str(record["deleted"])] = str(record.get("at", ""))
            return
        if "run" in record:
            self.runs.append(record)
            return
        key = str(record["key"])
        copy = self.copies.get(key)
        if copy is None:
            copy = self.copies[key] = CopyState(
                key=key, entry_id=str(record.get("entry_id") or key.split("#")[0])
            )
        for name, value in record.items():
            if name in ("key", "at", "entry_id"):
                continue
            if name == "interrupted":
                copy.interrupted = copy.interrupted or bool(value)
            elif hasattr(copy, name):
                setattr(copy, name, value)
        at = record.get("at")
        if record.get("state") == SENDING and copy.first_sent_at is None:
            copy.first_sent_at = at
        if record.get("state") == CONFIRMED and at:
            copy.confirmed_at = at
        if record.get("state") in (PENDING, SENDING) and "reason" not in record:
            copy.reason = None

    def in_flight(self) -> list[str]:
        """Keys whose last state is `sending`: in flight when the run writing them stopped."""
        return [key for key, copy in self.copies.items() if copy.state == SENDING]

    def counts(self) -> dict[str, int]:
        """Copies per state."""
        out = dict.fromkeys(STATES, 0)
        for copy in self.copies.values():
            out[copy.state] = out.get(copy.state, 0) + 1
        return out


def journal_path(plan_path: Path) -> Path:
    """The journal of a plan: next to it, `<plan stem>.journal`."""
    return plan_path.with_suffix(".journal")


def read_journal(path: Path) -> JournalState:
    """Read and merge a journal; a torn last line (a kill mid-write) is ignored.

    Raises:
        JournalError: the file is not a replay journal, or a line other than the last is damaged.
    """
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise JournalError("cannot read the replay journal", f"{path} ({first_line(exc)})") from None
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = jsonio.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if number >= len(lines) - 1:  # the last line, cut short by a kill: never acted upon
                break
            raise JournalError(
                "damaged replay journal", f"{path} line {number}", "Move it away to start the plan over"
            ) from None
        records.append(record)
    if not records or records[0].get("format") != JOURNAL_FORMAT:
        raise JournalError("not a tracekit replay journal", str(path), "Move it away to start the plan over")
    state = JournalState(header=records[0])
    for record in records[1:]:
        state.apply(record)
    return state


class Journal:
    """An open journal: append-only, one fsync per write, safe to call from several threads."""

    def __init__(self, path: Path, state: JournalState) -> None:
        self.path = path
        self.state = state
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    @classmethod
    def create(cls, path: Path, header: dict[str, Any], copies: Iterable[CopyState]) -> Journal:
        """Write a new journal with every copy pending (atomically: it exists whole or not at all)."""
        state = JournalState(header={"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, **header})
        for copy in copies:
            state.copies[copy.key] = copy
        _write_whole(path, state)
        return cls(path, state)

    @classmethod
    def resume(cls, path: Path) -> tuple[Journal, list[str]]:
        """Reopen a journal: copies in flight at the interruption go back to pending, flagged
        `interrupted`; the file is compacted. Returns the journal and those copies' keys."""
        state = read_journal(path)
        if int(state.header.get("version", 0)) > JOURNAL_VERSION:
            raise JournalError("replay journal written by a newer tracekit", str(path), "Upgrade tracekit")
        in_flight = state.in_flight()
        for key in in_flight:
            copy = state.copies[key]
            copy.state, copy.interrupted = PENDING, True
        _write_whole(path, state)
        return cls(path, state), in_flight

    def write(self, records: list[dict[str, Any]]) -> None:
        """Append `records` and fsync; the in-memory state follows."""
        if not records:
            return
        at = now_iso()
        stamped = [{**record, "at": record.get("at", at)} for record in records]
        data = b"".join(jsonio.dumpb(r) + b"\n" for r in stamped)
        with self._lock:
            os.write(self._fd, data)
            os.fsync(self._fd)
            for record in stamped:
                self.state.apply(record)

    def mark(self, keys: Iterable[str], state: str, **fields: Any) -> None:
        """Move copies to `state` (same extra fields for each)."""
        self.write([{"key": key, "state": state, **fields} for key in keys])

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_whole(path: Path, state: JournalState) -> None:
    tmp = path.with_name(path.name + ".tmp")
    lines = [state.header, *(c.to_record() for c in state.copies.values())]
    lines += [{"deleted": entry_id, "at": at} for entry_id, at in state.deleted.items()]
    lines += state.runs
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as out:
        out.write(b"".join(jsonio.dumpb(line) + b"\n" for line in lines))
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is: without this a crash could bring back
    # the old journal, forgetting copies confirmed since.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
