"""Reading a ReportBatchItemFailures response: which items did the handler report as failed?

One job: turn what a handler returned into the set of `batchItemFailures[].itemIdentifier` values it
names, or say that the response is malformed (Lambda then fails the whole batch). Both event source
mappings that read such responses use it: Kinesis / DynamoDB Streams, where the identifier is a record's
sequence number (lambda-semantics.md §2), and SQS, where it is the messageId (§3). What each mapping then
does with the set (SQS returns those messages to the queue; a stream checkpoints at the lowest reported
sequence number) stays in its own model.

The rules here, and where they come from:
- No failures: a null or empty (`{}`) response, or a `batchItemFailures` that is empty or null.
  Documented in §2 for streams; §3 lists no success cases and the SQS model applies §2's. A response
  whose keys are all others (`{"other": 1}`) counts as empty too: our choice.
- The whole batch fails: an entry whose `itemIdentifier` is empty or null, or that has another key name
  instead. Documented in §2 and §3.
- The whole batch fails: an identifier naming no item of the batch. Documented in §3 (SQS); applying it
  to streams as well is our choice.
- The whole batch fails: a response that is not a JSON object (§3's "invalid JSON", as we read it for a
  handler whose return value always serialises). Documented for SQS only; streams differ, see below.
- The whole batch fails: a `batchItemFailures` that is not a list, an entry that is not an object, an
  identifier that is not a string. Our choice: as malformed as the documented cases.

Where the sources differ, the stream model applies its own rule before calling this: a stream response
that is not an object, or whose `batchItemFailures` is empty in any form (`""`, `0`, `{}` as well as `[]`
and null), reports no failure, where SQS fails the whole batch. §2 does not say what Lambda does with
such a response; the stream rule is our choice, kept as the stream model has always had it.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any


def reported_failures(response: Any, batch_ids: Container[str]) -> set[str] | None:
    """The item identifiers `response` reports as failed: empty when the whole batch succeeded, None
    when the response is malformed and Lambda fails the whole batch (see the module docstring)."""
    if response is None:
        return set()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    reported = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            return None
        reported.add(identifier)
    return reported
