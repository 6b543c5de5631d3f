"""The error tree: every failure a user can act on is a TracekitError with one clear line."""

from __future__ import annotations


class TracekitError(Exception):
    """A problem the user can fix; rendered as one line: what, where, what to do."""

    def __init__(self, what: str, where: str | None = None, todo: str | None = None) -> None:
        self.what = what
        self.where = where
        self.todo = todo
        super().__init__(self.line())

    def line(self) -> str:
        parts = self.what
        if self.where:
            parts += f": {self.where}"
        if self.todo:
            parts += f". {self.todo}"
        return parts


class InputError(TracekitError):
    """An input path cannot be read at all (missing, unreadable)."""


class StoreError(TracekitError):
    """The store directory is missing, locked or not a tracekit store."""


class QueryError(TracekitError):
    """A user's SQL was rejected or failed."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
