"""An asynchronously invoked order handler: logs the order, and raises when the event says so."""

import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    logger.info("capturing order %s", event.get("order_id"))
    if event.get("reject"):
        raise RuntimeError(f"payment provider rejected order {event.get('order_id')}")
    return {"order_id": event.get("order_id"), "status": "captured"}
