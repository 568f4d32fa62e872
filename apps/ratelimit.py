"""Per-port token buckets for punted packets.

Why in the app as well as (optionally) OpenFlow meters on the punt flows: a bucket is checked
before any parsing, so a port flooding DISCOVERs costs the controller one dict lookup per
packet and cannot use up the answers other ports are owed. Meters (see docs/services.md) stop
the flood earlier, in the switch, when the runtime installs them.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Hashable

LOG = logging.getLogger(__name__)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """`allow(key)` is True while `key` stays under `rate`/s with bursts up to `burst`.

    Bounded: at most `max_keys` buckets; when full, the oldest-idle half is forgotten (a
    forgotten key starts again with a full bucket, which only errs towards answering).
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 65536,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}
        self._lock = threading.Lock()
        self.dropped = 0

    def allow(self, key: Hashable) -> bool:
        now = self._clock()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_keys:
                    self._evict()
                b = self._buckets[key] = _Bucket(self.burst, now)
            else:
                b.tokens = min(self.burst, b.tokens + (now - b.stamp) * self.rate)
                b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return True
            self.dropped += 1
            return False

    def _evict(self) -> None:
        by_age = sorted(self._buckets.items(), key=lambda kv: kv[1].stamp)
        for k, _ in by_age[: max(1, len(by_age) // 2)]:
            del self._buckets[k]

    def __len__(self) -> int:
        return len(self._buckets)
