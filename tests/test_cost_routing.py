"""The busiest expert-parallel rank under balanced routing (dagen.cost.routing)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_plan

from dagen.cost import roofline
from dagen.cost.comm import comm_durations
from dagen.cost.deepep import ETA_LL_INTER
from dagen.cost.roofline import compute_durations
from dagen.cost.routing import load_peak, pool_load_peak
from dagen.graph.build import build_graph
from dagen.graph.ir import Graph, Op

WIDE = dict(experts=64, top_k=8, ep=16, dp=16, gpus_per_node=4, hidden_size=512)
"""Sixteen GPUs on four hosts, four experts per rank."""


@pytest.mark.parametrize(("ranks", "tokens"), [(8, 64), (16, 16), (72, 128), (144, 44)])
def test_the_peak_matches_a_simulation_of_uniform_routing(ranks: int, tokens: int) -> None:
    # every token of every rank picks top_k distinct experts uniformly (a perfect EPLB:
    # SGLang's "random expert selection"); the layer waits for the rank that got most
    experts, top_k = 4 * ranks, 8
    rng = np.random.default_rng(7)
    trials = 40
    keys = rng.random((trials, ranks * tokens, experts), dtype=np.float32)
    picks = np.argpartition(keys, top_k, axis=2)[:, :, :top_k]  # top_k distinct experts
    per_rank = np.stack([np.bincount(t.ravel() // 4, minlength=ranks) for t in picks])
    mean = tokens * top_k
    simulated = float(per_rank.max(axis=1).mean()) / mean
    assert per_rank.mean() == pytest.approx(mean)
    assert load_peak(mean, ranks) == pytest.approx(simulated, rel=0.02)
    assert simulated > 1.03  # the effect is real at these sizes


def test_no_expert_parallelism_no_peak() -> None:
    assert load_peak(1024, 1) == 1.0
    g = build_graph(make_plan(experts=8, top_k=2, phase="decode", batch=8))
    assert pool_load_peak(g.pools[0]) == 1.0


def test_the_roofline_prices_dispatch_and_experts_at_the_busiest_rank(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = make_plan(**WIDE, phase="decode", batch=64, prompt_len=256)
    g = build_graph(plan)
    pool = g.pools[0]
    d = pool.dims
    peak = pool_load_peak(pool)
    assert peak == pytest.approx(load_peak(d.slots * d.slot_tokens, 16))
    assert peak > 1.1  # 4 tokens x 8 per rank: a thin decode batch
    # low-latency dispatch across four hosts: the busiest rank receives peak x the bytes
    i = int(np.flatnonzero(g.op == Op.MOE_DISPATCH)[0])
    hw = pool.hardware
    nbytes = float(g.tmpl_bytes[g.tmpl[i]])
    want = hw.inter_node_latency_us * 1e-6 + nbytes * peak * (1 - 1 / 4) / (
        ETA_LL_INTER * hw.inter_node_gbps * 1e9
    )
    assert comm_durations(g)[i] == pytest.approx(want, rel=1e-9)
    # a compute-bound expert slot: its FLOP term is peak x the balanced one
    big = build_graph(make_plan(**{**WIDE, "hidden_size": 4096}, expert_ffn_size=2048,
                                 phase="prefill", batch=16, prompt_len=4096))  # fmt: skip
    j = int(np.flatnonzero(big.op == Op.MOE_EXPERT)[0])
    t = compute_durations(big)[j]
    monkeypatch.setattr(roofline, "pool_load_peak", lambda _pool: 1.0)
    balanced = compute_durations(big)[j]
    fixed = t0_of(big, j)
    assert (t - fixed) / (balanced - fixed) == pytest.approx(pool_load_peak(big.pools[0]))
    assert pool_load_peak(big.pools[0]) > 1.0


def t0_of(g: Graph, i: int) -> float:
    """The node's fixed time: its time with its FLOPs and bytes at zero."""
    ref = compute_durations(g)[i]
    flops, hbm = g.tmpl_flops.copy(), g.tmpl_hbm.copy()
    g.tmpl_flops[:] = 0.0
    g.tmpl_hbm[:] = 0.0
    try:
        return float(compute_durations(g)[i])
    finally:
        g.tmpl_flops[:], g.tmpl_hbm[:] = flops, hbm
        assert compute_durations(g)[i] == ref


def test_a_measured_balance_sets_the_peak_and_slows_the_exchange() -> None:
    plan = make_plan(**WIDE, phase="decode", batch=64, prompt_len=256)
    skewed = dataclasses.replace(
        plan, workload=dataclasses.replace(plan.workload, expert_balance=0.5)
    )
    g, s = build_graph(plan), build_graph(skewed)
    assert pool_load_peak(s.pools[0]) == 2.0
    i = int(np.flatnonzero(g.op == Op.MOE_COMBINE)[0])
    alpha = plan.hardware.inter_node_latency_us * 1e-6
    ratio = (comm_durations(s)[i] - alpha) / (comm_durations(g)[i] - alpha)
    assert ratio == pytest.approx(2.0 / pool_load_peak(g.pools[0]))
    # without expert parallelism there is no busiest rank to wait for
    one = make_plan(experts=8, top_k=2, phase="decode", batch=8)
    one = dataclasses.replace(one, workload=dataclasses.replace(one.workload, expert_balance=0.5))
    assert pool_load_peak(build_graph(one).pools[0]) == 1.0
