"""Records each call in a ledger file named by the event (a side effect outside the function)."""

from pathlib import Path


def handler(event, context):
    with Path(event["ledger"]).open("a", encoding="utf-8") as ledger:
        ledger.write(context.aws_request_id + "\n")
    print(f"ledger entry written for {event['order_id']}")
    return {"order_id": event["order_id"], "written": True}
