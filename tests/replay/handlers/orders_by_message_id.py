"""A consumer that deduplicates on the SQS messageId: idempotent against SQS's own redeliveries, but a
replay (a re-publish) mints a new messageId for every copy. Used by tests/replay/test_chaos.py."""

import json
import os
from pathlib import Path


def handler(event, context):
    path = Path(os.environ["ORDERS_STATE"])
    state = json.loads(path.read_text()) if path.exists() else {"orders": {}}
    for record in event["Records"]:
        order = json.loads(record["body"])
        seen = state["orders"].setdefault(str(order["orderId"]), [])
        if record["messageId"] not in seen:
            seen.append(record["messageId"])
    path.write_text(json.dumps(state))  # noqa: TID251 - a Lambda handler, without tracekit
