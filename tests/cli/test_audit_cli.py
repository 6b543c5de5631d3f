"""`tracekit audit`, end to end in a subprocess.

The store holds the lab's samples/scenarios/sqs-redrive.toml run: an SQS function (timeout 10 s, one
batch times out) reading a queue with visibility timeout 60 s, batch size 4 and a redrive policy of
maxReceiveCount 3 whose DLQ receives order 4720. Expected findings are worked out from that scenario
and lambda-semantics.md §3, not from audit's output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRun
from tracekit.collect.ingest import ingest_paths
from tracekit.lab.run import run_scenario
from tracekit.store import Store

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "samples" / "scenarios" / "sqs-redrive.toml"

# The scenario's queue and mapping as its owner would describe them, plus a function DLQ that an SQS
# event source never uses, and all-or-nothing batches.
CONFIG = """
[functions.orders-worker]
key = "$.orderId"
visibility_timeout_s = 60
dlq = "arn:aws:sqs:eu-west-1:123456789012:orders-worker-dlq"
report_batch_item_failures = false
"""


@pytest.fixture
def store(tmp_path: Path) -> Path:
    out = tmp_path / "lab"
    run_scenario(SCENARIO, out, seed=1)
    root = tmp_path / "store"
    with Store.open(root, create=True) as st:
        ingest_paths(st, [out / "logs", out / "dlq"], log_group="/aws/lambda/orders-worker")
    return root


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def one_error_line(result: Any) -> str:
    assert result.returncode == 2, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_audit_joins_configuration_and_what_the_store_shows(
    tracekit_cli: CliRun, store: Path, tmp_path: Path
) -> None:
    cwd = tmp_path / "project"
    cwd.mkdir()
    (cwd / "tracekit.toml").write_text(CONFIG)
    result = tracekit_cli("audit", "--store", store, "--format", "json", cwd=cwd)
    document = json.loads(ok(result))
    assert "rebuilding it" in result.stderr  # the store was never analyzed
    assert document["functions"] == [
        {"function": "orders-worker", "source": "sqs", "source_basis": "observed", "audited": True}
    ]
    found = {f["rule"]: f for f in document["findings"]}
    # 60 s is exactly 6 x the 10 s timeout the timed-out batch shows: no visibility finding.
    assert set(found) == {"sqs-function-dlq", "sqs-max-receive-count", "sqs-no-batch-item-failures"}
    assert {r: (f["severity"], f["basis"]) for r, f in found.items()} == {
        "sqs-function-dlq": ("medium", "configuration"),
        # maxReceiveCount 3: the DLQ copy read back shows ApproximateReceiveCount 4.
        "sqs-max-receive-count": ("medium", "observed"),
        # Batches of 4 (six orders sent at once, batch_size 4).
        "sqs-no-batch-item-failures": ("medium", "configuration, observed"),
    }
    assert found["sqs-max-receive-count"]["value"].startswith("max_receive_count at most 4")
    assert found["sqs-function-dlq"]["references"] == [
        "https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html",
        "https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html",
    ]
    # The DLQ message proves the redrive policy; everything else is configured or seen.
    assert document["unchecked"] == []


def test_the_table_explains_each_finding_and_lists_what_was_not_checked(
    tracekit_cli: CliRun, store: Path
) -> None:
    text = ok(tracekit_cli("audit", "--store", store))
    assert "Audited 1 function(s): orders-worker (sqs)" in text
    assert "1 finding(s)" in text
    assert "sqs-max-receive-count" in text
    assert "1. orders-worker: sqs-max-receive-count" in text
    assert "   Why: SQS moves a message to the redrive DLQ after maxReceiveCount receives" in text
    assert "   Fix: Set the source queue's redrive policy maxReceiveCount to 5 or more." in text
    assert "   See: https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html" in text
    # Without tracekit.toml the visibility timeout, function DLQ and response type are unknown.
    not_checked = text.split("Not checked", 1)[1]
    for rule in ("sqs-visibility-timeout", "sqs-function-dlq", "sqs-no-batch-item-failures"):
        assert rule in not_checked
    assert "visibility_timeout_s" in not_checked
    assert all(line == line.rstrip() for line in text.splitlines() if line.startswith("   "))


def test_without_a_store_audit_reads_tracekit_toml_alone(tracekit_cli: CliRun, tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(
        '[functions.orders-notify]\nsource = "async"\ndlq = "none"\non_failure = "none"\n'
        "maximum_event_age_s = 21600\n"
    )
    result = tracekit_cli("audit", "--store", tmp_path / "missing", "--config", config, "-f", "json")
    document = json.loads(ok(result))
    assert f"No store at {tmp_path / 'missing'}: auditing {config} alone." in result.stderr
    assert [(f["rule"], f["severity"], f["basis"]) for f in document["findings"]] == [
        ("async-no-failure-sink", "high", "configuration")
    ]
    assert document["unchecked"] == []
    assert not (tmp_path / "missing").exists()


def test_no_store_and_no_config_is_one_error_line(tracekit_cli: CliRun) -> None:
    line = one_error_line(tracekit_cli("audit"))
    assert "nothing to audit: no tracekit store and no tracekit.toml" in line


def test_a_setting_audit_cannot_read_is_one_error_line(
    tracekit_cli: CliRun, store: Path, tmp_path: Path
) -> None:
    config = tmp_path / "tracekit.toml"
    config.write_text('[functions.orders-worker]\nvisibility_timeout_s = "thirty"\n')
    line = one_error_line(tracekit_cli("audit", "--store", store, "--config", config))
    assert "functions.orders-worker.visibility_timeout_s = 'thirty' is not a number of seconds" in line
