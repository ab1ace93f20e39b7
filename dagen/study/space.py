"""The search space of ``dagen search``: every layout of a plan's model, workload and
hardware on N GPUs.

A :class:`Layout` is one choice of the degrees (tp, cp, dp, pp, ep, etp), the
micro-batches, sequence parallelism, for a serving workload the concurrency, and with
pipeline stages the rank order and the layer split (:mod:`dagen.study.stages`).
:func:`layouts` lists them in one stable order; :func:`apply` writes one over a plan.
Which layouts are *valid* is not decided here: the plan rules
(:func:`dagen.plan.rules.plan_findings`) judge each one, so a pruned layout keeps the
rule's own reason.

NOTE: the degrees multiply to N as the plan's convention reads them. Under ``megatron``
tp·cp·dp·pp = N and the expert layers re-slice each stage's N/pp GPUs as
etp·ep·edp, so etp·ep divides N/pp; under ``orthogonal`` tp·cp·ep·dp·pp = N and
etp·ep·pp divides N. On 8 GPUs under megatron, pp=2 leaves 4 GPUs a stage: (tp, cp, dp)
∈ {(1,1,4), (1,2,2), (1,4,1), (2,1,2), (2,2,1), (4,1,1)} and (etp, ep) any pair whose
product divides 4.

Example:
    >>> from dagen.plan.loader import load_plan
    >>> plan = load_plan("tests/data/plans/tiny_moe.yaml")  # doctest: +SKIP
    >>> next(iter(layouts(plan, 8))).label()  # doctest: +SKIP
    'tp1 cp1 dp8 pp1 ep1 etp1 mb1'
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from dagen.errors import PlanInfeasible
from dagen.plan.model import Convention, Plan
from dagen.plan.split import even_split, stage_sizes
from dagen.study.stages import DEFAULT_ORDER, ORDERS, balanced, head_weight, orders, splits

__all__ = [
    "AXES",
    "Layout",
    "apply",
    "divisors",
    "in_default_space",
    "layer_splits",
    "layout_of",
    "layouts",
    "serving_concurrencies",
]

AXES = ("tp", "cp", "dp", "pp", "ep", "etp", "micro_batches", "sequence_parallel", "concurrency",
        "order", "split")  # fmt: skip
"""The axes of the space, in the order of a layout's sort key and label."""
_INT_AXES = AXES[:9]

Only = Mapping[str, frozenset[int | str]]
"""Axis → the values to keep (``--only tp=1,2``, ``--only split=even``); an absent axis is
not restricted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """One point of the space."""

    tp: int
    cp: int
    dp: int
    pp: int
    ep: int
    etp: int
    micro_batches: int
    sequence_parallel: bool = False
    concurrency: int | None = None
    """Serving workloads only: requests in flight over the deployment."""
    order: str = DEFAULT_ORDER
    """The rank order, fastest-varying first (:mod:`dagen.study.stages`)."""
    split: tuple[int, ...] | None = None
    """Layers on each stage, first to last; None with one stage."""

    def key(self) -> tuple[int, ...]:
        """The stable sort key: the axes in :data:`AXES` order (the order by its place in
        :data:`ORDERS`, another after them; the split stage by stage)."""
        ints = tuple(int(getattr(self, a) or 0) for a in _INT_AXES)
        at = ORDERS.index(self.order) if self.order in ORDERS else len(ORDERS)
        return (*ints, at, *(self.split or ()))

    def label(self) -> str:
        """``tp2 cp1 dp16 pp4 ep16 etp1 mb4`` (``sp``, ``c64``, ``order tp-cp-ep-pp-dp``
        and ``split 15/16/16/14`` when they apply: an order other than Megatron's
        default, a split other than the even one)."""
        text = (
            f"tp{self.tp} cp{self.cp} dp{self.dp} pp{self.pp} ep{self.ep} etp{self.etp} "
            f"mb{self.micro_batches}"
        )
        if self.sequence_parallel:
            text += " sp"
        if self.concurrency is not None:
            text += f" c{self.concurrency}"
        if self.order != DEFAULT_ORDER:
            text += f" order {self.order}"
        if self.split is not None and list(self.split) != even_split(sum(self.split), self.pp):
            text += " split " + "/".join(map(str, self.split))
        return text

    def as_dict(self) -> dict[str, int | bool | str | list[int] | None]:
        """The axes as plain data."""
        out = {a: getattr(self, a) for a in AXES}
        out["split"] = list(self.split) if self.split is not None else None
        return out


def divisors(n: int) -> list[int]:
    """The divisors of ``n``, ascending.

    >>> divisors(12)
    [1, 2, 3, 4, 6, 12]
    """
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def _kept(axis: str, values: list[int], only: Only) -> list[int]:
    keep = only.get(axis)
    return values if keep is None else [v for v in values if v in keep]


def serving_concurrencies(plan: Plan) -> list[int]:
    """The concurrencies a serving search tries: the plan's ``c`` and c·2ᵏ for
    k ∈ {−3, −2, −1, 1} (at least 1): from an eighth of the load to twice it."""
    c = plan.workload.concurrency or plan.workload.batch
    return sorted({max(1, round(c * 2.0**k)) for k in (-3, -2, -1, 0, 1)})


def _megatron(plan: Plan, gpus: int, only: Only) -> Iterator[tuple[int, ...]]:
    """(tp, cp, dp, pp, ep, etp) with tp·cp·dp·pp = ``gpus`` and etp·ep dividing a stage."""
    moe = plan.model.moe is not None
    for pp in _kept("pp", divisors(gpus), only):
        stage = gpus // pp
        for tp in _kept("tp", divisors(stage), only):
            for cp in _kept("cp", divisors(stage // tp), only):
                for dp in _kept("dp", [stage // (tp * cp)], only):
                    for etp in _kept("etp", divisors(stage) if moe else [1], only):
                        for ep in _kept("ep", divisors(stage // etp) if moe else [1], only):
                            yield tp, cp, dp, pp, ep, etp


def _orthogonal(plan: Plan, gpus: int, only: Only) -> Iterator[tuple[int, ...]]:
    """(tp, cp, dp, pp, ep, etp) with tp·cp·ep·dp·pp = ``gpus`` and etp·ep·pp dividing it."""
    moe = plan.model.moe is not None
    for pp in _kept("pp", divisors(gpus), only):
        stage = gpus // pp
        for tp in _kept("tp", divisors(stage), only):
            for cp in _kept("cp", divisors(stage // tp), only):
                rest = stage // (tp * cp)
                for ep in _kept("ep", divisors(rest) if moe else [1], only):
                    for dp in _kept("dp", [rest // ep], only):
                        for etp in _kept("etp", divisors(stage // ep) if moe else [1], only):
                            yield tp, cp, dp, pp, ep, etp


def layouts(plan: Plan, gpus: int, only: Only | None = None, *, full: bool = True) -> list[Layout]:
    """Every layout of ``plan`` on ``gpus`` GPUs, sorted by :meth:`Layout.key`; with
    ``full=False`` only those of the default space (:func:`in_default_space`)."""
    only = only or {}
    orthogonal = plan.parallel.convention is Convention.ORTHOGONAL
    degrees = _orthogonal(plan, gpus, only) if orthogonal else _megatron(plan, gpus, only)
    found = (lay for d in degrees for lay in _rest(plan, d, only))
    kept = (lay for lay in found if full or in_default_space(plan, lay, only))
    return sorted(kept, key=Layout.key)


def in_default_space(plan: Plan, lay: Layout, only: Only) -> bool:
    """Whether ``lay`` is in the default space (docs/search.md, "The default space"):
    micro-batches 1, pp or 2·pp; etp 1 or tp; cp 1; sequence parallelism as the plan
    has it; the even or the cost-balanced layer split; the plan's own values always; an
    axis named by ``--only`` as it says."""
    given = layout_of(plan)
    mbs = {1, lay.pp, 2 * lay.pp, given.micro_batches}
    rules = (
        ("micro_batches", lay.micro_batches in mbs),
        ("etp", lay.etp in {1, lay.tp, given.etp}),
        ("cp", lay.cp in {1, given.cp}),
        ("sequence_parallel", lay.sequence_parallel == given.sequence_parallel or lay.tp == 1),
        ("split", lay.split is None or lay.split == given.split or _even_or_balanced(plan, lay)),
    )
    return all(ok or axis in only for axis, ok in rules)


def _even_or_balanced(plan: Plan, lay: Layout) -> bool:
    layers = plan.model.layers
    if lay.split == tuple(even_split(layers, lay.pp)):
        return True
    return lay.split == balanced(layers, lay.pp, round(head_weight(plan), 6))


def _split_kept(names: list[str], sizes: tuple[int, ...], only: Only) -> bool:
    keep = only.get("split")
    return keep is None or bool(keep & {*names, "/".join(map(str, sizes))})


def layer_splits(plan: Plan, pp: int, only: Only) -> list[tuple[int, ...] | None]:
    """The layer splits tried on ``pp`` stages (:func:`dagen.study.stages.splits`, and the
    plan's own where pp is the plan's), kept by ``--only split=``; ``[None]`` for one
    stage."""
    if pp == 1:
        return [None]
    named: dict[tuple[int, ...], list[str]] = {}
    for name, sizes in splits(layers=plan.model.layers, pp=pp, head=head_weight(plan)).items():
        named.setdefault(sizes, []).append(name)
    own = layout_of(plan).split
    if pp == plan.parallel.pp and own is not None:
        named.setdefault(own, [])
    return [sizes for sizes, names in named.items() if _split_kept(names, sizes, only)]


def _rest(plan: Plan, degrees: tuple[int, ...], only: Only) -> Iterator[Layout]:
    """The micro-batches, sequence parallelism, concurrency, rank order and layer split
    over one set of degrees."""
    tp, cp, dp, pp, ep, etp = degrees
    wl = plan.workload
    attn_dp = dp * ep if plan.parallel.convention is Convention.ORTHOGONAL else dp
    concs: list[int | None] = list(serving_concurrencies(plan)) if wl.serving else [None]
    keep = only.get("order")
    ords = [o for o in orders(plan, *degrees) if keep is None or o in keep]
    pipes = [(o, s) for o in ords for s in layer_splits(plan, pp, only)]
    for conc in concs:
        if conc is not None and not _kept("concurrency", [conc], only):
            continue
        batch = wl.batch if conc is None else conc
        # A batch the replicas cannot share is kept once, so the rule says why it fails.
        mbs = divisors(batch // attn_dp) if batch % attn_dp == 0 else [wl.micro_batches]
        for mb in _kept("micro_batches", mbs, only):
            sps = [0, 1] if tp > 1 else [0]
            for sp, (order, split) in itertools.product(
                _kept("sequence_parallel", sps, only), pipes
            ):
                yield Layout(tp=tp, cp=cp, dp=dp, pp=pp, ep=ep, etp=etp, micro_batches=mb,
                             sequence_parallel=bool(sp), concurrency=conc, order=order,
                             split=split)  # fmt: skip


def layout_of(plan: Plan) -> Layout:
    """The layout ``plan`` declares (its split as :func:`dagen.plan.split.stage_sizes`
    reads it; as written, or even, if that split is inconsistent)."""
    par, wl = plan.parallel, plan.workload
    split: tuple[int, ...] | None = None
    if par.pp > 1:
        try:
            split = tuple(stage_sizes(par, plan.model.layers))
        except PlanInfeasible:
            split = par.layers_per_stage or tuple(even_split(plan.model.layers, par.pp))
    return Layout(
        tp=par.tp, cp=par.cp, dp=par.dp, pp=par.pp, ep=par.ep, etp=par.etp,
        micro_batches=wl.micro_batches, sequence_parallel=par.sp_active,
        concurrency=wl.concurrency if wl.serving else None, order=par.order.lower(),
        split=split,
    )  # fmt: skip


def apply(plan: Plan, lay: Layout, gpus: int) -> Plan:
    """``plan`` laid out as ``lay`` on ``gpus`` GPUs, its rank order and layer split
    included: the even split is written as no split (the plan's default) where the
    layers divide by pp or are fewer than the stages, any other split as
    ``layers_per_stage``; claims are dropped (a candidate is ranked, not judged)."""
    layers = plan.model.layers
    # The even split is the plan's default where the layers divide, or where there are
    # fewer layers than stages (so PLAN-PP-LAYERS, not an empty stage, says why it fails).
    even = lay.split == tuple(even_split(layers, lay.pp))
    explicit = lay.split is not None and not (even and (layers % lay.pp == 0 or layers < lay.pp))
    parallel = dataclasses.replace(
        plan.parallel, tp=lay.tp, cp=lay.cp, dp=lay.dp, pp=lay.pp, ep=lay.ep, etp=lay.etp,
        sequence_parallel=lay.sequence_parallel, world_size=gpus, order=lay.order,
        layers_per_stage=lay.split if explicit else None, first_stage_layers=None,
        last_stage_layers=None,
    )  # fmt: skip
    wl = dataclasses.replace(plan.workload, micro_batches=lay.micro_batches)
    if lay.concurrency is not None:
        wl = dataclasses.replace(wl, concurrency=lay.concurrency, batch=lay.concurrency)
    return dataclasses.replace(plan, parallel=parallel, workload=wl, claims=(), alternatives=())
