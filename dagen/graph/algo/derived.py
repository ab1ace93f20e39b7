"""Arrays several graph algorithms derive from the same columns, computed once.

The collective mask, the collective nodes and their instances, the rank boundaries and
the cross-rank edges are each derived lazily and cached on first use by one
:class:`Derived`, which the sweep, the certificate and the checks share (at 10 M nodes,
every full-column pass saved is 5–40 ms). The graph is never modified.

Example:
    >>> sh = Derived(graph)  # doctest: +SKIP
    >>> sh.coll_nodes.size == int((graph.kind == Kind.COLLECTIVE).sum())  # doctest: +SKIP
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.graph.ir import Graph, Kind, Op

__all__ = ["Derived"]

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Bool = npt.NDArray[np.bool_]


class Derived:
    """Lazily derived, cached arrays of one graph (see the module docstring)."""

    __slots__ = ("_memo", "graph")

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._memo: dict[str, Any] = {}

    def _get(self, key: str, make: Any) -> Any:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def coll(self) -> Bool:
        """bool ``[n]``: collective nodes."""
        out: Bool = self._get("coll", lambda: self.graph.kind == int(Kind.COLLECTIVE))
        return out

    @property
    def coll_nodes(self) -> I64:
        """Collective nodes, ascending."""
        out: I64 = self._get("coll_nodes", lambda: np.flatnonzero(self.coll))
        return out

    @property
    def coll_inst(self) -> I64:
        """Instance of each collective node (int64, aligned with :attr:`coll_nodes`)."""
        out: I64 = self._get("coll_inst", lambda: self.graph.inst[self.coll_nodes].astype(np.int64))
        return out

    @property
    def coll_rank(self) -> I32:
        """Rank of each collective node."""
        out: I32 = self._get("coll_rank", lambda: self.graph.rank[self.coll_nodes])
        return out

    @property
    def rank_major(self) -> bool:
        """Whether nodes are laid out rank by rank (the IR's program order)."""

        def make() -> bool:
            r = self.graph.rank
            return bool(r.shape[0] < 2 or not np.any(r[1:] < r[:-1]))

        out: bool = self._get("rank_major", make)
        return out

    @property
    def rank_start(self) -> I64:
        """``[world + 1]``: first node of each rank (rank-major graphs only)."""

        def make() -> I64:
            rank = self.graph.rank
            # Boundaries in rank's own dtype: an int64 needle would cast the whole column.
            bounds = np.arange(self.graph.world + 1, dtype=rank.dtype)
            return np.searchsorted(rank, bounds).astype(np.int64)

        out: I64 = self._get("rank_start", make)
        return out

    @property
    def cross_edges(self) -> I64:
        """Edges that are not forward edges within one rank (rank-major graphs only):
        p2p edges, and any edge that crosses ranks or goes backwards in program order."""

        def make() -> I64:
            src, dst, start = self.graph.src, self.graph.dst, self.rank_start
            # Forward on one rank iff src < dst < end of src's rank: one gather of a
            # per-node "end of my rank" column instead of two of the rank column.
            end = np.repeat(start[1:].astype(src.dtype), np.diff(start))
            cross = end[src] <= dst
            del end
            cross |= src >= dst
            return np.flatnonzero(cross)

        out: I64 = self._get("cross_edges", make)
        return out

    def per_node(self, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """``values[rank[i]]`` for every node: a per-rank value spread over the nodes (one
        ``repeat`` over the rank runs on a rank-major graph, else a gather)."""
        if self.rank_major:
            out: npt.NDArray[Any] = np.repeat(values, np.diff(self.rank_start))
            return out
        out = values[self.graph.rank]
        return out

    @property
    def expert_nodes(self) -> I64:
        """Routed-expert nodes (op ``moe.expert``), ascending."""
        out: I64 = self._get(
            "expert_nodes", lambda: np.flatnonzero(self.graph.op == int(Op.MOE_EXPERT))
        )
        return out
