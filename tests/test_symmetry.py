"""One rank per symmetric group (dagen/study/symmetry.py, batch.py, estimates.py): the
figures equal the whole graph's simulation on every sample and on random plans.

Tolerance: the schedule (every start and end), the makespan, TTFT, TPOT, tokens/s, the
critical path's communication time, memory and MFU are the same floats (``==``): the
quotient runs the same max-plus operations on the same durations. GPU utilisation and
the bubble (fractions of one) agree to 1e-9, relative or absolute: :func:`dagen.cost.usage.utilisation` measures a
rank's intervals after offsetting its times by ``rank · (2·makespan + 1)``, so a rank
counted as its representative carries that representative's rounding (≈ world ·
makespan · 2⁻⁵² per interval) instead of its own. Where replicas are thinned too, totals
are the representative's times ``k`` (``batch/k · L / t · k`` against ``batch · L /
t``), equal to a relative 1e-12.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, buildable_samples, make_plan
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import small_plans

from dagen.cost import estimate, figures, model_for
from dagen.cost.estimator import durations
from dagen.cost.metrics import Figures
from dagen.cost.simulate import simulate
from dagen.graph.build import build_graph
from dagen.graph.overlap import NAME as OVERLAP_SCHEDULE
from dagen.plan.loader import load_plan
from dagen.plan.model import Plan
from dagen.plan.rules import blocking, plan_findings
from dagen.plan.workload import Mode
from dagen.study import estimates
from dagen.study.batch import simulate_many
from dagen.study.candidates import estimate_one, search_space
from dagen.study.estimates import estimate_all, estimate_symmetric
from dagen.study.search import parse_only
from dagen.study.space import layout_of
from dagen.study.symmetry import quotient

ROOT = Path(__file__).resolve().parent.parent
TINY = [ROOT / "tests" / "data" / "plans" / n for n in ("tiny_moe.yaml", "tiny_dense.yaml")]

EXACT = ("makespan_s", "ttft_s", "tpot_ms", "tokens_per_s", "tokens_per_s_per_gpu",
         "memory_gib", "memory_fraction", "comm_s", "comm_share", "mfu")  # fmt: skip
ROUNDED = ("gpu_utilization", "bubble_fraction")


def _same(full: Figures, part: Figures, rel: float = 0.0) -> None:
    assert full.world == part.world
    for name in EXACT + ROUNDED:
        a, b = getattr(full, name), getattr(part, name)
        assert (a is None) == (b is None), name
        if a is None:
            continue
        if name in ROUNDED:  # fractions of one: absolute rounding too (near 0)
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (name, a, b)
        else:
            assert a == b if rel == 0 else math.isclose(a, b, rel_tol=rel), (name, a, b)


def _check(plan: Plan) -> int:
    """The quotient's estimate and the search's (thinned replicas, then the quotient)
    against the whole graph's; the distinct ranks simulated."""
    graph, model = build_graph(plan), model_for(plan)
    full = estimate(graph, cost_model=model)
    sym, ranks = estimate_symmetric(graph, model)
    _same(figures(plan, full), figures(plan, sym))
    q = quotient(graph, durations(graph, model))
    assert q is not None and q.groups == ranks
    assert np.array_equal(sym.start_s, full.start_s[q.nodes])
    assert np.array_equal(sym.start_s + sym.duration_s, (full.start_s + full.duration_s)[q.nodes])
    (cand,) = estimate_all([(layout_of(plan), plan)])
    assert cand.figures is not None
    _same(figures(plan, full), cand.figures, rel=1e-12)
    return ranks


@pytest.mark.parametrize("name", [*buildable_samples(), *(p.name for p in TINY)])
def test_every_sample_gives_the_whole_graphs_figures(name: str) -> None:
    path = SAMPLES / name if (SAMPLES / name).exists() else ROOT / "tests/data/plans" / name
    plan = load_plan(path)
    ranks = _check(plan)
    assert ranks <= build_graph(plan).world


def test_symmetric_ranks_collapse_on_the_samples() -> None:
    """The saving is real: the seed's 128 GPUs are 4 distinct ranks (one per stage), and
    DeepSeek-V3 decode's 320 are one."""
    for name, want in (("seed-moe-10b-fixed.yaml", 4), ("deepseek-v3-decode.yaml", 1)):
        plan = load_plan(SAMPLES / name)
        _, ranks = estimate_symmetric(build_graph(plan), model_for(plan))
        assert ranks == want, name


@settings(max_examples=30, deadline=None)
@given(small_plans(every_stage_has_layers=True), st.sampled_from([1, 2, 4]))
def test_random_plans_give_the_whole_graphs_figures(plan: Plan, per_node: int) -> None:
    plan = dataclasses.replace(
        plan, hardware=dataclasses.replace(plan.hardware, gpus_per_node=per_node)
    )
    assume(not blocking(plan_findings(plan)))
    _check(plan)


def test_a_rank_that_differs_leaves_its_group() -> None:
    """Fault injected: one node of rank 5 made slower. Rank 5 must no longer stand for
    (or be stood for by) its old peers, and the quotient must still simulate exactly
    what the whole graph does with that fault."""
    plan = load_plan(SAMPLES / "seed-moe-10b-fixed.yaml")
    graph = build_graph(plan)
    dur = durations(graph, model_for(plan))
    clean = quotient(graph, dur)
    assert clean is not None and clean.rank_of[5] != 5
    slow = dur.copy()
    slow[int(np.flatnonzero(graph.rank == 5)[10])] *= 1.5
    q = quotient(graph, slow)
    assert q is not None and q.rank_of[5] == 5 and q.groups > clean.groups
    assert not np.any(np.delete(q.rank_of, 5) == 5)
    full = simulate(graph, slow)
    (part,) = simulate_many([q.graph], [q.durations]) or [None]
    assert part is not None
    assert np.array_equal(part.end_s, full.end_s[q.nodes])
    assert part.makespan_s == full.makespan_s


def test_batched_simulation_equals_one_at_a_time() -> None:
    """Graphs simulated side by side: every start, end and critical path as alone."""
    plans = [load_plan(SAMPLES / "seed-moe-10b-fixed.yaml"), *(load_plan(p) for p in TINY),
             make_plan(tp=2, dp=2, pp=2, batch=8, micro_batches=4),
             make_plan(tp=2, pp=2, phase="decode", decode_steps=3, batch=4)]  # fmt: skip
    graphs = [build_graph(p) for p in plans]
    durs = [durations(g, model_for(p)) for p, g in zip(plans, graphs, strict=True)]
    together = simulate_many(graphs, durs)
    assert together is not None
    for g, d, s in zip(graphs, durs, together, strict=True):
        alone = simulate(g, d)
        assert np.array_equal(s.start_s, alone.start_s)
        assert np.array_equal(s.end_s, alone.end_s)
        assert np.array_equal(s.critical_path, alone.critical_path)
        assert s.makespan_s == alone.makespan_s


TBO = dict(experts=8, top_k=2, ep=4, dp=4, gpus_per_node=2, micro_batches=2, batch=8,
           overlap="two_batch")  # fmt: skip
"""Two-batch overlap on four GPUs, two hosts (as tests/test_overlap.py)."""


@pytest.mark.parametrize(
    "extra",
    [{}, {"phase": "decode", "decode_steps": 3}, {"pp": 2, "dp": 2, "ep": 2},
     {"micro_batches": 4, "batch": 16}, {"dp": 8, "ep": 4, "batch": 16, "gpus_per_node": 4},
     {"all_to_all": "low_latency"}],
    ids=["prefill", "decode", "pp2", "mb4", "dp8-thinned", "low-latency"],
)  # fmt: skip
def test_two_batch_overlap_keeps_its_schedule_and_the_whole_graphs_figures(extra: dict) -> None:
    """A TBO plan: the representative and its quotient keep the interleaved schedule
    (and its SM contention), and the figures are the whole graph's."""
    plan = make_plan(**{**TBO, **extra})
    assert not blocking(plan_findings(plan))
    assert build_graph(plan).pools[0].schedule.name == OVERLAP_SCHEDULE
    _check(plan)


def _same_candidates(a: list, b: list) -> None:
    assert [c.layout for c in a] == [c.layout for c in b]
    for x, y in zip(a, b, strict=True):
        assert x.status == y.status, (x.layout, x.reason, y.reason)
        if x.figures is not None:
            _same(x.figures, y.figures, rel=1e-12)


def test_a_whole_search_space_estimates_as_one_candidate_at_a_time() -> None:
    """Every survivor of a tiny MoE plan's full space (hundreds of layouts, batched):
    the same status and figures as estimating each whole graph alone."""
    plan = load_plan(TINY[0])
    _, alive = search_space(plan, plan.parallel.world(), full=True)
    assert len(alive) > 20
    _same_candidates(estimate_all(alive), [estimate_one(lay, p) for lay, p in alive])


def test_the_fallbacks_give_the_same_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose order cycles is simulated graph by graph, and a candidate with no
    quotient is simulated whole: forced here, the figures do not change."""
    plan = load_plan(SAMPLES / "seed-moe-10b-fixed.yaml")
    _, alive = search_space(plan, 128, parse_only(["pp=2,4", "tp=1,2", "ep=8,16"]), full=False)
    assert 4 <= len(alive) <= 40, len(alive)
    want = [estimate_one(lay, p) for lay, p in alive]
    real = estimates.simulate_many
    monkeypatch.setattr(
        estimates, "simulate_many", lambda g, d: real(g, d) if len(g) == 1 else None
    )
    _same_candidates(estimate_all(alive), want)
    monkeypatch.setattr(estimates, "quotient", lambda g, d: None)
    _same_candidates(estimate_all(alive), want)


@pytest.mark.parametrize("dp", [2, 8])
def test_a_serving_plan_gives_the_whole_graphs_figures(dp: int) -> None:
    """Serving (continuous batching: TTFT and TPOT from the steady iteration), with and
    without replicas to thin."""
    plan = make_plan(mode=Mode.SERVING, concurrency=8 * dp, batch=8 * dp, phase="decode",
                     prompt_len=64, gen_len=16, experts=8, tp=2, dp=dp, pp=1, ep=4,
                     gpus_per_node=4)  # fmt: skip
    assert not blocking(plan_findings(plan))
    _check(plan)


@pytest.mark.parametrize(
    "extra",
    [{"order": "tp-cp-ep-pp-dp"},
     {"order": "tp-cp-ep-pp-dp", "experts": 8, "ep": 2, "tp": 2, "gpus_per_node": 2},
     {"layers": 8, "layers_per_stage": (3, 5)},
     {"layers": 8, "pp": 4, "dp": 2, "layers_per_stage": (2, 2, 3, 1), "micro_batches": 4},
     {"layers": 8, "pp": 4, "dp": 2, "layers_per_stage": (1, 2, 3, 2), "phase": "decode",
      "decode_steps": 2, "order": "tp-cp-ep-pp-dp"}],
    ids=["pp-before-dp", "pp-before-dp-moe", "lighter-first", "lighter-last", "both-decode"],
)  # fmt: skip
def test_the_new_axes_give_the_whole_graphs_figures(extra: dict) -> None:
    """A candidate with each value of the rank-order and layer-split axes: the quotient,
    and the search's thinned-then-quotient estimate, equal the whole graph."""
    base = dict(tp=1, dp=4, pp=2, batch=16, micro_batches=2, gpus_per_node=4)
    plan = make_plan(**{**base, **extra})
    assert not blocking(plan_findings(plan)), plan_findings(plan)
    _check(plan)
