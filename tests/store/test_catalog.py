"""The store contract: marker, atomic batches, one writer, real Parquet, append-only files, catalog."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tracekit.collect.ingest import ingest_paths
from tracekit.collect.progress import Meter
from tracekit.errors import StoreError
from tracekit.store import Store

TABLES = ("log_events", "invocations", "destination_records", "dead_letters", "quarantine")

# -- inputs written by hand, in the shapes AWS publishes -------------------------------------------------


def quarantine_select(rows: list[tuple[str, str, str, str, str]], batch: int) -> str:
    """A SELECT yielding quarantine rows (source, position, raw, reason, uid) for `Batch.copy`."""
    values = ", ".join("(" + ", ".join("'" + v.replace("'", "''") + "'" for v in row) + ")" for row in rows)
    return f"SELECT *, {batch}::BIGINT AS batch FROM (VALUES {values}) v(source, position, raw, reason, uid)"


def receive_message_output(messages: list[dict[str, str]]) -> dict[str, object]:
    """`aws sqs receive-message --attribute-names All --message-attribute-names All` output."""
    return {
        "Messages": [
            {
                "MessageId": m["id"],
                "ReceiptHandle": f"AQEB{m['id'].replace('-', '')}==",
                "MD5OfBody": "0" * 32,
                "Body": m["body"],
                "Attributes": {
                    "SenderId": "AIDAEXAMPLE000000001",
                    "ApproximateFirstReceiveTimestamp": str(int(m["sent"]) + 500),
                    "ApproximateReceiveCount": m["count"],
                    "SentTimestamp": m["sent"],
                },
                "MessageAttributes": {
                    "origin": {"StringValue": "store-test", "DataType": "String"},
                },
            }
            for m in messages
        ]
    }


DLQ_A = [
    {
        "id": "0d1f5a8e-1111-4c3a-9d55-0a0000000001",
        "body": '{"orderId": 101}',
        "count": "2",
        "sent": "1795339869812",
    },
    {
        "id": "0d1f5a8e-1111-4c3a-9d55-0a0000000002",
        "body": '{"orderId": 102}',
        "count": "5",
        "sent": "1795339870000",
    },
]
DLQ_B = [
    {
        "id": "0d1f5a8e-2222-4c3a-9d55-0b0000000001",
        "body": '{"orderId": 201}',
        "count": "3",
        "sent": "1795339900000",
    },
    {
        "id": "0d1f5a8e-2222-4c3a-9d55-0b0000000002",
        "body": '{"orderId": 202}',
        "count": "4",
        "sent": "1795339900500",
    },
]

STREAM = "2026/11/22/[$LATEST]0123456789abcdef0123456789abcdef"
REQUEST_ID = "5e2c0d7a-8f51-4c44-9a0e-3b7d0f6a2c11"
LOG_MESSAGES = [
    f"START RequestId: {REQUEST_ID} Version: $LATEST\n",
    f"[INFO]\t2026-11-22T09:00:00.100Z\t{REQUEST_ID}\treserving stock\n",
    f"END RequestId: {REQUEST_ID}\n",
    f"REPORT RequestId: {REQUEST_ID}\tDuration: 41.20 ms\tBilled Duration: 42 ms\t"
    "Memory Size: 128 MB\tMax Memory Used: 61 MB\t\n",
]


def to_json(value: object, **kwargs: object) -> str:
    # Inputs are written with the standard library, not with tracekit.jsonio, the code under test.
    return json.dumps(value, **kwargs)  # noqa: TID251


def write_dlq(path: Path, messages: list[dict[str, str]]) -> Path:
    path.write_text(to_json(receive_message_output(messages), indent=4) + "\n")
    return path


def write_log_ndjson(path: Path) -> Path:
    """filter-log-events events as NDJSON (`jq -c '.events[]'`), one invocation."""
    start = 1795338000000
    lines = []
    for i, message in enumerate(LOG_MESSAGES):
        ts = start + 100 * i
        lines.append(
            to_json(
                {
                    "logStreamName": STREAM,
                    "timestamp": ts,
                    "message": message,
                    "ingestionTime": ts + 900,
                    "eventId": f"{ts:020d}{i:036d}",
                },
                separators=(",", ":"),
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def count(store: Store, table: str) -> int:
    return store.query(f"SELECT count(*) AS n FROM {table}")[0]["n"]


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every table file and commit marker in a store."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and rel.parts[0] in (*TABLES, "_batches"):
            out[str(rel)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


def batch_numbers(root: Path) -> set[int]:
    return {int(d.name.split("=", 1)[1]) for t in TABLES for d in (root / t).glob("batch=*")}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store", create=True)


# -- opening -----------------------------------------------------------------------------------------------


def test_creating_a_store_writes_its_marker(tmp_path: Path) -> None:
    root = tmp_path / "new-store"
    Store.open(root, create=True).release()

    marker = json.loads((root / "tracekit-store.json").read_text())
    assert marker["format"] == "tracekit-store"
    assert isinstance(marker["schema_version"], int) and marker["schema_version"] >= 1
    reopened = Store.open(root)  # no create needed once the marker exists
    assert reopened.root == root.resolve()
    assert all(count(reopened, t) == 0 for t in TABLES)


def test_opening_a_missing_store_without_create_fails_and_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "absent"
    with pytest.raises(StoreError, match="no tracekit store"):
        Store.open(root)
    assert not root.exists()


def test_a_non_empty_directory_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "todo.txt").write_text("keep me\n")
    with pytest.raises(StoreError, match="not a tracekit store"):
        Store.open(root, create=True)
    assert sorted(p.name for p in root.iterdir()) == ["todo.txt"]


# -- atomic batches ----------------------------------------------------------------------------------------


def test_uncommitted_batch_is_invisible_and_removed_by_the_next_writer(store: Store) -> None:
    con = duckdb.connect()
    with store.writing():
        committed = store.next_batch()
        committed.copy(
            con,
            "quarantine",
            quarantine_select(
                [("a.json", "line 1", "{", "bad", "uid-a1"), ("a.json", "line 2", "[", "bad", "uid-a2")],
                committed.number,
            ),
        )
        committed.commit({"input": "a.json"})

        crashed = store.next_batch()
        assert crashed.number > committed.number
        crashed.copy(
            con,
            "quarantine",
            quarantine_select(
                [("b.json", f"line {i}", "x", "bad", f"uid-b{i}") for i in range(1, 4)], crashed.number
            ),
        )
        # No commit: the process "crashed" between writing Parquet and writing the marker.
        crashed_dir = store.root / "quarantine" / f"batch={crashed.number:08d}"
        assert (crashed_dir / "part-0.parquet").is_file()
        assert pq.read_table(crashed_dir / "part-0.parquet").num_rows == 3

        # A reader in the middle of all this sees only the committed batch.
        rows = store.query("SELECT source, position FROM quarantine ORDER BY position")
        assert rows == [
            {"source": "a.json", "position": "line 1"},
            {"source": "a.json", "position": "line 2"},
        ]
    con.close()

    # Still invisible to a fresh reader after the writer went away.
    assert count(Store.open(store.root), "quarantine") == 2

    with Store.open(store.root).writing():
        pass
    assert not crashed_dir.exists()
    assert (store.root / "quarantine" / f"batch={committed.number:08d}" / "part-0.parquet").is_file()
    assert count(Store.open(store.root), "quarantine") == 2


CRASHING_WRITER = textwrap.dedent(
    """
    import os, sys
    import duckdb
    from tracekit.store import Store

    st = Store.open(sys.argv[1])
    with st.writing():
        batch = st.next_batch()
        batch.copy(duckdb.connect(), "quarantine", sys.argv[2].replace("{N}", str(batch.number)))
        print(batch.number, flush=True)
        os._exit(9)  # killed before the commit marker, with the write lock held
    """
)


def test_writer_killed_before_commit_leaves_nothing_visible(store: Store) -> None:
    select = quarantine_select([("crash.json", "line 7", "raw", "bad", "uid-crash")], 0).replace(
        "0::BIGINT", "{N}::BIGINT"
    )
    proc = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(store.root), select],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 9, proc.stderr
    number = int(proc.stdout.strip())
    leftover = store.root / "quarantine" / f"batch={number:08d}"
    assert (leftover / "part-0.parquet").is_file()
    assert list((store.root / "_batches").glob("*.json")) == []

    assert count(store, "quarantine") == 0
    # The dead process released its lock; the next writer gets it and cleans up.
    with store.writing():
        assert not leftover.exists()
    assert count(store, "quarantine") == 0


def test_a_second_writer_is_refused_while_the_lock_is_held(store: Store) -> None:
    first = Store.open(store.root)
    second = Store.open(store.root)
    with first.writing():
        with pytest.raises(StoreError, match="being written by another"):
            with second.writing():
                pytest.fail("second writer got the lock")
        # Readers are not blocked by the writer.
        assert count(second, "dead_letters") == 0
    with second.writing():  # released: the next writer goes ahead
        pass


def test_ingest_while_locked_is_refused_and_writes_nothing(store: Store, tmp_path: Path) -> None:
    dlq = write_dlq(tmp_path / "dlq.json", DLQ_A)
    holder = Store.open(store.root)
    with holder.writing():
        with pytest.raises(StoreError):
            ingest_paths(Store.open(store.root), [dlq])
    assert count(store, "dead_letters") == 0
    assert batch_numbers(store.root) == set()


# -- Parquet files -----------------------------------------------------------------------------------------


def test_batches_are_real_parquet_files_with_the_table_columns(store: Store, tmp_path: Path) -> None:
    ingest_paths(store, [write_dlq(tmp_path / "dlq.json", DLQ_A)])

    files = sorted((store.root / "dead_letters").glob("batch=*/part-0.parquet"))
    assert len(files) == 1
    table = pq.read_table(files[0])
    public = {
        "message_id", "queue", "body", "kind", "request_id", "error_code", "error_message",
        "approximate_receive_count", "sent_timestamp", "dead_letter_source_arn", "message_group_id",
        "message_deduplication_id", "attributes", "message_attributes", "receipt_handle", "envelope",
        "envelope_id", "source", "position",
    }  # fmt: skip
    assert public <= set(table.column_names)
    assert pa.types.is_timestamp(table.schema.field("sent_timestamp").type)
    assert pa.types.is_integer(table.schema.field("approximate_receive_count").type)

    columns = ["message_id", "body", "approximate_receive_count", "sent_timestamp"]
    rows = sorted(table.select(columns).to_pylist(), key=lambda r: r["message_id"])
    assert rows == [
        {
            "message_id": m["id"],
            "body": m["body"],
            "approximate_receive_count": int(m["count"]),
            "sent_timestamp": dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(m["sent"])),
        }
        for m in DLQ_A
    ]


def test_later_ingests_add_batches_and_never_touch_earlier_files(store: Store, tmp_path: Path) -> None:
    first = write_dlq(tmp_path / "first.json", DLQ_A)
    ingest_paths(store, [first])
    before = snapshot(store.root)
    numbers_before = batch_numbers(store.root)
    assert any(k.startswith("dead_letters/batch=") for k in before)
    assert numbers_before

    second = write_dlq(tmp_path / "second.json", DLQ_B)
    logs = write_log_ndjson(tmp_path / "worker.ndjson")
    ingest_paths(store, [second, logs])
    # Ingesting the first file again adds nothing and must not rewrite anything either.
    ingest_paths(store, [first])

    after = snapshot(store.root)
    for rel, (data, mtime) in before.items():
        assert rel in after, f"{rel} disappeared"
        assert after[rel][0] == data, f"{rel} was rewritten"
        assert after[rel][1] == mtime, f"{rel} was touched"
    new_numbers = batch_numbers(store.root) - numbers_before
    assert new_numbers and min(new_numbers) > max(numbers_before)
    new_files = set(after) - set(before)
    assert any(k.startswith("dead_letters/batch=") for k in new_files)
    assert any(k.startswith("log_events/batch=") for k in new_files)

    assert count(store, "dead_letters") == len(DLQ_A) + len(DLQ_B)
    assert count(store, "log_events") == len(LOG_MESSAGES)


# -- the persistent catalog --------------------------------------------------------------------------------


def test_catalog_duckdb_opens_read_only_and_matches_the_store(store: Store, tmp_path: Path) -> None:
    ingest_paths(store, [write_dlq(tmp_path / "dlq.json", DLQ_A), write_log_ndjson(tmp_path / "w.ndjson")])
    expected = {
        "log_events": len(LOG_MESSAGES),
        "invocations": 1,
        "destination_records": 0,
        "dead_letters": len(DLQ_A),
        "quarantine": 0,
    }

    catalog = store.root / "catalog.duckdb"
    assert catalog.is_file()
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        from_catalog = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        ids = sorted(r[0] for r in con.execute("SELECT message_id FROM dead_letters").fetchall())
        request_ids = [r[0] for r in con.execute("SELECT request_id FROM invocations").fetchall()]
    finally:
        con.close()
    from_store = {t: count(store, t) for t in TABLES}
    assert from_catalog == from_store == expected
    assert ids == sorted(m["id"] for m in DLQ_A)
    assert request_ids == [REQUEST_ID]


def test_catalog_follows_later_ingests(store: Store, tmp_path: Path) -> None:
    ingest_paths(store, [write_dlq(tmp_path / "a.json", DLQ_A)])
    ingest_paths(store, [write_dlq(tmp_path / "b.json", DLQ_B)])
    con = duckdb.connect(str(store.root / "catalog.duckdb"), read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    finally:
        con.close()
    assert n == len(DLQ_A) + len(DLQ_B)


def test_ndjson_log_file_is_a_batch_of_its_own(store: Store, tmp_path: Path) -> None:
    """filter-log-events NDJSON gets its own batch; each marker names files inside the store."""
    ingest_paths(store, [write_dlq(tmp_path / "a.json", DLQ_A), write_log_ndjson(tmp_path / "w.ndjson")])
    assert len(batch_numbers(store.root)) == 2
    markers = sorted((store.root / "_batches").glob("*.json"))
    assert len(markers) == 2
    for marker in markers:
        for rel in json.loads(marker.read_text())["files"].values():
            path = (store.root / rel).resolve()
            assert path.is_file()
            assert os.path.commonpath([path, store.root]) == str(store.root)


def test_small_files_share_one_batch_that_names_every_input(store: Store, tmp_path: Path) -> None:
    """Many small files are committed together: one marker lists all of them, so each file's rows
    are still all there or none."""
    inputs = [write_dlq(tmp_path / f"dlq-{i}.json", DLQ_A) for i in range(3)]
    ingest_paths(store, inputs)
    markers = sorted((store.root / "_batches").glob("*.json"))
    assert len(markers) == 1
    assert sorted(json.loads(markers[0].read_text())["inputs"]) == sorted(str(p) for p in inputs)


def test_ingest_counts_each_file_on_its_meter_as_it_goes(store: Store, tmp_path: Path) -> None:
    """The progress line names the file being read and counts the files done, small ones included."""
    inputs = [write_dlq(tmp_path / f"dlq-{i}.json", DLQ_A) for i in range(3)]
    inputs.append(write_log_ndjson(tmp_path / "w.ndjson"))
    seen: list[tuple[str, int]] = []

    class Recording(Meter):
        def note(self, description: str) -> None:
            seen.append((description, self.items))
            super().note(description)

    meter = Recording("ingest", "files", enabled=False, pages=False)
    ingest_paths(store, [tmp_path], meter=meter)

    # expand() sorts a directory's files by path: dlq-0, dlq-1, dlq-2, then w.ndjson.
    assert seen == [
        ("dlq-0.json (1 of 4)", 0),
        ("dlq-1.json (2 of 4)", 1),
        ("dlq-2.json (3 of 4)", 2),
        ("w.ndjson (4 of 4)", 3),
    ]
    assert meter.items == 4
