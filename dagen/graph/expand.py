"""Expand a schedule's blocks over ranks with numpy: node, edge and instance columns.

The schedule (:mod:`dagen.graph.schedule`) lists each stage's blocks in issue order.
Consecutive blocks of one template form a *run*; every column of a run is written by one
broadcast assignment into a strided ``[outer, stride, blocks, template rows]`` view of
the column (:func:`dagen.graph.layout.view4`). Python loops run over stages, runs, send
rows and group dimensions only, never over ranks, micro-batches or nodes.

Per rank the nodes are its blocks in issue order; the edges are, per block, its
template's data edges then one p2p edge per send row, and after all blocks the
schedule's links (stream order, the one-stage decode chain).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.graph.ir import COLLECTIVE_OPS, EdgeKind, GroupKind, Kind, Op
from dagen.graph.layout import DimLookup, Layout, dim_lookup, group_table, pp_stride, view4
from dagen.graph.schedule import Schedule
from dagen.graph.templates import Template
from dagen.mesh import Mesh

__all__ = ["Expansion"]

log = logging.getLogger(__name__)

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
NDArray = npt.NDArray[np.generic]

_COLLECTIVE = int(Kind.COLLECTIVE)
"""As a plain int: numpy compares an enum member only after probing it for array
dunders, a Python-level ``__getattr__`` miss each (microseconds per comparison)."""


@dataclass(frozen=True, slots=True)
class _Run:
    """Consecutive blocks of one template on a stage: blocks, node and edge offsets,
    instance base, and the pairing rows of its sends and recvs (``[count, rows]``)."""

    stage: int
    template: Template
    b0: int
    count: int
    node0: int
    edge0: int
    inst0: int
    inst_per_block: int
    sends: I64
    recvs: I64


class Expansion:
    """Places every stage's blocks and writes the node, edge and instance columns.

    Args:
        mesh: The rank mesh.
        schedule: The blocks of every stage, their pairing and links.
        placement: ``expert_placement`` (int32 ``[ep, slots]``), or None without experts.
    """

    def __init__(self, mesh: Mesh, schedule: Schedule, *, placement: I32 | None) -> None:
        self.mesh, self.sched, self.placement = mesh, schedule, placement
        self.pp = schedule.pp
        stride = pp_stride(mesh)
        outer = mesh.world // (stride * self.pp)
        kind, offsets, members, first = group_table(mesh)
        self.group_kind, self.group_offsets, self.group_members = kind, offsets, members
        self.group_ids = {k.label: mesh.group_of(k.label) + np.int32(first[k]) for k in GroupKind}
        """Per dimension, each rank's group id (a row of the group table)."""
        dims = {GroupKind(d) for d, _ in COLLECTIVE_OPS.values()}
        self.lookups: dict[GroupKind, DimLookup] = {
            d: dim_lookup(mesh, d, first[d]) for d in sorted(dims)
        }
        self._width = np.zeros(len(GroupKind), dtype=np.int64)
        """Per group dimension, the instances one collective row makes per block."""
        for d, lk in self.lookups.items():
            self._width[d] = lk.stage_gids.shape[1]
        self.starts = schedule.block_starts()
        self.runs = self._place()
        self.nodes = Layout(outer, stride, tuple(int(b[-1]) for b in self.starts))
        self.n_links = np.bincount(schedule.links.stage, minlength=self.pp)
        self.edges = Layout(outer, stride, tuple(self._stage_edges(s) for s in range(self.pp)))
        self.n_inst = sum(r.count * r.inst_per_block for r in self.runs)
        self.rank_off = self.nodes.offsets(np.arange(mesh.world))

    def _pairing(self) -> tuple[I64, I64]:
        """Pair rows ordered by source (stage, block, row) and by target (stage, block, row)."""
        p = self.sched.pairs
        by_src = np.lexsort((p.src_row, p.src_block, p.src_stage))
        by_dst = np.lexsort((p.dst_row, p.dst_block, p.dst_stage))
        return by_src, by_dst

    def _place(self) -> list[_Run]:
        by_src, by_dst = self._pairing()
        p = self.sched.pairs
        src_key = p.src_stage[by_src].astype(np.int64) << 32 | p.src_block[by_src]
        dst_key = p.dst_stage[by_dst].astype(np.int64) << 32 | p.dst_block[by_dst]
        runs: list[_Run] = []
        inst = 0
        for s, blocks in enumerate(self.sched.stages):
            tmpl = blocks.template
            cuts = np.flatnonzero(np.concatenate([[True], tmpl[1:] != tmpl[:-1]]))
            ends = np.append(cuts[1:], tmpl.shape[0])
            edge = 0
            for b0, b1 in zip(cuts.tolist(), ends.tolist(), strict=True):
                t = self.sched.templates[int(tmpl[b0])]
                count = b1 - b0
                lo, hi = (s << 32) | b0, (s << 32) | b1
                sends = by_src[np.searchsorted(src_key, lo) : np.searchsorted(src_key, hi)]
                recvs = by_dst[np.searchsorted(dst_key, lo) : np.searchsorted(dst_key, hi)]
                per_block = int(self._width[t.dim[t.kind == _COLLECTIVE]].sum())
                runs.append(
                    _Run(
                        s, t, b0, count, int(self.starts[s][b0]), edge, inst, per_block,
                        sends.reshape(count, -1), recvs.reshape(count, -1),
                    )
                )  # fmt: skip
                edge += count * (t.n_edges + t.send_rows.shape[0])
                inst += count * per_block
        return runs

    def _stage_edges(self, s: int) -> int:
        runs = [r for r in self.runs if r.stage == s]
        per_block = sum(
            r.count * (r.template.n_edges + r.template.send_rows.shape[0]) for r in runs
        )
        return int(per_block) + int(self.n_links[s])

    def _peer(self, ranks: I32, stage: int) -> I32:
        """The ranks at the same (tp, cp, dp) coordinates in pipeline stage ``stage``."""
        rows = self.mesh.group_of("pp")[ranks]
        out: I32 = self.mesh.groups("pp")[rows, stage]
        return out

    # --- nodes ---------------------------------------------------------------------

    def node_columns(self, cols: dict[str, NDArray]) -> None:
        """Fill the node columns (preallocated, length ``nodes.total``)."""
        for s in range(self.pp):
            self.nodes.view(cols["rank"], s)[...] = self.nodes.stage_ranks(s)[:, :, None]
        for r in self.runs:
            self._run_nodes(cols, r)

    def _run_nodes(self, cols: dict[str, NDArray], r: _Run) -> None:
        t, lay = r.template, self.nodes

        def v(name: str) -> NDArray:
            return view4(lay, cols[name], r.stage, r.node0, r.count, t.size)

        blocks = self.sched.stages[r.stage]
        v("step")[...] = blocks.step[r.b0 : r.b0 + r.count][:, None]
        v("mb")[...] = blocks.mb[r.b0 : r.b0 + r.count][:, None]
        for name in ("op", "kind", "layer", "tmpl"):
            v(name)[...] = getattr(t, name)
        ranks = lay.stage_ranks(r.stage).ravel()
        shape = (lay.outer, lay.stride, 1, t.size)
        v("expert")[...] = self._experts(t, ranks).reshape(shape)
        v("aux")[...] = self._aux(r, ranks).reshape(shape)
        irow, kterm = self._instances(t, ranks, r)
        np.add(irow.reshape(shape), kterm[None, None], out=v("inst"))

    def _experts(self, t: Template, ranks: I32) -> npt.NDArray[np.int16]:
        out = np.full((ranks.size, t.size), -1, dtype=np.int16)
        cols = np.flatnonzero(t.slot >= 0)
        if cols.size and self.placement is not None:
            ep = self.mesh.coords["ep"][ranks]
            out[:, cols] = self.placement[ep[:, None], t.slot[cols][None, :]]
        return out

    def _aux(self, r: _Run, ranks: I32) -> I32:
        """Group id of each collective row, peer rank of each send and recv row."""
        t, p = r.template, self.sched.pairs
        out = np.full((ranks.size, t.size), -1, dtype=np.int32)
        for d, lk in self.lookups.items():
            cols = np.flatnonzero(t.dim == int(d))
            if cols.size:
                out[:, cols] = lk.gid[ranks][:, None]
        for j, row in enumerate(t.send_rows.tolist()):  # the schedule lints: one peer stage
            out[:, row] = self._peer(ranks, int(p.dst_stage[r.sends[0, j]]))
        for j, row in enumerate(t.recv_rows.tolist()):
            out[:, row] = self._peer(ranks, int(p.src_stage[r.recvs[0, j]]))
        return out

    def _coll_rows(self, t: Template) -> tuple[I64, I64, I64]:
        """Collective rows, their groups per stage, and their offset inside a block."""
        cols = np.flatnonzero(t.kind == _COLLECTIVE)
        sizes = self._width[t.dim[cols]]
        off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return cols, sizes, off

    def _instances(self, t: Template, ranks: I32, r: _Run) -> tuple[I32, I32]:
        """Per-rank row part and per-block part of the instance id (-1 off collectives)."""
        cols, _, off = self._coll_rows(t)
        irow = np.full((ranks.size, t.size), -1, dtype=np.int32)
        for d, lk in self.lookups.items():
            m = t.dim[cols] == int(d)
            if m.any():
                irow[:, cols[m]] = off[m][None, :] + lk.local[ranks][:, None]
        base = r.inst0 + np.arange(r.count, dtype=np.int64) * r.inst_per_block
        kterm = (base[:, None] * (t.kind == _COLLECTIVE)[None, :]).astype(np.int32)
        return irow, kterm

    def instance_tables(self) -> tuple[npt.NDArray[np.uint8], I32]:
        """``inst_coll`` and ``inst_group``: instances numbered by (stage, run, block,
        collective row, stage-local group)."""
        coll = np.empty(self.n_inst, dtype=np.uint8)
        group = np.empty(self.n_inst, dtype=np.int32)
        for r in self.runs:
            t = r.template
            cols, sizes, _ = self._coll_rows(t)
            if not cols.size:
                continue
            ops = [COLLECTIVE_OPS[Op.of(o)] for o in t.op[cols].tolist()]
            one_c = np.repeat(np.array([int(c) for _, c in ops], dtype=np.uint8), sizes)
            one_g = np.concatenate([self.lookups[d].stage_gids[r.stage] for d, _ in ops])
            span = slice(r.inst0, r.inst0 + r.count * r.inst_per_block)
            coll[span] = np.tile(one_c, r.count)
            group[span] = np.tile(one_g, r.count)
        return coll, group

    # --- edges ---------------------------------------------------------------------

    def edge_columns(self, src: I32, dst: I32, ekind: npt.NDArray[np.uint8]) -> None:
        """Fill the edge columns (preallocated, length ``edges.total``)."""
        for r in self.runs:
            self._run_edges(src, dst, ekind, r)
        for s in range(self.pp):
            self._links(src, dst, ekind, s)

    def _run_edges(self, src: I32, dst: I32, ekind: npt.NDArray[np.uint8], r: _Run) -> None:
        t, lay, p = r.template, self.edges, self.sched.pairs
        sends = t.send_rows
        width = t.n_edges + sends.shape[0]
        if width == 0:
            return
        ranks = lay.stage_ranks(r.stage)
        starts = self.rank_off[ranks][:, :, None] + self.starts[r.stage][r.b0 : r.b0 + r.count]
        sv = view4(lay, src, r.stage, r.edge0, r.count, width)
        dv = view4(lay, dst, r.stage, r.edge0, r.count, width)
        e = t.n_edges
        np.add(starts[..., None], t.esrc, out=sv[..., :e], casting="same_kind")
        np.add(starts[..., None], t.edst, out=dv[..., :e], casting="same_kind")
        kinds = np.full(width, int(EdgeKind.DATA), dtype=np.uint8)
        kinds[e:] = int(EdgeKind.P2P)
        for j, row in enumerate(sends.tolist()):
            rows = r.sends[:, j]
            target = int(p.dst_stage[rows[0]])
            peers = self._peer(ranks.ravel(), target).reshape(ranks.shape)
            at = self.starts[target][p.dst_block[rows]] + p.dst_row[rows]
            sv[..., e + j] = starts + row
            dv[..., e + j] = self.rank_off[peers][:, :, None] + at
        view4(lay, ekind, r.stage, r.edge0, r.count, width)[...] = kinds

    def _links(self, src: I32, dst: I32, ekind: npt.NDArray[np.uint8], s: int) -> None:
        """The schedule's edges between blocks of one rank, after the block edges."""
        n = int(self.n_links[s])
        if n == 0:
            return
        lk, lay, st = self.sched.links, self.edges, self.starts[s]
        mine = np.flatnonzero(lk.stage == s)
        at = lay.per_rank[s] - n
        base = self.rank_off[lay.stage_ranks(s)][:, :, None]
        lay.view(src, s)[:, :, at:] = base + (st[lk.src_block[mine]] + lk.src_row[mine])
        lay.view(dst, s)[:, :, at:] = base + (st[lk.dst_block[mine]] + lk.dst_row[mine])
        lay.view(ekind, s)[:, :, at:] = lk.kind[mine]
