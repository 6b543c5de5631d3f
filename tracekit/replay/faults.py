"""Faults for the replayed stream: typed specs parsed from `--fault` text, and the send schedule they shape.

`schedule(entries, faults, seed=)` turns a plan's entries into the copies to send, in send order. With
no faults that is one copy per entry (`<entry_id>#0`) in plan order. Each fault transforms that list,
and every copy it touches lists the fault (its canonical text) in `Copy.faults`, which the engine
records in the journal. Faults apply in a fixed order, whatever order they were given in:
duplicate, corrupt, reorder, delay, burst, drop, throttle. So duplicates and poison copies are
themselves reordered, delayed, dropped or throttled like any other copy.

What each fault means for the engine:

- `duplicate=N[@SPACING]`: N extra copies of each entry (copies 1..N), right after the original; with
  a spacing each extra copy has `delay_ms` = SPACING (the engine waits that long before sending it).
- `delay=MS[±J]`: every copy has `delay_ms` = MS plus a seeded uniform jitter in [-J, J] (never below 0).
  `delay_ms` is a pause before sending the copy: the engine sends what it has batched, waits, goes on.
- `reorder=WINDOW`: copies are shuffled within consecutive windows of WINDOW copies.
  `reorder=fifo`: each FIFO message group's copies are sent in reverse order, in the positions the
  group had (copies without a group stay put).
- `burst=N`: the first N copies are sent at once: the engine takes no rate tokens for them.
- `corrupt=FIELD`: one poison copy per entry, after its good copies, whose JSON field FIELD (a dotted
  path) is mangled (see `corrupt`); the good copies are sent too.
- `drop=P`: each copy is dropped with probability P (not sent; the journal says dropped).
- `throttle=P`: each copy, with probability P, is answered as if the target throttled its first
  attempt (the engine records a retryable ThrottlingException without calling, then resends it).

Randomness is seeded per fault (`seed` and the fault's text), so a run is repeatable, and adding one
fault does not change what another one picks.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tracekit import jsonio
from tracekit.errors import TracekitError
from tracekit.replay.model import Entry

CORRUPTED = "tracekit-corrupted"


class FaultError(TracekitError):
    """A fault spec is malformed, or a fault cannot be applied to a payload."""


@dataclass(frozen=True)
class FaultSpec:
    """One parsed `--fault`; subclasses carry the typed parameters."""

    kind: ClassVar[str] = ""

    @property
    def text(self) -> str:
        """The canonical spec text (what the journal records against each copy)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Duplicate(FaultSpec):
    """`duplicate=N[@SPACING]`: N extra copies per entry, each SPACING after the one before."""

    kind: ClassVar[str] = "duplicate"
    count: int
    spacing_ms: int = 0

    @property
    def text(self) -> str:
        return f"duplicate={self.count}" + (f"@{self.spacing_ms}ms" if self.spacing_ms else "")


@dataclass(frozen=True)
class Delay(FaultSpec):
    """`delay=MS[±J]`: a pause of MS (± a seeded jitter up to J) before each copy."""

    kind: ClassVar[str] = "delay"
    delay_ms: int
    jitter_ms: int = 0

    @property
    def text(self) -> str:
        return f"delay={self.delay_ms}ms" + (f"±{self.jitter_ms}ms" if self.jitter_ms else "")


@dataclass(frozen=True)
class Reorder(FaultSpec):
    """`reorder=WINDOW` (shuffle within windows) or `reorder=fifo` (invert each FIFO group)."""

    kind: ClassVar[str] = "reorder"
    window: int = 0
    fifo: bool = False

    @property
    def text(self) -> str:
        return "reorder=fifo" if self.fifo else f"reorder={self.window}"


@dataclass(frozen=True)
class Burst(FaultSpec):
    """`burst=N`: the first N copies ignore the rate."""

    kind: ClassVar[str] = "burst"
    count: int

    @property
    def text(self) -> str:
        return f"burst={self.count}"


@dataclass(frozen=True)
class Corrupt(FaultSpec):
    """`corrupt=FIELD`: an extra poison copy per entry with FIELD mangled."""

    kind: ClassVar[str] = "corrupt"
    field: str

    @property
    def text(self) -> str:
        return f"corrupt={self.field}"


@dataclass(frozen=True)
class Drop(FaultSpec):
    """`drop=P`: each copy is not sent with probability P."""

    kind: ClassVar[str] = "drop"
    probability: float

    @property
    def text(self) -> str:
        return f"drop={self.probability:g}"


@dataclass(frozen=True)
class Throttle(FaultSpec):
    """`throttle=P`: each copy's first attempt is answered as throttled with probability P."""

    kind: ClassVar[str] = "throttle"
    probability: float

    @property
    def text(self) -> str:
        return f"throttle={self.probability:g}"


@dataclass
class Copy:
    """One copy to send: an entry's original (copy 0) or an extra one a fault added."""

    #: The journal key, `<entry_id>#<copy>`.
    key: str
    entry_id: str
    #: 0 for the original; 1.. for duplicates and poison copies.
    copy: int
    #: The canonical texts of the faults that shaped this copy.
    faults: list[str] = field(default_factory=list)
    #: Pause this long before sending this copy.
    delay_ms: int = 0
    #: Send without taking rate tokens.
    burst: bool = False
    #: Do not send; record it as dropped.
    drop: bool = False
    #: Answer the first attempt as throttled (retryable) without calling the target.
    throttle: bool = False
    #: A poison copy: mangle this JSON field of the payload.
    corrupt_field: str | None = None
    #: The entry's FIFO message group (reorder=fifo works on it).
    group: str | None = None


# ---------------------------------------------------------------------------------------- parsing

EXAMPLES = {
    "duplicate": "duplicate=2",
    "delay": "delay=200ms±50ms",
    "reorder": "reorder=10",
    "burst": "burst=100",
    "corrupt": "corrupt=order.amount",
    "drop": "drop=0.1",
    "throttle": "throttle=0.2",
}
_DURATION = re.compile(r"^(\d+)(ms|s)?$")
_FIELD = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


def parse_fault(text: str) -> FaultSpec:
    """Parse one `--fault` spec, e.g. `duplicate=2@500ms`.

    Raises:
        FaultError: one line naming the bad spec, what is wrong and an example.
    """
    kind, sep, value = text.strip().partition("=")
    kind = kind.strip().lower()
    if kind not in PARSERS:
        kinds = ", ".join(PARSERS)
        raise FaultError(f"unknown fault '{text}'", f"use one of {kinds}", "e.g. duplicate=2")
    if not sep or not value.strip():
        raise FaultError(f"bad fault '{text}'", "it needs a value", f"e.g. {EXAMPLES[kind]}")
    try:
        return PARSERS[kind](value.strip())
    except ValueError as exc:
        raise FaultError(f"bad fault '{text}'", str(exc), f"e.g. {EXAMPLES[kind]}") from None


def parse_faults(texts: list[str]) -> list[FaultSpec]:
    """Parse every spec; the first bad one raises FaultError."""
    return [parse_fault(text) for text in texts]


def _whole(value: str, name: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a whole number ≥ 1")
    return int(value)


def _duration_ms(value: str, name: str) -> int:
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise ValueError(f"{name} must be a duration like 500ms or 2s")
    number, unit = int(match.group(1)), match.group(2)
    return number * 1000 if unit == "s" else number


def _probability(value: str) -> float:
    try:
        p = float(value)
    except ValueError:
        p = -1.0
    if not 0.0 <= p <= 1.0:
        raise ValueError("P must be a probability from 0 to 1")
    return p


def _parse_duplicate(value: str) -> FaultSpec:
    count, _, spacing = value.partition("@")
    spacing_ms = _duration_ms(spacing, "SPACING") if spacing else 0
    return Duplicate(count=_whole(count, "N"), spacing_ms=spacing_ms)


def _parse_delay(value: str) -> FaultSpec:
    for sign in ("±", "+-", "+/-"):
        if sign in value:
            base, jitter = value.split(sign, 1)
            return Delay(delay_ms=_duration_ms(base, "MS"), jitter_ms=_duration_ms(jitter, "J"))
    return Delay(delay_ms=_duration_ms(value, "MS"))


def _parse_reorder(value: str) -> FaultSpec:
    if value.lower() == "fifo":
        return Reorder(fifo=True)
    window = _whole(value, "WINDOW")
    if window < 2:
        raise ValueError("WINDOW must be at least 2 (or fifo)")
    return Reorder(window=window)


def _parse_corrupt(value: str) -> FaultSpec:
    if not _FIELD.match(value):
        raise ValueError("FIELD must be a JSON field name or dotted path")
    return Corrupt(field=value)


PARSERS: dict[str, Callable[[str], FaultSpec]] = {
    "duplicate": _parse_duplicate,
    "delay": _parse_delay,
    "reorder": _parse_reorder,
    "burst": lambda v: Burst(count=_whole(v, "N")),
    "corrupt": _parse_corrupt,
    "drop": lambda v: Drop(probability=_probability(v)),
    "throttle": lambda v: Throttle(probability=_probability(v)),
}
#: The order faults apply in (see the module docstring).
ORDER = ["duplicate", "corrupt", "reorder", "delay", "burst", "drop", "throttle"]


# --------------------------------------------------------------------------------------- schedule


def schedule(entries: list[Entry], faults: list[FaultSpec], *, seed: int = 0) -> list[Copy]:
    """The copies to send, in send order, shaped by `faults` (deterministic for a seed)."""
    copies = [
        Copy(key=f"{e.entry_id}#0", entry_id=e.entry_id, copy=0, group=e.message_group_id) for e in entries
    ]
    for spec in sorted(faults, key=lambda f: ORDER.index(f.kind)):
        rng = random.Random(f"{seed}:{spec.text}")
        copies = APPLY[spec.kind](copies, spec, rng)
    return copies


def _extra(original: Copy, number: int, fault: str) -> Copy:
    key = f"{original.entry_id}#{number}"
    return Copy(key=key, entry_id=original.entry_id, copy=number, faults=[fault], group=original.group)


def _apply_corrupt(copies: list[Copy], spec: Any, rng: random.Random) -> list[Copy]:
    out: list[Copy] = []
    taken = _numbers(copies)
    last = {copy.entry_id: position for position, copy in enumerate(copies)}
    for position, copy in enumerate(copies):
        out.append(copy)
        if last[copy.entry_id] == position:
            taken[copy.entry_id] += 1
            poison = _extra(copy, taken[copy.entry_id], spec.text)
            poison.corrupt_field = spec.field
            out.append(poison)
    return out


def _apply_duplicate(copies: list[Copy], spec: Any, rng: random.Random) -> list[Copy]:
    out: list[Copy] = []
    taken = _numbers(copies)
    for copy in copies:
        out.append(copy)
        if copy.copy == 0:
            copy.faults.append(spec.text)
        for _ in range(spec.count):
            taken[copy.entry_id] += 1
            extra = _extra(copy, taken[copy.entry_id], spec.text)
            extra.delay_ms = spec.spacing_ms
            out.append(extra)
    return out


def _apply_reorder(copies: list[Copy], spec: Any, rng: random.Random) -> list[Copy]:
    if spec.fifo:
        out = _invert_groups(copies)
    else:
        out = []
        for start in range(0, len(copies), spec.window):
            window = copies[start : start + spec.window]
            rng.shuffle(window)
            out.extend(window)
    for before, after in zip(copies, out, strict=True):
        if before is not after:
            after.faults.append(spec.text)
    return out


def _invert_groups(copies: list[Copy]) -> list[Copy]:
    positions: dict[str, list[int]] = {}
    for i, copy in enumerate(copies):
        if copy.group is not None:
            positions.setdefault(copy.group, []).append(i)
    out = list(copies)
    for places in positions.values():
        for place, source in zip(places, reversed(places), strict=True):
            out[place] = copies[source]
    return out


def _apply_delay(copies: list[Copy], spec: Any, rng: random.Random) -> list[Copy]:
    for copy in copies:
        jitter = rng.randint(-spec.jitter_ms, spec.jitter_ms) if spec.jitter_ms else 0
        copy.delay_ms += max(0, spec.delay_ms + jitter)
        copy.faults.append(spec.text)
    return copies


def _apply_burst(copies: list[Copy], spec: Any, rng: random.Random) -> list[Copy]:
    for copy in copies[: spec.count]:
        copy.burst = True
        copy.faults.append(spec.text)
    return copies


def _apply_drop(copies: list[Copy], spec: Any, rng: random.Random) -> list[Copy]:
    for copy in copies:
        if rng.random() < spec.probability:
            copy.drop = True
            copy.faults.append(spec.text)
    return copies


def _apply_throttle(copies: list[Copy], spec: Any, rng: random.Random) -> list[Copy]:
    for copy in copies:
        if rng.random() < spec.probability:
            copy.throttle = True
            copy.faults.append(spec.text)
    return copies


APPLY: dict[str, Callable[[list[Copy], Any, random.Random], list[Copy]]] = {
    "corrupt": _apply_corrupt,
    "duplicate": _apply_duplicate,
    "reorder": _apply_reorder,
    "delay": _apply_delay,
    "burst": _apply_burst,
    "drop": _apply_drop,
    "throttle": _apply_throttle,
}


def _numbers(copies: list[Copy]) -> dict[str, int]:
    """The highest copy number taken per entry."""
    taken: dict[str, int] = {}
    for copy in copies:
        taken[copy.entry_id] = max(taken.get(copy.entry_id, 0), copy.copy)
    return taken


# ---------------------------------------------------------------------------------------- corrupt


def corrupt(payload: str, field_path: str) -> str:
    """`payload` with the JSON field at `field_path` (dotted) mangled: a scalar becomes the object
    {"tracekit-corrupted": <value>}, an object or a list the string "tracekit-corrupted" — a value of
    the wrong type, which is what poison messages usually carry.

    Raises:
        FaultError: the payload is not a JSON object, or has no such field.
    """
    try:
        body = jsonio.loads(payload)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise FaultError(f"cannot apply corrupt={field_path}", "the payload is not a JSON object")
    *parents, name = field_path.split(".")
    node: Any = body
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or name not in node:
        raise FaultError(f"cannot apply corrupt={field_path}", f"the payload has no field {field_path}")
    value = node[name]
    node[name] = CORRUPTED if isinstance(value, dict | list) else {CORRUPTED: value}
    return jsonio.dumps(body)
