"""Issue 4's acceptance, across every shipped scenario: the analyzer's events and attempts agree
with the lab's truth.json, with and without the recorder, except where the evidence does not allow
it, and then the event says it is uncertain instead of guessing.

The analyzer reads only the store (ingested artifacts); truth.json is read here, as the oracle.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tracekit import jsonio
from tracekit.analyze.build import analyze
from tracekit.collect.ingest import ingest_paths
from tracekit.lab.run import run_scenario
from tracekit.store import Store

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "samples" / "scenarios").glob("*.toml"))
HANDLERS = ROOT / "samples" / "handlers"


def with_recorder(text: str, on: bool) -> str:
    """The scenario text with the recorder switched on or off and handler paths made absolute."""
    text = re.sub(r"(?m)^recorder\s*=.*$", "", text)
    text = text.replace('"../handlers/', f'"{HANDLERS.as_posix()}/')
    return text.replace("[function]\n", f"[function]\nrecorder = {'true' if on else 'false'}\n", 1)


def analyzed(tmp_path: Path, scenario: Path, recorder: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    text = with_recorder(scenario.read_text(), recorder)
    path = tmp_path / scenario.name
    path.write_text(text)
    out = tmp_path / "out"
    run_scenario(path, out, seed=1)
    function = tomllib.loads(text)["function"]["name"]
    with Store.open(tmp_path / "store", create=True) as store:
        inputs = [out / d for d in ("logs", "destinations", "dlq") if (out / d).is_dir()]
        report = ingest_paths(store, inputs, log_group=f"/aws/lambda/{function}")
        assert report.counts["quarantined"] == 0
        analyze(store, config=None)
        events = {e["event_id"]: e for e in store.query("SELECT * FROM events")}
        attempts: dict[str, list[dict[str, Any]]] = {}
        for row in store.query("SELECT * FROM attempts ORDER BY event_id, attempt"):
            attempts.setdefault(row["event_id"], []).append(row)
    truth = jsonio.loads((out / "truth.json").read_bytes())
    for event_id, event in events.items():
        event["attempt_rows"] = attempts.get(event_id, [])
    return truth, events


def visible(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in attempts if a["outcome"] != "throttled"]


@pytest.mark.parametrize("recorder", [True, False], ids=["recorder", "no-recorder"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_events_agree_with_truth_or_say_they_are_uncertain(
    tmp_path: Path, scenario: Path, recorder: bool
) -> None:
    truth, events = analyzed(tmp_path, scenario, recorder)
    wrong = []
    for expected in truth["events"]:
        got = events.get(expected["event_id"])
        if got is None:
            # Only an event nothing in the artifacts names may be missing: with the recorder on,
            # every event that reached the function is in the logs.
            if recorder and visible(expected["attempts"]):
                wrong.append((expected["event_id"], "missing"))
            continue
        if got["uncertain"]:
            assert got["uncertain_reason"], expected["event_id"]
            continue
        seen = [(a["request_id"], a["outcome"]) for a in got["attempt_rows"]]
        want = [(a["request_id"], a["outcome"]) for a in visible(expected["attempts"])]
        facts = (got["outcome"], got["duplicates"], seen)
        if facts != (expected["outcome"], expected["duplicates"], want):
            wrong.append((expected["event_id"], facts, (expected["outcome"], expected["duplicates"], want)))
    assert not wrong, wrong
    # An event the lab never made is a wrong claim, unless it says it may be one.
    extra = set(events) - {e["event_id"] for e in truth["events"]}
    assert not [e for e in sorted(extra) if not events[e]["uncertain"]], "events the lab never made"


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if "kinesis" in s.stem or "dynamodb" in s.stem])
def test_batch_trees_agree_with_truth_with_the_recorder(tmp_path: Path, scenario: Path) -> None:
    truth, _ = analyzed(tmp_path, scenario, recorder=True)
    with Store.open(tmp_path / "store") as store:
        batches = store.query(
            "SELECT batch_id, parent_batch_id, size, outcome FROM batches ORDER BY batch_id"
        )
    by_request = {b["request_id"]: b for b in truth["batches"]}
    truth_parent = {
        b["request_id"]: (by_request.get(p["request_id"]) or {}).get("request_id") if p else None
        for b in truth["batches"]
        for p in [next((x for x in truth["batches"] if x["batch_id"] == b["parent_batch_id"]), None)]
    }
    got_parent = {b["batch_id"]: b["parent_batch_id"] for b in batches}
    assert got_parent == {rid: parent for rid, parent in truth_parent.items() if rid is not None}


def test_an_sqs_consumer_nothing_names_is_not_passed_off_as_async_events(tmp_path: Path) -> None:
    # sqs-redrive without the recorder: its handler logs messages only in free text, so no log names
    # the messages; the redrive DLQ proves an SQS consumer exists.
    truth, events = analyzed(tmp_path, ROOT / "samples" / "scenarios" / "sqs-redrive.toml", recorder=False)
    async_like = [e for e in events.values() if e["source"] == "async"]
    assert async_like, "the consumer's invocations show up as async-looking events"
    for event in async_like:
        assert event["uncertain"]
        assert "Set source in tracekit.toml" in event["uncertain_reason"]
    [dead] = [e for e in truth["events"] if e["outcome"] == "dead_lettered"]
    assert events[dead["event_id"]]["outcome"] == "dead_lettered"
