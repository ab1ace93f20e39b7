"""Graph checks across parallel layouts: no finding on any valid layout of a grid, and
faults that every member-level check used to miss (each made consistent on both sides)
are caught and named.

Each fault test builds a valid graph with ``make_plan`` + ``build_graph``, injects the
fault with :mod:`dagen.checks.edit` or column edits, and asserts the code and the nodes.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import pytest
from conftest import make_plan

from dagen.checks import Code, check_collective_order, check_comms, check_completeness, check_graph
from dagen.errors import MeshError, PlanError, PlanInfeasible
from dagen.findings import Finding
from dagen.graph.algo import drop_nodes, duplicate_nodes
from dagen.graph.build import build_graph
from dagen.graph.ir import Coll, EdgeKind, Graph, GroupKind, Kind, Op


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def where(g: Graph, **cols: int) -> np.ndarray:
    mask = np.ones(g.n_nodes, dtype=bool)
    for name, value in cols.items():
        mask &= getattr(g, name) == value
    return np.flatnonzero(mask)


# --- no false positives over a grid of valid layouts ----------------------------------

MOE_KINDS: dict[str, dict[str, Any]] = {
    "dense": {},
    "ep2": dict(ep=2, experts=8, first_dense_layers=1),
    "ep4-etp2-redundant-shared": dict(
        ep=4, etp=2, experts=8, redundant_experts=4, shared_experts=1, first_dense_layers=1
    ),
}


def _grid() -> list[dict[str, Any]]:
    out = []
    for (tp, cp, sp), pp, moe, steps, conv in itertools.product(
        [(1, 1, False), (2, 1, False), (2, 2, True), (1, 2, False)],
        [1, 3],
        sorted(MOE_KINDS),
        [1, 3],
        ["megatron", "orthogonal"],
    ):
        kw: dict[str, Any] = dict(tp=tp, cp=cp, sequence_parallel=sp, pp=pp, convention=conv)
        kw |= dict(layers=6, micro_batches=2, batch=32, dp=4 if conv == "megatron" else 1)
        kw |= MOE_KINDS[moe]
        if conv == "orthogonal" and moe == "dense":
            continue  # the orthogonal reading only differs with ep
        if steps > 1:
            kw |= dict(phase="decode", decode_steps=steps, gen_len=4)
        out.append(kw)
    return out


def test_no_finding_on_any_valid_layout_of_the_grid() -> None:
    built = 0
    for kw in _grid():
        try:
            g = build_graph(make_plan(**kw))
        except (PlanError, PlanInfeasible, MeshError):  # infeasible (world vs etp·ep·pp)
            continue
        built += 1
        found = check_graph(g) + check_completeness(g) + check_comms(g)
        found += check_collective_order(g)
        assert found == [], (kw, [(f.code, f.message) for f in found])
    assert built >= 70  # the grid really covers tp, cp, sp, pp, ep, etp, redundancy, decode


# --- point-to-point: a send must reach the next stage of its own pipeline -------------


def _swap_destinations(g: Graph, a: int, b: int) -> Graph:
    """Sends ``a`` and ``b`` exchange recvs, with aux and p2p edges consistent on both
    sides: every per-pair check (peer, bytes, micro-batch, step) still agrees."""
    p2p = np.flatnonzero(g.ekind == EdgeKind.P2P)
    ra = int(g.dst[p2p[g.src[p2p] == a][0]])
    rb = int(g.dst[p2p[g.src[p2p] == b][0]])
    aux, dst = g.aux.copy(), g.dst.copy()
    aux[a], aux[b], aux[ra], aux[rb] = g.rank[rb], g.rank[ra], g.rank[b], g.rank[a]
    dst[p2p[g.src[p2p] == a]], dst[p2p[g.src[p2p] == b]] = rb, ra
    return dataclasses.replace(g, aux=aux, dst=dst)


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_send_to_another_replicas_pipeline_is_a_peer_problem(phase: str) -> None:
    extra = dict(phase="decode", decode_steps=2, gen_len=4) if phase == "decode" else {}
    g = build_graph(make_plan(pp=2, dp=2, micro_batches=1, batch=4, **extra))
    last = g.mesh.stage == 1
    # Decode: the chain from the last stage back to the first; prefill: stage 0 → 1.
    rank_a, rank_b = (2, 3) if phase == "decode" else (0, 1)
    assert bool(last[rank_a]) == (phase == "decode")
    a = int(where(g, kind=Kind.SEND, rank=rank_a, mb=0, step=0)[0])
    b = int(where(g, kind=Kind.SEND, rank=rank_b, mb=0, step=0)[0])
    assert g.mesh.replica[rank_a] != g.mesh.replica[rank_b]
    bad = _swap_destinations(g, a, b)
    found = check_comms(bad)
    assert codes(found) == [Code.GRAPH_P2P_PEER]
    assert "ranks the schedule does not pair" in found[0].message
    assert set(found[0].nodes) >= {g.node_id(a), g.node_id(b)}
    assert codes(check_graph(bad)) == [Code.GRAPH_P2P_PEER]


# --- collectives over the wrong dimension ---------------------------------------------


def _group_id(g: Graph, kind: GroupKind, members: list[int]) -> int:
    for k in range(g.group_kind.shape[0]):
        if g.group_kind[k] == kind and g.group(k).tolist() == members:
            return k
    raise AssertionError((kind, members))


def test_allreduce_over_the_cp_group_instead_of_tp() -> None:
    # tp=2, cp=2: tp groups [0, 1], [2, 3]; cp groups [0, 2], [1, 3]. The layer-0 FFN
    # all-reduce is rewired over the cp groups: every member present, same op and bytes.
    g = build_graph(make_plan(tp=2, cp=2, micro_batches=1, batch=4))
    ffn = where(g, op=Op.FFN_ALLREDUCE, layer=0)
    a, b = np.unique(g.inst[ffn]).tolist()
    inst, aux, ig = g.inst.copy(), g.aux.copy(), g.inst_group.copy()
    for tp_coord, i, members in ((0, a, [0, 2]), (1, b, [1, 3])):
        k = _group_id(g, GroupKind.CP, members)
        mine = ffn[g.mesh.coords["tp"][g.rank[ffn]] == tp_coord]
        inst[mine], aux[mine], ig[i] = i, k, k
    bad = dataclasses.replace(g, inst=inst, aux=aux, inst_group=ig)
    found = check_comms(bad)
    assert codes(found) == [Code.GRAPH_COLL_OP]
    assert "ffn.allreduce) runs all-reduce over cp group" in found[0].message
    assert "expected all-reduce over a tp group" in found[0].message
    assert set(found[0].nodes) == {g.node_id(int(i)) for i in ffn}


def test_allreduce_labelled_all_gather() -> None:
    g = build_graph(make_plan(tp=2, micro_batches=1, batch=4))
    node = int(where(g, op=Op.ATTN_ALLREDUCE, layer=1, rank=1)[0])
    coll = g.inst_coll.copy()
    coll[g.inst[node]] = Coll.ALL_GATHER
    found = check_comms(dataclasses.replace(g, inst_coll=coll))
    assert codes(found) == [Code.GRAPH_COLL_OP]
    assert "runs all-gather over tp group" in found[0].message
    assert g.node_id(node) in found[0].nodes


# --- groups of one kind that share ranks, groups that span replicas -------------------


def _second_tp_group_for(g: Graph, op: Op) -> Graph:
    """``op``'s collectives moved to a second TP communicator over the same ranks: a rank
    is then in two groups of one kind (valid; NCCL matches calls per communicator)."""
    nodes = where(g, op=op, kind=Kind.COLLECTIVE)
    old = int(g.aux[nodes[0]])
    members = g.group(old)
    new = g.group_kind.shape[0]
    aux, ig = g.aux.copy(), g.inst_group.copy()
    aux[nodes], ig[np.unique(g.inst[nodes])] = new, new
    return dataclasses.replace(
        g,
        aux=aux,
        inst_group=ig,
        group_kind=np.append(g.group_kind, g.group_kind[old]),
        group_offsets=np.append(g.group_offsets, g.group_offsets[-1] + members.size),
        group_members=np.concatenate([g.group_members, members]).astype(g.group_members.dtype),
    )


def test_two_tp_groups_over_the_same_ranks_pass_and_keep_their_own_order() -> None:
    g = _second_tp_group_for(
        build_graph(make_plan(tp=2, micro_batches=2, batch=4)), Op.FFN_ALLREDUCE
    )
    assert check_graph(g) == [] and check_collective_order(g) == []
    # Rank 1 issues the first two calls of the second group in swapped order.
    first, second = where(g, op=Op.FFN_ALLREDUCE, rank=1)[:2]
    inst = g.inst.copy()
    inst[first], inst[second] = g.inst[second], g.inst[first]
    found = check_collective_order(dataclasses.replace(g, inst=inst))
    assert codes(found) == [Code.GRAPH_COLL_ORDER]
    assert f"tp group {g.group_kind.shape[0] - 1} (ranks 0, 1), call #1" in found[0].message
    # A member missing from the second group is told apart by its group's members.
    found = check_comms(drop_nodes(g, [second]))
    assert codes(found) == [Code.GRAPH_COLL_MEMBERS]
    assert "missing [1]" in found[0].message


def test_folded_ep_group_spanning_replicas() -> None:
    # tp=2, dp=4, ep=4, etp=2: EP group [1, 3, 5, 7] spans the four attention replicas.
    g = build_graph(make_plan(tp=2, dp=4, ep=4, etp=2, experts=8, micro_batches=1))
    assert g.mesh.groups("ep").tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]
    node = int(where(g, op=Op.MOE_DISPATCH, rank=7, layer=0)[0])
    found = check_comms(drop_nodes(g, [node]))
    assert codes(found) == [Code.GRAPH_COLL_MEMBERS]
    assert "ranks [1, 3, 5], missing [7]" in found[0].message
    assert found[0].ranks == (1, 3, 5, 7)
    dispatch, combine = (
        where(g, op=Op.MOE_DISPATCH, rank=7, layer=0)[0],
        where(g, op=Op.MOE_COMBINE, rank=7, layer=0)[0],
    )
    inst = g.inst.copy()
    inst[dispatch], inst[combine] = g.inst[combine], g.inst[dispatch]
    found = check_collective_order(dataclasses.replace(g, inst=inst))
    assert codes(found) == [Code.GRAPH_COLL_ORDER]
    assert "ep group" in found[0].message and "rank 7 issues" in found[0].message


# --- experts: a redundant replica never sits on the expert's own rank -----------------


def test_expert_copy_on_its_own_rank_is_not_a_replica() -> None:
    # EP4, 8 experts + 4 replicas: rank 0 hosts experts 0, 1 and a replica of 6.
    g = build_graph(
        make_plan(dp=4, ep=4, experts=8, redundant_experts=4, micro_batches=1, layers=1)
    )
    hosted = g.expert[where(g, op=Op.MOE_EXPERT, rank=0)].tolist()
    assert hosted == [0, 1, 6]
    one = int(where(g, op=Op.MOE_EXPERT, rank=0, expert=1)[0])
    six = int(where(g, op=Op.MOE_EXPERT, rank=0, expert=6)[0])
    # The replica of 6 becomes a second expert 1 on rank 0: as many copies as planned.
    bad = drop_nodes(duplicate_nodes(g, [one]), [six + 1])
    found = check_completeness(bad)
    assert codes(found) == [Code.GRAPH_EXPERT_DUPLICATE]
    assert "repeated on a rank that already runs that expert" in found[0].message
    assert found[0].nodes == (g.node_id(one),) * 2
    assert codes(check_graph(bad)) == [Code.GRAPH_EXPERT_DUPLICATE]


# --- a collective emitted as a plain compute node --------------------------------------


def test_allreduce_emitted_as_compute_without_an_instance() -> None:
    # Both members of one TP all-reduce become compute nodes and the instance is gone:
    # every (rank, layer, op) cell is still filled, and no communication check sees it.
    g = build_graph(make_plan(tp=2, micro_batches=1, batch=4))
    nodes = where(g, op=Op.ATTN_ALLREDUCE, layer=0)
    k = int(g.inst[nodes[0]])
    kind, inst = g.kind.copy(), g.inst.copy()
    kind[nodes], inst[nodes] = Kind.COMPUTE, -1
    inst[inst > k] -= 1
    bad = dataclasses.replace(
        g,
        kind=kind,
        inst=inst,
        inst_group=np.delete(g.inst_group, k),
        inst_coll=np.delete(g.inst_coll, k),
    )
    assert check_comms(bad) == []
    found = check_completeness(bad)
    assert codes(found) == [Code.GRAPH_MISSING, Code.GRAPH_UNEXPECTED]
    assert "(attn.allreduce ×2) on ranks 0, 1" in found[0].message
    assert "a node of another kind than its op's" in found[1].message
    assert found[1].nodes == tuple(g.node_ids(nodes))
    assert codes(check_graph(bad)) == [Code.GRAPH_MISSING, Code.GRAPH_UNEXPECTED]


def test_members_of_one_allreduce_from_different_micro_batches() -> None:
    # Rank 1's layer-0 all-reduces of micro-batches 0 and 1 swap labels: each cell is still
    # filled once and the issue order is unchanged, but instance X now reduces rank 0's
    # micro-batch 0 with rank 1's micro-batch 1.
    g = build_graph(make_plan(tp=2, micro_batches=2, batch=4))
    n0, n1 = where(g, op=Op.ATTN_ALLREDUCE, layer=0, rank=1)
    mb = g.mb.copy()
    mb[n0], mb[n1] = g.mb[n1], g.mb[n0]
    bad = dataclasses.replace(g, mb=mb)
    found = check_comms(bad)
    assert codes(found) == [Code.GRAPH_COLL_OP]
    assert "disagree on (step, layer, micro-batch)" in found[0].message
    assert "r0: t0/L0/mb0, r1: t0/L0/mb1" in found[0].message
    assert g.node_id(int(n0)) in found[0].nodes
    assert Code.GRAPH_COLL_OP in codes(check_graph(bad))
