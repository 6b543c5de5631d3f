"""What every live collector shares: its AWS access and the report it returns."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tracekit.aws import Aws, AwsError
from tracekit.collect.ingest import IngestReport
from tracekit.model import COUNT_KEYS


class CollectError(AwsError):
    """A live collection failed; names the action, the resource and what to do."""


RESUME_HINT = "Fix this and run the same command again; it resumes where it stopped"


def collect_aws(region: str | None = None, profile: str | None = None) -> Aws:
    """AWS access for collectors: standard configuration, adaptive retries, 'cannot collect' errors."""
    return Aws(
        region, profile=profile, verb="cannot collect", retry_hint=RESUME_HINT, error_class=CollectError
    )


def to_ms(value: dt.datetime | None) -> int | None:
    """Epoch milliseconds of a datetime; a naive one is UTC, as tracekit parses times (None stays None)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


@dataclass
class CollectReport:
    """What one collect command fetched and stored."""

    #: Rows added per table, as ingest counts them (plus `quarantined`).
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    #: API calls made, per operation (e.g. {"FilterLogEvents": 3}).
    calls: dict[str, int] = field(default_factory=dict)
    #: Items fetched from AWS before de-duplication (log events, messages, objects).
    fetched: int = 0
    #: What the user should know: held messages, skipped sources, incomplete snapshots.
    warnings: list[str] = field(default_factory=list)
    #: The resources collected, e.g. "log group /aws/lambda/orders".
    resources: list[str] = field(default_factory=list)

    def add_ingest(self, part: IngestReport) -> None:
        """Add the rows one spool ingest stored."""
        self.add_ingest_counts(part.counts)

    def call(self, operation: str, n: int = 1) -> None:
        """Count `n` calls of `operation`."""
        self.calls[operation] = self.calls.get(operation, 0) + n

    def merge(self, other: CollectReport) -> None:
        """Add another collector's report (collect function runs several)."""
        self.add_ingest_counts(other.counts)
        for op, n in other.calls.items():
            self.call(op, n)
        self.fetched += other.fetched
        self.warnings += other.warnings
        self.resources += other.resources

    def add_ingest_counts(self, counts: dict[str, int]) -> None:
        """Add rows counted per table."""
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
