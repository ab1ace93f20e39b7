"""Claims beyond the plain targets: utilisation, MFU, communication share, a stated memory
figure, absolute claims on any metric, and comparative claims against an alternative."""

from __future__ import annotations

from pathlib import Path

import pytest

import dagen
from dagen.cost import VerdictKind, figures
from dagen.errors import PlanError
from dagen.plan.claims import Metric
from dagen.plan.loader import load_plan, load_plan_text
from dagen.plan.variant import parse_vary

DATA = Path(__file__).resolve().parent / "data" / "plans"
TINY = (DATA / "tiny_dense.yaml").read_text(encoding="utf-8")


def _plan(extra: str) -> dagen.Plan:
    return load_plan_text(TINY + extra, source="tiny.yaml", base_dir=DATA)


def _verdicts(extra: str) -> dict[str, dagen.cost.Verdict]:
    result = dagen.analyse(_plan(extra))
    assert result.estimate is not None
    return {v.path: v for v in result.estimate.verdicts}


def test_comparative_change_equals_the_two_plans_analysed_one_by_one() -> None:
    plan_vs = _plan("claims:\n  - {metric: ttft_s, vs: {parallel: {tp: 4, dp: 1}}, change: -0.5}\n")
    v = {v.path: v for v in dagen.analyse(plan_vs).estimate.verdicts}["claims.0"]  # type: ignore[union-attr]
    # The alternative written out as a plan file of its own, analysed separately.
    alt_text = TINY.replace("  tp: 2\n", "  tp: 4\n").replace("  dp: 2\n", "  dp: 1\n")
    alt = dagen.analyse(load_plan_text(alt_text, source="alt.yaml", base_dir=DATA))
    base = dagen.analyse(load_plan_text(TINY, source="base.yaml", base_dir=DATA))
    assert alt.estimate is not None and base.estimate is not None
    assert alt.estimate.ttft_s and base.estimate.ttft_s
    expected = base.estimate.ttft_s / alt.estimate.ttft_s - 1
    assert v.estimate == pytest.approx(expected, rel=1e-12)
    assert v.verdict is (VerdictKind.HOLDS if expected <= -0.5 else VerdictKind.FAILS)
    assert "this plan" in v.arithmetic and "parallel.tp 4" in v.arithmetic


def test_tolerance_turns_a_near_miss_into_holds_and_direction_follows_the_metric() -> None:
    base = "claims:\n  - {metric: tokens_per_s_per_gpu, vs: {workload: {batch: 4}}, change: %s}\n"
    plan = _plan(base % "0.0")
    v = {v.path: v for v in dagen.analyse(plan).estimate.verdicts}["claims.0"]  # type: ignore[union-attr]
    actual = v.estimate
    assert actual is not None
    # Claim exactly the estimated change, then a bit more: higher is better for throughput.
    at = dagen.analyse(_plan(base % f"{actual:.6f}")).estimate.verdicts  # type: ignore[union-attr]
    above = dagen.analyse(_plan(base % f"{actual + 0.05:.6f}")).estimate.verdicts  # type: ignore[union-attr]
    loose = _plan(base.replace("}\n", ", tolerance: 0.1}\n") % f"{actual + 0.05:.6f}")
    slack = dagen.analyse(loose).estimate.verdicts  # type: ignore[union-attr]
    assert at[-1].verdict is VerdictKind.HOLDS
    assert above[-1].verdict is VerdictKind.FAILS
    assert slack[-1].verdict is VerdictKind.HOLDS


def test_an_alternative_that_breaks_the_rules_is_unverified_with_the_reason() -> None:
    v = _verdicts("claims:\n  - {metric: ttft_s, vs: {parallel: {pp: 4}}, change: -0.2}\n")
    c = v["claims.0"]
    assert c.verdict is VerdictKind.UNVERIFIED
    assert "the alternative does not build" in c.arithmetic and "PLAN-" in c.arithmetic


def test_a_bad_value_in_an_alternative_is_located_and_names_the_claim() -> None:
    text = (
        TINY
        + "claims:\n  - says: vs TP=4\n    metric: ttft_s\n    vs: {parallel: {tq: 4}}\n    change: -0.4\n"
    )
    with pytest.raises(PlanError) as err:
        load_plan_text(text, source="tiny.yaml", base_dir=DATA)
    (p,) = err.value.problems
    line = TINY.count("\n") + 4
    assert p.code == "P-UNKNOWN-KEY" and p.line == line
    assert "claims.0 ('vs TP=4'): the alternative plan" in p.message and "tq" in p.message


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("{metric: ttft_s, vs: {parallel: {tp: 4}}}", "no change"),
        ("{metric: ttft_s, change: -0.4}", "no alternative"),
        ("{metric: ttft_s, at_most: 1, at_least: 0.1}", "exactly one"),
        ("{metric: ttft_s}", "exactly one"),
        ("{metric: speed, at_most: 1}", "expected one of"),
        ("{metric: ttft_s, vs: 2, change: -0.4}", "plan sections"),
    ],
)
def test_malformed_claims_are_refused_at_their_line(entry: str, words: str) -> None:
    with pytest.raises(PlanError) as err:
        _plan(f"claims:\n  - {entry}\n")
    assert any(words in p.message for p in err.value.problems)
    assert all(p.line == TINY.count("\n") + 2 for p in err.value.problems)


def test_stated_memory_agrees_within_tolerance_and_below_the_weights_is_impossible() -> None:
    est = dagen.analyse(_plan("")).estimate
    assert est is not None
    gib = float(est.memory.total_bytes.max()) / 2**30
    close = _verdicts(f"targets:\n  memory_per_gpu_gib: {gib * 1.05:.9f}\n")
    far = _verdicts(f"targets:\n  memory_per_gpu_gib: {gib * 1.5:.9f}\n")
    tiny = _verdicts("targets:\n  memory_per_gpu_gb: 0.0000001\n")
    assert close["targets.memory_per_gpu_gib"].verdict is VerdictKind.HOLDS
    assert far["targets.memory_per_gpu_gib"].verdict is VerdictKind.FAILS
    assert tiny["targets.memory_per_gpu_gb"].verdict is VerdictKind.IMPOSSIBLE


def test_mfu_and_utilisation_follow_their_formulas() -> None:
    plan = _plan("targets:\n  mfu: 0.9\n  gpu_utilization: 0.99\n  max_comm_share: 0.01\n")
    result = dagen.analyse(plan)
    est = result.estimate
    assert est is not None
    f = figures(plan, est)
    peak = plan.hardware.tflops(plan.dtypes.math) * 1e12
    assert f.mfu == pytest.approx(est.tokens_per_s * f.flop_per_token / (8 * peak))
    assert f.gpu_utilization == pytest.approx(float(est.busy_fraction.mean()))
    path = est.critical_path
    comm = float(est.duration_s[path][est.stream[path] == 1].sum())
    assert f.comm_share == pytest.approx(comm / est.makespan_s) and 0 < f.comm_share < 1
    v = {v.path: v for v in est.verdicts}
    assert v["targets.mfu"].verdict is VerdictKind.FAILS  # a tiny model: far below 90 %
    assert v["targets.gpu_utilization"].estimate == pytest.approx(f.gpu_utilization)
    assert v["targets.max_comm_share"].verdict is VerdictKind.FAILS
    codes = {x.code for x in result.findings}
    assert {"COST-MFU", "COST-UTILIZATION", "COST-COMM"} <= codes


def test_absolute_claims_use_the_bound_of_their_metric() -> None:
    v = _verdicts(
        "claims:\n  - {metric: ttft_s, at_most: 1.0e-9, says: instant}\n"
        "  - {metric: bubble_fraction, at_most: 0.99}\n"
    )
    assert v["claims.0"].verdict is VerdictKind.IMPOSSIBLE and "'instant'" in v["claims.0"].claim
    assert v["claims.1"].verdict is VerdictKind.HOLDS and v["claims.1"].bound is None


def test_seed_fixed_judges_every_claim_of_the_report() -> None:
    plan = load_plan(Path(__file__).resolve().parent.parent / "samples" / "seed-moe-10b-fixed.yaml")
    result = dagen.analyse(plan)
    assert result.estimate is not None
    paths = {v.path: v for v in result.estimate.verdicts}
    for key in ("ttft_s", "tokens_per_s_per_gpu", "tokens_per_s", "max_memory_fraction",
                "memory_per_gpu_gb", "gpu_utilization"):  # fmt: skip
        assert f"targets.{key}" in paths
    comparisons = [paths[f"claims.{i}"] for i in (1, 2, 3)]
    assert all(c.verdict in (VerdictKind.HOLDS, VerdictKind.FAILS) for c in comparisons)
    assert [c.claim.split("'")[1][:8] for c in comparisons] == ["vs PP=2:", "vs TP=4:", "vs Highe"]


def test_vary_reads_bare_and_dotted_keys_and_refuses_unknown_ones() -> None:
    assert [o.path for o in parse_vary("micro_batches=1,2")] == ["workload.micro_batches"] * 2
    assert parse_vary("hardware.gpus_per_node=4")[0].value == 4
    assert parse_vary("tp=2")[0].path == "parallel.tp"
    with pytest.raises(PlanError, match="'tq' is not a plan field"):
        parse_vary("tq=2")
    with pytest.raises(PlanError, match="gives no value"):
        parse_vary("tp=")


def test_a_varied_value_that_fails_names_its_flag() -> None:
    with pytest.raises(PlanError) as err:
        load_plan(DATA / "tiny_dense.yaml", overrides=parse_vary("tp=two"))
    assert "--vary tp=two" in err.value.problems[0].message
    plan = load_plan(DATA / "tiny_dense.yaml", overrides=parse_vary("tp=4"))
    assert plan.parallel.tp == 4 and str(plan.where("parallel.tp")) == "--vary tp=4"
    assert Metric.TTFT_S.lower_is_better


def test_a_bound_is_a_ceiling_for_at_least_claims_and_a_floor_for_at_most_ones() -> None:
    from dagen.cost.claims import verdict_sentence
    from dagen.export.mdhead import claim_rows

    plan = load_plan(Path(__file__).resolve().parent.parent / "samples" / "seed-moe-10b-fixed.yaml")
    result = dagen.analyse(plan)
    assert result.estimate is not None
    by = {v.path: v for v in result.estimate.verdicts}
    ceilings = ("targets.gpu_utilization", "targets.tokens_per_s", "targets.tokens_per_s_per_gpu")
    for path in ceilings:
        assert by[path].at_least and "; ceiling " in verdict_sentence(by[path])
    for path in ("targets.ttft_s", "targets.max_memory_fraction"):
        assert not by[path].at_least and "; floor " in verdict_sentence(by[path])
    # fractions read as percentages: "estimate 40.9%", not "0.409 of capacity"
    assert "of capacity;" not in verdict_sentence(by["targets.gpu_utilization"])
    rows = {r["claim"]: r for r in claim_rows(result.findings)}
    util = next(r for c, r in rows.items() if c.startswith("GPU utilisation"))
    ttft = next(r for c, r in rows.items() if c.startswith("time to first token"))
    assert util["bound"].startswith("≤ ") and ttft["bound"].startswith("≥ ")


def test_the_seed_figures_in_the_cost_model_doc_are_current() -> None:
    import re

    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "cost-model.md").read_text(encoding="utf-8")
    para = doc[doc.index("For the fixed seed (`samples/seed-moe-10b-fixed.yaml`)") :]
    para = para[: para.index("\n\n")]
    result = dagen.analyse(load_plan(root / "samples" / "seed-moe-10b-fixed.yaml"))
    assert result.estimate is not None
    by = {v.path: v for v in result.estimate.verdicts}
    util = by["targets.gpu_utilization"].estimate
    pp2, tp4, dp = (by[f"claims.{i}"].estimate for i in (1, 2, 3))
    assert util is not None and pp2 is not None and tp4 is not None and dp is not None
    said = [float(x) for x in re.findall(r"(\d+\.\d) %", para)]
    assert said[0] == round(100 * util, 1)  # utilisation
    assert said[2] == round(100 * pp2, 1)  # PP4 slower than PP2
    assert said[3] == round(-100 * tp4, 1)  # reduction against TP4
    assert said[4] == round(100 * dp, 1)  # more tokens/s per GPU than DP32
