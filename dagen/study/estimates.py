"""Every survivor of a search estimated on one rank per symmetric group, in batches.

For each candidate (docs/search.md, "Estimating through symmetry"):

1. its representative replicas (:mod:`dagen.study.replica`) are built and priced by the
   plan's cost model, node by node, column-wise;
2. the graph is cut to one rank per symmetric group (:mod:`dagen.study.symmetry`);
3. the quotients of a batch are simulated together (:mod:`dagen.study.batch`);
4. each schedule becomes an :class:`dagen.cost.Estimate` of the representative graph
   (memory per rank from its pools, utilisation with every rank counted as its group's
   representative) and its :class:`dagen.cost.metrics.Figures`, totals times ``k``.

A candidate whose quotient cannot be formed or whose batch cycles is estimated alone on
its representative graph (:func:`dagen.study.candidates.estimate_one`), so the figures
never depend on the shortcut.

Example:
    >>> cands = estimate_all(alive)  # doctest: +SKIP
    >>> cands[0].figures.ttft_s  # doctest: +SKIP
    0.81
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dagen.api import analyse
from dagen.cost import Estimate, estimate, figures, model_for
from dagen.cost.estimator import durations
from dagen.cost.model import CostModel
from dagen.cost.simulate import Schedule
from dagen.errors import PlanInfeasible
from dagen.findings import Severity
from dagen.graph.build import build_graph
from dagen.graph.ir import Graph
from dagen.plan.model import Plan
from dagen.study.batch import simulate_many
from dagen.study.candidates import Candidate, Status, estimate_one, priced, scaled
from dagen.study.replica import representative
from dagen.study.space import Layout
from dagen.study.symmetry import Quotient, quotient

__all__ = ["BATCH_NODES", "check_fully", "estimate_all", "estimate_symmetric"]

Meter = Callable[[str, int, int], None]

BATCH_NODES = 400_000
"""Quotient nodes simulated together: enough graphs that the levels are shared, few
enough that the progress bar moves and the union stays small (tens of MB)."""

PHASE = "estimating candidates"


@dataclass(frozen=True, slots=True)
class _Ready:
    """A candidate built, priced and cut down, waiting for its batch."""

    index: int
    layout: Layout
    plan: Plan
    rep: Plan
    k: int
    model: CostModel
    q: Quotient


def _prepare(i: int, lay: Layout, plan: Plan) -> _Ready | Candidate:
    rep, k = representative(plan)
    try:
        graph = build_graph(rep)
    except PlanInfeasible as exc:
        return Candidate(layout=lay, status=Status.BUILD, reason=str(exc).splitlines()[0])
    model = model_for(rep)
    q = quotient(graph, durations(graph, model))
    if q is None:
        return estimate_one(lay, plan)
    return _Ready(index=i, layout=lay, plan=plan, rep=rep, k=k, model=model, q=q)


def _finish(r: _Ready, sched: Schedule) -> Candidate:
    est = estimate(r.q.graph, cost_model=r.model, schedule=sched, rank_of=r.q.rank_of)
    return priced(r.layout, est, figures(r.rep, est), r.k, r.q.groups)


def _flush(batch: list[_Ready], out: list[Candidate | None]) -> None:
    """Simulate the batch and fill its candidates in ``out``."""
    scheds = simulate_many([r.q.graph for r in batch], [r.q.durations for r in batch])
    for j, r in enumerate(batch):
        if scheds is None:  # one graph's order cycles: price each alone
            alone = simulate_many([r.q.graph], [r.q.durations])
            out[r.index] = estimate_one(r.layout, r.plan) if alone is None else _finish(
                r, alone[0])  # fmt: skip
        else:
            out[r.index] = _finish(r, scheds[j])
    batch.clear()


def estimate_all(
    alive: Sequence[tuple[Layout, Plan]], meter: Meter | None = None
) -> list[Candidate]:
    """Every ``(layout, plan)`` estimated, in the given order; ``meter(phase, done,
    total)`` after each candidate is built and cut (the last one once its batch is
    simulated)."""
    out: list[Candidate | None] = [None] * len(alive)
    batch: list[_Ready] = []
    nodes = 0
    for i, (lay, plan) in enumerate(alive):
        got = _prepare(i, lay, plan)
        if isinstance(got, Candidate):
            out[i] = got
        else:
            batch.append(got)
            nodes += got.q.graph.n_nodes
        if nodes >= BATCH_NODES or i == len(alive) - 1:
            _flush(batch, out)
            nodes = 0
        if meter is not None:
            meter(PHASE, i + 1, len(alive))
    return [c for c in out if c is not None]


def estimate_symmetric(graph: Graph, model: CostModel) -> tuple[Estimate, int]:
    """The estimate of ``graph`` simulated on one rank per symmetric group, and the
    ranks simulated (the whole graph where no quotient forms)."""
    q = quotient(graph, durations(graph, model))
    sched = None if q is None else simulate_many([q.graph], [q.durations])
    if q is None or sched is None:
        return estimate(graph, cost_model=model), graph.world
    return estimate(q.graph, cost_model=model, schedule=sched[0], rank_of=q.rank_of), q.groups


def check_fully(cand: Candidate, plan: Plan) -> Candidate:
    """Build the whole graph of a candidate and run every graph check on it
    (:func:`dagen.api.analyse`). Its figures are its symmetric estimate's (estimated
    here if the candidate has none yet, e.g. the given plan, whatever its memory),
    which ``tests/test_symmetry.py`` proves equal to simulating the whole graph."""
    try:
        result = analyse(plan, simulate=False)
    except PlanInfeasible as exc:  # e.g. the whole graph is over the builder's node cap
        why = str(exc).splitlines()[0]
        return dataclasses.replace(cand, status=Status.BUILD, reason=why, checked=True)
    errors = [
        f for f in result.findings if f.severity is Severity.ERROR and f.code.startswith("GRAPH-")
    ]
    if errors or result.graph is None:
        why = f"{errors[0].code}: {errors[0].message}" if errors else "the graph was not built"
        return dataclasses.replace(cand, status=Status.CHECKS, reason=why, checked=True)
    if cand.figures is not None:
        return dataclasses.replace(cand, checked=True)
    rep, k = representative(plan)
    est, ranks = estimate_symmetric(build_graph(rep), model_for(rep))
    fig = scaled(figures(rep, est), k)
    return dataclasses.replace(cand, figures=fig, checked=True, replicas_priced=ranks)
