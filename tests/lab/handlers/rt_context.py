"""Reports the Lambda context it was given: one print line and its return value."""

import json


def handler(event, context):
    seen = {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
    print("context " + json.dumps(seen, sort_keys=True))  # noqa: TID251 - user code uses the stdlib
    return seen
