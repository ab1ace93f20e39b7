"""Alpha-beta times of collectives and sends: bus factors and the link a group uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_plan

from dagen.cost.comm import ONESHOT_LATENCY_S, bus_factor, comm_durations, group_crosses_hosts
from dagen.cost.deepep import ETA_NORMAL_INTRA
from dagen.cost.routing import pool_load_peak
from dagen.graph.build import build_graph
from dagen.graph.ir import Coll, Graph, Kind, Op
from dagen.plan.model import Plan


@pytest.mark.parametrize("n", [2, 3, 4, 8, 16, 64])
def test_bus_factors_are_the_nccl_tests_ones(n: int) -> None:
    assert bus_factor(Coll.ALL_REDUCE, n) == pytest.approx(2 * (n - 1) / n)
    for coll in (Coll.ALL_GATHER, Coll.REDUCE_SCATTER, Coll.ALL_TO_ALL):
        assert bus_factor(coll, n) == pytest.approx((n - 1) / n)


def test_a_group_of_one_moves_nothing() -> None:
    assert bus_factor(Coll.ALL_REDUCE, 1) == 0.0


def _first(graph: Graph, op: Op) -> int:
    return int(np.flatnonzero(graph.op == op)[0])


def _expected(
    plan: Plan, n: int, nbytes: int, factor: float, inter: bool, oneshot: bool = False
) -> float:
    hw = plan.hardware
    bw = (hw.inter_node_gbps if inter else hw.intra_node_gbps) * 1e9 * hw.net_efficiency
    alpha = (hw.inter_node_latency_us if inter else hw.intra_node_latency_us) * 1e-6
    nccl = alpha * math.ceil(math.log2(n)) + factor * nbytes / bw
    if inter or not oneshot:
        return nccl
    return min(nccl, ONESHOT_LATENCY_S + (n - 1) * nbytes / bw)  # the one-shot all-reduce


@pytest.mark.parametrize(("tp", "per_node", "inter"), [(2, 8, False), (8, 8, False), (4, 2, True)])
def test_tp_all_reduce_uses_the_link_of_its_group(tp: int, per_node: int, inter: bool) -> None:
    plan = make_plan(tp=tp, gpus_per_node=per_node, heads=8, kv_heads=8, head_dim=8)
    graph = build_graph(plan)
    i = _first(graph, Op.ATTN_ALLREDUCE)
    assert bool(group_crosses_hosts(graph)[graph.aux[i]]) is inter
    nbytes = int(graph.tmpl_bytes[graph.tmpl[i]])
    expect = _expected(plan, tp, nbytes, 2 * (tp - 1) / tp, inter, oneshot=True)
    assert comm_durations(graph)[i] == pytest.approx(expect, rel=1e-12)


def test_inter_node_is_slower_than_intra_node_for_the_same_group_size() -> None:
    inside = build_graph(make_plan(tp=4, gpus_per_node=8))
    across = build_graph(make_plan(tp=4, gpus_per_node=2))
    a, b = _first(inside, Op.ATTN_ALLREDUCE), _first(across, Op.ATTN_ALLREDUCE)
    assert comm_durations(across)[b] > comm_durations(inside)[a]


def test_expert_all_to_all_moves_n_minus_one_over_n_of_its_buffer_on_deepep_normal() -> None:
    plan = make_plan(ep=4, dp=4, experts=8, top_k=2, gpus_per_node=8, batch=8)
    graph = build_graph(plan)
    i = _first(graph, Op.MOE_DISPATCH)
    assert graph.inst_coll[graph.inst[i]] == Coll.ALL_TO_ALL
    nbytes = int(graph.tmpl_bytes[graph.tmpl[i]])
    # Prefill inside one node: DeepEP's normal kernels at 0.97 of NVLink (dagen.cost.deepep),
    # the busiest rank's share of the bytes (dagen.cost.routing).
    hw = plan.hardware
    peak = pool_load_peak(graph.pools[0])
    assert peak > 1.0
    expect = hw.intra_node_latency_us * 1e-6 * 2 + 3 / 4 * nbytes * peak / (
        ETA_NORMAL_INTRA * hw.intra_node_gbps * 1e9
    )
    assert comm_durations(graph)[i] == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize(("per_node", "inter"), [(8, False), (1, True)])
def test_send_takes_latency_plus_bytes_over_the_link_and_recv_waits(
    per_node: int, inter: bool
) -> None:
    plan = make_plan(pp=2, gpus_per_node=per_node, micro_batches=2, batch=4)
    graph = build_graph(plan)
    seconds = comm_durations(graph)
    send = _first(graph, Op.PP_SEND)
    hw = plan.hardware
    bw = (hw.inter_node_gbps if inter else hw.intra_node_gbps) * 1e9 * hw.net_efficiency
    alpha = (hw.inter_node_latency_us if inter else hw.intra_node_latency_us) * 1e-6
    assert seconds[send] == pytest.approx(
        alpha + graph.tmpl_bytes[graph.tmpl[send]] / bw, rel=1e-12
    )
    assert np.all(seconds[graph.kind == Kind.RECV] == 0.0)
    assert np.all(seconds[graph.kind == Kind.COMPUTE] == 0.0)
