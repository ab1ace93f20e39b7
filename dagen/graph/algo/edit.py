"""Edits of a built graph: drop nodes, add edges. For fault-injection tests and tools.

Each returns a new :class:`Graph` sharing the side tables; the input is not modified.

Example:
    >>> g2 = drop_nodes(graph, [5])  # doctest: +SKIP
    >>> g2.n_nodes == graph.n_nodes - 1  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.errors import GraphError
from dagen.graph.algo.derived import Derived
from dagen.graph.ir import EdgeKind, Graph, Kind, Op

__all__ = ["add_edges", "drop_nodes", "duplicate_nodes", "guard"]


def drop_nodes(graph: Graph, idx: npt.ArrayLike) -> Graph:
    """``graph`` without the nodes ``idx`` and every edge touching them.

    The remaining nodes keep their order; edges are renumbered to match.

    >>> drop_nodes(graph, np.flatnonzero(graph.kind == Kind.RECV))  # doctest: +SKIP
    """
    keep = np.ones(graph.n_nodes, dtype=np.bool_)
    keep[np.asarray(idx, dtype=np.int64)] = False
    new_index = np.cumsum(keep, dtype=np.int64) - 1
    ekeep = keep[graph.src] & keep[graph.dst]
    cols = {name: getattr(graph, name)[keep] for name in Graph.NODE_COLUMNS}
    return dataclasses.replace(
        graph,
        **cols,
        src=new_index[graph.src[ekeep]].astype(np.int32),
        dst=new_index[graph.dst[ekeep]].astype(np.int32),
        ekind=graph.ekind[ekeep],
    )


def duplicate_nodes(graph: Graph, idx: npt.ArrayLike) -> Graph:
    """``graph`` with a copy of each node ``idx`` right after it (same columns, no edges).

    Program order and the rank-major layout are kept; edges are renumbered.

    >>> duplicate_nodes(graph, [3]).n_nodes == graph.n_nodes + 1  # doctest: +SKIP
    True
    """
    times = np.ones(graph.n_nodes, dtype=np.int64)
    times[np.asarray(idx, dtype=np.int64)] += 1
    new_index = np.cumsum(times) - times  # position of each original node
    cols: dict[str, Any] = {n: np.repeat(getattr(graph, n), times) for n in Graph.NODE_COLUMNS}
    return dataclasses.replace(
        graph,
        **cols,
        src=new_index[graph.src].astype(np.int32),
        dst=new_index[graph.dst].astype(np.int32),
    )


def add_edges(
    graph: Graph, src: npt.ArrayLike, dst: npt.ArrayLike, kind: EdgeKind = EdgeKind.P2P
) -> Graph:
    """``graph`` with extra edges ``src[i] → dst[i]`` of one kind appended.

    >>> add_edges(graph, [10], [2])  # doctest: +SKIP
    """
    s = np.asarray(src, dtype=np.int32).ravel()
    d = np.asarray(dst, dtype=np.int32).ravel()
    return dataclasses.replace(
        graph,
        src=np.concatenate([graph.src, s]),
        dst=np.concatenate([graph.dst, d]),
        ekind=np.concatenate([graph.ekind, np.full(s.shape, int(kind), dtype=np.uint8)]),
    )


def guard(graph: Graph, shared: Derived | None = None) -> None:
    """Raise :class:`GraphError` unless every column indexes what it claims.

    The subset of :meth:`Graph.lint` the checks need to run without an IndexError:
    column shapes, and codes, ranks, edge ends, templates, instances and groups in
    range. One max-reduction per column (a range ``[0, upper)`` is tested as an unsigned
    maximum, which catches negative values too), a fraction of a full lint.

    >>> guard(graph)  # doctest: +SKIP
    """
    _guard_shapes(graph)
    n, n_groups = graph.n_nodes, graph.group_kind.shape[0]
    for name, values, upper in (
        ("rank", graph.rank, graph.world),
        ("op", graph.op, len(Op)),
        ("kind", graph.kind, len(Kind)),
        ("ekind", graph.ekind, len(EdgeKind)),
        ("src", graph.src, n),
        ("dst", graph.dst, n),
        ("tmpl", graph.tmpl, graph.tmpl_bytes.shape[0]),
        ("inst_group", graph.inst_group, n_groups),
        ("group_members", graph.group_members, graph.world),
    ):
        _range(name, values, 0, upper)
    # inst is -1 off collectives: shift by one into [0, n_inst + 1) without a temporary.
    if graph.inst.size:
        lo, hi = int(graph.inst.min()), int(graph.inst.max())
        _expect(
            lo >= -1 and hi < graph.n_inst,
            f"column 'inst' has values in [{lo}, {hi}], expected [-1, {graph.n_inst})",
        )
    sh = shared or Derived(graph)
    nodes = sh.coll_nodes
    _expect(not np.any(sh.coll_inst < 0), "a collective node has no instance (inst = -1)")
    aux = graph.aux[nodes].view(np.uint32)
    _expect(
        not aux.size or int(aux.max()) < n_groups,
        "a collective node's group (aux) is out of range",
    )


def _range(name: str, values: npt.NDArray[Any], low: int, upper: int) -> None:
    """Raise unless ``low <= values < upper`` (``low`` 0 or -1)."""
    if not values.size:
        return
    if values.dtype.kind == "i" and low == 0:
        unsigned = values.view(values.dtype.str.replace("i", "u"))
        if int(unsigned.max()) < upper:
            return
    elif values.dtype.kind == "u" and int(values.max()) < upper:
        return
    lo, hi = int(values.min()), int(values.max())
    _expect(
        low <= lo and hi < upper,
        f"column {name!r} has values in [{lo}, {hi}], expected [{low}, {upper})",
    )


def _guard_shapes(graph: Graph) -> None:
    n, m = graph.n_nodes, graph.n_edges
    for name in Graph.NODE_COLUMNS:
        _expect(getattr(graph, name).shape == (n,), f"node column {name!r} is not of length {n}")
    for name in Graph.EDGE_COLUMNS:
        _expect(getattr(graph, name).shape == (m,), f"edge column {name!r} is not of length {m}")
    n_groups = graph.group_kind.shape[0]
    offsets = graph.group_offsets
    _expect(
        offsets.shape == (n_groups + 1,)
        and int(offsets[0]) == 0
        and int(offsets[-1]) == graph.group_members.shape[0]
        and bool(np.all(np.diff(offsets) >= 0)),
        "group_offsets is not a CSR over group_members",
    )
    _expect(
        graph.inst_group.shape == graph.inst_coll.shape, "inst_group and inst_coll differ in length"
    )


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise GraphError(f"IR guard: {what}")
