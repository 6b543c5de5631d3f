"""The sample order worker (samples/handlers/orders_worker.py) with one habit added: it logs the incoming
event as JSON before handling it, as many functions do. No recorder: the analyzer has only that line.

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
