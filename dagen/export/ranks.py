"""The ``ranks`` picture: every node of the selected ranks, one cluster per rank.

Nodes are coloured by operator family and shaped by kind (:data:`OP_COLORS`,
:data:`KIND_SHAPES`); data edges are grey, stream-order edges dotted, point-to-point
sends bold red with their bytes. A collective instance with two or more drawn members
is a small shared node joined to them by dashed lines in its collective's colour.
Every node's tooltip (SVG ``<title>``) carries its id and attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import graphviz
import numpy as np
import numpy.typing as npt

from dagen.errors import ExportError
from dagen.export.base import ExportContext, select_nodes
from dagen.export.dotkit import label
from dagen.export.estimate import node_times
from dagen.export.summary import human_bytes, human_count, rank_ranges, runs
from dagen.graph.ir import OP_LABELS, Coll, EdgeKind, Graph, GroupKind, Kind

__all__ = ["COLL_COLORS", "EDGE_STYLES", "KIND_SHAPES", "OP_COLORS", "draw_ranks"]

OP_COLORS: Mapping[str, str] = MappingProxyType(
    {
        "embed": "#e3e3e3",
        "attn": "#d9ead3",
        "ffn": "#cfe2f3",
        "moe": "#fce5cd",
        "final": "#ead1dc",
        "lm": "#ead1dc",
        "logits": "#ead1dc",
        "sample": "#ead1dc",
        "pp": "#f4cccc",
    }
)
"""Fill by operator family (the part of the op label before the dot)."""

KIND_SHAPES: Mapping[Kind, str] = MappingProxyType(
    {Kind.COMPUTE: "box", Kind.COLLECTIVE: "hexagon", Kind.SEND: "rarrow", Kind.RECV: "larrow"}
)
"""Shape by node kind."""

COLL_COLORS: Mapping[Coll, str] = MappingProxyType(
    {
        Coll.ALL_REDUCE: "#1f77b4",
        Coll.ALL_GATHER: "#2ca02c",
        Coll.REDUCE_SCATTER: "#9467bd",
        Coll.ALL_TO_ALL: "#d62728",
    }
)
"""Colour of a collective instance and its dashed member lines."""

EDGE_STYLES: Mapping[EdgeKind, Mapping[str, str]] = MappingProxyType(
    {
        EdgeKind.DATA: MappingProxyType({"color": "#666666"}),
        EdgeKind.ORDER: MappingProxyType({"color": "#aaaaaa", "style": "dotted"}),
        EdgeKind.P2P: MappingProxyType(
            {"color": "#c0392b", "penwidth": "2", "fontcolor": "#c0392b"}
        ),
    }
)
"""Style by edge kind."""

I64 = npt.NDArray[np.int64]


def _cli_set(values: list[int]) -> str:
    """Sorted integers in the CLI's filter syntax: ``0-3,8``."""
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs(values))


def _refuse(ctx: ExportContext, count: int) -> ExportError:
    g = ctx.graph
    tp0 = g.group(int(g.ranks.group["tp"][0])).tolist()
    layer0 = int(g.layer[g.layer >= 0].min()) if np.any(g.layer >= 0) else 0
    mb0 = int(g.mb.min()) if g.n_nodes else 0
    small = select_nodes(g, frozenset(tp0), frozenset({layer0}), frozenset({mb0})).size
    ranks = _cli_set(tp0)
    return ExportError(
        f"the ranks view would draw {count:,} nodes, over the limit of {ctx.max_detail_nodes:,} "
        f"(the whole graph has {g.n_nodes:,}). Fix: narrow it with --ranks, --layers and "
        f"--microbatches (e.g. --ranks {ranks} --layers {layer0} --microbatches {mb0} draws "
        f"{small:,} nodes), or raise --max-nodes; the overview view draws any size."
    )


def _tooltip(g: Graph, i: int, times: tuple[Any, Any] | None) -> str:
    t = int(g.tmpl[i])
    lines = [
        g.node_id(i),
        f"kind {Kind(int(g.kind[i])).label}, shape {list(g.tmpl_shape[t])}",
        f"{human_bytes(int(g.tmpl_bytes[t]))}, {human_count(float(g.tmpl_flops[t]), 'FLOP')}",
    ]
    kind = int(g.kind[i])
    if kind == Kind.COLLECTIVE:
        grp = int(g.aux[i])
        coll = Coll(int(g.inst_coll[int(g.inst[i])])).label
        kind_label = GroupKind(int(g.group_kind[grp])).label.upper()
        lines.append(
            f"{coll} #{int(g.inst[i])} over {kind_label} group {grp}: ranks {rank_ranges(g.group(grp).tolist())}"
        )
    elif kind in (Kind.SEND, Kind.RECV):
        lines.append(f"peer rank {int(g.aux[i])}")
    if times is not None:
        lines.append(f"start {float(times[0][i]):.6g} s, duration {float(times[1][i]):.6g} s")
    return label(lines[0], *lines[1:])


def _node_label(g: Graph, i: int, decode: bool) -> str:
    op = OP_LABELS[int(g.op[i])]
    e = int(g.expert[i])
    name = f"{op}.e{e}" if e >= 0 else op
    where = [f"L{int(g.layer[i])}"] if g.layer[i] >= 0 else []
    where.append(f"mb{int(g.mb[i])}")
    if decode:
        where.append(f"t{int(g.step[i])}")
    return label(f"{name}\\n{' '.join(where)}")


def _rank_clusters(dot: graphviz.Digraph, ctx: ExportContext, idx: I64) -> None:
    g = ctx.graph
    times = node_times(ctx.estimate, g.n_nodes)
    table = g.ranks
    for r in np.unique(g.rank[idx]).tolist():
        pool = g.pools[int(table.pool[r])]
        decode = pool.workload.unrolled_steps > 1
        coords = ", ".join(
            f"{d} {int(table.coords[d][r])}" for d in ("tp", "dp", "ep") if pool.mesh.sizes[d] > 1
        )
        title = f"rank {r}: host {int(table.host[r])}, stage {int(table.stage[r])}" + (
            f", {coords}" if coords else ""
        )
        with dot.subgraph(name=f"cluster_rank{r}") as c:
            c.attr(label=title, style="rounded", color="#999999", fontsize="11")
            for i in idx[g.rank[idx] == r].tolist():
                family = OP_LABELS[int(g.op[i])].split(".")[0]
                c.node(
                    f"n{i}",
                    label=_node_label(g, i, decode),
                    shape=KIND_SHAPES[Kind(int(g.kind[i]))],
                    fillcolor=OP_COLORS.get(family, "#ffffff"),
                    tooltip=_tooltip(g, i, times),
                )


def _edges(dot: graphviz.Digraph, g: Graph, keep: npt.NDArray[np.bool_]) -> None:
    both = np.flatnonzero(keep[g.src] & keep[g.dst])
    for e in both.tolist():
        s, d, k = int(g.src[e]), int(g.dst[e]), EdgeKind(int(g.ekind[e]))
        attrs = dict(EDGE_STYLES[k])
        if k is EdgeKind.P2P:
            attrs["label"] = human_bytes(int(g.tmpl_bytes[int(g.tmpl[s])]))
        dot.edge(f"n{s}", f"n{d}", **attrs)


def _instances(dot: graphviz.Digraph, g: Graph, idx: I64) -> None:
    coll = idx[g.kind[idx] == Kind.COLLECTIVE]
    insts, counts = np.unique(g.inst[coll], return_counts=True)
    for inst in insts[counts >= 2].tolist():
        kind = Coll(int(g.inst_coll[inst]))
        grp = int(g.inst_group[inst])
        color = COLL_COLORS[kind]
        group_label = GroupKind(int(g.group_kind[grp])).label.upper()
        dot.node(
            f"i{inst}",
            label=label(f"{kind.label}\\n{group_label} #{grp}"),
            shape="ellipse",
            style="filled",
            fillcolor="white",
            color=color,
            fontcolor=color,
            fontsize="8",
            margin="0.02",
            tooltip=label(
                f"{kind.label} instance {inst} over {group_label} group {grp}: ranks {rank_ranges(g.group(grp).tolist())}"
            ),
        )
        for i in coll[g.inst[coll] == inst].tolist():
            dot.edge(f"n{i}", f"i{inst}", style="dashed", color=color, arrowhead="none")


def draw_ranks(ctx: ExportContext, dot: graphviz.Digraph) -> graphviz.Digraph:
    """Add the ``ranks`` view of ``ctx`` to ``dot``.

    Raises:
        ExportError: the selection holds more than ``ctx.max_detail_nodes`` nodes, or none.
    """
    g = ctx.graph
    idx = select_nodes(g, ctx.ranks, ctx.layers, ctx.microbatches)
    if idx.size > ctx.max_detail_nodes:
        raise _refuse(ctx, int(idx.size))
    if idx.size == 0:
        raise ExportError(
            "the ranks view selects no node: no node has the given --ranks, --layers and "
            f"--microbatches (the graph has ranks 0-{g.world - 1}, micro-batches "
            f"0-{int(g.mb.max()) if g.n_nodes else 0}). Fix: widen the filters."
        )
    keep = np.zeros(g.n_nodes, dtype=np.bool_)
    keep[idx] = True
    _rank_clusters(dot, ctx, idx)
    _edges(dot, g, keep)
    _instances(dot, g, idx)
    return dot
