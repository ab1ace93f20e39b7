"""The rank-order and layer-split axes of ``dagen search`` (dagen/study/stages.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_plan

from dagen.cli import main
from dagen.errors import MeshError
from dagen.mesh.ranks import check_order, mesh_of
from dagen.plan.model import Plan
from dagen.plan.rules import blocking, plan_findings
from dagen.study.candidates import estimate_one
from dagen.study.report import frontier_markdown
from dagen.study.search import SearchError, parse_only, search
from dagen.study.space import apply, in_default_space, layout_of, layouts
from dagen.study.stages import DEFAULT_ORDER, PP_BEFORE_DP, head_weight, splits

ROOT = Path(__file__).resolve().parent.parent
TINY_MOE = ROOT / "tests" / "data" / "plans" / "tiny_moe.yaml"
DIMS = ("tp", "cp", "dp", "pp")

HEAVY_HEAD = dict(layers=8, hidden_size=2048, heads=16, kv_heads=4, head_dim=128,
                  ffn_size=4096, vocab_size=262144)  # fmt: skip
"""Eight layers under a 262,144-word LM head: the head weighs ~15 layers (head_weight)."""


def _groups(plan: Plan) -> dict[str, set[frozenset[int]]]:
    mesh = mesh_of(plan)
    return {d: {frozenset(map(int, g)) for g in mesh.groups(d)} for d in DIMS}


def _reordered(plan: Plan, order: str) -> Plan:
    return dataclasses.replace(plan, parallel=dataclasses.replace(plan.parallel, order=order))


def test_pp_before_dp_is_tried_where_it_moves_groups_across_hosts() -> None:
    """8 GPUs, 4 a host, pp 2 × dp 4: Megatron's order puts the two stages of a replica
    on two hosts (every PP group crosses), pp-before-dp puts them on one. Both orders are
    candidates, and the groups they make differ."""
    plan = make_plan(tp=1, dp=4, pp=2, batch=8, gpus_per_node=4)
    got = [lay for lay in layouts(plan, 8) if (lay.dp, lay.pp) == (4, 2)]
    assert {lay.order for lay in got} == {DEFAULT_ORDER, PP_BEFORE_DP}
    a, b = (apply(plan, next(x for x in got if x.order == o), 8) for o in (DEFAULT_ORDER,
                                                                           PP_BEFORE_DP))  # fmt: skip
    assert mesh_of(a).crosses_hosts("pp").tolist() == [True] * 4
    assert mesh_of(b).crosses_hosts("pp").tolist() == [False] * 4
    assert _groups(a) != _groups(b)
    label = next(x for x in got if x.order == PP_BEFORE_DP).label()
    assert "order tp-cp-ep-pp-dp" in label
    assert "order" not in next(x for x in got if x.order == DEFAULT_ORDER).label()


def test_one_order_where_the_order_cannot_change_the_mesh() -> None:
    """pp 1 or one replica: the two orders make the same groups, so one is tried."""
    plan = make_plan(tp=1, dp=4, pp=2, batch=8, gpus_per_node=4)
    narrow = [lay for lay in layouts(plan, 8) if lay.pp == 1 or lay.dp == 1]
    assert narrow and {lay.order for lay in narrow} == {DEFAULT_ORDER}
    compared = 0
    for lay in narrow:
        cand, other = apply(plan, lay, 8), _reordered(apply(plan, lay, 8), PP_BEFORE_DP)
        try:
            check_order(other.parallel, other.model)
        except MeshError:  # PLAN-PP-GROUPS: the other order is not even a mesh
            continue
        assert _groups(cand) == _groups(other), lay.label()
        compared += 1
    assert compared >= 4


def test_an_order_the_rules_reject_is_not_tried() -> None:
    """PLAN-ORDER-EDP: pp not last needs expert DP = DP; ep 4 over dp 2 gives edp 1."""
    plan = make_plan(experts=8, tp=1, dp=4, pp=2, ep=4, batch=8)
    for lay in layouts(plan, 8):
        if lay.order == PP_BEFORE_DP:
            assert not blocking(plan_findings(apply(plan, lay, 8))), lay.label()
    assert any(lay.order == PP_BEFORE_DP for lay in layouts(plan, 8))
    assert not any(lay.order == PP_BEFORE_DP and lay.ep == 4 and lay.dp == 4
                   for lay in layouts(plan, 8))  # fmt: skip


def test_a_heavy_head_gets_a_lighter_last_stage_that_beats_the_even_split() -> None:
    """Decode under a 262,144-word head on 4 stages: the split with one layer fewer on
    the last stage is a candidate and its estimated TPOT beats the even split's."""
    plan = make_plan(tp=1, pp=4, dp=1, phase="decode", decode_steps=2, batch=64,
                     micro_batches=4, **HEAVY_HEAD)  # fmt: skip
    assert head_weight(plan) > 10
    named = splits(layers=8, pp=4, head=head_weight(plan))
    assert named["even"] == (2, 2, 2, 2) and named["last"] == (2, 2, 3, 1)
    only = parse_only(["pp=4", "mb=4"])
    got = {lay.split: lay for lay in layouts(plan, 4, only)}
    assert set(got) == set(named.values()) and len(got) <= 4
    tpot = {}
    for split, lay in got.items():
        cand = estimate_one(lay, apply(plan, lay, 4))
        assert cand.figures is not None and cand.figures.tpot_ms is not None
        tpot[split] = cand.figures.tpot_ms
    assert tpot[named["last"]] < tpot[named["even"]]
    assert tpot[named["balanced"]] <= tpot[named["last"]]
    assert got[named["last"]].label().endswith("split 2/2/3/1")


def test_the_default_space_keeps_the_even_and_the_balanced_split() -> None:
    plan = make_plan(tp=1, pp=4, dp=1, phase="decode", decode_steps=2, batch=64,
                     micro_batches=4, **HEAVY_HEAD)  # fmt: skip
    named = splits(layers=8, pp=4, head=head_weight(plan))
    narrow = {lay.split for lay in layouts(plan, 4, full=False) if lay.pp == 4}
    assert narrow == {named["even"], named["balanced"]}
    assert all(in_default_space(plan, lay, {}) for lay in layouts(plan, 4, full=False))


def test_the_plans_own_split_and_order_are_its_layout() -> None:
    plan = make_plan(tp=1, dp=4, pp=2, batch=8, layers=4, layers_per_stage=(1, 3),
                     order="tp-cp-ep-pp-dp")  # fmt: skip
    own = layout_of(plan)
    assert own.split == (1, 3) and own.order == PP_BEFORE_DP
    assert own in layouts(plan, 8)
    written = apply(plan, own, 8).parallel
    assert written.layers_per_stage == (1, 3) and written.order == PP_BEFORE_DP
    even = dataclasses.replace(own, split=(2, 2))
    assert apply(plan, even, 8).parallel.layers_per_stage is None, "even: the default"


def test_only_parses_the_new_axes() -> None:
    only = parse_only(["order=TP-CP-EP-PP-DP", "split=even,balanced", "split=15/16/16/14"])
    assert only == {"order": frozenset({PP_BEFORE_DP}),
                    "split": frozenset({"even", "balanced", "15/16/16/14"})}  # fmt: skip
    plan = make_plan(tp=1, dp=4, pp=2, batch=8, gpus_per_node=4)
    kept = layouts(plan, 8, parse_only(["order=tp-cp-ep-pp-dp"]))
    assert kept and {lay.order for lay in kept} == {PP_BEFORE_DP}
    evens = layouts(plan, 8, parse_only(["split=even", "pp=2"]))
    assert evens and {lay.split for lay in evens} == {(2, 2)}
    sized = layouts(plan, 8, parse_only(["split=1/3", "pp=2"]))
    assert sized and {lay.split for lay in sized} == {(1, 3)}
    for bad in ("order=tp-xx-pp", "order=tp-tp", "split=uneven", "split=0/4", "split=2/x"):
        with pytest.raises(SearchError, match=f"--only {bad}"):
            parse_only([bad])


@pytest.mark.parametrize("value", ["order=pp-dp-zz", "split=heavy", "split=3/-1"])
def test_cli_bad_axis_values_exit_2_naming_the_flag(value: str) -> None:
    result = CliRunner().invoke(main, ["search", str(TINY_MOE), "--only", value])
    assert result.exit_code == 2, result.output
    assert f"--only {value}" in result.output and "Traceback" not in result.output


def test_a_search_reports_a_split_that_beats_the_plans_even_split() -> None:
    """End to end: the heavy-head plan's even split is beaten by an uneven split, named
    in the verdict and the Markdown frontier."""
    plan = make_plan(tp=1, pp=4, dp=1, phase="decode", decode_steps=2, batch=64,
                     micro_batches=4, **HEAVY_HEAD)  # fmt: skip
    r = search(plan, gpus=4, only=parse_only(["pp=4", "mb=4"]), full=True, top=1)
    assert r.verdict.optimal is False and r.verdict.better is not None
    best = r.verdict.better.layout
    assert best.split is not None and best.split[-1] < 2, best.label()
    assert f"split {'/'.join(map(str, best.split))}" in r.verdict.text
    assert best.label() in frontier_markdown(r)
