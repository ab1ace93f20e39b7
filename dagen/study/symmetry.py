"""One rank per symmetric group: the quotient of a graph by its identical ranks.

Two ranks are *symmetric* when their programs are the same node for node (kind and
duration at every position) and every node's predecessors — its data and order edges,
its send if it is a recv, the other members of its collective — sit at the same
positions of ranks that are themselves symmetric. The schedule simulation
(:mod:`dagen.cost.simulate`) computes a node's start and end from its own duration and
its predecessors' ends only, so by induction along the graph symmetric ranks have the
same times, node for node. :func:`quotient` keeps one representative rank per group
(the lowest), points every edge into it at the representative of its source, and joins
a collective's members as their representatives: the quotient's schedule is the full
graph's, position for position, and its cost grows with the distinct ranks, not the
GPUs (docs/search.md, "One rank per symmetric group").

NOTE: the groups are found by colour refinement (1-dimensional Weisfeiler–Leman) on
ranks, with 64-bit hashes (SplitMix64 finaliser) of what the simulation reads: node
kinds, durations and positions (seeded with each rank's pool and pipeline stage, which
only splits colours the refinement would split anyway, a round per stage, sooner); in-edges as (kind, source position, target position,
source rank's colour); each collective as the multiset of its members' (position,
colour). Colours are refined until their number stops growing. A hash collision would
merge two different ranks; with at most ~10⁵ distinct signatures per refinement its
chance is below 10⁻⁹, and every merged rank's kinds and durations are then compared
exactly against its representative's. A quotient whose issue order cycles (members of
one collective at two positions of one representative) is refused (None): the caller
simulates the graph itself.

Example:
    >>> q = quotient(graph, durations)  # doctest: +SKIP
    >>> q.graph.n_nodes < graph.n_nodes, q.rank_of[:4].tolist()  # doctest: +SKIP
    (True, [0, 0, 2, 2])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.graph.ir import Graph, Kind

__all__ = ["Quotient", "quotient"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

MAX_ROUNDS = 256
"""Refinement rounds before giving up (each round can only split colours, so a graph
of ``R`` ranks stabilises within ``R``; real layouts take 2-6)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Quotient:
    """The representative ranks of a graph and the graph they make."""

    graph: Graph
    """The representatives' nodes (global rank ids kept), edges into them re-pointed at
    representatives, collectives re-formed over representatives."""
    durations: F64
    """Each kept node's own duration (the full graph's)."""
    nodes: I64
    """The full graph's index of each kept node."""
    rank_of: I64
    """int64 ``[world]``: the representative of every rank."""

    @property
    def groups(self) -> int:
        """Distinct ranks."""
        return int(np.unique(self.rank_of).shape[0])


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(*cols: npt.ArrayLike) -> U64:
    """SplitMix64 of the columns combined (uint64 arithmetic wraps; in place)."""
    h: U64 | None = None
    with np.errstate(over="ignore"):
        for i, c in enumerate(cols):
            z = np.array(c, dtype=np.uint64)
            z += np.uint64(0x9E3779B97F4A7C15 * (i + 1) % 2**64)
            if h is not None:
                z ^= h
            z ^= z >> np.uint64(30)
            z *= _M1
            z ^= z >> np.uint64(27)
            z *= _M2
            z ^= z >> np.uint64(31)
            h = z
    assert h is not None
    return h


class _Sum:
    """Wrapping uint64 sums by a fixed key array in ``0 … n-1`` (sorted once)."""

    def __init__(self, keys: npt.NDArray[np.integer], n: int) -> None:
        self.order = (
            None if bool(np.all(keys[1:] >= keys[:-1])) else np.argsort(keys, kind="stable")
        )
        self.bounds = np.searchsorted(keys if self.order is None else keys[self.order],
                                      np.arange(n + 1))  # fmt: skip

    def __call__(self, values: U64) -> U64:
        v = values if self.order is None else values[self.order]
        acc = np.concatenate([np.zeros(1, np.uint64), np.cumsum(v, dtype=np.uint64)])
        with np.errstate(over="ignore"):
            out: U64 = acc[self.bounds[1:]] - acc[self.bounds[:-1]]
        return out


def _dense(h: U64) -> I64:
    out: I64 = np.unique(h, return_inverse=True)[1].astype(np.int64).reshape(-1)
    return out


def _colours(g: Graph, dur: F64, pos: I64) -> I64:
    """Rank colours refined to stability (see the module NOTE). Edges within a rank
    hash once; each round re-hashes only what joins ranks: p2p edges and collectives."""
    world, rank = g.world, g.rank
    by_rank = _Sum(rank, world)
    src, dst = g.src, g.dst
    rs, rd = rank[src], rank[dst]
    inner = rs == rd
    # (source position, kind) and target position packed in one word: positions < 2³⁰
    edge = _mix(((pos[src] * 4 + g.ekind) << 32) | pos[dst])
    base = _mix(by_rank(_mix(dur.view(np.int64), pos * 4 + g.kind)), np.bincount(rank, minlength=world),
                _Sum(rs[inner], world)(edge[inner]), g.ranks.pool, g.ranks.stage)  # fmt: skip
    cross = (~inner).nonzero()[0]
    x_edge, x_src, x_sum = edge[cross], rs[cross], _Sum(rd[cross], world)
    members = (g.kind == Kind.COLLECTIVE).nonzero()[0]
    inst, m_pos, m_rank = g.inst[members], pos[members], rank[members]
    by_inst, m_sum = _Sum(inst, g.n_inst), _Sum(m_rank, world)
    colour = _dense(base)
    for _ in range(MAX_ROUNDS):
        per_inst = by_inst(_mix(m_pos, colour[m_rank]))
        joined = m_sum(_mix(m_pos, per_inst[inst]))
        new = _dense(_mix(colour, x_sum(_mix(x_edge, colour[x_src])), joined))
        if new.max(initial=-1) == colour.max(initial=-1):
            return new
        colour = new
    return colour  # pragma: no cover - R ranks stabilise within R rounds


def _instances(g: Graph, keep_of: I64, counterpart: I64) -> tuple[I64, I64]:
    """(quotient instance of each kept collective node, its full instance) by joining
    the representatives of every instance's members (min-label propagation)."""
    members = (g.kind == Kind.COLLECTIVE).nonzero()[0]
    if members.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    q = keep_of[counterpart[members]]
    inst = g.inst[members].astype(np.int64)
    label = np.arange(int(keep_of.max()) + 1, dtype=np.int64)
    for _ in range(MAX_ROUNDS):
        per = np.full(g.n_inst, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(per, inst, label[q])
        new = label.copy()
        np.minimum.at(new, q, per[inst])
        if np.array_equal(new, label):
            break
        label = new
    kept = members[keep_of[members] >= 0]
    lab = label[keep_of[kept]]
    return _dense(lab.astype(np.uint64)), g.inst[kept].astype(np.int64)


def quotient(graph: Graph, durations: F64) -> Quotient | None:
    """``graph`` with one rank per symmetric group, or None where it cannot be formed
    (a collective whose members fall on two positions of one representative; a graph
    of several pools, whose figures are read per pool's node range)."""
    g = graph
    if len(g.pools) != 1:
        return None
    rank = g.rank.astype(np.int64)
    first = np.searchsorted(rank, np.arange(g.world + 1))
    pos = np.arange(g.n_nodes, dtype=np.int64) - first[rank]
    if pos.shape[0] and int(pos.max()) >= 1 << 30:
        return None  # pragma: no cover - positions must fit the packed edge word
    colour = _colours(g, durations, pos)
    _, rep = np.unique(colour, return_index=True)
    rank_of = rep[colour].astype(np.int64)
    counterpart = first[rank_of[rank]] + pos
    if not (
        np.array_equal(durations, durations[counterpart])
        and np.array_equal(g.kind, g.kind[counterpart])
    ):
        return None  # pragma: no cover - a hash collision (see the NOTE)
    keep = (rank_of[rank] == rank).nonzero()[0]
    keep_of = np.full(g.n_nodes, -1, dtype=np.int64)
    keep_of[keep] = np.arange(keep.shape[0])
    qinst, full_inst = _instances(g, keep_of, counterpart)
    into = keep_of[g.dst] >= 0
    src = keep_of[counterpart[g.src[into]]].astype(np.int32)
    dst = keep_of[g.dst[into]].astype(np.int32)
    inst = np.full(keep.shape[0], -1, dtype=np.int32)
    coll = g.kind[keep] == Kind.COLLECTIVE
    inst[coll] = qinst
    n_inst = int(qinst.max(initial=-1)) + 1
    if _two_on_a_rank(g.rank[keep][coll], qinst):
        return None
    head = np.zeros(n_inst, dtype=np.int64)
    head[qinst] = full_inst
    cols = {c: getattr(g, c)[keep] for c in ("rank", "layer", "mb", "step", "op", "kind",
                                             "expert", "aux", "tmpl")}  # fmt: skip
    q = dataclasses.replace(
        g, **cols, inst=inst, src=src, dst=dst, ekind=g.ekind[into],
        inst_coll=g.inst_coll[head], inst_group=g.inst_group[head],
    )  # fmt: skip
    return Quotient(graph=q, durations=durations[keep], nodes=keep, rank_of=rank_of)


def _two_on_a_rank(ranks: npt.NDArray[np.int32], inst: I64) -> bool:
    """Whether some quotient instance has two members on one rank."""
    pairs = np.unique(np.stack([inst, ranks.astype(np.int64)]), axis=1)
    return bool(pairs.shape[1] < inst.shape[0])
