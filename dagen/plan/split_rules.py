"""The plan rules of the layer split: whether the layers split over the stages as the plan
says, by Megatron's rules (the split itself is :mod:`dagen.plan.split`).

Example:
    >>> [f.code for f in layer_findings(plan)]  # doctest: +SKIP
    []
"""

from __future__ import annotations

from dagen.findings import Code, Finding, Severity
from dagen.plan.model import Plan
from dagen.plan.world import finding

__all__ = ["layer_findings"]

ERROR, WARNING = Severity.ERROR, Severity.WARNING


def _megatron_balanced(layers: int, pp: int) -> str | None:
    """first/last_stage_layers (Megatron: the middle stages take equal shares) that keep
    every stage within one layer of every other, if any do."""
    q = layers // pp
    for m in (q, q + 1, q - 1):
        if m < 1:
            continue
        first = layers - (pp - 1) * m
        if pp > 1 and first > 0 and abs(first - m) <= 1 and first != m:
            return f"first_stage_layers: {first} (the other {pp - 1} stages take {m} each)"
        for f in (m - 1, m + 1):
            last = layers - f - (pp - 2) * m
            if pp > 2 and f > 0 and last > 0 and max(f, m, last) - min(f, m, last) <= 1:
                return (
                    f"first_stage_layers: {f} and last_stage_layers: {last} (the middle "
                    f"{pp - 2} stages take {m} each)"
                )
    return None


def _split_fix(layers: int, pp: int) -> str:
    """A split whose stages differ by at most one layer: ``layers_per_stage``, and
    Megatron's first/last_stage_layers when they can balance it (61 layers on PP16 are
    4·13 + 3·3; Megatron's equal middle stages cannot hold that, so none is offered)."""
    q, r = divmod(layers, pp)
    stages = [q + 1] * r + [q] * (pp - r)
    text = f"set layers_per_stage: [{', '.join(map(str, stages))}]"
    edge = _megatron_balanced(layers, pp) if pp > 1 and q > 0 else None
    if edge:
        text += f", or {edge}"
    return text


def _explicit_split(plan: Plan, stages: tuple[int, ...]) -> list[Finding]:
    par, layers = plan.parallel, plan.model.layers
    path = "parallel.layers_per_stage"
    if par.first_stage_layers is not None or par.last_stage_layers is not None:
        msg = "layers_per_stage and first_stage_layers/last_stage_layers are both given"
        return [
            finding(
                plan,
                Code.PLAN_LAYERS_CONFLICT,
                ERROR,
                path,
                msg,
                "keep one way of splitting the layers",
            )
        ]
    if len(stages) != par.pp:
        msg = f"layers_per_stage lists {len(stages)} stages but pp={par.pp}"
        return [
            finding(plan, Code.PLAN_LAYERS_STAGES, ERROR, path, msg, _split_fix(layers, par.pp))
        ]
    if sum(stages) != layers:
        msg = f"layers_per_stage sums to {' + '.join(map(str, stages))} = {sum(stages)}, not the model's {layers} layers"
        return [finding(plan, Code.PLAN_LAYERS_SUM, ERROR, path, msg, _split_fix(layers, par.pp))]
    if 0 in stages:
        msg = f"stage {stages.index(0)} holds no layer in layers_per_stage {list(stages)}"
        return [
            finding(
                plan,
                Code.PLAN_EMPTY_STAGE,
                WARNING,
                path,
                msg,
                "give every stage a layer or lower pp",
            )
        ]
    return []


def _edge_split(plan: Plan) -> list[Finding]:
    """Megatron's uneven split: first/last stages fixed, the rest even (NOTE below)."""
    # NOTE: Megatron-Core (TransformerConfig, num_layers_in_first/last_pipeline_stage)
    # requires the layers left after the first and last stages to split evenly over
    # the middle stages: (layers − first − last) % (pp − #given) == 0.
    par, layers = plan.parallel, plan.model.layers
    first, last = par.first_stage_layers, par.last_stage_layers
    given = (first is not None) + (last is not None)
    middle = par.pp - given
    rest = layers - (first or 0) - (last or 0)
    path = "parallel.first_stage_layers" if first is not None else "parallel.last_stage_layers"
    ok = rest == 0 if middle == 0 else rest >= 0 and rest % middle == 0
    if ok:
        return []
    shown = f"{layers} − {first or 0} − {last or 0} = {rest}"
    msg = f"the {shown} layers left for the other {middle} stages do not split evenly"
    if middle == 0:
        msg = f"pp={par.pp} has no middle stage, yet {shown} layers are left"
    return [finding(plan, Code.PLAN_LAYERS_SPLIT, ERROR, path, msg, _split_fix(layers, par.pp))]


def layer_findings(plan: Plan) -> list[Finding]:
    """``PLAN-PP-LAYERS``, ``PLAN-LAYERS-…`` and ``PLAN-EMPTY-STAGE`` of ``plan``'s split."""
    par, layers = plan.parallel, plan.model.layers
    if par.layers_per_stage is not None:  # an explicit empty stage is only a warning
        return _explicit_split(plan, par.layers_per_stage)
    if par.pp > layers:
        msg = f"pp={par.pp} stages for {layers} layers leaves stages without a layer"
        return [finding(plan, Code.PLAN_PP_LAYERS, ERROR, "parallel.pp", msg, f"use pp ≤ {layers}")]
    if par.first_stage_layers is not None or par.last_stage_layers is not None:
        return _edge_split(plan)
    if layers % par.pp:
        msg = f"{layers} layers do not split evenly over pp={par.pp} ({layers} / {par.pp} = {layers / par.pp:g})"
        return [
            finding(
                plan, Code.PLAN_LAYERS_SPLIT, ERROR, "parallel.pp", msg, _split_fix(layers, par.pp)
            )
        ]
    return []
