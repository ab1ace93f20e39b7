"""What every rank holds in memory, by pipeline stage: weights, KV cache, activations.

Every rank of a stage holds the same shard sizes (only which experts, heads and
vocabulary rows differ), and every block of a stage holds the same weights, so each part
is read off one block's template, op by op, through the op registry: the weights its
nodes hold (:attr:`OpSpec.resident`), the largest inputs and outputs one compute op has
live (:attr:`OpSpec.traffic`), the largest message it sends or receives. A new op is
counted by its registry entry alone. The graph carries the result
(:attr:`dagen.graph.pool.Pool.residency`); the cost model adds the runtime's own
allowance and weighs it against capacity (:mod:`dagen.cost.memory`). Formulas and
assumptions: docs/cost-model.md ("Memory").

Example:
    >>> res = residency(schedule, dims, workload, replicas=2, tied=False)  # doctest: +SKIP
    >>> res.weights_bytes.shape == (schedule.pp,)  # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.graph.codes import Kind
from dagen.graph.dims import Dims
from dagen.graph.ops import OPS, Op
from dagen.graph.schedule import Schedule, StageBlocks
from dagen.graph.templates import Template
from dagen.graph.traffic import kv_token_bytes
from dagen.plan.model import Workload

__all__ = ["Residency", "residency"]

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class Residency:
    """Bytes one rank of each pipeline stage holds (int64 ``[pp]`` arrays)."""

    weights_bytes: I64
    routed_bytes: I64
    """The routed experts' share of ``weights_bytes`` (read only when a token arrives)."""
    kv_bytes: I64
    """The KV cache of every sequence of the rank's replica, for the stage's layers."""
    activation_bytes: I64
    """The residual stream plus the largest op's inputs and outputs of one micro-batch,
    times the micro-batches in flight at once (two under two-batch overlap)."""
    message_bytes: I64
    """The largest message the rank sends or receives (its staging buffers hold two)."""
    kv_seq_bytes: I64
    """The KV cache one sequence holds on the rank (``kv_bytes`` per sequence)."""


def _per_op(d: Dims, present: set[int]) -> tuple[I64, I64, I64]:
    """Per op code: resident weight bytes, live activation bytes (compute ops), message
    bytes (communication ops), for the ops ``present`` (0 for the others)."""
    weights = np.zeros(len(OPS), dtype=np.int64)
    live = np.zeros(len(OPS), dtype=np.int64)
    message = np.zeros(len(OPS), dtype=np.int64)
    for code in sorted(present):
        op = OPS[code]
        spec = op.spec
        if spec.resident is not None:
            weights[int(op)] = spec.resident(d)
        if spec.traffic is not None:
            t = spec.traffic(d)
            live[int(op)] = int(t.act_in + t.act_out)
        if spec.kind is not Kind.COMPUTE:
            message[int(op)] = spec.cost(d).nbytes
    return weights, live, message


def _program(sched: Schedule, stage: int) -> tuple[I64, I64]:
    """(op, kind) of stage ``stage``'s whole program for its first (step, micro-batch):
    its first block's template, or all its pieces' rows when a schedule cuts a block
    into pieces (two-batch overlap)."""
    st = sched.stages[stage]
    same = np.flatnonzero((st.step == st.step[0]) & (st.mb == st.mb[0]))
    parts: list[Template] = [sched.templates[int(t)] for t in st.template[same]]
    return (
        np.concatenate([t.op for t in parts]).astype(np.int64),
        np.concatenate([t.kind for t in parts]).astype(np.int64),
    )


def _in_flight(st: StageBlocks) -> int:
    """Most micro-batches of the stage's first step begun and not yet finished at once in
    its issue order: 1 when they run one after another, 2 under two-batch overlap (both
    halves' activations are live)."""
    mb = st.mb[st.step == st.step[0]].astype(np.int64)
    if mb.size == 0:
        return 1
    pos = np.arange(mb.shape[0])
    first = np.full(int(mb.max()) + 1, mb.shape[0], dtype=np.int64)
    last = np.full(first.shape[0], -1, dtype=np.int64)
    np.minimum.at(first, mb, pos)
    np.maximum.at(last, mb, pos)
    used = last >= 0
    opened = np.bincount(first[used], minlength=mb.shape[0] + 1)
    closed = np.bincount(last[used] + 1, minlength=mb.shape[0] + 1)
    return max(int(np.max(np.cumsum(opened - closed))), 1)


def _stage(
    program: tuple[I64, I64], d: Dims, tables: tuple[I64, I64, I64], tied: bool
) -> tuple[int, ...]:
    """(weights, routed, live activations, largest message, layers) of one block."""
    weights, live, message = tables
    ops, kinds = program
    held = int(weights[ops].sum())
    if tied and bool(np.any(ops == Op.EMBED)) and bool(np.any(ops == Op.LM_HEAD)):
        held -= int(weights[Op.LM_HEAD])  # a tied head shares the embedding's weights
    routed = int(weights[Op.MOE_EXPERT]) * int(np.count_nonzero(ops == Op.MOE_EXPERT))
    compute = ops[kinds == Kind.COMPUTE]
    act = round(d.stream * d.h * d.e) + int(live[compute].max(initial=0))
    comm = ops[kinds != Kind.COMPUTE]
    layers = int(np.count_nonzero(ops == Op.ATTN_CORE))
    return held, routed, act, int(message[comm].max(initial=0)), layers


def residency(sched: Schedule, d: Dims, w: Workload, *, replicas: int, tied: bool) -> Residency:
    """What one rank of each stage holds, read off the first block of each stage.

    Args:
        sched: The pool's schedule (its templates and blocks).
        d: The per-rank sizes the templates were priced from.
        w: The workload (its sequences and context set the KV cache).
        replicas: Attention data-parallel replicas (the batch splits over them).
        tied: The input embedding and the LM head share weights.
    """
    firsts = [_program(sched, s) for s in range(sched.pp)]
    tables = _per_op(d, {int(o) for ops, _ in firsts for o in np.unique(ops)})
    seqs = w.batch // replicas
    # A serving request holds, on average over its life, its prompt and half its output
    # (paged KV: blocks are taken as tokens arrive); a static batch holds all of it.
    tokens = w.kv_context / d.cp  # serving: E[I] + E[O²]/(2·E[O]); static: I + O
    rows = []
    for first, st in zip(firsts, sched.stages, strict=True):
        held, routed, act, message, layers = _stage(first, d, tables, tied)
        per_seq = round(tokens * layers * kv_token_bytes(d))
        rows.append((held, routed, seqs * per_seq, act * _in_flight(st), message, per_seq))
    table: I64 = np.asarray(rows, dtype=np.int64).reshape(-1, 6)
    cols = [np.ascontiguousarray(table[:, i]) for i in range(6)]
    return Residency(
        weights_bytes=cols[0],
        routed_bytes=cols[1],
        kv_bytes=cols[2],
        activation_bytes=cols[3],
        message_bytes=cols[4],
        kv_seq_bytes=cols[5],
    )
