"""Counts deliveries per order: an increment, so every duplicate delivery shows in the state.

The non-idempotent consumer of the chaos sample experiments. It reads SQS event records (or an async
invocation's order) and adds one to the order's counter, and the order's quantity to the units
reserved, in the JSON file named by the ORDERS_STATE environment variable, like a DynamoDB UpdateItem
with `ADD deliveries :one`.
"""

import json
import logging
import os
from pathlib import Path

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def _orders(event):
    if "Records" in event:
        return [json.loads(record["body"]) for record in event["Records"]]
    return [event]


def _load(path):
    return json.loads(path.read_text()) if path.exists() else {"orders": {}}


def _save(path, state):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))  # noqa: TID251 - runs in Lambda, without tracekit
    tmp.replace(path)


def handler(event, context):
    path = Path(os.environ["ORDERS_STATE"])
    state = _load(path)
    for order in _orders(event):
        key = str(order["orderId"])
        row = state["orders"].setdefault(key, {"deliveries": 0, "reserved": 0})
        row["deliveries"] += 1
        row["reserved"] += int(order["quantity"])
        logger.info("order %s delivery %s", key, row["deliveries"])
    _save(path, state)
    return {"counted": len(_orders(event))}
