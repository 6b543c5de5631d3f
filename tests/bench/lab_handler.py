"""The handler the lab benchmark runs: logs one line per item it receives, like a typical consumer."""

import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    records = event.get("Records") if isinstance(event, dict) else None
    for record in records or [event]:
        item = record.get("messageId") or record.get("eventID") or record.get("order_id")
        logger.info("processed %s", item)
    return None
