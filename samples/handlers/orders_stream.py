"""Applies order events from a Kinesis stream or a DynamoDB stream to a (pretend) ledger.

`handler` stops at the first order it cannot apply and fails the whole batch (what bisect is for);
`partial_handler` keeps going and reports such orders in batchItemFailures (ReportBatchItemFailures),
so the records after the first failure are applied now and again when Lambda retries from there.
"""

import base64
import json
import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    applied = 0
    for record in event["Records"]:
        order = _order(record)
        _apply(order, record)
        applied += 1
    return {"applied": applied}


def partial_handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            _apply(_order(record), record)
        except ValueError as exc:
            logger.error("cannot apply %s: %s", _sequence_number(record), exc)
            failures.append({"itemIdentifier": _sequence_number(record)})
    return {"batchItemFailures": failures}


def _apply(order, record):
    amount = order.get("amount", 0)
    if not isinstance(amount, (int, float)) or amount < 0:
        raise ValueError(f"order {order.get('order_id')} has an invalid amount {amount!r}")
    logger.info(
        "applied order %s (%s) at %s", order.get("order_id"), order.get("status"), _sequence_number(record)
    )


def _order(record):
    """The order a stream record carries: Kinesis data is base64 JSON, DynamoDB an item image."""
    if "kinesis" in record:
        return json.loads(base64.b64decode(record["kinesis"]["data"]))
    change = record["dynamodb"]
    image = change.get("NewImage") or change.get("OldImage") or change["Keys"]
    order = {name: _plain(value) for name, value in image.items()}
    if record.get("eventName") == "REMOVE":
        order["status"] = "deleted"
    return order


def _sequence_number(record):
    if "kinesis" in record:
        return record["kinesis"]["sequenceNumber"]
    return record["dynamodb"]["SequenceNumber"]


def _plain(value):
    """One DynamoDB attribute value as plain Python."""
    kind, inner = next(iter(value.items()))
    if kind == "N":
        return float(inner) if "." in inner else int(inner)
    if kind == "M":
        return {k: _plain(v) for k, v in inner.items()}
    if kind == "L":
        return [_plain(v) for v in inner]
    if kind == "NULL":
        return None
    return inner
