"""Plan rules: each inconsistency injected into a valid plan is caught, with its
arithmetic, a fix and the place it was written; valid plans give no errors."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from dagen.findings import Finding, Severity
from dagen.plan.loader import load_plan, load_plan_text
from dagen.plan.model import Convention, Parallel, Plan
from dagen.plan.rules import plan_findings
from dagen.plan.world import readings

PLANS = Path(__file__).parent / "data" / "plans"

GOOD: dict[str, Any] = {
    "model": {
        "name": "tiny",
        "layers": 4,
        "hidden_size": 64,
        "heads": 4,
        "kv_heads": 2,
        "ffn_size": 256,
        "vocab_size": 128,
    },
    "parallel": {"tp": 2, "pp": 2, "dp": 2, "world_size": 8},
    "workload": {"batch": 8, "prompt_len": 16, "micro_batches": 2},
    "hardware": {"preset": "H100-SXM-80GB"},
}
MOE = {"experts": 8, "top_k": 2, "expert_ffn_size": 128}


def changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with dotted-path changes (None deletes the key)."""
    doc = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        box = doc
        for part in parents:
            box = box.setdefault(part, {})
        if value is None:
            box.pop(leaf, None)
        else:
            box[leaf] = value
    return doc


def make(changes: dict[str, Any]) -> Plan:
    """GOOD with dotted-path changes (None deletes the key), loaded from YAML text."""
    doc = changed(GOOD, changes)
    return load_plan_text(yaml.safe_dump(doc, sort_keys=False), source="rules.yaml")


def only(plan: Plan, code: str) -> Finding:
    hits = [f for f in plan_findings(plan) if f.code == code]
    assert len(hits) == 1, [f.code for f in plan_findings(plan)]
    hit = hits[0]
    assert hit.fix and hit.path and hit.line is not None and hit.column is not None
    return hit


def codes(plan: Plan) -> set[str]:
    return {f.code for f in plan_findings(plan)}


@pytest.mark.parametrize(
    "name", ["tiny_dense.yaml", "tiny_moe.yaml", "seed_moe_10b_orthogonal.yaml"]
)
def test_valid_plans_have_no_findings(name: str) -> None:
    assert plan_findings(load_plan(PLANS / name)) == []


@pytest.mark.parametrize(
    "name", ["seed_moe_10b_fixed.yaml", "deepseek_v3_hf.yaml", "llama3_70b_hf.yaml"]
)
def test_sample_plans_have_no_errors(name: str) -> None:
    findings = plan_findings(load_plan(PLANS / name))
    assert not [f.render() for f in findings if f.severity is Severity.ERROR]


# ------------------------------------------------------- the seed's world


def test_seed_world_gives_both_readings_and_a_fix() -> None:
    plan = load_plan(PLANS / "seed_moe_10b.yaml")
    f = only(plan, "PLAN-WORLD")
    assert f.severity is Severity.ERROR
    assert (f.path, f.line, f.column) == ("parallel.world_size", 24, 15)
    assert "under megatron: attention tp·cp·dp·pp = 2·1·2·4 = 16 GPUs ≠ 128" in f.message
    assert "ep·etp = 16·1 = 16 does not divide the 16/4 = 4 GPUs of a stage" in f.message
    assert "under orthogonal: tp·cp·ep·dp·pp = 2·1·16·2·4 = 256 GPUs ≠ 128" in f.message
    assert "for 128 GPUs under megatron use dp=16 (2·1·16·4 = 128, edp = 128/(1·16·4) = 2)" in f.fix
    assert (
        "under orthogonal use dp=1 (2·1·16·1·4 = 128) and set parallel.convention: orthogonal"
        in f.fix
    )
    r = f.data["readings"]
    assert (r["megatron"]["world"], r["orthogonal"]["world"]) == (16, 256)
    assert not r["megatron"]["consistent"] and not r["orthogonal"]["consistent"]


def test_the_fixes_the_seed_finding_proposes_are_consistent() -> None:
    assert "PLAN-WORLD" not in codes(load_plan(PLANS / "seed_moe_10b_fixed.yaml"))
    assert "PLAN-WORLD" not in codes(load_plan(PLANS / "seed_moe_10b_orthogonal.yaml"))


def test_plan_consistent_only_under_the_other_reading_is_told_to_switch() -> None:
    base = {"model.moe": MOE, "parallel.ep": 4, "parallel.dp": 1, "parallel.world_size": 16}
    f = only(make(base), "PLAN-WORLD")  # megatron: 2·1·1·2 = 4; orthogonal: 2·1·4·1·2 = 16
    assert f.fix.startswith("set parallel.convention: orthogonal")
    back = {"model.moe": MOE, "parallel.ep": 4, "parallel.convention": "orthogonal"}
    f = only(make(back), "PLAN-WORLD")  # orthogonal 32 ≠ 8; megatron 8 with ep 4 | 4
    assert f.fix.startswith("set parallel.convention: megatron")


def test_ep_not_dividing_a_stage_without_declared_world() -> None:
    plan = make(
        {"model.moe": {**MOE, "experts": 16}, "parallel.ep": 16, "parallel.world_size": None}
    )
    f = only(plan, "PLAN-EP-STAGE")
    assert "ep·etp = 16·1 = 16 does not divide the 8/2 = 4 GPUs of a stage" in f.message
    assert f.fix.startswith("use ep ∈ {1, 2, 4}; or raise dp to 8")
    assert "or set parallel.convention: orthogonal" in f.fix and "= 128 GPUs" in f.fix


def test_undeclared_reading_is_explained_as_info() -> None:
    f = only(make({"model.moe": MOE, "parallel.ep": 4}), "PLAN-CONVENTION")
    assert f.severity is Severity.INFO and "would mean 32" in f.message


@pytest.mark.parametrize(
    ("tp", "cp", "dp", "pp", "ep", "etp"),
    list(itertools.product([1, 2, 4], [1, 2], [1, 3], [1, 2], [1, 2, 8], [1, 2])),
)
def test_readings_match_the_model_methods(
    tp: int, cp: int, dp: int, pp: int, ep: int, etp: int
) -> None:
    for conv in Convention:
        par = Parallel(convention=conv, tp=tp, cp=cp, dp=dp, pp=pp, ep=ep, etp=etp)
        r = readings(par)[conv]
        assert r.world == par.world()
        assert r.fold_ok == (par.edp() * etp * ep * pp == par.world())


# ------------------------------------------------------------ each rule

CASES: list[tuple[str, dict[str, Any], str, Severity, str, str]] = [
    (
        "heads-tp",
        {
            "model.heads": 4,
            "parallel.tp": 3,
            "parallel.world_size": None,
            "workload.batch": 6,
            "model.head_dim": 16,
            "model.kv_heads": 1,
        },
        "PLAN-HEADS-TP",
        Severity.ERROR,
        "parallel.tp",
        "4 / 3 = 1.33333",
    ),
    (
        "tp-heads",
        {"parallel.tp": 8, "parallel.world_size": 32},
        "PLAN-TP-HEADS",
        Severity.ERROR,
        "parallel.tp",
        "more than the model's 4",
    ),
    (
        "kv-replicated",
        {"parallel.tp": 4, "parallel.world_size": 16},
        "PLAN-KV-REPLICATED",
        Severity.INFO,
        "model.kv_heads",
        "tp/kv = 4/2 = 2 times",
    ),
    (
        "kv-tp",
        {
            "model.heads": 12,
            "model.kv_heads": 6,
            "model.hidden_size": 96,
            "parallel.tp": 4,
            "parallel.world_size": 16,
        },
        "PLAN-KV-TP",
        Severity.ERROR,
        "parallel.tp",
        "6 % 4 = 2",
    ),
    (
        "gqa",
        {"model.kv_heads": 3},
        "PLAN-GQA",
        Severity.ERROR,
        "model.kv_heads",
        "not a multiple of kv_heads 3",
    ),
    (
        "ffn-tp",
        {"model.ffn_size": 250, "parallel.tp": 4, "parallel.world_size": 16},
        "PLAN-FFN-TP",
        Severity.ERROR,
        "parallel.tp",
        "250 / 4 = 62.5",
    ),
    (
        "hidden-tp",
        {"model.hidden_size": 65, "model.head_dim": 16},
        "PLAN-HIDDEN-TP",
        Severity.WARNING,
        "parallel.tp",
        "65 / 2 = 32.5",
    ),
    (
        "vocab-tp",
        {"model.vocab_size": 129},
        "PLAN-VOCAB-TP",
        Severity.WARNING,
        "model.vocab_size",
        "129 → 256",
    ),
    (
        "moe-dense",
        {"parallel.ep": 2},
        "PLAN-MOE-DENSE",
        Severity.ERROR,
        "parallel.ep",
        "no moe block",
    ),
    (
        "balance-dense",
        {"workload.expert_balance": 0.8},
        "PLAN-MOE-DENSE",
        Severity.ERROR,
        "workload.expert_balance",
        "no moe block",
    ),
    (
        "experts-ep",
        {
            "model.moe": MOE,
            "parallel.ep": 3,
            "parallel.dp": 3,
            "parallel.world_size": 12,
            "workload.batch": 12,
        },
        "PLAN-EXPERTS-EP",
        Severity.ERROR,
        "parallel.ep",
        "8 / 3 = 2.66667",
    ),
    (
        "ep-experts",
        {
            "model.moe": MOE,
            "parallel.ep": 16,
            "parallel.dp": 16,
            "parallel.world_size": 64,
            "workload.batch": 32,
        },
        "PLAN-EP-EXPERTS",
        Severity.ERROR,
        "parallel.ep",
        "more than the 8 experts",
    ),
    (
        "etp-ffn",
        {
            "model.moe": {**MOE, "expert_ffn_size": 100},
            "parallel.etp": 8,
            "parallel.dp": 8,
            "parallel.world_size": 32,
            "workload.batch": 16,
        },
        "PLAN-ETP-FFN",
        Severity.ERROR,
        "parallel.etp",
        "100 / 8 = 12.5",
    ),
    (
        "topk",
        {"model.moe": {**MOE, "top_k": 9}},
        "PLAN-TOPK",
        Severity.ERROR,
        "model.moe.top_k",
        "top_k 9",
    ),
    (
        "no-moe-layer",
        {"model.moe": {**MOE, "first_dense_layers": 4}},
        "PLAN-NO-MOE-LAYER",
        Severity.WARNING,
        "model.moe.first_dense_layers",
        "first_dense_layers 4 ≥ layers 4",
    ),
    (
        "order",
        {"parallel.order": "TP-PP"},
        "PLAN-ORDER",
        Severity.ERROR,
        "parallel.order",
        "leaves out dp (dp = 2)",
    ),
    (
        "pp-layers",
        {"parallel.pp": 8, "parallel.world_size": 32},
        "PLAN-PP-LAYERS",
        Severity.ERROR,
        "parallel.pp",
        "pp=8 stages for 4 layers",
    ),
    (
        "uneven",
        {"model.layers": 5},
        "PLAN-LAYERS-SPLIT",
        Severity.ERROR,
        "parallel.pp",
        "5 / 2 = 2.5",
    ),
    (
        "stages-len",
        {"parallel.layers_per_stage": [4]},
        "PLAN-LAYERS-STAGES",
        Severity.ERROR,
        "parallel.layers_per_stage",
        "lists 1 stages but pp=2",
    ),
    (
        "stages-sum",
        {"parallel.layers_per_stage": [3, 2]},
        "PLAN-LAYERS-SUM",
        Severity.ERROR,
        "parallel.layers_per_stage",
        "3 + 2 = 5",
    ),
    (
        "stages-empty",
        {"parallel.layers_per_stage": [4, 0]},
        "PLAN-EMPTY-STAGE",
        Severity.WARNING,
        "parallel.layers_per_stage",
        "stage 1 holds no layer",
    ),
    (
        "conflict",
        {"parallel.layers_per_stage": [2, 2], "parallel.first_stage_layers": 2},
        "PLAN-LAYERS-CONFLICT",
        Severity.ERROR,
        "parallel.layers_per_stage",
        "both given",
    ),
    (
        "edge-split",
        {"model.layers": 61, "parallel.pp": 4, "parallel.dp": 1, "parallel.first_stage_layers": 15},
        "PLAN-LAYERS-SPLIT",
        Severity.ERROR,
        "parallel.first_stage_layers",
        "61 − 15 − 0 = 46",
    ),
    (
        "edge-both",
        {
            "model.layers": 16,
            "parallel.pp": 4,
            "parallel.dp": 1,
            "parallel.first_stage_layers": 3,
            "parallel.last_stage_layers": 4,
        },
        "PLAN-LAYERS-SPLIT",
        Severity.ERROR,
        "parallel.first_stage_layers",
        "other 2 stages",
    ),
    (
        "batch-dp",
        {"workload.batch": 9},
        "PLAN-BATCH-DP",
        Severity.ERROR,
        "workload.batch",
        "9 / 2 = 4.5",
    ),
    (
        "micro",
        {"workload.micro_batches": 3},
        "PLAN-MICROBATCH",
        Severity.ERROR,
        "workload.micro_batches",
        "8 / 2 = 4 does not split into micro_batches 3",
    ),
    (
        "batch-orthogonal",
        {
            "model.moe": MOE,
            "parallel.ep": 4,
            "parallel.convention": "orthogonal",
            "parallel.world_size": 32,
            "workload.batch": 4,
        },
        "PLAN-BATCH-DP",
        Severity.ERROR,
        "workload.batch",
        "dp·ep = 2·4",
    ),
    (
        "cp",
        {"parallel.cp": 2, "parallel.world_size": 16, "workload.prompt_len": 18},
        "PLAN-CP-PROMPT",
        Severity.WARNING,
        "workload.prompt_len",
        "2·cp = 4",
    ),
    (
        "decode",
        {"workload.phase": "decode", "workload.decode_steps": 4},
        "PLAN-DECODE-STEPS",
        Severity.WARNING,
        "workload.decode_steps",
        "decode_steps 4",
    ),
    (
        "params",
        {"model.params": "1B"},
        "PLAN-PARAMS",
        Severity.ERROR,
        "model.params",
        "declares 1.00B",
    ),
    (
        "fp8",
        {"model.dtype": "fp8", "hardware.preset": "A100-80GB"},
        "PLAN-FP8-HW",
        Severity.WARNING,
        "model.dtype",
        "A100-80GB lists no fp8",
    ),
    (
        "tp-nodes",
        {
            "model.heads": 16,
            "model.kv_heads": 16,
            "parallel.tp": 16,
            "parallel.world_size": 64,
            "model.ffn_size": 256,
        },
        "PLAN-TP-NODES",
        Severity.WARNING,
        "parallel.tp",
        "spans 2 nodes",
    ),
]


@pytest.mark.parametrize(
    ("changes", "code", "severity", "path", "arithmetic"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_injected_inconsistency_is_caught(
    changes: dict[str, Any], code: str, severity: Severity, path: str, arithmetic: str
) -> None:
    plan = make(changes)
    assert plan_findings(make({})) == []  # the base is clean: the change caused it
    f = only(plan, code)
    assert (f.severity, f.path) == (severity, path)
    assert arithmetic in f.message
    loc = plan.where(path)
    assert loc is not None and (f.line, f.column) == (loc.line, loc.column)


def test_finding_points_at_the_written_value() -> None:
    text = yaml.safe_dump(GOOD, sort_keys=False).replace("batch: 8", "batch: 9")
    f = only(load_plan_text(text), "PLAN-BATCH-DP")
    line = text.splitlines().index("  batch: 9") + 1
    assert (f.line, f.column) == (line, 10)


def test_redundant_experts_count_towards_the_split() -> None:
    base = {
        "model.moe": MOE,
        "parallel.ep": 3,
        "parallel.dp": 3,
        "parallel.world_size": 12,
        "workload.batch": 12,
    }
    assert "PLAN-EXPERTS-EP" in codes(make(base))
    assert "PLAN-EXPERTS-EP" not in codes(make({**base, "parallel.redundant_experts": 1}))


def test_megatron_edge_split_that_works() -> None:
    ok = {"model.layers": 61, "parallel.pp": 4, "parallel.dp": 1, "parallel.first_stage_layers": 16}
    assert not codes(make(ok)) & {"PLAN-LAYERS-SPLIT", "PLAN-PP-LAYERS"}


def test_uneven_split_fix_proposes_both_ways() -> None:
    f = only(make({"model.layers": 61, "parallel.pp": 4, "parallel.dp": 1}), "PLAN-LAYERS-SPLIT")
    assert "layers_per_stage: [16, 15, 15, 15]" in f.fix
    assert "first_stage_layers: 16 (the other 3 stages take 15 each)" in f.fix


@pytest.mark.parametrize(
    ("tp", "pp", "dp", "ep"),
    list(itertools.product([1, 2, 4, 8], [1, 2, 4], [1, 2, 3], [1, 2, 4, 8])),
)
def test_every_finding_is_complete_over_a_grid(tp: int, pp: int, dp: int, ep: int) -> None:
    changes = {
        "model.moe": MOE,
        "parallel.tp": tp,
        "parallel.pp": pp,
        "parallel.dp": dp,
        "parallel.ep": ep,
    }
    plan = make(changes)
    for f in plan_findings(plan):
        assert f.code.startswith("PLAN-") and f.message and f.fix
        assert f.line is not None and f.column is not None
    errors = {f.code for f in plan_findings(plan) if f.severity is Severity.ERROR}
    consistent = 4 % tp == 0 and 4 % pp == 0 and 8 % (dp * 2) == 0 and 8 % ep == 0
    consistent = consistent and tp * dp * pp == 8 and (tp * dp) % ep == 0 and (8 // dp) % 2 == 0
    assert (not errors) == consistent, errors
