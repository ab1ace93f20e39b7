"""The Pareto frontier of a search, and where the given plan stands on it.

Every point has a throughput (tokens/s per GPU, more is better) and a latency (TTFT or
TPOT, less is better). A point is *dominated* when another is at least as good on both
and better on one; the frontier is the points no other dominates.

Example:
    >>> pts = [Point(key=0, throughput=10, latency=2), Point(key=1, throughput=8, latency=3)]
    >>> [p.key for p in pareto(pts)]
    [0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Point", "dominates", "pareto"]

REL = 1e-9
"""Two figures closer than this (relatively) are equal: the same layout estimated twice
may differ in the last bits of a mean."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One estimated candidate on the two axes."""

    key: int
    """The candidate's index in the search's stable order."""
    throughput: float
    latency: float


def _better(a: float, b: float) -> bool:
    """``a`` is larger than ``b`` beyond rounding."""
    return a > b + REL * max(abs(a), abs(b))


def at_least(a: float, b: float) -> bool:
    """``a`` ≥ ``b`` up to rounding."""
    return not _better(b, a)


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as good as ``b`` on both axes and better on one."""
    no_worse = at_least(a.throughput, b.throughput) and at_least(b.latency, a.latency)
    strictly = _better(a.throughput, b.throughput) or _better(b.latency, a.latency)
    return no_worse and strictly


def pareto(points: Sequence[Point]) -> list[Point]:
    """The non-dominated points, by latency ascending (ties: key ascending).

    Sorted by latency then throughput descending, a point is on the frontier exactly
    when its throughput beats every point before it; one sweep finds them all.
    """
    order = sorted(points, key=lambda p: (p.latency, -p.throughput, p.key))
    out: list[Point] = []
    for p in order:
        if out and not _better(p.throughput, out[-1].throughput):
            if not any(dominates(q, p) for q in out):
                out.append(p)  # equal to the last on both axes: not dominated
            continue
        out.append(p)
    return out
