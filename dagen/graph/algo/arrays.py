"""The array kernels every graph algorithm shares: ranges, CSR, and Kahn's frontier loop.

Each exists once here; the checks, the schedule simulation and the exporters call them.

Example:
    >>> ranges(np.array([5, 0]), np.array([2, 3])).tolist()
    [5, 6, 0, 1, 2]
    >>> off, vals = csr(np.array([10, 11, 12]), np.array([2, 0, 2]), 3)
    >>> off.tolist(), vals.tolist()
    ([0, 1, 1, 3], [11, 10, 12])
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["csr", "frontiers", "ranges"]

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Int = npt.NDArray[np.integer]
T = TypeVar("T", bound=np.generic)


def ranges(starts: Int, counts: Int) -> I64:
    """Concatenated ``arange(s, s + c)`` for each pair, vectorised.

    >>> ranges(np.array([3]), np.array([0])).tolist()
    []
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    # Offset every element by its range's start minus the elements before that range.
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - counts), counts)
    out: I64 = np.arange(total, dtype=np.int64) + shift
    return out


def csr(
    values: npt.NDArray[T], keys: Int, n: int, *, sentinel: int | None = None
) -> tuple[I64, npt.NDArray[T]]:
    """``values`` grouped by ``keys`` in ``0 … n-1`` (stable): ``(offsets, grouped)``.

    With ``sentinel`` every group starts with that value (one more entry per group).

    >>> off, vals = csr(np.array([7, 8]), np.array([1, 1]), 2, sentinel=-1)
    >>> off.tolist(), vals.tolist()
    ([0, 1, 4], [-1, -1, 7, 8])
    """
    counts = np.bincount(keys, minlength=n)
    if sentinel is not None:
        counts = counts + 1
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    order = np.argsort(keys, kind="stable")
    if sentinel is None:
        grouped: npt.NDArray[T] = values[order]
        return offsets, grouped
    out: npt.NDArray[T] = np.full(int(offsets[-1]), sentinel, dtype=values.dtype)
    out[np.arange(order.shape[0]) + np.asarray(keys)[order] + 1] = values[order]
    return offsets, out


def frontiers(offsets: I64, targets: Int, indeg: I64, start: I64) -> Iterator[I64]:
    """Kahn's algorithm level by level: yield each frontier of freed vertices.

    ``offsets``/``targets`` are the out-edges as CSR; ``indeg`` is decremented in place,
    so after the last frontier it is positive exactly on the vertices never freed (on a
    cycle or behind one). Each level costs O(its frontier and their out-edges) plus a
    fixed few numpy calls. A vertex freed by several edges of one level appears once,
    at its last occurrence (no sort), so the order is deterministic.

    >>> off, tgt = np.array([0, 1, 2, 2]), np.array([1, 2])
    >>> [f.tolist() for f in frontiers(off, tgt, np.array([0, 1, 1]), np.array([0]))]
    [[0], [1], [2]]
    """
    stamp = np.zeros(indeg.shape[0], dtype=np.int64)
    frontier = start
    while frontier.shape[0]:
        yield frontier
        lo = offsets[frontier]
        nxt = targets[ranges(lo, offsets[frontier + 1] - lo)]
        np.subtract.at(indeg, nxt, 1)
        frontier = _last_of_each(nxt[indeg[nxt] == 0], stamp)


def _last_of_each(values: I64, stamp: I64) -> I64:
    """``values`` without repeats, keeping each one's last occurrence."""
    if values.shape[0] < 2:
        return values
    pos = np.arange(values.shape[0], dtype=np.int64)
    stamp[values] = pos
    out: I64 = values[stamp[values] == pos]
    return out
