"""Roofline times of compute nodes, on cases small enough to price by hand.

Every expected value below is written from the formulas of docs/cost-model.md
("Compute nodes"), not read back from dagen.cost.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_plan

from dagen.cost.constants import ATTENTION, ELEMENTWISE, GEMM, REFERENCE
from dagen.cost.roofline import PREFILL_TILE, compute_durations
from dagen.graph.build import build_graph
from dagen.graph.codes import Engine
from dagen.graph.dims import Dims, derive_dims
from dagen.graph.ir import Kind, Op
from dagen.graph.traffic import Traffic
from dagen.mesh import build_mesh
from dagen.plan.model import Plan

# A 1-layer dense model on one GPU, bf16 (2 bytes): h 64, 4 heads, 2 KV heads, head 16,
# ffn 256, vocab 128; 2 prompts of 16 tokens in one micro-batch → T = 32 tokens.
H, HEADS, KV, HD, FFN, VOCAB, T, E = 64, 4, 2, 16, 256, 128, 32, 2


def _plan(**kw: object) -> Plan:
    base: dict[str, object] = dict(layers=1, batch=2, prompt_len=16, micro_batches=1)
    base.update(kw)
    return make_plan(**base)


def _rates(plan: Plan, op: Op = Op.FFN_UP) -> tuple[float, float, float]:
    """(FLOP/s, bytes/s, t₀) the kernel roofline gives ``op`` (defaults: efficiencies
    0.6 and 0.8 leave the constants unscaled)."""
    hw = plan.hardware
    c = {Engine.GEMM: GEMM[plan.dtypes.weights.value], Engine.ATTENTION: ATTENTION,
         Engine.ELEMENTWISE: ELEMENTWISE}[op.spec.engine]  # fmt: skip
    fmt_ = plan.dtypes.math if op.spec.engine is Engine.GEMM else plan.dtypes.activations
    t0 = c.t0
    if op.spec.engine is Engine.ATTENTION:  # prefill: plus a cost per (seq, head, tile)
        d = derive_dims(plan, build_mesh(plan.parallel))
        t0 += d.seqs * d.heads * -(-d.prompt // (d.cp * PREFILL_TILE)) * REFERENCE.prefill_item
    return hw.tflops(fmt_) * 1e12 * c.eta_f, hw.hbm_tbps * 1e12 * c.eta_m, t0


def op_bytes(d: Dims) -> dict[Op, Traffic]:
    """The registry's HBM traffic of every compute op."""
    return {op: op.spec.traffic(d) for op in Op if op.spec.traffic is not None}


def _node(graph: object, op: Op) -> int:
    return int(np.flatnonzero(graph.op == op)[0])  # type: ignore[attr-defined]


def test_dense_tp1_durations_are_the_roofline_exactly() -> None:
    plan = _plan()
    graph = build_graph(plan)
    seconds = compute_durations(graph)
    cols = (HEADS + 2 * KV) * HD
    by_hand = {
        # weights of the shard + input read + output written
        Op.ATTN_QKV: (2 * T * H * cols, (H * cols + T * H + T * cols) * E),
        Op.ATTN_OUT: (2 * T * HEADS * HD * H, (HEADS * HD * H + T * HEADS * HD + T * H) * E),
        Op.FFN_UP: (2 * T * H * FFN * 2, (2 * H * FFN + T * H + T * FFN) * E),
        Op.FFN_DOWN: (2 * T * FFN * H, (FFN * H + T * FFN + T * H) * E),
        Op.ATTN_NORM: (4 * T * H, (H + 2 * T * H) * E),
        Op.ATTN_RESIDUAL: (T * H, 3 * T * H * E),
        # causal prefill: 2 prompts · 16² / 2 pairs; K/V of the prompt written to the cache
        Op.ATTN_CORE: (
            2 * (2 * 16**2 / 2) * HEADS * (HD + HD),
            (T * cols + T * HEADS * HD + T * 2 * KV * HD) * E,
        ),
    }
    for op, (flops, nbytes) in by_hand.items():
        i = _node(graph, op)
        assert graph.tmpl_flops[graph.tmpl[i]] == pytest.approx(flops, rel=1e-12), op
        flop_rate, byte_rate, t0 = _rates(plan, op)
        assert seconds[i] == pytest.approx(t0 + max(flops / flop_rate, nbytes / byte_rate)), op


def test_small_ops_are_memory_bound_and_big_matmuls_compute_bound() -> None:
    plan = _plan(
        batch=64, prompt_len=512, hidden_size=1024, heads=8, kv_heads=8, head_dim=128, ffn_size=4096
    )
    graph = build_graph(plan)
    seconds = compute_durations(graph)
    flop_rate, _, _ = _rates(plan)
    norm, up = _node(graph, Op.ATTN_NORM), _node(graph, Op.FFN_UP)
    t0 = _rates(plan, Op.FFN_UP)[2]
    assert seconds[norm] > graph.tmpl_flops[graph.tmpl[norm]] / flop_rate  # bytes win
    assert seconds[up] == pytest.approx(t0 + graph.tmpl_flops[graph.tmpl[up]] / flop_rate)


def test_communication_nodes_take_no_compute_time() -> None:
    graph = build_graph(_plan(tp=2, pp=2, layers=2, micro_batches=2, batch=4))
    seconds = compute_durations(graph)
    assert np.all(seconds[graph.kind != Kind.COMPUTE] == 0.0)
    assert np.all(seconds[graph.kind == Kind.COMPUTE] > 0.0)


def test_fp8_halves_the_bytes_and_uses_the_fp8_peak() -> None:
    bf16, fp8 = _plan(), _plan(dtype="fp8")
    b16 = op_bytes(derive_dims(bf16, build_mesh(bf16.parallel)))
    b8 = op_bytes(derive_dims(fp8, build_mesh(fp8.parallel)))
    assert b8[Op.FFN_UP].weights * 2 == b16[Op.FFN_UP].weights
    g16, g8 = build_graph(bf16), build_graph(fp8)
    i = _node(g8, Op.FFN_UP)
    flops = g8.tmpl_flops[g8.tmpl[i]]
    f_rate, b_rate, t0 = _rates(fp8)
    quant = 1.5 * b8[Op.FFN_UP].act_in  # W8A8: the input quantised on the fly
    assert compute_durations(g8)[i] == pytest.approx(
        t0 + max(flops / f_rate, b8[Op.FFN_UP].total / b_rate) + quant / b_rate
    )
    # A tiny fp8 matmul pays its 12 µs quantise-and-multiply call: slower than bf16's
    # 5.7 µs, as aiconfigurator-core's H100 tables measure below ~16 MB of weights.
    assert compute_durations(g8)[i] > compute_durations(g16)[i]


def test_decode_reads_the_whole_kv_cache() -> None:
    # decode: 8 sequences, context 16 + 4 = 20 tokens, 2 KV heads of 16, bf16
    plan = _plan(phase="decode", batch=8, prompt_len=16, gen_len=4)
    core = op_bytes(derive_dims(plan, build_mesh(plan.parallel)))[Op.ATTN_CORE]
    per_token = 2 * KV * HD * E
    assert core.kv == (8 * 20 + 8) * per_token  # read the context, write one entry each


def test_mla_decode_cache_is_the_latent_and_tp_does_not_split_it() -> None:
    mla = dict(
        q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16
    )
    one = _plan(phase="decode", batch=8, prompt_len=16, gen_len=4, **mla)
    two = _plan(phase="decode", batch=8, prompt_len=16, gen_len=4, tp=2, **mla)
    kv1 = op_bytes(derive_dims(one, build_mesh(one.parallel)))[Op.ATTN_CORE].kv
    kv2 = op_bytes(derive_dims(two, build_mesh(two.parallel)))[Op.ATTN_CORE].kv
    assert kv1 == (8 * 20 + 8) * (16 + 8) * E
    assert kv2 == kv1  # the latent is shared by all heads, so every TP rank holds it


def test_an_expert_that_few_tokens_reach_is_read_with_their_probability() -> None:
    # decode, 2 sequences, 8 experts, top-2: 4 expert-tokens over 8 slots → 0.5 each
    plan = _plan(phase="decode", batch=2, prompt_len=16, experts=8, top_k=2, expert_ffn_size=128)
    d = derive_dims(plan, build_mesh(plan.parallel))
    assert d.slot_tokens == pytest.approx(0.5)
    expert = op_bytes(d)[Op.MOE_EXPERT]
    full = 3 * H * 128 * E
    # each of the 2 tokens misses a given slot with probability 6/8
    assert expert.weights == pytest.approx(full * (1 - (6 / 8) ** 2))
    # one token reads exactly its top-2 experts: 2 of 8 slots, not Poisson's 8·(1 − e^−¼)
    one = _plan(phase="decode", batch=1, prompt_len=16, experts=8, top_k=2, expert_ffn_size=128)
    d1 = derive_dims(one, build_mesh(one.parallel))
    assert 8 * op_bytes(d1)[Op.MOE_EXPERT].weights == pytest.approx(2 * full)
    assert 8 * full * (1 - math.exp(-0.25)) < 0.9 * 2 * full
    # many tokens: every slot is read
    many = _plan(phase="decode", batch=64, prompt_len=16, experts=8, top_k=2, expert_ffn_size=128)
    d64 = derive_dims(many, build_mesh(many.parallel))
    assert op_bytes(d64)[Op.MOE_EXPERT].weights == pytest.approx(full, rel=1e-7)
