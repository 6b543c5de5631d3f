"""Batch handlers that say in their logs which items they got, the way real functions do, with no recorder.

`print_event` prints the incoming event as JSON; `log_event` logs it with the logging module (a
`[INFO]` line in text format, the `message` string of an application record in JSON format);
`print_fields` prints one Powertools-style JSON record per item with the item's identity as top-level
fields; `log_fields` logs a JSON object with those fields as the message text. A record whose
payload says `"poison": true` makes the handler raise after it has logged what it got.
"""

import base64
import json
import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def print_event(event, context):
    print(json.dumps(event))  # noqa: TID251 - user code, standard library only
    _process(event)


def log_event(event, context):
    logger.info(json.dumps(event))  # noqa: TID251 - user code, standard library only
    _process(event)


def print_fields(event, context):
    for record in event["Records"]:
        line = {"level": "INFO", "message": "processing record", "service": "orders", **_identity(record)}
        print(json.dumps(line))  # noqa: TID251 - user code, standard library only
    _process(event)


def log_fields(event, context):
    for record in event["Records"]:
        logger.info(json.dumps(_identity(record)))  # noqa: TID251 - user code, standard library only
    _process(event)


def _identity(record):
    """What a developer would log to say which record this is."""
    if "messageId" in record:
        return {
            "messageId": record["messageId"],
            "ApproximateReceiveCount": record["attributes"]["ApproximateReceiveCount"],
        }
    if "kinesis" in record:
        return {"eventID": record["eventID"], "sequenceNumber": record["kinesis"]["sequenceNumber"]}
    return {"eventID": record["eventID"], "sequenceNumber": record["dynamodb"]["SequenceNumber"]}


def _process(event):
    for record in event["Records"]:
        if _payload(record).get("poison"):
            raise ValueError("poison record")


def _payload(record):
    if "body" in record:
        return json.loads(record["body"])
    if "kinesis" in record:
        return json.loads(base64.b64decode(record["kinesis"]["data"]))
    image = record["dynamodb"].get("NewImage", {})
    return {name: list(value.values())[0] for name, value in image.items()}
