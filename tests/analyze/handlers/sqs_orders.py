"""Order handlers for the SQS analyzer tests: an all-or-nothing one and one with partial batch responses.

The message body is `{"n": <order number>}`. On an order's first receive `partial_handler` reports it as
failed when its number is divisible by 13, and answers with an invalid response when it is divisible by 97
(an empty itemIdentifier) or by 89 (an identifier naming no message of the batch): Lambda then fails the
whole batch. Every order goes through on a later receive.
"""

import json
import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    for record in event["Records"]:
        logger.info("processing order %s", json.loads(record["body"])["n"])
    return {"processed": len(event["Records"])}


def partial_handler(event, context):
    failures = []
    for record in event["Records"]:
        order = json.loads(record["body"])["n"]
        first = record["attributes"]["ApproximateReceiveCount"] == "1"
        if first and order % 97 == 0:
            failures.append({"itemIdentifier": ""})
        elif first and order % 89 == 0:
            failures.append({"itemIdentifier": "not-in-this-batch"})
        elif first and order % 13 == 0:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
