"""The candidates of ``dagen search``: each layout pruned, estimated or fully checked.

The pruning (the plan rules, a floor on the weights a GPU holds), the budget, the
cheap estimate on representative replicas and the full check of the best few; the
search that strings them together is :mod:`dagen.study.search` (docs/search.md).

Example:
    >>> weight_floor(plan) <= plan.hardware.capacity_bytes  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from dataclasses import dataclass

from dagen.cost import Estimate, estimate, figures, model_for
from dagen.cost.metrics import Figures
from dagen.errors import DagenError, PlanInfeasible
from dagen.findings import Code, Finding, Severity
from dagen.graph.build import build_graph
from dagen.plan.model import Plan
from dagen.plan.params import count_params, routed_params
from dagen.plan.rules import plan_findings
from dagen.study.replica import representative
from dagen.study.space import Layout, Only, apply, layouts

__all__ = [
    "Candidate",
    "SearchSpaceTooLarge",
    "Status",
    "check_budget",
    "estimate_one",
    "layout_errors",
    "priced",
    "scaled",
    "search_space",
    "weight_floor",
]

log = logging.getLogger(__name__)

SECONDS_PER_CELL = 2e-5
"""Planning figure: seconds one (GPU, layer, micro-batch, step) cell of a candidate's
representative graph takes to build, price, cut to one rank per symmetric group and
simulate on the 2-core reference machine (docs/search.md, "Budget": the default seed
search took 1.2e-5 s a cell with the machine lightly shared, the 4,096-GPU bench 1.1e-5
under a load of 5; this rounds the loaded rate up)."""


MAX_LAYOUTS = 50_000
"""The most layouts one search judges; more are refused before the plan rules run
(≈ 0.3 ms a layout: 50,000 take about 15 s on the reference machine)."""

_NARROW = (
    "Fix: narrow it with --only (e.g. --only pp=1,2,4 --only micro_batches=1,4 "
    "--only sequence_parallel=0), or drop --full"
)


class SearchSpaceTooLarge(DagenError):
    """The space would take longer than the budget to estimate."""


class Status(enum.StrEnum):
    """What became of a candidate."""

    ESTIMATED = "estimated"
    RULES = "pruned by the plan rules"
    WEIGHTS = "pruned: weights do not fit"
    MEMORY = "pruned: estimated memory does not fit"
    BUILD = "pruned: the graph cannot be built"
    CHECKS = "failed the graph checks"


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One layout of the space and what the search made of it."""

    layout: Layout
    status: Status
    reason: str = ""
    """Why it was pruned: the rule's code and message, or the memory arithmetic."""
    figures: Figures | None = None
    checked: bool = False
    """Built and graph-checked in full (one of the best ``top``)."""
    replicas_priced: int = 0
    """Ranks that were simulated: one per symmetric group of the representative
    replicas (docs/search.md); the whole world for a candidate checked in full."""

    @property
    def ok(self) -> bool:
        """Estimated, and not refuted by a later step."""
        return self.status is Status.ESTIMATED and self.figures is not None


def weight_floor(plan: Plan) -> int:
    """A lower bound on the weight bytes of one GPU: the dense weights split over tp·pp,
    the routed experts over ep·etp·pp (docs/search.md, "Memory bound"). Embeddings,
    norms and replicated KV heads only add to the real figure."""
    par = plan.parallel
    nbytes = plan.dtypes.weights.nbytes
    dense_bytes = min(nbytes, plan.dtypes.attention.nbytes)  # a floor: the narrower format
    routed = routed_params(plan.model)
    dense = count_params(plan.model) - routed
    return math.floor(
        dense * dense_bytes / (par.tp * par.pp) + routed * nbytes / (par.ep * par.etp * par.pp)
    )


def layout_errors(plan: Plan) -> list[Finding]:
    """The error-level plan findings that refute a layout: every one, even those the
    graph could be built despite (an uneven layer split, more stages than layers), but
    not ``PLAN-PARAMS``, which is about the model every layout shares."""
    found = plan_findings(plan)
    return [f for f in found if f.severity is Severity.ERROR and f.code != Code.PLAN_PARAMS]


def _prune(plan: Plan, lay: Layout, gpus: int) -> Candidate | Plan:
    """The candidate's plan, or the candidate pruned with its reason."""
    cand = apply(plan, lay, gpus)
    errors = layout_errors(cand)
    if errors:
        first = errors[0]
        return Candidate(layout=lay, status=Status.RULES, reason=f"{first.code}: {first.message}")
    floor, cap = weight_floor(cand), cand.hardware.capacity_bytes
    if floor > cap:
        why = f"weights alone ≥ {floor / 1e9:.3g} GB a GPU, over its {cap / 1e9:.3g} GB"
        return Candidate(layout=lay, status=Status.WEIGHTS, reason=why)
    return cand


def cells(plan: Plan) -> int:
    """The (GPU, layer, micro-batch, step) cells of ``plan``'s representative graph."""
    rep, _ = representative(plan)
    par, wl = rep.parallel, rep.workload
    layers = -(-plan.model.layers // par.pp)
    return par.world() * layers * wl.micro_batches * wl.unrolled_steps


def search_space(
    plan: Plan, gpus: int, only: Only | None = None, *, full: bool = True
) -> tuple[list[Candidate], list[tuple[Layout, Plan]]]:
    """The pruned candidates and the survivors (layout, plan) of the space, in order
    (``full=False``: the default space, :func:`dagen.study.space.in_default_space`)."""
    pruned: list[Candidate] = []
    alive: list[tuple[Layout, Plan]] = []
    found = layouts(plan, gpus, only, full=full)
    if len(found) > MAX_LAYOUTS:
        raise SearchSpaceTooLarge(
            f"the search space has {len(found):,} layouts on {gpus:,} GPUs, more than the "
            f"{MAX_LAYOUTS:,} one search judges (the plan rules alone would take about "
            f"{len(found) * 3e-4:,.0f} s). " + _NARROW
        )
    for lay in found:
        got = _prune(plan, lay, gpus)
        if isinstance(got, Candidate):
            pruned.append(got)
        else:
            alive.append((lay, got))
    return pruned, alive


def check_budget(alive: list[tuple[Layout, Plan]], size: int, budget_s: float) -> None:
    """Refuse a space whose estimate would take longer than ``budget_s``.

    Raises:
        SearchSpaceTooLarge: with the space's size, the predicted time and how to narrow.
    """
    total = sum(cells(p) for _, p in alive)
    predicted = total * SECONDS_PER_CELL
    if predicted <= budget_s:
        return
    raise SearchSpaceTooLarge(
        f"--budget: the search space has {size:,} layouts, {len(alive):,} of which pass the "
        f"plan rules and the memory bound; estimating them means {total:,} graph cells, "
        f"about {predicted:,.0f} s at {SECONDS_PER_CELL * 1e6:.0f} µs a cell, over the budget "
        f"of {budget_s:,.0f} s. " + _NARROW + ", or raise --budget"
    )


def estimate_one(lay: Layout, plan: Plan) -> Candidate:
    """Build and simulate the representative of ``plan`` whole; no graph checks (what
    :func:`dagen.study.estimates.estimate_all` falls back on)."""
    rep, k = representative(plan)
    try:
        graph = build_graph(rep)
    except PlanInfeasible as exc:
        return Candidate(layout=lay, status=Status.BUILD, reason=str(exc).splitlines()[0])
    est = estimate(graph, cost_model=model_for(rep))
    return priced(lay, est, figures(rep, est), k, rep.parallel.world())


def priced(lay: Layout, est: Estimate, fig: Figures, k: int, ranks: int) -> Candidate:
    """The candidate of an estimate of its representative replicas (``k`` of them stand
    for the world; ``ranks`` were simulated), pruned if its memory overflows a GPU."""
    fig = scaled(fig, k)
    if est.memory.peak_fraction > 1.0:
        cap = est.memory.capacity_bytes
        why = f"needs {fig.memory_gib * 2**30 / 1e9:.3g} GB of a GPU's {cap / 1e9:.3g} GB"
        return Candidate(layout=lay, status=Status.MEMORY, reason=why, figures=fig)
    return Candidate(layout=lay, status=Status.ESTIMATED, figures=fig, replicas_priced=ranks)


def scaled(fig: Figures, k: int) -> Figures:
    """Figures of the representative as the whole world's: totals times ``k``."""
    if k == 1:
        return fig
    return dataclasses.replace(fig, world=fig.world * k, tokens_per_s=fig.tokens_per_s * k)
