"""Schedule passes: functions that lay a stage's blocks out and pair them.

Each returns a :class:`~dagen.graph.schedule.Schedule` (the data, documented there).
:func:`decode_chain` and :func:`pipeline` are the schedules the builder uses today;
:func:`reorder` issues any schedule's blocks in another order, with slots recomputed by
:func:`slots_by_order`. Two-batch overlap is :func:`dagen.graph.overlap.two_batch`;
1F1B or interleaved virtual stages would be further functions; the expansion and the
checks read only the schedule.

Example:
    >>> from dagen.graph.schedules import decode_chain
    >>> sched = decode_chain(programs, micro_batches=2, steps=2)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.errors import GraphError
from dagen.graph.algo.arrays import csr, frontiers
from dagen.graph.codes import EdgeKind
from dagen.graph.schedule import Links, Pairs, Schedule, StageBlocks
from dagen.graph.templates import Carry, Programs, Template

__all__ = ["decode_chain", "pipeline", "reorder", "slots_by_order"]

I16 = npt.NDArray[np.int16]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


def _i32(values: npt.ArrayLike) -> I32:
    return np.ascontiguousarray(values, dtype=np.int32)


def slots_by_order(stages: list[tuple[I32, I16, I16]], pairs: Pairs) -> list[I64]:
    """Slots for blocks given only their order and pairing: each block one after the
    stage's previous block and one after the block of every send it receives
    (the longest path in the block graph). For schedules without a closed form.

    Raises:
        GraphError: the pairing and the issue order contradict each other (a cycle).
    """
    counts = [b[0].shape[0] for b in stages]
    base = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(base[-1])
    src = [base[s] + np.arange(1, c) - 1 for s, c in enumerate(counts) if c > 1]
    dst = [base[s] + np.arange(1, c) for s, c in enumerate(counts) if c > 1]
    src.append(base[pairs.src_stage] + pairs.src_block)
    dst.append(base[pairs.dst_stage] + pairs.dst_block)
    s_all, d_all = np.concatenate(src).astype(np.int64), np.concatenate(dst).astype(np.int64)
    offsets, targets = csr(d_all, s_all, n)
    indeg = np.bincount(d_all, minlength=n)
    slot = np.full(n, -1, dtype=np.int64)
    for depth, frontier in enumerate(
        frontiers(offsets, targets, indeg, np.flatnonzero(indeg == 0))
    ):
        slot[frontier] = depth
    if np.any(slot < 0):
        raise GraphError("schedule: the issue order and the pairing form a cycle")
    return [slot[base[s] : base[s + 1]] for s in range(len(stages))]


def _ports(stage: int, pp: int, step: int, steps: int) -> tuple[Carry | None, Carry | None]:
    """What stage ``stage`` receives and sends at ``step`` of the decode chain."""
    recv: Carry | None = Carry.ACTIVATIONS if stage > 0 else None
    send: Carry | None = Carry.ACTIVATIONS if stage < pp - 1 else None
    if pp > 1 and steps > 1:
        if stage == 0 and step > 0:  # step t-1's sampled tokens arrive from the last stage
            recv = Carry.TOKENS
        if stage == pp - 1 and step < steps - 1:  # every step but the last sends its tokens
            send = Carry.TOKENS
    return recv, send


def decode_chain(programs: Programs, micro_batches: int, steps: int) -> Schedule:
    """Every micro-batch of every step through every stage, step by step (module NOTE).

    With ``pp > 1`` the last stage sends each step's tokens to the first stage for the
    next step; with one stage a data edge joins ``sample`` of (t, m) to ``embed`` of
    (t + 1, m) on the rank. Consecutive blocks of a rank are joined by an order edge
    (none on a one-stage chain with one micro-batch: the chain already orders them).
    """
    pp, m = programs.pp, micro_batches
    k = np.arange(steps * m, dtype=np.int64)
    step, mb = k // m, k % m
    stages, ids = [], []
    for s in range(pp):
        per_step = np.array([programs.get(s, *_ports(s, pp, t, steps)) for t in range(steps)])
        tmpl = per_step[step]
        ids.append(tmpl)
        stages.append(
            StageBlocks(
                template=_i32(tmpl), mb=mb.astype(np.int16), step=step.astype(np.int16),
                chunk=np.zeros(k.shape[0], dtype=np.int16), slot=step * (m + pp) + mb + s,
            )
        )  # fmt: skip
    templates = tuple(programs.templates)
    pairs = _chain_pairs(templates, ids, m, steps)
    links = _chain_links(templates, ids, m, steps)
    return Schedule(name="decode-chain" if steps > 1 else "pipeline", templates=templates,
                    stages=tuple(stages), pairs=pairs, links=links)  # fmt: skip


def pipeline(programs: Programs, micro_batches: int) -> Schedule:
    """Prefill: every micro-batch through every stage in order (GPipe's forward)."""
    return decode_chain(programs, micro_batches, 1)


def _row(templates: tuple[Template, ...], ids: I64, which: str) -> I64:
    """A send or recv row of each block's template (each has exactly one where used)."""
    per = np.array([(getattr(t, which).tolist() or [-1])[0] for t in templates], dtype=np.int64)
    return per[ids]


def _chain_pairs(templates: tuple[Template, ...], ids: list[I64], m: int, steps: int) -> Pairs:
    pp, n = len(ids), ids[0].shape[0]
    cols: list[list[I64]] = [[], [], [], [], [], []]

    def add(s: int, blocks: I64, d: int, dst_blocks: I64) -> None:
        for col, values in zip(
            cols,
            (np.full(blocks.shape[0], s), blocks, _row(templates, ids[s][blocks], "send_rows"),
             np.full(blocks.shape[0], d), dst_blocks, _row(templates, ids[d][dst_blocks], "recv_rows")),
            strict=True,
        ):  # fmt: skip
            col.append(values)

    blocks = np.arange(n, dtype=np.int64)
    for s in range(pp - 1):
        add(s, blocks, s + 1, blocks)
    if pp > 1 and steps > 1:
        chain = blocks[: (steps - 1) * m]
        add(pp - 1, chain, 0, chain + m)
    cat = [_i32(np.concatenate(c)) if c else _i32([]) for c in cols]
    return Pairs(src_stage=cat[0], src_block=cat[1], src_row=cat[2], dst_stage=cat[3],
                 dst_block=cat[4], dst_row=cat[5])  # fmt: skip


def _chain_links(templates: tuple[Template, ...], ids: list[I64], m: int, steps: int) -> Links:
    pp, n = len(ids), ids[0].shape[0]
    sizes = np.array([t.size for t in templates], dtype=np.int64)
    on_rank = pp == 1 and steps > 1
    cols: list[list[I64]] = [[], [], [], [], [], []]
    for s in range(pp):
        parts = []
        if n > 1 and not (on_rank and m == 1):  # stream order: block k-1 ends before k
            k = np.arange(1, n, dtype=np.int64)
            parts.append((k - 1, sizes[ids[s][k - 1]] - 1, k, np.zeros_like(k), EdgeKind.ORDER))
        if on_rank:  # the decode chain on one stage: sample of (t, m) → embed of (t + 1, m)
            k = np.arange((steps - 1) * m, dtype=np.int64)
            embed = np.array([t.embed for t in templates], dtype=np.int64)
            sample = np.array([t.sample for t in templates], dtype=np.int64)
            parts.append((k, sample[ids[s][k]], k + m, embed[ids[s][k + m]], EdgeKind.DATA))
        for src, srow, dst, drow, kind in parts:
            for col, values in zip(
                cols,
                (np.full(src.shape[0], s), src, srow, dst, drow, np.full(src.shape[0], kind)),
                strict=True,
            ):
                col.append(values)
    cat = [np.concatenate(c) if c else np.zeros(0, np.int64) for c in cols]
    return Links(stage=_i32(cat[0]), src_block=_i32(cat[1]), src_row=_i32(cat[2]),
                 dst_block=_i32(cat[3]), dst_row=_i32(cat[4]), kind=cat[5].astype(np.uint8))  # fmt: skip


def reorder(sched: Schedule, orders: list[npt.ArrayLike], name: str = "") -> Schedule:
    """``sched`` with each stage's blocks issued in a new order.

    ``orders[s]`` lists stage ``s``'s old block indices in their new issue order. The
    pairing and the data links follow their blocks; stream-order links are rebuilt for
    the new order; slots are recomputed from the order and the pairing
    (:func:`slots_by_order`).

    >>> flipped = reorder(sched, [[0, 1], [1, 0]])  # doctest: +SKIP
    >>> flipped.stages[1].mb.tolist()  # doctest: +SKIP
    [1, 0]
    """
    order = [np.asarray(o, dtype=np.int64) for o in orders]
    inv = [np.argsort(o) for o in order]
    p, lk = sched.pairs, sched.links

    def moved(stage: I32, block: I32) -> I32:
        out = np.empty(block.shape[0], dtype=np.int32)
        for s in range(sched.pp):
            at = stage == s
            out[at] = inv[s][block[at]]
        return out

    pairs = Pairs(src_stage=p.src_stage, src_block=moved(p.src_stage, p.src_block), src_row=p.src_row,
                  dst_stage=p.dst_stage, dst_block=moved(p.dst_stage, p.dst_block), dst_row=p.dst_row)  # fmt: skip
    data = lk.kind == EdgeKind.DATA
    kept = Links(stage=lk.stage[data], src_block=moved(lk.stage[data], lk.src_block[data]),
                 src_row=lk.src_row[data], dst_block=moved(lk.stage[data], lk.dst_block[data]),
                 dst_row=lk.dst_row[data], kind=lk.kind[data])  # fmt: skip
    cols = [
        (st.template[o], st.mb[o], st.step[o]) for st, o in zip(sched.stages, order, strict=True)
    ]
    slots = slots_by_order(cols, pairs)
    stages = tuple(
        StageBlocks(template=t, mb=m, step=st, chunk=old.chunk[o], slot=sl)
        for (t, m, st), old, o, sl in zip(cols, sched.stages, order, slots, strict=True)
    )
    return Schedule(name=name or f"{sched.name}-reordered", templates=sched.templates,
                    stages=stages, pairs=pairs, links=_order_links(sched.templates, stages, kept))  # fmt: skip


def _order_links(
    templates: tuple[Template, ...], stages: tuple[StageBlocks, ...], data: Links
) -> Links:
    """Stream-order links between consecutive blocks of every stage, then ``data``."""
    sizes = np.array([t.size for t in templates], dtype=np.int64)
    parts = []
    for s, st in enumerate(stages):
        k = np.arange(1, st.size, dtype=np.int64)
        parts.append(
            (np.full(k.shape[0], s), k - 1, sizes[st.template[k - 1]] - 1, k, np.zeros_like(k))
        )
    cols = [
        np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64) for i in range(5)
    ]
    n = cols[0].shape[0]
    return Links(
        stage=_i32(np.concatenate([cols[0], data.stage])),
        src_block=_i32(np.concatenate([cols[1], data.src_block])),
        src_row=_i32(np.concatenate([cols[2], data.src_row])),
        dst_block=_i32(np.concatenate([cols[3], data.dst_block])),
        dst_row=_i32(np.concatenate([cols[4], data.dst_row])),
        kind=np.concatenate([np.full(n, EdgeKind.ORDER, np.uint8), data.kind]),
    )
