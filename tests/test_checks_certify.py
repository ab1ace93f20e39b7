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
from conftest import make_plan
from handgraph import crossed_recvs, pipeline

from dagen.checks import (
    check_acyclic,
    check_collective_order,
    check_comms,
    check_completeness,
    check_graph,
)
from dagen.checks.shared import Shared
from dagen.findings import Finding
from dagen.graph.algo import HasACycle, add_edges, drop_nodes, duplicate_nodes, topological_order
from dagen.graph.algo.certify import certified_key, certify, schedule_key
from dagen.graph.algo.sweep import sweep
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


# --- the certified topological order ---------------------------------------------------


def assert_linear_extension(g: Graph, order: np.ndarray) -> None:
    """``order`` is a permutation in which every edge goes forward and every predecessor
    of an instance's member precedes the instance's first member."""
    assert np.array_equal(np.sort(order), np.arange(g.n_nodes))
    pos = np.empty_like(order)
    pos[order] = np.arange(order.size)
    assert np.all(pos[g.src] < pos[g.dst])
    coll = np.flatnonzero(g.kind == Kind.COLLECTIVE)
    first = np.full(g.n_inst, g.n_nodes)
    np.minimum.at(first, g.inst[coll], pos[coll])
    into = g.kind[g.dst] == Kind.COLLECTIVE
    assert np.all(pos[g.src[into]] < first[g.inst[g.dst[into]]])


def per_rank(g: Graph, order: np.ndarray) -> np.ndarray:
    """Each rank's nodes in the order given (what the schedule simulation issues)."""
    return order[np.argsort(g.rank[order], kind="stable")]


def random_plans(count: int, seed: int = 7) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    plans: list[dict[str, object]] = []
    for _ in range(count):
        tp = int(rng.choice([1, 2]))
        pp, mbs = (int(x) for x in rng.integers(1, 4, 2))
        plan: dict[str, object] = dict(tp=tp, pp=pp, layers=2 * pp, micro_batches=mbs, batch=mbs)
        if rng.random() < 0.5:
            plan |= dict(phase="decode", decode_steps=int(rng.integers(1, 4)))
        if rng.random() < 0.5:
            plan |= dict(ep=tp, experts=4, top_k=2)  # ep·pp divides tp·pp
        plans.append(plan)
    return plans


@pytest.mark.parametrize("overrides", random_plans(6), ids=str)
def test_certified_order_agrees_with_the_sweep_order(overrides: dict[str, object]) -> None:
    g = build_graph(make_plan(**overrides))
    assert certified_key(g, Shared(g)) is not None  # topological_order takes the fast path
    fast = topological_order(g)
    sw = sweep(g)
    assert sw.complete
    slow = np.argsort(sw.node_key(g.rank), kind="stable")  # the sweep's order
    assert_linear_extension(g, fast)
    assert_linear_extension(g, slow)
    assert np.array_equal(per_rank(g, fast), per_rank(g, slow))
    assert np.array_equal(per_rank(g, fast), np.arange(g.n_nodes))  # program order


def test_order_without_a_certificate_is_still_a_linear_extension() -> None:
    g = crossed_recvs()  # acyclic, the key does not verify and the sweep stalls
    assert certified_key(g, Shared(g)) is None and not sweep(g).complete
    assert_linear_extension(g, topological_order(g))
    local = FAULTS["member doubled"](pipeline(tp=2, pp=2, layers=4, mbs=2))
    assert certified_key(local, Shared(local)) is None
    assert_linear_extension(local, topological_order(local))
    with pytest.raises(HasACycle):
        topological_order(FAULTS["swapped collectives"](pipeline(tp=2, pp=2, layers=4, mbs=2)))
