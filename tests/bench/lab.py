"""Benchmark the lab: a seeded 100,000-event run across the async, SQS and Kinesis models.

Run by hand, not by pytest:

    .venv/bin/python tests/bench/lab.py [--events N] [--seed S]

It writes three bulk scenarios (random faults, duplicates) into a temporary directory, runs each
with `tracekit.lab.run.run_scenario`, and prints one table: events, attempts, log events, virtual
time, wall time and events/s per model, and the total against the target (under 60 s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HANDLER = Path(__file__).resolve().parent / "lab_handler.py"
TARGET_S = 60.0
FAULTS = "{ error = 0.04, timeout = 0.01, throttle = 0.01, crash = 0.002, out_of_memory = 0.002 }"

SCENARIOS = {
    "async": """
[source]
type = "async"
maximum_retry_attempts = 2
[destinations]
on_failure = "sqs:bench-async-failures"
dlq = "sqs:bench-async-dlq"
""",
    "sqs": """
[source]
type = "sqs"
queue = "bench-queue"
batch_size = 10
visibility_timeout_s = 30
max_receive_count = 3
dlq = "bench-queue-dlq"
""",
    "kinesis": """
[source]
type = "kinesis"
stream = "bench-stream"
shards = 4
batch_size = 100
bisect_batch_on_function_error = true
maximum_retry_attempts = 2
[destinations]
on_failure = "sqs:bench-stream-failures"
""",
}


def scenario_text(model: str, events: int) -> str:
    return f"""name = "bench-{model}"
[function]
name = "bench-{model}"
handler = "{HANDLER.as_posix()}:handler"
concurrency = 20
duration_ms = 20
{SCENARIOS[model]}
[random]
events = {events}
rate_per_s = 200
payload = {{ order_id = "{{n}}" }}
faults = {FAULTS}
duplicate_rate = 0.001
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events across the three models")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    from tracekit.lab.run import run_scenario

    base, extra = divmod(args.events, len(SCENARIOS))
    shares = {m: base + (1 if i < extra else 0) for i, m in enumerate(SCENARIOS)}
    rows = []
    total_wall = 0.0
    with tempfile.TemporaryDirectory(prefix="tracekit-lab-bench-") as tmp:
        for model in SCENARIOS:
            path = Path(tmp) / f"{model}.toml"
            path.write_text(scenario_text(model, shares[model]))
            t0 = time.perf_counter()
            report = run_scenario(path, Path(tmp) / f"out-{model}", seed=args.seed)
            wall = time.perf_counter() - t0
            total_wall += wall
            events = sum(report.outcomes.values())
            rows.append(
                (
                    model,
                    f"{events:,}",
                    f"{report.counts['log_events']:,}",
                    f"{report.virtual_seconds / 3600:.1f} h",
                    f"{wall:.1f} s",
                    f"{shares[model] / wall:,.0f}",
                )
            )
    rate = f"{args.events / total_wall:,.0f}"
    rows.append(("total", f"{args.events:,}", "", "", f"{total_wall:.1f} s", rate))
    header = ("model", "events", "log events", "virtual time", "wall time", "events/s")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    verdict = "met" if total_wall < TARGET_S else "NOT met"
    print(f"\ntarget: {args.events:,} events in under {TARGET_S:.0f} s — {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
