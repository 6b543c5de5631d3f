"""Calls sys.exit() for orders flagged `exit`, as some scripts turned into functions do."""

import sys


def handler(event, context):
    print(f"order {event['order_id']}")
    if event.get("exit"):
        sys.exit(1)
    return {"ok": True}
