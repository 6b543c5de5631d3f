"""An asynchronously invoked order handler: returns a receipt, or raises when the event says so."""

import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    logger.info("capturing order %s", event["order_id"])
    if event.get("reject"):
        raise RuntimeError(f"payment provider rejected order {event['order_id']}")
    return {"order_id": event["order_id"], "status": "captured"}
