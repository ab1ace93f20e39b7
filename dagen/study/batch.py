"""Simulate many small graphs at once, and their critical paths, without a per-node loop.

The schedule engine (:mod:`dagen.cost.engine`) pays a fixed few numpy calls per level
of a graph's segment DAG, and a search candidate's quotient
(:mod:`dagen.study.symmetry`) is a few thousand nodes but still hundreds to thousands of
levels deep: alone, the levels cost more than the nodes. :func:`simulate_many` lays the
graphs side by side as one disjoint graph (ranks, nodes and collective instances
numbered after the previous graph's) and runs the engine once, so the levels are paid
once for the deepest graph instead of once per graph; a disjoint union's schedule is
each part's schedule, so the times are the same numbers.

The critical path is :func:`dagen.cost.simulate.critical_path`'s, found for every graph
of the batch together: the tight dependency of every position is computed in one
vectorised pass (:func:`causes`, the same rules in the same order, ties to the first
source in the same CSR order), then every graph's chain is followed in lockstep, one
numpy step per link for the whole batch. ``tests/test_symmetry.py`` asserts both equal
the one-graph functions.

Example:
    >>> schedules = simulate_many([q1.graph, q2.graph], [d1, d2])  # doctest: +SKIP
    >>> schedules[0].makespan_s == simulate(q1.graph, d1).makespan_s  # doctest: +SKIP
    True
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt

from dagen.cost.engine import Layout, Run, StreamCycle, layout
from dagen.cost.simulate import Schedule, streams
from dagen.graph.algo.arrays import ranges
from dagen.graph.ir import Graph

__all__ = ["causes", "chains", "simulate_many"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class _Union:
    """The columns the engine reads, of several graphs laid end to end."""

    rank: I32
    kind: npt.NDArray[np.uint8]
    inst: I32
    src: I32
    dst: I32
    ekind: npt.NDArray[np.uint8]
    n_nodes: int
    n_inst: int


def _union(graphs: Sequence[Graph]) -> tuple[_Union, I64]:
    """The graphs as one, and where each one's nodes start (one more entry: the end)."""
    nodes = np.cumsum([0] + [g.n_nodes for g in graphs]).astype(np.int64)
    insts = np.cumsum([0] + [g.n_inst for g in graphs]).astype(np.int64)
    ranks = np.cumsum([0] + [g.world for g in graphs]).astype(np.int64)

    def cat(name: str, shift: I64 | None, keep_neg: bool = False) -> npt.NDArray[np.generic]:
        parts = []
        for i, g in enumerate(graphs):
            col = getattr(g, name)
            if shift is not None:
                col = np.where(col < 0, col, col + shift[i]) if keep_neg else col + shift[i]
            parts.append(col)
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)

    u = _Union(
        rank=cat("rank", ranks).astype(np.int32), kind=cat("kind", None).astype(np.uint8),
        inst=cat("inst", insts, keep_neg=True).astype(np.int32),
        src=cat("src", nodes).astype(np.int32), dst=cat("dst", nodes).astype(np.int32),
        ekind=cat("ekind", None).astype(np.uint8), n_nodes=int(nodes[-1]),
        n_inst=int(insts[-1]),
    )  # fmt: skip
    return u, nodes


def _first_max(seg: I64, src: I64, end: F64, n: int) -> I64:
    """Per segment ``0 … n-1``: the source with the latest end, the first of ties in
    the given order; -1 for a segment with none. ``seg`` is non-decreasing."""
    out = np.full(n, -1, dtype=np.int64)
    if seg.shape[0] == 0:
        return out
    vals = end[src]
    heads = np.concatenate([[0], (np.diff(seg) != 0).nonzero()[0] + 1])
    best = np.maximum.reduceat(vals, heads)
    mark = np.zeros(seg.shape[0], dtype=np.int64)
    mark[heads] = 1
    group = np.cumsum(mark) - 1
    tie = (vals == best[group]).nonzero()[0]
    first = tie[np.concatenate([[True], group[tie][1:] != group[tie][:-1]])]
    out[seg[first]] = src[first]
    return out


def _latest(off: I64, srcs: I32, n: int, end: F64) -> I64:
    """:func:`dagen.cost.simulate._latest` for every position of a CSR at once."""
    cnt = np.diff(off)
    seg = np.arange(n, dtype=np.int64).repeat(cnt)
    src = srcs.astype(np.int64)
    real = src < n
    return _first_max(seg[real], src[real], end, n)


def _collective_causes(lay: Layout, end: F64) -> tuple[I64, I64]:
    """Per collective instance, (source, member) that set its start, or (-1, -1)."""
    lo = lay.vnode_off[lay.n_plain : lay.n_plain + lay.n_inst]
    cnt = lay.vnode_off[lay.n_plain + 1 : lay.n_plain + lay.n_inst + 1] - lo
    members = lay.vnodes[ranges(lo, cnt)].astype(np.int64)
    inst = np.arange(lay.n_inst, dtype=np.int64).repeat(cnt)
    scnt = lay.s_off[members + 1] - lay.s_off[members]
    srcs = lay.s_src[ranges(lay.s_off[members], scnt)].astype(np.int64)
    owner, inst = members.repeat(scnt), inst.repeat(scnt)
    real = srcs < lay.n
    srcs, owner, inst = srcs[real], owner[real], inst[real]
    picked = _first_max(inst, np.arange(srcs.shape[0], dtype=np.int64), end[srcs], lay.n_inst)
    ok = picked >= 0
    src_of = np.where(ok, srcs[np.maximum(picked, 0)], -1) if srcs.shape[0] else picked
    via_of = np.where(ok, owner[np.maximum(picked, 0)], -1) if srcs.shape[0] else picked
    return src_of, via_of


def causes(lay: Layout, run: Run) -> tuple[I64, I64]:
    """For every position ``v``, ``(u, via)`` as :func:`dagen.cost.simulate._cause`
    gives them: the node that set ``v``'s time and the member entered through, or -1."""
    n, start, end = lay.n, run.start, run.end
    v = np.arange(n, dtype=np.int64)
    arrival = _latest(lay.a_off, lay.a_src, n, end)
    waited = (arrival >= 0) & (end[np.maximum(arrival, 0)] > start + lay.dur)
    c_src, c_via = _collective_causes(lay, end)
    inst = np.maximum(lay.inst.astype(np.int64), 0)
    prev = np.concatenate([[False], ~lay.cut[1:] & (end[:-2] >= start[1:])]) if n else v > 0
    latest = _latest(lay.s_off, lay.s_src, n, end)
    u = np.where(lay.is_coll, c_src[inst] if lay.n_inst else -1, np.where(prev, v - 1, latest))
    via = np.where(lay.is_coll, c_via[inst] if lay.n_inst else -1, v)
    stop = (u < 0) | (end[np.maximum(u, 0)] < start) | (start <= 0.0)
    u, via = np.where(stop, -1, u), np.where(stop, -1, via)
    return np.where(waited, arrival, u), np.where(waited, v, via)


def chains(lay: Layout, run: Run, bounds: I64) -> list[I64]:
    """Each graph's critical path (positions of the union, earliest first): from the
    first position of latest end in ``bounds[i] … bounds[i+1]``, the chain of causes."""
    u, via = causes(lay, run)
    k = bounds.shape[0] - 1
    heads = np.array(
        [lo + int(np.argmax(run.end[lo:hi])) if hi > lo else -1
         for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)],
        dtype=np.int64,
    )  # fmt: skip
    steps = [heads]
    cur = heads
    while (cur >= 0).any():
        cur = np.where(cur >= 0, u[np.maximum(cur, 0)], -1)
        steps.append(cur)
    walk = np.stack(steps)  # [steps, graphs]
    out = []
    for j in range(k):
        seq = walk[:, j]
        seq = seq[seq >= 0]
        if seq.shape[0] == 0:
            out.append(np.zeros(0, dtype=np.int64))
            continue
        vias = via[seq[:-1]]
        pairs = np.stack([seq[:-1], vias], axis=1).ravel()
        mask = np.stack([np.ones(seq.shape[0] - 1, bool), vias != seq[:-1]], axis=1).ravel()
        path = np.concatenate([pairs[mask], seq[-1:]])
        out.append(path[::-1].copy())
    return out


def simulate_many(graphs: Sequence[Graph], durations: Sequence[F64]) -> list[Schedule] | None:
    """Each graph's schedule (as :func:`dagen.cost.simulate.simulate` gives it in
    program order), simulated together; None when the program order of some graph
    cycles (simulate that one alone: it falls back on a topological order)."""
    t0 = time.perf_counter()
    union, bounds = _union(graphs)
    dur = np.concatenate([np.asarray(d, np.float64) for d in durations]) if graphs else np.zeros(0)
    try:
        lay = layout(cast(Graph, union), dur)
        run = Run(lay).run()
    except StreamCycle:
        return None
    paths = chains(lay, run, bounds)
    wall = (time.perf_counter() - t0) / max(len(graphs), 1)
    out = []
    for i, g in enumerate(graphs):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        end = run.end[lo:hi]
        out.append(Schedule(
            start_s=run.start[lo:hi].copy(), end_s=end.copy(), own_s=dur[lo:hi],
            stream=streams(g), makespan_s=float(end.max()) if hi > lo else 0.0,
            critical_path=paths[i] - lo, levels=run.levels, wall_s=wall,
        ))  # fmt: skip
    return out
