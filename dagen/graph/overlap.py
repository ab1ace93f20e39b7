"""Two-batch overlap: two micro-batches interleaved so that one's all-to-all hides behind
the other's compute.

DeepSeek's inference system splits a batch into two micro-batches and runs them
alternately, "hiding the communication cost of one micro-batch behind the computation of
the other" (deepseek-ai/open-infra-index, 202502OpenSourceWeek/
day_6_one_more_thing_deepseekV3R1_inference_system_overview.md, "Computation-
Communication Overlapping"); SGLang ships the same as ``--enable-two-batch-overlap``
(lm-sys blog 2025-05-05-large-scale-ep.md, "Two-batch Overlap").

:func:`two_batch` is a schedule pass (:mod:`dagen.graph.schedules`): it takes the plain
schedule (:func:`~dagen.graph.schedules.decode_chain`) and

1. cuts every template after each MoE dispatch and combine (:func:`split_template`), so
   a block becomes *pieces*: attention up to the dispatch, experts up to the combine,
   the rest of the layer and the next layer's attention up to its dispatch, …;
2. pairs consecutive micro-batches ``(2j, 2j + 1)`` of one step and issues their pieces
   alternately, ``A0 B0 A1 B1 …`` (the ``chunk`` column is the piece);
3. joins one micro-batch's pieces by the template's own data edges (now links between
   blocks) and consecutive pairs by a stream-order link; nothing orders ``A_i`` before
   ``B_i`` but the program order of each stream.

Each rank runs its compute and communication streams in program order
(docs/cost-model.md, "Schedule"), so while ``B_i``'s attention computes, ``A_i``'s
dispatch moves; while ``A_{i+1}``'s experts compute, ``B_i``'s dispatch moves.

NOTE: rows and blocks. Piece ``i`` of base block ``b`` (pair position ``q`` of a pair of
size ``g`` whose first new block is ``G``) is new block ``G + i·g + q``; base row ``r``
of a template cut at row bounds ``β`` is piece ``i = max{i : β_i ≤ r}``, row ``r − β_i``.
Example: a pair of 3-piece blocks becomes A0 B0 A1 B1 A2 B2, and row 7 of a template
with bounds (0, 5, 9, 12) is row 2 of piece 1.

>>> from dagen.graph.overlap import two_batch
>>> sched = two_batch(programs, workload)  # doctest: +SKIP
>>> sched.stages[0].chunk[:4].tolist()  # doctest: +SKIP
[0, 0, 1, 1]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.graph.codes import EdgeKind, Kind
from dagen.graph.ops import Op
from dagen.graph.schedule import Links, Pairs, Schedule, StageBlocks
from dagen.graph.schedules import decode_chain, slots_by_order
from dagen.graph.templates import NONE, Programs, Template
from dagen.plan.model import Workload

__all__ = ["CUT_OPS", "interleave", "split_template", "two_batch"]

I16 = npt.NDArray[np.int16]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

NAME = "two-batch-overlap"
CUT_OPS = (Op.MOE_DISPATCH, Op.MOE_COMBINE)
"""A template is cut after every row of these ops (the expert-parallel all-to-alls)."""


def _i32(values: npt.ArrayLike) -> I32:
    return np.ascontiguousarray(values, dtype=np.int32)


def split_template(t: Template) -> tuple[list[Template], I64]:
    """``t`` cut after each row of :data:`CUT_OPS`: its pieces and their row bounds
    (``[pieces + 1]``, from 0 to ``t.size``). Edges inside a piece stay in it; the
    others (from an earlier piece to a later one) become the schedule's links."""
    cuts = np.flatnonzero(np.isin(t.op, np.array([int(o) for o in CUT_OPS]))) + 1
    bounds = np.unique(np.concatenate([[0], cuts, [t.size]])).astype(np.int64)
    pieces = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        inside = (t.esrc >= lo) & (t.esrc < hi) & (t.edst >= lo) & (t.edst < hi)
        kind = t.kind[lo:hi].copy()
        pieces.append(
            Template(
                op=t.op[lo:hi].copy(), kind=kind, layer=t.layer[lo:hi].copy(),
                slot=t.slot[lo:hi].copy(), tmpl=t.tmpl[lo:hi].copy(), dim=t.dim[lo:hi].copy(),
                carry=t.carry[lo:hi].copy(), esrc=_i32(t.esrc[inside] - lo),
                edst=_i32(t.edst[inside] - lo),
                embed=t.embed - lo if lo <= t.embed < hi else NONE,
                sample=t.sample - lo if lo <= t.sample < hi else NONE,
                send_rows=np.flatnonzero(kind == Kind.SEND), recv_rows=np.flatnonzero(kind == Kind.RECV),
            )
        )  # fmt: skip
    return pieces, bounds


class _Map:
    """Where a base schedule's (stage, block, row) lands in the interleaved one."""

    def __init__(self, base: Schedule) -> None:
        splits = [split_template(t) for t in base.templates]
        self.pieces = np.array([len(p) for p, _ in splits], dtype=np.int64)
        self.first_tid = np.concatenate([[0], np.cumsum(self.pieces)]).astype(np.int64)
        self.templates = tuple(p for ps, _ in splits for p in ps)
        sizes = np.array([t.size for t in base.templates], dtype=np.int64)
        self.row0 = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        rows = [np.arange(t.size, dtype=np.int64) for t in base.templates]
        piece_of = [_piece(b, r) for (_, b), r in zip(splits, rows, strict=True)]
        self.piece_of = np.concatenate(piece_of).astype(np.int64)
        """Per row of every base template (``row0`` offsets), the piece it falls in."""
        self.local = np.concatenate(
            [r - b[q] for (_, b), r, q in zip(splits, rows, piece_of, strict=True)]
        ).astype(np.int64)
        """Per row of every base template, its row within its piece."""
        self.splits = splits
        self.edges = [(t.esrc.astype(np.int64), t.edst.astype(np.int64)) for t in base.templates]
        """Per base template, its data edges (source rows, target rows)."""
        self.new0: list[I64] = []
        """Per stage, each base block's first piece's new block index."""
        self.stride: list[I64] = []
        """Per stage, each base block's pair size (new blocks between its pieces)."""

    def rows(self, stage: I32, block: I32, row: I32, base: Schedule) -> tuple[I32, I32]:
        """(new block, new row) of base rows."""
        tid = np.zeros(block.shape[0], dtype=np.int64)
        new0, stride = np.zeros_like(tid), np.zeros_like(tid)
        for s in range(base.pp):
            at = stage == s
            tid[at] = base.stages[s].template[block[at]]
            new0[at], stride[at] = self.new0[s][block[at]], self.stride[s][block[at]]
        g = self.row0[tid] + row
        return _i32(new0 + self.piece_of[g] * stride), _i32(self.local[g])


def _piece(bounds: I64, rows: I64) -> I64:
    """The piece each of ``rows`` falls in, for pieces cut at row ``bounds``."""
    out: I64 = np.searchsorted(bounds, rows, side="right") - 1
    return out


def _pairs_of(st: StageBlocks) -> tuple[I64, I64, I64]:
    """Per base block: (pair id, position in its pair, pair size). Consecutive blocks of
    one step and one template pair up two by two; an odd one out runs alone."""
    n = st.size
    k = np.arange(n, dtype=np.int64)
    new_run = np.ones(n, dtype=np.bool_)
    new_run[1:] = (st.step[1:] != st.step[:-1]) | (st.template[1:] != st.template[:-1])
    run0 = np.maximum.accumulate(np.where(new_run, k, 0))
    run_id = np.cumsum(new_run) - 1
    run_len = np.bincount(run_id)[run_id]
    pos_in_run = k - run0
    pos = pos_in_run % 2
    size = np.where(pos_in_run - pos + 1 < run_len, 2, 1)
    pair = np.cumsum(pos == 0) - 1
    return pair.astype(np.int64), pos, size.astype(np.int64)


def _stage(m: _Map, st: StageBlocks) -> StageBlocks:
    """One stage's interleaved blocks (fills ``m.new0``/``m.stride`` for it)."""
    pair, pos, size = _pairs_of(st)
    npieces = m.pieces[st.template]
    per_pair = np.zeros(int(pair.max(initial=-1)) + 1, dtype=np.int64)
    np.add.at(per_pair, pair, npieces)
    pair0 = np.concatenate([[0], np.cumsum(per_pair)])[:-1]
    m.new0.append(pair0[pair] + pos)
    m.stride.append(size)
    total = int(npieces.sum())
    rep = np.repeat(np.arange(st.size), npieces)
    piece = np.arange(total) - np.repeat(np.cumsum(npieces) - npieces, npieces)
    idx = m.new0[-1][rep] + piece * size[rep]
    out = [np.empty(total, dtype=np.int64) for _ in range(4)]
    values = (m.first_tid[st.template[rep]] + piece, st.mb[rep], st.step[rep], piece)
    for col, value in zip(out, values, strict=True):
        col[idx] = value
    return StageBlocks(template=_i32(out[0]), mb=out[1].astype(np.int16),
                       step=out[2].astype(np.int16), chunk=out[3].astype(np.int16),
                       slot=np.zeros(total, dtype=np.int64))  # fmt: skip


def _cross_links(m: _Map, s: int, st: StageBlocks) -> list[tuple[I64, ...]]:
    """Data links for every template edge that crosses pieces, per base block."""
    parts: list[tuple[I64, ...]] = []
    for tid in np.unique(st.template).tolist():
        blocks = np.flatnonzero(st.template == tid)
        bounds = m.splits[tid][1]
        src_t, dst_t = m.edges[tid]
        ps, pd = _piece(bounds, src_t), _piece(bounds, dst_t)
        cross = ps != pd
        if not cross.any() or blocks.size == 0:
            continue
        ps, pd, src_t, dst_t = ps[cross], pd[cross], src_t[cross], dst_t[cross]
        b0, stride = m.new0[s][blocks][:, None], m.stride[s][blocks][:, None]
        shape = (blocks.shape[0], ps.shape[0])
        parts.append((
            np.full(shape, s).ravel(), (b0 + ps * stride).ravel(),
            np.broadcast_to(src_t - bounds[ps], shape).ravel(), (b0 + pd * stride).ravel(),
            np.broadcast_to(dst_t - bounds[pd], shape).ravel(), np.full(shape, int(EdgeKind.DATA)).ravel(),
        ))  # fmt: skip
    return parts


def _pair_order(m: _Map, s: int, old: StageBlocks, new: StageBlocks) -> tuple[I64, ...]:
    """Stream-order links from each pair's last new block to the next pair's first."""
    pair = _pairs_of(old)[0]
    last = np.cumsum(np.bincount(pair, weights=m.pieces[old.template])).astype(np.int64)
    src, dst = last[:-1] - 1, last[:-1]
    sizes = np.array([t.size for t in m.templates], dtype=np.int64)
    n = src.shape[0]
    return (np.full(n, s), src, sizes[new.template[src]] - 1, dst, np.zeros_like(dst),
            np.full(n, int(EdgeKind.ORDER)))  # fmt: skip


def interleave(base: Schedule) -> Schedule:
    """``base`` with every pair of consecutive micro-batches of a step interleaved piece by
    piece (module docstring). Pairs and data links follow their rows; stream-order links
    join consecutive pairs; slots are recomputed (:func:`slots_by_order`)."""
    m = _Map(base)
    stages = [_stage(m, st) for st in base.stages]
    p = base.pairs
    sb, sr = m.rows(p.src_stage, p.src_block, p.src_row, base)
    db, dr = m.rows(p.dst_stage, p.dst_block, p.dst_row, base)
    pairs = Pairs(src_stage=p.src_stage, src_block=sb, src_row=sr, dst_stage=p.dst_stage,
                  dst_block=db, dst_row=dr)  # fmt: skip
    lk = base.links
    data = lk.kind == EdgeKind.DATA
    ls, lb_s, lr_s = lk.stage[data], lk.src_block[data], lk.src_row[data]
    lsb, lsr = m.rows(ls, lb_s, lr_s, base)
    ldb, ldr = m.rows(ls, lk.dst_block[data], lk.dst_row[data], base)
    parts: list[tuple[I64, ...]] = [
        (ls.astype(np.int64), lsb.astype(np.int64), lsr.astype(np.int64),
         ldb.astype(np.int64), ldr.astype(np.int64), lk.kind[data].astype(np.int64))
    ]  # fmt: skip
    for s, (old, new) in enumerate(zip(base.stages, stages, strict=True)):
        parts += _cross_links(m, s, old)
        if np.any((lk.kind == EdgeKind.ORDER) & (lk.stage == s)):
            parts.append(_pair_order(m, s, old, new))
    cols = [np.concatenate([q[i] for q in parts]) for i in range(6)]
    links = Links(stage=_i32(cols[0]), src_block=_i32(cols[1]), src_row=_i32(cols[2]),
                  dst_block=_i32(cols[3]), dst_row=_i32(cols[4]), kind=cols[5].astype(np.uint8))  # fmt: skip
    slots = slots_by_order([(st.template, st.mb, st.step) for st in stages], pairs)
    final = tuple(
        StageBlocks(template=st.template, mb=st.mb, step=st.step, chunk=st.chunk, slot=sl)
        for st, sl in zip(stages, slots, strict=True)
    )
    return Schedule(name=NAME, templates=m.templates, stages=final, pairs=pairs, links=links)


def two_batch(programs: Programs, workload: Workload) -> Schedule:
    """The plan's schedule (prefill pipeline or decode chain) with two-batch overlap."""
    steps = workload.unrolled_steps if workload.decoding else 1
    return interleave(decode_chain(programs, workload.micro_batches, steps))
