"""Memory per GPU, checked against weights and caches counted by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_plan

from dagen.cost.memory import RUNTIME_RESERVE_BYTES, memory_report
from dagen.graph.build import build_graph
from dagen.mesh import build_mesh
from dagen.plan.loader import load_plan
from dagen.plan.model import Plan

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _report(plan: Plan):  # type: ignore[no-untyped-def]
    return memory_report(build_graph(plan))


def test_seed_fixed_weights_per_rank_by_hand() -> None:
    plan = load_plan(SAMPLES / "seed-moe-10b-fixed.yaml")
    mesh = build_mesh(plan.parallel, plan.hardware.gpus_per_node)
    mem = memory_report(build_graph(plan, mesh))
    h, hd, vocab, layers = 2048, 128, 32000, 4  # 4 layers per stage, all MoE
    # TP2: 8 of 16 query heads and 8 of 16 KV heads per rank; Q, K, V, O
    attention = h * hd * (2 * 8 + 2 * 8) + 2 * h  # + two norm vectors
    # EP16 over 16 experts: one whole expert (SwiGLU, 3 matrices) per rank; the router
    experts = 3 * h * 6144 + h * 16
    middle = layers * (attention + experts)
    first = middle + (vocab // 2) * h  # vocabulary-parallel embedding
    last = middle + h + (vocab // 2) * h  # final norm, LM head shard
    expected = np.array([first, middle, middle, last])[mesh.stage] * 2  # bf16
    np.testing.assert_array_equal(mem.weights_bytes, expected)
    assert int(mem.weights_bytes[mesh.stage == 0][0]) == 434_929_664
    np.testing.assert_array_equal(mem.routed_bytes, layers * 3 * h * 6144 * 2)


def test_seed_fixed_kv_cache_and_totals() -> None:
    plan = load_plan(SAMPLES / "seed-moe-10b-fixed.yaml")
    mem = _report(plan)
    # 256 prompts over DP16 = 16 per replica, 2048 + 1 tokens, 4 layers per stage,
    # K and V of 8 heads of 128 on each TP rank, bf16
    assert np.all(mem.kv_bytes == 16 * 2049 * 4 * 2 * 8 * 128 * 2)
    parts = mem.weights_bytes + mem.kv_bytes + mem.activation_bytes + mem.buffer_bytes
    np.testing.assert_array_equal(mem.total_bytes, parts)
    assert mem.capacity_bytes == 64 * 10**9
    assert np.all(mem.buffer_bytes > RUNTIME_RESERVE_BYTES)
    assert mem.peak_fraction == pytest.approx(mem.total_bytes.max() / 64e9)


def test_kv_heads_replicate_when_tp_exceeds_them() -> None:
    # 2 KV heads on TP4: each rank keeps one KV head (replicated), not half of one
    plan = make_plan(tp=4, kv_heads=2, heads=4, batch=8, prompt_len=16, gen_len=4)
    mem = _report(plan)
    assert np.all(mem.kv_bytes == 8 * 20 * 4 * (2 * 1 * 16) * 2)


def test_mla_cache_is_the_latent_on_every_tp_rank() -> None:
    mla = dict(
        q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16
    )
    one = _report(make_plan(batch=8, prompt_len=16, gen_len=4, **mla))
    two = _report(make_plan(tp=2, batch=8, prompt_len=16, gen_len=4, **mla))
    assert np.all(one.kv_bytes == 8 * 20 * 4 * (16 + 8) * 2)
    assert np.all(two.kv_bytes == one.kv_bytes[0])


def test_tied_embeddings_are_held_once_on_one_stage() -> None:
    untied = _report(make_plan(tied_embeddings=False))
    tied = _report(make_plan(tied_embeddings=True))
    assert int(untied.weights_bytes[0] - tied.weights_bytes[0]) == 128 * 64 * 2
    split = _report(make_plan(tied_embeddings=True, pp=2))
    # pp=2: the first stage holds the embedding, the last its own copy as the LM head
    # plus the final norm (64 values); their layers weigh the same
    assert int(split.weights_bytes[1] - split.weights_bytes[0]) == 64 * 2


def test_more_expert_parallelism_holds_fewer_experts() -> None:
    ep2 = _report(make_plan(dp=2, ep=2, experts=8, top_k=2, batch=8))
    ep8 = _report(make_plan(dp=8, ep=8, experts=8, top_k=2, batch=8))
    per_expert = 4 * 3 * 64 * 128 * 2  # 4 MoE layers, SwiGLU h 64 × 128, bf16
    assert int(ep2.routed_bytes[0]) == 4 * per_expert
    assert int(ep8.routed_bytes[0]) == 1 * per_expert
