"""The README's commands run: the tour works on the bundled samples, and every command is documented."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tracekit import jsonio
from tracekit.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def tour_commands() -> list[str]:
    """The `tracekit …` lines of the README's tour block, continuation lines joined."""
    section = README.split("## A short tour", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    # A quoted SQL string may span lines; shlex keeps it whole, so split commands on "tracekit ".
    return [
        "tracekit " + part.strip()
        for part in re.split(r"(?m)^tracekit ", joined)
        if part.strip() and not part.lstrip().startswith("#")
    ]


def test_the_tour_runs_on_the_samples(tmp_path: Path) -> None:
    commands = tour_commands()
    assert len(commands) >= 5
    store = str(tmp_path / "incident")
    outputs = []
    for command in commands:
        argv = [a if a != "/tmp/incident" else store for a in shlex.split(command, comments=True)]
        done = subprocess.run(
            [sys.executable, "-m", "tracekit", *argv[1:]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        outputs.append(done.stdout)
    # The tour's lookup of order 4711's request id shows its three attempts.
    attempts = next(o for c, o in zip(commands, outputs, strict=True) if "99caa200" in c)
    assert attempts.count("99caa200-e55a-40d3-a4aa-f3360928d2ab") == 3


def test_every_command_is_in_the_readme() -> None:
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert names == {"ingest", "sql", "demo", "analyze", "events", "show", "report", "audit"}
    for name in names:
        assert f"### `tracekit {name}" in README
    groups = {g.typer_instance.info.name: g.typer_instance for g in app.registered_groups}
    assert set(groups) == {"collect", "lab", "recorder", "replay", "chaos"}
    for group, sub in groups.items():
        for command in sub.registered_commands:
            assert f"`tracekit {group} {command.name}" in README


def run_as_json(commands: list[str], places: dict[str, Path]) -> list[str]:
    """Run README command lines with --format json, the paths in `places` (prefixes, in order) moved
    to scratch ones."""
    outputs = []
    for command in commands:
        argv = shlex.split(command)
        for old, new in places.items():
            argv = [a.replace(old, str(new)) for a in argv]
        done = subprocess.run(
            [sys.executable, "-m", "tracekit", *argv[1:], "--format", "json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        outputs.append(done.stdout)
    return outputs


def test_the_lab_section_runs(tmp_path: Path) -> None:
    section = README.split("## The lab", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.startswith("tracekit ")]
    assert [c.split()[1] for c in commands] == ["lab", "ingest"]
    outputs = run_as_json(commands, {"/tmp/lab-store": tmp_path / "store", "/tmp/lab": tmp_path / "lab"})
    # async-retries: 3 events; attempts 1 + 3 + 3 = 7 invocations; the third event is dead-lettered.
    counts = jsonio.loads(outputs[1])
    assert counts["invocations"] == 7
    assert counts["dead_letters"] == 1
    assert counts["quarantined"] == 0


def test_the_scenario_format_example_runs(tmp_path: Path) -> None:
    from tracekit.lab.run import run_scenario

    section = README.split("### Scenario format", 1)[1]
    example = section.split("```toml", 1)[1].split("```", 1)[0]
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (tmp_path / "handlers").mkdir()
    handler = ROOT / "samples" / "handlers" / "orders_notify.py"
    (tmp_path / "handlers" / handler.name).write_text(handler.read_text())
    (scenarios / "example.toml").write_text(example.replace("events = 10000", "events = 50"))
    report = run_scenario(scenarios / "example.toml", tmp_path / "out", seed=3)
    # One listed event plus 50 random ones, each ending somewhere.
    assert sum(report.outcomes.values()) == 51
    assert "in_flight" not in report.outcomes


def test_the_collect_section_runs_against_a_local_emulator(aws_endpoint: str, tmp_path: Path) -> None:
    """The "Trying it without an account" block, pointed at the test suite's moto server."""
    section = README.split("### Trying it without an account", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.startswith("tracekit ")]
    assert [c.split()[1] for c in commands] == ["lab", "collect", "collect", "events"]
    assert "export AWS_ENDPOINT_URL=" in block  # the test's fixture sets the same variables
    places = {"/tmp/live-store": tmp_path / "store", "/tmp/lab-live": tmp_path / "lab"}
    outputs = run_as_json(commands, places)
    # The oracle is the run's own truth.json: every event's outcome and attempt count, collected live.
    truth = jsonio.loads((tmp_path / "lab" / "truth.json").read_bytes())["events"]
    expected = {e["event_id"]: (e["outcome"], len(e["attempts"])) for e in truth}
    listed = {e["event_id"]: (e["outcome"], e["attempts"]) for e in jsonio.loads(outputs[3])}
    assert listed == expected
    assert sorted(expected.values()) == [("dead_lettered", 3), ("succeeded", 1), ("succeeded_after_retry", 3)]
    assert jsonio.loads(outputs[2])["dead_letters"] == 1


def test_the_replay_section_plans_and_dry_runs_the_demo_incident(tmp_path: Path) -> None:
    """The Replay block: the plan holds the demo's two dead letters, each bound for where it came
    from, with the exact body; the dry run names both copies and sends nothing (no credentials here)."""
    section = README.split("## Replay: re-injecting failed events", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.startswith("tracekit ")]
    assert [c.split()[1:3] for c in commands] == [["demo", "--store"], ["replay", "plan"], ["replay", "run"]]
    outputs = run_as_json(commands, {"/tmp/replay-store": tmp_path / "store"})
    # The oracle is the sample DLQ files themselves, read here without tracekit.
    samples = ROOT / "samples" / "dlq"
    (notify,) = jsonio.loads((samples / "orders-notify-dlq.receive-message.json").read_bytes())["Messages"]
    (redriven,) = jsonio.loads((samples / "orders-queue-dlq.receive-message.json").read_bytes())["Messages"]
    plan = jsonio.loads((tmp_path / "store" / "plan.json").read_bytes())
    entries = {e["event_id"]: e for e in plan["entries"]}
    order_4711 = notify["MessageAttributes"]["RequestID"]["StringValue"]
    assert set(entries) == {order_4711, redriven["MessageId"]}
    assert entries[order_4711]["payload"] == notify["Body"]
    assert entries[redriven["MessageId"]]["payload"] == redriven["Body"]
    source_queue = redriven["Attributes"]["DeadLetterQueueSourceArn"]
    assert entries[redriven["MessageId"]]["target"]["arn"] == source_queue
    # The incident window starts at order 4711's first START line in the sample log export.
    log = jsonio.loads((ROOT / "samples" / "logs" / "orders-notify.filter-log-events.json").read_bytes())
    start_line = f"START RequestId: {order_4711}"
    start = min(e["timestamp"] for e in log["events"] if e["message"].startswith(start_line))
    first_seen = dt.datetime.fromtimestamp(start / 1000, dt.UTC).isoformat(timespec="milliseconds")
    assert plan["events_first_seen"] == first_seen.replace("+00:00", "Z")
    assert plan["events_last_seen"] > plan["events_first_seen"]
    dry = jsonio.loads(outputs[2])
    assert dry["dry_run"] is True and dry["calls"] == 0 and dry["counts"]["to_send"] == 2
    assert (dry["events_first_seen"], dry["events_last_seen"]) == (
        plan["events_first_seen"],
        plan["events_last_seen"],
    )
    assert not (tmp_path / "store" / "plan.journal").exists()


def test_the_chaos_section_example_judges_the_sample_consumer(tmp_path: Path) -> None:
    section = README.split("## Chaos experiments", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    (command,) = [line for line in block.splitlines() if line.startswith("tracekit ")]
    (output,) = run_as_json([command], {})
    # Three orders, each delivered three times to a consumer that writes each order once.
    report = jsonio.loads(output)
    assert report["counts"] == {"idempotent": 3, "not_idempotent": 0, "inconclusive": 0}
    assert [e["delivered"] for e in report["events"]] == [3, 3, 3]
