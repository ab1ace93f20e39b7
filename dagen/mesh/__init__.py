"""The rank mesh: ranks ↔ coordinates and groups (:mod:`.ranks`), and expert placement
(:mod:`.placement`), global group ids (:mod:`.groups`). Pure and stateless; see docs/parallelism.md."""

from dagen.mesh.groups import group_base, group_ids, rank_table
from dagen.mesh.placement import expert_placement
from dagen.mesh.ranks import (
    GROUP_DIMS,
    MAX_WORLD,
    ORDER_NAMES,
    Mesh,
    build_mesh,
    mesh_for,
    mesh_of,
    spans_hosts,
)

__all__ = [
    "GROUP_DIMS",
    "MAX_WORLD",
    "ORDER_NAMES",
    "Mesh",
    "build_mesh",
    "expert_placement",
    "group_base",
    "group_ids",
    "mesh_for",
    "mesh_of",
    "rank_table",
    "spans_hosts",
]
