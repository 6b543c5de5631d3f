"""Reading ReportBatchItemFailures responses, case by case from lambda-semantics.md §2 and §3.

The batch holds two items, "a" and "b" (messageIds or sequence numbers alike). Each expectation is
what the documents say Lambda makes of the response: the identifiers reported as failed (an empty set
= the whole batch succeeded), or None = the response is malformed and the whole batch fails.
"""

from __future__ import annotations

from typing import Any

import pytest

from tracekit.lab.models.batch_response import reported_failures

BATCH = {"a", "b"}


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "a"}]}, {"a", "b"}),
        ({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "a"}]}, {"a"}),
    ],
)
def test_a_valid_list_reports_exactly_the_named_items(response: Any, failed: set[str]) -> None:
    assert reported_failures(response, BATCH) == failed


@pytest.mark.parametrize(
    "response",
    [
        None,  # §2: a null response
        {},  # §2: an empty response
        {"batchItemFailures": []},  # §2: an empty list
        {"batchItemFailures": None},  # §2: a null list
        {"other": 1},  # no batchItemFailures key at all (our choice: as if empty)
    ],
)
def test_an_empty_report_means_the_whole_batch_succeeded(response: Any) -> None:
    assert reported_failures(response, BATCH) == set()


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"foo": "a"}]},  # §2, §3: bad key name (the d09 capture's response)
        {"batchItemFailures": [{"ItemIdentifier": "a"}]},  # the key name is case-sensitive
        {"batchItemFailures": [{"itemIdentifier": ""}]},  # §2, §3: empty itemIdentifier
        {"batchItemFailures": [{"itemIdentifier": None}]},  # §2, §3: null itemIdentifier
        {"batchItemFailures": [{"itemIdentifier": "c"}]},  # §3: not in the batch
        {"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "c"}]},  # one bad entry is enough
        {"batchItemFailures": [{"itemIdentifier": "a"}, {}]},
    ],
)
def test_a_malformed_entry_fails_the_whole_batch(response: Any) -> None:
    assert reported_failures(response, BATCH) is None


@pytest.mark.parametrize(
    "response",
    [
        "a",  # §3 "invalid JSON": not an object
        ["a"],
        {"batchItemFailures": "a"},  # our choice: not a list
        {"batchItemFailures": {"itemIdentifier": "a"}},  # an entry instead of a list of them
        {"batchItemFailures": ["a"]},  # our choice: an entry that is not an object
        {"batchItemFailures": [{"itemIdentifier": 1}]},  # our choice: identifiers are strings
    ],
)
def test_a_response_of_the_wrong_shape_fails_the_whole_batch(response: Any) -> None:
    assert reported_failures(response, {"a", "b", "1"}) is None
