"""Graphviz pictures of the graph, built with the ``graphviz`` package (which quotes).

Two views (:class:`~dagen.export.base.View`):

* ``overview`` (this module): one cluster per pipeline stage (a run of like middle
  stages folded into one), one box per block of like layers with its sharding and
  collectives per rank, the embedding and LM head, pipeline sends as edges carrying
  bytes per micro-batch, and a legend.
* ``ranks`` (:mod:`dagen.export.ranks`): every node of the selected ranks, layers and
  micro-batches.

Example:
    >>> import io
    >>> buf = io.BytesIO()
    >>> emit(ExportContext(graph=graph), buf)  # doctest: +SKIP
    >>> buf.getvalue().startswith(b"digraph dagen {")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from types import MappingProxyType
from typing import BinaryIO

import graphviz

from dagen.export.base import ExportContext, View, single_pool
from dagen.export.dotkit import digraph, headline, label, text
from dagen.export.fold import StageRun, fold_stages
from dagen.export.overview import Block, BlockKind, Link, overview
from dagen.export.ranks import draw_ranks, ranks_note

__all__ = ["BLOCK_COLORS", "LINK_COLOR", "build", "emit", "source"]

BLOCK_COLORS: Mapping[BlockKind, str] = MappingProxyType(
    {
        BlockKind.EMBED: "#e3e3e3",
        BlockKind.ATTENTION: "#d9ead3",
        BlockKind.DENSE: "#cfe2f3",
        BlockKind.MOE: "#fce5cd",
        BlockKind.HEAD: "#e3e3e3",
    }
)
"""Fill of each overview box, by what it holds."""

LEGEND: tuple[tuple[BlockKind, str], ...] = (
    (BlockKind.DENSE, "dense layers: attention + FFN"),
    (BlockKind.MOE, "MoE layers: attention + routed experts"),
    (BlockKind.ATTENTION, "attention-only layers"),
    (BlockKind.EMBED, "embedding / LM head"),
)
"""Legend entries, top to bottom."""

LINK_COLOR = "#c0392b"
STAGE_FILL = "#f7f7f7"
STAGE_BORDER = "#999999"


def _block_node(c: graphviz.Digraph, name: str, block: Block) -> None:
    shown = label(text(block.title), *(text(x) for x in block.lines))
    c.node(name, label=shown, fillcolor=BLOCK_COLORS[block.kind], tooltip=shown)


def _stage_cluster(
    dot: graphviz.Digraph, stage: StageRun, shape: str, prefix: str = ""
) -> list[str]:
    """The stage's cluster; its title is a plain node on top, so that pipeline edges
    entering the cluster are routed around it rather than through a cluster label.
    ``prefix`` keeps the names of several pools' stages apart."""
    names = [f"{prefix}s{stage.index}b{i}" for i in range(len(stage.blocks))]
    head = f"{prefix}s{stage.index}head"
    lines = [f"ranks {stage.ranks}; {'host' if stage.hosts.isdigit() else 'hosts'} {stage.hosts}"]
    if stage.folded:
        lines.append("(pipeline sends between them as on the arrow out)")
    # Every line left-aligned (\l), so the heading and the rank line start at one edge.
    title = graphviz.nohtml(
        "".join(f"{text(x)}\\l" for x in (f"{stage.heading} ({shape})", *lines))
    )
    with dot.subgraph(name=f"cluster_{prefix}stage{stage.index}") as c:
        c.attr(label="", style="rounded,filled", fillcolor=STAGE_FILL, color=STAGE_BORDER)
        c.node(head, label=title, shape="plaintext", style="", fontsize="12")
        for name, block in zip(names, stage.blocks, strict=True):
            _block_node(c, name, block)
        if names:
            c.edge(head, names[0], style="invis")
        for a, b in itertools.pairwise(names):
            c.edge(a, b, color="#555555")
    return names


def _link_edge(
    dot: graphviz.Digraph, link: Link, names: Mapping[int, list[str]], prefix: str = ""
) -> None:
    # The edge ends on the receiving stage's title node, the top of its cluster.
    src, dst = names[link.src][-1], f"{prefix}s{link.dst}head"
    style = {"color": LINK_COLOR, "fontcolor": LINK_COLOR, "label": label(text(link.label))}
    if link.decode:
        dot.edge(src, dst, style="dashed", constraint="false", **style)
    else:
        dot.edge(src, dst, penwidth="2", **style)


def _legend(
    dot: graphviz.Digraph, anchor: str | None, kinds: set[BlockKind], links: tuple[Link, ...]
) -> None:
    """The legend: only the box kinds the picture has, and only the arrows it draws."""
    if BlockKind.HEAD in kinds:
        kinds = kinds | {BlockKind.EMBED}  # one entry, "embedding / LM head", for both
    entries = [(kind, what) for kind, what in LEGEND if kind in kinds]
    names = [f"legend{i}" for i in range(len(entries))]
    arrows: list[tuple[str, dict[str, str]]] = []
    if any(not lk.decode for lk in links):
        arrows.append(("pipeline send", {"penwidth": "2"}))
    if any(lk.decode for lk in links):
        arrows.append(("next decode step", {"style": "dashed"}))
    with dot.subgraph(name="cluster_legend") as c:
        c.attr(label="legend", style="rounded", color="#bbbbbb", fontsize="10")
        for name, (kind, what) in zip(names, entries, strict=True):
            # margin: room for a browser font wider than Graphviz's metrics
            c.node(name, label=what, fillcolor=BLOCK_COLORS[kind], fontsize="9", margin="0.2,0.06")
        for a, b in itertools.pairwise(names):
            c.edge(a, b, style="invis")
        plain = {"shape": "plaintext", "style": "", "fontsize": "9"}
        for i, (what, style) in enumerate(arrows):
            send = what == "pipeline send"
            c.node(f"legend_a{i}", label="stage s" if send else "last stage", **plain)
            c.node(f"legend_b{i}", label="stage s+1" if send else "first stage", **plain)
            c.edge(
                f"legend_a{i}",
                f"legend_b{i}",
                label=what,
                color=LINK_COLOR,
                fontcolor=LINK_COLOR,
                **style,
            )
            if i:
                c.edge(f"legend_b{i - 1}", f"legend_a{i}", style="invis")
    if anchor is not None:
        for first in ([names[0]] if names else []) + (["legend_a0"] if arrows else []):
            dot.edge(anchor, first, style="invis")


def _overview(ctx: ExportContext) -> graphviz.Digraph:
    g = ctx.graph
    if g.transfers is not None:
        from dagen.export.pools import draw_pools

        return draw_pools(ctx, _stage_cluster, _link_edge, _legend)
    s = single_pool(ctx, "overview").mesh.sizes
    ov = overview(g)
    dot = digraph(headline(ctx))
    shape = f"TP{s['tp']}×CP{s['cp']}×DP{s['dp']}" if s["cp"] > 1 else f"TP{s['tp']}×DP{s['dp']}"
    runs, links = fold_stages(ov.stages, ov.links)
    names = {run.index: _stage_cluster(dot, run, shape) for run in runs}
    for link in links:
        _link_edge(dot, link, names)
    anchor = names[runs[-1].index][-1] if runs else None
    kinds = {b.kind for run in runs for b in run.blocks}
    _legend(dot, anchor, kinds, links)
    return dot


def build(ctx: ExportContext) -> graphviz.Digraph:
    """The picture of ``ctx`` as a ``graphviz.Digraph``, in the view it asks for."""
    if ctx.view == View.RANKS:
        return draw_ranks(ctx, digraph(headline(ctx) + ranks_note(ctx), rankdir="TB"))
    return _overview(ctx)


def source(ctx: ExportContext) -> str:
    """DOT source of the picture of ``ctx``."""
    return str(build(ctx).source)


def emit(ctx: ExportContext, out: BinaryIO) -> None:
    """Write the DOT source (UTF-8) of the picture of ``ctx`` to ``out``."""
    out.write(source(ctx).encode("utf-8"))
