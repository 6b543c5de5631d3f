"""Tiny SQS handlers for the SQS model tests. Each prints one `SEEN {...}` line per record it receives,
so the tests can read from the logs exactly what the function was given.

Bodies are JSON: `fail` = fail this message while its receive count is at most that number;
`respond` = what `respond` returns on a message's first receive.
"""

import json


def _seen(record, context):
    attributes = record["attributes"]
    line = {
        "request_id": context.aws_request_id,
        "message_id": record["messageId"],
        "receipt": record["receiptHandle"],
        "body": json.loads(record["body"]),
        "attributes": attributes,
        "message_attributes": record["messageAttributes"],
        "source_arn": record["eventSourceARN"],
    }
    print("SEEN " + json.dumps(line))  # noqa: TID251 - user code, standard library only
    return line["body"], int(attributes["ApproximateReceiveCount"])


def _fails(body, count):
    return count <= int(body.get("fail", 0))


def echo(event, context):
    for record in event["Records"]:
        _seen(record, context)


def partial(event, context):
    """Reports exactly the records that fail (ignoring FIFO order)."""
    failures = []
    for record in event["Records"]:
        body, count = _seen(record, context)
        if _fails(body, count):
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def fifo_partial(event, context):
    """Follows AWS's FIFO rule per group: after a failure, report the rest of that group unprocessed."""
    failures = []
    failed_groups = set()
    for record in event["Records"]:
        body, count = _seen(record, context)
        group = record["attributes"]["MessageGroupId"]
        if group in failed_groups or _fails(body, count):
            failed_groups.add(group)
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def respond(event, context):
    first_receive = False
    body = None
    for record in event["Records"]:
        body, count = _seen(record, context)
        first_receive = first_receive or count == 1
    if first_receive:
        return body["respond"]
    return {"batchItemFailures": []}
