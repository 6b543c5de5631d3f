"""What a replayed copy sends, derived from a stored record: targets parsed from ARNs and URLs, the
payload unwrapped for SNS and EventBridge targets, FIFO deduplication ids, and redaction.

Every function here is pure (no AWS, no store), so the planner and `resolve_payload` derive the same
payload from the same record, and a redacted plan can be checked against the store at run time.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from tracekit import jsonio
from tracekit.analyze.keys import parse_path
from tracekit.replay.model import PlanError, Target, TargetType

#: What a redacted value becomes in the plan file.
MASK = "[REDACTED]"
#: Source and detail-type of an EventBridge copy whose original was not an EventBridge event.
DEFAULT_EVENT_SOURCE = "tracekit.replay"
DEFAULT_DETAIL_TYPE = "Replayed event"
#: SQS: MessageDeduplicationId is at most 128 of these characters.
_DEDUP_ALLOWED = re.compile(r"[^A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]")
_DEDUP_MAX = 128
_TARGET_HELP = (
    "Give a function, SQS queue, SNS topic, EventBridge bus or Kinesis stream ARN, or an SQS queue URL"
)


def parse_target(text: str) -> Target:
    """A --target: an SQS queue URL, or a Lambda, SQS, SNS, EventBridge or Kinesis ARN.

    Raises:
        PlanError: anything else.
    """
    value = text.strip()
    if value.startswith(("https://", "http://")):
        return Target(TargetType.SQS, url=value)
    parts = value.split(":")
    service = parts[2] if len(parts) >= 6 and parts[0] == "arn" else ""
    if service == "lambda":
        return lambda_target(value)
    if service == "sqs":
        return Target(TargetType.SQS, arn=value, url=queue_url(value))
    if service == "sns":
        return Target(TargetType.SNS, arn=value)
    if service == "events" and parts[5].startswith("event-bus/"):
        return Target(TargetType.EVENTBRIDGE, arn=value)
    if service == "kinesis" and parts[5].startswith("stream/"):
        return Target(TargetType.KINESIS, arn=value)
    raise PlanError("cannot replay to this target", text, _TARGET_HELP)


def lambda_target(function_arn: str, type_: TargetType = TargetType.LAMBDA) -> Target:
    """A Lambda target; a qualified ARN (`…:function:name:live`) keeps its qualifier apart."""
    parts = function_arn.split(":")
    if len(parts) >= 8:
        return Target(type_, arn=":".join(parts[:7]), qualifier=parts[7])
    return Target(type_, arn=function_arn)


def queue_url(arn: str) -> str:
    """The queue URL of an SQS queue ARN (`arn:aws:sqs:<region>:<account>:<name>`), in the standard
    endpoint form. SendMessage goes to the configured endpoint (AWS_ENDPOINT_URL too), which reads the
    account and name from this URL; a runner may instead resolve it with GetQueueUrl."""
    _, partition, _, region, account, name = arn.split(":", 5)
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


def is_fifo(target: Target) -> bool:
    """Whether an SQS target is a FIFO queue (its name ends in .fifo)."""
    name = (target.url or target.arn or "").rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return target.type is TargetType.SQS and name.endswith(".fifo")


def deduplication_id(original: str, message_id: str) -> str:
    """A FIFO MessageDeduplicationId for the copy: the original's (or its message id), `:replay:`, and
    a digest of both. Deterministic, so the same entry sent twice by a resumed run is dropped by SQS
    within its 5-minute deduplication interval; distinct from the original's, which a FIFO DLQ may
    still hold."""
    digest = hashlib.sha256(f"{original}\0{message_id}".encode()).hexdigest()[:16]
    suffix = f":replay:{digest}"
    base = _DEDUP_ALLOWED.sub("_", original)[: _DEDUP_MAX - len(suffix)]
    return base + suffix


@dataclass
class Delivery:
    """The part of an entry that depends on the target: payload text and target-specific fields."""

    payload: str
    attributes: dict[str, Any]
    event_source: str | None = None
    detail_type: str | None = None


def for_target(target: Target, payload: str, attributes: dict[str, Any]) -> Delivery:
    """What to send to `target` for a stored `payload` and its SQS message `attributes`.

    SNS: an SNS-delivered event (`{"Records": [{"Sns": …}]}`) is unwrapped to its Message and
    MessageAttributes. EventBridge: an EventBridge event becomes its detail, source and detail-type.
    SQS and SNS keep the message attributes; the other targets have none.
    """
    if target.type is TargetType.SNS:
        unwrapped = _sns_message(payload)
        if unwrapped is not None:
            return Delivery(unwrapped[0], unwrapped[1])
        return Delivery(payload, attributes)
    if target.type is TargetType.EVENTBRIDGE:
        doc = _json(payload)
        if isinstance(doc, dict) and {"source", "detail-type", "detail"} <= doc.keys():
            return Delivery(jsonio.dumps(doc["detail"]), {}, str(doc["source"]), str(doc["detail-type"]))
        return Delivery(payload, {}, DEFAULT_EVENT_SOURCE, DEFAULT_DETAIL_TYPE)
    if target.type is TargetType.SQS:
        return Delivery(payload, attributes)
    return Delivery(payload, {})


def _sns_message(payload: str) -> tuple[str, dict[str, Any]] | None:
    doc = _json(payload)
    records = doc.get("Records") if isinstance(doc, dict) else None
    if not (isinstance(records, list) and len(records) == 1 and isinstance(records[0], dict)):
        return None
    sns = records[0].get("Sns")
    if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
        return None
    attributes: dict[str, Any] = {}
    for name, value in (sns.get("MessageAttributes") or {}).items():
        data_type = str(value.get("Type", "String"))
        slot = "BinaryValue" if data_type.startswith("Binary") else "StringValue"
        attributes[name] = {"DataType": data_type, slot: value.get("Value")}
    return sns["Message"], attributes


def _json(text: str) -> Any:
    try:
        return jsonio.loads(text)
    except ValueError:
        return None


def redact(payload: str, paths: list[str], *, encoding: str | None = None) -> tuple[str, list[str]]:
    """`payload` with the value at each path masked, and the paths that matched.

    A payload that is not JSON (or base64 of JSON, for `encoding="base64"`) has nothing to redact.

    Raises:
        ConfigError: a path outside the supported subset.
    """
    steps = [(path, parse_path(path)) for path in paths]
    text = _decoded(payload, encoding)
    doc = _json(text) if text is not None else None
    if doc is None:
        return payload, []
    matched = [path for path, path_steps in steps if _mask(doc, path_steps)]
    if not matched:
        return payload, []
    out = jsonio.dumps(doc)
    return (base64.b64encode(out.encode()).decode() if encoding == "base64" else out), matched


def _decoded(payload: str, encoding: str | None) -> str | None:
    if encoding != "base64":
        return payload
    try:
        return base64.b64decode(payload, validate=True).decode()
    except ValueError:
        return None


def _mask(doc: Any, steps: tuple[str | int, ...]) -> bool:
    """Mask the value at `steps` in place; whether there was one."""
    node = doc
    for step in steps[:-1]:
        node = _child(node, step)
        if node is None:
            return False
    last = steps[-1] if steps else None
    if isinstance(last, str) and isinstance(node, dict) and last in node:
        node[last] = MASK
        return True
    if isinstance(last, int) and isinstance(node, list) and -len(node) <= last < len(node):
        node[last] = MASK
        return True
    return False


def _child(node: Any, step: str | int) -> Any:
    if isinstance(step, str) and isinstance(node, dict):
        return node.get(step)
    if isinstance(step, int) and isinstance(node, list) and -len(node) <= step < len(node):
        return node[step]
    return None
