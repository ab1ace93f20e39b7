"""Property tests: random valid small plans pass every check, and the fast graph engines
agree with networkx on the contracted graph, with and without injected cycles.

The contracted graph is rebuilt here from the IR contract alone (one vertex per
non-collective node, one per collective instance) with networkx, independently of
:mod:`dagen.checks.engine`.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from strategies import small_plans

from dagen.checks import Code, check_acyclic, check_graph
from dagen.findings import Severity, has_errors
from dagen.graph.algo import HasACycle, add_edges, critical_path, topological_order
from dagen.graph.build import build_graph
from dagen.graph.ir import EdgeKind, Graph, Kind
from dagen.plan.model import Plan

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def contracted(g: Graph) -> tuple[nx.MultiDiGraph, list[Any]]:
    """The contracted graph in networkx, and each node's vertex key."""
    key: list[Any] = [
        ("inst", int(g.inst[i])) if g.kind[i] == Kind.COLLECTIVE else ("node", i)
        for i in range(g.n_nodes)
    ]
    h: nx.MultiDiGraph = nx.MultiDiGraph()
    h.add_nodes_from(set(key))
    h.add_edges_from((key[s], key[d]) for s, d in zip(g.src.tolist(), g.dst.tolist(), strict=True))
    return h, key


@SETTINGS
@given(small_plans(every_stage_has_layers=True))
def test_random_plans_pass_and_agree_with_networkx(plan: Plan) -> None:
    g = build_graph(plan)
    found = check_graph(g)
    assert not has_errors(found), [f.render() for f in found]
    assert all(f.severity is not Severity.ERROR for f in found)
    h, key = contracted(g)
    assert nx.is_directed_acyclic_graph(h)
    order = topological_order(g)
    pos = np.empty(g.n_nodes, dtype=np.int64)
    pos[order] = np.arange(g.n_nodes)
    first: dict[Any, int] = {}
    for i, k in enumerate(key):  # an instance sits at its first member
        first[k] = min(first.get(k, g.n_nodes), int(pos[i]))
    assert all(first[a] < first[b] for a, b, _ in h.edges(keys=True))
    path = critical_path(g)
    assert len(path) == len(nx.dag_longest_path(h))


@SETTINGS
@given(small_plans(every_stage_has_layers=True), st.data())
def test_random_extra_edge_cycle_verdict_matches_networkx(plan: Plan, data: st.DataObject) -> None:
    g = build_graph(plan)
    s = data.draw(st.integers(0, g.n_nodes - 1), label="src")
    d = data.draw(st.integers(0, g.n_nodes - 1), label="dst")
    same_rank = g.rank[s] == g.rank[d]
    kind = EdgeKind.DATA if same_rank else EdgeKind.P2P
    if same_rank and s >= d:
        s, d = d, s  # keep the IR's program order; equal ends make a self-loop below
    bad = add_edges(g, [s], [d], kind)
    h, _ = contracted(bad)
    cyclic = not nx.is_directed_acyclic_graph(h)
    event("cyclic" if cyclic else "acyclic")
    found = check_acyclic(bad)
    assert (Code.GRAPH_CYCLE in [f.code for f in found]) == cyclic
    if cyclic:
        cycle_nodes = set(found[0].nodes)
        assert cycle_nodes, found[0].message
        try:
            topological_order(bad)
            raise AssertionError("topological_order accepted a cyclic graph")
        except HasACycle as err:
            assert err.cycle
    else:
        order = topological_order(bad)
        pos = np.empty(bad.n_nodes, dtype=np.int64)
        pos[order] = np.arange(bad.n_nodes)
        assert np.all(pos[bad.src] < pos[bad.dst])
        assert len(critical_path(bad)) == len(nx.dag_longest_path(h))
