"""DeepEP's all-to-all modes and the SMs its normal kernels take (dagen.cost.deepep)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_plan

from dagen.cost import estimate
from dagen.cost.comm import comm_durations
from dagen.cost.deepep import COMM_SMS, GPU_SMS, contended, expected_nodes, mode_of
from dagen.cost.roofline import Roofline
from dagen.graph.build import build_graph
from dagen.graph.ir import Graph, Kind, Op
from dagen.plan.model import AllToAll, Plan, Runtime

WIDE = dict(experts=16, top_k=8, ep=16, dp=16, gpus_per_node=4, micro_batches=2, hidden_size=512)
"""Sixteen GPUs on four hosts: every dispatch and combine leaves the node."""


def with_mode(plan: Plan, mode: str) -> Plan:
    return dataclasses.replace(plan, runtime=Runtime(all_to_all=AllToAll(mode)))


def a2a_seconds(g: Graph, latency_steps: int = 0) -> float:
    """Rank 0's dispatch and combine time, less ``latency_steps`` α each."""
    at = (g.rank == 0) & np.isin(g.op, [int(Op.MOE_DISPATCH), int(Op.MOE_COMBINE)])
    alpha = g.pools[0].hardware.inter_node_latency_us * 1e-6
    return float(comm_durations(g)[at].sum()) - latency_steps * alpha * int(at.sum())


def test_auto_is_low_latency_for_decode_and_normal_for_prefill() -> None:
    for phase, want in (("decode", AllToAll.LOW_LATENCY), ("prefill", AllToAll.NORMAL)):
        g = build_graph(make_plan(**WIDE, phase=phase, batch=32))
        assert mode_of(g.pools[0]) is want


def test_normal_is_faster_for_prefill_sized_messages() -> None:
    plan = make_plan(**WIDE, batch=32, prompt_len=1024)
    normal = a2a_seconds(build_graph(with_mode(plan, "normal")))
    low = a2a_seconds(build_graph(with_mode(plan, "low_latency")))
    assert normal < low
    normal = a2a_seconds(build_graph(with_mode(plan, "normal")), latency_steps=4)
    low = a2a_seconds(build_graph(with_mode(plan, "low_latency")), latency_steps=1)
    # A token crosses to each of the ~3.9 nodes its 8 copies reach once, at the NIC's
    # full rate, instead of 6 remote copies at 78 % of it.
    assert low / normal == pytest.approx((1 - 1 / 4) * 8 / expected_nodes(4, 8) / 0.78, rel=0.05)


def test_low_latency_is_faster_for_decode_sized_messages() -> None:
    plan = make_plan(**WIDE, batch=32, phase="decode", prompt_len=256)
    normal = a2a_seconds(build_graph(with_mode(plan, "normal")))
    low = a2a_seconds(build_graph(with_mode(plan, "low_latency")))
    assert low < normal  # one latency step instead of ⌈log₂ 16⌉ = 4
    est = {
        m: estimate(build_graph(with_mode(plan, m))).makespan_s for m in ("normal", "low_latency")
    }
    assert est["low_latency"] < est["normal"]


def test_expected_nodes_matches_a_simulation() -> None:
    rng = np.random.default_rng(0)
    hits = rng.integers(0, 4, size=(20000, 8))
    seen = np.mean([len(set(row)) for row in hits.tolist()])
    assert expected_nodes(4, 8) == pytest.approx(seen, rel=0.01)


@pytest.mark.parametrize(("mode", "slowed"), [("normal", True), ("low_latency", False)])
def test_overlap_on_normal_kernels_slows_compute_by_their_sm_share(mode: str, slowed: bool) -> None:
    plan = with_mode(make_plan(**WIDE, batch=32, overlap="two_batch"), mode)
    g = build_graph(plan)
    raw = Roofline().node_seconds(g)
    out = contended(g, raw)
    compute = g.kind == Kind.COMPUTE
    moe = np.isin(g.layer, g.layer[g.op == Op.MOE_DISPATCH])
    factor = 1 / (1 - COMM_SMS / GPU_SMS) if slowed else 1.0
    assert np.allclose(out[compute & moe], raw[compute & moe] * factor)
    assert np.array_equal(out[~(compute & moe)], raw[~(compute & moe)])
    assert np.count_nonzero(compute & ~moe) > 0  # embed, head: outside every MoE layer


def test_no_overlap_no_contention() -> None:
    g = build_graph(with_mode(make_plan(**WIDE, batch=32), "normal"))
    raw = Roofline().node_seconds(g)
    assert contended(g, raw) is raw
