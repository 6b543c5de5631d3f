"""A consumer that keeps the last quantity it saw per customer: order-sensitive, not duplicate-sensitive.
Used by tests/replay/test_chaos.py to show a reorder changing the effect."""

import json
import os
from pathlib import Path


def handler(event, context):
    path = Path(os.environ["ORDERS_STATE"])
    state = json.loads(path.read_text()) if path.exists() else {"customers": {}}
    for record in event["Records"]:
        order = json.loads(record["body"])
        state["customers"][order["customer"]] = order["orderId"]
    path.write_text(json.dumps(state))  # noqa: TID251 - a Lambda handler, without tracekit


def probe_customer(event):
    path = event.state_dir / "orders.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["customers"].get(event.payload["customer"])
