"""A stream handler for the lab tests: records whose payload says `poison = true` cannot be processed.

`handler` raises at the first poison record; `partial` reports every poison record's sequence number
in batchItemFailures and processes the rest; `partial_blank` reports poison records with an empty
itemIdentifier (a malformed response that fails the whole batch); `not_an_object` processes the
good records and returns a string instead of a response object.
"""

import base64
import json


def handler(event, context):
    for record in event["Records"]:
        payload = _payload(record)
        if payload.get("poison"):
            raise ValueError(f"poison record {payload.get('n')}")
        print(f"processed {payload.get('n')}")


def partial(event, context):
    failures = []
    for record in event["Records"]:
        payload = _payload(record)
        if payload.get("poison"):
            failures.append({"itemIdentifier": _sequence_number(record)})
        else:
            print(f"processed {payload.get('n')}")
    return {"batchItemFailures": failures}


def partial_blank(event, context):
    poisoned = any(_payload(record).get("poison") for record in event["Records"])
    return {"batchItemFailures": [{"itemIdentifier": ""}] if poisoned else []}


def not_an_object(event, context):
    poisoned = [_payload(record).get("n") for record in event["Records"] if _payload(record).get("poison")]
    return f"failed: {poisoned}"


def _payload(record):
    if "kinesis" in record:
        return json.loads(base64.b64decode(record["kinesis"]["data"]))
    image = record["dynamodb"].get("NewImage", {})
    return {name: list(value.values())[0] for name, value in image.items()}


def _sequence_number(record):
    if "kinesis" in record:
        return record["kinesis"]["sequenceNumber"]
    return record["dynamodb"]["SequenceNumber"]
