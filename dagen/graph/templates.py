"""Per-stage templates: the ops one rank issues for one micro-batch, and their edges.

Every rank of a pipeline stage runs the same program for each micro-batch (and decode
step); only its group ids, peers and hosted experts differ, and those are looked up per
rank when the template is expanded (:mod:`dagen.graph.expand`). A template is a few
hundred rows at most, built here with plain Python loops over layers and ops.

A stage's program can change with the decode step: with ``pp > 1`` the first stage
receives the previous step's sampled tokens from the last stage from step 1 on, and the
last stage sends them from every step but the final one. :func:`stage_segments` returns,
per stage, the templates and the step ranges they cover.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from dagen.graph.codes import Kind
from dagen.graph.dims import Dims
from dagen.graph.ops import OP_DIM, OP_KIND, Op
from dagen.graph.pricing import PriceTable
from dagen.plan.model import Moe

__all__ = ["Peer", "Segment", "StageContext", "Template", "stage_segments"]

NONE = -1
"""Marks an absent slot, group dimension or peer in a template row."""


class Peer(enum.IntEnum):
    """Which stage a send or recv talks to, relative to its own."""

    NEXT = 0
    PREV = 1
    FIRST = 2
    LAST = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """One rank's program for one micro-batch: rows in issue order, local data edges."""

    op: npt.NDArray[np.uint8]
    kind: npt.NDArray[np.uint8]
    layer: npt.NDArray[np.int16]
    slot: npt.NDArray[np.int16]
    """Expert slot on the rank (column of :func:`dagen.mesh.expert_placement`), or -1."""
    tmpl: npt.NDArray[np.int32]
    dim: npt.NDArray[np.int8]
    """GroupKind of a collective row, else -1."""
    peer: npt.NDArray[np.int8]
    """:class:`Peer` of a send/recv row, else -1."""
    esrc: npt.NDArray[np.int32]
    edst: npt.NDArray[np.int32]
    embed: int = NONE
    """Row of ``embed`` (first stage), else -1."""
    sample: int = NONE
    """Row of ``sample`` (last stage), else -1."""

    @property
    def size(self) -> int:
        return int(self.op.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.esrc.shape[0])

    @property
    def sends(self) -> bool:
        """Whether the last row is a send (the only place a template sends)."""
        return self.size > 0 and int(self.kind[-1]) == Kind.SEND


@dataclass(frozen=True, slots=True)
class Segment:
    """A template and the decode steps ``[t0, t1)`` a stage runs it for."""

    template: Template
    t0: int
    t1: int


@dataclass(slots=True)
class _Builder:
    costs: PriceTable
    rows: list[tuple[int, int, int, int, int, int, int]] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)

    def add(
        self,
        op: Op,
        deps: Sequence[int] = (),
        *,
        layer: int = NONE,
        slot: int = NONE,
        peer: Peer | None = None,
        tokens: bool = False,
    ) -> int:
        """Append a row depending on ``deps`` (negative entries ignored); return its index."""
        i = len(self.rows)
        kind, dim = int(OP_KIND[op]), int(OP_DIM[op])
        tmpl = self.costs.id(op, tokens=tokens)
        p = NONE if peer is None else int(peer)
        self.rows.append((int(op), kind, layer, slot, tmpl, dim, p))
        self.edges.extend((d, i) for d in dict.fromkeys(deps) if d >= 0)
        return i

    def freeze(self) -> Template:
        cols = np.array(self.rows, dtype=np.int64).reshape(-1, 7).T
        e = np.array(self.edges, dtype=np.int32).reshape(-1, 2).T
        ops = cols[0].tolist()
        return Template(
            op=cols[0].astype(np.uint8),
            kind=cols[1].astype(np.uint8),
            layer=cols[2].astype(np.int16),
            slot=cols[3].astype(np.int16),
            tmpl=cols[4].astype(np.int32),
            dim=cols[5].astype(np.int8),
            peer=cols[6].astype(np.int8),
            esrc=np.ascontiguousarray(e[0]),
            edst=np.ascontiguousarray(e[1]),
            embed=ops.index(Op.EMBED) if Op.EMBED in ops else NONE,
            sample=ops.index(Op.SAMPLE) if Op.SAMPLE in ops else NONE,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StageContext:
    """What the templates need from the plan: sizes, degrees and the layer split."""

    dims: Dims
    costs: PriceTable
    moe: Moe | None
    layers: list[range]
    ep: int
    etp: int
    sp: bool
    """Sequence parallelism in effect (requested and tp > 1)."""


def _attention(b: _Builder, c: StageContext, layer: int, x: int) -> int:
    d = c.dims
    n = b.add(Op.ATTN_NORM, [x], layer=layer)
    if c.sp:
        n = b.add(Op.ATTN_ALLGATHER, [n], layer=layer)
    q = b.add(Op.ATTN_QKV, [n], layer=layer)
    if d.cp > 1 and d.prefill:  # gather the sequence's K/V before scoring
        q = b.add(Op.ATTN_CP_ALLGATHER, [q], layer=layer)
    o = b.add(Op.ATTN_CORE, [q], layer=layer)
    if d.cp > 1 and not d.prefill:  # merge the CP shards' partial softmax results
        o = b.add(Op.ATTN_CP_ALLGATHER, [o], layer=layer)
    o = b.add(Op.ATTN_OUT, [o], layer=layer)
    if d.tp > 1:
        o = b.add(Op.ATTN_REDUCESCATTER if c.sp else Op.ATTN_ALLREDUCE, [o], layer=layer)
    return b.add(Op.ATTN_RESIDUAL, [x, o], layer=layer)


def _dense(b: _Builder, c: StageContext, layer: int, x: int) -> int:
    n = b.add(Op.FFN_NORM, [x], layer=layer)
    if c.sp:
        n = b.add(Op.FFN_ALLGATHER, [n], layer=layer)
    u = b.add(Op.FFN_UP, [n], layer=layer)
    o = b.add(Op.FFN_DOWN, [u], layer=layer)
    if c.dims.tp > 1:
        o = b.add(Op.FFN_REDUCESCATTER if c.sp else Op.FFN_ALLREDUCE, [o], layer=layer)
    return b.add(Op.FFN_RESIDUAL, [x, o], layer=layer)


def _moe(b: _Builder, c: StageContext, layer: int, x: int) -> int:
    n = b.add(Op.MOE_NORM, [x], layer=layer)
    k = b.add(Op.MOE_TOPK, [b.add(Op.MOE_ROUTER, [n], layer=layer)], layer=layer)
    into = [b.add(Op.MOE_DISPATCH, [n, k], layer=layer)] if c.ep > 1 else [n, k]
    out = [b.add(Op.MOE_EXPERT, into, layer=layer, slot=q) for q in range(c.dims.slots)]
    if c.etp > 1:
        out = [b.add(Op.MOE_ETP_REDUCE, out, layer=layer)]
    if c.ep > 1:
        out = [b.add(Op.MOE_COMBINE, out, layer=layer)]
    if c.dims.shared_ffn:
        out.append(_shared(b, c, layer, n))
    return b.add(Op.MOE_RESIDUAL, [x, *out], layer=layer)


def _shared(b: _Builder, c: StageContext, layer: int, n: int) -> int:
    """The shared expert, a TP-split MLP beside the routed ones; returns its output row.

    Under SP it gathers the ``T/tp`` stream rows first and reduce-scatters its output
    back to them, as Megatron-Core's shared-expert MLP does with ``sequence_parallel``
    (NVIDIA/Megatron-LM, megatron/core/transformer/moe/shared_experts.py).
    """
    if c.sp:
        n = b.add(Op.MOE_SHARED_ALLGATHER, [n], layer=layer)
    s = b.add(Op.MOE_SHARED, [n], layer=layer)
    if c.dims.tp == 1:
        return s
    coll = Op.MOE_SHARED_REDUCESCATTER if c.sp else Op.MOE_SHARED_ALLREDUCE
    return b.add(coll, [s], layer=layer)


def _layer(b: _Builder, c: StageContext, layer: int, x: int) -> int:
    x = _attention(b, c, layer, x)
    if c.moe is not None and c.moe.is_moe_layer(layer):
        return _moe(b, c, layer, x)
    return _dense(b, c, layer, x)


def _template(
    c: StageContext, stage: int, recv: Peer | None, send: Peer | None, *, chain: bool
) -> Template:
    """Stage ``stage``'s program; ``chain`` marks the decode-step recv/send of tokens."""
    b = _Builder(c.costs)
    x = b.add(Op.PP_RECV, peer=recv, tokens=chain and stage == 0) if recv is not None else -1
    if stage == 0:
        x = b.add(Op.EMBED, [x])
        if c.dims.tp > 1:  # vocab-parallel partial sums; under SP scattered to T/tp rows
            x = b.add(Op.EMBED_REDUCESCATTER if c.sp else Op.EMBED_ALLREDUCE, [x])
    for layer in c.layers[stage]:
        x = _layer(b, c, layer, x)
    if stage == len(c.layers) - 1:
        x = b.add(Op.FINAL_NORM, [x])
        if c.sp:  # the stream is split over TP: gather each sequence's last row
            x = b.add(Op.LM_ALLGATHER, [x])
        x = b.add(Op.LM_HEAD, [x])
        if c.dims.tp > 1:
            x = b.add(Op.LOGITS_ALLGATHER, [x])
        x = b.add(Op.SAMPLE, [x])
    if send is not None:
        b.add(Op.PP_SEND, [x], peer=send, tokens=send is Peer.FIRST)
    return b.freeze()


def stage_segments(c: StageContext, steps: int) -> list[list[Segment]]:
    """Per stage, its templates and the decode steps each covers (in step order)."""
    pp = len(c.layers)
    if pp == 1:
        return [[Segment(_template(c, 0, None, None, chain=False), 0, steps)]]
    chain = steps > 1
    out: list[list[Segment]] = []
    for s in range(pp):
        recv = Peer.PREV if s > 0 else None
        send = Peer.NEXT if s < pp - 1 else None
        plain = _template(c, s, recv, send, chain=False)
        if chain and s == 0:  # from step 1 on, step t-1's tokens arrive from the last stage
            out.append(
                [
                    Segment(plain, 0, 1),
                    Segment(_template(c, s, Peer.LAST, send, chain=True), 1, steps),
                ]
            )
        elif chain and s == pp - 1:  # every step but the last sends its tokens to stage 0
            out.append(
                [
                    Segment(_template(c, s, recv, Peer.FIRST, chain=True), 0, steps - 1),
                    Segment(plain, steps - 1, steps),
                ]
            )
        else:
            out.append([Segment(plain, 0, steps)])
    return out
