"""A stream handler that logs its incoming event (the `logged_event` evidence) and fails its whole
batch on an order with a negative amount, like samples/handlers/orders_stream.py's `handler`."""

import base64
import json


def handler(event, context):
    print(json.dumps(event))  # noqa: TID251 - user code, standard library only
    for record in event["Records"]:
        order = json.loads(base64.b64decode(record["kinesis"]["data"]))
        if order["amount"] < 0:
            raise ValueError(f"order {order['order_id']} has an invalid amount {order['amount']!r}")
    return {"applied": len(event["Records"])}
