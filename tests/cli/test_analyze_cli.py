"""`tracekit analyze`, `tracekit events` and `tracekit show`, end to end in a subprocess.

The store holds a lab run: samples/scenarios/async-retries.toml (order 4710 succeeds, 4711 times
out twice and succeeds, 4712 fails three times and goes to the DLQ and the on-failure destination)
or samples/scenarios/sqs-redrive.toml. Expected ids, outcomes and times come from truth.json and
the scenario files; expected texts from the documented command behaviour.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRun
from tracekit.collect.ingest import ingest_paths
from tracekit.lab.run import run_scenario
from tracekit.store import Store

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "samples" / "scenarios"
EVENT_COLUMNS = [
    "event_id",
    "source",
    "function_name",
    "outcome",
    "attempts",
    "duplicates",
    "first_seen",
    "last_seen",
    "business_key",
    "uncertain",
]
# The async-retries payloads by the second after the start they were sent.
ORDER_AT = {0: 4710, 5: 4711, 9: 4712}
START = dt.datetime(2026, 11, 22, 9, 0, 0)


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


class Lab:
    """A store with one ingested lab run and its truth."""

    def __init__(self, root: Path, scenario: str | Path, function: str) -> None:
        out = root / "lab"
        run_scenario(SCENARIOS / scenario, out, seed=1)
        self.store = root / "store"
        with Store.open(self.store, create=True) as st:
            inputs = [out / d for d in ("logs", "destinations", "dlq") if (out / d).is_dir()]
            ingest_paths(st, inputs, log_group=f"/aws/lambda/{function}")
        self.truth: dict[str, Any] = json.loads((out / "truth.json").read_text())
        self.events = {e["event_id"]: e for e in self.truth["events"]}

    def by_outcome(self, outcome: str) -> dict[str, Any]:
        [event] = [e for e in self.truth["events"] if e["outcome"] == outcome]
        return event

    def by_order(self, order: int) -> dict[str, Any]:
        [event] = [
            e
            for e in self.truth["events"]
            if ORDER_AT[int((when(e["attempts"][0]["start"]) - START).total_seconds())] == order
        ]
        return event


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path, "async-retries.toml", "orders-notify")


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def one_error_line(result: Any) -> str:
    assert result.returncode == 2, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def events_json(tracekit_cli: CliRun, lab: Lab, *args: str, cwd: Path | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        ok(tracekit_cli("events", "--store", lab.store, "-f", "json", *args, cwd=cwd))
    )
    return rows


# ---------------------------------------------------------------------------- analyze


def test_analyze_prints_events_per_source_and_outcome(tracekit_cli: CliRun, lab: Lab) -> None:
    summary = json.loads(ok(tracekit_cli("analyze", "--store", lab.store, "-f", "json")))
    assert summary == {
        "generation": 1,
        "events": 3,
        "attempts": 7,
        "batches": 0,
        "uncertain": 0,
        "outcomes": {"async": {"dead_lettered": 1, "succeeded": 1, "succeeded_after_retry": 1}},
    }
    table = ok(tracekit_cli("analyze", "--store", lab.store))
    assert "3 events, 7 attempts, 0 batches" in table
    for outcome in ("dead_lettered", "succeeded", "succeeded_after_retry"):
        assert outcome in table
    rows = list(csv.reader(io.StringIO(ok(tracekit_cli("analyze", "--store", lab.store, "-f", "csv")))))
    assert rows[0] == ["source", "outcome", "events"]
    assert sorted(rows[1:]) == [
        ["async", "dead_lettered", "1"],
        ["async", "succeeded", "1"],
        ["async", "succeeded_after_retry", "1"],
    ]


def test_sql_queries_the_analysis_tables(tracekit_cli: CliRun, lab: Lab) -> None:
    ok(tracekit_cli("analyze", "--store", lab.store))
    query = "SELECT event_id, attempts FROM events ORDER BY event_id"
    rows = json.loads(ok(tracekit_cli("sql", query, "--store", lab.store, "-f", "json")))
    expected = sorted((e["event_id"], len(e["attempts"])) for e in lab.truth["events"])
    assert [(r["event_id"], r["attempts"]) for r in rows] == expected


def test_analyze_of_a_missing_store_is_one_error_line(tracekit_cli: CliRun, tmp_path: Path) -> None:
    assert "no tracekit store" in one_error_line(tracekit_cli("analyze", "--store", tmp_path / "nothing"))


# ---------------------------------------------------------------------------- events


def test_events_rebuilds_a_stale_analysis_and_says_so_once(tracekit_cli: CliRun, lab: Lab) -> None:
    first = tracekit_cli("events", "--store", lab.store, "-f", "json")
    assert first.stderr.strip() == "Analysis out of date (no analysis yet); rebuilding it."
    assert {r["event_id"] for r in json.loads(ok(first))} == set(lab.events)
    again = tracekit_cli("events", "--store", lab.store, "-f", "json")
    assert again.stderr == ""
    assert json.loads(ok(again)) == json.loads(first.stdout)


def test_events_lists_one_line_per_event_oldest_first(tracekit_cli: CliRun, lab: Lab) -> None:
    rows = events_json(tracekit_cli, lab)
    assert [list(r) for r in rows] == [EVENT_COLUMNS] * 3
    expected = sorted(lab.truth["events"], key=lambda e: when(e["attempts"][0]["start"]))
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in expected]
    for row, event in zip(rows, expected, strict=True):
        assert row["outcome"] == event["outcome"]
        assert row["attempts"] == len(event["attempts"])
        assert row["duplicates"] == event["duplicates"]
        assert when(row["first_seen"]) == when(event["attempts"][0]["start"])
        assert row["business_key"] is None
        assert row["uncertain"] is False

    table = ok(tracekit_cli("events", "--store", lab.store))
    assert all(event_id in table for event_id in lab.events)
    lines = list(csv.reader(io.StringIO(ok(tracekit_cli("events", "--store", lab.store, "-f", "csv")))))
    assert lines[0] == EVENT_COLUMNS
    assert [line[0] for line in lines[1:]] == [e["event_id"] for e in expected]


def test_events_filters(tracekit_cli: CliRun, lab: Lab) -> None:
    dead = lab.by_outcome("dead_lettered")
    assert [r["event_id"] for r in events_json(tracekit_cli, lab, "--outcome", "dead_lettered")] == [
        dead["event_id"]
    ]
    assert events_json(tracekit_cli, lab, "--outcome", "dropped") == []
    assert events_json(tracekit_cli, lab, "--duplicates") == []
    assert len(events_json(tracekit_cli, lab, "--function", "orders-notify")) == 3
    assert events_json(tracekit_cli, lab, "--function", "another-function") == []
    # Order 4710 was over at 09:00:00.264; the other two were still being retried after 09:00:06.
    late = events_json(tracekit_cli, lab, "--since", "2026-11-22T09:00:06Z")
    assert {r["event_id"] for r in late} == {lab.by_order(4711)["event_id"], lab.by_order(4712)["event_id"]}
    assert events_json(tracekit_cli, lab, "--since", "2026-11-22T10:00:00+01:00") == events_json(
        tracekit_cli, lab
    )
    assert len(events_json(tracekit_cli, lab, "--limit", "2")) == 2


def test_events_since_a_relative_time(tracekit_cli: CliRun, lab: Lab) -> None:
    # The lab's events happened on 2026-11-22, well within the last ten years of any clock before 2036.
    assert len(events_json(tracekit_cli, lab, "--since", "3650d")) == 3


def test_events_by_business_key_from_tracekit_toml_or_key_path(
    tracekit_cli: CliRun, lab: Lab, tmp_path: Path
) -> None:
    order = lab.by_order(4711)["event_id"]
    # No tracekit.toml: no keys, but a path computes them and path=value filters by them.
    assert events_json(tracekit_cli, lab, "--key", "4711") == []
    assert [r["event_id"] for r in events_json(tracekit_cli, lab, "--key", "$.order_id=4711")] == [order]
    emails = {r["business_key"] for r in events_json(tracekit_cli, lab, "--key", "$.email")}
    assert emails == {"a@example.com", "b@example.com", "c@invalid"}

    project = tmp_path / "project"
    project.mkdir()
    (project / "tracekit.toml").write_text('[functions.orders-notify]\nkey = "$.order_id"\n')
    keyed = tracekit_cli("events", "--store", lab.store, "-f", "json", "--key", "4711", cwd=project)
    assert keyed.stderr.startswith("Analysis out of date (business keys or settings changed")
    assert [(r["event_id"], r["business_key"]) for r in json.loads(ok(keyed))] == [(order, "4711")]
    # From a directory without tracekit.toml the analysis is used as it was built, keys included.
    elsewhere = tracekit_cli("events", "--store", lab.store, "-f", "json", "--key", "4711")
    assert elsewhere.stderr == ""
    assert [r["event_id"] for r in json.loads(ok(elsewhere))] == [order]

    config = tmp_path / "by-email.toml"
    config.write_text('[functions.orders-notify]\nkey = "$.email"\n')
    by_email = events_json(tracekit_cli, lab, "--config", config, "--key", "b@example.com")
    assert [r["event_id"] for r in by_email] == [order]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "cannot read the time"),
        (["--key", "$.order[x]"], "unsupported key path syntax"),
        (["--config", "missing.toml"], "config file not found"),
    ],
)
def test_events_errors_are_one_line(tracekit_cli: CliRun, lab: Lab, args: list[str], message: str) -> None:
    assert message in one_error_line(tracekit_cli("events", "--store", lab.store, *args))


def test_events_refuses_an_unknown_outcome(tracekit_cli: CliRun, lab: Lab) -> None:
    result = tracekit_cli("events", "--store", lab.store, "--outcome", "lost")
    assert result.returncode == 2
    assert "lost" in result.stderr


# ---------------------------------------------------------------------------- show


def test_show_json_is_the_whole_lifecycle(tracekit_cli: CliRun, lab: Lab) -> None:
    dead = lab.by_outcome("dead_lettered")
    shown = json.loads(ok(tracekit_cli("show", dead["event_id"], "--store", lab.store, "-f", "json")))
    assert (shown["query"], shown["matched_by"]) == (dead["event_id"], "event_id")
    [timeline] = shown["events"]
    event = timeline["event"]
    assert (event["event_id"], event["outcome"], event["attempts"]) == (dead["event_id"], "dead_lettered", 3)
    assert event["payload"] == {"order_id": 4712, "email": "c@invalid"}
    attempts = timeline["attempts"]
    assert [a["request_id"] for a in attempts] == [a["request_id"] for a in dead["attempts"]]
    assert [when(a["start_time"]) for a in attempts] == [when(a["start"]) for a in dead["attempts"]]
    # Gaps: each attempt's start minus the previous attempt's end, as truth.json times them.
    expected_gaps = [None] + [
        (when(b["start"]) - when(a["end"])).total_seconds() * 1000
        for a, b in zip(dead["attempts"], dead["attempts"][1:], strict=False)
    ]
    assert [a["gap_ms"] for a in attempts] == pytest.approx(expected_gaps, abs=1.0)
    assert timeline["batches"] == []
    sinks = {s["sink"]: s for s in timeline["sinks"]}
    assert set(sinks) == {"dead_letter", "destination_record"}
    assert sinks["destination_record"]["condition"] == "RetriesExhausted"
    assert sinks["destination_record"]["approximate_invoke_count"] == 3
    assert sinks["dead_letter"]["error_message"] == "mail service rejected the address for order 4712"


def test_show_text_is_a_readable_timeline(tracekit_cli: CliRun, lab: Lab) -> None:
    retried = lab.by_outcome("succeeded_after_retry")
    text = ok(tracekit_cli("show", retried["event_id"], "--store", lab.store))
    assert text.splitlines()[0].startswith(f"{retried['event_id']}  async · orders-notify")
    assert "succeeded after retry · 3 attempt(s), 3 delivery(ies), 2 retry(ies), no duplicates" in text
    # Attempt 2 started 60 s after attempt 1 timed out, attempt 3 120 s after attempt 2 (truth times).
    first, second, third = retried["attempts"]
    for earlier, later in ((first, second), (second, third)):
        seconds = (when(later["start"]) - when(earlier["end"])).total_seconds()
        assert f"{seconds // 60:.0f} min {seconds % 60:.1f} s" in text
    assert text.count("timeout") == 2
    assert "Final sink:" in text
    assert "Evidence:" in text
    assert "Traceback" not in text


def test_show_text_names_the_dlq_message_and_the_failure_record(tracekit_cli: CliRun, lab: Lab) -> None:
    dead = lab.by_outcome("dead_lettered")
    with Store.open(lab.store) as st:
        [letter] = st.query("SELECT message_id FROM dead_letters")
        [record] = st.query("SELECT record_id FROM destination_records WHERE condition = 'RetriesExhausted'")
    text = ok(tracekit_cli("show", dead["event_id"], "--store", lab.store))
    assert f"DLQ message {letter['message_id']}" in text
    assert f"destination record {record['record_id']} (RetriesExhausted" in text
    assert "dead lettered" in text


def test_show_finds_events_by_business_key(tracekit_cli: CliRun, lab: Lab) -> None:
    order = lab.by_order(4711)
    shown = json.loads(
        ok(tracekit_cli("show", "4711", "--key", "$.order_id", "--store", lab.store, "-f", "json"))
    )
    assert shown["matched_by"] == "business_key"
    assert [t["event"]["event_id"] for t in shown["events"]] == [order["event_id"]]
    text = ok(tracekit_cli("show", "4711", "--key", "$.order_id", "--store", lab.store))
    assert text.splitlines()[0] == "1 event(s) with business key 4711"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-event"], "no event with this id, business key or request id: no-such-event"),
        (["4711", "--key", "order_id"], "--key on show takes a key path"),
        (["4711", "--key", "$.a b"], "unsupported key path syntax"),
    ],
)
def test_show_errors_are_one_line(tracekit_cli: CliRun, lab: Lab, args: list[str], message: str) -> None:
    ok(tracekit_cli("analyze", "--store", lab.store))
    assert message in one_error_line(tracekit_cli("show", *args, "--store", lab.store))


def test_show_by_request_id_lists_the_events_of_that_invocation(tracekit_cli: CliRun, tmp_path: Path) -> None:
    lab = Lab(tmp_path, "sqs-redrive.toml", "orders-worker")
    # The invocation that handled the most messages, from truth: every event with an attempt under it.
    handled: dict[str, set[str]] = {}
    for event in lab.truth["events"]:
        for attempt in event["attempts"]:
            if attempt["request_id"]:
                handled.setdefault(attempt["request_id"], set()).add(event["event_id"])
    request_id, expected = max(handled.items(), key=lambda item: (len(item[1]), item[0]))
    assert len(expected) > 1
    shown = json.loads(ok(tracekit_cli("show", request_id, "--store", lab.store, "-f", "json")))
    assert shown["matched_by"] == "request_id"
    assert {t["event"]["event_id"] for t in shown["events"]} == expected
    for timeline in shown["events"]:
        truth = lab.events[timeline["event"]["event_id"]]
        assert [a["request_id"] for a in timeline["attempts"]] == [
            a["request_id"] for a in truth["attempts"] if a["outcome"] != "throttled"
        ]
        # SQS batches are flat: each attempt's batch, at depth 0.
        batch_ids = {a["batch_id"] for a in timeline["attempts"]}
        assert {b["batch_id"] for b in timeline["batches"]} == batch_ids
        assert {b["depth"] for b in timeline["batches"]} == {0}
    text = ok(tracekit_cli("show", request_id, "--store", lab.store))
    assert text.splitlines()[0] == f"{len(expected)} event(s) with request id {request_id}"
    for timeline in shown["events"]:
        for batch in timeline["batches"]:
            assert f"{batch['batch_id']}  orders-queue " in text


def test_show_puts_a_stream_record_under_the_batches_it_was_split_from(
    tracekit_cli: CliRun, tmp_path: Path
) -> None:
    # The Kinesis bisect walk-through, with the recorder so the logs say which records each batch held.
    text = (SCENARIOS / "kinesis-bisect-walkthrough.toml").read_text()
    handler = (REPO / "samples" / "handlers" / "orders_stream.py").as_posix()
    scenario = tmp_path / "bisect.toml"
    scenario.write_text(
        text.replace(
            'handler = "../handlers/orders_stream.py:handler"',
            f'handler = "{handler}:handler"\nrecorder = true',
        )
    )
    lab = Lab(tmp_path, scenario, "orders-stream-processor")
    truth_batches = {b["batch_id"]: b for b in lab.truth["batches"]}

    def depth(batch_id: str) -> int:
        parent = truth_batches[batch_id]["parent_batch_id"]
        return 0 if parent is None else depth(parent) + 1

    # The first record: in the original 10, the failing first half, and the 2 that succeeded.
    first = min(lab.truth["events"], key=lambda e: int(e["event_id"].rsplit(":", 1)[1]))
    chain: set[tuple[str, str | None, int]] = set()
    for attempt in first["attempts"]:
        node = attempt["batch_id"]
        while node is not None:
            parent = truth_batches[node]["parent_batch_id"]
            parent_request = truth_batches[parent]["request_id"] if parent else None
            chain.add((truth_batches[node]["request_id"], parent_request, depth(node)))
            node = parent
    assert max(d for _, _, d in chain) == 2
    shown = json.loads(ok(tracekit_cli("show", first["event_id"], "--store", lab.store, "-f", "json")))
    [timeline] = shown["events"]
    assert {(b["batch_id"], b["parent_batch_id"], b["depth"]) for b in timeline["batches"]} == chain
    assert [b["depth"] for b in timeline["batches"]] == sorted(b["depth"] for b in timeline["batches"])

    tree = ok(tracekit_cli("show", first["event_id"], "--store", lab.store))
    assert "Batches, under the batches they were split from" in tree
    # Each batch is indented one level deeper than the batch it was split from.
    lines = tree.splitlines()
    for request_id, parent_request, _ in chain:
        [line] = [line for line in lines if request_id in line and "──" in line]
        if parent_request is not None:
            [parent_line] = [line for line in lines if parent_request in line and "──" in line]
            assert line.index("──") == parent_line.index("──") + 4


@pytest.mark.parametrize("command", ["analyze", "events", "show"])
def test_each_command_has_help_with_examples(tracekit_cli: CliRun, command: str) -> None:
    help_text = ok(tracekit_cli(command, "--help"))
    assert "Example:" in help_text
    assert f"tracekit {command}" in help_text


def test_the_readme_analysis_section_runs(tracekit_cli: CliRun, tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Analysis", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.startswith("tracekit ")]
    assert [c.split()[1] for c in commands] == ["lab", "ingest", "analyze", "events", "show"]
    outputs = []
    for command in commands:
        argv = [
            a.replace("/tmp/lab-store", str(tmp_path / "store")).replace("/tmp/lab", str(tmp_path / "lab"))
            for a in shlex.split(command)[1:]
        ]
        outputs.append(ok(tracekit_cli(*argv, cwd=REPO)))
    truth = json.loads((tmp_path / "lab" / "truth.json").read_text())
    [dead] = [e for e in truth["events"] if e["outcome"] == "dead_lettered"]
    assert dead["event_id"] in outputs[3]  # events --outcome dead_lettered
    assert outputs[4].splitlines()[:2] == [  # show 4712 --key '$.order_id': order 4712 is the dead one
        "1 event(s) with business key 4712",
        f"{dead['event_id']}  async · orders-notify · business key 4712",
    ]
