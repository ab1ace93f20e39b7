"""The node count of every rank, without expanding the graph: a stage's blocks times the
rows of their templates (docs/graph.md gives the same count in closed form).

It lets callers size a graph before building it; the tests check it, and an independent
closed form of their own, against built graphs.

Example:
    >>> nodes_per_rank(plan).sum() == build_graph(plan).n_nodes  # doctest: +SKIP
    True
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.graph.build import describe_pool
from dagen.mesh import Mesh
from dagen.plan.model import Plan

__all__ = ["nodes_per_rank"]


def nodes_per_rank(plan: Plan, mesh: Mesh | None = None) -> npt.NDArray[np.int64]:
    """int64 ``[world]``: the nodes each rank of ``plan`` runs."""
    pool = describe_pool(plan, mesh=mesh)
    per_stage = np.array([int(b[-1]) for b in pool.schedule.block_starts()], dtype=np.int64)
    out: npt.NDArray[np.int64] = per_stage[pool.mesh.stage]
    return out
