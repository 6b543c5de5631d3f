"""The sample order worker (samples/handlers/orders_worker.py) with one habit added: `handler` and
`partial_handler` log the incoming event as JSON before handling it, as many functions do;
`fields_handler` logs a structured line per message (messageId, receive count) as it reaches it. No
recorder: the analyzer has only those lines.

Each execution environment loads its own copy of the sample module, as the sample scenarios do.
"""

import importlib.util
import json
from pathlib import Path

_SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "handlers" / "orders_worker.py"
_spec = importlib.util.spec_from_file_location("orders_worker_sample", _SAMPLE)
_worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_worker)


def _log_event(event):
    # A Lambda handler has only the standard library, so json.dumps it is.
    print(json.dumps(event))  # noqa: TID251


def handler(event, context):
    _log_event(event)
    return _worker.handler(event, context)


def partial_handler(event, context):
    _log_event(event)
    return _worker.partial_handler(event, context)


def fields_handler(event, context):
    # Each message is logged when the worker reaches it, so a batch that fails part-way names only the
    # messages up to the failing one.
    for record in event["Records"]:
        fields = {
            "messageId": record["messageId"],
            "receiveCount": record["attributes"]["ApproximateReceiveCount"],
        }
        print(json.dumps(fields))  # noqa: TID251
        _worker.handler({"Records": [record]}, context)
    return {"reserved": len(event["Records"])}
