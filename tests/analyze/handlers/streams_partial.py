"""A DynamoDB / Kinesis stream handler that logs its incoming event and answers with a partial batch
response (ReportBatchItemFailures): an order with a negative amount is reported by its sequence
number; an order marked `bad_response` makes the response invalid (an empty itemIdentifier)."""

import base64
import json


def handler(event, context):
    print(json.dumps(event))  # noqa: TID251 - user code, standard library only
    failures = []
    for record in event["Records"]:
        order = _order(record)
        if order.get("bad_response"):
            failures.append({"itemIdentifier": ""})
        elif order.get("amount", 0) < 0:
            failures.append({"itemIdentifier": _sequence_number(record)})
    return {"batchItemFailures": failures}


def _order(record):
    if "kinesis" in record:
        return json.loads(base64.b64decode(record["kinesis"]["data"]))
    image = record["dynamodb"].get("NewImage") or record["dynamodb"]["Keys"]
    return {name: _plain(value) for name, value in image.items()}


def _plain(value):
    kind, inner = next(iter(value.items()))
    if kind == "N":
        return float(inner)
    if kind == "BOOL":
        return inner
    return inner


def _sequence_number(record):
    if "kinesis" in record:
        return record["kinesis"]["sequenceNumber"]
    return record["dynamodb"]["SequenceNumber"]
