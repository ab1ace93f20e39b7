"""Fault injection on hand-written graphs: each check must catch its fault and name it.

The graphs come from :mod:`handgraph` (a TP·PP pipeline with all-reduces and
sends/recvs); every test starts from a graph the checks accept, edits its columns,
and asserts the code that fires and the nodes it names.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from handgraph import crossed_recvs, pipeline

from dagen.checks import Code, check_acyclic, check_collective_order, check_comms
from dagen.checks.common import MAX_NODES
from dagen.findings import Severity
from dagen.graph.algo import HasACycle, add_edges, critical_path, drop_nodes, topological_order
from dagen.graph.ir import EdgeKind, Graph, Kind, Op


def codes(findings: list) -> list[str]:
    return [f.code for f in findings]


def find(graph: Graph, rank: int, op: Op, *, layer: int = -1, mb: int = 0) -> int:
    hit = np.flatnonzero(
        (graph.rank == rank) & (graph.op == op) & (graph.layer == layer) & (graph.mb == mb)
    )
    assert hit.size == 1, (rank, op, layer, mb, hit)
    return int(hit[0])


@pytest.fixture
def good() -> Graph:
    g = pipeline(tp=2, pp=2, layers=4, mbs=2)
    g.lint()
    return g


def all_checks(g: Graph) -> list:
    return check_acyclic(g) + check_comms(g) + check_collective_order(g)


def test_the_hand_pipeline_is_clean(good: Graph) -> None:
    assert all_checks(good) == []


def test_dropped_recv_leaves_its_send_unmatched(good: Graph) -> None:
    recv = find(good, 2, Op.PP_RECV, mb=1)
    send = find(good, 0, Op.PP_SEND, mb=1)
    bad = drop_nodes(good, [recv])
    bad.lint()
    found = [f for f in check_comms(bad) if f.code == Code.GRAPH_UNMATCHED_SEND]
    assert len(found) == 1
    assert found[0].nodes == (good.node_id(send),)
    assert "1 send without a matching recv" in found[0].message
    assert found[0].ranks == (0,)


def test_recv_without_send(good: Graph) -> None:
    send = find(good, 1, Op.PP_SEND, mb=0)
    recv = find(good, 3, Op.PP_RECV, mb=0)
    bad = drop_nodes(good, [send])
    found = {f.code: f for f in check_comms(bad)}
    assert set(found) == {Code.GRAPH_UNMATCHED_RECV}
    assert found[Code.GRAPH_UNMATCHED_RECV].nodes == (good.node_id(recv),)


def test_send_bytes_differ(good: Graph) -> None:
    send = find(good, 1, Op.PP_SEND, mb=1)
    tmpl = good.tmpl.copy()
    tmpl[send] = len(good.tmpl_shape)  # a new template row, twice the bytes
    bad = dataclasses.replace(
        good,
        tmpl=tmpl,
        tmpl_shape=[*good.tmpl_shape, (2048,)],
        tmpl_bytes=np.append(good.tmpl_bytes, 2048),
        tmpl_flops=np.append(good.tmpl_flops, 0.0),
    )
    found = check_comms(bad)
    assert codes(found) == [Code.GRAPH_P2P_BYTES]
    assert found[0].nodes[0] == good.node_id(send)
    assert "2,048 B" in found[0].message and "1,024 B" in found[0].message


def test_send_to_another_micro_batch(good: Graph) -> None:
    recv = find(good, 2, Op.PP_RECV, mb=1)
    mb = good.mb.copy()
    mb[recv] = 0
    found = check_comms(dataclasses.replace(good, mb=mb))
    assert Code.GRAPH_P2P_MB in codes(found)


def test_send_naming_the_wrong_peer(good: Graph) -> None:
    send = find(good, 0, Op.PP_SEND, mb=0)
    aux = good.aux.copy()
    aux[send] = 3
    found = check_comms(dataclasses.replace(good, aux=aux))
    assert codes(found) == [Code.GRAPH_P2P_PEER]
    assert good.node_id(send) in found[0].nodes


def test_rank_removed_from_a_collective(good: Graph) -> None:
    node = find(good, 1, Op.ATTN_ALLREDUCE, layer=1, mb=1)
    inst = int(good.inst[node])
    bad = drop_nodes(good, [node])
    found = check_comms(bad)
    assert codes(found) == [Code.GRAPH_COLL_MEMBERS]
    f = found[0]
    assert f"instance {inst} " in f.message and "missing [1]" in f.message
    assert f.nodes == (good.node_id(find(good, 0, Op.ATTN_ALLREDUCE, layer=1, mb=1)),)
    assert f.ranks == (0, 1)
    # One member fewer also shortens rank 1's sequence: left to COLL-MEMBERS, not ORDER.
    assert check_collective_order(bad) == []


def test_rank_outside_the_group_joins(good: Graph) -> None:
    node = find(good, 1, Op.ATTN_ALLREDUCE, layer=0, mb=0)
    other = find(good, 2, Op.ATTN_ALLREDUCE, layer=2, mb=0)
    inst, aux = good.inst.copy(), good.aux.copy()
    inst[other], aux[other] = inst[node], aux[node]  # rank 2 claims stage 0's instance
    found = {f.code: f for f in check_comms(dataclasses.replace(good, inst=inst, aux=aux))}
    assert Code.GRAPH_COLL_MEMBERS in found
    assert "1 instance includes an outsider" in found[Code.GRAPH_COLL_MEMBERS].message


def test_collective_sizes_differ(good: Graph) -> None:
    node = find(good, 3, Op.ATTN_ALLREDUCE, layer=3, mb=0)
    tmpl = good.tmpl.copy()
    tmpl[node] = 0  # the 0-byte template
    found = check_comms(dataclasses.replace(good, tmpl=tmpl))
    assert codes(found) == [Code.GRAPH_COLL_SIZE]
    assert good.node_id(node) in found[0].nodes
    assert "r3: 0 B" in found[0].message and "r2: 1,024 B" in found[0].message


def test_collective_ops_differ(good: Graph) -> None:
    node = find(good, 0, Op.ATTN_ALLREDUCE, layer=0, mb=1)
    op = good.op.copy()
    op[node] = Op.FFN_ALLREDUCE
    found = check_comms(dataclasses.replace(good, op=op))
    assert codes(found) == [Code.GRAPH_COLL_OP]
    assert "ffn.allreduce" in found[0].message


def swap_collectives(g: Graph, a: int, b: int) -> Graph:
    """Swap the instance, group and op of two collective nodes of one rank."""
    cols = {c: getattr(g, c).copy() for c in ("inst", "aux", "op", "layer")}
    for col in cols.values():
        col[[a, b]] = col[[b, a]]
    return dataclasses.replace(g, **cols)


def test_swapped_collectives_are_an_order_mismatch_and_a_cycle(good: Graph) -> None:
    a = find(good, 1, Op.ATTN_ALLREDUCE, layer=0, mb=0)
    b = find(good, 1, Op.ATTN_ALLREDUCE, layer=1, mb=0)
    bad = swap_collectives(good, a, b)
    bad.lint()
    order = check_collective_order(bad)
    assert codes(order) == [Code.GRAPH_COLL_ORDER]
    assert "tp group 0 (ranks 0, 1), call #1: rank 1 issues instance 1" in order[0].message
    assert "where rank 0 issues instance 0" in order[0].message
    cyc = check_acyclic(bad)
    assert codes(cyc) == [Code.GRAPH_CYCLE]
    assert cyc[0].ranks == (0, 1)
    # The cycle runs through both swapped calls, printed as a path with ⇄ at instances.
    assert bad.node_id(a) in cyc[0].nodes and bad.node_id(b) in cyc[0].nodes
    assert "⇄" in cyc[0].message and "deadlock" in cyc[0].message
    with pytest.raises(HasACycle) as err:
        topological_order(bad)
    assert err.value.cycle == cyc[0].nodes
    with pytest.raises(HasACycle):
        critical_path(bad)


def test_back_edge_across_ranks_closes_a_cycle(good: Graph) -> None:
    late = find(good, 3, Op.FFN_UP, layer=3, mb=1)
    early = find(good, 1, Op.ATTN_QKV, layer=0, mb=0)
    bad = add_edges(good, [late], [early], EdgeKind.P2P)
    bad.lint()
    found = check_acyclic(bad)
    assert codes(found) == [Code.GRAPH_CYCLE]
    f = found[0]
    assert good.node_id(late) in f.nodes and good.node_id(early) in f.nodes
    assert set(f.ranks) >= {1, 3}
    assert len(f.nodes) <= MAX_NODES
    assert "r3/s1/L3/mb1/ffn.up → r1/s0/L0/mb0/attn.qkv" in f.message


def reversed_nodes(g: Graph) -> Graph:
    """The same graph with its node order reversed (no longer rank-major)."""
    perm = np.arange(g.n_nodes)[::-1].copy()
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    return dataclasses.replace(
        g,
        **{c: getattr(g, c)[perm] for c in Graph.NODE_COLUMNS},
        src=inv[g.src].astype(np.int32),
        dst=inv[g.dst].astype(np.int32),
    )


def test_without_rank_major_layout_the_exact_engine_decides(good: Graph) -> None:
    late = find(good, 2, Op.FFN_UP, layer=3, mb=1)
    early = find(good, 0, Op.ATTN_QKV, layer=0, mb=0)
    bad = reversed_nodes(add_edges(good, [late], [early], EdgeKind.P2P))
    assert codes(check_acyclic(bad)) == [Code.GRAPH_CYCLE]
    shuffled = reversed_nodes(good)
    assert check_acyclic(shuffled) == []
    order = topological_order(shuffled)
    pos = np.empty_like(order)
    pos[order] = np.arange(order.size)
    assert np.all(pos[shuffled.src] < pos[shuffled.dst])
    assert len(critical_path(shuffled)) == len(critical_path(good))


def test_acyclic_but_serial_deadlock_is_a_warning() -> None:
    g = crossed_recvs()
    g.lint()
    found = check_acyclic(g)
    assert codes(found) == [Code.GRAPH_SERIAL_DEADLOCK]
    assert found[0].severity is Severity.WARNING
    assert found[0].ranks == (0, 1)
    order = topological_order(g)
    pos = np.empty_like(order)
    pos[order] = np.arange(order.size)
    assert np.all(pos[g.src] < pos[g.dst])


def test_serial_deadlock_becomes_a_cycle_with_a_local_edge() -> None:
    g = crossed_recvs()
    bad = add_edges(g, [0, 2], [1, 3], EdgeKind.DATA)  # each recv now feeds its send
    bad.lint()
    found = check_acyclic(bad)
    assert codes(found) == [Code.GRAPH_CYCLE]
    assert found[0].ranks == (0, 1)
    assert len(found[0].nodes) == 4


def test_many_faults_aggregate_into_one_finding() -> None:
    g = pipeline(tp=2, pp=2, layers=2, mbs=8)
    recvs = np.flatnonzero(g.kind == Kind.RECV)
    found = check_comms(drop_nodes(g, recvs))
    assert codes(found) == [Code.GRAPH_UNMATCHED_SEND]
    assert found[0].message.startswith("16 sends without a matching recv")
    assert len(found[0].nodes) == 16
    assert found[0].data["none"] == 16
