"""The overview of a disaggregated deployment: each pool's stages in a cluster of its own,
and the KV-cache transfer between them as one arrow with its messages, bytes and time.

Each pool is drawn from its own *local* graph (:func:`pool_graph`: the pool's nodes
without the transfer nodes, ranks renumbered from 0), by the same overview the
single-pool picture uses, so a pool looks as it would alone.

Example:
    >>> dot = draw_pools(ctx, stage_cluster, link_edge, legend)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import graphviz
import numpy as np

from dagen.export.base import ExportContext
from dagen.export.dotkit import digraph, label, text
from dagen.export.fold import fold_stages
from dagen.export.mdhead import verdict
from dagen.export.overview import overview
from dagen.export.summary import human_bytes
from dagen.graph.algo import drop_nodes
from dagen.graph.ir import Graph, Kind
from dagen.graph.pool import rank_table
from dagen.graph.transfer import transfer_nodes

__all__ = ["draw_pools", "pool_graph", "pools_headline"]

TRANSFER_COLOR = "#8e44ad"


def pool_graph(graph: Graph, p: int) -> Graph:
    """Pool ``p`` alone: its nodes without the KV transfers, ranks and hosts from 0."""
    view = graph.pool_view(p)
    kv = transfer_nodes(view)
    view = drop_nodes(view, kv) if kv.size else view
    pool = graph.pools[p]
    p2p = (view.kind == Kind.SEND) | (view.kind == Kind.RECV)
    aux = view.aux.copy()
    aux[p2p] -= np.int32(pool.rank0)
    local = dataclasses.replace(pool, index=0, rank0=0, host0=0, node0=0, node1=view.n_nodes)
    groups = {
        d: graph.ranks.group[d][pool.ranks.start : pool.ranks.stop] for d in graph.ranks.group
    }
    return dataclasses.replace(
        view, rank=view.rank - np.int32(pool.rank0), aux=aux, pools=(local,),
        ranks=rank_table([local], [groups]), transfers=None,
    )  # fmt: skip


def pools_headline(ctx: ExportContext) -> list[str]:
    """Title lines: the verdict (as a single plan's picture has it), the deployment,
    each pool's layout and units, the rate match."""
    g = ctx.graph
    m = g.model
    mark, said = verdict(ctx.findings, True, ctx.estimate)
    lines = [
        f"{text(g.name)}: {mark} {said}",
        f"{text(m.name)}, {m.layers} layers; disaggregated prefill/decode",
    ]
    for pool in g.pools:
        s, w = pool.mesh.sizes, pool.workload
        lines.append(f"{pool.name}: {pool.units} unit(s) × {pool.world} GPUs = TP{s['tp']}·"
                     f"DP{s['dp']}·PP{s['pp']}, EP{s['ep']}; {w.phase.value} batch {w.batch}")  # fmt: skip
    d = ctx.disagg
    if d is not None:
        lines.append(f"rate match: {d.units_ratio:.3g} prefill units per decode unit; "
                     f"{d.tokens_per_s_per_gpu:,.0f} output tokens/s per GPU ({d.bottleneck}-bound)")  # fmt: skip
    return lines


def _transfer_label(ctx: ExportContext) -> str:
    tr = ctx.graph.transfers
    assert tr is not None
    per = int(tr.nbytes.sum()) / max(tr.requests, 1)
    parts = [f"  KV cache: {tr.size:,} kv.send → kv.recv", f"  {human_bytes(per)} per request "
             f"({tr.requests:,} requests)"]  # fmt: skip
    if ctx.disagg is not None:
        parts.append(f"  {ctx.disagg.transfer_s * 1e3:.3g} ms per request (inter-node link)")
    return label(*(text(x) for x in parts))


def draw_pools(
    ctx: ExportContext,
    stage_cluster: Callable[..., list[str]],
    link_edge: Callable[..., None],
    legend: Callable[..., None],
) -> graphviz.Digraph:
    """Both pools side by side, the transfer from prefill's last block to decode's first
    stage (see the module docstring)."""
    g = ctx.graph
    tr = g.transfers
    assert tr is not None
    dot = digraph(pools_headline(ctx))
    firsts: dict[int, str] = {}
    lasts: dict[int, str] = {}
    kinds: set[Any] = set()
    all_links: list[Any] = []
    for p, pool in enumerate(g.pools):
        ov = overview(pool_graph(g, p))
        s = pool.mesh.sizes
        shape = f"TP{s['tp']}×DP{s['dp']}"
        runs, links = fold_stages(ov.stages, ov.links)
        prefix = f"p{p}"
        with dot.subgraph(name=f"cluster_pool{p}") as c:
            c.attr(label=text(f"{pool.name} pool: {pool.units} unit(s) of {pool.world} GPUs "
                              f"({pool.workload.phase.value}); global ranks {pool.rank0}–"
                              f"{pool.rank0 + pool.world - 1}, numbered from 0 below"),
                   style="rounded,dashed",
                   color="#666666", fontsize="14",
                   labelloc="b" if pool.workload.decoding else "t")  # fmt: skip
            names = {run.index: stage_cluster(c, run, shape, prefix) for run in runs}
        for link in links:
            link_edge(dot, link, names, prefix)
        firsts[p] = f"{prefix}s{runs[0].index}head"
        lasts[p] = names[runs[-1].index][-1]
        kinds |= {b.kind for run in runs for b in run.blocks}
        all_links += links
    dot.edge(lasts[tr.prefill], firsts[tr.decode], label=_transfer_label(ctx), color=TRANSFER_COLOR,
             fontcolor=TRANSFER_COLOR, penwidth="3", style="bold")  # fmt: skip
    legend(dot, lasts[tr.decode], kinds, tuple(all_links))
    return dot
