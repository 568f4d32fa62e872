"""Port ranges → value/mask matches: exactly the range, nothing more, and few flows."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from flows.portrange import merge_ranges, range_masks, ranges_to_masks

PORT = st.integers(min_value=0, max_value=0xFFFF)


def covered(masks, x: int) -> int:
    return sum(1 for v, m in masks if x & m == v)


def blocks(masks, bits=16):
    """(first, last) of each value/mask block; prefix masks give contiguous blocks."""
    top = (1 << bits) - 1
    out = []
    for v, m in masks:
        size = (~m & top) + 1
        assert m == top & ~(size - 1), f"mask {m:#x} is not a prefix mask"
        assert v & ~m & top == 0
        out.append((v, v + size - 1))
    return sorted(out)


@given(st.tuples(PORT, PORT).map(sorted))
def test_masks_cover_exactly_the_range(r):
    lo, hi = r
    masks = range_masks(lo, hi)
    bs = blocks(masks)
    assert bs[0][0] == lo and bs[-1][1] == hi
    for (_a1, b1), (a2, _b2) in zip(bs, bs[1:]):
        assert a2 == b1 + 1  # contiguous and disjoint
    assert len(masks) <= 2 * 16 - 2


@settings(max_examples=300)
@given(st.integers(0, 63), st.integers(0, 63))
def test_brute_force_small_width(a, b):
    lo, hi = min(a, b), max(a, b)
    masks = range_masks(lo, hi, bits=6)
    for x in range(64):
        assert covered(masks, x) == (1 if lo <= x <= hi else 0)


@given(st.lists(st.tuples(PORT, PORT).map(sorted), min_size=1, max_size=6))
def test_merged_masks_cover_the_union_once(ranges):
    masks = ranges_to_masks(ranges)
    samples = {0, 0xFFFF} | {x for lo, hi in ranges for x in (lo, hi, lo - 1, hi + 1) if 0 <= x <= 0xFFFF}
    for x in samples:
        inside = any(lo <= x <= hi for lo, hi in ranges)
        assert covered(masks, x) == (1 if inside else 0)
    merged = merge_ranges(ranges)
    for (_a1, b1), (a2, _b2) in zip(merged, merged[1:]):
        assert a2 > b1 + 1  # neither overlapping nor adjacent


def test_overlapping_ranges_cost_no_more_than_their_union():
    assert ranges_to_masks([(80, 90), (85, 100)]) == range_masks(80, 100)
    assert ranges_to_masks([(80, 80), (81, 81)]) == [(80, 0xFFFE)]


def test_known_splits():
    assert range_masks(0, 0xFFFF) == [(0, 0)]
    assert range_masks(22, 22) == [(22, 0xFFFF)]
    assert range_masks(1000, 1999) == [(1000, 0xFFF8), (1008, 0xFFF0), (1024, 0xFE00), (1536, 0xFF00),
                                       (1792, 0xFF80), (1920, 0xFFC0), (1984, 0xFFF0)]
    assert range_masks(1, 0xFFFF)[0] == (1, 0xFFFF)


@pytest.mark.parametrize("lo,hi", [(5, 4), (-1, 3), (0, 0x10000)])
def test_bad_ranges_raise(lo, hi):
    with pytest.raises(ValueError):
        range_masks(lo, hi)
