"""The schedule certificate and the shared arrays behind check_graph's fast path.

A verified schedule key replaces the rank sweep and, with exact collective membership,
the collective-order pass. These tests hold that shortcut to its promise: it verifies on
every graph the builder makes, it never verifies on a graph with a cycle, a serial
deadlock or an order mismatch, and ``check_graph`` (which shares one :class:`Shared`
between the checks and takes the shortcut) reports exactly what the checks report
when each runs alone (which never takes it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from handgraph import HandGraph, pipeline, small_plan

from dagen.checks import (
    add_edges,
    check_acyclic,
    check_collective_order,
    check_comms,
    check_completeness,
    check_graph,
    drop_nodes,
    duplicate_nodes,
)
from dagen.checks.certify import certify, schedule_key
from dagen.checks.shared import Shared
from dagen.checks.sweep import sweep
from dagen.findings import Finding
from dagen.graph.build import build_graph
from dagen.graph.ir import EdgeKind, Graph, Kind, Op
from dagen.plan.loader import load_plan

PLANS = Path(__file__).parent / "data" / "plans"


def alone(g: Graph) -> list[Finding]:
    """Every check on its own (a fresh Shared each, so no shortcut between them)."""
    return check_acyclic(g) + check_completeness(g) + check_comms(g) + check_collective_order(g)


def find(g: Graph, rank: int, op: Op, *, layer: int = -1, mb: int = 0) -> int:
    hit = np.flatnonzero((g.rank == rank) & (g.op == op) & (g.layer == layer) & (g.mb == mb))
    assert hit.size == 1
    return int(hit[0])


@pytest.mark.parametrize(
    "name",
    ["tiny_moe.yaml", "tiny_dense.yaml", "seed_moe_10b_fixed.yaml", "seed_moe_10b_orthogonal.yaml"],
)
def test_built_graphs_are_certified(name: str) -> None:
    g = build_graph(load_plan(PLANS / name))
    sh = Shared(g)
    assert certify(g, sh)
    assert sweep(g).complete  # what the certificate stands in for
    key = schedule_key(g, Shared(g))
    assert key is not None
    assert np.all(key[g.src] < key[g.dst])  # every edge, not only the cross ones
    same = g.rank[1:] == g.rank[:-1]
    assert np.all(key[1:][same] > key[:-1][same])
    assert check_graph(g) == alone(g)


def test_decode_graph_is_certified() -> None:
    plan = load_plan(PLANS / "tiny_moe.yaml")
    work = dataclasses.replace(plan.workload, phase=plan.workload.phase.DECODE, decode_steps=3)
    g = build_graph(dataclasses.replace(plan, workload=work))
    assert g.meta["steps"] == 3
    assert certify(g, Shared(g))
    assert check_graph(g) == alone(g) == []


def swap(g: Graph, a: int, b: int) -> Graph:
    cols = {c: getattr(g, c).copy() for c in ("inst", "aux", "op", "layer")}
    for col in cols.values():
        col[[a, b]] = col[[b, a]]
    return dataclasses.replace(g, **cols)


def crossed_recvs() -> Graph:
    h = HandGraph(small_plan(tp=1, pp=2, layers=2, mbs=1))
    t = h.template(64)
    r0 = h.node(0, Op.PP_RECV, kind=Kind.RECV, aux=1, tmpl=t)
    s0 = h.node(0, Op.PP_SEND, kind=Kind.SEND, aux=1, tmpl=t)
    r1 = h.node(1, Op.PP_RECV, kind=Kind.RECV, aux=0, tmpl=t)
    s1 = h.node(1, Op.PP_SEND, kind=Kind.SEND, aux=0, tmpl=t)
    h.edge(s0, r1, EdgeKind.P2P)
    h.edge(s1, r0, EdgeKind.P2P)
    return h.freeze()


def _swapped(g: Graph) -> Graph:
    return swap(
        g,
        find(g, 1, Op.ATTN_ALLREDUCE, layer=0, mb=0),
        find(g, 1, Op.ATTN_ALLREDUCE, layer=1, mb=0),
    )


def _back_edge(g: Graph) -> Graph:
    late = find(g, 3, Op.FFN_UP, layer=3, mb=1)
    return add_edges(g, [late], [find(g, 1, Op.ATTN_QKV, layer=0, mb=0)], EdgeKind.P2P)


def _local_back_edge(g: Graph) -> Graph:
    late = find(g, 0, Op.FFN_UP, layer=1, mb=1)
    return add_edges(g, [late], [find(g, 0, Op.ATTN_QKV, layer=0, mb=0)], EdgeKind.DATA)


def _member_dropped(g: Graph) -> Graph:
    return drop_nodes(g, [find(g, 1, Op.ATTN_ALLREDUCE, layer=0, mb=1)])


def _member_doubled(g: Graph) -> Graph:
    return duplicate_nodes(g, [find(g, 0, Op.ATTN_ALLREDUCE, layer=1, mb=0)])


def _recv_dropped(g: Graph) -> Graph:
    return drop_nodes(g, [find(g, 2, Op.PP_RECV, mb=1)])


FAULTS: dict[str, Callable[[Graph], Graph]] = {
    "swapped collectives": _swapped,
    "back edge across ranks": _back_edge,
    "back edge on one rank": _local_back_edge,
    "member dropped": _member_dropped,
    "member doubled": _member_doubled,
    "recv dropped": _recv_dropped,
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_shortcut_reports_exactly_what_the_checks_report_alone(fault: str) -> None:
    good = pipeline(tp=2, pp=2, layers=4, mbs=2)
    assert certify(good, Shared(good))
    bad = FAULTS[fault](good)
    together = check_graph(bad)
    assert together == alone(bad)
    assert together  # every fault here is caught by something


@pytest.mark.parametrize(
    "fault", ["swapped collectives", "back edge across ranks", "back edge on one rank"]
)
def test_certificate_refuses_cycles_and_order_mismatches(fault: str) -> None:
    bad = FAULTS[fault](pipeline(tp=2, pp=2, layers=4, mbs=2))
    assert not certify(bad, Shared(bad))


def test_certificate_refuses_a_serial_deadlock() -> None:
    g = crossed_recvs()  # acyclic, but each rank posts its recv before its send
    assert not certify(g, Shared(g))
    assert [f.code for f in check_graph(g)] == [f.code for f in alone(g)]
    assert "GRAPH-SERIAL-DEADLOCK" in [f.code for f in check_graph(g)]


def test_no_key_without_rank_major_layout() -> None:
    g = pipeline(tp=2, pp=2, layers=2, mbs=2)
    perm = np.arange(g.n_nodes)[::-1].copy()
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    rev = dataclasses.replace(
        g,
        **{c: getattr(g, c)[perm] for c in Graph.NODE_COLUMNS},
        src=inv[g.src].astype(np.int32),
        dst=inv[g.dst].astype(np.int32),
    )
    assert schedule_key(rev, Shared(rev)) is None
    assert check_graph(rev) == alone(rev)


def test_shared_arrays_match_their_definitions() -> None:
    g = build_graph(load_plan(PLANS / "tiny_moe.yaml"))
    sh = Shared(g)
    assert np.array_equal(sh.coll_nodes, np.flatnonzero(g.kind == Kind.COLLECTIVE))
    assert np.array_equal(sh.coll_inst, g.inst[sh.coll_nodes])
    assert np.array_equal(sh.expert_nodes, np.flatnonzero(g.op == Op.MOE_EXPERT))
    same_fwd = (g.rank[g.src] == g.rank[g.dst]) & (g.src < g.dst)
    assert np.array_equal(sh.cross_edges, np.flatnonzero(~same_fwd))
    assert np.array_equal(sh.per_node(g.mesh.stage), g.mesh.stage[g.rank])
    assert sh.rank_start[-1] == g.n_nodes
