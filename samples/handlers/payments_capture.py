"""Captures a card payment through the acquirer the payment names; the backup acquirer is down."""

import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


class AcquirerUnavailable(Exception):
    """The acquirer's gateway answered 503."""


def handler(event, context):
    payment = event["payment_id"]
    acquirer = event.get("acquirer", "eu-west-primary")
    logger.info("capturing %s %.2f %s via %s", payment, event["amount"], event["currency"], acquirer)
    if acquirer == "eu-west-backup":
        raise AcquirerUnavailable(f"acquirer {acquirer} returned 503 for {payment}")
    print(f"captured {payment}")
    return {"payment_id": payment, "status": "captured", "acquirer": acquirer}
