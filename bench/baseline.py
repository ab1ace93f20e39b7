"""The networkx baseline: the same graph built node by node in a DiGraph and checked.

Collective members are contracted into one vertex per instance (as dagen's own check
does), so both sides decide the same question. Measured in the same process, after
dagen, with its own peak-RSS window.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import networkx as nx

from bench.measure import peak_rss_bytes, reset_peak, rss_bytes
from dagen.graph.ir import OP_LABELS, Graph, Kind


def _build(graph: Graph) -> nx.DiGraph:
    g = nx.DiGraph()
    ids = []
    for i in range(graph.n_nodes):
        vid = f"inst{int(graph.inst[i])}" if graph.kind[i] == Kind.COLLECTIVE else graph.node_id(i)
        ids.append(vid)
        t = int(graph.tmpl[i])
        g.add_node(
            vid,
            rank=int(graph.rank[i]),
            layer=int(graph.layer[i]),
            mb=int(graph.mb[i]),
            op=OP_LABELS[int(graph.op[i])],
            bytes=int(graph.tmpl_bytes[t]),
            flops=float(graph.tmpl_flops[t]),
        )
    for s, d in zip(graph.src.tolist(), graph.dst.tolist(), strict=True):
        g.add_edge(ids[s], ids[d])
    return g


def networkx_baseline(graph: Graph) -> dict[str, Any]:
    """Seconds and peak memory to build the DiGraph and run is_directed_acyclic_graph."""
    gc.collect()
    rss0 = rss_bytes()
    reset_peak()
    t0 = time.perf_counter()
    g = _build(graph)
    t1 = time.perf_counter()
    acyclic = nx.is_directed_acyclic_graph(g)
    t2 = time.perf_counter()
    return {
        "build_s": t1 - t0,
        "check_s": t2 - t1,
        "acyclic": acyclic,
        "peak_rss": peak_rss_bytes() - rss0,
    }
