"""Orders of the contracted graph: a topological order, the critical path by vertex
count, and the exact engine the checks fall back on.

Example:
    >>> from dagen.graph.algo.topo import topological_order
    >>> order = topological_order(graph)  # doctest: +SKIP
    >>> pos = np.empty_like(order); pos[order] = np.arange(order.size)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import numpy.typing as npt

from dagen.errors import GraphError
from dagen.graph.algo.certify import certified_key
from dagen.graph.algo.contract import Contracted, contract, layered_kahn
from dagen.graph.algo.cycles import cycle_text, key_nodes
from dagen.graph.algo.derived import Derived
from dagen.graph.algo.sweep import SweepResult, sweep
from dagen.graph.ir import Graph

__all__ = ["Exact", "HasACycle", "critical_path", "topological_order"]

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
    argsort by the schedule key when it verifies (:mod:`dagen.graph.algo.certify`), else by
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
    sh = Derived(graph)
    key = certified_key(graph, sh)
    if key is not None:
        return np.argsort(key, kind="stable")
    sw = sweep(graph, sh) if sh.rank_major else None
    if sw is not None and sw.complete:
        return np.argsort(sw.node_key(graph.rank), kind="stable")
    ex = Exact.run(graph, sw)
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
    message, nodes = cycle_text(graph, con, stuck)
    raise HasACycle(message, tuple(graph.node_ids(key_nodes(graph, nodes))))


def _first_node(graph: Graph, con: Contracted, v: int, out_edge: int) -> int:
    if v < con.n_plain:
        return int(con.plain[v])
    if out_edge >= 0:
        return int(graph.src[out_edge])
    members = np.flatnonzero(graph.inst == v - con.n_plain)
    return int(members[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class Exact:
    """Kahn by levels on the contracted graph of the nodes the sweep did not pass."""

    con: Contracted
    passed: Bool
    """bool ``[n]``: nodes the sweep passed (none without a sweep)."""
    level: I64
    """Level of each vertex among those left (-1: passed, or on or behind a cycle)."""
    stuck: Bool
    """bool ``[vertices]``: vertices left that Kahn never freed (on or behind a cycle)."""

    @staticmethod
    def run(graph: Graph, sw: SweepResult | None) -> Exact:
        con = contract(graph)
        passed = sw.passed(graph.rank) if sw is not None else np.zeros(graph.n_nodes, np.bool_)
        log.info(
            "acyclicity: exact Kahn by levels on %d nodes the sweep left",
            graph.n_nodes - int(passed.sum()),
        )
        alive = np.zeros(con.n_vertices, dtype=np.bool_)
        alive[con.vertex[~passed]] = True
        level, _ = layered_kahn(con.n_vertices, con.src, con.dst, alive, keep=False)
        return Exact(con=con, passed=passed, level=level, stuck=alive & (level < 0))
