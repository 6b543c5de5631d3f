"""The replay journal: states merge per copy, a torn last line is ignored, a resume flags what was in
flight as interrupted (for good) and compacts the file to one line per copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracekit.replay import journal as jn


def new_journal(path: Path, n: int = 3) -> jn.Journal:
    copies = [jn.CopyState(key=f"e{i}#0", entry_id=f"e{i}") for i in range(n)]
    return jn.Journal.create(path, {"plan_id": "p1", "faults": [], "seed": 0}, copies)


def test_states_merge_per_copy_and_survive_a_reread(tmp_path: Path) -> None:
    path = tmp_path / "plan.journal"
    with new_journal(path) as journal:
        journal.mark(["e0#0", "e1#0"], jn.SENDING)
        journal.write(
            [
                {"key": "e0#0", "state": jn.CONFIRMED, "provider_id": "m-0"},
                {"key": "e1#0", "state": jn.FAILED, "reason": "Refused: too big"},
            ]
        )
        journal.write([{"deleted": "e0", "message_id": "dlq-0", "queue": "q"}])
    state = jn.read_journal(path)
    assert state.header["plan_id"] == "p1"
    assert list(state.copies) == ["e0#0", "e1#0", "e2#0"]
    assert (state.copies["e0#0"].state, state.copies["e0#0"].provider_id) == (jn.CONFIRMED, "m-0")
    assert state.copies["e0#0"].first_sent_at is not None and state.copies["e0#0"].confirmed_at is not None
    assert (state.copies["e1#0"].state, state.copies["e1#0"].reason) == (jn.FAILED, "Refused: too big")
    assert state.copies["e2#0"].state == jn.PENDING
    assert list(state.deleted) == ["e0"]
    assert state.counts() == {"pending": 1, "sending": 0, "confirmed": 1, "failed": 1, "dropped": 0}


def test_a_torn_last_line_is_ignored_but_a_damaged_middle_line_is_not(tmp_path: Path) -> None:
    path = tmp_path / "plan.journal"
    with new_journal(path) as journal:
        journal.mark(["e0#0"], jn.SENDING)
    with path.open("ab") as out:  # a kill in the middle of writing the confirmation
        out.write(b'{"key": "e0#0", "state": "confi')
    assert jn.read_journal(path).copies["e0#0"].state == jn.SENDING

    lines = path.read_bytes().split(b"\n")
    lines.insert(2, b"{not json")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(jn.JournalError, match="damaged replay journal.*line 3"):
        jn.read_journal(path)


def test_resume_flags_copies_in_flight_for_good_and_compacts(tmp_path: Path) -> None:
    path = tmp_path / "plan.journal"
    with new_journal(path, n=4) as journal:
        journal.mark(["e0#0", "e1#0", "e2#0"], jn.SENDING)
        journal.mark(["e0#0"], jn.CONFIRMED, provider_id="m-0")
    with path.open("ab") as out:
        out.write(b'{"key": "e1#0", "sta')  # torn

    journal, in_flight = jn.Journal.resume(path)
    assert in_flight == ["e1#0", "e2#0"]
    assert [c.state for c in journal.state.copies.values()] == ["confirmed", "pending", "pending", "pending"]
    # Compacted: the header and one line per copy (the torn line is gone).
    assert len(path.read_bytes().splitlines()) == 1 + 4
    with journal:
        journal.mark(["e1#0", "e2#0", "e3#0"], jn.SENDING)
        journal.mark(["e1#0", "e2#0", "e3#0"], jn.CONFIRMED, provider_id="x")

    journal, in_flight = jn.Journal.resume(path)
    journal.close()
    assert in_flight == []
    flagged = {k for k, c in journal.state.copies.items() if c.interrupted}
    assert flagged == {"e1#0", "e2#0"}  # still flagged after they were confirmed
    assert journal.state.copies["e0#0"].provider_id == "m-0"


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.journal"
    path.write_text('{"format": "something-else"}\n')
    with pytest.raises(jn.JournalError, match="not a tracekit replay journal"):
        jn.read_journal(path)


def test_journal_path_is_next_to_the_plan() -> None:
    assert jn.journal_path(Path("replays/orders-2026-11-22.json")) == Path(
        "replays/orders-2026-11-22.journal"
    )
