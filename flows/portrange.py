"""Port ranges → the fewest value/mask matches that cover exactly the range.

OpenFlow cannot match "1000 ≤ tcp_dst ≤ 1999", only value/mask pairs. A range splits into
aligned power-of-two blocks (at most 2·bits − 2 of them). Overlapping or adjacent ranges are
merged first, so two rules "80-90" and "85-100" cost the masks of "80-100", not both sets
(issue 6: overlapping rules don't double up).
"""
from __future__ import annotations

from typing import Iterable

PORT_BITS = 16


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint, non-adjacent ranges covering the union of `ranges` (inclusive bounds)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if lo > hi:
            raise ValueError(f"empty port range {lo}-{hi}")
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def range_masks(lo: int, hi: int, bits: int = PORT_BITS) -> list[tuple[int, int]]:
    """(value, mask) pairs whose matches are disjoint and together equal [lo, hi].

    Greedy: at each step take the largest block aligned at `lo` that still fits under `hi`.
    """
    top = (1 << bits) - 1
    if not 0 <= lo <= hi <= top:
        raise ValueError(f"bad range {lo}-{hi} for {bits} bits")
    out: list[tuple[int, int]] = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << bits  # largest block alignment allows at lo
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, top & ~(size - 1)))
        lo += size
    return out


def ranges_to_masks(ranges: Iterable[tuple[int, int]], bits: int = PORT_BITS) -> list[tuple[int, int]]:
    """Merge `ranges`, then split each into masks. A full range gives [(0, 0)] (match anything)."""
    out: list[tuple[int, int]] = []
    for lo, hi in merge_ranges(ranges):
        out.extend(range_masks(lo, hi, bits))
    return out
