"""Graph checks on graphs the builder makes: clean plans pass, injected faults are caught.

Every fault test starts from a graph of a tiny plan that ``check_graph`` accepts, edits
its columns (``drop_nodes``, ``duplicate_nodes``, ``add_edges``, ``dataclasses.replace``)
and asserts which codes fire and which nodes or ranks they name.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_plan

from dagen.checks import Code, check_acyclic, check_comms, check_completeness, check_graph
from dagen.errors import GraphError
from dagen.findings import Finding, Severity
from dagen.graph.algo import (
    HasACycle,
    add_edges,
    critical_path,
    drop_nodes,
    duplicate_nodes,
    guard,
    topological_order,
)
from dagen.graph.algo.arrays import ranges
from dagen.graph.algo.contract import contract, layered_kahn
from dagen.graph.algo.sweep import sweep
from dagen.graph.build import build_graph
from dagen.graph.ir import EdgeKind, Graph, Kind, Op
from dagen.plan.loader import load_plan

PLANS = Path(__file__).parent / "data" / "plans"


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def nodes_where(g: Graph, **cols: int) -> np.ndarray:
    mask = np.ones(g.n_nodes, dtype=bool)
    for name, value in cols.items():
        mask &= getattr(g, name) == value
    return np.flatnonzero(mask)


def one(g: Graph, **cols: int) -> int:
    hit = nodes_where(g, **cols)
    assert hit.size == 1, (cols, hit.size)
    return int(hit[0])


@pytest.fixture(scope="module")
def dense() -> Graph:
    return build_graph(load_plan(PLANS / "tiny_dense.yaml"))


@pytest.fixture(scope="module")
def moe() -> Graph:
    return build_graph(load_plan(PLANS / "tiny_moe.yaml"))


@pytest.fixture(scope="module")
def decode() -> Graph:
    plan = make_plan(tp=2, pp=2, phase="decode", decode_steps=3, micro_batches=2, gen_len=4)
    return build_graph(plan)


MOE_FULL = dict(
    tp=2, pp=2, dp=4, ep=4, etp=2, experts=8, shared_experts=1, redundant_experts=4,
    first_dense_layers=1, layers=5,
)  # fmt: skip
CLEAN = {
    "tp2-pp2-dp2": dict(tp=2, pp=2, dp=2, micro_batches=2),
    "sp-cp": dict(tp=2, cp=2, pp=2, sequence_parallel=True),
    "decode-chain": dict(tp=2, pp=2, phase="decode", decode_steps=3, micro_batches=2),
    "moe-etp-shared-redundant": MOE_FULL,
    "pp3-uneven": dict(pp=3, layers=5, micro_batches=3, batch=9),
    "one-gpu-decode": dict(phase="decode", decode_steps=2, micro_batches=2),
    "orthogonal-ep": dict(
        convention="orthogonal", tp=2, ep=2, pp=2, experts=8, batch=4, micro_batches=2
    ),
    "pp-fastest-order": dict(order="pp-tp-dp", tp=2, pp=2, dp=2, micro_batches=2),
    "uneven-split": dict(layers_per_stage=(3, 1), pp=2, micro_batches=2),
}


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean_plans_pass(name: str) -> None:
    g = build_graph(make_plan(**CLEAN[name]))
    assert check_graph(g) == []
    assert check_graph(g, lint=True) == []


def test_tiny_yaml_plans_pass(dense: Graph, moe: Graph) -> None:
    assert check_graph(dense) == []
    assert check_graph(moe) == []


# --- completeness --------------------------------------------------------------------


def test_dropped_op_is_missing_and_named(dense: Graph) -> None:
    node = one(dense, rank=5, layer=3, mb=1, op=Op.ATTN_CORE)
    found = check_completeness(drop_nodes(dense, [node]))
    assert codes(found) == [Code.GRAPH_MISSING]
    f = found[0]
    assert f.message.startswith("1 op the plan calls for is missing (attn.core ×1)")
    assert "first: attn.core at r5/s1/t0/L3/mb1" in f.message
    assert f.ranks == (5,)
    assert f.data["missing"] == 1
    # The nodes named are the layer's other ops, where the missing one belongs.
    assert "r5/s1/L3/mb1/attn.qkv" in f.nodes and "r5/s1/L3/mb1/attn.out" in f.nodes


def test_duplicated_layer_node(dense: Graph) -> None:
    node = one(dense, rank=2, layer=1, mb=0, op=Op.FFN_UP)
    bad = duplicate_nodes(dense, [node])
    bad.lint()
    found = check_completeness(bad)
    assert codes(found) == [Code.GRAPH_DUPLICATE]
    assert found[0].nodes == (dense.node_id(node), dense.node_id(node))
    assert "ffn.up at r2/s0/t0/L1/mb0 runs 2 times" in found[0].message
    assert check_acyclic(bad) == []


def test_layer_on_the_wrong_stage(dense: Graph) -> None:
    node = one(dense, rank=0, layer=0, mb=0, op=Op.FFN_DOWN)
    layer = dense.layer.copy()
    layer[node] = 3  # layer 3 lives on stage 1
    found = check_completeness(dataclasses.replace(dense, layer=layer))
    assert codes(found) == [Code.GRAPH_MISSING, Code.GRAPH_UNEXPECTED]
    assert "ffn.down at r0/s0/t0/L0/mb0" in found[0].message
    assert found[1].nodes == ("r0/s0/L3/mb0/ffn.down",)


def test_op_foreign_to_a_dense_layer(dense: Graph) -> None:
    node = one(dense, rank=1, layer=1, mb=1, op=Op.FFN_UP)
    op = dense.op.copy()
    op[node] = Op.MOE_ROUTER
    found = check_completeness(dataclasses.replace(dense, op=op))
    assert codes(found) == [Code.GRAPH_MISSING, Code.GRAPH_UNEXPECTED]
    assert "moe.router ×1" in found[1].message


def test_micro_batch_out_of_range(dense: Graph) -> None:
    node = one(dense, rank=4, layer=2, mb=1, op=Op.ATTN_QKV)
    mb = dense.mb.copy()
    mb[node] = 7
    found = check_completeness(dataclasses.replace(dense, mb=mb))
    assert codes(found) == [Code.GRAPH_MISSING, Code.GRAPH_UNEXPECTED]
    assert found[1].nodes == ("r4/s1/L2/mb7/attn.qkv",)


def test_micro_batch_skipping_a_stage(dense: Graph) -> None:
    # Replica 0 of tiny_dense (tp2·pp2·dp2) is ranks 0, 1 (stage 0) and 4, 5 (stage 1).
    gone = np.flatnonzero(np.isin(dense.rank, [4, 5]) & (dense.mb == 1))
    found = check_completeness(drop_nodes(dense, gone))
    assert codes(found) == [Code.GRAPH_MB_SKIPS_STAGE]
    f = found[0]
    assert "replica 0, micro-batch 1, step 0 skips stage 1 of 2" in f.message
    assert f.ranks == (4, 5)
    comms = check_comms(drop_nodes(dense, gone))
    # Stage 0's sends of mb 1 lost their recvs; the stage's TP instances lost every member.
    assert codes(comms) == [Code.GRAPH_UNMATCHED_SEND, Code.GRAPH_COLL_MEMBERS]
    assert "joined by ranks [], missing [4, 5]" in comms[1].message


def test_rank_without_any_node_is_idle(dense: Graph) -> None:
    gone = nodes_where(dense, rank=6)
    found = check_completeness(drop_nodes(dense, gone))
    idle = [f for f in found if f.code == Code.GRAPH_IDLE_RANK]
    assert len(idle) == 1 and idle[0].ranks == (6,)
    assert idle[0].severity is Severity.ERROR
    assert Code.GRAPH_MISSING in codes(found)


def test_stage_without_layers_is_an_idle_warning() -> None:
    plan = make_plan(pp=3, layers=2, layers_per_stage=(1, 0, 1))
    found = check_completeness(build_graph(plan))
    assert codes(found) == [Code.GRAPH_IDLE_RANK]
    assert found[0].severity is Severity.WARNING
    assert found[0].ranks == (1,)


# --- experts -------------------------------------------------------------------------


def test_dropped_expert_is_missing(moe: Graph) -> None:
    # tiny_moe: EP4 over ranks 0-3 (stage 0); rank 1 hosts experts 2 and 3.
    node = one(moe, rank=1, layer=1, mb=0, op=Op.MOE_EXPERT, expert=3)
    found = check_completeness(drop_nodes(moe, [node]))
    assert codes(found) == [Code.GRAPH_EXPERT_MISSING]
    f = found[0]
    assert "runs no node for experts [3]" in f.message
    assert "EP group 0 (ranks 0, 1, 2, 3, stage 0), layer 1, step 0, micro-batch 0" in f.message
    assert f.ranks == (0, 1, 2, 3)
    assert len(f.nodes) == 7  # the experts that did run in that layer and micro-batch


def test_doubled_expert_beyond_redundancy(moe: Graph) -> None:
    node = one(moe, rank=6, layer=3, mb=1, op=Op.MOE_EXPERT, expert=5)
    found = check_completeness(duplicate_nodes(moe, [node]))
    assert codes(found) == [Code.GRAPH_EXPERT_DUPLICATE]
    assert "9 expert nodes for 8 experts + 0 redundant replicas" in found[0].message
    assert found[0].nodes == (moe.node_id(node),) * 2


def test_redundant_replicas_are_allowed_up_to_the_plan() -> None:
    plan = make_plan(tp=2, dp=2, ep=4, experts=8, redundant_experts=4, micro_batches=1)
    g = build_graph(plan)
    assert check_completeness(g) == []
    node = nodes_where(g, op=Op.MOE_EXPERT, rank=0, layer=0)[0]
    found = check_completeness(duplicate_nodes(g, [node]))
    assert codes(found) == [Code.GRAPH_EXPERT_DUPLICATE]
    assert "(5 extra copies" in found[0].message


def test_expert_relabelled_leaves_one_missing_one_doubled(moe: Graph) -> None:
    node = one(moe, rank=2, layer=0, mb=0, op=Op.MOE_EXPERT, expert=4)
    expert = moe.expert.copy()
    expert[node] = 5
    found = check_completeness(dataclasses.replace(moe, expert=expert))
    assert codes(found) == [Code.GRAPH_EXPERT_MISSING, Code.GRAPH_EXPERT_DUPLICATE]
    assert "experts [4]" in found[0].message and "doubled: [5]" in found[1].message


def test_expert_node_in_a_dense_layer(dense: Graph) -> None:
    node = one(dense, rank=0, layer=0, mb=0, op=Op.FFN_UP)
    op, expert = dense.op.copy(), dense.expert.copy()
    op[node], expert[node] = Op.MOE_EXPERT, 0
    found = check_completeness(dataclasses.replace(dense, op=op, expert=expert))
    assert codes(found) == [Code.GRAPH_MISSING, Code.GRAPH_UNEXPECTED]
    assert "1 expert node outside any MoE layer" in found[1].message


# --- communication on built graphs ---------------------------------------------------


def test_dropped_recv_on_built_graph(decode: Graph) -> None:
    recv = one(decode, rank=0, op=Op.PP_RECV, step=2, mb=1)  # the decode chain's recv
    send = one(decode, rank=2, op=Op.PP_SEND, step=1, mb=1)
    bad = drop_nodes(decode, [recv])
    found = check_graph(bad)
    assert codes(found) == [Code.GRAPH_MISSING, Code.GRAPH_UNMATCHED_SEND]
    assert found[1].nodes == (decode.node_id(send),)
    assert "pp.recv at r0/s0/t2/mb1" in found[0].message


def test_send_bytes_differ_on_built_graph(dense: Graph) -> None:
    send = one(dense, rank=3, op=Op.PP_SEND, mb=0)
    tmpl = dense.tmpl.copy()
    tmpl[send] = len(dense.tmpl_shape)
    bad = dataclasses.replace(
        dense,
        tmpl=tmpl,
        tmpl_shape=[*dense.tmpl_shape, (1,)],
        tmpl_bytes=np.append(dense.tmpl_bytes, 3),
        tmpl_flops=np.append(dense.tmpl_flops, 0.0),
    )
    found = check_graph(bad)
    assert codes(found) == [Code.GRAPH_P2P_BYTES]
    assert found[0].nodes == (dense.node_id(send), "r7/s1/mb0/pp.recv")
    assert "(3 B," in found[0].message


def test_decode_chain_recv_at_the_same_step_is_a_mismatch(decode: Graph) -> None:
    recv = one(decode, rank=1, op=Op.PP_RECV, step=1, mb=0)
    step = decode.step.copy()
    step[recv] = 0
    found = check_comms(dataclasses.replace(decode, step=step))
    assert codes(found) == [Code.GRAPH_P2P_MB]
    assert "step 0, peer 1) → r1/s0/t0/mb0/pp.recv" in found[0].message


def test_all_to_all_member_dropped(moe: Graph) -> None:
    node = one(moe, rank=2, layer=0, mb=1, op=Op.MOE_COMBINE)
    inst = int(moe.inst[node])
    found = check_graph(drop_nodes(moe, [node]))
    assert Code.GRAPH_COLL_MEMBERS in codes(found)
    f = next(f for f in found if f.code == Code.GRAPH_COLL_MEMBERS)
    assert f"instance {inst} (all-to-all over ep group" in f.message
    assert "missing [2]" in f.message
    assert Code.GRAPH_COLL_ORDER not in codes(found)


def test_swapped_allreduces_on_built_graph(dense: Graph) -> None:
    a = one(dense, rank=1, layer=0, mb=0, op=Op.ATTN_ALLREDUCE)
    b = one(dense, rank=1, layer=0, mb=0, op=Op.FFN_ALLREDUCE)
    cols = {c: getattr(dense, c).copy() for c in ("inst", "aux", "op")}
    for col in cols.values():
        col[[a, b]] = col[[b, a]]
    bad = dataclasses.replace(dense, **cols)
    found = check_graph(bad)
    assert codes(found)[0] == Code.GRAPH_CYCLE
    assert Code.GRAPH_COLL_ORDER in codes(found)
    cyc = found[0]
    assert cyc.ranks == (0, 1)
    assert bad.node_id(a) in cyc.nodes and bad.node_id(b) in cyc.nodes
    order = next(f for f in found if f.code == Code.GRAPH_COLL_ORDER)
    assert "tp group" in order.message and "rank 1 issues instance" in order.message


def test_back_edge_across_stages_on_built_graph(moe: Graph) -> None:
    late = one(moe, rank=7, op=Op.SAMPLE, mb=1)
    early = one(moe, rank=1, layer=0, mb=0, op=Op.ATTN_QKV)
    found = check_acyclic(add_edges(moe, [late], [early], EdgeKind.P2P))
    assert codes(found) == [Code.GRAPH_CYCLE]
    assert moe.node_id(late) in found[0].nodes and moe.node_id(early) in found[0].nodes
    assert "r7/s1/mb1/sample → r1/s0/L0/mb0/attn.qkv" in found[0].message


# --- order and paths -----------------------------------------------------------------


def positions(order: np.ndarray) -> np.ndarray:
    pos = np.empty_like(order)
    pos[order] = np.arange(order.size)
    return pos


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_topological_order_respects_every_contracted_edge(name: str) -> None:
    g = build_graph(make_plan(**CLEAN[name]))
    order = topological_order(g)
    assert np.array_equal(np.sort(order), np.arange(g.n_nodes))
    pos = positions(order)
    assert np.all(pos[g.src] < pos[g.dst])
    # An instance counts as done at its first member: every member's predecessor precedes it.
    coll = np.flatnonzero(g.kind == Kind.COLLECTIVE)
    first = np.full(g.n_inst, g.n_nodes)
    np.minimum.at(first, g.inst[coll], pos[coll])
    into = g.kind[g.dst] == Kind.COLLECTIVE
    assert np.all(pos[g.src[into]] < first[g.inst[g.dst[into]]])


def test_sweep_and_exact_engine_agree_on_depth(decode: Graph) -> None:
    sw = sweep(decode)
    assert sw.complete and sw.rounds > 0
    con = contract(decode)
    level, frontiers = layered_kahn(con.n_vertices, con.src, con.dst)
    assert level.min() == 0 and sum(f.size for f in frontiers) == con.n_vertices
    path = critical_path(decode)
    assert len(path) == int(level.max()) + 1
    # Consecutive path nodes are joined by an edge, or are members of one instance.
    v = con.vertex[path]
    edges = set(zip(con.src.tolist(), con.dst.tolist(), strict=True))
    assert all((a, b) in edges for a, b in zip(v[:-1].tolist(), v[1:].tolist(), strict=True))


def test_critical_path_of_a_pipeline_crosses_every_stage(dense: Graph) -> None:
    path = critical_path(dense)
    stages = dense.mesh.stage[dense.rank[path]]
    assert stages[0] == 0 and stages[-1] == 1
    assert dense.op[path[0]] == Op.EMBED and dense.op[path[-1]] == Op.SAMPLE


def test_topological_order_raises_on_a_cycle(dense: Graph) -> None:
    bad = add_edges(dense, [one(dense, rank=4, op=Op.SAMPLE, mb=0)], [0], EdgeKind.P2P)
    with pytest.raises(HasACycle, match="deadlock: a cycle") as err:
        topological_order(bad)
    assert err.value.cycle and isinstance(err.value, GraphError)


def test_ranges_and_kahn_units() -> None:
    assert ranges(np.array([3, 0, 9]), np.array([0, 2, 1])).tolist() == [0, 1, 9]
    level, _ = layered_kahn(4, np.array([0, 1, 2, 3]), np.array([1, 2, 3, 1]))
    assert level.tolist() == [0, -1, -1, -1]


def test_deep_chain_is_linear_not_quadratic() -> None:
    """A 100,000-op chain on one rank: the sweep passes it in O(1) rounds."""
    g = build_graph(make_plan(layers=2, micro_batches=1))
    n = 100_000
    cols = {c: np.resize(getattr(g, c), n) for c in Graph.NODE_COLUMNS}
    cols |= dict(kind=np.zeros(n, dtype=np.uint8), inst=np.full(n, -1, dtype=np.int32))
    deep = dataclasses.replace(
        g,
        **cols,
        src=np.arange(n - 1, dtype=np.int32),
        dst=np.arange(1, n, dtype=np.int32),
        ekind=np.zeros(n - 1, dtype=np.uint8),
    )
    sw = sweep(deep)
    assert sw.complete and sw.rounds == 0
    assert check_acyclic(deep) == []
    assert np.array_equal(topological_order(deep), np.arange(n))


# --- guard ---------------------------------------------------------------------------


def test_guard_turns_a_broken_column_into_one_finding(dense: Graph) -> None:
    rank = dense.rank.copy()
    rank[5] = 99
    bad = dataclasses.replace(dense, rank=rank)
    with pytest.raises(GraphError, match="'rank' has values in"):
        guard(bad)
    found = check_graph(bad)
    assert codes(found) == [Code.GRAPH_IR]
    lint_found = check_graph(dataclasses.replace(dense, src=dense.dst, dst=dense.src), lint=True)
    assert codes(lint_found) == [Code.GRAPH_IR]


def test_findings_serialise(dense: Graph) -> None:
    f = check_completeness(drop_nodes(dense, [10]))[0]
    d: dict[str, Any] = f.to_dict()
    assert d["code"] == "GRAPH-MISSING" and d["severity"] == "error"


# --- scale ---------------------------------------------------------------------------


@pytest.mark.slow
def test_faults_caught_at_a_million_nodes() -> None:
    plan = make_plan(
        layers=16, tp=4, pp=4, dp=8, ep=8, experts=32, top_k=2, micro_batches=8,
        phase="decode", decode_steps=16, batch=64, gen_len=16,
    )  # fmt: skip
    g = build_graph(plan)
    assert g.n_nodes >= 1_000_000
    assert check_graph(g) == []
    # Rank 37 swaps two all-reduces of one step and micro-batch; rank 100 loses an expert.
    a = nodes_where(g, rank=37, step=9, mb=5, op=Op.ATTN_ALLREDUCE)[:2]
    cols = {c: getattr(g, c).copy() for c in ("inst", "aux", "op")}
    for col in cols.values():
        col[a] = col[a[::-1]]
    lost = nodes_where(g, rank=100, step=15, mb=7, op=Op.MOE_EXPERT)[-1]
    bad = drop_nodes(dataclasses.replace(g, **cols), [lost])
    found = check_graph(bad)
    # The swapped instances each join rank 37's all-reduce of one layer with its TP
    # peers' of the other layer: COLL-OP names the layers.
    assert codes(found) == [
        Code.GRAPH_CYCLE,
        Code.GRAPH_EXPERT_MISSING,
        Code.GRAPH_COLL_OP,
        Code.GRAPH_COLL_ORDER,
    ]
    assert 37 in found[0].ranks
    assert any(n.startswith("r37/") and "attn.allreduce" in n for n in found[0].nodes)
    assert f"experts [{int(g.expert[lost])}]" in found[1].message
    assert "disagree on (step, layer, micro-batch)" in found[2].message
    assert "rank 37 issues instance" in found[3].message
    assert "layer 15, step 15, micro-batch 7" in found[1].message


def test_p2p_edge_between_computes_is_a_peer_problem(dense: Graph) -> None:
    a = one(dense, rank=0, layer=0, mb=0, op=Op.ATTN_QKV)
    b = one(dense, rank=4, layer=2, mb=1, op=Op.ATTN_QKV)
    found = check_comms(add_edges(dense, [a], [b], EdgeKind.P2P))
    assert codes(found) == [Code.GRAPH_P2P_PEER]
    assert "1 p2p edge not from a send to a recv" in found[0].message
    assert found[0].nodes == (dense.node_id(a), dense.node_id(b))


@pytest.mark.slow
def test_exact_engine_levels_cost_their_frontier_not_the_graph() -> None:
    """20,000 levels among 20,000 or 2,000,000 vertices: per-level work must not grow with
    the graph (O(n) per level would take 20,000 × 2M steps, hours)."""
    depth = 20_000
    src, dst = np.arange(depth - 1), np.arange(1, depth)
    times = []
    for n in (depth, 2_000_000):
        start = time.perf_counter()
        level, _ = layered_kahn(n, src, dst)
        times.append(time.perf_counter() - start)
        assert level[depth - 1] == depth - 1 and level[depth:].max(initial=0) == 0
    assert times[1] < 5 * times[0] + 1.0, times


def test_missing_p2p_edge_is_told_apart_from_a_missing_node(decode: Graph) -> None:
    send = one(decode, rank=3, op=Op.PP_SEND, step=0, mb=1)  # the decode chain to rank 1
    keep = decode.src != send
    bad = dataclasses.replace(
        decode, src=decode.src[keep], dst=decode.dst[keep], ekind=decode.ekind[keep]
    )
    found = check_comms(bad)
    assert codes(found) == [Code.GRAPH_UNMATCHED_SEND, Code.GRAPH_UNMATCHED_RECV]
    for f in found:
        assert "1 of them has an unmatched" in f.message and "only the p2p edge" in f.message
    assert found[1].nodes == ("r1/s0/t1/mb1/pp.recv",)
    lone = check_comms(drop_nodes(decode, [send]))
    assert "only the p2p edge" not in lone[0].message


def test_rank_joining_an_instance_twice(dense: Graph) -> None:
    node = one(dense, rank=2, layer=0, mb=1, op=Op.FFN_ALLREDUCE)
    bad = duplicate_nodes(dense, [node])
    found = {f.code: f for f in check_graph(bad)}
    assert "1 instance has a rank twice" in found[Code.GRAPH_COLL_MEMBERS].message
    assert Code.GRAPH_DUPLICATE in found
    # The rank can only stand at one of its two copies: run serially, the group hangs.
    assert found[Code.GRAPH_SERIAL_DEADLOCK].severity is Severity.WARNING
    assert 2 in found[Code.GRAPH_SERIAL_DEADLOCK].ranks
