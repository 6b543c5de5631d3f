"""Parses a JSON body with the standard library; a malformed body fails inside `json`."""

import json


def handler(event, context):
    return json.loads(event["body"])
