"""A schedule certificate: the fast proof that a graph is acyclic and runs in program order.

A *schedule key* is an integer per node such that

1. on every rank, keys strictly increase in program order (index order);
2. all member nodes of a collective instance share one key;
3. every edge that is not a forward edge on one rank (a p2p edge, or any cross-rank or
   backward edge) goes from a smaller key to a larger one (forward edges on one rank do
   by 1).

Such a key proves the contracted graph acyclic (every contracted edge increases it) and
proves that running every rank's ops in program order cannot deadlock: executing all
ops in key order, each key holds at most one op per rank, a collective's members all
arrive at its key, and every predecessor has a smaller key. That is exactly what the
rank sweep (:mod:`dagen.graph.algo.sweep`) establishes, so when a key verifies, the sweep
is not needed; when it does not, nothing is concluded and the sweep runs.

The candidate key is cheap: cut each rank's nodes into *blocks*, maximal runs of one
(step, micro-batch), and give node ``i`` of a block the key
``base · B + (i − block start)``, with ``base`` the block's *slot* in the graph's
schedule (:mod:`dagen.graph.schedule`: when that block would run in a pipeline of
unit-time blocks, e.g. ``step · (M + pp) + micro-batch + stage`` for the prefill
pipeline and the decode chain) and ``B`` the longest block. A block the schedule does
not have gives no key. Condition 1 then only needs ``base`` to increase from block to
block on a rank (a check over blocks, not nodes); 2 and 3 are a gather over collective
nodes and cross edges. O(n) with about five passes over int16/int32 columns. The slots
are verified, never trusted: a wrong slot only means no certificate, and the sweep runs.

>>> certify(graph, Derived(graph))  # doctest: +SKIP
True
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.graph.algo.derived import Derived
from dagen.graph.ir import Graph
from dagen.graph.lookup import occurrence, slots_of

__all__ = ["certified_key", "certify", "schedule_key"]

I64 = npt.NDArray[np.int64]
Int = npt.NDArray[np.signedinteger]


def _blocks(graph: Graph, sh: Derived) -> I64:
    """First node of every block (maximal run of one rank, step and micro-batch)."""
    n = graph.n_nodes
    change = np.empty(n, dtype=np.bool_)
    change[:1] = True
    np.not_equal(graph.mb[1:], graph.mb[:-1], out=change[1:])
    change[1:] |= graph.step[1:] != graph.step[:-1]
    bounds = sh.rank_start[1:-1]
    change[bounds[bounds < n]] = True
    return np.flatnonzero(change)


def schedule_key(graph: Graph, sh: Derived) -> Int | None:
    """The candidate key of the module docstring, or None when condition 1 already fails
    (or the graph is not rank-major, or micro-batches/steps are negative)."""
    n = graph.n_nodes
    if not sh.rank_major or n == 0 or int(graph.mb.min()) < 0 or int(graph.step.min()) < 0:
        return None
    starts = _blocks(graph, sh)
    lengths = np.diff(np.append(starts, n))
    width = int(lengths.max())
    rank = graph.rank[starts].astype(np.int64)
    step, mb = graph.step[starts], graph.mb[starts]
    found, base = slots_of(graph, rank, step, mb, occurrence(rank, step, mb))
    if not found.all():
        return None
    same_rank = rank[1:] == rank[:-1]
    if np.any(same_rank & (base[1:] <= base[:-1])):
        return None
    # int32 when the largest key fits: half the memory traffic of the two n-long passes.
    dt = np.dtype(np.int32 if (int(base.max()) + 1) * width < (1 << 31) - 1 else np.int64)
    key: Int = np.repeat((base * width - starts).astype(dt), lengths)
    key += np.arange(n, dtype=dt)
    return key


def certified_key(graph: Graph, sh: Derived) -> Int | None:
    """The candidate key when it verifies (conditions 1-3 of the module docstring), else None.

    A verified key is a linear extension of the contracted graph in which every
    predecessor of every member of an instance has a smaller key than the instance's
    members, so a stable argsort by it is a topological order.
    """
    key = schedule_key(graph, sh)
    if key is None:
        return None
    ck = key[sh.coll_nodes]
    ref = np.zeros(graph.n_inst, dtype=np.int64)
    ref[sh.coll_inst] = ck
    if not np.array_equal(ref[sh.coll_inst], ck):
        return None
    eid = sh.cross_edges
    return key if bool(np.all(key[graph.src[eid]] < key[graph.dst[eid]])) else None


def certify(graph: Graph, sh: Derived) -> bool:
    """Whether the schedule key verifies (see the module docstring)."""
    return certified_key(graph, sh) is not None
