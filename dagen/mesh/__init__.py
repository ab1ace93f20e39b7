"""The rank mesh: ranks ↔ coordinates and groups (:mod:`.ranks`), and expert placement
(:mod:`.placement`). Pure and stateless; see docs/parallelism.md."""

from dagen.mesh.placement import expert_placement
from dagen.mesh.ranks import (
    GROUP_DIMS,
    MAX_WORLD,
    ORDER_NAMES,
    Mesh,
    build_mesh,
    mesh_for,
    mesh_of,
    rank_table,
    spans_hosts,
)

__all__ = [
    "GROUP_DIMS",
    "MAX_WORLD",
    "ORDER_NAMES",
    "Mesh",
    "build_mesh",
    "expert_placement",
    "mesh_for",
    "mesh_of",
    "rank_table",
    "spans_hosts",
]
