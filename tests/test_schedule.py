"""The schedule object: today's two schedules as data, a reordered one built and proven
deadlock-free by the unchanged checks, and the lint that refuses a broken schedule."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from conftest import make_plan, plan_samples

from dagen.checks import check_graph
from dagen.cost import estimate
from dagen.errors import GraphError
from dagen.graph.algo.certify import certify
from dagen.graph.algo.derived import Derived
from dagen.graph.algo.sweep import sweep
from dagen.graph.build import SchedulePass, build_graph, default_schedule, plan_schedule
from dagen.graph.ir import EdgeKind, Graph, Kind
from dagen.graph.schedule import Pairs, Schedule
from dagen.graph.schedules import reorder, slots_by_order
from dagen.graph.templates import Programs
from dagen.plan.model import Workload


def test_the_decode_chain_is_the_documented_example() -> None:
    # pp 2, M 2, T 2 (the NOTE of dagen.graph.schedule)
    plan = make_plan(pp=2, micro_batches=2, batch=4, phase="decode", decode_steps=2, gen_len=4)
    sched = plan_schedule(plan)
    assert sched.stages[0].slot.tolist() == [0, 1, 4, 5]
    assert sched.stages[1].slot.tolist() == [1, 2, 5, 6]
    p = sched.pairs
    pairs = list(zip(p.src_stage.tolist(), p.src_block.tolist(), p.dst_stage.tolist(),
                     p.dst_block.tolist(), strict=True))  # fmt: skip
    assert pairs == [
        (0, 0, 1, 0),
        (0, 1, 1, 1),
        (0, 2, 1, 2),
        (0, 3, 1, 3),
        (1, 0, 0, 2),
        (1, 1, 0, 3),
    ]


def test_prefill_is_one_step_of_the_pipeline() -> None:
    sched = plan_schedule(make_plan(pp=3, layers=6, micro_batches=4, batch=4))
    assert [st.slot.tolist() for st in sched.stages] == [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]]
    assert sched.links.size == 3 * 3 and set(sched.links.kind.tolist()) == {EdgeKind.ORDER}


MbOrder = Callable[[int, int, int], int]
"""Sort key of (stage, micro-batch, micro-batches) within a step."""


def _reordering(key: MbOrder) -> SchedulePass:
    """Each stage issues every step's micro-batches in the order ``key`` gives."""

    def make(programs: Programs, workload: Workload) -> Schedule:
        base = default_schedule(programs, workload)
        m = workload.micro_batches
        orders = [
            sorted(range(st.size), key=lambda b, s=s, st=st: (int(st.step[b]), key(s, int(st.mb[b]), m)))
            for s, st in enumerate(base.stages)
        ]  # fmt: skip
        return reorder(base, orders)

    return make


REORDERS: dict[str, MbOrder] = {
    "stage 1 reversed": lambda s, mb, m: m - 1 - mb if s == 1 else mb,
    "odd micro-batches first": lambda s, mb, m: (mb % 2 == 0, mb),
    "every stage reversed": lambda s, mb, m: m - 1 - mb,
}  # fmt: skip


@pytest.mark.parametrize("name", REORDERS)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_a_reordered_schedule_builds_and_is_proven_deadlock_free(name: str, phase: str) -> None:
    extra = dict(phase="decode", decode_steps=2, gen_len=4) if phase == "decode" else {}
    plan = make_plan(pp=3, layers=6, tp=2, micro_batches=4, batch=4, experts=8, ep=2, **extra)
    plain = build_graph(plan)
    g = build_graph(plan, schedule=_reordering(REORDERS[name]))
    assert g.n_nodes == plain.n_nodes and g.n_edges == plain.n_edges
    # the same work, issued in another order: stage 1's first block is not micro-batch 0
    first = g.mb[np.flatnonzero(g.rank == int(np.flatnonzero(g.mesh.stage == 1)[0]))[0]]
    assert int(first) != 0
    sh = Derived(g)
    assert certify(g, sh), "the slots of the reordered schedule prove it deadlock-free"
    assert sweep(g, sh).complete
    assert check_graph(g) == []
    assert estimate(g).makespan_s >= estimate(plain).makespan_s * 0.999


def test_reversing_a_later_stage_makes_it_wait_for_the_last_micro_batch() -> None:
    plan = make_plan(pp=2, micro_batches=4, batch=4)
    g = build_graph(plan, schedule=_reordering(REORDERS["stage 1 reversed"]))
    sched = g.schedule
    assert sched.stages[1].mb.tolist() == [3, 2, 1, 0]
    assert sched.stages[1].slot.tolist() == [4, 5, 6, 7]  # after stage 0 sends micro-batch 3
    e, plain = estimate(g), estimate(build_graph(plan))
    assert e.makespan_s > plain.makespan_s  # stage 1 idles until micro-batch 3 arrives


def test_a_decode_order_that_runs_a_step_before_its_tokens_exist_is_refused() -> None:
    # Every stage issues step 1 before step 0: stage 0's step 1 waits for the last stage's
    # step 0 tokens, which the last stage issues after its own step 1 — a cycle.
    plan = make_plan(pp=2, micro_batches=2, batch=2, phase="decode", decode_steps=2, gen_len=4)

    def backwards(programs: Programs, workload: Workload) -> Schedule:
        base = default_schedule(programs, workload)
        return reorder(base, [list(range(st.size))[::-1] for st in base.stages])

    with pytest.raises(GraphError, match="cycle"):
        build_graph(plan, schedule=backwards)


def _with_pairs(sched: Schedule, **changes: object) -> Schedule:
    return dataclasses.replace(sched, pairs=dataclasses.replace(sched.pairs, **changes))


def test_lint_refuses_a_pair_that_carries_another_micro_batch() -> None:
    sched = plan_schedule(make_plan(pp=2, micro_batches=2, batch=2))
    swapped = _with_pairs(sched, dst_block=sched.pairs.dst_block[::-1].copy())
    with pytest.raises(GraphError, match="another micro-batch or step"):
        swapped.lint()


def test_lint_refuses_an_unpaired_send_and_a_missing_block() -> None:
    sched = plan_schedule(make_plan(pp=2, micro_batches=2, batch=2))
    p = sched.pairs
    dropped = dataclasses.replace(sched, pairs=Pairs(**{f.name: getattr(p, f.name)[:-1] for f in dataclasses.fields(p)}))  # fmt: skip
    with pytest.raises(GraphError, match="paired once"):
        dropped.lint()
    with pytest.raises(GraphError, match="missing block"):
        _with_pairs(sched, dst_block=p.dst_block + 5).lint()


def test_slots_by_order_refuses_an_order_that_contradicts_the_pairing() -> None:
    # stage 1 issues micro-batch 1 first but pairs stage 0's micro-batch 1 with its block 1
    sched = plan_schedule(make_plan(pp=2, micro_batches=2, batch=2))
    stages = [(st.template, st.mb, st.step) for st in sched.stages]
    cyclic = Pairs(src_stage=np.array([0, 1], np.int32), src_block=np.array([1, 1], np.int32),
                   src_row=np.zeros(2, np.int32), dst_stage=np.array([1, 0], np.int32),
                   dst_block=np.array([0, 0], np.int32), dst_row=np.zeros(2, np.int32))  # fmt: skip
    with pytest.raises(GraphError, match="cycle"):
        slots_by_order(stages, cyclic)


def test_a_schedule_with_wrong_slots_only_loses_the_certificate() -> None:
    plan = make_plan(pp=2, micro_batches=2, batch=2)

    def wrong(programs: Programs, workload: Workload) -> Schedule:
        s = default_schedule(programs, workload)
        st = s.stages[1]
        bad = dataclasses.replace(st, slot=np.zeros_like(st.slot))  # a recv no later than its send
        return dataclasses.replace(s, stages=(s.stages[0], bad))

    g: Graph = build_graph(plan, schedule=wrong)
    sh = Derived(g)
    assert not certify(g, sh)
    assert sweep(g, sh).complete and check_graph(g) == []  # the sweep still proves it
    assert int(np.count_nonzero(g.kind == Kind.SEND)) == 2


def test_dagens_own_schedules_lint_clean_on_every_sample_and_grid_plan() -> None:
    """The builder does not lint its own schedules (for speed); this test does, widely."""
    from dagen.plan.loader import load_plan

    plans = [load_plan(p) for p in plan_samples() if p.name != "seed-moe-10b.yaml"]
    plans += [make_plan(pp=pp, micro_batches=m, batch=4, phase=ph, decode_steps=t, gen_len=4)
              for pp in (1, 2, 3) for m in (1, 2) for ph in ("prefill", "decode") for t in (1, 3)]  # fmt: skip
    for plan in plans:
        plan_schedule(plan).lint()
