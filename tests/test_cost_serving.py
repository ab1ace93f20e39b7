"""Serving workloads, per-tensor precision, framework memory rules, cost-model choice."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_plan

from dagen.cli import main
from dagen.cost import CostModelError, estimate, judge_estimate, roofline
from dagen.cost.deepep import contended
from dagen.cost.estimator import _priced_at, durations
from dagen.cost.roofline import Roofline
from dagen.cost.table import load_table_model
from dagen.graph.build import build_graph
from dagen.graph.dims import iteration_mix, steady
from dagen.graph.opcost import core_dims
from dagen.graph.ops import Op
from dagen.graph.serving import steady_state
from dagen.mesh import mesh_of
from dagen.plan.loader import load_plan
from dagen.plan.model import DType, Framework, Mode, Phase, Precision, Runtime

ROOT = Path(__file__).resolve().parent.parent
SERVING = ROOT / "tests/data/plans/published/trtllm-deepseek-r1-h200-dep8-c1024-1024-2048.yaml"
B200 = ROOT / "tests/data/plans/published/trtllm-deepseek-r1-0528-b200-dep8-c7168-1042-2048.yaml"
LLAMA = ROOT / "tests/data/plans/published/trtllm-v09-llama2-70b-h100-tp4-b512-128-2048.yaml"
LONG = ROOT / "tests/data/plans/published/trtllm-v1.0-llama3.3-70b-h200-tp1-20000-2000.yaml"
LONG_70B = ROOT / "tests/data/plans/published/trtllm-v1.0-llama3.3-70b-h200-tp1-2048-2048.yaml"


def test_steady_state_conserves_requests_and_tokens() -> None:
    s = steady_state(concurrency=96, prompt=1000, gen=200, chunk=256, replicas=2)
    assert s.chunks == 4 and s.requests == 48
    # every request in flight is either decoding or being prefilled (its k chunks)
    assert s.decode_seqs + s.prefill_tokens / 1000 * s.chunks == pytest.approx(48)
    # arrivals per iteration × prompt = prefill tokens; × output = decode tokens
    assert s.prefill_tokens / 1000 == pytest.approx(s.decode_seqs / 200)


def test_mtp_raises_tokens_per_step_and_cuts_tpot() -> None:
    plan = make_plan(phase=Phase.DECODE, batch=8, prompt_len=64)
    base = estimate(build_graph(plan))
    mtp = dataclasses.replace(
        plan, workload=dataclasses.replace(plan.workload, speculative_tokens=1, acceptance=0.8)
    )
    assert mtp.workload.tokens_per_step == pytest.approx(1.8)
    est = estimate(build_graph(mtp))
    assert est.tokens_per_s > base.tokens_per_s
    assert est.tpot_s is not None and base.tpot_s is not None and est.tpot_s < base.tpot_s


def test_serving_plan_gives_ttft_tpot_and_throughput() -> None:
    plan = load_plan(SERVING)
    assert plan.workload.mode is Mode.SERVING and plan.workload.batch == 1024
    est = estimate(build_graph(plan))
    assert est.ttft_s is not None and est.tpot_s is not None and est.tokens_per_s > 0
    dp = est.pools[0].world  # attention DP over every GPU in this plan
    # output tokens/s = decoding requests × tokens per step / TPOT-iteration, over replicas
    ss = steady_state(concurrency=1024, prompt=plan.workload.prompt_len,
                      gen=plan.workload.gen_len, chunk=plan.workload.prefill_chunk,
                      replicas=plan.parallel.dp)  # fmt: skip
    assert est.tokens_per_s == pytest.approx(plan.parallel.dp * ss.decode_seqs / est.tpot_s)
    assert dp == 8


def test_fp8_kv_cache_halves_the_kv_bytes() -> None:
    plan = make_plan(phase=Phase.DECODE, batch=8, prompt_len=64)
    fp8 = dataclasses.replace(plan, precision=Precision(kv_cache=DType.FP8))
    kv16 = estimate(build_graph(plan)).memory.kv_bytes
    kv8 = estimate(build_graph(fp8)).memory.kv_bytes
    assert (kv16 == 2 * kv8).all() and kv8.sum() > 0


def test_nvfp4_weights_carry_their_scales() -> None:
    assert DType.NVFP4.nbytes == pytest.approx(0.5625)
    assert DType.MXFP4.nbytes == pytest.approx(0.53125)
    assert Precision(weights=DType.NVFP4).resolve(DType.BF16).math is DType.NVFP4  # W4A4
    assert Precision(weights=DType.MXFP4).resolve(DType.BF16).math is DType.BF16  # W4A16


def test_attention_weights_take_their_own_format() -> None:
    # NVIDIA's FP4 DeepSeek-R1 throughput recipe: nvfp4 FFN and experts, fp8 attention.
    mixed = load_plan(B200)
    assert mixed.dtypes.weights is DType.NVFP4 and mixed.dtypes.attention is DType.FP8
    fp4 = dataclasses.replace(mixed, precision=dataclasses.replace(mixed.precision, attention=None))
    g4, gm = build_graph(fp4), build_graph(mixed)
    assert gm.pools[0].dims.ewa == 1.0 and gm.pools[0].dims.ew == g4.pools[0].dims.ew == 0.5625
    assert (g4.op == gm.op).all()
    t4, tm = Roofline().node_seconds(g4), Roofline().node_seconds(gm)
    for op in (Op.ATTN_QKV, Op.ATTN_OUT):  # more bytes, and fp8's half the fp4 rate
        at = g4.op == op
        assert (tm[at] > t4[at]).all()
        assert (gm.tmpl_hbm[gm.tmpl[at]] > g4.tmpl_hbm[g4.tmpl[at]]).all()
    for op in (Op.MOE_EXPERT, Op.MOE_SHARED, Op.FFN_UP, Op.FFN_DOWN, Op.LM_HEAD):
        at = g4.op == op
        assert at.any() and (tm[at] == t4[at]).all(), op.label
    held = [estimate(g).memory.weights_bytes.max() for g in (g4, gm)]
    assert held[1] > held[0]


def test_an_overflowing_kv_cache_is_named_with_the_batch_that_fits() -> None:
    plan = load_plan(LLAMA)
    decode = dataclasses.replace(plan.workload, phase=Phase.DECODE, prompt_len=2048, gen_len=1)
    big = dataclasses.replace(plan, workload=dataclasses.replace(decode, batch=4096))
    verdict = next(v for v in judge_estimate(big, estimate(build_graph(big)))
                   if v.path == "hardware.memory_gib")  # fmt: skip
    assert verdict.verdict.value == "fails"
    assert "the KV cache overflows" in verdict.arithmetic and "sequences fit" in verdict.arithmetic
    fits = int(verdict.arithmetic.split("at most ")[1].split(" ")[0].replace(",", ""))
    fits -= fits % plan.parallel.dp
    ok = dataclasses.replace(plan, workload=dataclasses.replace(decode, batch=fits))
    assert estimate(build_graph(ok)).memory.overflow_rank is None


def test_framework_fractions_shrink_the_kv_pool() -> None:
    plan = load_plan(LLAMA)
    pools = {}
    for fw in (Framework.NONE, Framework.VLLM, Framework.TRTLLM):
        p = dataclasses.replace(plan, runtime=Runtime(framework=fw))
        pools[fw] = int(estimate(build_graph(p)).memory.kv_pool_bytes.min())
    assert pools[Framework.NONE] > pools[Framework.TRTLLM] > 0
    assert pools[Framework.NONE] > pools[Framework.VLLM] > 0


def test_verdicts_state_the_efficiency_a_claim_needs() -> None:
    plan = load_plan(LLAMA)
    v = next(v for v in judge_estimate(plan, estimate(build_graph(plan)))
             if v.path == "targets.tokens_per_s_per_gpu")  # fmt: skip
    assert "of the datasheet peak; the estimate reaches" in v.arithmetic
    assert "datasheet peak" in v.arithmetic and v.bound is not None


def test_table_model_replaces_the_ops_it_names(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("op,shape,dtype,seconds\nattn.core,,bf16,0.5\n", encoding="utf-8")
    graph = build_graph(make_plan())
    model = load_table_model(path, Roofline())
    seconds = model.node_seconds(graph)
    core = graph.op == 5  # attn.core
    assert (seconds[core] == 0.5).all() and (seconds[~core] < 0.5).all()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("op,time\nattn.core,1\n", "column 'seconds': missing"),
        ("op,seconds\nattn.cores,1\n", "unknown op 'attn.cores'"),
        ("op,seconds\nattn.core,-1\n", "t.csv:2: column 'seconds'"),
    ],
)
def test_bad_tables_are_located_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CostModelError, match=needle.replace("(", r"\(")):
        load_table_model(path, Roofline())


def test_cli_cost_flag_chooses_the_model_and_rejects_unknown_ones() -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["check", "--cost", "bogus", str(LLAMA)])
    assert bad.exit_code == 2 and "--cost" in bad.output
    good = runner.invoke(main, ["-q", "check", "--cost", "auto", str(LLAMA), "--format", "json"])
    assert good.exit_code in (0, 1), good.output


def test_prefill_chunks_are_priced_apart_from_the_decode_attention() -> None:
    # Llama-3.3-70B at 20,000-token prompts: each iteration's attention is the decode
    # kernel over the running requests plus a context kernel over the chunks
    plan = load_plan(LONG)
    g = build_graph(plan)
    d = g.pools[0].dims
    assert d.pf_pairs > 0 and not d.prefill
    i = int((g.op == Op.ATTN_CORE).nonzero()[0][0])
    whole = float(Roofline().node_seconds(g)[i])
    # the same node with no chunks is the decode part alone (the chunks' FLOPs and bytes off)
    k = roofline.for_hardware(plan.hardware)
    dqk, dv = core_dims(dataclasses.replace(d, phase=Phase.PREFILL))
    chunk_flops = 2.0 * d.pf_pairs * d.heads * (dqk + dv)
    chunk = (k.prefill.t0 + d.heads * math.ceil(d.pf_tokens / roofline.PREFILL_TILE)
             * k.prefill_item + chunk_flops / (plan.hardware.tflops(DType.BF16) * 1e12
                                              * k.prefill.eta_f))  # fmt: skip
    decode_bytes = float(g.tmpl_hbm[g.tmpl[i]])
    decode = (k.decode.t0 + d.seqs * d.kv_heads * k.decode_item
              + decode_bytes / (plan.hardware.hbm_tbps * 1e12 * k.decode.eta_m))  # fmt: skip
    assert whole == pytest.approx(decode + chunk, rel=1e-6)
    assert chunk > 0.3 * whole  # at these prompt lengths the chunks are a large share


def test_a_serving_steady_state_has_iterations_with_a_whole_chunk_and_without() -> None:
    plan = load_plan(LONG_70B)
    mesh = mesh_of(plan)
    mix = iteration_mix(plan, mesh)
    (f, chunk), (rest, none) = mix
    ss = steady(plan.workload, mesh.sizes["dp"])
    assert f + rest == pytest.approx(1.0) and none == 0.0
    assert chunk == pytest.approx(plan.workload.prompt_len / ss.chunks)
    assert f * chunk == pytest.approx(ss.prefill_tokens)  # the same prompt tokens on average
    # repricing at the pool's own sizes gives back its own template table
    g = build_graph(plan)
    pool = g.pools[0]
    assert pool.prices is not None and len(pool.mix) == 2
    same = pool.prices.repriced(pool.dims)
    np.testing.assert_array_equal(same.flops, g.tmpl_flops)
    np.testing.assert_array_equal(same.hbm, g.tmpl_hbm)
    # a static batch has one kind of iteration
    assert iteration_mix(load_plan(LLAMA), mesh_of(load_plan(LLAMA))) == ()


def test_whole_chunks_cost_more_than_an_even_trickle_on_memory_bound_decode() -> None:
    # Llama-3.3-70B on one H200 at ~100 sequences: the decode matmuls stream the weights,
    # so an even trickle of prompt tokens rides on them; a whole 2,048-token prompt in one
    # iteration in 19 does not
    plan = load_plan(LONG_70B)
    g = build_graph(plan)
    model = Roofline()
    mixed = durations(g, model)
    even = contended(g, model.node_seconds(g))
    assert mixed.sum() > 1.05 * even.sum()
    pool = g.pools[0]
    by_kind = [model.node_seconds(_priced_at(g, 0, d)) for _, d in pool.mix]
    want = sum(share * s for (share, _), s in zip(pool.mix, by_kind, strict=True))
    np.testing.assert_allclose(mixed, contended(g, want))
