"""``dagen search``: every layout of a plan on N GPUs, pruned, estimated, ranked.

The steps (docs/search.md):

1. enumerate the space (:mod:`dagen.study.space`) in one stable order;
2. prune by the plan rules (any error-level finding; its code and message are kept) and
   by a floor on the weights one GPU holds (:func:`dagen.study.candidates.weight_floor`);
3. refuse up front when the survivors would take longer than the budget;
4. estimate every survivor on its representative replicas (:mod:`dagen.study.replica`)
   cut to one rank per symmetric group (:mod:`dagen.study.symmetry`), simulated in
   batches (:mod:`dagen.study.estimates`); no graph checks; one whose estimated memory
   overflows a GPU is pruned then;
5. build the whole graph of the best ``top`` by the objective and of the given plan,
   and run every graph check on it (:func:`dagen.study.estimates.check_fully`);
6. the Pareto frontier of throughput per GPU against the latency, and the given plan's
   place on it.

Example:
    >>> from dagen.plan.loader import load_plan
    >>> result = search(load_plan("samples/seed-moe-10b-fixed.yaml"))  # doctest: +SKIP
    >>> result.verdict.optimal  # doctest: +SKIP
    False
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dagen.cost.metrics import Figures
from dagen.errors import DagenError
from dagen.plan.model import Metric, Plan
from dagen.study.candidates import (
    Candidate,
    Status,
    check_budget,
    layout_errors,
    search_space,
)
from dagen.study.estimates import check_fully, estimate_all
from dagen.study.frontier import Point, at_least, pareto
from dagen.study.space import AXES, Layout, Only, layout_of
from dagen.study.stages import SPLIT_NAMES, parse_order, parse_split

__all__ = [
    "DEFAULT_BUDGET_S",
    "Objective",
    "SearchError",
    "SearchResult",
    "Verdict",
    "axes",
    "parse_only",
    "parse_slo",
    "rank_key",
    "search",
]

Meter = Callable[[str, int, int], None]
"""``meter(phase, done, total)``, as :class:`dagen.export.Phases`."""

DEFAULT_BUDGET_S = 900.0
"""The time a search may take before it is refused up front (``--budget``)."""


class SearchError(DagenError):
    """A search request that cannot be met as asked (a flag and how to fix it)."""


class Objective(enum.StrEnum):
    """What ``dagen search`` ranks by."""

    THROUGHPUT = "throughput"
    TTFT = "ttft"
    TPOT = "tpot"


_SLO_KEYS = {"ttft": Metric.TTFT_S, "tpot": Metric.TPOT_MS}
_ALIASES = {"mb": "micro_batches", "sp": "sequence_parallel"}
_FLAGS = {"true": 1, "false": 0, "yes": 1, "no": 0, "on": 1, "off": 0}


def _axis_value(axis: str, text: str) -> int | str:
    if axis == "order":
        return parse_order(text)
    if axis == "split":
        return parse_split(text)
    word = text.strip().lower()
    return _FLAGS[word] if word in _FLAGS else int(word)


def parse_only(specs: Sequence[str]) -> dict[str, frozenset[int | str]]:
    """``["tp=1,2", "sp=0"]`` → {"tp": {1, 2}, "sequence_parallel": {0}}: the values an
    axis keeps (``mb`` and ``sp`` abbreviate micro_batches and sequence_parallel; ``order``
    takes rank orders such as ``tp-cp-ep-pp-dp``, ``split`` the names of
    :data:`dagen.study.stages.SPLIT_NAMES` or sizes such as ``15/16/16/14``).

    Raises:
        SearchError: an axis that is not one of :data:`dagen.study.space.AXES`, or a
            value that is not a whole number (or true/false for sequence_parallel, an
            order of tp, cp, ep, dp, pp, a split name or sizes).

    >>> parse_only(["pp=2,4"])
    {'pp': frozenset({2, 4})}
    >>> parse_only(["split=even"])
    {'split': frozenset({'even'})}
    """
    out: dict[str, frozenset[int | str]] = {}
    for spec in specs:
        key, _, values = spec.partition("=")
        axis = _ALIASES.get(key.strip(), key.strip())
        try:
            if axis not in AXES or not values.strip():
                raise ValueError(key)
            kept = frozenset(_axis_value(axis, v) for v in values.split(","))
        except ValueError:
            raise SearchError(
                f"--only {spec}: expected AXIS=V1,V2 with AXIS one of {', '.join(AXES)} (or "
                "mb, sp) and whole numbers (0/1 for sequence_parallel; for order a rank "
                "order such as tp-cp-ep-pp-dp; for split one of "
                f"{', '.join(SPLIT_NAMES)} or sizes such as 15/16/16/14). Fix: e.g. --only pp=1,2"
            ) from None
        out[axis] = out.get(axis, frozenset()) | kept
    return out


def parse_slo(text: str | None) -> dict[Metric, float]:
    """``ttft=6,tpot=50`` → {TTFT_S: 6.0, TPOT_MS: 50.0} (TTFT in s, TPOT in ms).

    Raises:
        SearchError: a key other than ttft or tpot, or a value that is not a positive number.

    >>> parse_slo("ttft=6")
    {<Metric.TTFT_S: 'ttft_s'>: 6.0}
    """
    out: dict[Metric, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, _, value = part.partition("=")
        metric = _SLO_KEYS.get(key.strip().lower())
        try:
            bound = float(value)
        except ValueError:
            bound = -1.0
        if metric is None or not bound > 0:
            raise SearchError(
                f"--slo: {part.strip()!r} is not a bound; expected ttft=SECONDS or "
                "tpot=MILLISECONDS with a positive number. Fix: e.g. --slo ttft=6,tpot=50"
            )
        out[metric] = bound
    return out


def axes(plan: Plan, objective: Objective) -> tuple[Metric, Metric]:
    """(the ranked metric, the latency axis) of ``objective`` on ``plan``'s workload.

    Raises:
        SearchError: the objective names a latency the workload does not have.
    """
    wl = plan.workload
    latency = Metric.TPOT_MS if wl.decoding else Metric.TTFT_S
    if objective is Objective.TTFT:
        if wl.decoding and not wl.serving:
            raise SearchError(
                "--objective ttft: the workload is a decode phase, which has no time to first "
                "token. Fix: use --objective tpot or throughput"
            )
        latency = Metric.TTFT_S
    elif objective is Objective.TPOT:
        if not wl.decoding:
            raise SearchError(
                "--objective tpot: the workload is a prefill, which has no time per output "
                "token. Fix: use --objective ttft or throughput"
            )
        latency = Metric.TPOT_MS
    ranked = Metric.TOKENS_PER_S_PER_GPU if objective is Objective.THROUGHPUT else latency
    return ranked, latency


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """Where the given plan stands."""

    optimal: bool | None
    """None when the given plan has no figures (it does not build)."""
    text: str
    better: Candidate | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResult:
    """Everything a search found, in the space's stable order."""

    plan: Plan
    gpus: int
    objective: Objective
    ranked: Metric
    latency: Metric
    slo: Mapping[Metric, float]
    size: int
    """Layouts enumerated."""
    candidates: tuple[Candidate, ...]
    """Every layout, pruned or estimated, by :meth:`Layout.key`."""
    frontier: tuple[Candidate, ...]
    """The non-dominated candidates within the SLO, by latency ascending."""
    given: Candidate
    verdict: Verdict

    def valid(self) -> list[Candidate]:
        """The estimated candidates within the SLO."""
        return [c for c in self.candidates if c.ok and within(c.figures, self.slo)]

    def closest_failures(self, n: int = 5) -> list[Candidate]:
        """The failed candidates that got furthest, for a search with no valid layout."""
        depth = {s: i for i, s in enumerate(_DEPTH)}
        failed = [c for c in self.candidates if not (c.ok and within(c.figures, self.slo))]
        return sorted(failed, key=lambda c: (depth[c.status], c.layout.key()))[:n]


_DEPTH = (Status.ESTIMATED, Status.CHECKS, Status.MEMORY, Status.BUILD, Status.WEIGHTS,
          Status.RULES)  # fmt: skip
"""Statuses from the furthest a candidate can get to the earliest it can fail."""


def within(fig: Figures | None, slo: Mapping[Metric, float]) -> bool:
    """Whether ``fig`` is inside every SLO bound (a missing figure is outside)."""
    if fig is None:
        return False
    for metric, bound in slo.items():
        value = fig.value(metric)
        if value is None or not at_least(bound, value):
            return False
    return True


def _value(c: Candidate, metric: Metric) -> float:
    assert c.figures is not None
    v = c.figures.value(metric)
    return float("inf") if v is None else v


def rank_key(c: Candidate, ranked: Metric) -> tuple[float, tuple[int, ...]]:
    """Sort key of an estimated candidate, best by ``ranked`` first, ties by layout."""
    v = _value(c, ranked)
    return (v if ranked.lower_is_better else -v, c.layout.key())


def _best_first(cands: list[Candidate], ranked: Metric) -> list[Candidate]:
    return sorted(cands, key=lambda c: rank_key(c, ranked))


def _check_top(
    cands: list[Candidate], plans: Mapping[Layout, Plan], ranked: Metric, top: int,
    slo: Mapping[Metric, float], meter: Meter | None,
) -> list[Candidate]:  # fmt: skip
    """Check the best ``top`` in full; a refuted one makes room for the next."""
    checked: dict[Layout, Candidate] = {}
    for c in _best_first([c for c in cands if c.ok and within(c.figures, slo)], ranked):
        if sum(x.ok for x in checked.values()) >= top:
            break
        checked[c.layout] = check_fully(c, plans[c.layout])
        if meter is not None:
            meter("checking the best", min(len(checked), top), top)
    return [checked.get(c.layout, c) for c in cands]


def search(
    plan: Plan,
    *,
    gpus: int | None = None,
    objective: Objective = Objective.THROUGHPUT,
    slo: Mapping[Metric, float] | None = None,
    top: int = 3,
    only: Only | None = None,
    full: bool = False,
    budget_s: float = DEFAULT_BUDGET_S,
    meter: Meter | None = None,
) -> SearchResult:
    """Search every layout of ``plan`` on ``gpus`` GPUs (default: the plan's declared
    ``world_size``, else the degrees' product).

    Raises:
        SearchError: the objective does not fit the workload.
        SearchSpaceTooLarge: the survivors would take longer than ``budget_s``.
    """
    gpus = gpus or plan.parallel.world_size or plan.parallel.world()
    slo = dict(slo or {})
    ranked, latency = axes(plan, objective)
    pruned, alive = search_space(plan, gpus, only, full=full)
    check_budget(alive, len(pruned) + len(alive), budget_s)
    estimated = estimate_all(alive, meter)
    plans = dict(alive)
    estimated = _check_top(estimated, plans, ranked, top, slo, meter)
    cands = sorted([*pruned, *estimated], key=lambda c: c.layout.key())
    front = _frontier(cands, latency, slo)
    given = _given(plan)
    result = SearchResult(
        plan=plan, gpus=gpus, objective=objective, ranked=ranked, latency=latency, slo=slo,
        size=len(cands), candidates=tuple(cands), frontier=tuple(front), given=given,
        verdict=Verdict(optimal=None, text=""),
    )  # fmt: skip
    return dataclasses.replace(result, verdict=judge(result))


def _frontier(
    cands: list[Candidate], latency: Metric, slo: Mapping[Metric, float]
) -> list[Candidate]:
    valid = [(i, c) for i, c in enumerate(cands) if c.ok and within(c.figures, slo)]
    points = [
        Point(key=i, throughput=_value(c, Metric.TOKENS_PER_S_PER_GPU), latency=_value(c, latency))
        for i, c in valid
    ]
    return [cands[p.key] for p in pareto(points)]


def _given(plan: Plan) -> Candidate:
    """The given plan, checked in full (its claims aside), or pruned by the same rules as
    every candidate."""
    lay = layout_of(plan)
    bare = dataclasses.replace(plan, claims=(), alternatives=())
    bad = layout_errors(bare)
    if bad:
        return Candidate(layout=lay, status=Status.RULES, reason=f"{bad[0].code}: {bad[0].message}")
    return check_fully(Candidate(layout=lay, status=Status.ESTIMATED), bare)


def judge(r: SearchResult) -> Verdict:
    """ "optimal", or "beaten by <layout>: +N% throughput at the same or better <latency>"
    (with ``--objective ttft|tpot``: "−N% TTFT at the same or better throughput")."""
    v = _judge(r)
    if r.given.ok and not within(r.given.figures, r.slo):
        v = dataclasses.replace(v, text=v.text + "; and the given plan misses the SLO")
    return v


def _name(metric: Metric) -> str:
    return {Metric.TTFT_S: "TTFT", Metric.TPOT_MS: "TPOT"}.get(metric, "throughput")


def _versus(a: Candidate, b: Candidate, metric: Metric) -> str:
    """``73,362 vs 27,004 tokens/s/GPU`` or ``TTFT 0.0558 s vs 0.152 s``."""
    x, y = _value(a, metric), _value(b, metric)
    if metric is Metric.TOKENS_PER_S_PER_GPU:
        return f"{x:,.0f} vs {y:,.0f} tokens/s/GPU"
    return f"{_name(metric)} {x:.4g} {metric.unit} vs {y:.4g} {metric.unit}"


def _no_worse(a: float, b: float, metric: Metric) -> bool:
    """``a`` is as good as ``b`` or better on ``metric``."""
    return at_least(b, a) if metric.lower_is_better else at_least(a, b)


def _judge(r: SearchResult) -> Verdict:
    """The best frontier point that holds the other axis at the given plan's value or
    better, against the given plan on the ranked axis."""
    g = r.given
    if not g.ok:
        code = g.reason.split(":", 1)[0]
        return Verdict(
            optimal=None, text=f"no verdict: the given plan is {g.status.value} ({code})"
        )
    held = r.latency if r.ranked is Metric.TOKENS_PER_S_PER_GPU else Metric.TOKENS_PER_S_PER_GPU
    rivals = [c for c in r.frontier if _no_worse(_value(c, held), _value(g, held), held)]
    best = min(rivals, key=lambda c: rank_key(c, r.ranked), default=None)
    p0 = _value(g, r.ranked)
    if best is None or _no_worse(p0, _value(best, r.ranked), r.ranked):
        more = "a lower " + _name(r.ranked) if r.ranked.lower_is_better else "more tokens/s per GPU"
        return Verdict(optimal=True, text=(
            f"optimal: no layout on {r.gpus:,} GPUs gives {more} at the same or better "
            f"{_name(held)}"))  # fmt: skip
    change = _value(best, r.ranked) / p0 - 1
    return Verdict(optimal=False, better=best, text=(
        f"beaten by {best.layout.label()}: {change:+.1%} {_name(r.ranked)} at the same or better "
        f"{_name(held)} ({_versus(best, g, r.ranked)}; {_versus(best, g, held)})"))  # fmt: skip
