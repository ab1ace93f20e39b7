"""The closed-form node count of every rank (the formula of docs/graph.md).

The builder does not use it; it lets callers size a graph before building it, and the
tests check it against built graphs.

Example:
    >>> nodes_per_rank_formula(plan, mesh).sum() == build_graph(plan).n_nodes  # doctest: +SKIP
    True
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.mesh import Mesh
from dagen.plan.model import Plan
from dagen.plan.split import stage_layers

__all__ = ["nodes_per_rank_formula"]


def _layer_nodes(plan: Plan, mesh: Mesh, layer: int) -> int:
    """Nodes of one layer on one rank for one micro-batch (docs/graph.md, closed form)."""
    p, m = plan.parallel, plan.model
    tp, cp, ep, etp = (mesh.sizes[d] for d in ("tp", "cp", "ep", "etp"))
    tpc = int(tp > 1)
    sp = int(p.sp_active)
    attn = 5 + tpc + sp + int(cp > 1)
    if m.moe is None or not m.moe.is_moe_layer(layer):
        return attn + 4 + tpc + sp
    slots = (m.moe.experts + p.redundant_experts) // ep
    shared = (1 + tpc + sp) if m.moe.shared_experts else 0  # [SP: ag] shared [ar|rs]
    return attn + 4 + 2 * int(ep > 1) + slots + int(etp > 1) + shared


def nodes_per_rank_formula(plan: Plan, mesh: Mesh) -> npt.NDArray[np.int64]:
    """Closed-form node count of every rank (the formula of docs/graph.md).

    The build does not use it; it lets callers size a graph before building it.
    """
    pp, tp = mesh.sizes["pp"], mesh.sizes["tp"]
    steps, mbs = plan.workload.unrolled_steps, plan.workload.micro_batches
    per_stage = []
    for s, layers in enumerate(stage_layers(plan)):
        block = sum(_layer_nodes(plan, mesh, layer) for layer in layers)
        sp = int(plan.parallel.sp_active)  # lm.allgather under SP
        block += (1 + int(tp > 1)) * (s == 0) + (3 + int(tp > 1) + sp) * (s == pp - 1)
        block += int(s > 0) + int(s < pp - 1)
        chain = (steps - 1) * int(pp > 1 and (s == 0 or s == pp - 1))
        per_stage.append(block * steps * mbs + chain * mbs)
    return np.asarray(per_stage, dtype=np.int64)[mesh.stage]
