"""Writes output the ways a handler does: print lines (one with two lines in it) and logging records."""

import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    print("first print line")
    print("two lines\nin one print")
    logger.info("processing order %s", event.get("order_id"))
    logger.warning("stock is low")
    logging.getLogger("payments").error("card declined")
    return {"order_id": event.get("order_id"), "ok": True}
