"""Sends an order confirmation; fails for orders the (pretend) mail service rejects."""

import json
import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    print(json.dumps(event))
    order = event.get("order_id")
    logger.info("notifying customer of order %s", order)
    if event.get("email", "").endswith("@invalid"):
        raise ValueError(f"mail service rejected the address for order {order}")
    return {"order_id": order, "notified": True}
