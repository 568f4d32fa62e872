"""TokenBuckets: per-key rate, burst, refill, bounded memory."""
from __future__ import annotations

import pytest

from apps.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_rate():
    clock = Clock()
    tb = TokenBuckets(rate=10, burst=5, clock=clock)
    assert [tb.allow("p") for _ in range(7)] == [True] * 5 + [False] * 2
    clock.t += 0.1  # one token
    assert tb.allow("p") and not tb.allow("p")
    clock.t += 10  # refill caps at burst
    assert sum(tb.allow("p") for _ in range(20)) == 5
    assert tb.dropped == 2 + 1 + 15


def test_keys_are_independent():
    tb = TokenBuckets(rate=1, burst=1, clock=Clock())
    assert tb.allow("a") and not tb.allow("a")
    assert tb.allow("b")


def test_bounded_number_of_keys():
    clock = Clock()
    tb = TokenBuckets(rate=1, burst=1, max_keys=100, clock=clock)
    for i in range(1000):
        clock.t += 0.001
        tb.allow(i)
    assert len(tb) <= 100


def test_bad_parameters_rejected():
    with pytest.raises(ValueError):
        TokenBuckets(rate=0, burst=1)
