"""controller/heap.py: serve caps glibc's malloc arenas (the environment's cap wins), and a big
batch freezes what it built out of the cyclic GC's walks.

Counted from glibc itself (malloc_info lists one <heap> per arena) in a child process, where
six threads allocate blocks too big for Python's own allocator at the same moment."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from controller import heap

ROOT = Path(__file__).parents[2]
needs_glibc = pytest.mark.skipif(heap._LIBC is None, reason="not glibc")

CHILD = r"""
import ctypes, sys, tempfile, threading
from controller import heap
print(heap.limit_arenas() if sys.argv[1] == "limit" else None)
keep, start = [], threading.Barrier(6)
def work():
    start.wait()
    keep.append([bytearray(2000) for _ in range(2000)])
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    fp = ctypes.c_void_p(libc.fopen(out.name.encode(), b"w"))
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(open(out.name).read().count("<heap nr="))
"""


def heaps(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    e = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, env={**e, **(env or {})},
                         capture_output=True, text=True, check=True, timeout=60).stdout.split()
    return out[0], int(out[1])


@needs_glibc
def test_the_cap_holds_where_threads_would_each_take_an_arena() -> None:
    assert heaps("limit") == ("True", heap.ARENAS)
    _, uncapped = heaps("none")
    assert uncapped > heap.ARENAS    # without it the threads spread over more arenas


@needs_glibc
def test_the_environment_wins() -> None:
    assert heaps("limit", {"MALLOC_ARENA_MAX": "4"})[0] == "False"


class Cycle:
    def __init__(self) -> None:
        self.me = self


def frozen(obj: object) -> bool:
    return not any(o is obj for o in gc.get_objects())   # get_objects: every generation but the frozen one


@pytest.fixture
def unfrozen():
    yield
    gc.unfreeze()


def test_a_big_batch_freezes_what_it_built_and_a_due_full_walk_frees_frozen_cycles(unfrozen) -> None:
    now = [0.0]
    keep = heap.LongLivedFreeze(enabled=True, clock=lambda: now[0])
    state, ring = {"flows": [1, 2]}, Cycle()
    ring_ref = weakref.ref(ring)
    heap.release_memory(keep)
    assert frozen(state) and frozen(ring) and keep.stats()["frozen_objects"] > 0
    del ring
    gc.collect()
    assert ring_ref() is not None, "a cycle alive at the freeze waits for the full walk"
    now[0] = heap.FULL_WALK_EVERY - 1
    keep.after_big_batch()
    assert ring_ref() is not None and keep.full_walks == 0
    now[0] = heap.FULL_WALK_EVERY
    keep.after_big_batch()
    assert ring_ref() is None and keep.full_walks == 1
    assert frozen(state), "frozen again after the walk"


def test_stats_do_not_walk_the_frozen_list(unfrozen, monkeypatch) -> None:
    """Polled every 100 ms during a bulk; gc.get_freeze_count() walks ≈ 1M objects at 10k ports."""
    keep = heap.LongLivedFreeze(enabled=True)
    heap.release_memory(keep)
    counted = keep.stats()["frozen_objects"]
    assert counted > 0
    monkeypatch.setattr(heap.gc, "get_freeze_count", lambda: pytest.fail("stats walked the frozen list"))
    assert keep.stats()["frozen_objects"] == counted


def test_off_by_default(unfrozen) -> None:
    before = gc.get_freeze_count()
    state = {"x": [1]}
    heap.release_memory(heap.LongLivedFreeze())
    heap.release_memory(None)
    assert gc.get_freeze_count() == before and not frozen(state)


def test_young_garbage_cycles_are_frozen_without_a_walk_and_freed_by_the_due_one(unfrozen) -> None:
    now = [0.0]
    keep = heap.LongLivedFreeze(enabled=True, clock=lambda: now[0])
    ring = Cycle()
    ring_ref = weakref.ref(ring)
    del ring                                   # garbage already, in the young generation
    gc.disable()                               # no automatic collection in between
    try:
        walks = gc.get_stats()[1]["collections"]
        heap.release_memory(keep)
        assert gc.get_stats()[1]["collections"] == walks, "the young generations were walked"
    finally:
        gc.enable()
    assert ring_ref() is not None
    now[0] = heap.FULL_WALK_EVERY
    heap.release_memory(keep)
    assert ring_ref() is None
