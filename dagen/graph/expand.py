"""Expand per-stage templates over ranks, decode steps and micro-batches with numpy.

Nothing here loops over ranks, micro-batches or nodes: Python loops run over stages,
template segments and group dimensions only, and every column is written by one
broadcast assignment into a strided view.

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

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.errors import GraphError
from dagen.graph.ir import COLLECTIVE_OPS, EdgeKind, GroupKind, Kind, Op
from dagen.graph.templates import Peer, Segment, Template
from dagen.mesh import Mesh

__all__ = ["Expansion", "Layout", "group_table"]

log = logging.getLogger(__name__)

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
    = ``offset[dim] + row``.
    """
    tables = [mesh.groups(k.label) for k in GroupKind]
    counts = [t.shape[0] for t in tables]
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    kind = np.repeat(np.arange(len(tables), dtype=np.uint8), counts)
    sizes = np.repeat([t.shape[1] for t in tables], counts)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    members = np.concatenate([t.ravel() for t in tables]).astype(np.int32)
    first = {k: int(starts[i]) for i, k in enumerate(GroupKind)}
    return kind, offsets, members, first


@dataclass(frozen=True, slots=True)
class _DimLookup:
    """Per collective dimension: group id and stage-local index of each rank's group."""

    gid: I32
    """int32 [world]: global group id of each rank's group."""
    local: I32
    """int32 [world]: index of that group among its stage's groups of this dimension."""
    stage_gids: I32
    """int32 [pp, groups per stage]: each stage's group ids, ascending."""


def _dim_lookup(mesh: Mesh, kind: GroupKind, first: int) -> _DimLookup:
    groups, row = mesh.groups(kind.label), mesh.group_of(kind.label)
    pp = mesh.sizes["pp"]
    gstage = mesh.stage[groups[:, 0]]
    order = np.argsort(gstage, kind="stable").astype(np.int32)
    per_stage = groups.shape[0] // pp
    local = np.empty(groups.shape[0], dtype=np.int32)
    local[order] = np.arange(groups.shape[0], dtype=np.int32) % np.int32(per_stage)
    return _DimLookup(
        gid=(row + np.int32(first)).astype(np.int32),
        local=local[row],
        stage_gids=(order + np.int32(first)).reshape(pp, per_stage),
    )


@dataclass(frozen=True, slots=True)
class _Seg:
    """A segment placed on its stage: block range, node and edge offsets, instance base."""

    seg: Segment
    stage: int
    k0: int
    count: int
    node0: int
    edge0: int
    inst0: int
    inst_per_block: int


def _view4(layout: Layout, col: NDArray, s: int, start: int, blocks: int, width: int) -> NDArray:
    """``[outer, stride, blocks, width]`` view of items ``start…`` of every stage-``s`` rank."""
    flat = layout.view(col, s)[:, :, start : start + blocks * width]
    out = flat.reshape(layout.outer, layout.stride, blocks, width)
    if out.size and not np.may_share_memory(out, col):  # reshape fell back to a copy
        raise GraphError("expand: internal layout error (a column view became a copy)")
    return out


class Expansion:
    """Places every stage's segments and writes the node, edge and instance columns.

    Args:
        mesh: The rank mesh.
        stages: Per stage, its template segments in step order (all stages see the same
            ``steps``).
        micro_batches: Micro-batches per replica.
        steps: Decode steps (1 for prefill).
        placement: ``expert_placement`` (int32 ``[ep, slots]``), or None without experts.
    """

    def __init__(
        self,
        mesh: Mesh,
        stages: list[list[Segment]],
        *,
        micro_batches: int,
        steps: int,
        placement: I32 | None,
    ) -> None:
        self.mesh, self.stages, self.m, self.placement = mesh, stages, micro_batches, placement
        self.k = steps * micro_batches
        self.pp = len(stages)
        stride = pp_stride(mesh)
        outer = mesh.world // (stride * self.pp)
        kind, offsets, members, first = group_table(mesh)
        self.group_kind, self.group_offsets, self.group_members = kind, offsets, members
        dims = {GroupKind(d) for d, _ in COLLECTIVE_OPS.values()}
        self.lookups = {d: _dim_lookup(mesh, d, first[d]) for d in sorted(dims)}
        self.blk = np.zeros((self.pp, self.k + 1), dtype=np.int64)
        self.segs = self._place()
        self.nodes = Layout(outer, stride, tuple(int(b) for b in self.blk[:, -1]))
        self.n_order = self.k - 1 if not (self._chain_on_rank and micro_batches == 1) else 0
        self.n_chain = (steps - 1) * micro_batches if self._chain_on_rank else 0
        self.edges = Layout(outer, stride, tuple(self._stage_edges(s) for s in range(self.pp)))
        self.n_inst = sum(g.count * g.inst_per_block for g in self.segs)
        self.rank_off = self.nodes.offsets(np.arange(mesh.world))

    @property
    def _chain_on_rank(self) -> bool:
        """Decode steps chain on the rank itself (one stage): sample → next step's embed."""
        return self.pp == 1 and self.k > self.m

    def _place(self) -> list[_Seg]:
        segs: list[_Seg] = []
        inst = 0
        for s, stage in enumerate(self.stages):
            node = edge = 0
            for seg in stage:
                t, count = seg.template, (seg.t1 - seg.t0) * self.m
                if count <= 0:
                    continue
                k0 = seg.t0 * self.m
                self.blk[s, k0 : k0 + count] = node + np.arange(count) * t.size
                per_block = sum(
                    self.lookups[GroupKind(d)].stage_gids.shape[1]
                    for d in t.dim[t.kind == Kind.COLLECTIVE].tolist()
                )
                segs.append(_Seg(seg, s, k0, count, node, edge, inst, per_block))
                node += count * t.size
                edge += count * (t.n_edges + t.sends)
                inst += count * per_block
            self.blk[s, -1] = node
        return segs

    def _stage_edges(self, s: int) -> int:
        segs = [g for g in self.segs if g.stage == s]
        return sum(g.count * (g.seg.template.n_edges + g.seg.template.sends) for g in segs) + (
            self.n_order + self.n_chain
        )

    def _peer(self, ranks: I32, s: int, peer: Peer) -> tuple[I32, int]:
        """Peer ranks at the same (tp, cp, dp) coordinates, and the peer stage."""
        target = {Peer.NEXT: s + 1, Peer.PREV: s - 1, Peer.FIRST: 0, Peer.LAST: self.pp - 1}[peer]
        rows = self.mesh.group_of("pp")[ranks]
        return self.mesh.groups("pp")[rows, target], target

    # --- nodes ---------------------------------------------------------------------

    def node_columns(self, cols: dict[str, NDArray]) -> None:
        """Fill the node columns (preallocated, length ``nodes.total``)."""
        for s in range(self.pp):
            self.nodes.view(cols["rank"], s)[...] = self.nodes.stage_ranks(s)[:, :, None]
        for g in self.segs:
            self._segment_nodes(cols, g)

    def _segment_nodes(self, cols: dict[str, NDArray], g: _Seg) -> None:
        t = g.seg.template
        lay = self.nodes

        def v(name: str) -> NDArray:
            return _view4(lay, cols[name], g.stage, g.node0, g.count, t.size)

        k = np.arange(g.k0, g.k0 + g.count, dtype=np.int64)
        v("step")[...] = (k // self.m)[:, None]
        v("mb")[...] = (k % self.m)[:, None]
        for name in ("op", "kind", "layer", "tmpl"):
            v(name)[...] = getattr(t, name)
        ranks = lay.stage_ranks(g.stage).ravel()
        shape = (lay.outer, lay.stride, 1, t.size)
        v("expert")[...] = self._experts(t, ranks).reshape(shape)
        v("aux")[...] = self._aux(t, ranks, g.stage).reshape(shape)
        irow, kterm = self._instances(t, ranks, g)
        np.add(irow.reshape(shape), kterm[None, None], out=v("inst"))

    def _experts(self, t: Template, ranks: I32) -> npt.NDArray[np.int16]:
        out = np.full((ranks.size, t.size), -1, dtype=np.int16)
        cols = np.flatnonzero(t.slot >= 0)
        if cols.size and self.placement is not None:
            ep = self.mesh.coords["ep"][ranks]
            out[:, cols] = self.placement[ep[:, None], t.slot[cols][None, :]]
        return out

    def _aux(self, t: Template, ranks: I32, s: int) -> I32:
        out = np.full((ranks.size, t.size), -1, dtype=np.int32)
        for d, lk in self.lookups.items():
            cols = np.flatnonzero(t.dim == d)
            if cols.size:
                out[:, cols] = lk.gid[ranks][:, None]
        for p in Peer:
            cols = np.flatnonzero(t.peer == p)
            if cols.size:
                out[:, cols] = self._peer(ranks, s, p)[0][:, None]
        return out

    def _coll_rows(self, t: Template) -> tuple[I64, I64, I64]:
        """Collective rows, their groups per stage, and their offset inside a block."""
        cols = np.flatnonzero(t.kind == Kind.COLLECTIVE)
        sizes = np.array(
            [self.lookups[GroupKind(d)].stage_gids.shape[1] for d in t.dim[cols].tolist()],
            dtype=np.int64,
        )
        off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return cols, sizes, off

    def _instances(self, t: Template, ranks: I32, g: _Seg) -> tuple[I32, I32]:
        """Per-rank row part and per-block part of the instance id (-1 off collectives)."""
        cols, _, off = self._coll_rows(t)
        irow = np.full((ranks.size, t.size), -1, dtype=np.int32)
        for d, lk in self.lookups.items():
            m = t.dim[cols] == d
            if m.any():
                irow[:, cols[m]] = off[m][None, :] + lk.local[ranks][:, None]
        base = g.inst0 + np.arange(g.count, dtype=np.int64) * g.inst_per_block
        kterm = (base[:, None] * (t.kind == Kind.COLLECTIVE)[None, :]).astype(np.int32)
        return irow, kterm

    def instance_tables(self) -> tuple[npt.NDArray[np.uint8], I32]:
        """``inst_coll`` and ``inst_group``: instances numbered by (stage, segment, block,
        collective row, stage-local group)."""
        coll = np.empty(self.n_inst, dtype=np.uint8)
        group = np.empty(self.n_inst, dtype=np.int32)
        for g in self.segs:
            t = g.seg.template
            cols, sizes, _ = self._coll_rows(t)
            if not cols.size:
                continue
            ops = [COLLECTIVE_OPS[Op.of(o)] for o in t.op[cols].tolist()]
            one_c = np.repeat(np.array([int(c) for _, c in ops], dtype=np.uint8), sizes)
            one_g = np.concatenate([self.lookups[d].stage_gids[g.stage] for d, _ in ops])
            span = slice(g.inst0, g.inst0 + g.count * g.inst_per_block)
            coll[span] = np.tile(one_c, g.count)
            group[span] = np.tile(one_g, g.count)
        return coll, group

    # --- edges ---------------------------------------------------------------------

    def edge_columns(self, src: I32, dst: I32, ekind: npt.NDArray[np.uint8]) -> None:
        """Fill the edge columns (preallocated, length ``edges.total``)."""
        for g in self.segs:
            self._segment_edges(src, dst, ekind, g)
        for s in range(self.pp):
            self._order_edges(src, dst, ekind, s)

    def _segment_edges(self, src: I32, dst: I32, ekind: npt.NDArray[np.uint8], g: _Seg) -> None:
        t, lay = g.seg.template, self.edges
        width = t.n_edges + t.sends
        if width == 0:
            return
        ranks = lay.stage_ranks(g.stage)
        starts = self.rank_off[ranks][:, :, None] + self.blk[g.stage, g.k0 : g.k0 + g.count]
        sv = _view4(lay, src, g.stage, g.edge0, g.count, width)
        dv = _view4(lay, dst, g.stage, g.edge0, g.count, width)
        e = t.n_edges
        np.add(starts[..., None], t.esrc, out=sv[..., :e], casting="same_kind")
        np.add(starts[..., None], t.edst, out=dv[..., :e], casting="same_kind")
        kinds = np.full(width, EdgeKind.DATA, dtype=np.uint8)
        if t.sends:
            kinds[-1] = EdgeKind.P2P
            peers, target = self._peer(ranks.ravel(), g.stage, Peer(int(t.peer[-1])))
            shift = self.m if Peer(int(t.peer[-1])) is Peer.FIRST else 0
            k = g.k0 + shift
            sv[..., e] = starts + (t.size - 1)
            dv[..., e] = (
                self.rank_off[peers].reshape(ranks.shape)[:, :, None]
                + self.blk[target, k : k + g.count]
            )
        _view4(lay, ekind, g.stage, g.edge0, g.count, width)[...] = kinds

    def _order_edges(self, src: I32, dst: I32, ekind: npt.NDArray[np.uint8], s: int) -> None:
        """Micro-batch/step order on each rank, then (one stage) the decode-step chain."""
        lay = self.edges
        at = lay.per_rank[s] - self.n_order - self.n_chain
        base = self.rank_off[lay.stage_ranks(s)][:, :, None]
        if self.n_order:
            heads = base + self.blk[s, 1 : self.k]
            lay.view(dst, s)[:, :, at : at + self.n_order] = heads
            lay.view(src, s)[:, :, at : at + self.n_order] = heads - 1
            lay.view(ekind, s)[:, :, at : at + self.n_order] = EdgeKind.ORDER
        if self.n_chain:
            t = self.segs[0].seg.template
            at += self.n_order
            span = slice(at, at + self.n_chain)
            lay.view(src, s)[:, :, span] = base + self.blk[s, : self.k - self.m] + t.sample
            lay.view(dst, s)[:, :, span] = base + self.blk[s, self.m : self.k] + t.embed
            lay.view(ekind, s)[:, :, span] = EdgeKind.DATA
