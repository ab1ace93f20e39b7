"""One short cycle of a deadlocked graph, and its readable text.

After Kahn's algorithm stalls, every vertex it left has a stuck predecessor; walking
predecessors finds a vertex on a cycle and a breadth-first search from it the shortest
cycle through it. The text names the communication ops and rank changes along it; runs
of compute ops in between are counted, not listed.

Example:
    >>> message, nodes = cycle_text(graph, contract(graph), stuck)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.findings import count, rank_list
from dagen.graph.algo.arrays import ranges
from dagen.graph.algo.contract import Contracted
from dagen.graph.ir import Graph, Kind

__all__ = ["KEY_NODES", "cycle_text", "key_nodes"]

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

KEY_NODES = 20
"""Most nodes of a cycle named."""


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


def key_nodes(graph: Graph, seq: I64) -> I64:
    """The nodes worth naming: communication ops and rank changes (first ≤ KEY_NODES)."""
    keep = _keep_mask(graph, seq)
    out: I64 = seq[keep][:KEY_NODES]
    return out


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


def cycle_text(graph: Graph, con: Contracted, stuck: Bool) -> tuple[str, I64]:
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
