"""Pages fetched from AWS, kept durably in the store until they are ingested, and the checkpoints
that let a collector resume.

A live collector writes each API page it receives here (one file, written atomically) and ingests
the spooled pages in batches; every batch's commit marker carries the collector's checkpoint as
`"collect": {key: mark}`, so the rows a query can see and the watermark the next run starts from
advance together. A run killed at any instant leaves pages here and possibly a cursor (where a
paginated read stopped); the next run with the same key ingests the leftover pages first (content
ids make that idempotent) and resumes from the cursor. Nothing in the spool is visible to queries.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

from tracekit import jsonio
from tracekit.collect.ingest import Ingestor, IngestReport
from tracekit.store import Store

SPOOL = "_spool"
CURSOR = "cursor.json"
PAGE_SUFFIXES = (".json", ".ndjson", ".gz", ".txt")


def collect_key(kind: str, name: str) -> str:
    """The checkpoint key of one collected resource, e.g. `logs:/aws/lambda/orders`."""
    return f"{kind}:{name}"


def marks(store: Store, key: str) -> list[dict[str, Any]]:
    """Every checkpoint committed for `key`, oldest first."""
    return [m["collect"][key] for m in store.markers() if key in m.get("collect", {})]


def last_mark(store: Store, key: str) -> dict[str, Any] | None:
    """The newest checkpoint committed for `key` (None before the first collect)."""
    found = marks(store, key)
    return found[-1] if found else None


class Spool:
    """The spool directory of one collected resource (one key); hold the store's write lock."""

    def __init__(self, store: Store, key: str) -> None:
        self.store = store
        self.key = key
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:60]
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        self.directory = store.root / SPOOL / f"{slug}-{digest}"

    # -- cursor ------------------------------------------------------------------------------

    def cursor(self) -> dict[str, Any] | None:
        """Where an interrupted run stopped (whatever its collector saved), or None."""
        path = self.directory / CURSOR
        if not path.exists():
            return None
        value = jsonio.loads(path.read_bytes())
        return value if isinstance(value, dict) else None

    def save_cursor(self, cursor: dict[str, Any]) -> None:
        """Save where this run is, atomically and durably."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_durably(self.directory / CURSOR, jsonio.dumpb(cursor, sort_keys=True))

    def clear_cursor(self) -> None:
        """The run finished: the next one starts from the committed watermark."""
        (self.directory / CURSOR).unlink(missing_ok=True)

    # -- pages -------------------------------------------------------------------------------

    def add(self, data: bytes, source: str, *, suffix: str = ".json") -> Path:
        """Keep one page; `source` is what its rows will name (the API call and resource)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        number = len(self.pages()) + 1
        while (self.directory / f"{number:08d}{suffix}").exists():
            number += 1
        page = self.directory / f"{number:08d}{suffix}"
        _write_durably(page.with_name(page.name + ".source"), source.encode())
        _write_durably(page, data)
        return page

    def pages(self) -> list[Path]:
        """The spooled pages not yet ingested, in the order they were fetched."""
        if not self.directory.exists():
            return []
        # cursor.json ends in .json too, but it is the checkpoint, not a page.
        return sorted(p for p in self.directory.iterdir() if p.suffix in PAGE_SUFFIXES and p.name != CURSOR)

    def source_of(self, page: Path) -> str:
        """The source name saved with `page`."""
        sidecar = page.with_name(page.name + ".source")
        return sidecar.read_text() if sidecar.exists() else str(page)

    def ingest(
        self,
        mark: dict[str, Any] | None,
        *,
        log_group: str | None = None,
        queue: str | None = None,
        role: str | None = None,
    ) -> IngestReport:
        """Ingest every spooled page, committing `mark` as this key's checkpoint with each batch;
        the pages are deleted only after every batch committed. `role` is what a collected queue
        holds ("dlq" or "destination", see documents.Parsed.role)."""
        pages = self.pages()
        report = IngestReport()
        meta = {"collect": {self.key: mark}} if mark is not None else {}
        if not pages and mark is None:
            return report
        ingestor = Ingestor(
            self.store,
            log_group=log_group,
            queue=queue,
            sources={p: self.source_of(p) for p in pages},
            meta=meta,
            role=role,
        )
        try:
            for page in pages:
                ingestor.ingest_file(page, report)
            ingestor.flush(report)
            if not report.files and mark is not None:
                commit_mark(self.store, self.key, mark)
        finally:
            ingestor.close()
        for page in pages:
            page.with_name(page.name + ".source").unlink(missing_ok=True)
            page.unlink(missing_ok=True)
        return report

    def remove(self) -> None:
        """Delete the spool directory (nothing left to ingest, no cursor)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def commit_mark(store: Store, key: str, mark: dict[str, Any]) -> None:
    """Commit a checkpoint with no rows (a collect that found nothing new still moves its watermark)."""
    batch = store.next_batch()
    batch.commit({"inputs": [], "counts_added": {}, "collect": {key: mark}})


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
