"""Global group ids: one number per process group of a mesh, the one every output uses.

The groups of all dimensions are numbered in one sequence, dimension by dimension in
:data:`~dagen.mesh.GROUP_DIMS` order (``tp cp dp pp ep etp edp``), each dimension's rows
of :meth:`Mesh.groups` in order. The graph's group table (``groups`` of the DAG JSON,
``groups.parquet``, ``group`` of a collective node) and ``dagen ranks`` both use these
ids, so a rank's ``tp_group`` in ``dagen ranks --json`` is the ``group`` of its
tensor-parallel collectives in the DAG.

Example (tp 2, dp 2: two tp groups, ids 0-1; one cp group per rank, ids 2-5; two dp
groups {0, 2} and {1, 3}, ids 6-7; …):

>>> from dagen.mesh.ranks import build_mesh
>>> from dagen.plan.model import Parallel
>>> m = build_mesh(Parallel(tp=2, dp=2))
>>> group_base(m), group_ids(m)["dp"].tolist()
({'tp': 0, 'cp': 2, 'dp': 6, 'pp': 8, 'ep': 12, 'etp': 16, 'edp': 20}, [6, 7, 6, 7])
"""

from __future__ import annotations

import numpy as np

from dagen.mesh.ranks import GROUP_DIMS, IntArray, Mesh

__all__ = ["group_base", "group_ids", "rank_table"]


def group_base(mesh: Mesh) -> dict[str, int]:
    """Per dimension, the global id of its first group."""
    base, out = 0, {}
    for d in GROUP_DIMS:
        out[d] = base
        base += int(mesh.groups(d).shape[0])
    return out


def group_ids(mesh: Mesh) -> dict[str, IntArray]:
    """Per dimension, int32 ``[world]``: the global id of each rank's group."""
    base = group_base(mesh)
    return {d: (mesh.group_of(d) + np.int32(base[d])).astype(np.int32) for d in GROUP_DIMS}


def rank_table(mesh: Mesh) -> list[dict[str, int]]:
    """One row per rank: ``rank``, ``host``, every coordinate, and ``<dim>_group``, the
    global id of its group (:func:`group_ids`).

    >>> from dagen.mesh.ranks import build_mesh
    >>> from dagen.plan.model import Parallel
    >>> row = rank_table(build_mesh(Parallel(tp=2)))[1]
    >>> row["tp"], row["tp_group"], row["cp_group"]
    (1, 0, 2)
    """
    columns: dict[str, IntArray] = {
        "rank": np.arange(mesh.world, dtype=np.int32),
        "host": mesh.host,
    }
    columns.update({d: mesh.coords[d] for d in GROUP_DIMS})
    columns.update({f"{d}_group": ids for d, ids in group_ids(mesh).items()})
    keys = tuple(columns)
    return [
        dict(zip(keys, row, strict=True))
        for row in zip(*(c.tolist() for c in columns.values()), strict=True)
    ]
