"""Benchmark tracekit's whole ingest of a large CloudWatch Logs export against DuckDB's bare load of it.

Run by hand, not by pytest:

    .venv/bin/python tests/bench/ingest.py [--invocations N] [--keep DIR] [--runs R]

It generates N synthetic Lambda invocations as `aws logs filter-log-events` NDJSON (cached by N),
times a bare DuckDB `read_json` load of that file (the judged baseline) and DuckDB streaming it
straight into Parquet (the floor for keeping a durable copy; shown, not judged), times
`tracekit.collect.ingest.ingest_paths` on the same file in a child process (so the peak RSS is the
child's own), and prints one table.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

REPO_ROOT = Path(__file__).resolve().parents[2]

# Bump when the generated file's content changes, so stale caches are not reused.
GEN_VERSION = 1
SEED = 20261122
STREAMS = 50
ERROR_RATE = 0.10  # share of first attempts that raise an unhandled error
RETRY_RATE = 0.05  # share of failing invocations that Lambda retries asynchronously (1 and 3 min later)
SLOT_MS = 20  # one invocation attempt starts every SLOT_MS, so the file stays sorted by timestamp
T0_MS = int(datetime(2026, 11, 22, tzinfo=UTC).timestamp() * 1000)

RATIO_TARGET = 0.75  # bare DuckDB seconds / tracekit seconds
RSS_TARGET_MB = 1536.0  # peak RSS of the ingest child, defined for a ~3 GB input
RSS_TARGET_INPUT_MB = 3000.0

DUCKDB_COLUMNS = (
    "{'logStreamName':'VARCHAR','timestamp':'BIGINT','message':'VARCHAR',"
    "'ingestionTime':'BIGINT','eventId':'VARCHAR'}"
)

CHILD_CODE = """
import resource, sys, time
import orjson
from tracekit.store import Store
from tracekit.collect.ingest import ingest_paths

store_dir, path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
with Store.open(store_dir, create=True) as store:
    report = ingest_paths(store, [path])
dt = time.perf_counter() - t0


def peak_kb() -> int:
    # ru_maxrss survives exec, so a child forked from a big parent would report the parent's
    # size; VmHWM belongs to the exec'd process alone.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


print(orjson.dumps({"seconds": dt, "counts": dict(report.counts), "maxrss_kb": peak_kb()}).decode())
"""


@dataclass
class Expected:
    """What the generator wrote, by construction."""

    invocations: int  # distinct request ids
    attempts: int  # START..REPORT groups (first attempts plus async retries)
    retried: int  # request ids with retry attempts
    errors: int  # attempts that logged an unhandled error
    log_events: int
    input_bytes: int


@dataclass
class Counted:
    """What an independent scan of the written file finds."""

    lines: int
    starts: int
    ends: int
    reports: int
    init_reports: int
    errors: int
    distinct_request_ids: int


# --------------------------------------------------------------------------- generation


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def _iso(ms: int) -> str:
    return f"{_iso_second(ms // 1000)}{ms % 1000:03d}Z"


def generate(path: Path, invocations: int) -> Expected:
    """Write `invocations` Lambda invocations as filter-log-events NDJSON to `path`."""
    rng = random.Random(SEED)
    streams = [f"2026/11/22/[$LATEST]{rng.getrandbits(128):032x}" for _ in range(STREAMS)]
    cold = [True] * STREAMS
    dumps = orjson.dumps
    retries: list[tuple[int, int, str, int, int]] = []  # (due_ms, seq, request_id, order_id, attempt)
    seq = 0
    event_no = 0
    started = 0
    attempts = errors = retried = 0
    slot = 0
    buf: list[bytes] = []
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb", buffering=1 << 20) as out:
        while started < invocations or retries:
            now = T0_MS + slot * SLOT_MS
            slot += 1
            if retries and retries[0][0] <= now:
                _, _, rid, order_id, attempt = heapq.heappop(retries)
                # Second retry (attempt 3) succeeds half the time; the first retry always fails again.
                fails = attempt == 2 or rng.random() < 0.5
            elif started < invocations:
                started += 1
                rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                order_id = 10000 + started
                attempt = 1
                fails = rng.random() < ERROR_RATE
                if fails and rng.random() < RETRY_RATE:
                    retried += 1
                    seq += 1
                    heapq.heappush(retries, (now + 60_000, seq, rid, order_id, 2))
                    seq += 1
                    heapq.heappush(retries, (now + 180_000, seq, rid, order_id, 3))
            else:
                continue  # idle slot while waiting for the last retries to come due

            s = slot % STREAMS
            stream = streams[s]
            duration = rng.uniform(1.0, 15.0)
            if fails:
                app = f'{{"level":"ERROR","msg":"order rejected","orderId":{order_id},"attempt":{attempt}}}\n'
            else:
                app = f'{{"level":"INFO","msg":"processing","orderId":{order_id},"attempt":{attempt}}}\n'
            if s % 2:  # Node-style console line on odd streams
                app = f"{_iso(now + 1)}\t{rid}\t{'ERROR' if fails else 'INFO'}\t{app}"
            report = (
                f"REPORT RequestId: {rid}\tDuration: {duration:.2f} ms"
                f"\tBilled Duration: {int(duration) + 1} ms\tMemory Size: 128 MB"
                f"\tMax Memory Used: {rng.randint(60, 90)} MB\t"
            )
            if cold[s]:
                cold[s] = False
                report += f"Init Duration: {rng.uniform(100.0, 400.0):.2f} ms\t"
            end_ms = now + int(duration) + 1
            events = [(now, f"START RequestId: {rid} Version: $LATEST\n"), (now + 1, app)]
            if fails:
                errors += 1
                events.append(
                    (
                        now + 2,
                        f"[ERROR] ValueError: bad order {order_id}\nTraceback (most recent call last):\n"
                        '\u00a0\u00a0File "/var/task/app.py", line 7, in handler\n'
                        '\u00a0\u00a0\u00a0\u00a0raise ValueError(f"bad order {order_id}")\n',
                    )
                )
            events.append((end_ms, f"END RequestId: {rid}\n"))
            events.append((end_ms, report + "\n"))
            attempts += 1
            for ts, message in events:
                event_no += 1
                buf.append(
                    dumps(
                        {
                            "logStreamName": stream,
                            "timestamp": ts,
                            "message": message,
                            "ingestionTime": ts + 150 + (event_no % 400),
                            "eventId": f"{ts:020d}{event_no:036d}",
                        }
                    )
                )
            if len(buf) >= 50_000:
                buf.append(b"")
                out.write(b"\n".join(buf))
                buf.clear()
        if buf:
            buf.append(b"")
            out.write(b"\n".join(buf))
    os.replace(tmp, path)
    return Expected(
        invocations=invocations,
        attempts=attempts,
        retried=retried,
        errors=errors,
        log_events=event_no,
        input_bytes=path.stat().st_size,
    )


def cached_input(cache_dir: Path, invocations: int) -> tuple[Path, Expected, float | None]:
    """Return the generated file for `invocations`, generating it only when not cached."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"lambda-filter-log-events-n{invocations}-v{GEN_VERSION}"
    data, meta = cache_dir / f"{stem}.ndjson", cache_dir / f"{stem}.meta.json"
    if data.exists() and meta.exists():
        expected = Expected(**orjson.loads(meta.read_bytes()))
        if expected.input_bytes == data.stat().st_size:
            return data, expected, None
    t0 = time.perf_counter()
    expected = generate(data, invocations)
    gen_seconds = time.perf_counter() - t0
    meta.write_bytes(orjson.dumps(asdict(expected)))
    return data, expected, gen_seconds


# --------------------------------------------------------------------------- independent count


_START_RID = re.compile(rb'"message":"START RequestId: ([0-9a-f-]{36}) ')


def count_file(path: Path) -> Counted:
    """Count events and invocation markers by scanning the raw bytes, not trusting the generator."""
    lines = starts = ends = reports = init_reports = errors = 0
    rids: set[bytes] = set()
    tail = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(64 << 20)
            if not block:
                chunk, tail = tail, b""
            else:
                block = tail + block
                cut = block.rfind(b"\n") + 1
                chunk, tail = block[:cut], block[cut:]
            if chunk:
                lines += chunk.count(b"\n")
                starts += chunk.count(b'"message":"START RequestId: ')
                ends += chunk.count(b'"message":"END RequestId: ')
                reports += chunk.count(b'"message":"REPORT RequestId: ')
                init_reports += chunk.count(b"\\tInit Duration: ")
                errors += chunk.count(b'"message":"[ERROR] ')
                rids.update(_START_RID.findall(chunk))
            if not block:
                break
    return Counted(lines, starts, ends, reports, init_reports, errors, len(rids))


# --------------------------------------------------------------------------- measurements


def duckdb_load(path: Path) -> tuple[float, int]:
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        t0 = time.perf_counter()
        con.execute(
            "CREATE TABLE raw AS SELECT * FROM read_json(?, format='newline_delimited', "
            f"columns={DUCKDB_COLUMNS})",
            [str(path)],
        )
        seconds = time.perf_counter() - t0
        (rows,) = con.execute("SELECT count(*) FROM raw").fetchone()
    finally:
        con.close()
    return seconds, rows


def duckdb_copy(path: Path, work_dir: Path) -> float:
    """Seconds for DuckDB to stream the same lines straight into one Parquet file, parsing nothing.

    Not judged: it shows the floor for any ingest that keeps a durable Parquet copy of the events,
    which the bare load (a table in memory) does not pay for.
    """
    import duckdb

    out = work_dir / "copy-floor.parquet"
    con = duckdb.connect(config={"preserve_insertion_order": False})
    try:
        con.execute("SET enable_progress_bar = false")
        t0 = time.perf_counter()
        con.execute(
            f"COPY (SELECT * FROM read_json(?, format='newline_delimited', columns={DUCKDB_COLUMNS})) "
            f"TO '{out}' (FORMAT parquet, COMPRESSION snappy)",
            [str(path)],
        )
        return time.perf_counter() - t0
    finally:
        con.close()
        out.unlink(missing_ok=True)


def tracekit_ingest(path: Path, work_dir: Path) -> dict:
    """Run one whole ingest into a fresh store in a child process; return its JSON result."""
    store_dir = Path(tempfile.mkdtemp(prefix="store-", dir=work_dir)) / "store"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD_CODE, str(store_dir), str(path)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(store_dir.parent, ignore_errors=True)
    if proc.returncode != 0:
        hint = " (killed by SIGKILL: probably out of memory)" if proc.returncode == -9 else ""
        raise RuntimeError(f"tracekit ingest child exited {proc.returncode}{hint}:\n{proc.stderr.strip()}")
    last = proc.stdout.strip().splitlines()[-1]
    return orjson.loads(last)


# --------------------------------------------------------------------------- report


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("metric", "value", "target", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join(
            (c.rjust(w) if i == 1 else c.ljust(w)) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()

    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(fmt(r))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark tracekit's ingest against DuckDB's bare read_json load of the same "
            "filter-log-events NDJSON. Disk use: about 1.3 KB per invocation for the cached input, "
            "which is kept for reruns (250,000 -> ~0.32 GB; 2,500,000 -> ~3.2 GB, the size the "
            "peak-RSS target is defined for), plus one temporary tracekit store at a time. "
            "RAM: the bare DuckDB load holds the whole table in this process (~1x the input)."
        )
    )
    parser.add_argument("--invocations", type=int, default=250_000, help="invocations to generate (250000)")
    parser.add_argument(
        "--keep",
        type=Path,
        help="directory to cache the generated input in (default: <tmp>/tracekit-bench); reused when present",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each side; best time wins (3)")
    args = parser.parse_args(argv)

    cache_dir = args.keep or Path(tempfile.gettempdir()) / "tracekit-bench"
    path, exp, gen_seconds = cached_input(cache_dir, args.invocations)
    size_mb = exp.input_bytes / 1e6
    if gen_seconds is None:
        print(f"input: {path} (cached, {size_mb:,.1f} MB)")
    else:
        print(f"input: {path} (generated in {gen_seconds:.1f} s, {size_mb:,.1f} MB)")

    counted = count_file(path)
    checks = [
        ("log events (lines)", exp.log_events, counted.lines),
        ("invocation attempts (START)", exp.attempts, counted.starts),
        ("END lines", exp.attempts, counted.ends),
        ("REPORT lines", exp.attempts, counted.reports),
        (
            "cold starts (Init Duration)",
            STREAMS if exp.attempts >= STREAMS else exp.attempts,
            counted.init_reports,
        ),
        ("unhandled errors", exp.errors, counted.errors),
        ("distinct request ids", exp.invocations, counted.distinct_request_ids),
    ]
    print("generator check (expected vs counted in the file):")
    ok = True
    for name, want, got in checks:
        flag = "ok" if want == got else "MISMATCH"
        ok &= want == got
        print(f"  {name:<30} {want:>12,} {got:>12,}  {flag}")
    print(f"  ({exp.retried:,} request ids retried asynchronously at +1 and +3 min)")
    if not ok:
        print("generator self-check failed", file=sys.stderr)
        return 2

    bare: list[float] = []
    for _ in range(args.runs):
        seconds, rows = duckdb_load(path)
        if rows != exp.log_events:
            print(f"DuckDB loaded {rows:,} rows, expected {exp.log_events:,}", file=sys.stderr)
            return 2
        bare.append(seconds)
    print("duckdb bare load runs (s): " + ", ".join(f"{s:.2f}" for s in bare))

    if not (REPO_ROOT / "tracekit" / "collect" / "ingest.py").exists():
        print("tracekit/collect/ingest.py does not exist yet; skipping the tracekit side", file=sys.stderr)
        return 3

    runs: list[dict] = []
    work_dir = Path(tempfile.mkdtemp(prefix="tracekit-bench-stores-"))
    try:
        copies = [duckdb_copy(path, work_dir) for _ in range(args.runs)]
        print("duckdb read_json -> Parquet runs (s): " + ", ".join(f"{s:.2f}" for s in copies))
        for _ in range(args.runs):
            runs.append(tracekit_ingest(path, work_dir))
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print("tracekit ingest runs (s): " + ", ".join(f"{r['seconds']:.2f}" for r in runs))

    best_bare = min(bare)
    best = min(runs, key=lambda r: r["seconds"])
    tk_seconds = best["seconds"]
    counts = best["counts"]
    rss_mb = max(r["maxrss_kb"] for r in runs) / 1024
    ratio = best_bare / tk_seconds
    rss_scaled = rss_mb <= RSS_TARGET_MB
    rss_note = "" if size_mb >= RSS_TARGET_INPUT_MB else f" (input {size_mb:,.0f} MB; target is for ~3 GB)"

    def n(v: object) -> str:
        return f"{v:,}" if isinstance(v, int) else str(v)

    parent_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [
        ("input size (MB)", f"{size_mb:,.1f}", "", ""),
        ("log events (generated)", n(exp.log_events), "", ""),
        (
            "log events (tracekit)",
            n(counts.get("log_events")),
            n(exp.log_events),
            "ok" if counts.get("log_events") == exp.log_events else "differs",
        ),
        ("invocations (generated: request ids)", n(exp.invocations), "", ""),
        ("invocation attempts (generated: START)", n(exp.attempts), "", ""),
        (
            "invocations (tracekit)",
            n(counts.get("invocations")),
            f"{exp.invocations:,} or {exp.attempts:,}",
            "ok" if counts.get("invocations") in (exp.invocations, exp.attempts) else "differs",
        ),
        ("destination_records (tracekit)", n(counts.get("destination_records")), "", ""),
        ("dead_letters (tracekit)", n(counts.get("dead_letters")), "", ""),
        ("quarantined (tracekit)", n(counts.get("quarantined")), "0", ""),
        (f"duckdb bare load (s, best of {len(bare)})", f"{best_bare:.2f}", "", ""),
        (f"duckdb read_json -> Parquet (s, best of {len(copies)})", f"{min(copies):.2f}", "", "not judged"),
        (f"tracekit ingest (s, best of {len(runs)})", f"{tk_seconds:.2f}", "", ""),
        ("log events/s (tracekit)", f"{exp.log_events / tk_seconds:,.0f}", "", ""),
        ("invocations/s (tracekit)", f"{(counts.get('invocations') or 0) / tk_seconds:,.0f}", "", ""),
        (
            "ratio bare/tracekit",
            f"{ratio:.2f}",
            f">= {RATIO_TARGET}",
            "PASS" if ratio >= RATIO_TARGET else "MISS",
        ),
        ("ratio bare/Parquet copy (the floor)", f"{best_bare / min(copies):.2f}", "", "not judged"),
        (
            "peak RSS tracekit child (MB, max)",
            f"{rss_mb:,.0f}",
            f"< {RSS_TARGET_MB:,.0f}",
            ("PASS" if rss_scaled else "MISS") + rss_note,
        ),
        ("parent peak RSS (MB, not judged)", f"{parent_rss_mb:,.0f}", "", ""),
    ]
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
