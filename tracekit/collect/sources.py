"""Input files: expand paths into files, read them (gunzipping every member), tell text from JSON."""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tracekit.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
RAW_LIMIT = 64 * 1024
_EXPORT_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ")


@dataclass
class Problem:
    """Something in a file that could not be read; becomes a quarantine row."""

    position: str
    reason: str
    raw: str


@dataclass
class InputFile:
    """One file to ingest and what reading it produced."""

    path: Path
    data: bytes = b""
    gzipped: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def source(self) -> str:
        return str(self.path)


def as_text(data: bytes, limit: int = RAW_LIMIT) -> str:
    """Bytes as text for a quarantine row, cut only past 64 KiB."""
    return data[:limit].decode("utf-8", "replace")


def expand(paths: Sequence[str | os.PathLike[str]], *, skip: Path | None = None) -> list[Path]:
    """Every regular file under `paths`, in a stable order; directories are recursed.

    Hidden files and directories found while recursing are skipped (named files are always read),
    and so is the store directory itself.

    Raises:
        InputError: a path does not exist or cannot be read.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError("no such file or directory", str(path), "Check the path and try again")
        if not os.access(path, os.R_OK):
            raise InputError("cannot read", str(path), "Check its permissions")
        if path.is_dir():
            files.extend(_walk(path, skip))
        else:
            files.append(path)
    return files


def _walk(root: Path, skip: Path | None) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        for name in sorted(filenames):
            if not name.startswith("."):
                yield here / name


def read_input(path: Path) -> InputFile:
    """Read a file, decompressing gzip (all members); bad members become problems."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError("cannot read", str(path), exc.strerror or "Check the file") from None
    item = InputFile(path)
    if data[:2] == GZIP_MAGIC:
        item.gzipped = True
        item.data, item.problems = gunzip_members(data)
    else:
        item.data = data
    return item


def gunzip_members(data: bytes) -> tuple[bytes, list[Problem]]:
    """Decompress every gzip member; a corrupt or truncated member is reported, not fatal."""
    out: list[bytes] = []
    problems: list[Problem] = []
    member = 0
    offset = 0
    while offset < len(data):
        if data[offset:].strip(b"\x00") == b"":
            break
        member += 1
        d = zlib.decompressobj(wbits=31)
        try:
            out.append(d.decompress(data[offset:]))
        except zlib.error as exc:
            problems.append(
                Problem(f"member {member}", f"corrupt gzip member: {exc}", as_text(data[offset:]))
            )
            break
        if not d.eof:
            problems.append(Problem(f"member {member}", "gzip member is truncated", ""))
            break
        offset = len(data) - len(d.unused_data)
    return b"".join(out), problems


def looks_binary(data: bytes) -> bool:
    """True when the first bytes are not UTF-8 text."""
    head = data[:4096]
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4
    return False


def is_s3_export(data: bytes) -> bool:
    """A CloudWatch Logs export object: most lines start with an ISO timestamp and a space."""
    lines = [ln for ln in data[:65536].splitlines()[:200] if ln.strip()]
    if not lines or not _EXPORT_LINE.match(lines[0]):
        return False
    hits = sum(1 for ln in lines if _EXPORT_LINE.match(ln))
    return hits * 2 >= len(lines)
