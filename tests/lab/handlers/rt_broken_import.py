"""A handler module that cannot be imported: its dependency is missing from the package."""

import tracekit_lab_missing_dependency  # noqa: F401


def handler(event, context):
    return "never reached"
