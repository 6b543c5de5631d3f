"""A progress line on stderr for collectors and ingest: items done, pages (API calls) and the rate.

It appears only once the work has taken more than a second, so quick commands stay quiet; a timer
shows it then even while one long step (a slow API call, a big file) is still running.
"""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.progress import (
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from tracekit.render import noun

SHOW_AFTER_S = 1.0


class _Counts(ProgressColumn):
    def __init__(self, unit: str, pages: bool) -> None:
        super().__init__()
        self.unit = unit
        self.pages = pages

    def render(self, task: Task) -> Text:
        rate = task.completed / task.elapsed if task.elapsed else 0.0
        pages = int(task.fields.get("pages", 0))
        pages_text = f", {pages:,} {noun(pages, 'page')}" if self.pages else ""
        done = int(task.completed)
        # Units are plural nouns (events, messages, files): one of them drops the s.
        unit = noun(done, self.unit.removesuffix("s"), self.unit)
        return Text(f"{done:,} {unit}{pages_text}, {rate:,.0f} {self.unit}/s")


class Meter:
    """Counts what one collector fetched; use as a context manager around the fetching."""

    def __init__(
        self, description: str, unit: str = "events", *, enabled: bool = True, pages: bool = True
    ) -> None:
        self.description = description
        self.items = 0
        self.pages = 0
        self._enabled = enabled
        self._show_pages = pages
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._unit = unit
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False

    def __enter__(self) -> Meter:
        if self._enabled:
            self._timer = threading.Timer(SHOW_AFTER_S, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    def advance(self, items: int = 0, pages: int = 0) -> None:
        """Add what one more page (or file) brought."""
        self.items += items
        self.pages += pages
        self._update()

    def note(self, description: str) -> None:
        """Change what the line says is being worked on."""
        self.description = description
        self._update()

    def _update(self) -> None:
        with self._lock:
            if self._progress is not None and self._task is not None:
                self._progress.update(
                    self._task, description=self.description, completed=self.items, pages=self.pages
                )

    def _show(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                _Counts(self._unit, self._show_pages),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.description, total=None, completed=self.items, pages=self.pages
            )
