"""The §2 plan rules: sequence parallelism, Megatron's ordering rule, the maximum
context, fixes that satisfy every constraint at once, and layout faults as findings.
Each injects the fault into a clean plan and sees it caught; each fix is applied and
shown to clear the finding."""

from __future__ import annotations

import re
from typing import Any

import pytest
from click.testing import CliRunner
from test_plan_rules import GOOD, MOE, codes, make, only

import dagen
from dagen.cli import main
from dagen.findings import Severity
from dagen.plan.loader import load_plan_text
from dagen.plan.rules import plan_findings
from dagen.plan.split_rules import layer_findings

MOE_PLAN = {"model.moe": MOE, "parallel.ep": 4}
"""tiny MoE: tp2 · dp2 · pp2 attention, ep4 · edp1 experts on 8 GPUs."""


def test_sp_with_tp_1_is_a_warning_and_the_graph_has_no_sp() -> None:
    plan = make({"parallel.tp": 1, "parallel.dp": 4, "parallel.sequence_parallel": True})
    f = only(plan, "PLAN-SP-TP1")
    assert f.severity is Severity.WARNING and f.path == "parallel.sequence_parallel"
    assert "tp = 1" in f.message and "Megatron-LM turns SP off" in f.message
    assert not plan.parallel.sp_active
    assert "PLAN-SP-TP1" not in codes(make({"parallel.tp": 1, "parallel.dp": 4}))


def test_sp_tokens_not_divisible_by_tp_states_the_padding() -> None:
    # batch 8 / (dp 2 · 4 micro-batches) = 1 sequence of 15 tokens over tp 2
    bad = {
        "parallel.sequence_parallel": True,
        "workload.prompt_len": 15,
        "workload.micro_batches": 4,
    }
    f = only(make(bad), "PLAN-SP-TOKENS")
    assert "1 sequences · 15/1 (prompt_len/cp) tokens = 15" in f.message
    assert "⌈15/2⌉ = 8 per rank (1 padding tokens)" in f.message
    assert f.data == {"tokens": 15, "padded": 8}
    assert "PLAN-SP-TOKENS" not in codes(make({**bad, "workload.prompt_len": 16}))
    assert "PLAN-SP-TOKENS" not in codes(make({**bad, "parallel.sequence_parallel": False}))


def test_sp_tokens_in_decode_counts_draft_tokens() -> None:
    bad = {"parallel.sequence_parallel": True, "workload.phase": "decode",
           "workload.micro_batches": 2, "workload.gen_len": 4}  # fmt: skip
    # 8 / (2 · 2) = 2 sequences · 1 token = 2: divides tp 2
    assert "PLAN-SP-TOKENS" not in codes(make(bad))
    f = only(make({**bad, "workload.micro_batches": 4}), "PLAN-SP-TOKENS")
    assert "1 sequences · (1 + 0 draft) tokens = 1" in f.message


def test_megatron_ordering_rule_edp_must_equal_dp_when_pp_is_not_last() -> None:
    # edp = 8/(1·4·2) = 1 ≠ dp 2, and pp is not last
    f = only(make({**MOE_PLAN, "parallel.order": "tp-cp-ep-pp-dp"}), "PLAN-ORDER-EDP")
    assert f.severity is Severity.ERROR and f.path == "parallel.order"
    assert "edp = world/(etp·ep·pp) = 8/(1·4·2) = 1 but dp = 2" in f.message
    assert "When not using pp-last rank ordering" in f.message
    assert "PLAN-ORDER-EDP" not in codes(make(MOE_PLAN))  # pp last
    # etp·ep = tp: edp = 8/(1·2·2) = 2 = dp
    ok = {**MOE_PLAN, "parallel.ep": 2, "parallel.order": "tp-ep-pp-dp"}
    assert "PLAN-ORDER-EDP" not in codes(make(ok))
    stage = {**MOE_PLAN, "parallel.order": "tp-cp-ep-pp-dp", "parallel.expert_layout": "stage"}
    assert "PLAN-ORDER-EDP" not in codes(make(stage))  # vLLM's layout, not Megatron's


def test_context_past_max_position_embeddings() -> None:
    f = only(make({"model.max_position_embeddings": 16}), "PLAN-CONTEXT")
    assert "prompt_len 16 + gen_len 1 = 17 tokens" in f.message and "16" in f.fix
    assert f.severity is Severity.ERROR
    assert "PLAN-CONTEXT" not in codes(make({"model.max_position_embeddings": 17}))
    spec = {"model.max_position_embeddings": 20, "workload.phase": "decode",
            "workload.gen_len": 3, "workload.speculative_tokens": 2}  # fmt: skip
    assert "+ speculative_tokens 2 = 21" in only(make(spec), "PLAN-CONTEXT").message


def test_context_read_from_an_hf_config(tmp_path: Any) -> None:
    from pathlib import Path

    src = Path(__file__).parent / "data" / "hf" / "llama-3-70b.json"
    (tmp_path / "config.json").write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    text = (
        "model: {hf_config: config.json}\nparallel: {tp: 8}\n"
        "workload: {batch: 1, prompt_len: 8192, gen_len: 64}\nhardware: {preset: H100-SXM-80GB}\n"
    )
    plan = load_plan_text(text, source=str(tmp_path / "p.yaml"), base_dir=tmp_path)
    assert plan.model.max_position_embeddings == 8192
    hit = [f for f in plan_findings(plan) if f.code == "PLAN-CONTEXT"]
    assert (
        hit
        and "8,256 tokens is more than the model's max_position_embeddings 8,192" in hit[0].message
    )
    # the graph is still built: a context claim, not a layout fault
    analysis = dagen.analyse(plan, simulate=False)
    assert analysis.graph is not None and not analysis.ok


def _eps(fix: str) -> set[int]:
    m = re.search(r"use ep ∈ \{([0-9, ]+)\}", fix)
    assert m, fix
    return {int(x) for x in m.group(1).split(",")}


def _redundant(fix: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"ep=(\d+) with redundant_experts: (\d+)", fix)]


def _moe(experts: int, gpus: int, ep: int, **more: Any) -> dict[str, Any]:
    return {"model.moe": {**MOE, "experts": experts}, "model.heads": 4, "parallel.tp": 1,
            "parallel.pp": 1, "parallel.dp": gpus, "parallel.ep": ep,
            "parallel.world_size": gpus, "workload.batch": gpus, "workload.micro_batches": 1,
            **more}  # fmt: skip


@pytest.mark.parametrize(
    ("experts", "gpus", "ep", "code"),
    [(60, 16, 3, "PLAN-EP-STAGE"), (60, 16, 8, "PLAN-EXPERTS-EP"), (256, 320, 256, "PLAN-EP-STAGE"),
     (256, 288, 96, "PLAN-EXPERTS-EP"), (60, 16, 32, "PLAN-EP-STAGE")],
)  # fmt: skip
def test_ep_fix_divides_both_the_expert_slots_and_the_stage(
    experts: int, gpus: int, ep: int, code: str
) -> None:
    f = next(x for x in plan_findings(make(_moe(experts, gpus, ep))) if x.code == code)
    eps = _eps(f.fix)
    assert eps and all(gpus % e == 0 and experts % e == 0 for e in eps), f.fix
    assert {3, 5, 6, 10, 12, 15}.isdisjoint(eps) and 256 not in eps
    for e in eps:  # each suggestion, applied, clears every ep finding
        left = codes(make(_moe(experts, gpus, e)))
        assert not left & {"PLAN-EP-STAGE", "PLAN-EXPERTS-EP", "PLAN-EP-EXPERTS"}, (e, left)
    for e, extra in _redundant(f.fix):
        fixed = make(_moe(experts, gpus, e, **{"parallel.redundant_experts": extra}))
        assert not codes(fixed) & {"PLAN-EP-STAGE", "PLAN-EXPERTS-EP", "PLAN-EP-EXPERTS"}


def test_redundant_experts_suggested_where_they_make_the_division_work() -> None:
    f = only(make(_moe(60, 16, 3)), "PLAN-EP-STAGE")
    assert _eps(f.fix) == {1, 2, 4}
    assert (16, 4) in _redundant(f.fix) and "60 + 4 = 64 slots, 4 per rank" in f.fix
    g = only(make(_moe(256, 320, 256)), "PLAN-EP-STAGE")
    assert (320, 64) in _redundant(g.fix)


def _stages(fix: str) -> list[int]:
    m = re.search(r"layers_per_stage: \[([0-9, ]+)\]", fix)
    assert m, fix
    return [int(x) for x in m.group(1).split(",")]


@pytest.mark.parametrize(("layers", "pp"), [(61, 16), (61, 4), (62, 4), (30, 4), (95, 8), (7, 3)])
def test_layer_split_fix_balances_the_stages(layers: int, pp: int) -> None:
    f = only(make({"model.layers": layers, "parallel.pp": pp, "parallel.dp": 1,
                   "parallel.tp": 1, "parallel.world_size": pp}), "PLAN-LAYERS-SPLIT")  # fmt: skip
    stages = _stages(f.fix)
    assert sum(stages) == layers and max(stages) - min(stages) <= 1
    m = re.search(r"first_stage_layers: (\d+)(?: and last_stage_layers: (\d+))?", f.fix)
    if (layers, pp) == (61, 16):
        assert m is None and "first_stage_layers: 16" not in f.fix
    if m:  # Megatron's edge split, applied: valid and within one layer everywhere
        first, last = int(m.group(1)), int(m.group(2)) if m.group(2) else None
        middle = (layers - first - (last or 0)) // (pp - 1 - (last is not None))
        every = [first, middle] + ([last] if last is not None else [])
        assert max(every) - min(every) <= 1
        ch = {"model.layers": layers, "parallel.pp": pp, "parallel.dp": 1, "parallel.tp": 1,
              "parallel.world_size": pp, "parallel.first_stage_layers": first}  # fmt: skip
        if last is not None:
            ch["parallel.last_stage_layers"] = last
        assert layer_findings(make(ch)) == []


def test_layout_faults_are_findings_with_json_and_exit_1(tmp_path: Any) -> None:
    import json

    import yaml

    doc = {**GOOD, "model": {**GOOD["model"], "moe": {**MOE, "experts": 2}},
           "parallel": {"tp": 2, "pp": 2, "dp": 2, "ep": 2, "redundant_experts": 4}}  # fmt: skip
    bad = tmp_path / "place.yaml"
    bad.write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = CliRunner().invoke(main, ["check", str(bad), "--format", "json"])
    assert result.exit_code == 1, result.output
    found = json.loads(result.stdout)
    hit = [f for f in found if f["code"] == "PLAN-EXPERT-PLACE"]
    assert hit and hit[0]["path"] == "parallel.redundant_experts" and hit[0]["line"]
    assert "Traceback" not in result.output
    # pipeline groups that disagree: order tp-pp-ep-dp, tp 2 before pp but etp 1
    doc = {**GOOD, "model": {**GOOD["model"], "moe": MOE},
           "parallel": {"tp": 2, "pp": 2, "dp": 2, "ep": 2, "order": "tp-pp-ep-dp"}}  # fmt: skip
    bad.write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = CliRunner().invoke(main, ["check", str(bad), "--format", "json"])
    assert result.exit_code == 1, result.output
    found = json.loads(result.stdout)
    assert [f["code"] for f in found if f["severity"] == "error"] == ["PLAN-PP-GROUPS"]
