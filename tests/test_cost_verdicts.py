"""Verdicts on the plans' claims: the seed's, with its arithmetic done by hand, and
claims built to hold, fail, be impossible, or not fit in memory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import make_plan

from dagen.cost import estimate, judge_estimate, judge_plan_bounds, verdict_findings
from dagen.cost.bounds import token_flops
from dagen.cost.verdicts import Verdict, VerdictKind
from dagen.findings import Severity
from dagen.graph.build import build_graph
from dagen.plan.loader import load_plan
from dagen.plan.model import Plan, Targets
from dagen.plan.params import active_params

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

# The seed model by hand (samples/seed-moe-10b.yaml): h 2048, 16 layers, 16 heads of
# 128 (no GQA), 16 experts of SwiGLU width 6144, top-2, vocabulary 32000, untied.
EMBEDDINGS = 2 * 32000 * 2048
PER_LAYER = 4 * 2048 * 2048 + 2 * 2048 + 2 * 3 * 2048 * 6144 + 2048 * 16
ACTIVE = EMBEDDINGS + 16 * PER_LAYER + 2048
MATMUL = ACTIVE - EMBEDDINGS - (2 * 16 + 1) * 2048
ATTENTION = 16 * 2 * 16 * (128 + 128) * (2048 + 1) / 2  # causal: (s + 1) / 2 keys on average
HEAD = 2 * 32000 * 2048 / 2048  # one LM head per prompt of 2048 tokens
FLOP_PER_TOKEN = 2 * MATMUL + ATTENTION + HEAD
ACHIEVABLE = 240e12 * 1.0  # the report's "240TFlops effective", flops_efficiency 1.0


def _by_path(verdicts: tuple[Verdict, ...]) -> dict[str, Verdict]:
    return {v.path: v for v in verdicts}


def judged(plan: Plan) -> tuple[Verdict, ...]:
    """The plan's claims against the estimate of its graph."""
    return judge_estimate(plan, estimate(build_graph(plan)))


def test_seed_flops_per_token_by_hand() -> None:
    seed = load_plan(SAMPLES / "seed-moe-10b.yaml")
    assert active_params(seed.model) == ACTIVE == 1_608_058_880
    tf = token_flops(seed)
    assert tf.matmul == MATMUL
    assert tf.per_token == pytest.approx(FLOP_PER_TOKEN, rel=1e-12)
    assert round(FLOP_PER_TOKEN) == 3_088_185_856


def test_seed_throughput_claim_is_impossible_from_the_plan_alone() -> None:
    seed = load_plan(SAMPLES / "seed-moe-10b.yaml")  # does not build: its world is wrong
    v = _by_path(judge_plan_bounds(seed))["targets.tokens_per_s_per_gpu"]
    assert v.verdict is VerdictKind.IMPOSSIBLE
    assert v.target == 100_000
    assert v.bound == pytest.approx(ACHIEVABLE / FLOP_PER_TOKEN, rel=1e-12)  # ≈ 77,716
    assert v.bound < 100_000
    assert v.estimate is None
    # the claim needs ≤ 2.4e14 / 1e5 = 2.4e9 FLOP/token, i.e. ≤ 1.2B matmul weights
    assert "2.400e+09 FLOP/token" in v.arithmetic and "1.200e+09 matmul weights" in v.arithmetic


def test_seed_ttft_and_memory_claims_are_within_their_bounds_but_unverified() -> None:
    seed = load_plan(SAMPLES / "seed-moe-10b.yaml")
    verdicts = _by_path(judge_plan_bounds(seed))
    ttft = verdicts["targets.ttft_s"]
    # the largest reading of the degrees: orthogonal tp·ep·dp·pp = 2·16·2·4 = 256 GPUs
    assert ttft.bound == pytest.approx(256 * 2048 * FLOP_PER_TOKEN / (256 * ACHIEVABLE), rel=1e-12)
    assert ttft.verdict is VerdictKind.UNVERIFIED
    memory = verdicts["targets.max_memory_fraction"]
    assert memory.verdict is VerdictKind.UNVERIFIED
    # all weights once, bf16, spread over the 256 GPUs of the largest reading, of 64 GB
    per_layer = 4 * 2048 * 2048 + 2 * 2048 + 16 * 3 * 2048 * 6144 + 2048 * 16
    weights = (EMBEDDINGS + 16 * per_layer + 2048) * 2
    assert weights == 20_127_551_488
    assert memory.bound == pytest.approx(weights / 256 / 64e9, rel=1e-12)
    assert "hardware.memory_gb" not in verdicts  # nothing to report when it cannot fail


def test_seed_fixed_verdicts_from_the_simulation() -> None:
    plan = load_plan(SAMPLES / "seed-moe-10b-fixed.yaml")
    est = estimate(build_graph(plan))
    verdicts = _by_path(judge_estimate(plan, est))
    assert verdicts["targets.tokens_per_s_per_gpu"].verdict is VerdictKind.IMPOSSIBLE
    assert est.tokens_per_s_per_gpu < ACHIEVABLE / FLOP_PER_TOKEN  # the simulation obeys the bound
    ttft = verdicts["targets.ttft_s"]
    assert ttft.verdict is VerdictKind.HOLDS
    assert ttft.estimate == est.ttft_s and ttft.bound is not None
    assert ttft.bound <= est.ttft_s <= 10
    assert verdicts["targets.max_memory_fraction"].verdict is VerdictKind.HOLDS
    assert verdicts["targets.max_memory_fraction"].estimate == est.memory.peak_fraction
    assert verdicts["hardware.memory_gb"].verdict is VerdictKind.HOLDS


def test_findings_carry_codes_severities_and_the_target_line() -> None:
    plan = load_plan(SAMPLES / "seed-moe-10b-fixed.yaml")
    findings = {f.code: f for f in verdict_findings(plan, judged(plan))}
    assert set(findings) == {
        "COST-TTFT", "COST-THROUGHPUT-GPU", "COST-THROUGHPUT", "COST-MEMORY", "COST-OOM",
        "COST-UTILIZATION", "COST-MEMORY-FIGURE", "COST-CLAIM",
    }  # fmt: skip
    impossible = findings["COST-THROUGHPUT-GPU"]
    assert impossible.severity is Severity.ERROR and impossible.fix
    assert impossible.path == "targets.tokens_per_s_per_gpu"
    loc = plan.where("targets.tokens_per_s_per_gpu")
    assert loc is not None and (impossible.line, impossible.column) == (loc.line, loc.column)
    assert findings["COST-TTFT"].severity is Severity.INFO
    assert impossible.data["verdict"] == "impossible"


def _with_targets(plan: Plan, **targets: float) -> Plan:
    return dataclasses.replace(plan, targets=Targets(**targets))  # type: ignore[arg-type]


def test_a_claim_within_the_bound_but_beyond_the_estimate_fails() -> None:
    plan = make_plan(layers=2, batch=8, prompt_len=256)
    graph = build_graph(plan)
    ttft = estimate(graph).ttft_s
    assert ttft is not None
    bound = _by_path(judge_estimate(plan, estimate(graph)))  # no targets: only the fit
    assert set(bound) == {"hardware.memory_gb"}
    tight = _with_targets(plan, ttft_s=ttft * 0.9)
    v = _by_path(judged(tight))["targets.ttft_s"]
    assert v.bound is not None and v.bound < ttft * 0.9 < v.estimate  # type: ignore[operator]
    assert v.verdict is VerdictKind.FAILS
    (finding,) = [f for f in verdict_findings(tight, (v,))]
    assert finding.code == "COST-TTFT" and finding.severity is Severity.WARNING


def test_a_latency_claim_below_the_bound_is_impossible() -> None:
    plan = _with_targets(make_plan(phase="decode", batch=64, prompt_len=1024), tpot_ms=1e-6)
    v = _by_path(judged(plan))["targets.tpot_ms"]
    assert v.verdict is VerdictKind.IMPOSSIBLE
    assert v.bound is not None and v.estimate is not None and v.bound <= v.estimate


def test_a_claim_for_another_phase_is_judged_by_its_bound_only() -> None:
    plan = _with_targets(make_plan(phase="decode", batch=8), ttft_s=100.0)
    v = _by_path(judged(plan))["targets.ttft_s"]
    assert v.verdict is VerdictKind.UNVERIFIED and v.estimate is None


def test_a_plan_that_does_not_fit_fails_with_cost_oom() -> None:
    # the weights fit in 0.5 GB, but not with the runtime reserve and buffers
    plan = make_plan(memory_gb=0.5)
    v = _by_path(judged(plan))["hardware.memory_gb"]
    assert v.verdict is VerdictKind.FAILS
    (finding,) = verdict_findings(plan, (v,))
    assert finding.code == "COST-OOM" and finding.severity is Severity.ERROR


def test_weights_larger_than_the_gpu_are_impossible() -> None:
    plan = make_plan(memory_gb=1e-6)  # 1,000 bytes: less than one layer's weights
    v = _by_path(judged(plan))["hardware.memory_gb"]
    assert v.verdict is VerdictKind.IMPOSSIBLE
    plan_only = _by_path(judge_plan_bounds(plan))["hardware.memory_gb"]
    assert plan_only.verdict is VerdictKind.IMPOSSIBLE


def test_each_verdict_derives_the_flops_per_token_once() -> None:
    # The decode per-GPU throughput verdict once carried the FLOP/token derivation twice
    # (once in its ceiling, once in the decode-step floor it quotes).
    plan = load_plan(SAMPLES / "deepseek-v3-decode.yaml")
    for v in judge_plan_bounds(plan):
        derivation = token_flops(plan).text
        assert v.arithmetic.count(derivation) <= 1, v.path
        assert v.arithmetic.count("matmul weights (active") <= 1, v.path
