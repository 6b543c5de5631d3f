"""Reserves stock for the orders on the orders queue (an SQS event source).

`handler` treats the batch as all-or-nothing: a bad order raises, and Lambda returns the whole batch to the
queue. `partial_handler` is for a mapping with ReportBatchItemFailures: it reports the orders it could not
reserve in `batchItemFailures`; on a FIFO queue it also reports every later message of a failed message's
group unprocessed, so no order overtakes an earlier one of the same customer (AWS's rule for FIFO).
"""

import json
import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)

STOCK = {"SKU-1042": 400, "SKU-2001": 120, "SKU-3310": 75, "SKU-4507": 30}


class OutOfStock(Exception):
    pass


def reserve(order):
    """Reserve the order's quantity; raises for malformed orders and unknown or exhausted SKUs."""
    quantity = int(order["quantity"])  # a producer bug sends "two": ValueError
    sku = order["sku"]
    if sku not in STOCK:
        raise KeyError(f"unknown sku {sku} in order {order['orderId']}")
    if STOCK[sku] < quantity:
        raise OutOfStock(f"only {STOCK[sku]} of {sku} left for order {order['orderId']}")
    STOCK[sku] -= quantity
    logger.info("reserved %s x %s for order %s", quantity, sku, order["orderId"])


def _describe(record):
    order = json.loads(record["body"])
    logger.info(
        "received message %s for order %s (receive %s)",
        record["messageId"],
        order.get("orderId"),
        record["attributes"]["ApproximateReceiveCount"],
    )
    return order


def handler(event, context):
    for record in event["Records"]:
        reserve(_describe(record))
    return {"reserved": len(event["Records"])}


def partial_handler(event, context):
    failures = []
    blocked_groups = set()
    for record in event["Records"]:
        group = record["attributes"].get("MessageGroupId")
        if group is not None and group in blocked_groups:
            logger.info("skipping message %s: an earlier order of %s failed", record["messageId"], group)
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        try:
            reserve(_describe(record))
        except (ValueError, KeyError, OutOfStock) as exc:
            logger.error("could not reserve message %s: %s", record["messageId"], exc)
            failures.append({"itemIdentifier": record["messageId"]})
            if group is not None:
                blocked_groups.add(group)
    return {"batchItemFailures": failures}
