"""How the Lambda service hands a record to a destination or a function DLQ, wrapped as each target
wraps it: an SQS message body, an SNS notification (read back through an SQS subscription), an
EventBridge event (read back through a rule's SQS target), an S3 object, or a Lambda payload.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tracekit.lab.scenario import Destination, FunctionSpec
from tracekit.lab.world import World, iso_ms, json_text

ERROR_MESSAGE_LIMIT = 1024  # the DLQ ErrorMessage attribute holds the first 1 KB
SNS_CERT = "https://sns.{region}.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"


def sender_id(world: World, function: FunctionSpec) -> str:
    """The SenderId SQS records for messages Lambda sends: the execution role's session."""
    return f"AROA{world.ids.hex(16).upper()[:17]}:awslambda_{world.ids.digits(3)}_{world.ids.digits(17)}"


def deliver_record(
    world: World,
    destination: Destination,
    record: dict[str, Any],
    *,
    function: FunctionSpec,
    success: bool,
    s3_key: str | None = None,
    trace: str | None = None,
) -> None:
    """Send a destination invocation record to `destination` at the world's current time."""
    text = json_text(record)
    if destination.type == "sqs":
        attributes = {"SenderId": sender_id(world, function)}
        if trace:
            attributes["AWSTraceHeader"] = trace
        world.send(destination.name, text, attributes=attributes)
    elif destination.type == "sns":
        world.send(destination.name, sns_notification(world, destination.name, text, {}))
    elif destination.type == "eventbridge":
        world.send(destination.name, eventbridge_event(world, destination.name, record, function, success))
    elif destination.type == "s3":
        key = s3_key or f"aws/lambda/async/{function.name}/{_hour_path(world.now)}/{world.ids.uuid()}"
        world.objects[f"{destination.name}/{key}"] = text.encode()
    else:  # lambda: the record is the destination function's payload
        world.objects[f"lambda/{destination.name}/{world.ids.uuid()}.json"] = text.encode()


def dead_letter(
    world: World, dlq: Destination, event: Any, request_id: str, error: dict[str, Any] | None
) -> None:
    """Send an async event that ran out of retries or age to the function's DLQ (SQS or SNS)."""
    body = event if isinstance(event, str) else json_text(event)
    message = str((error or {}).get("errorMessage", ""))[:ERROR_MESSAGE_LIMIT]
    if dlq.type == "sns":
        attributes = {
            "RequestID": {"Type": "String", "Value": request_id},
            "ErrorCode": {"Type": "Number", "Value": "200"},
            "ErrorMessage": {"Type": "String", "Value": message},
        }
        world.send(dlq.name, sns_notification(world, dlq.name, body, attributes))
        return
    world.send(
        dlq.name,
        body,
        message_attributes={
            "RequestID": {"DataType": "String", "StringValue": request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {"DataType": "String", "StringValue": message},
        },
    )


def sns_notification(world: World, topic: str, message: str, attributes: dict[str, Any]) -> str:
    """The JSON body an SQS queue subscribed to `topic` (raw delivery off) receives."""
    topic_arn = world.arn("sns", topic)
    notification: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": world.ids.uuid(),
        "TopicArn": topic_arn,
        "Message": message,
        "Timestamp": iso_ms(world.now),
        "SignatureVersion": "1",
        "Signature": world.ids.hex(64),
        "SigningCertURL": SNS_CERT.format(region=world.region),
        "UnsubscribeURL": f"https://sns.{world.region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn="
        f"{topic_arn}:{world.ids.uuid()}",
    }
    if attributes:
        notification["MessageAttributes"] = attributes
    return json_text(notification)


def eventbridge_event(
    world: World, bus: str, record: dict[str, Any], function: FunctionSpec, success: bool
) -> str:
    """The event a rule on `bus` forwards to its SQS target (real events use an ASCII hyphen)."""
    event = {
        "version": "0",
        "id": world.ids.uuid(),
        "detail-type": f"Lambda Function Invocation Result - {'Success' if success else 'Failure'}",
        "source": "lambda",
        "account": world.account,
        "time": iso_ms(world.now)[:19] + "Z",
        "region": world.region,
        "resources": [world.arn("events", f"event-bus/{bus}"), f"{function.arn}:{function.version}"],
        "detail": record,
    }
    return json_text(event)


def _hour_path(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y/%m/%d/%H")
