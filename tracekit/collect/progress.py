"""A progress line on stderr for collectors: items fetched, pages (API calls) and the rate.

It appears only once the work has taken more than a second, so quick commands stay quiet.
"""

from __future__ import annotations

import time
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

SHOW_AFTER_S = 1.0


class _Counts(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        rate = task.completed / task.elapsed if task.elapsed else 0.0
        pages = int(task.fields.get("pages", 0))
        return Text(f"{int(task.completed):,} {self.unit}, {pages:,} pages, {rate:,.0f} {self.unit}/s")


class Meter:
    """Counts what one collector fetched; use as a context manager around the fetching."""

    def __init__(self, description: str, unit: str = "events", *, enabled: bool = True) -> None:
        self.description = description
        self.items = 0
        self.pages = 0
        self._enabled = enabled
        self._started = time.monotonic()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._unit = unit

    def __enter__(self) -> Meter:
        self._started = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def advance(self, items: int = 0, pages: int = 0) -> None:
        """Add what one more page brought."""
        self.items += items
        self.pages += pages
        if self._progress is None:
            if not self._enabled or time.monotonic() - self._started < SHOW_AFTER_S:
                return
            self._show()
        assert self._progress is not None and self._task is not None
        self._progress.update(self._task, completed=self.items, pages=self.pages)

    def note(self, description: str) -> None:
        """Change what the line says is being fetched."""
        self.description = description
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description)

    def _show(self) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            _Counts(self._unit),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=None, pages=self.pages)
