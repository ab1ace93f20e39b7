"""Schedule simulation: when every node starts and ends.

The machine model (docs/cost-model.md, "Schedule"):

* every rank has two streams, compute (stream 0: compute nodes) and communication
  (stream 1: collectives, sends, recvs); each runs its nodes one at a time, in the
  rank's program order;
* a node starts when its data/order predecessors have ended and its stream is free;
* a collective instance starts when *all* its members are ready; all get that start;
* a recv is posted like any node and ends when both it is posted and its send has
  ended (``send start + transfer``); it holds the communication stream until then.

The times are computed by :mod:`dagen.cost.engine` level by level in numpy; the
critical path is then walked back from the last node to end, one tight dependency at a
time (a predecessor whose end is the node's start, or a recv's send).

Example:
    >>> from dagen.cost.simulate import simulate
    >>> schedule = simulate(graph, durations)  # doctest: +SKIP
    >>> schedule.makespan_s  # doctest: +SKIP
    0.0421
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.cost.engine import Layout, Meter, Run, StreamCycle, layout
from dagen.errors import GraphError
from dagen.graph.algo import topological_order
from dagen.graph.ir import Graph, Kind

__all__ = ["COMM", "COMPUTE", "Schedule", "simulate", "streams"]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

COMPUTE = 0
"""Stream id of compute nodes."""
COMM = 1
"""Stream id of collectives, sends and recvs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """Simulated times of every node (in the graph's node order)."""

    start_s: F64
    end_s: F64
    own_s: F64
    """The node's own time (roofline or alpha-beta). A recv's is 0: it waits for its send
    instead, so ``end_s - start_s`` may exceed ``own_s``."""
    stream: U8
    makespan_s: float
    critical_path: I64
    """Node indices, earliest first: a chain of tight dependencies ending at the last end."""
    levels: int
    """Depth of the segment DAG: the number of vectorised rounds."""
    wall_s: float
    """Seconds the simulation took."""


def streams(graph: Graph) -> U8:
    """uint8 ``[n]``: 0 for compute nodes, 1 for communication nodes."""
    result: U8 = (graph.kind != Kind.COMPUTE).astype(np.uint8)
    return result


def _program_order(graph: Graph) -> I64 | None:
    """``None`` when nodes are rank-major (the IR's program order), else a stable sort."""
    r = graph.rank
    if r.shape[0] < 2 or bool(np.all(r[1:] >= r[:-1])):
        return None
    return np.argsort(r, kind="stable").astype(np.int64)


def _run(graph: Graph, durations: F64, meter: Meter | None) -> tuple[Layout, Run, I64 | None]:
    order = _program_order(graph)
    try:
        lay = layout(graph, durations, order)
        return lay, Run(lay).run(meter), order
    except StreamCycle:
        pass
    # Program order deadlocks when run serially (GRAPH-SERIAL-DEADLOCK): issue each
    # rank's nodes in a topological order instead (raises HasACycle on a true cycle).
    topo = topological_order(graph)
    order = topo[np.argsort(graph.rank[topo], kind="stable")].astype(np.int64)
    lay = layout(graph, durations, order)
    try:
        return lay, Run(lay).run(meter), order
    except StreamCycle as exc:  # pragma: no cover - a topological order cannot cycle
        raise GraphError("schedule simulation: no issue order is free of cycles") from exc


def simulate(graph: Graph, durations: F64, meter: Meter | None = None) -> Schedule:
    """Simulate the two-stream schedule of ``graph`` given each node's own ``durations``.

    ``meter(done, total)`` is told how many vertices of the segment DAG are priced.

    Raises:
        dagen.graph.algo.HasACycle: the graph deadlocks.

    Example:
        >>> s = simulate(graph, np.ones(graph.n_nodes))  # doctest: +SKIP
        >>> float(s.end_s.max()) == s.makespan_s  # doctest: +SKIP
        True
    """
    t0 = time.perf_counter()
    durations = np.asarray(durations, dtype=np.float64)
    lay, run, order = _run(graph, durations, meter)
    path = critical_path(lay, run)
    start, end = run.start, run.end[: lay.n]
    if order is not None:
        start, end, path = _unpermute(start, order), _unpermute(end, order), order[path]
    wall = time.perf_counter() - t0
    log.debug("simulated %d nodes in %d levels, %.3f s", lay.n, run.levels, wall)
    return Schedule(
        start_s=start,
        end_s=end,
        own_s=durations,
        stream=streams(graph),
        makespan_s=float(end.max()) if end.shape[0] else 0.0,
        critical_path=path,
        levels=run.levels,
        wall_s=wall,
    )


def _unpermute(values: F64, order: I64) -> F64:
    out = np.empty_like(values)
    out[order] = values
    return out


def _latest(run: Run, srcs: npt.NDArray[np.int32], n: int) -> int:
    """The source with the latest end (the sentinel excluded), or -1."""
    real = srcs[srcs < n]
    if real.shape[0] == 0:
        return -1
    return int(real[np.argmax(run.end[real])])


def _collective_cause(lay: Layout, run: Run, v: int) -> tuple[int, int]:
    """(predecessor, member it feeds) that set a collective's start, or (-1, -1)."""
    vertex = lay.n_plain + int(lay.inst[v])
    members = lay.vnodes[lay.vnode_off[vertex] : lay.vnode_off[vertex + 1]].astype(np.int64)
    lo = lay.s_off[members]
    cnt = lay.s_off[members + 1] - lo
    idx = np.arange(int(cnt.sum())) + (lo - np.cumsum(cnt) + cnt).repeat(cnt)
    srcs, owner = lay.s_src[idx], members.repeat(cnt)
    real = srcs < lay.n  # not the sentinel
    if not real.any():
        return -1, -1
    srcs, owner = srcs[real], owner[real]
    k = int(np.argmax(run.end[srcs]))
    return int(srcs[k]), int(owner[k])


def _cause(lay: Layout, run: Run, v: int) -> tuple[int, int]:
    """(node that set ``v``'s time, member entered through) or (-1, -1) at time 0."""
    start = run.start[v]
    arrival = _latest(run, lay.a_src[lay.a_off[v] : lay.a_off[v + 1]], lay.n)
    if arrival >= 0 and run.end[arrival] > start + lay.dur[v]:
        return arrival, v  # a recv that waited for its data
    if lay.is_coll[v]:
        u, via = _collective_cause(lay, run, v)
    elif not lay.cut[v] and run.end[v - 1] >= start:
        u, via = v - 1, v  # the previous node of the segment
    else:
        u, via = _latest(run, lay.s_src[lay.s_off[v] : lay.s_off[v + 1]], lay.n), v
    if u < 0 or run.end[u] < start or start <= 0.0:
        return -1, -1
    return u, via


def critical_path(lay: Layout, run: Run) -> I64:
    """Positions of the chain that sets the makespan, earliest first.

    From the position that ends last, repeatedly step to the dependency that set its
    time; a collective on the path appears as the member it was left through and, if
    different, the member it was entered through.
    """
    if lay.n == 0:
        return np.zeros(0, dtype=np.int64)
    v = int(np.argmax(run.end[: lay.n]))
    path = [v]
    while len(path) <= 2 * lay.n:
        u, via = _cause(lay, run, v)
        if u < 0:
            break
        if via != v:
            path.append(via)
        path.append(u)
        v = u
    return np.asarray(path[::-1], dtype=np.int64)
