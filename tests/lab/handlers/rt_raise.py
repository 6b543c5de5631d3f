"""Fails with an unhandled exception two frames deep, after printing what it got."""


def handler(event, context):
    print(f"charging order {event['order_id']}")
    return charge(event)


def charge(event):
    raise ValueError(f"card declined for order {event['order_id']}")
