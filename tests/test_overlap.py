"""Two-batch overlap (``schedule.overlap: two_batch``, :mod:`dagen.graph.overlap`).

The interleaved schedule must pass the same checks as the plain one, price between the
compute-only bound and the sequential schedule, and a broken one must be caught.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_plan

from dagen.checks import Code, check_collective_order, check_comms, check_graph
from dagen.checks.shared import Shared
from dagen.cost import estimate
from dagen.cost.roofline import Roofline
from dagen.errors import GraphError
from dagen.graph.algo.certify import certify
from dagen.graph.algo.sweep import sweep
from dagen.graph.build import build_graph, plan_schedule
from dagen.graph.ir import Graph, Kind, Op
from dagen.graph.overlap import interleave, split_template, two_batch
from dagen.graph.schedule import Pairs, Schedule
from dagen.graph.schedules import decode_chain
from dagen.graph.templates import Programs
from dagen.plan.model import Overlap, Plan, Scheduling
from dagen.plan.rules import plan_findings

MOE = dict(experts=8, top_k=2, ep=4, dp=4, gpus_per_node=2, micro_batches=2, batch=8)
"""Four GPUs on two hosts, every expert-parallel all-to-all crossing the NIC."""


def plain(plan: Plan) -> Plan:
    return dataclasses.replace(plan, schedule=Scheduling(overlap=Overlap.NONE))


def compute_bound(graph: Graph) -> float:
    """The busiest rank's compute-stream time: no schedule finishes before it."""
    seconds = Roofline().node_seconds(graph)
    compute = graph.kind == Kind.COMPUTE
    return float(np.bincount(graph.rank[compute], seconds[compute]).max())


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"phase": "decode", "decode_steps": 3},
        {"pp": 2, "dp": 2, "ep": 2},
        {"pp": 2, "dp": 2, "ep": 2, "phase": "decode", "decode_steps": 3},
        {"micro_batches": 4, "batch": 16},
        {"micro_batches": 3, "batch": 12},
    ],
    ids=["prefill", "decode", "pp2", "pp2-decode", "mb4", "mb3"],
)
def test_two_batch_graph_is_deadlock_free_and_prices_between_the_bounds(extra: dict) -> None:
    plan = make_plan(**{**MOE, **extra}, overlap="two_batch")
    tbo, seq = build_graph(plan), build_graph(plain(plan))
    assert tbo.n_nodes == seq.n_nodes and tbo.n_edges >= seq.n_edges - 16
    # The schedule's slots certify it (no fallback to the sweep), and the sweep agrees.
    assert certify(tbo, Shared(tbo)) and sweep(tbo).complete
    assert check_graph(tbo, lint=True) == []
    fast, slow = estimate(tbo).makespan_s, estimate(seq).makespan_s
    assert fast >= compute_bound(seq) * (1 - 1e-9)
    if plan.parallel.pp == 1:  # a pipeline may fill worse with both halves in step
        assert fast < slow


def test_prefill_on_two_hosts_hides_most_of_the_all_to_all() -> None:
    plan = make_plan(**MOE, prompt_len=256, overlap="two_batch")
    tbo, seq = build_graph(plan), build_graph(plain(plan))
    comm = seq.kind == Kind.COLLECTIVE
    a2a = np.isin(seq.op, [int(Op.MOE_DISPATCH), int(Op.MOE_COMBINE)])
    seconds = Roofline().node_seconds(seq)
    hidden = estimate(seq).makespan_s - estimate(tbo).makespan_s
    # What overlap saves comes out of the all-to-all (one rank's share of it).
    assert 0 < hidden <= float(seconds[comm & a2a & (seq.rank == 0)].sum())


def test_the_interleaved_order_alternates_micro_batches_piece_by_piece() -> None:
    plan = make_plan(**MOE, overlap="two_batch")
    sched = plan_schedule(plan)
    st = sched.stages[0]
    assert sched.name == "two-batch-overlap"
    assert st.mb[:6].tolist() == [0, 1, 0, 1, 0, 1]
    assert st.chunk[:6].tolist() == [0, 0, 1, 1, 2, 2]
    # Every piece but the last ends with a dispatch or a combine.
    ends = [int(sched.templates[t].op[-1]) for t in st.template[:-2].tolist()]
    assert set(ends) == {int(Op.MOE_DISPATCH), int(Op.MOE_COMBINE)}


def test_split_keeps_every_row_and_edge() -> None:
    plan = make_plan(**MOE)
    t = plan_schedule(plan).templates[0]
    pieces, bounds = split_template(t)
    assert bounds[0] == 0 and bounds[-1] == t.size
    assert np.array_equal(np.concatenate([p.op for p in pieces]), t.op)
    inside = sum(p.n_edges for p in pieces)
    crossing = np.count_nonzero(
        np.searchsorted(bounds, t.esrc, "right") != np.searchsorted(bounds, t.edst, "right")
    )
    assert inside + crossing == t.n_edges and crossing > 0


def _dropped_pair(programs: Programs, workload) -> Schedule:
    sched = two_batch(programs, workload)
    p = sched.pairs
    keep = slice(1, None)
    pairs = Pairs(**{f: getattr(p, f)[keep] for f in (
        "src_stage", "src_block", "src_row", "dst_stage", "dst_block", "dst_row")})  # fmt: skip
    return dataclasses.replace(sched, pairs=pairs, _cache={})


def test_a_missing_pairing_is_refused() -> None:
    plan = make_plan(**{**MOE, "pp": 2, "dp": 2, "ep": 2}, overlap="two_batch")
    with pytest.raises(GraphError, match="not every send is paired once"):
        build_graph(plan, schedule=_dropped_pair)


def test_a_reordered_dispatch_is_caught() -> None:
    g = build_graph(make_plan(**MOE, overlap="two_batch"))
    rank0 = np.flatnonzero((g.rank == 0) & (g.op == Op.MOE_DISPATCH) & (g.layer == 0))
    assert g.mb[rank0].tolist() == [0, 1]
    a, b = rank0.tolist()
    cols = {c: getattr(g, c).copy() for c in ("inst", "aux", "mb")}
    for col in cols.values():
        col[[a, b]] = col[[b, a]]  # rank 0 issues micro-batch 1's dispatch first
    found = check_collective_order(dataclasses.replace(g, **cols))
    assert [f.code for f in found] == [Code.GRAPH_COLL_ORDER]


def test_a_send_issued_for_the_other_micro_batch_is_caught() -> None:
    g = build_graph(make_plan(**{**MOE, "pp": 2, "dp": 2, "ep": 2}, overlap="two_batch"))
    sends = np.flatnonzero((g.rank == 0) & (g.op == Op.PP_SEND))
    assert g.mb[sends].tolist() == [0, 1]  # both halves leave the stage at the end of a pair
    mb = g.mb.copy()
    mb[sends] = mb[sends[::-1]]  # rank 0 sends micro-batch 1's activations first
    found = check_comms(dataclasses.replace(g, mb=mb))
    assert Code.GRAPH_P2P_MB in [f.code for f in found]


def test_interleave_of_one_micro_batch_is_the_plain_order() -> None:
    plan = make_plan(**{**MOE, "micro_batches": 1})
    sched = plan_schedule(plan, schedule=lambda progs, _: interleave(decode_chain(progs, 1, 1)))
    assert sched.stages[0].mb.tolist() == [0] * sched.stages[0].size
    assert sched.stages[0].chunk.tolist() == list(range(sched.stages[0].size))


@pytest.mark.parametrize(
    ("overrides", "needle", "fix"),
    [
        ({"micro_batches": 2}, "the model has no MoE layers", "set schedule.overlap: none"),
        ({**MOE, "ep": 1}, "parallel.ep is 1", "or ep > 1"),
        ({**MOE, "micro_batches": 1}, "micro_batches is 1", "set workload.micro_batches: 2"),
        (
            {**MOE, "micro_batches": 1, "batch": 4},
            "batch of 1 sequence)",
            "fewer than two micro-batches' worth",
        ),
    ],
    ids=["dense", "ep1", "one-mb", "one-seq"],
)
def test_plan_overlap_fires_where_overlap_means_nothing(
    overrides: dict, needle: str, fix: str
) -> None:
    plan = make_plan(**overrides, overlap="two_batch")
    found = [f for f in plan_findings(plan) if f.code == Code.PLAN_OVERLAP]
    assert len(found) == 1 and needle in found[0].message and fix in found[0].fix
    assert not [f for f in plan_findings(plain(plan)) if f.code == Code.PLAN_OVERLAP]


@pytest.mark.parametrize("extra", [{}, {"micro_batches": 4, "batch": 16}], ids=["mb2", "mb4"])
def test_both_halves_activations_are_live_at_once(extra: dict) -> None:
    plan = make_plan(**{**MOE, **extra}, overlap="two_batch")
    tbo = build_graph(plan).pools[0].residency.activation_bytes
    seq = build_graph(plain(plan)).pools[0].residency.activation_bytes
    assert np.array_equal(tbo, 2 * seq)  # two in flight, never four
