"""How fast a replay sends: a token bucket whose rate an AIMD controller lowers on throttling.

The bucket hands out one token per message at `rate` tokens per second. A caller takes a whole batch
at once and may go into debt: it then sleeps until the debt is paid, so a batch of ten at 5 msg/s
waits two seconds rather than never fitting a bucket smaller than itself, and the long-run rate is
exact. The bucket holds at most `burst` tokens saved up while idle.

AIMD (additive increase, multiplicative decrease, as TCP does): each throttled call halves the rate,
each successful call adds back `ceiling / 20` messages per second, never above the rate asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DEFAULT_RATE = 50.0  # msg/s; never above SQS redrive's own 500 msg/s unless the user asks
MIN_RATE = 1.0  # the floor halving stops at
RECOVERY_STEPS = 20  # successful calls that take a halved rate back to its ceiling, at most


class TokenBucket:
    """A thread-safe token bucket at a changeable rate (tokens per second)."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be above 0, not {rate}")
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self, n: int = 1) -> float:
        """Take `n` tokens, sleeping as long as the debt needs; returns the seconds slept."""
        with self._lock:
            self._refill()
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait

    def set_rate(self, rate: float) -> None:
        """Change the rate from now on (tokens earned so far are kept)."""
        with self._lock:
            self._refill()
            self.rate = max(float(rate), 1e-6)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now


class Aimd:
    """Adjusts a bucket's rate: halve on throttling, add back linearly on success."""

    def __init__(self, bucket: TokenBucket, *, floor: float = MIN_RATE) -> None:
        self.bucket = bucket
        self.ceiling = bucket.rate
        self.floor = min(floor, self.ceiling)
        self.step = self.ceiling / RECOVERY_STEPS
        self.throttled = 0
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        return self.bucket.rate

    def on_throttle(self) -> float:
        """A call was throttled: halve the rate (not below the floor); returns the new rate."""
        with self._lock:
            self.throttled += 1
            rate = max(self.floor, self.bucket.rate / 2)
            self.bucket.set_rate(rate)
            return rate

    def on_success(self) -> float:
        """A call went through: add one step back, up to the rate asked for; returns the new rate."""
        with self._lock:
            rate = min(self.ceiling, self.bucket.rate + self.step)
            if rate != self.bucket.rate:
                self.bucket.set_rate(rate)
            return rate
