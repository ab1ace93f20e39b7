"""Deadlock freedom: the contracted graph has no cycle; topological order; critical path.

The graph checked is the IR's *contracted* graph (see :mod:`dagen.checks.engine`): every
collective instance is one synchronisation vertex of all its members, every send has an
edge to its recv. A cycle there is a deadlock: each rank on it waits for another.

Example:
    >>> from dagen.checks import topological_order  # doctest: +SKIP
    >>> order = topological_order(graph)  # doctest: +SKIP
    >>> pos = np.empty_like(order); pos[order] = np.arange(order.size)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import numpy.typing as npt

from dagen.checks.certify import certified_key, certify
from dagen.checks.common import MAX_NODES, Code, count, make, rank_list
from dagen.checks.engine import Contracted, contract, layered_kahn, ranges
from dagen.checks.shared import Shared
from dagen.checks.sweep import SweepResult, sweep
from dagen.errors import GraphError
from dagen.findings import Finding, Severity
from dagen.graph.ir import Graph, Kind

__all__ = ["HasACycle", "check_acyclic", "critical_path", "topological_order"]

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

log = logging.getLogger(__name__)


class HasACycle(GraphError):
    """The graph has a cycle, so its ranks deadlock; ``cycle`` holds readable node ids."""

    def __init__(self, message: str, cycle: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.cycle = cycle


def topological_order(graph: Graph) -> I64:
    """Node indices such that every edge of the contracted graph goes forward.

    For a collective instance, every predecessor of *every* member precedes its first
    member, and every successor of every member follows it, so a schedule simulation
    may treat the instance as done at its first member. On rank-major graphs, a stable
    argsort by the schedule key when it verifies (:mod:`dagen.checks.certify`), else by
    the rank sweep's pass key when the sweep completes; otherwise exact Kahn by levels on
    what the sweep left. Either way each rank's nodes come in program order whenever
    running the ranks in program order cannot deadlock.

    Raises:
        HasACycle: the graph deadlocks; the message prints one cycle.

    Example:
        >>> order = topological_order(graph)  # doctest: +SKIP
        >>> sorted(order.tolist()) == list(range(graph.n_nodes))  # doctest: +SKIP
        True
    """
    sh = Shared(graph)
    key = certified_key(graph, sh)
    if key is not None:
        return np.argsort(key, kind="stable")
    sw = sweep(graph, sh) if sh.rank_major else None
    if sw is not None and sw.complete:
        return np.argsort(sw.node_key(graph.rank), kind="stable")
    ex = _Exact.run(graph, sw)
    if ex.stuck.any():
        _raise_cycle(graph, ex.con, ex.stuck)
    con, passed, level = ex.con, ex.passed, ex.level
    head = np.flatnonzero(passed)
    if sw is not None:
        head = head[np.argsort(sw.node_key(graph.rank)[head], kind="stable")]
    rest = np.flatnonzero(~passed)
    vert = con.vertex[rest]
    rest = rest[np.lexsort((rest, vert, level[vert]))]
    return np.concatenate([head, rest])


def critical_path(graph: Graph) -> I64:
    """Longest path of the contracted graph by vertex count, as node indices in order.

    A collective instance on the path appears once, as the member node the path enters
    it through (the first vertex: the member it leaves through). Exact Kahn by levels:
    O(n + m) work in (depth) rounds, each proportional to its frontier.

    Raises:
        HasACycle: the graph deadlocks, so no longest path exists.

    Example:
        >>> path = critical_path(graph)  # doctest: +SKIP
        >>> graph.node_ids(path[:2])  # doctest: +SKIP
        ['r0/s0/mb0/embed', 'r0/s0/L0/mb0/attn.norm']
    """
    con = contract(graph)
    if con.n_vertices == 0:
        return np.zeros(0, dtype=np.int64)
    level, _ = layered_kahn(con.n_vertices, con.src, con.dst, keep=False)
    stuck = level < 0
    if stuck.any():
        _raise_cycle(graph, con, stuck)
    # One predecessor one level down for every vertex that has one (the last edge wins).
    tight = np.flatnonzero(level[con.src] == level[con.dst] - 1)
    back = np.full(con.n_vertices, -1, dtype=np.int64)
    back[con.dst[tight]] = tight
    v = int(np.argmax(level))
    nodes: list[int] = []
    last_edge = -1
    while back[v] >= 0:
        e = int(back[v])
        nodes.append(int(graph.dst[e]))  # the member the path enters an instance through
        last_edge, v = e, int(con.src[e])
    nodes.append(_first_node(graph, con, v, last_edge))
    return np.asarray(nodes[::-1], dtype=np.int64)


def _raise_cycle(graph: Graph, con: Contracted, stuck: Bool) -> NoReturn:
    message, nodes = _cycle_text(graph, con, stuck)
    raise HasACycle(message, tuple(graph.node_ids(_key_nodes(graph, nodes))))


def _first_node(graph: Graph, con: Contracted, v: int, out_edge: int) -> int:
    if v < con.n_plain:
        return int(con.plain[v])
    if out_edge >= 0:
        return int(graph.src[out_edge])
    members = np.flatnonzero(graph.inst == v - con.n_plain)
    return int(members[0])


def check_acyclic(graph: Graph, shared: Shared | None = None) -> list[Finding]:
    """``GRAPH-CYCLE`` if the contracted graph has a cycle (printed as a path of ranks and
    ops); ``GRAPH-SERIAL-DEADLOCK`` (warning) if it is acyclic but running every rank's
    ops one after another in program order deadlocks.

    Example:
        >>> check_acyclic(graph)  # doctest: +SKIP
        []
    """
    sh = shared or Shared(graph)
    if not sh.rank_major:
        return _exact_check(graph, None)
    if certify(graph, sh):  # a verified schedule key proves what the sweep would
        sh.certified = True
        return []
    sw = sweep(graph, sh)
    if sw.complete:
        return []
    return _exact_check(graph, sw)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Exact:
    """Kahn by levels on the contracted graph of the nodes the sweep did not pass."""

    con: Contracted
    passed: Bool
    """bool ``[n]``: nodes the sweep passed (none without a sweep)."""
    level: I64
    """Level of each vertex among those left (-1: passed, or on or behind a cycle)."""
    stuck: Bool
    """bool ``[vertices]``: vertices left that Kahn never freed (on or behind a cycle)."""

    @staticmethod
    def run(graph: Graph, sw: SweepResult | None) -> _Exact:
        con = contract(graph)
        passed = sw.passed(graph.rank) if sw is not None else np.zeros(graph.n_nodes, np.bool_)
        log.info(
            "acyclicity: exact Kahn by levels on %d nodes the sweep left",
            graph.n_nodes - int(passed.sum()),
        )
        alive = np.zeros(con.n_vertices, dtype=np.bool_)
        alive[con.vertex[~passed]] = True
        level, _ = layered_kahn(con.n_vertices, con.src, con.dst, alive, keep=False)
        return _Exact(con=con, passed=passed, level=level, stuck=alive & (level < 0))


def _exact_check(graph: Graph, sw: SweepResult | None) -> list[Finding]:
    ex = _Exact.run(graph, sw)
    con, stuck = ex.con, ex.stuck
    if stuck.any():
        message, nodes = _cycle_text(graph, con, stuck)
        ranks = graph.rank[nodes]
        data = {
            "cycle_nodes": int(nodes.size),
            "cycle_ranks": np.unique(ranks).tolist()[:64],
            "stuck_vertices": int(np.count_nonzero(stuck)),
        }
        return [
            make(
                graph,
                Code.CYCLE,
                message,
                "make every rank issue its collectives and sends/recvs in one global order "
                "(the same order on every member of a group), and check that no edge runs "
                "from a later op back to an earlier one",
                nodes=_key_nodes(graph, nodes),
                ranks=ranks,
                data=data,
            )
        ]
    return [] if sw is None else [_serial_deadlock(graph, sw)]


def _serial_deadlock(graph: Graph, sw: SweepResult) -> Finding:
    waiting = sw.threshold[sw.threshold < sw.rank_start[1:]]
    ranks = graph.rank[waiting]
    ops = "; ".join(graph.node_ids(waiting[:4]))
    return make(
        graph,
        Code.SERIAL_DEADLOCK,
        f"the dependency graph is acyclic, but running each rank's ops in program order "
        f"deadlocks: {count(waiting.size, 'rank')} ({rank_list(ranks)}) wait at ports "
        f"whose peers are blocked, e.g. {ops}",
        "lay out each rank's ops so that every recv or collective comes after the ops its "
        "peers need first (the builder's issue order)",
        nodes=waiting,
        severity=Severity.WARNING,
        data={"waiting_ranks": int(waiting.size)},
    )


def _cycle_edges(graph: Graph, con: Contracted, stuck: Bool) -> list[int]:
    """Edge ids of one short cycle among ``stuck`` vertices, in forward order.

    After Kahn, every stuck vertex has a stuck predecessor, so walking predecessors from
    any of them must repeat a vertex, which lies on a cycle; a breadth-first search from
    it then finds the shortest cycle through it.
    """
    keep = stuck[con.src] & stuck[con.dst]
    offsets, preds, _edge_ids = con.csr(by_dst=True, keep=keep)
    seen: set[int] = set()
    v = int(np.flatnonzero(stuck)[0])
    while v not in seen:
        seen.add(v)
        v = int(preds[offsets[v]])
    return _shortest_cycle(con, keep, v)


def _shortest_cycle(con: Contracted, keep: Bool, start: int) -> list[int]:
    """Breadth-first search from ``start`` along kept edges until it comes back."""
    offsets, succ, edge_ids = con.csr(keep=keep)
    parent = np.full(con.n_vertices, -1, dtype=np.int64)
    frontier = np.array([start], dtype=np.int64)
    closing = -1
    while closing < 0:
        lo = offsets[frontier]
        idx = ranges(lo, offsets[frontier + 1] - lo)
        t, e = succ[idx], edge_ids[idx]
        back = np.flatnonzero(t == start)
        if back.size:
            closing = int(e[back[0]])
            break
        fresh = parent[t] < 0
        t, first = np.unique(t[fresh], return_index=True)
        parent[t] = e[fresh][first]
        frontier = t
    path = [closing]
    v = int(con.src[closing])
    while v != start:
        path.append(int(parent[v]))
        v = int(con.src[parent[v]])
    return path[::-1]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Cycle:
    """One cycle as nodes in order, the connector before each (``→`` an edge, ``⇄`` the
    same instance entered through one member and left through another), and how many
    vertices were left on or behind cycles."""

    seq: list[int]
    links: list[str]
    stuck: int

    @property
    def nodes(self) -> I64:
        """The cycle's nodes, each once."""
        seq = self.seq[:-1] if self.seq[-1] == self.seq[0] else self.seq
        return np.asarray(seq, dtype=np.int64)


def _find_cycle(graph: Graph, con: Contracted, stuck: Bool) -> _Cycle:
    edges = _cycle_edges(graph, con, stuck)
    first = int(graph.src[edges[0]])
    seq, links = [first], [""]
    for e in edges:
        s, d = int(graph.src[e]), int(graph.dst[e])
        if s != seq[-1]:  # entered an instance through one member, leave through another
            seq.append(s)
            links.append("⇄")
        seq.append(d)
        links.append("→")
    if seq[-1] != first:
        seq.append(first)
        links.append("⇄")
    return _Cycle(seq=seq, links=links, stuck=int(np.count_nonzero(stuck)))


def _key_nodes(graph: Graph, seq: I64) -> I64:
    """The nodes worth naming: communication ops and rank changes (first ≤ MAX_NODES)."""
    keep = _keep_mask(graph, seq)
    return seq[keep][:MAX_NODES]


def _keep_mask(graph: Graph, seq: I64) -> Bool:
    ranks = graph.rank[seq]
    keep: Bool = graph.kind[seq] != Kind.COMPUTE
    keep[:-1] |= ranks[:-1] != ranks[1:]
    keep[1:] |= ranks[1:] != ranks[:-1]
    keep[0] = keep[-1] = True
    return keep


def _path_text(graph: Graph, cyc: _Cycle) -> str:
    """The readable path: kept nodes with their connectors, runs of others as ``…k ops…``."""
    keep = _keep_mask(graph, np.asarray(cyc.seq, dtype=np.int64))
    parts: list[str] = []
    skipped = 0
    for i, node in enumerate(cyc.seq):
        if not keep[i]:
            skipped += 1
            continue
        if skipped:
            parts.append(f"→ …{skipped} op{'s' if skipped > 1 else ''}…")
            skipped = 0
        parts.append(f"{cyc.links[i]} {graph.node_id(node)}".strip())
    return " ".join(parts)


def _cycle_text(graph: Graph, con: Contracted, stuck: Bool) -> tuple[str, I64]:
    """The message of a cycle (its ranks, its synchronisations, the readable path) and the
    nodes to name."""
    cyc = _find_cycle(graph, con, stuck)
    seq, links = cyc.seq, cyc.links
    n_sync = len({int(graph.inst[i]) for i in seq if graph.inst[i] >= 0})
    n_p2p = sum(
        1
        for i in range(1, len(seq))
        if links[i] == "→" and graph.rank[seq[i]] != graph.rank[seq[i - 1]]
    )
    message = (
        f"deadlock: a cycle of {count(len(seq) - 1, 'step')} across ranks "
        f"{rank_list(graph.rank[cyc.nodes])} ({count(n_sync, 'collective instance')}, "
        f"{count(n_p2p, 'cross-rank edge')}; {count(cyc.stuck, 'vertex', 'vertices')} on or "
        f"behind cycles): {_path_text(graph, cyc)}"
    )
    return message, cyc.nodes
