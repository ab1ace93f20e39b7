"""Roofline time of every compute node: max(FLOPs / achievable FLOP/s, bytes / achievable HBM).

FLOPs and HBM bytes come from the graph's template table (``tmpl_flops``, ``tmpl_hbm``),
which the op registry priced when the graph was built (:mod:`dagen.graph.ops`; formulas
in docs/graph.md and docs/cost-model.md, "Compute nodes"). Nothing is re-derived here.

Example:
    >>> from dagen.cost.roofline import compute_durations
    >>> seconds = compute_durations(graph)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.cost.bounds import achievable_flops, achievable_hbm
from dagen.graph.ir import Graph, Kind
from dagen.plan.model import Plan

__all__ = ["achievable", "compute_durations"]

F64 = npt.NDArray[np.float64]


def achievable(plan: Plan) -> tuple[float, float]:
    """``(FLOP/s, bytes/s)`` one GPU achieves: peak × efficiency for the model's dtype."""
    return achievable_flops(plan)[0], achievable_hbm(plan)[0]


def compute_durations(graph: Graph) -> F64:
    """Seconds of every node on the compute stream; 0 for communication nodes.

    ``max(FLOPs / (peak · flops_efficiency), bytes / (HBM · hbm_efficiency))`` with the
    FLOPs and HBM bytes of the node's template.
    """
    flop_rate, byte_rate = achievable(graph.plan)
    flops = graph.tmpl_flops[graph.tmpl]
    traffic = graph.tmpl_hbm[graph.tmpl]
    seconds = np.maximum(flops / flop_rate, traffic / byte_rate)
    seconds[graph.kind != Kind.COMPUTE] = 0.0
    return seconds
