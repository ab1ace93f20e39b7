"""The measured and auto cost models on whole graphs: MLA, MoE and collectives from
aiconfigurator-core's tables, per-node sources, coverage share and fallback notes.

Expected node times are read independently from the package's parquet files with pyarrow
(a monotone table answers a measured point with the least latency measured at an equal
or larger shape, :class:`dagen.cost.kernels_grid.SlicedTable`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiconfigurator_core")

import pyarrow.compute as pc
import pyarrow.parquet as pq
from conftest import make_plan

from dagen.cost import estimate
from dagen.cost.comm import group_crosses_hosts
from dagen.cost.kernels import KernelTables
from dagen.cost.measured import Measured
from dagen.cost.roofline import Roofline
from dagen.graph.build import build_graph
from dagen.graph.ir import Graph, Kind
from dagen.graph.ops import Op
from dagen.plan.loader import load_plan
from dagen.plan.model import Hardware, Phase
from dagen.plan.presets import PRESETS

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "tests" / "data" / "plans" / "published"
EP32 = PUBLISHED / "sglang-deepseek-v3-h100-ep32-prefill-4096.yaml"
DEP8 = PUBLISHED / "trtllm-deepseek-r1-h200-dep8-c1024-1024-2048.yaml"

MIXTRAL = dict(
    hidden_size=4096, heads=32, kv_heads=8, head_dim=128, ffn_size=14336, vocab_size=32000,
    layers=2, experts=8, top_k=2, expert_ffn_size=14336,
)  # fmt: skip


def _mixtral(batch: int = 16, preset: str = "H100-SXM-80GB"):  # type: ignore[no-untyped-def]
    plan = make_plan(**MIXTRAL, tp=2, etp=2, world_size=2, phase=Phase.DECODE, batch=batch,
                     prompt_len=512)  # fmt: skip
    return dataclasses.replace(plan, hardware=Hardware(preset=preset, **PRESETS[preset]))


def _first(graph: Graph, op: Op) -> int:
    return int(np.flatnonzero(graph.op == op)[0])


def _monotone_row(path: Path, axis: str, at: float, **keys: object) -> float:
    """Least latency (s) of the rows with these keys and ``axis ≥ at`` (the monotone point)."""
    table = pq.read_table(path)
    for col, value in keys.items():
        table = table.filter(pc.equal(table[col], value))
    table = table.filter(pc.greater_equal(table[axis], at))
    assert table.num_rows, (path, keys)
    exact = table.filter(pc.equal(table[axis], at))
    assert exact.num_rows, f"{at} is not a measured {axis}"
    return float(pc.min(table["latency"]).as_py()) * 1e-3


def test_an_expert_node_is_its_rank_moe_row_split_over_its_experts() -> None:
    graph = build_graph(_mixtral())
    model = Measured()
    seconds, source = model.node_seconds(graph), model.node_sources(graph)
    i = _first(graph, Op.MOE_EXPERT)
    d = graph.pools[0].dims
    tokens = d.slot_tokens * d.experts / d.top_k  # 16 decode tokens, all on this rank
    assert tokens == 16
    tables = KernelTables.load("H100-SXM-80GB")
    tables.moe(tokens, 4096, 14336, 8, 2, 2, 1, "bfloat16")
    row = _monotone_row(
        tables.table_path("moe_perf"), "num_tokens", tokens, moe_dtype="bfloat16",
        hidden_size=4096, inter_size=14336, topk=2, num_experts=8, moe_tp_size=2,
        moe_ep_size=1, distribution="power_law_1.01",
    )  # fmt: skip
    assert seconds[i] == pytest.approx(row / 8, rel=1e-9)
    assert source[i] == 1


def test_a_tp_all_reduce_takes_the_faster_of_nccl_and_custom() -> None:
    graph = build_graph(_mixtral())
    model = Measured()
    i = _first(graph, Op.ATTN_ALLREDUCE)
    nbytes = int(graph.tmpl_bytes[graph.tmpl[i]])
    assert nbytes == 16 * 4096 * 2
    tables = KernelTables.load("H100-SXM-80GB")
    tables.nccl("all_reduce", 2, nbytes)
    tables.custom_all_reduce(2, nbytes)
    nccl = _monotone_row(tables.table_path("nccl_perf"), "message_size", nbytes / 2,
                         op_name="all_reduce", nccl_dtype="half", num_gpus=2)  # fmt: skip
    custom = tables.custom_all_reduce(2, nbytes)
    assert model.node_seconds(graph)[i] == pytest.approx(min(nccl, float(custom)), rel=1e-9)
    assert model.node_sources(graph)[i] == 1


def test_a_covered_plan_reports_its_measured_share() -> None:
    graph = build_graph(_mixtral())
    est = estimate(graph, cost_model=Measured(auto=True))
    priced = (graph.kind == Kind.COMPUTE) | (graph.kind == Kind.COLLECTIVE)
    codes = Measured(auto=True).node_sources(graph)[priced]
    assert est.priced_by["measured"] == pytest.approx(round(codes.mean(), 4))
    assert est.priced_by["measured"] + est.priced_by["roofline"] == pytest.approx(1)
    # every matmul, attention, expert and collective is measured; norms etc. are not
    for op in (Op.ATTN_QKV, Op.ATTN_CORE, Op.MOE_EXPERT, Op.ATTN_ALLREDUCE):
        assert (Measured(auto=True).node_sources(graph)[graph.op == op] == 1).all(), op.label
    assert (Measured(auto=True).node_sources(graph)[graph.op == Op.ATTN_NORM] == 0).all()


def test_a_gpu_without_tables_falls_back_with_a_note() -> None:
    graph = build_graph(_mixtral(preset="MI300X"))
    model = Measured(auto=True)
    est = estimate(graph, cost_model=model)
    assert est.priced_by["measured"] == 0
    assert any("MI300X" in n and "roofline" in n for n in est.cost_notes)
    np.testing.assert_array_equal(model.node_seconds(graph), Roofline().node_seconds(graph))


def test_inter_node_collectives_fall_back_and_are_counted() -> None:
    graph = build_graph(load_plan(EP32))
    model = Measured(auto=True)
    source = model.node_sources(graph)
    coll = np.flatnonzero(graph.kind == Kind.COLLECTIVE)
    sizes = np.diff(graph.group_offsets)[graph.aux[coll]]
    crossing = coll[group_crosses_hosts(graph)[graph.aux[coll]] & (sizes > 1)]
    assert crossing.size and (source[crossing] == 0).all()
    note = next(n for n in model.notes if "inter-node" in n)
    assert note.startswith(f"{crossing.size:,} inter-node collective nodes")
    rough = Roofline().node_seconds(graph)
    np.testing.assert_array_equal(model.node_seconds(graph)[crossing], rough[crossing])
    # its MLA prefill attention is measured (DeepSeek-V3's latent is the measured one)
    assert (source[graph.op == Op.ATTN_CORE] == 1).all()


def test_an_unmeasured_mla_latent_falls_back_with_a_note() -> None:
    plan = load_plan(EP32)
    mla = dataclasses.replace(plan.model.mla, kv_lora_rank=256)
    plan = dataclasses.replace(plan, model=dataclasses.replace(plan.model, mla=mla))
    graph = build_graph(plan)
    model = Measured(auto=True)
    assert (model.node_sources(graph)[graph.op == Op.ATTN_CORE] == 0).all()
    assert any(n.startswith("MLA attention: latent (256, 64, 128, 128)") for n in model.notes)


def test_experts_past_the_moe_grid_take_the_roofline_fused_layer_not_gemm_rows() -> None:
    # 4,096 prompt tokens x 8 of 256 experts on EP32: each rank's MoE call sees far more
    # tokens than the MoE table measures, even under auto
    graph = build_graph(load_plan(EP32))
    model = Measured(auto=True)
    experts = graph.op == Op.MOE_EXPERT
    assert experts.any()
    assert (model.node_sources(graph)[experts] == 0).all()
    np.testing.assert_array_equal(
        model.node_seconds(graph)[experts], Roofline().node_seconds(graph)[experts]
    )
    note = next(n for n in model.notes if n.startswith("moe.expert"))
    assert "outside the measured grid" in note and "roofline's fused MoE layer" in note
    # inside the grid the same layer is measured
    small = build_graph(_mixtral(batch=16))
    assert (Measured(auto=True).node_sources(small)[small.op == Op.MOE_EXPERT] == 1).all()


def test_single_node_expert_exchange_is_priced_by_deepep() -> None:
    graph = build_graph(load_plan(DEP8))
    model = Measured(auto=True)
    source = model.node_sources(graph)
    for op in (Op.MOE_DISPATCH, Op.MOE_COMBINE):
        assert (source[graph.op == op] == 1).all(), op.label
    i = _first(graph, Op.MOE_DISPATCH)
    assert model.node_seconds(graph)[i] != Roofline().node_seconds(graph)[i]


def test_measured_refuses_what_auto_extrapolates() -> None:
    graph = build_graph(_mixtral(batch=4096))  # 4,096 sequences: beyond the attention grid
    strict, auto = Measured(), Measured(auto=True)
    core = graph.op == Op.ATTN_CORE
    assert (strict.node_sources(graph)[core] == 0).all()
    assert (auto.node_sources(graph)[core] == 1).all()
    assert any(
        n.startswith("attention: the shape lies outside the measured grid") for n in strict.notes
    )


def test_the_summary_carries_the_share_and_the_notes() -> None:
    from dagen.export.estimate import estimate_summary, key_figures

    graph = build_graph(load_plan(EP32))
    est = estimate(graph, cost_model=Measured(auto=True))
    summary = estimate_summary(est, graph)
    assert summary is not None
    assert summary["priced_by"] == est.priced_by
    assert any("inter-node collective nodes" in n for n in summary["cost_notes"])
    share = round(100 * est.priced_by["measured"])
    assert f"{share} % of nodes measured" in key_figures(est)
    # the roofline has one source: no share, no notes
    plain = estimate_summary(estimate(graph, cost_model=Roofline()), graph)
    assert plain is not None and "priced_by" not in plain and "cost_notes" not in plain


def test_a_serving_iteration_adds_its_prefill_chunks_to_the_decode_attention() -> None:
    graph = build_graph(load_plan(DEP8))
    model = Measured(auto=True)
    core = graph.op == Op.ATTN_CORE
    assert (model.node_sources(graph)[core] == 1).all()
    d = graph.pools[0].dims
    assert d.pf_pairs > 0 and d.seqs == 128
    t = KernelTables.load("H200", monotone=True)
    decode = t.mla_generation(d.seqs, (d.pairs - d.pf_pairs) / d.seqs, d.heads, "bfloat16")
    chunks = t.mla_context(1, np.sqrt(2 * d.pf_pairs), d.heads, "bfloat16")
    i = int(np.flatnonzero(core)[0])
    assert model.node_seconds(graph)[i] == pytest.approx(float(decode + chunks), rel=1e-9)
    assert not any(n.startswith("attention:") for n in model.notes)


def test_the_terminal_summary_gives_the_share_and_each_fallback() -> None:
    from dagen.api import analyse

    plan = load_plan(EP32)
    model = Measured(auto=True)
    result = analyse(plan, cost_model=model)
    assert result.estimate is not None
    lines = result.summary()
    share = result.estimate.priced_by["measured"]
    assert f"cost model auto: {share:.0%} of compute and collective nodes measured" in lines
    assert any(s.startswith("  fell back: ") and "inter-node" in s for s in lines)
    assert not any("cost model" in s for s in analyse(plan).summary())  # roofline: one source
