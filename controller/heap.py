"""The serve process's memory around the worker's big batches (issue 14: 10,000 ports).

Three jobs, all process-wide: the cyclic GC paused while a big batch runs (CyclicGcPause), what
a big batch built moved out of the GC's reach afterwards (LongLivedFreeze), and glibc's malloc
set up and trimmed (limit_arenas, trim). Not glibc (musl, macOS): the malloc part does nothing.

Why glibc's arenas: objects over 512 bytes (dict and set tables, record dicts, encoded bytes)
bypass Python's own allocator, and glibc gives every thread that allocates its own arena (up to
8 per core). The API's threads parse 10,000 ports' JSON, os-ken's receive thread a 170,000-flow
dump, the worker compiles: each burst lands in another arena, and free space in one serves no
other. Two arenas kept the 10,000-port bench's controller ≈ 20 MB smaller at the end and ≈ 38 MB
at its peak at the same speed (docs/performance.md). A MALLOC_ARENA_MAX in the environment is
the operator's and wins.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import threading
import time
from typing import Callable

LOG = logging.getLogger(__name__)

ARENAS = 2          # malloc arenas of the serve process (glibc's default: 8 per core)
_M_ARENA_MAX = -8   # mallopt parameter number (glibc malloc.h)
GC_HOLD_MAX = 30.0  # seconds the cyclic GC may stay paused across queued batches (CyclicGcPause)
FULL_WALK_EVERY = 3600.0  # seconds: how stale frozen cycles may get (LongLivedFreeze)


def _load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 — present on glibc only
        libc.malloc_trim  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before threads start allocating: existing arenas stay).
    True if the cap was set; False when the environment sets its own or this is not glibc."""
    if _LIBC is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    if not _LIBC.mallopt(_M_ARENA_MAX, arenas):
        LOG.warning("mallopt(M_ARENA_MAX, %d) refused; malloc keeps its default arenas", arenas)
        return False
    return True


def trim() -> None:
    """Give glibc's free pages back to the system (every arena's)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class CyclicGcPause:
    """No cyclic garbage collection while big batches run (process-wide, bounded).

    Why: a 10,000-port batch allocates millions of objects that stay alive (flows, their encoded
    bodies), and CPython runs a full collection each time the long-lived objects grow by a
    quarter — 8 of them, 1.35 s of a 5.0 s compile in-process, walking every live object while
    holding the GIL. What the batch throws away is freed by reference counting (flows, records
    and messages hold no cycles); the cycles a batch does make are collected once it is over.
    The pause lasts while more work is queued (at most GC_HOLD_MAX): turned on between two heavy
    batches — a restart's compile from the port cache, then the switch's connect — the GC walked
    the first batch's millions of young objects once there and once more after the second."""

    def __init__(self) -> None:
        self.since: float | None = None  # paused by us since (monotonic)

    def pause(self) -> None:
        if self.since is None and gc.isenabled():
            gc.disable()
            self.since = time.monotonic()

    def resume(self, more_queued: bool) -> None:
        if self.since is not None and (not more_queued or time.monotonic() - self.since > GC_HOLD_MAX):
            gc.enable()
            self.since = None


class LongLivedFreeze:
    """After a big batch, every object then alive is frozen (gc.freeze): later collections skip it.

    Why: what a 10,000-port batch builds (≈ 1M tracked objects: flows, records, the engine's
    reads) lives on, and a full collection walks all of it — 0.7–0.8 s holding the GIL on this
    machine, at moments set by allocation counts: a port created then waited for it (one more
    port's flows: 25–40 ms, and 0.5–0.7 s when a collection fell in; the bulk's API writes paid
    36 of them, 4.2 s). The frozen objects are still freed by reference counting, as nearly all
    of ours are; only a reference cycle among objects alive at a freeze (young garbage included:
    release_memory does not walk them first) waits, for the full walk a big batch does at most
    every FULL_WALK_EVERY seconds (unfreeze, collect, freeze again).
    Off by default (a process that embeds the Core, the unit tests, keeps its GC as it is);
    `tenantflow serve` turns it on."""

    def __init__(self, enabled: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self._clock = clock
        self._walked = clock()   # a restart's first big batches do not pay for a full walk
        self._lock = threading.Lock()  # the worker and the binder both end big batches
        self.freezes = 0
        self.full_walks = 0
        # Counted once per freeze: gc.get_freeze_count() walks the frozen list (≈ 6 ms per million
        # objects holding the GIL), and stats are polled every 100 ms during a bulk (10 % of it).
        self.frozen_at_last_freeze = 0

    def after_big_batch(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            if now - self._walked >= FULL_WALK_EVERY:
                gc.unfreeze()
                found = gc.collect()
                self._walked = now
                self.full_walks += 1
                LOG.info("full garbage collection of the frozen state: %d unreachable", found)
            gc.freeze()
            self.freezes += 1
            self.frozen_at_last_freeze = gc.get_freeze_count()

    def stats(self) -> dict:
        return {"frozen_objects": self.frozen_at_last_freeze, "freezes": self.freezes,
                "full_walks": self.full_walks, "collections": [s["collections"] for s in gc.get_stats()]}


def release_memory(freeze: LongLivedFreeze | None = None) -> None:
    """After a big burst (1,000 ports' JSON, records, compiles) most of the peak is garbage that
    glibc keeps in its arenas; give free pages back, so the resident size reflects the state we
    keep rather than the largest burst so far.

    With a LongLivedFreeze on (serve), what is alive is frozen without a walk: the young
    generations' walk found no cyclic garbage after any big batch of the 10,000-port bench and
    cost 0.3-0.5 s of each (a restart's included); a cycle there waits for the hourly full walk.
    Otherwise only the young generations are collected: the burst's garbage is freed by
    reference counting, and a full collection walks every live object (≈ 0.3 s per million at
    10,000 ports, holding the GIL on the path to the switch)."""
    if freeze is not None and freeze.enabled:
        freeze.after_big_batch()
    else:
        gc.collect(1)
    trim()
