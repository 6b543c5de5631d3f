"""The recorder: the lines it writes per source, that it never changes or breaks the handler, that it
imports only the standard library, and that `tracekit recorder layer` ships it as a working layer."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import inspect
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tracekit import jsonio, recorder
from tracekit.recorder import recorded

ROOT = Path(__file__).resolve().parents[1]
RECORDER_FILE = ROOT / "tracekit" / "recorder.py"
REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e812345678"
CliRun = Callable[..., subprocess.CompletedProcess[str]]


class Context:
    aws_request_id = REQUEST_ID


def call(handler: Callable[[Any, Any], Any], event: Any, context: Any = None) -> tuple[Any, list[dict]]:
    """Call a recorded handler; return its result and the recorder lines it wrote."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = handler(event, Context() if context is None else context)
    return result, lines_of(out.getvalue())


def lines_of(text: str) -> list[dict]:
    assert text.endswith("\n") or not text
    return [json.loads(line) for line in text.splitlines()]


def record_in(event: Any) -> dict:
    """The "in" line the recorder writes for `event`."""
    _, lines = call(recorded(lambda event, context: None), event)
    assert lines[0]["phase"] == "in"
    return lines[0]


def sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def sqs_record(message_id: str, receive_count: str, queue: str = "my-queue", **attributes: str) -> dict:
    return {
        "messageId": message_id,
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": "Test message.",
        "attributes": {
            "ApproximateReceiveCount": receive_count,
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
            **attributes,
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-2:123456789012:{queue}",
        "awsRegion": "us-east-2",
    }


def kinesis_record(shard: str, sequence: str) -> dict:
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "1",
            "sequenceNumber": sequence,
            "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
            "approximateArrivalTimestamp": 1545084650.987,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
        "awsRegion": "us-east-2",
        "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
    }


SEQ_1 = "49590338271490256608559692538361571095921575989136588898"
SEQ_2 = "49590338271490256608559692540925702759324208523137515618"
DDB_STREAM = "arn:aws:dynamodb:us-west-2:111122223333:table/TestTable/stream/2015-05-11T21:21:33.291"


# ---------------------------------------------------------------------------- identity per source


def test_sqs_standard_queue_names_each_message_and_its_receive_count() -> None:
    event = {
        "Records": [
            sqs_record("059f36b4-87a3-44ab-83d2-661975830a7d", "1"),
            sqs_record("2e1424d4-f796-459a-8184-9c92662be6da", "3"),
        ]
    }
    line = record_in(event)
    assert line == {
        "tracekit": "recorder",
        "v": 1,
        "phase": "in",
        "requestId": REQUEST_ID,
        "source": "aws:sqs",
        "sourceArn": "arn:aws:sqs:us-east-2:123456789012:my-queue",
        "count": 2,
        "items": [
            {"id": "059f36b4-87a3-44ab-83d2-661975830a7d", "receiveCount": 1},
            {"id": "2e1424d4-f796-459a-8184-9c92662be6da", "receiveCount": 3},
        ],
    }


def test_sqs_fifo_message_carries_its_group_and_sequence_number() -> None:
    record = sqs_record(
        "11d6ee51-4cc7-4302-9e22-7cd8afdaadf5",
        "1",
        queue="fifo.fifo",
        SequenceNumber="18849496460467696128",
        MessageGroupId="1",
        MessageDeduplicationId="1",
    )
    line = record_in({"Records": [record]})
    assert line["sourceArn"] == "arn:aws:sqs:us-east-2:123456789012:fifo.fifo"
    assert line["items"] == [
        {
            "id": "11d6ee51-4cc7-4302-9e22-7cd8afdaadf5",
            "receiveCount": 1,
            "group": "1",
            "seq": "18849496460467696128",
        }
    ]


def test_sqs_message_redriven_from_a_dlq_names_the_source_queue() -> None:
    source = "arn:aws:sqs:us-east-2:123456789012:orders"
    record = sqs_record("a1", "2", queue="orders-dlq", DeadLetterQueueSourceArn=source)
    assert record_in({"Records": [record]})["items"] == [
        {"id": "a1", "receiveCount": 2, "dlqSourceArn": source}
    ]


def test_kinesis_names_the_shard_once_and_each_record_by_event_id_and_sequence_number() -> None:
    shard = "shardId-000000000006"
    line = record_in({"Records": [kinesis_record(shard, SEQ_1), kinesis_record(shard, SEQ_2)]})
    assert line["source"] == "aws:kinesis"
    assert line["sourceArn"] == "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
    assert line["shard"] == shard
    assert line["count"] == 2
    assert line["items"] == [
        {"id": f"{shard}:{SEQ_1}", "seq": SEQ_1},
        {"id": f"{shard}:{SEQ_2}", "seq": SEQ_2},
    ]


def test_dynamodb_names_each_record_by_event_id_and_sequence_number() -> None:
    def record(event_id: str, sequence: str, name: str) -> dict:
        return {
            "eventID": event_id,
            "eventVersion": "1.0",
            "dynamodb": {
                "Keys": {"Id": {"N": "101"}},
                "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
                "StreamViewType": "NEW_AND_OLD_IMAGES",
                "SequenceNumber": sequence,
                "SizeBytes": 26,
            },
            "awsRegion": "us-west-2",
            "eventName": name,
            "eventSourceARN": DDB_STREAM,
            "eventSource": "aws:dynamodb",
        }

    line = record_in({"Records": [record("1", "111", "INSERT"), record("2", "222", "MODIFY")]})
    assert line["source"] == "aws:dynamodb"
    assert line["sourceArn"] == DDB_STREAM
    assert "shard" not in line  # a DynamoDB stream record does not say which shard it came from
    assert line["items"] == [{"id": "1", "seq": "111"}, {"id": "2", "seq": "222"}]


def s3_event(key: str, version_id: str | None = None) -> dict:
    obj = {
        "key": key,
        "size": 1024,
        "eTag": "0123456789abcdef0123456789abcdef",
        "sequencer": "0A1B2C3D4E5F678901",
    }
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-22T09:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "orders-upload",
                    "bucket": {"name": "orders-inbox", "arn": "arn:aws:s3:::orders-inbox"},
                    "object": obj,
                },
            }
        ]
    }


def test_s3_names_bucket_key_version_and_sequencer() -> None:
    line = record_in(s3_event("incoming/2026/order+4711.json", "096fKKXTRTtl3on89fVO.nfljtsv6qko"))
    assert line["source"] == "aws:s3"
    assert "sourceArn" not in line
    assert line["items"] == [
        {
            "bucket": "orders-inbox",
            "key": "incoming/2026/order+4711.json",
            "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
            "sequencer": "0A1B2C3D4E5F678901",
        }
    ]
    unversioned = record_in(s3_event("a.json"))["items"][0]
    assert unversioned == {"bucket": "orders-inbox", "key": "a.json", "sequencer": "0A1B2C3D4E5F678901"}


def test_sns_names_the_message_and_the_topic() -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:orders"
    event = {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                    "TopicArn": topic,
                    "Subject": None,
                    "Message": "order 4711",
                    "Timestamp": "2026-11-22T09:00:00.000Z",
                    "MessageAttributes": {},
                },
            }
        ]
    }
    line = record_in(event)
    assert (line["source"], line["sourceArn"]) == ("aws:sns", topic)
    assert line["items"] == [{"id": "95df01b4-ee98-5cb9-9903-4c221d41eb5e"}]


def test_eventbridge_names_id_source_and_detail_type() -> None:
    event = {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Order Placed",
        "source": "com.example.orders",
        "account": "123456789012",
        "time": "2026-11-22T09:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"order_id": 4711},
    }
    line = record_in(event)
    assert line["source"] == "aws:events"
    assert line["count"] == 1
    assert line["items"] == [
        {
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "source": "com.example.orders",
            "detailType": "Order Placed",
        }
    ]


def test_an_opaque_payload_is_named_by_the_digest_of_its_canonical_json() -> None:
    line = record_in({"order_id": 4711, "email": "b@example.com", "note": "café"})
    assert line["source"] == "unknown"
    assert line["count"] == 1
    # Keys sorted, no spaces, non-ASCII escaped as \uXXXX.
    assert line["items"] == [
        {"digest": sha256('{"email":"b@example.com","note":"caf\\u00e9","order_id":4711}')}
    ]
    # Key order does not change the digest.
    assert record_in({"note": "café", "email": "b@example.com", "order_id": 4711}) == line


@pytest.mark.parametrize(
    ("event", "digest"),
    [
        (None, sha256("null")),
        ([1, "two"], sha256('[1,"two"]')),
        (b"\x00raw", "sha256:" + hashlib.sha256(b"\x00raw").hexdigest()),
        ("plain text", sha256('"plain text"')),
        ({"Records": "not a list"}, sha256('{"Records":"not a list"}')),
        ({"Records": []}, sha256('{"Records":[]}')),
        ({"Records": [{"eventSource": "aws:kafka"}]}, sha256('{"Records":[{"eventSource":"aws:kafka"}]}')),
    ],
    ids=["none", "list", "bytes", "string", "records-not-a-list", "no-records", "unknown-source"],
)
def test_weird_events_get_a_digest(event: Any, digest: str) -> None:
    line = record_in(event)
    assert (line["source"], line["items"]) == ("unknown", [{"digest": digest}])


def test_malformed_records_of_a_known_source_never_raise() -> None:
    event = {"Records": [{"eventSource": "aws:sqs", "attributes": "nope"}, 7, {"eventSource": "aws:sqs"}]}
    sentinel = object()
    result, lines = call(recorded(lambda event, context: sentinel), event)
    assert result is sentinel
    assert lines[0]["count"] == 3
    assert lines[0]["items"] == [{"id": None, "receiveCount": None}] * 3
    assert lines[1]["result"] == "success"


def test_a_large_batch_lists_the_first_items_and_says_how_many_were_left_off() -> None:
    count = recorder.MAX_ITEMS + 500
    event = {"Records": [sqs_record(f"m-{i}", "1") for i in range(count)]}
    failures = [{"itemIdentifier": f"m-{i}"} for i in range(count)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        recorded(lambda event, context: {"batchItemFailures": failures})(event, Context())
    line_in, line_out = lines_of(out.getvalue())
    assert line_in["count"] == count
    assert line_in["omitted"] == 500
    assert [item["id"] for item in line_in["items"]] == [f"m-{i}" for i in range(recorder.MAX_ITEMS)]
    assert line_out["batchItemFailures"] == [f"m-{i}" for i in range(recorder.MAX_ITEMS)]
    assert line_out["omittedFailures"] == 500
    # Well under CloudWatch Logs' 256 KB event limit.
    assert max(len(line) for line in out.getvalue().splitlines()) < 100_000


# ---------------------------------------------------------------------------- the out line


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]}, ["a", "b"]),
        ({"batchItemFailures": []}, []),
        ({"batchItemFailures": None}, None),
        # Each of these makes Lambda fail the whole batch: the entry shows as null or as returned.
        ({"batchItemFailures": [{"itemIdentifier": ""}, {"ItemIdentifier": "x"}, "x"]}, ["", None, None]),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, [None]),
        ({"batchItemFailures": "x"}, [None]),
        ({"batchItemFailures": [{"itemIdentifier": SEQ_2}, {"itemIdentifier": SEQ_1}]}, [SEQ_2, SEQ_1]),
    ],
    ids=[
        "two",
        "empty",
        "null",
        "malformed-entries",
        "null-identifier",
        "not-a-list",
        "stream-sequence-numbers",
    ],
)
def test_out_line_lists_batch_item_failures(response: dict, expected: list | None) -> None:
    result, lines = call(recorded(lambda event, context: response), {"Records": []})
    assert result is response
    assert lines[1] == {
        "tracekit": "recorder",
        "v": 1,
        "phase": "out",
        "requestId": REQUEST_ID,
        "result": "success",
        "batchItemFailures": expected,
    }


@pytest.mark.parametrize("response", [None, "ok", 42, {"statusCode": 200}, ["batchItemFailures"]])
def test_out_line_has_no_batch_item_failures_when_the_response_has_none(response: Any) -> None:
    result, lines = call(recorded(lambda event, context: response), {})
    assert result == response
    assert lines[1] == {
        "tracekit": "recorder",
        "v": 1,
        "phase": "out",
        "requestId": REQUEST_ID,
        "result": "success",
    }


def test_the_handlers_exception_passes_through_untouched_after_the_out_line() -> None:
    class PaymentDeclined(Exception):
        pass

    raised = PaymentDeclined("card 4711 declined")

    def handler(event: Any, context: Any) -> None:
        raise raised

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(PaymentDeclined) as caught:
        recorded(handler)({"order_id": 4711}, Context())
    assert caught.value is raised
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    # The traceback still reaches the line in the handler that raised.
    assert caught.traceback[-1].name == "handler"
    line_in, line_out = lines_of(out.getvalue())
    assert line_in["phase"] == "in"
    assert line_out == {
        "tracekit": "recorder",
        "v": 1,
        "phase": "out",
        "requestId": REQUEST_ID,
        "result": "error",
        "errorType": "PaymentDeclined",
    }


def test_a_base_exception_passes_through_without_an_out_line() -> None:
    class RuntimeKill(BaseException):
        pass

    def handler(event: Any, context: Any) -> None:
        if event.get("kill"):
            raise RuntimeKill

    wrapped = recorded(handler)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(RuntimeKill):
        wrapped({"kill": True}, Context())
    assert [line["phase"] for line in lines_of(out.getvalue())] == ["in"]
    # The next invocation of the same environment is recorded again.
    _, lines = call(wrapped, {})
    assert [line["phase"] for line in lines] == ["in", "out"]


# ---------------------------------------------------------------------------- never changes behaviour


def test_return_value_is_the_very_object_the_handler_returned() -> None:
    response = {"batchItemFailures": [{"itemIdentifier": "a"}], "extra": [1, 2]}
    result, _ = call(recorded(lambda event, context: response), {"Records": []})
    assert result is response
    assert response == {"batchItemFailures": [{"itemIdentifier": "a"}], "extra": [1, 2]}


def test_the_wrapper_keeps_the_handlers_name_and_signature() -> None:
    def handler(evt: dict, ctx: Any) -> str:
        """Handle an order."""
        return "done"

    wrapped = recorded(handler)
    assert wrapped.__name__ == "handler"
    assert wrapped.__doc__ == "Handle an order."
    assert wrapped.__wrapped__ is handler  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(handler)
    # Called by keyword with the handler's own parameter names, it still works.
    with contextlib.redirect_stdout(io.StringIO()):
        assert wrapped(evt={}, ctx=Context()) == "done"


@pytest.mark.parametrize(
    "context",
    [
        object(),
        type("NoId", (), {"aws_request_id": None})(),
        type("Broken", (), {"aws_request_id": property(lambda s: 1 / 0)})(),
    ],
    ids=["no-request-id", "request-id-none", "request-id-raises"],
)
def test_a_context_without_a_request_id_records_null(context: Any) -> None:
    result, lines = call(recorded(lambda event, context: "ok"), {}, context)
    assert result == "ok"
    assert [line["requestId"] for line in lines] == [None, None]


def test_context_none_records_null() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert recorded(lambda event, context: 7)({}, None) == 7
    assert [line["requestId"] for line in lines_of(out.getvalue())] == [None, None]


class BrokenStdout(io.TextIOBase):
    def write(self, text: str) -> int:
        raise OSError("stdout is gone")


def test_a_broken_stdout_loses_the_lines_not_the_invocation() -> None:
    with contextlib.redirect_stdout(BrokenStdout()):
        assert recorded(lambda event, context: "ok")({}, Context()) == "ok"
        with pytest.raises(KeyError):
            recorded(lambda event, context: {}["missing"])({}, Context())


def test_each_line_is_one_line_even_when_the_event_holds_newlines() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        recorded(lambda event, context: None)(s3_event("line one\nline two"), Context())
    text = out.getvalue()
    assert text.count("\n") == 2
    assert lines_of(text)[0]["items"][0]["key"] == "line one\nline two"


def test_a_handler_recorded_twice_writes_one_pair_of_lines() -> None:
    inner = recorded(lambda event, context: "ok")
    result, lines = call(recorded(inner), {"order_id": 1})
    assert result == "ok"
    assert [line["phase"] for line in lines] == ["in", "out"]


# ---------------------------------------------------------------------------- standard library only


def test_recorder_imports_only_the_standard_library() -> None:
    tree = ast.parse(RECORDER_FILE.read_text(), feature_version=(3, 9))  # Lambda's oldest Python runtime
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None
            imported.add(node.module.split(".")[0])
    assert imported, "the walk found the imports"
    assert imported <= set(sys.stdlib_module_names)


def test_recorder_runs_alone_in_an_isolated_interpreter(tmp_path: Path) -> None:
    (tmp_path / "recorder.py").write_bytes(RECORDER_FILE.read_bytes())
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import recorder\n"
        "class Context: aws_request_id = 'r-1'\n"
        "print(recorder.recorded(lambda e, c: {'batchItemFailures': []})({'Records': []}, Context()))\n"
        "outside = sorted(n for n in sys.modules if n.split('.')[0] not in sys.stdlib_module_names\n"
        "                 and n not in ('recorder', '__main__'))\n"
        "sys.stderr.write(repr(outside))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "[]"
    *lines, printed = done.stdout.splitlines()
    assert printed == "{'batchItemFailures': []}"
    assert [json.loads(line)["phase"] for line in lines] == ["in", "out"]


# ---------------------------------------------------------------------------- the layer


def test_layer_zip_is_deterministic_and_holds_only_the_recorder(tmp_path: Path, tracekit_cli: CliRun) -> None:
    first, second = tmp_path / "first.zip", tmp_path / "second.zip"
    for out in (first, second):
        done = tracekit_cli("recorder", "layer", "-o", out)
        assert done.returncode == 0, done.stderr
        assert str(out) in done.stdout
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as layer:
        [member] = layer.infolist()
        assert member.filename == "python/tracekit/recorder.py"
        assert member.date_time == (1980, 1, 1, 0, 0, 0)
        assert layer.read(member) == RECORDER_FILE.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "first.zip", "second.zip"]


def test_layer_imports_as_tracekit_recorder_from_the_layer_alone(
    tmp_path: Path, tracekit_cli: CliRun
) -> None:
    zip_path = tmp_path / "layer.zip"
    assert tracekit_cli("recorder", "layer", "-o", zip_path).returncode == 0
    opt = tmp_path / "opt"
    with zipfile.ZipFile(zip_path) as layer:
        layer.extractall(opt)
    sqs = {"Records": [sqs_record("m-1", "1"), sqs_record("m-2", "4")]}
    kinesis = {"Records": [kinesis_record("shardId-000000000000", SEQ_1)]}
    function = tmp_path / "function.py"
    function.write_text(
        "import json, sys\n"
        f"sys.path.insert(0, {str(opt / 'python')!r})\n"
        "from tracekit.recorder import recorded\n"
        "import tracekit.recorder\n"
        f"assert tracekit.recorder.__file__.startswith({str(opt)!r}), tracekit.recorder.__file__\n"
        "class Context: aws_request_id = 'req-1'\n"
        "@recorded\n"
        "def handler(event, context):\n"
        "    return {'batchItemFailures': [{'itemIdentifier': 'm-2'}]}\n"
        "@recorded\n"
        "def stream_handler(event, context):\n"
        "    raise ValueError('bad record')\n"
        "handler(json.loads(sys.argv[1]), Context())\n"
        "try:\n"
        "    stream_handler(json.loads(sys.argv[2]), Context())\n"
        "except ValueError:\n"
        "    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(function), jsonio.dumps(sqs), jsonio.dumps(kinesis)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    sqs_in, sqs_out, kinesis_in, kinesis_out = lines_of(done.stdout)
    assert sqs_in["source"] == "aws:sqs"
    assert sqs_in["items"] == [{"id": "m-1", "receiveCount": 1}, {"id": "m-2", "receiveCount": 4}]
    assert sqs_out["batchItemFailures"] == ["m-2"]
    assert kinesis_in["shard"] == "shardId-000000000000"
    assert kinesis_in["items"] == [{"id": f"shardId-000000000000:{SEQ_1}", "seq": SEQ_1}]
    assert (kinesis_out["result"], kinesis_out["errorType"]) == ("error", "ValueError")
    assert {line["requestId"] for line in (sqs_in, sqs_out, kinesis_in, kinesis_out)} == {"req-1"}


def test_layer_to_an_unwritable_place_is_a_one_line_error(tmp_path: Path, tracekit_cli: CliRun) -> None:
    done = tracekit_cli("recorder", "layer", "-o", tmp_path / "missing-dir" / "layer.zip")
    assert done.returncode == 2
    assert done.stderr.startswith("Error: Cannot write the layer")
    assert len(done.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- in the lab


def test_the_lab_writes_recorder_lines_for_every_attempt_that_reached_the_handler(tmp_path: Path) -> None:
    from tracekit.lab.run import run_scenario

    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
    (tmp_path / "scenario.toml").write_text(
        'name = "recorded"\n'
        "[function]\n"
        'name = "recorded-fn"\n'
        'handler = "handler.py:handler"\n'
        "recorder = true\n"
        "[source]\n"
        'type = "async"\n'
        "maximum_retry_attempts = 2\n"
        "[[events]]\n"
        'payload = { order_id = 7, sku = "A-1" }\n'
        'faults = [{ kind = "error", type = "PaymentDeclined" }, "timeout", "ok"]\n'
    )
    run_scenario(tmp_path / "scenario.toml", tmp_path / "out", seed=3)
    [log_file] = (tmp_path / "out" / "logs").iterdir()
    messages = [json.loads(line)["message"] for line in log_file.read_text().splitlines()]
    starts = [m.split()[2] for m in messages if m.startswith("START RequestId:")]
    recorded_lines = [json.loads(m) for m in messages if m.startswith('{"tracekit":"recorder"')]
    # Async retries reuse the request id: three attempts, one id.
    assert len(starts) == 3 and len(set(starts)) == 1
    # Attempt 1 raised (out: error), attempt 2 was killed by the timeout (no out), attempt 3 succeeded.
    assert [(line["phase"], line.get("result"), line.get("errorType")) for line in recorded_lines] == [
        ("in", None, None),
        ("out", "error", "PaymentDeclined"),
        ("in", None, None),
        ("in", None, None),
        ("out", "success", None),
    ]
    assert {line["requestId"] for line in recorded_lines} == set(starts)
    digest = sha256('{"order_id":7,"sku":"A-1"}')
    assert all(line["items"] == [{"digest": digest}] for line in recorded_lines if line["phase"] == "in")
