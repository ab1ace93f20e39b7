"""The vectorised engine behind :mod:`dagen.cost.simulate`: segments, their DAG, and
a max-plus pass over it frontier by frontier.

Positions are nodes in *issue order*: rank-major, each rank's nodes in the order its
streams run them (program order unless :mod:`dagen.cost.simulate` had to fall back).

* A *segment* is a maximal run of consecutive positions of one rank and one stream in
  which no node after the first is a collective or a recv, and no node follows a
  collective. Inside a segment each node starts after the previous one, so its times
  are the chain ``e_j = max(max(e_{j-1}, x_j) + d_j, a_j)``: ``x_j`` is the latest end
  of its predecessors outside the segment (data, order, and for the first node the
  previous node of its stream), ``a_j`` the end of a recv's send.
* The vertices of the *segment DAG* are the plain segments and the collective
  instances (a collective's members are one synchronisation). Kahn's algorithm by
  levels frees a frontier of vertices whose predecessors are all priced; the frontier
  is priced at once: one gather of predecessor ends and one ``maximum.reduceat`` per
  node, one per collective, and a Hillis–Steele scan of the maps ``t ↦ max(t + a, b)``
  along every segment.

Index arrays that grow with the graph are int32 (the builder caps graphs below 2³¹
nodes); offsets are int64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.graph.algo.arrays import csr, frontiers, ranges
from dagen.graph.ir import EdgeKind, Graph, Kind

__all__ = ["Layout", "Meter", "Run", "StreamCycle", "layout"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]

Meter = Callable[[int, int], None]
"""A progress callback: ``meter(done, total)`` after each piece of a long phase (the
library never prints; the CLI draws a bar from it)."""


class StreamCycle(Exception):
    """The streams' issue order contradicts the dependencies (some vertex never frees)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """The graph in issue order, as the engine needs it.

    Vertices are the plain segments (``0 … n_plain-1``, in issue order), then the
    collective instances; ``vnode_off``/``vnodes`` list each vertex's positions.
    """

    n: int
    n_plain: int
    n_inst: int
    dur: F64
    cut: Bool
    """Where a segment starts."""
    is_coll: Bool
    inst: I32
    vnode_off: I64
    vnodes: I32
    v_arrival: Bool
    """Whether a vertex holds a recv (a node some send feeds)."""
    s_off: I64
    s_src: I32
    """CSR by position: the sentinel ``n`` (end 0) first, then every predecessor outside
    the position's segment (data and order edges, and the stream's previous node)."""
    a_off: I64
    a_src: I32
    """CSR by position: the sends a recv waits for."""
    k_off: I64
    k_dst: I32
    """CSR of the segment DAG by source vertex (multi-edges kept)."""
    indeg: I64


@dataclass(frozen=True, slots=True)
class _Columns:
    rank: npt.NDArray[np.int32]
    stream: U8
    inst: I32
    coll: Bool
    dur: F64
    src: I32
    dst: I32
    p2p: Bool


def _columns(graph: Graph, dur: F64, order: I64 | None) -> _Columns:
    """Node columns at positions; ``order[pos]`` is the node (None: the identity)."""
    src, dst = graph.src, graph.dst
    rank, kind, inst = graph.rank, graph.kind, graph.inst
    if order is not None:
        inv = np.empty(graph.n_nodes, dtype=np.int32)
        inv[order] = np.arange(graph.n_nodes, dtype=np.int32)
        src, dst = inv[src], inv[dst]
        rank, kind, inst, dur = rank[order], kind[order], inst[order], dur[order]
    return _Columns(
        rank=rank,
        stream=(kind != Kind.COMPUTE).view(np.uint8),
        inst=inst.astype(np.int32),
        coll=kind == Kind.COLLECTIVE,
        dur=np.ascontiguousarray(dur, dtype=np.float64),
        src=src,
        dst=dst,
        p2p=graph.ekind == EdgeKind.P2P,
    )


def _cuts(c: _Columns) -> Bool:
    port = c.coll.copy()
    port[c.dst[c.p2p]] = True
    cut = np.ones(c.rank.shape[0], dtype=np.bool_)
    r, s = c.rank, c.stream
    cut[1:] = (r[1:] != r[:-1]) | (s[1:] != s[:-1]) | port[1:] | c.coll[:-1]
    return cut


def _stream_prev(c: _Columns, at: I32) -> I32:
    """The previous position of the same rank and stream, for the positions ``at``."""
    prev = np.full(c.rank.shape[0], -1, dtype=np.int32)
    for stream in (0, 1):
        idx = (c.stream == stream).nonzero()[0]
        same = c.rank[idx[1:]] == c.rank[idx[:-1]]
        prev[idx[1:][same]] = idx[:-1][same]
    result: I32 = prev[at]
    return result


def _vertices(c: _Columns, cut: Bool, n_inst: int) -> tuple[I32, I32, I64, I32, int]:
    """(vertex of each position, segment starts, vnode_off, vnodes, n_plain)."""
    n = c.rank.shape[0]
    seg_start = cut.nonzero()[0].astype(np.int32)
    plain = ~c.coll[seg_start]
    n_plain = int(np.count_nonzero(plain))
    seg_vertex = np.where(plain, np.cumsum(plain, dtype=np.int32) - 1, n_plain + c.inst[seg_start])
    node_vertex = seg_vertex.astype(np.int32)[np.cumsum(cut, dtype=np.int32) - 1]
    members = c.coll.nonzero()[0]
    mem_off, mem = csr(members, c.inst[members], n_inst)
    seg_len = np.diff(np.append(seg_start, n))[plain]
    vnode_off = np.concatenate([[0], np.cumsum(seg_len), (n - members.shape[0]) + mem_off[1:]])
    vnodes = np.concatenate([(~c.coll).nonzero()[0].astype(np.int32), mem])
    return node_vertex, seg_start, vnode_off.astype(np.int64), vnodes, n_plain


def layout(graph: Graph, dur: F64, order: I64 | None = None) -> Layout:
    """The engine's view of ``graph`` with node durations ``dur`` in issue ``order``."""
    c = _columns(graph, dur, order)
    n = c.rank.shape[0]
    cut = _cuts(c)
    node_vertex, heads, vnode_off, vnodes, n_plain = _vertices(c, cut, graph.n_inst)
    ext = (node_vertex[c.src] != node_vertex[c.dst]) & ~c.p2p
    prev = _stream_prev(c, heads)
    s_src = np.concatenate([c.src[ext], prev[prev >= 0]])
    s_dst = np.concatenate([c.dst[ext], heads[prev >= 0]])
    a_src, a_dst = c.src[c.p2p], c.dst[c.p2p]
    n_vertices = n_plain + graph.n_inst
    v_arrival = np.zeros(n_vertices, dtype=np.bool_)
    v_arrival[node_vertex[a_dst]] = True
    vsrc = node_vertex[np.concatenate([s_src, a_src])]
    vdst = node_vertex[np.concatenate([s_dst, a_dst])]
    s_off, s_sorted = csr(s_src.astype(np.int32), s_dst, n, sentinel=n)
    a_off, a_sorted = csr(a_src.astype(np.int32), a_dst, n)
    k_off, k_dst = csr(vdst.astype(np.int32), vsrc, n_vertices)
    return Layout(
        n=n, n_plain=n_plain, n_inst=graph.n_inst, dur=c.dur, cut=cut, is_coll=c.coll,
        inst=c.inst, vnode_off=vnode_off, vnodes=vnodes, v_arrival=v_arrival, s_off=s_off,
        s_src=s_sorted, a_off=a_off, a_src=a_sorted, k_off=k_off, k_dst=k_dst,
        indeg=np.bincount(vdst, minlength=n_vertices).astype(np.int64),
    )  # fmt: skip


def _chain_scan(x: F64, a_in: F64 | None, d: F64, lens: I64, heads: I64) -> F64:
    """Ends along each segment: ``e_j = max(max(e_{j-1}, x_j) + d_j, a_in_j)``, e_{-1} = -∞.

    Node ``j`` is the map ``t ↦ max(t + a, b)`` with ``a = d_j``, ``b = max(x_j + d_j,
    a_in_j)``; maps compose as ``(a1, b1) then (a2, b2) = (a1 + a2, max(b1 + a2, b2))``,
    and the inclusive scan of a segment applied to -∞ is its ``b`` (Hillis–Steele).
    """
    b = x + d if a_in is None else np.maximum(x + d, a_in)
    longest = int(lens.max()) if lens.shape[0] else 0
    if longest <= 1:
        return b
    a = d.copy()
    pos = np.arange(x.shape[0], dtype=np.int64) - heads.repeat(lens)
    step = 1
    while step < longest:
        idx = (pos >= step).nonzero()[0]
        nb = np.maximum(b[idx - step] + a[idx], b[idx])
        na = a[idx - step] + a[idx]
        b[idx], a[idx] = nb, na
        step *= 2
    return b


class Run:
    """Start and end of every position, priced frontier by frontier.

    ``end`` has one extra entry, the sentinel (position ``n``, end 0).
    """

    def __init__(self, lay: Layout) -> None:
        self.lay = lay
        self.start = np.zeros(lay.n, dtype=np.float64)
        self.end = np.zeros(lay.n + 1, dtype=np.float64)
        self.levels = 0

    def run(self, meter: Meter | None = None) -> Run:
        """Price every vertex, reporting ``meter(vertices priced, vertices)`` per level.

        Raises :class:`StreamCycle` if some vertex never frees.
        """
        lay = self.lay
        indeg = lay.indeg.copy()
        done = 0
        for frontier in frontiers(lay.k_off, lay.k_dst, indeg, (indeg == 0).nonzero()[0]):
            self._level(frontier)
            done += frontier.shape[0]
            self.levels += 1
            if meter is not None:
                meter(done, indeg.shape[0])
        if done != indeg.shape[0]:
            raise StreamCycle
        return self

    def _gather_max(self, nodes: I64, off: I64, srcs: I32) -> F64:
        """Latest end among each node's sources (every node has at least one)."""
        lo = off[nodes]
        cnt = off[nodes + 1] - lo
        result: F64 = np.maximum.reduceat(self.end[srcs[ranges(lo, cnt)]], cnt.cumsum() - cnt)
        return result

    def _arrivals(self, nodes: I64) -> F64:
        lay = self.lay
        cnt = lay.a_off[nodes + 1] - lay.a_off[nodes]
        out = np.full(nodes.shape[0], -np.inf, dtype=np.float64)
        nz = cnt.nonzero()[0]
        out[nz] = self._gather_max(nodes[nz], lay.a_off, lay.a_src)
        return out

    def _level(self, frontier: I64) -> None:
        lay = self.lay
        is_plain = frontier < lay.n_plain
        plain, inst = frontier[is_plain], frontier[~is_plain]
        frontier = np.concatenate([plain, inst])
        lo = lay.vnode_off[frontier]
        cnt = lay.vnode_off[frontier + 1] - lo
        ends = cnt.cumsum()
        nodes = lay.vnodes[ranges(lo, cnt)].astype(np.int64)
        x = self._gather_max(nodes, lay.s_off, lay.s_src)
        arr = self._arrivals(nodes) if lay.v_arrival[frontier].any() else None
        k = plain.shape[0]
        kn = int(ends[k - 1]) if k else 0
        if inst.shape[0]:
            mcnt = cnt[k:]
            tail = None if arr is None else arr[kn:]
            self._collectives(nodes[kn:], x[kn:], tail, mcnt[mcnt > 0])
        if k:
            lens = cnt[:k]
            head = None if arr is None else arr[:kn]
            self._segments(nodes[:kn], x[:kn], head, lens, ends[:k] - lens)

    def _collectives(self, mem: I64, x: F64, arr: F64 | None, cnt: I64) -> None:
        start = np.maximum.reduceat(x, cnt.cumsum() - cnt).repeat(cnt)
        end = start + self.lay.dur[mem]
        self.start[mem] = start
        self.end[mem] = end if arr is None else np.maximum(end, arr)

    def _segments(self, nodes: I64, x: F64, arr: F64 | None, lens: I64, heads: I64) -> None:
        end = _chain_scan(x, arr, self.lay.dur[nodes], lens, heads)
        start = np.empty_like(end)
        start[0] = x[0]
        np.maximum(end[:-1], x[1:], out=start[1:])
        start[heads] = x[heads]
        self.start[nodes] = start
        self.end[nodes] = end
