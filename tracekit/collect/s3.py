"""`tracekit collect s3`: copy the objects under an S3 prefix into the store: CloudWatch Logs export
objects and the records Lambda writes to an S3 on-failure destination.

Every page of ListObjectsV2 under the prefix is read; each object not collected before is fetched
(GetObject), spooled under its `s3://bucket/key` name and ingested, which recognises it by content
(an export object, gzip or not, takes its log stream from the key `<prefix>/<task id>/<log stream>/
000000.gz`; the `aws-logs-write-test` object holds no events). An export does not name its log group:
give it with `log_group`.

The checkpoint (`s3:bucket/prefix`) is a watermark on LastModified plus the (key, ETag) pairs of the
objects modified in the day before the newest one seen: a later run fetches only objects that are
new or changed since (a changed object has a new LastModified and ETag), and keeps the checkpoint
small however many objects the prefix holds. The day of slack covers an object whose upload began
before, and ended after, a run listed the prefix. Objects are ingested every INGEST_EVERY_BYTES; the
(key, ETag) pairs already ingested are saved as the resume cursor, so a run killed half-way fetches
only the rest; content ids make anything fetched twice harmless.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tracekit.aws import Aws
from tracekit.collect.live import CollectError, CollectReport, to_ms
from tracekit.collect.progress import Meter
from tracekit.collect.sources import GZIP_MAGIC
from tracekit.collect.spool import Spool, collect_key, last_mark
from tracekit.errors import TracekitError
from tracekit.store import Store

RECHECK_MS = 24 * 3600 * 1000
INGEST_EVERY_BYTES = 64 << 20
INGEST_EVERY_OBJECTS = 1000
BUCKET_MISSING = ("NoSuchBucket",)


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` → (bucket, prefix); the prefix may be empty.

    Raises:
        TracekitError: `url` is not an s3:// URL with a bucket.
    """
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise TracekitError(
            "not an S3 URL",
            url,
            "Give the bucket and prefix as s3://BUCKET/PREFIX, e.g. s3://exports/orders/",
        )
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix


def object_id(key: str, etag: str) -> str:
    """A short id of one version of one object, as the checkpoint keeps it."""
    return hashlib.sha1(f"{key}\0{etag}".encode()).hexdigest()[:20]


@dataclass
class _Listing:
    """What this run saw and fetched."""

    #: Object ids modified at or after the new watermark, fetched now or before.
    recent: dict[str, int] = field(default_factory=dict)
    newest_ms: int | None = None
    pending_bytes: int = 0
    pending_ids: list[str] = field(default_factory=list)


def collect_s3(
    store: Store, aws: Aws, url: str, *, log_group: str | None = None, meter: Meter | None = None
) -> CollectReport:
    """Collect the objects under `url` (s3://bucket/prefix) into `store`; caller holds `store.writing()`.

    Args:
        store: the open store, write lock held.
        aws: AWS access (see `tracekit.collect.live.collect_aws`).
        url: s3://bucket/prefix.
        log_group: the log group of CloudWatch Logs export objects (their content does not say).
        meter: the progress line to advance with every object.

    Returns:
        Rows added, API calls made, objects fetched and warnings.

    Raises:
        TracekitError: `url` is not an S3 URL.
        CollectError: the bucket does not exist, a permission is missing, or AWS kept failing.
    """
    bucket, prefix = parse_s3_url(url)
    meter = meter or Meter("", enabled=False)
    key = collect_key("s3", f"{bucket}/{prefix}")
    spool = Spool(store, key)
    report = CollectReport()
    report.add_ingest(spool.ingest(None, log_group=log_group))  # a killed run's objects first
    mark = last_mark(store, key) or {}
    watermark: int | None = mark.get("watermark")
    collected = set(mark.get("recent", [])) | set((spool.cursor() or {}).get("collected", []))
    listing = _Listing()
    for obj in _objects(aws, bucket, prefix, report):
        modified = int(to_ms(obj["LastModified"]) or 0)
        if watermark is not None and modified < watermark:
            continue  # listed by a run whose watermark passed it
        oid = object_id(obj["Key"], str(obj.get("ETag", "")))
        listing.recent[oid] = modified
        listing.newest_ms = max(listing.newest_ms or modified, modified)
        if oid in collected:
            continue
        _fetch(aws, spool, bucket, obj, report)
        meter.advance(items=1, pages=1)
        listing.pending_ids.append(oid)
        listing.pending_bytes += int(obj.get("Size", 0))
        if listing.pending_bytes >= INGEST_EVERY_BYTES or len(listing.pending_ids) >= INGEST_EVERY_OBJECTS:
            _ingest_part(spool, listing, collected, log_group, report)
    report.add_ingest(spool.ingest(_next_mark(watermark, listing), log_group=log_group))
    spool.clear_cursor()
    report.resources.append(f"s3://{bucket}/{prefix} ({report.fetched} new objects)")
    return report


def _objects(aws: Aws, bucket: str, prefix: str, report: CollectReport) -> Iterator[dict[str, Any]]:
    """Every object under the prefix, page by page (folder markers left out)."""
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    where = f"s3://{bucket}/{prefix}"
    while True:
        report.call("ListObjectsV2")
        page = aws.call("s3", "ListObjectsV2", where, tolerate=BUCKET_MISSING, **params)
        if "Error" in page:
            raise CollectError(
                "cannot collect: bucket does not exist",
                f"s3://{bucket}",
                "Check the bucket name and the account",
            )
        for obj in page.get("Contents", []):
            if not (obj["Key"].endswith("/") and not obj.get("Size")):
                yield obj
        if not page.get("IsTruncated"):
            return
        params["ContinuationToken"] = page["NextContinuationToken"]


def _fetch(aws: Aws, spool: Spool, bucket: str, obj: dict[str, Any], report: CollectReport) -> None:
    """GetObject one object and spool it under its s3:// name (what its rows' `source` says)."""
    name = f"s3://{bucket}/{obj['Key']}"
    report.call("GetObject")
    response = aws.call("s3", "GetObject", name, Bucket=bucket, Key=obj["Key"])
    body: bytes = response["Body"].read()
    spool.add(body, name, suffix=_suffix(body))
    report.fetched += 1


def _suffix(body: bytes) -> str:
    if body[:2] == GZIP_MAGIC:
        return ".gz"
    return ".json" if body.lstrip()[:1] in (b"{", b"[") else ".txt"


def _ingest_part(
    spool: Spool, listing: _Listing, collected: set[str], log_group: str | None, report: CollectReport
) -> None:
    """Ingest what was fetched so far; remember it in the cursor so a killed run does not fetch it again."""
    report.add_ingest(spool.ingest(None, log_group=log_group))
    collected.update(listing.pending_ids)
    spool.save_cursor({"collected": sorted(collected)})
    listing.pending_ids.clear()
    listing.pending_bytes = 0


def _next_mark(watermark: int | None, listing: _Listing) -> dict[str, Any]:
    """The watermark a day before the newest object seen, and the objects modified since then."""
    if listing.newest_ms is None:
        return {"watermark": watermark, "recent": []}
    new = max(watermark or 0, listing.newest_ms - RECHECK_MS)
    return {"watermark": new, "recent": sorted(oid for oid, ms in listing.recent.items() if ms >= new)}
