"""Token bucket and AIMD on a fake clock: exact long-run rate, debt for batches bigger than the
bucket, halving on throttling and linear recovery up to the rate asked for."""

from __future__ import annotations

import pytest

from tracekit.replay.rate import Aimd, TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_paces_batches_at_the_rate() -> None:
    t = FakeTime()
    bucket = TokenBucket(50, burst=10, clock=t.clock, sleep=t.sleep)
    for _ in range(100):  # 1,000 messages in batches of ten
        bucket.acquire(10)
    # The first ten come from the full bucket; the other 990 at 50/s.
    assert t.now == pytest.approx(990 / 50)


def test_a_batch_bigger_than_the_bucket_goes_into_debt_and_waits() -> None:
    t = FakeTime()
    bucket = TokenBucket(5, burst=1, clock=t.clock, sleep=t.sleep)
    assert bucket.acquire(10) == pytest.approx(9 / 5)
    assert bucket.acquire(1) == pytest.approx(1 / 5)


def test_aimd_halves_on_throttling_and_adds_back_linearly() -> None:
    t = FakeTime()
    aimd = Aimd(TokenBucket(200, clock=t.clock, sleep=t.sleep))
    assert aimd.on_throttle() == 100
    assert aimd.on_throttle() == 50
    assert aimd.on_success() == 60  # steps of 200 / 20
    for _ in range(30):
        aimd.on_success()
    assert aimd.rate == 200  # never above the rate asked for
    for _ in range(20):
        aimd.on_throttle()
    assert aimd.rate == 1.0  # the floor
    assert aimd.throttled == 22


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate must be above 0"):
        TokenBucket(0)
