"""How busy each rank is in a simulated schedule, and the pipeline bubble.

* ``busy_fraction[r]``: the time rank ``r``'s compute stream runs a node, over the
  makespan (what "GPU utilisation" reports for the SMs).
* ``bubble_fraction``: the rank-time in which a rank does nothing at all (its compute
  stream idle *and* no data on its links), over ``world × makespan``. A recv that waits
  for its send is not busy; its transfer window ``[max(posted, send start), end]`` is.
  Pipeline fill and drain make it ≈ (pp − 1)/(m + pp − 1) for ``pp`` equal stages and
  ``m`` micro-batches (GPipe, arXiv 1811.06965 §2.2); stalls on peers add to it.

Each stream runs its nodes one after another, so in issue order a rank's intervals on
one stream are disjoint and sorted; the union of the two streams is their lengths minus
their overlap, found with ``searchsorted`` on rank-offset times (no per-rank loop).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.cost.simulate import Schedule
from dagen.graph.ir import EdgeKind, Graph, Kind

__all__ = ["utilisation"]

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]


def _track(lo: F64, hi: F64, rank: I32) -> tuple[F64, F64, I32]:
    """Intervals ``[lo, hi)`` sorted by ``lo`` (a no-op when already sorted)."""
    if lo.shape[0] < 2 or bool(np.all(lo[1:] >= lo[:-1])):
        return lo, hi, rank
    order = np.argsort(lo, kind="stable")
    return lo[order], hi[order], rank[order]


def _covered(lo: F64, hi: F64, prefix: F64, x: F64) -> F64:
    """Length of the sorted disjoint intervals ``[lo, hi)`` lying below each ``x``."""
    i = np.searchsorted(hi, x, side="right")  # intervals wholly below x
    partial = np.zeros_like(x)
    inside = i < lo.shape[0]
    j = i[inside]
    partial[inside] = np.clip(x[inside] - lo[j], 0.0, hi[j] - lo[j])
    result: F64 = prefix[i] + partial
    return result


def _overlap(a: tuple[F64, F64], b: tuple[F64, F64]) -> F64:
    """For each interval of ``b``, its overlap with the union of ``a`` (both sorted, disjoint)."""
    lo, hi = a
    prefix = np.concatenate([[0.0], np.cumsum(hi - lo)])
    result: F64 = _covered(lo, hi, prefix, b[1]) - _covered(lo, hi, prefix, b[0])
    return result


def _windows(graph: Graph, s: Schedule) -> F64:
    """When each node starts to occupy its stream productively (a recv: its data moving)."""
    lo = s.start_s.copy()
    p2p = graph.ekind == EdgeKind.P2P
    send, recv = graph.src[p2p], graph.dst[p2p]
    lo[recv] = np.minimum(np.maximum(s.start_s[recv], s.start_s[send]), s.end_s[recv])
    return lo


def utilisation(
    graph: Graph, s: Schedule, rank_of: npt.NDArray[np.int64] | None = None
) -> tuple[F64, float]:
    """``(busy_fraction[world], bubble_fraction)`` of schedule ``s`` of ``graph``.

    ``rank_of[r]`` names the rank whose nodes stand for rank ``r``'s when ``graph`` holds
    one rank per symmetric group (``dagen.study.symmetry``): each rank counts as its
    representative."""
    world, span = graph.world, s.makespan_s
    if span <= 0.0 or graph.n_nodes == 0:
        return np.zeros(world, dtype=np.float64), 0.0
    lo, hi = _windows(graph, s), s.end_s
    offset = graph.rank.astype(np.float64) * (2.0 * span + 1.0)  # ranks never overlap
    comp = graph.kind == Kind.COMPUTE
    clo, chi, crank = _track(lo[comp] + offset[comp], hi[comp] + offset[comp], graph.rank[comp])
    mlo, mhi, mrank = _track(
        lo[~comp] + offset[~comp], hi[~comp] + offset[~comp], graph.rank[~comp]
    )
    busy = np.bincount(crank, weights=chi - clo, minlength=world)
    comm = np.bincount(mrank, weights=mhi - mlo, minlength=world)
    both = np.bincount(mrank, weights=_overlap((clo, chi), (mlo, mhi)), minlength=world)
    active = busy + comm - both
    if rank_of is not None:
        busy, active = busy[rank_of], active[rank_of]
    bubble = 1.0 - float(active.sum()) / (world * span)
    return busy / span, min(max(bubble, 0.0), 1.0)
