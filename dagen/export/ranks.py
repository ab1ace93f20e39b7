"""The ``ranks`` picture: every node of the selected ranks, one cluster per rank.

Nodes are coloured by operator family and shaped by kind (:data:`OP_COLORS`,
:data:`KIND_SHAPES`); data edges are grey, stream-order edges dotted, point-to-point
sends bold red with their bytes. A collective instance with two or more drawn members
is a small shared node joined to them by dashed lines in its collective's colour.
Every node's tooltip (SVG ``<title>``) carries its id and attributes.
"""

from __future__ import annotations

from typing import Any

import graphviz
import numpy as np
import numpy.typing as npt

from dagen.errors import ExportError
from dagen.export.base import ExportContext, select_nodes
from dagen.export.dotkit import label
from dagen.export.estimate import node_times
from dagen.export.rankstyle import COLL_COLORS, EDGE_STYLES, KIND_SHAPES, OP_COLORS, legend
from dagen.export.summary import human_bytes, human_count, rank_ranges, runs
from dagen.graph.ir import OP_LABELS, Coll, EdgeKind, Graph, GroupKind, Kind

__all__ = [
    "COLL_COLORS",
    "EDGE_STYLES",
    "KIND_SHAPES",
    "OP_COLORS",
    "draw_ranks",
    "selection",
]

I64 = npt.NDArray[np.int64]


def _cli_set(values: list[int]) -> str:
    """Sorted integers in the CLI's filter syntax: ``0-3,8``."""
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs(values))


def _nearest_layers(g: Graph, idx: I64) -> tuple[I64, I64, I64]:
    """For each node of ``idx``: its layer, and the layer of the nearest layer node before
    and after it in its rank's issue order for its step and micro-batch (-1: none)."""
    order = np.lexsort((idx, g.mb[idx], g.step[idx], g.rank[idx]))
    o = idx[order]
    lay = g.layer[o].astype(np.int64)
    n = o.size
    key = np.stack([g.rank[o], g.step[o], g.mb[o]]).astype(np.int64)
    new_seg = np.ones(n, dtype=np.bool_)
    new_seg[1:] = np.any(key[:, 1:] != key[:, :-1], axis=0)
    start = np.maximum.accumulate(np.where(new_seg, np.arange(n), 0))
    end = np.minimum.accumulate(np.where(np.r_[new_seg[1:], True], np.arange(n), n)[::-1])[::-1]
    at = np.arange(n)
    prev = np.maximum.accumulate(np.where(lay >= 0, at, -1))
    nxt = np.minimum.accumulate(np.where(lay >= 0, at, n)[::-1])[::-1]
    before = np.where((prev >= start) & (prev >= 0), lay[np.clip(prev, 0, n - 1)], -1)
    after = np.where((nxt <= end) & (nxt < n), lay[np.clip(nxt, 0, n - 1)], -1)
    back = np.empty(n, dtype=np.int64)
    back[order] = at
    return lay[back], before[back], after[back]


def selection(
    g: Graph,
    ranks: frozenset[int] | None,
    layers: frozenset[int] | None,
    microbatches: frozenset[int] | None,
) -> I64:
    """The nodes the ranks view draws, ascending: those of ``ranks`` and ``microbatches``
    (default: the first micro-batch only, so that one column per rank fits a page) in
    ``layers``, and a node outside every layer (embedding, LM head, pipeline send and
    recv) only beside a drawn layer: the embedding and a stage's recv when the layer
    after them is drawn, the head chain and a stage's send when the layer before them is.
    """
    if microbatches is None and g.n_nodes:
        microbatches = frozenset({int(g.mb.min())})
    idx = select_nodes(g, ranks, None, microbatches).astype(np.int64)
    if layers is None or idx.size == 0:
        return idx
    wanted = np.fromiter(sorted(layers), dtype=np.int64)
    lay, before, after = _nearest_layers(g, idx)
    keep = np.where(
        lay >= 0, np.isin(lay, wanted), np.isin(before, wanted) | np.isin(after, wanted)
    )
    return idx[keep]


def _refuse(ctx: ExportContext, count: int) -> ExportError:
    g = ctx.graph
    tp0 = g.group(int(g.ranks.group["tp"][0])).tolist()
    layer0 = int(g.layer[g.layer >= 0].min()) if np.any(g.layer >= 0) else 0
    mb0 = int(g.mb.min()) if g.n_nodes else 0
    small = selection(g, frozenset(tp0), frozenset({layer0}), frozenset({mb0})).size
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
        head = f"rank {r}: host {int(table.host[r])}, stage {int(table.stage[r])}"
        title = label(f"{head}\\n{coords}" if coords else head)
        with dot.subgraph(name=f"cluster_rank{r}") as c:
            c.attr(label=title, style="rounded", color="#999999", fontsize="10")
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


def _hub_label(g: Graph, members: I64, kind: Coll, grp: int) -> str:
    """``moe.dispatch`` / ``all-to-all over EP`` / ``L0 mb0`` / ``4 of 32 ranks drawn``."""
    i = int(members[0])
    where = [f"L{int(g.layer[i])}"] if g.layer[i] >= 0 else []
    where.append(f"mb{int(g.mb[i])}")
    size = int(g.group(grp).size)
    drawn = np.unique(g.rank[members]).size
    shown = f"all {size} ranks" if drawn == size else f"{drawn} of {size} ranks"
    group = GroupKind(int(g.group_kind[grp])).label.upper()
    return label(
        f"{OP_LABELS[int(g.op[i])]} {' '.join(where)}\\n{kind.label} over {group}\\n{shown}"
    )


def _instances(dot: graphviz.Digraph, g: Graph, idx: I64) -> set[Coll]:
    """One hub per collective instance with two or more drawn members; the kinds drawn."""
    coll = idx[g.kind[idx] == Kind.COLLECTIVE]
    insts, counts = np.unique(g.inst[coll], return_counts=True)
    drawn: set[Coll] = set()
    for inst in insts[counts >= 2].tolist():
        kind = Coll(int(g.inst_coll[inst]))
        drawn.add(kind)
        grp = int(g.inst_group[inst])
        color = COLL_COLORS[kind]
        members = coll[g.inst[coll] == inst]
        group_label = GroupKind(int(g.group_kind[grp])).label.upper()
        dot.node(
            f"i{inst}",
            label=_hub_label(g, members, kind, grp),
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
        for i in members.tolist():
            dot.edge(f"n{i}", f"i{inst}", style="dashed", color=color, arrowhead="none")
    return drawn


def draw_ranks(ctx: ExportContext, dot: graphviz.Digraph) -> graphviz.Digraph:
    """Add the ``ranks`` view of ``ctx`` to ``dot``.

    Raises:
        ExportError: the selection holds more than ``ctx.max_detail_nodes`` nodes, or none.
    """
    g = ctx.graph
    idx = selection(g, ctx.ranks, ctx.layers, ctx.microbatches)
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
    # Tight columns: four ranks of one micro-batch fit a 900 px page.
    # mclimit: almost no crossing reduction, so the columns keep the order _order_columns
    # gives them (with it, hubs and sends pull ranks out of order: 1, 0, 3, 2, …).
    dot.attr(nodesep="0.12", ranksep="0.22", mclimit="0.01")
    dot.attr("node", fontsize="9", margin="0.04,0.02", height="0.3")
    _rank_clusters(dot, ctx, idx)
    _order_columns(dot, g, idx)
    _edges(dot, g, keep)
    hubs = _instances(dot, g, idx)
    legend(dot, g, idx, hubs)
    return dot


def _order_columns(dot: graphviz.Digraph, g: Graph, idx: I64) -> None:
    """Ranks left to right in rank order, and within a rank its micro-batches in order.

    One hidden anchor per (rank, micro-batch) column sits on a row of its own, outside
    every cluster, the anchors chained left to right by invisible edges (a flat chain
    fixes their order) and each pulled straight above its column's first node by a heavy
    invisible edge; a hidden root whose out-edges keep their order (``ordering=out``)
    puts the legend before them. Chaining the columns' first nodes themselves is not
    enough: they sit in clusters, where ``rank=same`` does not hold, and a pipeline
    send then pulls its peer next to its sender (``--ranks 0,2,4,6`` of a PP2 plan drew
    0, 4, 2, 6)."""
    _, first = np.unique(np.stack([g.rank[idx], g.mb[idx]]), axis=1, return_index=True)
    heads = idx[np.sort(first)]
    heads = heads[np.lexsort((heads, g.mb[heads], g.rank[heads]))]
    with dot.subgraph(name="column_order") as c:
        c.attr(rank="same")
        for j in range(heads.size):
            c.node(f"col{j}", label="", shape="point", style="invis", width="0")
        for j in range(heads.size - 1):
            c.edge(f"col{j}", f"col{j + 1}", style="invis")
    for j, i in enumerate(heads.tolist()):
        dot.edge(f"col{j}", f"n{i}", style="invis", weight="100")
    with dot.subgraph(name="head_order") as c:
        c.attr(rank="same")
        for a, b in zip(heads[:-1].tolist(), heads[1:].tolist(), strict=True):
            c.edge(f"n{a}", f"n{b}", style="invis")
    dot.node("columns", label="", shape="point", style="invis", width="0", ordering="out")
    for name in ["legend", *(f"col{j}" for j in range(heads.size))]:
        dot.edge("columns", name, style="invis")
    for j in range(heads.size):  # the legend above every column (one edge would pull one)
        dot.edge("legend", f"col{j}", style="invis")


def ranks_note(ctx: ExportContext) -> list[str]:
    """The title line saying what the ranks view draws (and what it leaves out)."""
    g = ctx.graph
    mbs = sorted(set(np.unique(g.mb).tolist()))
    shown = sorted(ctx.microbatches) if ctx.microbatches is not None else mbs[:1]
    what = "micro-batch " + _cli_set(shown)
    if ctx.microbatches is None and len(mbs) > 1:
        what += f" of {_cli_set(mbs)} (--microbatches for more)"
    layers = f"layers {_cli_set(sorted(ctx.layers))}" if ctx.layers is not None else "every layer"
    ranks = f"ranks {_cli_set(sorted(ctx.ranks))}" if ctx.ranks is not None else "every rank"
    return [f"ranks view: {ranks}, {layers}, {what}"]
