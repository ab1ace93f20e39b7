"""``dagen search``: the space, the pruning, the frontier, the verdict, the CLI."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_plan, plan_samples
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import small_plans

from dagen.cli import main
from dagen.cost import estimate, figures, model_for
from dagen.findings import Severity
from dagen.graph.build import build_graph
from dagen.plan.loader import load_plan
from dagen.plan.model import Convention, Metric, Plan
from dagen.plan.rules import blocking, plan_findings
from dagen.plan.workload import Mode
from dagen.study.candidates import Status, weight_floor
from dagen.study.frontier import Point, dominates, pareto
from dagen.study.replica import replica_factor, representative
from dagen.study.search import Objective, SearchResult, parse_only, search
from dagen.study.space import Layout, in_default_space, layer_splits, layouts

ROOT = Path(__file__).resolve().parent.parent
TINY_MOE = ROOT / "tests" / "data" / "plans" / "tiny_moe.yaml"
TINY_DENSE = ROOT / "tests" / "data" / "plans" / "tiny_dense.yaml"


# ----------------------------------------------------------------- the space


def _brute_force(plan: Plan, n: int) -> set[Layout]:
    """Every layout by trying every number up to n on every axis (the reading of the
    degrees spelled out once more, apart from dagen.study.space)."""
    moe = plan.model.moe is not None
    orth = plan.parallel.convention is Convention.ORTHOGONAL
    wl = plan.workload
    out = set()
    r = range(1, n + 1)
    for tp, cp, dp, pp, ep, etp in itertools.product(r, r, r, r, r, r):
        if not moe and (ep, etp) != (1, 1):
            continue
        if orth:
            if tp * cp * ep * dp * pp != n or n % (etp * ep * pp):
                continue
            replicas = dp * ep
        else:
            if tp * cp * dp * pp != n or (n // pp) % (ep * etp):
                continue
            replicas = dp
        every = range(1, wl.batch + 1)
        mbs = [m for m in every if wl.batch % replicas == 0 and (wl.batch // replicas) % m == 0]
        if wl.batch % replicas:
            mbs = [wl.micro_batches]
        orders = ["tp-cp-ep-dp-pp"]
        edp = n // (etp * ep * pp)
        if pp > 1 and replicas > 1 and (not moe or edp == replicas):
            orders.append("tp-cp-ep-pp-dp")
        pipes = itertools.product(orders, layer_splits(plan, pp, {}))
        for mb, sp, (order, split) in itertools.product(
            range(1, wl.batch + 1), (False, True), pipes
        ):
            if mb in mbs and (tp > 1 or not sp):
                out.add(Layout(tp=tp, cp=cp, dp=dp, pp=pp, ep=ep, etp=etp, micro_batches=mb,
                               sequence_parallel=sp, order=order, split=split))  # fmt: skip
    return out


@pytest.mark.parametrize(
    ("plan", "n"),
    [
        (make_plan(experts=8, tp=2, dp=2, pp=2, ep=4), 8),
        (make_plan(experts=8, tp=2, dp=1, pp=1, ep=2, convention="orthogonal"), 4),
        (make_plan(tp=2, dp=2), 6),
        (make_plan(experts=8, batch=6), 6),
    ],
    ids=["moe-megatron-8", "moe-orthogonal-4", "dense-6", "moe-batch6-6"],
)
def test_enumeration_equals_brute_force(plan: Plan, n: int) -> None:
    found = layouts(plan, n)
    assert set(found) == _brute_force(plan, n)
    assert len(found) == len(set(found)), "no layout twice"
    assert found == sorted(found, key=Layout.key), "stable order"


def test_default_space_is_the_full_space_filtered() -> None:
    plan = make_plan(experts=8, tp=2, dp=2, pp=2, ep=4, micro_batches=2)
    full = layouts(plan, 8)
    narrow = layouts(plan, 8, full=False)
    assert narrow == [lay for lay in full if in_default_space(plan, lay, {})]
    assert len(narrow) < len(full)
    assert all(lay.micro_batches in {1, lay.pp, 2 * lay.pp, 2} for lay in narrow)


def test_only_restricts_an_axis_and_names_a_bad_one() -> None:
    plan = make_plan(experts=8, tp=2, dp=2, pp=2, ep=4)
    only = parse_only(["pp=2", "mb=1,2"])
    got = layouts(plan, 8, only)
    assert got and {lay.pp for lay in got} == {2} and {lay.micro_batches for lay in got} <= {1, 2}
    with pytest.raises(Exception, match="--only xx=1"):
        parse_only(["xx=1"])


def test_weight_floor_is_below_the_built_graphs_weights() -> None:
    """The memory bound never prunes a layout that fits: it is a floor on what the
    graph layer counts on the fullest rank."""
    for path in (TINY_MOE, ROOT / "samples" / "seed-moe-10b-fixed.yaml"):
        plan = load_plan(path)
        est = estimate(build_graph(plan))
        assert weight_floor(plan) <= int(est.memory.weights_bytes.max())
        assert weight_floor(plan) >= 0.5 * int(est.memory.weights_bytes.max())


# ------------------------------------------------------------- the frontier


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=25))
def test_pareto_equals_the_definition(pairs: list[tuple[int, int]]) -> None:
    pts = [Point(key=i, throughput=t, latency=lat) for i, (t, lat) in enumerate(pairs)]
    front = {p.key for p in pareto(pts)}
    expected = {p.key for p in pts if not any(dominates(q, p) for q in pts)}
    assert front == expected


def _serving_plan() -> Plan:
    return make_plan(mode=Mode.SERVING, concurrency=16, batch=16, phase="decode", prompt_len=64,
                     gen_len=16, experts=8, tp=2, dp=2, pp=1, ep=4, world_size=4)  # fmt: skip


@pytest.fixture(scope="module")
def serving() -> SearchResult:
    return search(_serving_plan(), only=parse_only(["etp=1"]))


@pytest.fixture(scope="module")
def prefill() -> SearchResult:
    return search(load_plan(TINY_MOE))


def _pt(c: object, latency: Metric) -> Point:
    f = c.figures  # type: ignore[attr-defined]
    return Point(key=0, throughput=f.tokens_per_s_per_gpu, latency=f.value(latency))


@pytest.mark.parametrize("which", ["serving", "prefill"])
def test_frontier_is_non_dominated_and_beats_the_rest(
    which: str, request: pytest.FixtureRequest
) -> None:
    r: SearchResult = request.getfixturevalue(which)
    valid = r.valid()
    assert len(valid) > 10
    front = list(r.frontier)
    assert front
    if which == "serving":
        assert len(front) > 1, "concurrency trades TPOT for throughput"
    for f in front:
        assert not any(dominates(_pt(c, r.latency), _pt(f, r.latency)) for c in valid)
    for c in valid:
        if c not in front:
            p = _pt(c, r.latency)
            beaten = any(dominates(_pt(f, r.latency), p) for f in front)
            same = any(_pt(f, r.latency) == p for f in front)
            assert beaten or same, c.layout.label()
    lats = [_pt(f, r.latency).latency for f in front]
    assert lats == sorted(lats)


def test_every_layout_is_accounted_for(prefill: SearchResult) -> None:
    r = prefill
    assert r.size == len(layouts(r.plan, r.gpus, full=False))
    keys = [c.layout.key() for c in r.candidates]
    assert keys == sorted(keys)
    for c in r.candidates:
        if c.status is Status.RULES:
            assert c.reason.split(":")[0].startswith("PLAN-")
        else:
            assert c.status is Status.ESTIMATED and c.figures is not None
    assert sum(c.checked for c in r.candidates) == 3


def test_rule_pruning_keeps_the_rules_reason() -> None:
    from dagen.study.space import apply

    plan = load_plan(TINY_MOE)
    r = search(plan, only=parse_only(["pp=1", "tp=1,2", "mb=1"]))
    for c in r.candidates:
        found = plan_findings(apply(plan, c.layout, 8))
        errors = [f for f in found if f.severity is Severity.ERROR and f.code != "PLAN-PARAMS"]
        assert (c.status is Status.RULES) == bool(errors)
        if errors:
            assert c.reason == f"{errors[0].code}: {errors[0].message}"


# -------------------------------------------------------------- the verdict


def test_given_plan_beaten_by_a_frontier_point(prefill: SearchResult) -> None:
    v = prefill.verdict
    assert v.optimal is False and v.better is not None
    assert v.better in prefill.frontier
    g, b = prefill.given.figures, v.better.figures
    assert g is not None and b is not None
    assert b.tokens_per_s_per_gpu > g.tokens_per_s_per_gpu
    assert b.ttft_s is not None and g.ttft_s is not None and b.ttft_s <= g.ttft_s
    gain = b.tokens_per_s_per_gpu / g.tokens_per_s_per_gpu - 1
    assert v.text.startswith(f"beaten by {v.better.layout.label()}: {gain:+.1%} throughput")


def test_the_best_layout_written_back_is_optimal(prefill: SearchResult) -> None:
    best = prefill.verdict.better
    assert best is not None
    lay = best.layout
    plan = load_plan(TINY_MOE)
    par = dataclasses.replace(plan.parallel, tp=lay.tp, cp=lay.cp, dp=lay.dp, pp=lay.pp,
                              ep=lay.ep, etp=lay.etp, sequence_parallel=lay.sequence_parallel)  # fmt: skip
    wl = dataclasses.replace(plan.workload, micro_batches=lay.micro_batches)
    again = search(dataclasses.replace(plan, parallel=par, workload=wl),
                   only=parse_only([f"pp={lay.pp}"]))  # fmt: skip
    assert again.verdict.optimal is True
    assert again.verdict.text.startswith("optimal")


def test_the_seed_plans_optimal_is_refuted() -> None:
    """The report calls EP16·PP4·TP2 "OPTIMAL"; on its 128 GPUs pure data parallelism
    (every GPU holds all 16 experts: 20 GB of 64) beats it, with no communication."""
    plan = load_plan(ROOT / "samples" / "seed-moe-10b-fixed.yaml")
    only = parse_only(["tp=1,2", "pp=1,4", "ep=1,16", "mb=1,4", "etp=1"])
    r = search(plan, only=only, top=1)
    assert r.verdict.optimal is False and r.verdict.better is not None
    assert r.verdict.better.layout.label() == "tp1 cp1 dp128 pp1 ep1 etp1 mb1"
    g, b = r.given.figures, r.verdict.better.figures
    assert g is not None and b is not None
    assert b.tokens_per_s_per_gpu > 2 * g.tokens_per_s_per_gpu
    assert b.memory_gib < 64 * 1e9 / 2**30


def test_ttft_objective_words_the_verdict_by_latency(prefill: SearchResult) -> None:
    r = search(prefill.plan, objective=Objective.TTFT, top=1)
    assert r.verdict.optimal is False
    assert "TTFT at the same or better throughput" in r.verdict.text


def test_an_slo_excludes_what_misses_it(serving: SearchResult) -> None:
    tpots = sorted(c.figures.tpot_ms for c in serving.valid() if c.figures and c.figures.tpot_ms)
    bound = tpots[len(tpots) // 2]
    r = search(_serving_plan(), only=parse_only(["etp=1"]), slo={Metric.TPOT_MS: bound})
    assert r.valid() and all(c.figures and c.figures.tpot_ms <= bound for c in r.valid())
    assert all(c.figures and c.figures.tpot_ms <= bound for c in r.frontier)


# ----------------------------------------------------------------- symmetry

_SAMPLES = [*plan_samples(), TINY_MOE, TINY_DENSE]
_FIGS = ("ttft_s", "tpot_ms", "tokens_per_s_per_gpu", "memory_gib", "memory_fraction",
         "gpu_utilization", "bubble_fraction", "comm_s", "comm_share", "mfu")  # fmt: skip


def _thinnable(path: Path) -> list[Plan]:
    plan = load_plan(path)
    if blocking(plan_findings(plan)):
        return []
    return [plan]


def test_representative_replicas_give_the_full_graphs_figures() -> None:
    """Every sample whose replicas can be thinned (and variants that can): the per-GPU
    figures of the thinned graph equal the whole graph's; totals scale by k."""
    plans = [p for s in _SAMPLES for p in _thinnable(s)]
    plans.append(make_plan(tp=2, dp=8, pp=2, batch=32, micro_batches=2))
    plans.append(make_plan(experts=8, tp=2, dp=8, pp=1, ep=4, batch=16))
    thinned = [p for p in plans if replica_factor(p) > 1 and p.parallel.world() <= 256]
    for plan in thinned:
        assert _same_figures(plan) > 1
    assert len(thinned) >= 4, [p.name for p in thinned]


def _same_figures(plan: Plan) -> int:
    """Assert the representative's per-GPU figures equal the full graph's; return k."""
    rep, k = representative(plan)
    full = figures(plan, estimate(build_graph(plan), cost_model=model_for(plan)))
    part = figures(rep, estimate(build_graph(rep), cost_model=model_for(rep)))
    for name in _FIGS:
        a, b = getattr(full, name), getattr(part, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (name, a, b)
    assert math.isclose(full.tokens_per_s, part.tokens_per_s * k, rel_tol=1e-9)
    return k


@settings(max_examples=25, deadline=None)
@given(small_plans(every_stage_has_layers=True), st.sampled_from([1, 2]))
def test_representative_replicas_on_random_plans(plan: Plan, per_node: int) -> None:
    plan = dataclasses.replace(
        plan, hardware=dataclasses.replace(plan.hardware, gpus_per_node=per_node)
    )
    assume(not blocking(plan_findings(plan)))
    assume(replica_factor(plan) > 1)
    assert _same_figures(plan) > 1


def test_thinning_refuses_what_would_change_the_figures() -> None:
    # edp = 1: every replica's experts are one EP group; dropping a replica would cut it
    assert replica_factor(make_plan(experts=8, tp=1, dp=8, ep=8, batch=8)) == 1
    # stages smaller than a host: thinning would move stages onto shared hosts
    assert replica_factor(make_plan(tp=1, dp=4, pp=2, batch=8)) == 1
    # dp neither the slowest factor of a stage nor of the world: groups would be cut
    assert replica_factor(make_plan(tp=2, dp=8, pp=2, batch=16, order="tp-dp-cp-ep-pp")) == 1
    # dp last, but the kept replicas would share a host with a dropped one
    assert replica_factor(make_plan(tp=1, dp=8, pp=2, batch=8, order="tp-cp-ep-pp-dp")) == 2
    assert replica_factor(make_plan(tp=1, dp=16, pp=2, batch=16)) == 2


def test_thinning_with_pp_before_dp_gives_the_full_graphs_figures() -> None:
    """dp last in the order: each replica is one block of ranks, and dropping the last
    blocks (whole hosts) changes no per-GPU figure, MoE (edp = dp) and dense alike."""
    plans = [
        make_plan(tp=1, dp=16, pp=2, batch=32, micro_batches=2, order="tp-cp-ep-pp-dp"),
        make_plan(tp=2, dp=8, pp=2, batch=16, micro_batches=2, order="tp-cp-ep-pp-dp",
                  gpus_per_node=4),
        make_plan(experts=8, tp=2, dp=4, pp=2, ep=2, batch=8, micro_batches=2,
                  order="tp-cp-ep-pp-dp", gpus_per_node=4),
    ]  # fmt: skip
    for plan in plans:
        assert not blocking(plan_findings(plan)), plan_findings(plan)
        assert _same_figures(plan) > 1


# ---------------------------------------------------------------------- CLI


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_cli_prints_frontier_and_verdict_and_writes_files(
    runner: CliRunner, tmp_path: Path
) -> None:
    outs = [tmp_path / "f.md", tmp_path / "f.svg", tmp_path / "f.png"]
    args = ["search", str(TINY_MOE), "--only", "pp=1,2", *(a for p in outs for a in ("-o", str(p)))]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "frontier (" in first.stdout and "verdict: beaten by " in first.stdout
    blobs = [p.read_bytes() for p in outs]
    assert b"verdict: beaten by" in blobs[0]
    assert blobs[1].lstrip().startswith(b"<?xml") and blobs[2][:8] == b"\x89PNG\r\n\x1a\n"
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and again.stdout == first.stdout
    assert [p.read_bytes() for p in outs] == blobs, "byte-deterministic outputs"


def test_cli_no_valid_layout_exits_1_with_the_closest_reasons(runner: CliRunner) -> None:
    result = runner.invoke(main, ["search", str(TINY_MOE), "--gpus", "3", "--only", "pp=1"])
    assert result.exit_code == 1, result.output
    assert "no valid layout on 3 GPUs" in result.stderr
    assert "PLAN-" in result.stderr and "Traceback" not in result.output


def test_cli_slo_nobody_meets_exits_1(runner: CliRunner) -> None:
    result = runner.invoke(main, ["search", str(TINY_MOE), "--only", "pp=1", "--slo", "ttft=1e-9"])
    assert result.exit_code == 1, result.output
    assert "outside the SLO" in result.stderr


def test_cli_refuses_a_space_over_the_budget(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "f.md"
    result = runner.invoke(main, ["search", str(TINY_MOE), "--budget", "1e-6", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "layouts" in result.stderr and "--only" in result.stderr and "--budget" in result.stderr
    assert not out.exists()


def test_cli_refuses_a_space_too_large_to_judge_before_the_rules(runner: CliRunner) -> None:
    qwen = ROOT / "samples" / "qwen3-235b-a22b.yaml"
    result = runner.invoke(main, ["search", str(qwen), "--gpus", "4096", "--full"])
    assert result.exit_code == 2, result.output
    assert "473,896 layouts on 4,096 GPUs" in result.stderr and "--only" in result.stderr


def test_a_given_plan_that_fails_its_rules_gets_no_verdict_but_a_frontier() -> None:
    plan = load_plan(ROOT / "samples" / "seed-moe-10b.yaml")
    r = search(plan, only=parse_only(["tp=1", "pp=4", "ep=16", "mb=4", "etp=1"]), top=1)
    assert r.gpus == 128, "the declared world_size"
    assert r.verdict.optimal is None and "PLAN-WORLD" in r.verdict.text
    assert r.frontier


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--only", "xx=1"], "--only"),
        (["--slo", "ttfx=3"], "--slo"),
        (["--slo", "ttft=-1"], "--slo"),
        (["-o", "frontier.txt"], "-o"),
        (["--objective", "tpot"], "--objective"),
        (["--gpus", "0"], "--gpus"),
        (["--top", "0"], "--top"),
    ],
)
def test_cli_bad_flags_exit_2_naming_the_flag(
    runner: CliRunner, args: list[str], flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["search", str(TINY_MOE), *args])
    assert result.exit_code == 2, result.output
    assert flag in result.output and "Traceback" not in result.output
    assert not list(tmp_path.iterdir()), "nothing written"
