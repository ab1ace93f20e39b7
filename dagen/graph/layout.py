"""The rank-major layout of the graph's columns: which slice of a column each stage owns.

NOTE: the layout arithmetic. A rank's stage is ``(rank // stride) % pp`` with
``stride`` the pp stride of the rank order (Megatron's order: the product of the sizes
before ``pp``). So the world is ``outer`` blocks of ``pp`` runs of ``stride`` ranks, run
``s`` holding stage ``s``. A rank-major column of per-rank item counts ``L_s`` is then
``[outer, Σ_s stride·L_s]`` in C order, and stage ``s`` owns the column slice
``[stride·Σ_{s'<s} L_s', stride·Σ_{s'≤s} L_s')``, which reshapes (as a view) to
``[outer, stride, L_s]``: every rank of the stage, in rank order. Example: tp2·pp2·dp2,
order tp-cp-ep-dp-pp: stride 4, outer 1; ranks 0-3 are stage 0, 4-7 stage 1. With order
pp-tp-dp: stride 1, outer 4; ranks alternate stages 0, 1, 0, 1, ….
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.errors import GraphError
from dagen.graph.ir import GroupKind
from dagen.mesh import Mesh, group_base

__all__ = ["DimLookup", "Layout", "dim_lookup", "group_table", "pp_stride", "view4"]

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
NDArray = npt.NDArray[np.generic]


@dataclass(frozen=True, slots=True)
class Layout:
    """Rank-major placement of per-rank items (nodes or edges) whose count depends on stage."""

    outer: int
    stride: int
    per_rank: tuple[int, ...]
    """Items per rank of each stage."""

    @property
    def total(self) -> int:
        return self.outer * self.stride * sum(self.per_rank)

    def view(self, col: NDArray, s: int) -> NDArray:
        """``[outer, stride, per_rank[s]]`` view of stage ``s``'s items in ``col``."""
        before = self.stride * sum(self.per_rank[:s])
        block = col.reshape(self.outer, -1)[:, before : before + self.stride * self.per_rank[s]]
        return block.reshape(self.outer, self.stride, self.per_rank[s])

    def offsets(self, ranks: npt.NDArray[np.integer]) -> I64:
        """First item of each rank."""
        pp = len(self.per_rank)
        r = ranks.astype(np.int64)
        s = (r // self.stride) % pp
        prefix = np.concatenate([[0], np.cumsum(self.per_rank)]).astype(np.int64)
        per = np.asarray(self.per_rank, dtype=np.int64)
        outer = r // (self.stride * pp)
        out: I64 = outer * self.stride * prefix[-1] + self.stride * prefix[s]
        return out + (r % self.stride) * per[s]

    def stage_ranks(self, s: int) -> I32:
        """``[outer, stride]`` ranks of stage ``s``, ascending in C order."""
        pp = len(self.per_rank)
        o = np.arange(self.outer, dtype=np.int32)[:, None] * np.int32(self.stride * pp)
        return o + np.int32(s * self.stride) + np.arange(self.stride, dtype=np.int32)[None, :]


def pp_stride(mesh: Mesh) -> int:
    """Rank distance between adjacent stages; checks the mesh has the periodic layout."""
    pp = mesh.sizes["pp"]
    stride = int(mesh.groups("pp")[0, 1]) if pp > 1 else mesh.world
    expect = (np.arange(mesh.world) // stride) % pp
    if not np.array_equal(mesh.stage, expect):
        raise GraphError(f"expand: mesh stages are not periodic with stride {stride}")
    return stride


def group_table(mesh: Mesh) -> tuple[npt.NDArray[np.uint8], I64, I32, dict[GroupKind, int]]:
    """``group_kind``, ``group_offsets``, ``group_members`` and each dimension's first id.

    Groups are ``mesh.groups(dim)`` concatenated in :class:`GroupKind` order, so group id
    = ``offset[dim] + row``: the mesh's global ids (:func:`dagen.mesh.group_base`), which
    ``dagen ranks`` prints too.
    """
    tables = [mesh.groups(k.label) for k in GroupKind]
    counts = [t.shape[0] for t in tables]
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    kind = np.repeat(np.arange(len(tables), dtype=np.uint8), counts)
    sizes = np.repeat([t.shape[1] for t in tables], counts)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    members = np.concatenate([t.ravel() for t in tables]).astype(np.int32)
    first = {k: int(starts[i]) for i, k in enumerate(GroupKind)}
    if first != {GroupKind(i): b for i, b in enumerate(group_base(mesh).values())}:
        raise GraphError("expand: GroupKind and GROUP_DIMS list the dimensions differently")
    return kind, offsets, members, first


@dataclass(frozen=True, slots=True)
class DimLookup:
    """Per collective dimension: group id and stage-local index of each rank's group."""

    gid: I32
    """int32 [world]: global group id of each rank's group."""
    local: I32
    """int32 [world]: index of that group among its stage's groups of this dimension."""
    stage_gids: I32
    """int32 [pp, groups per stage]: each stage's group ids, ascending."""


def dim_lookup(mesh: Mesh, kind: GroupKind, first: int) -> DimLookup:
    groups, row = mesh.groups(kind.label), mesh.group_of(kind.label)
    pp = mesh.sizes["pp"]
    gstage = mesh.stage[groups[:, 0]]
    order = np.argsort(gstage, kind="stable").astype(np.int32)
    per_stage = groups.shape[0] // pp
    local = np.empty(groups.shape[0], dtype=np.int32)
    local[order] = np.arange(groups.shape[0], dtype=np.int32) % np.int32(per_stage)
    return DimLookup(
        gid=(row + np.int32(first)).astype(np.int32),
        local=local[row],
        stage_gids=(order + np.int32(first)).reshape(pp, per_stage),
    )


def view4(layout: Layout, col: NDArray, s: int, start: int, blocks: int, width: int) -> NDArray:
    """``[outer, stride, blocks, width]`` view of items ``start…`` of every stage-``s`` rank."""
    flat = layout.view(col, s)[:, :, start : start + blocks * width]
    out = flat.reshape(layout.outer, layout.stride, blocks, width)
    if out.size and not np.may_share_memory(out, col):  # reshape fell back to a copy
        raise GraphError("expand: internal layout error (a column view became a copy)")
    return out
