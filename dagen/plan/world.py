"""The world size under both readings of the parallel degrees.

The same five numbers mean different GPU counts depending on how they are read
(:class:`~dagen.plan.model.Convention`):

* **megatron** (Megatron-Core *parallel folding*): attention and dense layers use
  world = tp·cp·dp·pp; expert layers re-slice the *same* GPUs as etp·ep·edp·pp, so
  ep·etp must divide the world/pp GPUs of a stage and edp = world / (etp·ep·pp);
* **orthogonal**: every degree is its own mesh axis, world = tp·cp·ep·dp·pp, and
  attention is data-parallel over ep·dp.

NOTE: a worked example, the plan that started dagen: tp=2, pp=4, dp=2, ep=16 and a
declared world of 128. Under megatron the attention world is 2·1·2·4 = 16 GPUs,
and ep·etp = 16 cannot divide the 16/4 = 4 GPUs of a stage. Under orthogonal it is
2·1·16·2·4 = 256 GPUs. Neither is 128. For 128 GPUs under megatron, dp=16 gives
2·1·16·4 = 128 with edp = 128/(1·16·4) = 2; under orthogonal, dp=1 gives
2·1·16·1·4 = 128.

:func:`world_findings` reports ``PLAN-WORLD`` (declared world wrong under the plan's
reading), ``PLAN-EP-STAGE`` (ep·etp not dividing a stage) and ``PLAN-CONVENTION``
(info: the other reading would mean another GPU count), each giving both
computations in its message and in ``Finding.data["readings"]``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dagen.findings import Code, Finding, Severity
from dagen.findings import finding as make_finding
from dagen.plan.model import Convention, ExpertLayout, Parallel, Plan

__all__ = ["Reading", "ep_fix", "finding", "order_findings", "readings", "world_findings"]


def finding(
    plan: Plan, code: Code, severity: Severity, path: str, message: str, fix: str, **data: Any
) -> Finding:
    """A finding of the plan's field ``path``, pointing where the plan wrote it."""
    return make_finding(
        code, message, fix=fix, path=path, origin=plan.where(path), severity=severity, data=data
    )


@dataclass(frozen=True, slots=True)
class Reading:
    """The degrees read under one convention."""

    convention: Convention
    world: int
    formula: str
    """``tp·cp·dp·pp = 2·1·2·4 = 16``."""
    stage: int
    """GPUs per pipeline stage: world / pp."""
    fold_ok: bool
    """ep·etp divides the GPUs of a stage (edp is a whole number)."""
    declared_ok: bool

    @property
    def consistent(self) -> bool:
        """Whether the plan makes sense under this reading."""
        return self.fold_ok and self.declared_ok

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form for ``Finding.data``."""
        return {
            "world": self.world,
            "formula": self.formula,
            "gpus_per_stage": self.stage,
            "ep_etp_divides_stage": self.fold_ok,
            "matches_declared": self.declared_ok,
            "consistent": self.consistent,
        }


def _formula(par: Parallel, conv: Convention) -> tuple[int, str]:
    vals: tuple[int, ...]
    if conv is Convention.MEGATRON:
        names, vals = "tp·cp·dp·pp", (par.tp, par.cp, par.dp, par.pp)
    else:
        names, vals = "tp·cp·ep·dp·pp", (par.tp, par.cp, par.ep, par.dp, par.pp)
    world = math.prod(vals)
    return world, f"{names} = {'·'.join(map(str, vals))} = {world}"


def readings(par: Parallel) -> dict[Convention, Reading]:
    """Both readings of ``par``'s degrees.

    >>> r = readings(Parallel(tp=2, pp=4, dp=2, ep=16, world_size=128))
    >>> r[Convention.MEGATRON].formula, r[Convention.ORTHOGONAL].world
    ('tp·cp·dp·pp = 2·1·2·4 = 16', 256)
    """
    out = {}
    for conv in Convention:
        world, formula = _formula(par, conv)
        stage = world // par.pp
        out[conv] = Reading(
            convention=conv,
            world=world,
            formula=formula,
            stage=stage,
            fold_ok=stage % (par.ep * par.etp) == 0,
            declared_ok=par.world_size is None or par.world_size == world,
        )
    return out


def _explain(r: Reading, par: Parallel, declared: int | None) -> str:
    what = "attention " if r.convention is Convention.MEGATRON and par.ep > 1 else ""
    text = f"under {r.convention.value}: {what}{r.formula} GPUs"
    if declared is not None and r.world != declared:
        text += f" ≠ {declared}"
    if par.ep > 1 or par.etp > 1:
        ee = par.ep * par.etp
        verb = "divides" if r.fold_ok else "does not divide"
        text += f"; ep·etp = {par.ep}·{par.etp} = {ee} {verb} the {r.world}/{par.pp} = {r.stage} GPUs of a stage"
        if r.fold_ok:
            text += f" (edp = {r.world}/({par.etp}·{par.ep}·{par.pp}) = {r.world // (ee * par.pp)})"
    return text


def _dp_for(par: Parallel, world: int, conv: Convention) -> str | None:
    """``use dp=… (arithmetic)`` reaching ``world`` GPUs under ``conv``, if a dp does."""
    others = par.tp * par.cp * par.pp * (par.ep if conv is Convention.ORTHOGONAL else 1)
    if world % others:
        return None
    dp = world // others
    trial = dataclasses.replace(par, dp=dp, convention=conv, world_size=world)
    r = readings(trial)[conv]
    if not r.consistent:
        return None
    text = f"under {conv.value} use dp={dp} ({r.formula.split(' = ', 1)[1]}"
    if par.ep > 1 and conv is Convention.MEGATRON:
        text += f", edp = {world}/({par.etp}·{par.ep}·{par.pp}) = {world // (par.etp * par.ep * par.pp)}"
    return text + ")"


def _redundant_options(experts: int, eps: list[int], best: int) -> list[str]:
    """``ep=E with R redundant experts (S slots, k per rank)`` for the widest ep above
    ``best`` that a few redundant experts (at most a quarter of the experts, one per rank
    at most) make divide the slots, as DeepSeek-V3 does (256 + 32 on EP32's 288 slots)."""
    out = []
    for ep in sorted(eps, reverse=True):
        extra = -experts % ep
        if ep <= best or extra == 0 or extra > experts // 4 or extra >= ep:
            continue
        total = experts + extra
        out.append(
            f"ep={ep} with redundant_experts: {extra} ({experts} + {extra} = {total} slots, "
            f"{total // ep} per rank)"
        )
        if len(out) == 2:
            break
    return out


def ep_fix(par: Parallel, stage: int, experts: int | None, redundant: int = 0) -> str:
    """The ep values that divide both the expert slots and a stage's GPUs (``stage / etp``),
    and redundant-expert counts that open wider ones.

    >>> ep_fix(Parallel(ep=3), 16, 60)
    'use ep ∈ {1, 2, 4}, or ep=16 with redundant_experts: 4 (60 + 4 = 64 slots, 4 per rank); or ep=8 with redundant_experts: 4 (60 + 4 = 64 slots, 8 per rank)'
    """
    room = stage // par.etp if stage % par.etp == 0 else 0
    fits = [d for d in range(1, room + 1) if room % d == 0]
    total = None if experts is None else experts + redundant
    eps = [d for d in fits if total is None or total % d == 0]
    text = f"use ep ∈ {{{', '.join(map(str, eps))}}}" if eps else "lower ep·etp"
    if experts is None:
        return text
    extra = _redundant_options(experts, fits, max(eps, default=0))
    return f"{text}, or {'; or '.join(extra)}" if extra else text


def _fold_fix(par: Parallel, r: Reading, experts: int | None, redundant: int = 0) -> str:
    per_stage = par.tp * par.cp * (par.ep if r.convention is Convention.ORTHOGONAL else 1)
    need = math.lcm(per_stage, par.ep * par.etp) // per_stage
    dp = -(-par.dp // need) * need
    text = ep_fix(par, r.stage, experts, redundant)
    return f"{text}; or raise dp to {dp} so a stage holds a multiple of ep·etp = {par.ep * par.etp} GPUs"


def _world_fix(
    par: Parallel, rs: dict[Convention, Reading], own: Convention, experts: int | None
) -> str:
    other = next(c for c in Convention if c is not own)
    switch = f"set parallel.convention: {other.value} (the degrees are consistent under it: {rs[other].formula} GPUs)"
    if rs[other].consistent and par.world_size is not None:
        return switch
    if par.world_size is None and not rs[own].fold_ok:
        fold = _fold_fix(par, rs[own], experts, par.redundant_experts)
        return f"{fold}; or {switch}" if rs[other].consistent else fold
    target = par.world_size if par.world_size is not None else rs[own].world
    fixes = []
    for conv in (own, other):
        text = _dp_for(par, target, conv)
        if text and conv is other:
            text += f" and set parallel.convention: {conv.value}"
        if text:
            fixes.append(text)
    if fixes:
        return f"for {target} GPUs " + "; or ".join(fixes)
    if not rs[own].fold_ok:
        return _fold_fix(par, rs[own], experts, par.redundant_experts)
    return f"choose degrees whose product is {target}, or set world_size: {rs[own].world}"


def _convention_info(
    plan: Plan, rs: dict[Convention, Reading], data: dict[str, Any]
) -> list[Finding]:
    par = plan.parallel
    own = rs[par.convention]
    other = next(rs[c] for c in Convention if c is not par.convention)
    if par.ep == 1 or other.world == own.world or "parallel.convention" in plan.locations:
        return []
    msg = (
        f"read as {own.convention.value} (the default), the degrees mean {own.world} GPUs "
        f"({own.formula}); read as {other.convention.value} they would mean {other.world} "
        f"({other.formula})"
    )
    fix = f"write parallel.convention: {own.convention.value} to make the reading explicit"
    return [finding(plan, Code.PLAN_CONVENTION, Severity.INFO, "parallel", msg, fix, **data)]


def world_findings(plan: Plan) -> list[Finding]:
    """PLAN-WORLD, PLAN-EP-STAGE or PLAN-CONVENTION for ``plan``'s degrees."""
    par = plan.parallel
    rs = readings(par)
    own = rs[par.convention]
    data = {
        "declared": par.world_size,
        "convention": par.convention.value,
        "readings": {c.value: rs[c].to_dict() for c in Convention},
    }
    if own.consistent:
        return _convention_info(plan, rs, data)
    order = sorted(Convention, key=lambda c: c is not par.convention)
    explained = "; ".join(_explain(rs[c], par, par.world_size) for c in order)
    experts = plan.model.moe.experts if plan.model.moe else None
    fix = _world_fix(par, rs, par.convention, experts)
    if not own.declared_ok:
        msg = f"declared world_size {par.world_size} does not match the degrees: {explained}"
        return [
            finding(plan, Code.PLAN_WORLD, Severity.ERROR, "parallel.world_size", msg, fix, **data)
        ]
    msg = f"ep·etp does not divide the GPUs of a pipeline stage: {explained}"
    return [finding(plan, Code.PLAN_EP_STAGE, Severity.ERROR, "parallel.ep", msg, fix, **data)]


def order_findings(plan: Plan) -> list[Finding]:
    """``PLAN-ORDER-EDP``: Megatron-Core's rule that, with pp > 1 not last in the order,
    the expert data-parallel degree equals the attention's (``initialize_model_parallel``
    in megatron/core/parallel_state.py: "When not using pp-last rank ordering, the data
    parallel size of the attention and moe layers must be the same")."""
    par = plan.parallel
    if plan.model.moe is None or par.pp == 1 or par.expert_layout is not ExpertLayout.MEGATRON:
        return []
    if par.order.lower().split("-")[-1] == "pp" or not readings(par)[par.convention].fold_ok:
        return []
    dp, edp = par.attn_dp(), par.edp()
    if dp == edp:
        return []
    world = par.world()
    msg = (
        f"the order '{par.order}' does not put pp last, so Megatron-Core requires expert DP = "
        f"DP; here edp = world/(etp·ep·pp) = {world}/({par.etp}·{par.ep}·{par.pp}) = {edp} but "
        f'dp = {dp} ("When not using pp-last rank ordering, the data parallel size of the '
        'attention and moe layers must be the same")'
    )
    fix = (
        "put pp last in parallel.order (e.g. tp-cp-ep-dp-pp), or choose ep·etp = tp·cp so edp = dp"
    )
    return [
        finding(plan, Code.PLAN_ORDER_EDP, Severity.ERROR, "parallel.order", msg, fix,
                dp=dp, edp=edp)
    ]  # fmt: skip
