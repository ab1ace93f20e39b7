"""How a plan splits its layers over pipeline stages: the one home of the split rule.

The builder lays layers out by it and the completeness check's oracle expects them by
it; the plan rules (:mod:`dagen.plan.rules`, ``PLAN-LAYERS-…``) decide whether a split
is valid before either runs.

Example:
    >>> from dagen.plan.model import Parallel
    >>> stage_sizes(Parallel(pp=3), 7), stage_sizes(Parallel(pp=3, first_stage_layers=1), 7)
    ([2, 3, 2], [1, 3, 3])
"""

from __future__ import annotations

import itertools

from dagen.errors import PlanInfeasible
from dagen.plan.model import Parallel, Plan

__all__ = ["even_split", "layer_ranges", "stage_layers", "stage_sizes"]


def even_split(n: int, parts: int) -> list[int]:
    """vLLM's split: equal shares, the remainder one layer each on the stages before the
    last, last-but-one first (vllm-project/vllm, vllm/distributed/utils.py, get_pp_indices).

    >>> even_split(22, 4)
    [5, 6, 6, 5]
    """
    if parts <= 0:
        return []
    sizes = [n // parts] * parts
    for i in range(2, n % parts + 2):
        sizes[-i] += 1
    return sizes


def stage_sizes(p: Parallel, layers: int) -> list[int]:
    """Layers on each stage, first to last.

    ``layers_per_stage`` if given; else ``first_stage_layers`` / ``last_stage_layers``
    with the rest split evenly (Megatron's uneven split); else :func:`even_split`.

    Raises:
        PlanInfeasible: the split is inconsistent (the ``PLAN-LAYERS-…`` rules say why).
    """
    if p.layers_per_stage is not None:
        sizes = list(p.layers_per_stage)
        if len(sizes) != p.pp or sum(sizes) != layers:
            raise PlanInfeasible(
                f"parallel.layers_per_stage: found {sizes}; expected {p.pp} counts summing "
                f"to {layers} layers. Fix: list one count per stage adding up to model.layers"
            )
        return sizes
    first, last = p.first_stage_layers, p.last_stage_layers
    if p.pp == 1 or (first is None and last is None):
        return even_split(layers, p.pp)
    fixed = (first or 0) + (last or 0)
    free = p.pp - (first is not None) - (last is not None)
    if fixed > layers or (free == 0 and fixed != layers):
        raise PlanInfeasible(
            f"parallel.first_stage_layers: found first {first}, last {last}; expected them to "
            f"leave {layers - fixed} layers for {free} other stages. Fix: lower "
            "first_stage_layers/last_stage_layers or change pp"
        )
    middle = even_split(layers - fixed, free)
    head = [first] if first is not None else [middle.pop(0)]
    tail = [last] if last is not None else [middle.pop()]
    return head + middle + tail


def layer_ranges(p: Parallel, layers: int) -> list[range]:
    """The layers each pipeline stage holds, first stage first (see :func:`stage_sizes`).

    >>> [len(r) for r in layer_ranges(Parallel(pp=3), 7)]
    [2, 3, 2]
    """
    starts = [0, *itertools.accumulate(stage_sizes(p, layers))]
    return [range(a, b) for a, b in itertools.pairwise(starts)]


def stage_layers(plan: Plan) -> list[range]:
    """The layers each pipeline stage of ``plan`` holds (:func:`layer_ranges`)."""
    return layer_ranges(plan.parallel, plan.model.layers)
