"""Records each order once: a conditional write keyed by the order id (the business key).

The consumer of the chaos sample experiment (replays/experiments/orders-duplicates.toml). It reads SQS
event records (or an async invocation's order) and writes the order into a JSON file named by the
ORDERS_STATE environment variable, only when no order with that id is there yet, like a DynamoDB
PutItem with `attribute_not_exists(orderId)`. A second delivery of the same order changes nothing.
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
    written = 0
    for order in _orders(event):
        key = str(order["orderId"])
        if key in state["orders"]:
            logger.info("order %s already recorded: skipped", key)
            continue
        state["orders"][key] = {"sku": order["sku"], "quantity": int(order["quantity"])}
        written += 1
        logger.info("recorded order %s", key)
    _save(path, state)
    return {"recorded": written}
