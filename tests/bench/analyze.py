"""Benchmark the analyzer: rebuild events/attempts from 1,000,000 async events and from 4x that.

Run by hand, not by pytest:

    .venv/bin/python tests/bench/analyze.py [--events N] [--keep DIR] [--no-scale] [--repeat N]

It reuses the ingest benchmark's generator (tests/bench/ingest.py: filter-log-events NDJSON of N
asynchronous events, about 4.2 log events each, with errors and retries 1 and 3 minutes later),
ingests each input once into a cached store, then times `tracekit.analyze.build.analyze` in a
child process (so peak RSS is the analyzer's own) and prints one table against the targets:
under 20 s for 1M events, growth no worse than linear at 4x, peak memory under 2 GB. Each size is
analyzed `--repeat` times (default 3) and judged on its fastest run, the usual estimator of what the
code costs when the machine's other work (page cache, the other core) is not in the way; every run's
time is printed too, and peak memory is the largest of them.
Disk: about 1.3 KB per event for the cached input plus the store (4M events -> ~6 GB in all).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO_ROOT))

import ingest as ingest_bench  # noqa: E402  (the generator lives beside this file)

TARGET_S = 20.0
TARGET_RSS_MB = 2048.0
STORE_VERSION = 1  # bump when the store layout changes, so cached stores are rebuilt

CHILD_CODE = """
import sys, time
import orjson
from tracekit.store import Store
from tracekit.analyze.build import analyze

t0 = time.perf_counter()
with Store.open(sys.argv[1]) as store:
    report = analyze(store)
seconds = time.perf_counter() - t0
with Store.open(sys.argv[1]) as store:
    [row] = store.query("SELECT count(*) AS events, sum(attempts) AS attempts FROM events")
peak = 0
with open("/proc/self/status") as fh:
    for line in fh:
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1])
print(orjson.dumps({"seconds": seconds, "maxrss_kb": peak, "steps": report.steps, **row}).decode())
"""


def cached_store(cache_dir: Path, events: int) -> tuple[Path, ingest_bench.Expected]:
    """A store holding the generated input for `events`, ingested once and kept."""
    path, expected, _ = ingest_bench.cached_input(cache_dir, events)
    store_dir = cache_dir / f"store-n{events}-v{ingest_bench.GEN_VERSION}.{STORE_VERSION}"
    done = store_dir / "bench-ingested"
    if not done.exists():
        from tracekit.collect.ingest import ingest_paths
        from tracekit.store import Store

        t0 = time.perf_counter()
        with Store.open(store_dir, create=True) as store:
            ingest_paths(store, [path], log_group="/aws/lambda/bench-orders")
        done.write_text(f"{time.perf_counter() - t0:.1f}\n")
        print(f"ingested {path.name} into {store_dir} in {done.read_text().strip()} s")
    return store_dir, expected


def run_analyze(store_dir: Path) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_CODE, str(store_dir)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"analyze failed:\n{proc.stderr}")
    return orjson.loads(proc.stdout.strip().splitlines()[-1])


def print_steps(results: list[tuple[int, dict]]) -> None:
    """Seconds per build step for each size, so a growth problem shows where it lives."""
    steps = list(results[0][1]["steps"])
    header = ("step", *(f"{events:,}" for events, _ in results))
    rows = [(step, *(f"{r['steps'].get(step, 0.0):.2f} s" for _, r in results)) for step in steps]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def verdict(target: str, met: bool) -> None:
    print(f"target: {target}: {'met' if met else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="async events (1000000)")
    parser.add_argument("--keep", type=Path, help="cache directory (default <tmp>/tracekit-bench)")
    parser.add_argument("--no-scale", action="store_true", help="skip the 4x run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size, fastest judged (3)")
    args = parser.parse_args(argv)
    cache_dir = args.keep or Path(tempfile.gettempdir()) / "tracekit-bench"

    rows = []
    results = []
    for scale in (1,) if args.no_scale else (1, 4):
        events = args.events * scale
        store_dir, expected = cached_store(cache_dir, events)
        runs = [run_analyze(store_dir) for _ in range(max(1, args.repeat))]
        result = dict(min(runs, key=lambda r: r["seconds"]))
        result["maxrss_kb"] = max(r["maxrss_kb"] for r in runs)
        result["all_seconds"] = [r["seconds"] for r in runs]
        if result["events"] != expected.invocations or result["attempts"] != expected.attempts:
            print(
                f"analyzer found {result['events']:,} events / {result['attempts']:,} attempts, "
                f"expected {expected.invocations:,} / {expected.attempts:,}",
                file=sys.stderr,
            )
            return 2
        results.append((events, result))
        rows.append(
            (
                f"{events:,}",
                f"{expected.log_events:,}",
                f"{result['seconds']:.1f} s",
                " ".join(f"{s:.1f}" for s in result["all_seconds"]),
                f"{events / result['seconds']:,.0f}",
                f"{result['maxrss_kb'] / 1024:,.0f} MB",
            )
        )
    header = ("events", "log events", "analyze (fastest)", "every run (s)", "events/s", "peak RSS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    print_steps(results)
    first = results[0][1]
    print()
    verdict(f"{args.events:,} events analyzed in under {TARGET_S:.0f} s", first["seconds"] < TARGET_S)
    peak = max(r["maxrss_kb"] for _, r in results) / 1024
    verdict(f"peak RSS under {TARGET_RSS_MB:.0f} MB ({peak:,.0f} MB)", peak < TARGET_RSS_MB)
    if len(results) == 2:
        growth = results[1][1]["seconds"] / first["seconds"]
        # 10% slack over exactly linear: timings on this machine vary by that much between runs.
        verdict(f"4x the data no worse than linear ({growth:.2f}x the time)", growth <= 4.4)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
