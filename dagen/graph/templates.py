"""Per-stage templates: the ops one rank issues for one block of a schedule, and their edges.

Every rank of a pipeline stage runs the same program for each block (a micro-batch at
a decode step); only its group ids, peers and hosted experts differ, and those are
looked up per rank when the template is expanded (:mod:`dagen.graph.expand`). A
template is a few hundred rows at most, built here with plain Python loops over layers.

A template's pipeline ports say what its recv and send carry (:class:`Carry`), never
whom they talk to: the schedule (:mod:`dagen.graph.schedule`) pairs every send with its
recv. :class:`Programs` builds each (stage, ports) template once, on demand.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import numpy.typing as npt

from dagen.graph.codes import Kind
from dagen.graph.dims import Dims
from dagen.graph.ops import OP_DIM, OP_KIND, Op
from dagen.graph.pricing import PriceTable
from dagen.plan.model import Moe

__all__ = ["Carry", "Programs", "StageContext", "Template"]

NONE = -1
"""Marks an absent slot or group dimension in a template row."""


class Carry(enum.IntEnum):
    """What a pipeline recv or send of a template carries."""

    ACTIVATIONS = 0
    """The residual stream of a micro-batch, stage to stage."""
    TOKENS = 1
    """The sampled token ids of a decode step, last stage to first: they feed the next step."""

    @property
    def next_step(self) -> bool:
        """Whether the data feeds the next step of the micro-batch (else the same step)."""
        return self is Carry.TOKENS


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
    carry: npt.NDArray[np.int8]
    """:class:`Carry` of a send or recv row, else -1."""
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

    send_rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    """Rows of its sends, ascending."""
    recv_rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    """Rows of its recvs, ascending."""


_KIND_DIM: tuple[tuple[int, int], ...] = tuple(zip(OP_KIND.tolist(), OP_DIM.tolist(), strict=True))
"""(kind, group dimension) by op code, as plain ints: a template row is appended per op of
every stage of every build, and numpy scalar lookups by enum cost microseconds each."""


_Row = tuple[int, int, int, int, int, int, int]
"""A template row as plain ints: op, kind, layer, slot, template id, group dimension, carry."""


@dataclass(frozen=True, slots=True)
class _Pattern:
    """One layer's rows and edges, relative to its first row (-1 is its input row): every
    layer of one kind (MoE or dense) in every stage has the same rows but for its layer."""

    rows: list[_Row]
    edges: list[tuple[int, int]]


@dataclass(slots=True)
class _Builder:
    costs: PriceTable
    patterns: dict[bool, _Pattern] = field(default_factory=dict)
    """Layer patterns by MoE-ness, shared by every template of one :class:`Programs`."""
    rows: list[_Row] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)

    def add(
        self,
        op: Op,
        deps: Sequence[int] = (),
        *,
        layer: int = NONE,
        slot: int = NONE,
        carry: Carry | None = None,
    ) -> int:
        """Append a row depending on ``deps`` (negative entries ignored); return its index."""
        i = len(self.rows)
        code = int(op)
        kind, dim = _KIND_DIM[code]
        tmpl = self.costs.id(op, tokens=carry is Carry.TOKENS)
        port = NONE if carry is None else int(carry)
        self.rows.append((code, kind, layer, slot, tmpl, dim, port))
        self.edges.extend((d, i) for d in dict.fromkeys(deps) if d >= 0)
        return i

    def replay(self, p: _Pattern, layer: int) -> int:
        """Append ``p`` as layer ``layer`` after the current last row (its input); return
        the layer's output row. The same rows and edges as building the layer again."""
        i0 = len(self.rows)
        self.rows.extend([(r[0], r[1], layer, r[3], r[4], r[5], r[6]) for r in p.rows])
        self.edges.extend([(a + i0, b + i0) for a, b in p.edges])
        return len(self.rows) - 1

    def freeze(self) -> Template:
        n, m = len(self.rows), len(self.edges)
        cols = np.fromiter(chain.from_iterable(self.rows), np.int64, 7 * n).reshape(n, 7).T
        e = np.fromiter(chain.from_iterable(self.edges), np.int32, 2 * m).reshape(m, 2).T
        ops = cols[0].tolist()
        return Template(
            op=cols[0].astype(np.uint8),
            kind=cols[1].astype(np.uint8),
            layer=cols[2].astype(np.int16),
            slot=cols[3].astype(np.int16),
            tmpl=cols[4].astype(np.int32),
            dim=cols[5].astype(np.int8),
            carry=cols[6].astype(np.int8),
            esrc=np.ascontiguousarray(e[0]),
            edst=np.ascontiguousarray(e[1]),
            embed=ops.index(Op.EMBED) if Op.EMBED in ops else NONE,
            sample=ops.index(Op.SAMPLE) if Op.SAMPLE in ops else NONE,
            send_rows=np.flatnonzero(cols[1] == int(Kind.SEND)),
            recv_rows=np.flatnonzero(cols[1] == int(Kind.RECV)),
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
    """Layer ``layer`` on input row ``x``: built once per kind (MoE or dense) and replayed
    for every further layer of that kind whose input is the last row so far."""
    moe = c.moe is not None and c.moe.is_moe_layer(layer)
    i0, e0 = len(b.rows), len(b.edges)
    chained = x >= 0 and x == i0 - 1
    if chained and moe in b.patterns:
        return b.replay(b.patterns[moe], layer)
    x = _attention(b, c, layer, x)
    x = _moe(b, c, layer, x) if moe else _dense(b, c, layer, x)
    if chained and x == len(b.rows) - 1:
        b.patterns[moe] = _Pattern(
            rows=b.rows[i0:], edges=[(u - i0, v - i0) for u, v in b.edges[e0:]]
        )
    return x


def _template(
    c: StageContext, stage: int, recv: Carry | None, send: Carry | None,
    patterns: dict[bool, _Pattern],
) -> Template:  # fmt: skip
    """Stage ``stage``'s program with the given pipeline ports."""
    b = _Builder(c.costs, patterns)
    x = -1
    if recv is not None:
        x = b.add(Op.PP_RECV, carry=recv)
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
        b.add(Op.PP_SEND, [x], carry=send)
    return b.freeze()


class Programs:
    """Every template a schedule asks for, each (stage, recv, send) built once.

    Template ids are given in the order they are first asked for; ``templates[id]`` is
    the template and ``stage[id]`` its stage.

    Example:
        >>> progs = Programs(ctx)  # doctest: +SKIP
        >>> progs.get(0, None, Carry.ACTIVATIONS) == progs.get(0, None, Carry.ACTIVATIONS)  # doctest: +SKIP
        True
    """

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.templates: list[Template] = []
        self.stage: list[int] = []
        self._ids: dict[tuple[int, Carry | None, Carry | None], int] = {}
        self._patterns: dict[bool, _Pattern] = {}

    @property
    def pp(self) -> int:
        """Pipeline stages."""
        return len(self.ctx.layers)

    def get(self, stage: int, recv: Carry | None, send: Carry | None) -> int:
        """The id of stage ``stage``'s template receiving ``recv`` and sending ``send``."""
        key = (stage, recv, send)
        if key not in self._ids:
            self._ids[key] = len(self.templates)
            self.templates.append(_template(self.ctx, stage, recv, send, self._patterns))
            self.stage.append(stage)
        return self._ids[key]
