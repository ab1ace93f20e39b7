"""Deployments of several pools: each expanded on its own, laid end to end, checked and
priced per pool."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from conftest import make_plan

from dagen.checks import check_graph
from dagen.cost import estimate
from dagen.errors import ExportError, GraphError, PlanInfeasible
from dagen.export import ExportContext, emit
from dagen.graph.algo import drop_nodes
from dagen.graph.build import build_graph, build_pools
from dagen.graph.ir import Graph, Kind
from dagen.plan.presets import PRESETS

MOE = dict(experts=8, ep=2)


@pytest.fixture(scope="module")
def pools() -> tuple[Graph, Graph, Graph]:
    prefill = make_plan(pp=2, tp=2, micro_batches=2, batch=4, **MOE)
    decode = make_plan(tp=2, dp=2, phase="decode", decode_steps=2, gen_len=4, batch=8, **MOE)
    h200 = dataclasses.replace(decode.hardware, memory_gb=None, **PRESETS["H200"])
    decode = dataclasses.replace(decode, hardware=h200)
    both = build_pools([("prefill", prefill), ("decode", decode)])
    return both, build_graph(prefill), build_graph(decode)


def test_each_pool_is_its_own_build_with_its_ranks_after_the_earlier_pools(
    pools: tuple[Graph, Graph, Graph],
) -> None:
    both, first, second = pools
    assert [p.name for p in both.pools] == ["prefill", "decode"]
    assert both.n_nodes == first.n_nodes + second.n_nodes
    assert both.world == first.world + second.world
    shift = first.world
    lo = both.pools[1].node0
    np.testing.assert_array_equal(both.rank[lo:], second.rank + shift)
    for col in ("op", "kind", "layer", "mb", "step", "expert"):
        np.testing.assert_array_equal(getattr(both, col)[lo:], getattr(second, col))
    np.testing.assert_array_equal(both.tmpl_bytes[both.tmpl[lo:]], second.tmpl_bytes[second.tmpl])
    assert both.ranks.host[shift] == first.ranks.host.max() + 1  # pools never share a host
    sends = np.flatnonzero(both.kind[lo:] == Kind.SEND) + lo
    assert np.all(both.aux[sends] >= shift)  # peers renumbered with their pool
    assert both.node_id(lo).startswith(f"r{shift}/s0/t0/")  # the decode pool shows steps


def test_a_multi_pool_graph_checks_clean_and_faults_are_still_found(
    pools: tuple[Graph, Graph, Graph],
) -> None:
    both = pools[0]
    both.lint()
    assert check_graph(both) == []
    lo = both.pools[1].node0
    qkv = lo + int(np.flatnonzero(both.op[lo:] == 3)[0])  # a decode-pool attn.qkv
    broken = drop_nodes(both, [qkv])
    broken = dataclasses.replace(
        broken,
        pools=(both.pools[0], dataclasses.replace(both.pools[1], node1=both.pools[1].node1 - 1)),
    )
    codes = {f.code for f in check_graph(broken)}
    assert "GRAPH-MISSING" in codes
    missing = next(f for f in check_graph(broken) if f.code == "GRAPH-MISSING")
    assert all(r >= both.pools[1].rank0 for r in missing.ranks)  # named by global rank


def test_each_pool_is_priced_on_its_own_hardware(pools: tuple[Graph, Graph, Graph]) -> None:
    both, first, second = pools
    est = estimate(both)
    assert [p.name for p in est.pools] == ["prefill", "decode"]
    alone = estimate(first), estimate(second)
    assert est.pools[0].ttft_s == pytest.approx(alone[0].ttft_s)
    assert est.pools[1].tpot_s == pytest.approx(alone[1].tpot_s)
    assert est.ttft_s == est.pools[0].ttft_s and est.tpot_s == est.pools[1].tpot_s
    cap = est.memory.capacity_per_rank
    assert cap[0] == round(80.0 * 1e9) and cap[-1] == round(PRESETS["H200"]["memory_gib"] * 2**30)


def test_json_lists_the_pools_and_pictures_refuse_them(pools: tuple[Graph, Graph, Graph]) -> None:
    both = pools[0]
    buf = io.BytesIO()
    emit("json", ExportContext(graph=both), buf)
    doc = json.loads(buf.getvalue())
    assert [p["name"] for p in doc["pools"]] == ["prefill", "decode"]
    assert len(doc["nodes"]) == both.n_nodes and set(doc["plan"]["pools"]) == {"prefill", "decode"}
    with pytest.raises(ExportError, match="draws one pool"):
        emit("dot", ExportContext(graph=both), io.BytesIO())
    with pytest.raises(GraphError, match="2 pools"):
        _ = both.mesh


def test_pools_must_serve_the_same_model() -> None:
    a = make_plan()
    b = make_plan(hidden_size=128)
    with pytest.raises(PlanInfeasible, match="same model"):
        build_pools([("a", a), ("b", b)])
