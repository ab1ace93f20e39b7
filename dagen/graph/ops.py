"""The op registry: every operator dagen emits, each with one frozen :class:`OpSpec`.

A member of :class:`Op` *is* its registry entry: its label (the name in node ids), its
node kind, its collective and the mesh dimension the collective runs over, the block of
the model it belongs to, and the functions that price it from the per-rank sizes
(:class:`~dagen.graph.dims.Dims`): :mod:`~dagen.graph.opcost` for its output shape, bytes
and FLOPs, :mod:`~dagen.graph.traffic` for the HBM bytes a compute op reads and writes,
:mod:`~dagen.graph.weights` for the weight bytes its node holds.

Every other table (op → kind, → collective, → group dimension, → block; the label list;
which ops are collectives or sends) is derived here, once. The spec is validated when
the module is imported: a compute op without an HBM-traffic function, a collective
without its group dimension, or a send with one, is an error at import time, never a
silent zero.

Adding an op takes this entry, the template line that emits it
(:mod:`dagen.graph.templates`) and its line in the oracle of the completeness check
(:mod:`dagen.checks.expect`); docs/architecture.md walks through one.

Example:
    >>> Op.MOE_DISPATCH.spec.coll.label, Op.MOE_DISPATCH.spec.dim.label
    ('all-to-all', 'ep')
    >>> Op.of(3).label, OP_KIND[int(Op.PP_SEND)] == Kind.SEND
    ('attn.qkv', True)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from dagen.graph import opcost, traffic, weights
from dagen.graph.codes import Block, Coll, Engine, GroupKind, Kind
from dagen.graph.dims import Cost, Dims
from dagen.graph.traffic import Traffic

__all__ = [
    "COLLECTIVE_OPS",
    "OPS",
    "OP_BLOCK",
    "OP_COLL",
    "OP_DIM",
    "OP_ENGINE",
    "OP_KIND",
    "OP_LABELS",
    "P2P_OPS",
    "Op",
    "OpSpec",
]

NONE = -1
"""Marks an absent collective or group dimension in the derived code tables."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpSpec:
    """Everything dagen knows about one operator."""

    label: str
    """Readable name, used in node ids (``attn.qkv``)."""
    kind: Kind
    """The node kind the op is emitted as."""
    block: Block
    """The part of the model it belongs to."""
    cost: Callable[[Dims], Cost]
    """Output shape (or message), bytes and FLOPs on one rank for one micro-batch."""
    traffic: Callable[[Dims], Traffic] | None = None
    """HBM traffic on one rank for one micro-batch (compute ops only)."""
    resident: Callable[[Dims], int] | None = None
    """Weight bytes one node holds resident on its rank (None: none)."""
    engine: Engine = Engine.NONE
    """The kernel a compute op runs (a communication op's is NONE)."""
    coll: Coll | None = None
    """The collective (collective ops only)."""
    dim: GroupKind | None = None
    """The mesh dimension whose group the collective runs over (collective ops only)."""

    def __post_init__(self) -> None:
        compute = self.kind is Kind.COMPUTE
        collective = self.kind is Kind.COLLECTIVE
        if compute != (self.engine is not Engine.NONE):
            raise TypeError(f"op {self.label}: a compute op, and only one, needs an engine")
        if compute != (self.traffic is not None):
            raise TypeError(
                f"op {self.label}: a compute op, and only one, needs a traffic function"
            )
        if collective != (self.coll is not None) or collective != (self.dim is not None):
            raise TypeError(f"op {self.label}: a collective op, and only one, needs coll and dim")


def _compute(
    label: str,
    block: Block,
    cost: Callable[[Dims], Cost],
    hbm: Callable[[Dims], Traffic],
    resident: Callable[[Dims], int] | None = None,
    engine: Engine = Engine.ELEMENTWISE,
) -> OpSpec:
    return OpSpec(
        label=label, kind=Kind.COMPUTE, block=block, cost=cost, traffic=hbm, resident=resident,
        engine=engine,
    )  # fmt: skip


def _coll(
    label: str, block: Block, coll: Coll, dim: GroupKind, cost: Callable[[Dims], Cost]
) -> OpSpec:
    return OpSpec(label=label, kind=Kind.COLLECTIVE, block=block, cost=cost, coll=coll, dim=dim)


_E, _A, _F, _M, _H, _P = (Block.EMBEDDING, Block.ATTENTION, Block.FFN, Block.MOE, Block.HEAD,
                          Block.PIPELINE)  # fmt: skip
_AR, _AG, _RS, _A2A = Coll.ALL_REDUCE, Coll.ALL_GATHER, Coll.REDUCE_SCATTER, Coll.ALL_TO_ALL
_TP, _CP, _EP, _ETP = GroupKind.TP, GroupKind.CP, GroupKind.EP, GroupKind.ETP
_MM, _ATT = Engine.GEMM, Engine.ATTENTION


class Op(enum.IntEnum):
    """Every operator dagen emits; the value is the code in the graph's ``op`` column.

    Members are defined in code order (new ops go at the end, so codes stay stable).
    """

    spec: OpSpec

    def __new__(cls, spec: OpSpec) -> Op:
        code = len(cls.__members__)
        member = int.__new__(cls, code)
        member._value_ = code
        member.spec = spec
        return member

    EMBED = _compute("embed", _E, opcost.embed, traffic.embed, weights.embed)
    EMBED_ALLREDUCE = _coll("embed.allreduce", _E, _AR, _TP, opcost.hidden)
    ATTN_NORM = _compute("attn.norm", _A, opcost.norm, traffic.norm, weights.norm)
    ATTN_QKV = _compute("attn.qkv", _A, opcost.qkv, traffic.attn_qkv, weights.attn_qkv, _MM)
    ATTN_CP_ALLGATHER = _coll("attn.cp_allgather", _A, _AG, _CP, opcost.cp_gather)
    ATTN_CORE = _compute("attn.core", _A, opcost.core, traffic.attn_core, engine=_ATT)
    ATTN_OUT = _compute("attn.out", _A, opcost.out, traffic.attn_out, weights.attn_out, _MM)
    ATTN_ALLREDUCE = _coll("attn.allreduce", _A, _AR, _TP, opcost.hidden)
    ATTN_REDUCESCATTER = _coll("attn.reducescatter", _A, _RS, _TP, opcost.hidden)
    ATTN_ALLGATHER = _coll("attn.allgather", _A, _AG, _TP, opcost.hidden)
    ATTN_RESIDUAL = _compute("attn.residual", _A, opcost.residual, traffic.residual)
    MOE_NORM = _compute("moe.norm", _M, opcost.norm, traffic.norm, weights.norm)
    MOE_ROUTER = _compute(
        "moe.router", _M, opcost.router, traffic.moe_router, weights.moe_router, _MM
    )
    MOE_TOPK = _compute("moe.topk", _M, opcost.topk, traffic.moe_topk)
    MOE_DISPATCH = _coll("moe.dispatch", _M, _A2A, _EP, opcost.dispatch)
    MOE_EXPERT = _compute(
        "moe.expert", _M, opcost.expert, traffic.moe_expert, weights.moe_expert, _MM
    )
    MOE_ETP_REDUCE = _coll("moe.etp_reduce", _M, _AR, _ETP, opcost.etp_reduce)
    MOE_COMBINE = _coll("moe.combine", _M, _A2A, _EP, opcost.combine)
    MOE_SHARED = _compute(
        "moe.shared", _M, opcost.shared, traffic.moe_shared, weights.moe_shared, _MM
    )
    MOE_SHARED_ALLREDUCE = _coll("moe.shared_allreduce", _M, _AR, _TP, opcost.hidden)
    MOE_RESIDUAL = _compute("moe.residual", _M, opcost.residual, traffic.residual)
    FFN_NORM = _compute("ffn.norm", _F, opcost.norm, traffic.norm, weights.norm)
    FFN_UP = _compute("ffn.up", _F, opcost.ffn_up, traffic.ffn_up, weights.ffn_up, _MM)
    FFN_DOWN = _compute("ffn.down", _F, opcost.ffn_down, traffic.ffn_down, weights.ffn_down, _MM)
    FFN_ALLREDUCE = _coll("ffn.allreduce", _F, _AR, _TP, opcost.hidden)
    FFN_REDUCESCATTER = _coll("ffn.reducescatter", _F, _RS, _TP, opcost.hidden)
    FFN_ALLGATHER = _coll("ffn.allgather", _F, _AG, _TP, opcost.hidden)
    FFN_RESIDUAL = _compute("ffn.residual", _F, opcost.residual, traffic.residual)
    FINAL_NORM = _compute("final.norm", _H, opcost.final_norm, traffic.norm, weights.norm)
    LM_HEAD = _compute("lm.head", _H, opcost.lm_head, traffic.lm_head, weights.lm_head, _MM)
    LOGITS_ALLGATHER = _coll("logits.allgather", _H, _AG, _TP, opcost.logits)
    SAMPLE = _compute("sample", _H, opcost.sample, traffic.sample)
    PP_SEND = OpSpec(label="pp.send", kind=Kind.SEND, block=_P, cost=opcost.p2p)
    PP_RECV = OpSpec(label="pp.recv", kind=Kind.RECV, block=_P, cost=opcost.p2p)
    MOE_SHARED_ALLGATHER = _coll("moe.shared_allgather", _M, _AG, _TP, opcost.hidden)
    MOE_SHARED_REDUCESCATTER = _coll("moe.shared_reducescatter", _M, _RS, _TP, opcost.hidden)
    EMBED_REDUCESCATTER = _coll("embed.reducescatter", _E, _RS, _TP, opcost.hidden)
    LM_ALLGATHER = _coll("lm.allgather", _H, _AG, _TP, opcost.last_rows)
    KV_SEND = OpSpec(label="kv.send", kind=Kind.SEND, block=_P, cost=opcost.kv_cache)
    """A prefill rank's KV cache of some requests, layers and heads, to a decode rank."""
    KV_RECV = OpSpec(label="kv.recv", kind=Kind.RECV, block=_P, cost=opcost.kv_cache)
    """The decode rank's side: posted (its cache reserved) before decode starts."""

    @property
    def label(self) -> str:
        """``attn.qkv``, ``moe.expert``, ``pp.send``, …"""
        return self.spec.label

    @staticmethod
    def of(code: int) -> Op:
        """The op of a column code."""
        return OPS[code]


OPS: tuple[Op, ...] = tuple(Op)
"""Every op, indexed by code."""


def _table(values: list[int], dtype: type[np.generic]) -> npt.NDArray[np.generic]:
    out = np.asarray(values, dtype=dtype)
    out.setflags(write=False)
    return out


OP_LABELS: tuple[str, ...] = tuple(op.label for op in OPS)
"""Op labels by code."""
OP_KIND = _table([int(op.spec.kind) for op in OPS], np.uint8)
"""uint8 ``[ops]``: the node kind of each op."""
OP_COLL = _table([NONE if op.spec.coll is None else int(op.spec.coll) for op in OPS], np.int8)
"""int8 ``[ops]``: the collective of each op (-1: none)."""
OP_DIM = _table([NONE if op.spec.dim is None else int(op.spec.dim) for op in OPS], np.int8)
"""int8 ``[ops]``: the group dimension of each collective op (-1: none)."""
OP_BLOCK = _table([int(op.spec.block) for op in OPS], np.uint8)
"""uint8 ``[ops]``: the block of each op."""

OP_ENGINE = _table([int(op.spec.engine) for op in OPS], np.uint8)
"""uint8 ``[ops]``: the kernel kind of each op (:class:`Engine`)."""

COLLECTIVE_OPS: Mapping[Op, tuple[GroupKind, Coll]] = MappingProxyType(
    {
        op: (op.spec.dim, op.spec.coll)
        for op in OPS
        if op.spec.dim is not None and op.spec.coll is not None
    }
)
"""The group dimension and collective of every collective op."""

P2P_OPS: Mapping[Op, Kind] = MappingProxyType(
    {op: op.spec.kind for op in OPS if op.spec.kind in (Kind.SEND, Kind.RECV)}
)
"""The point-to-point ops and their node kind."""

if len(set(OP_LABELS)) != len(OP_LABELS):  # pragma: no cover - a registry typo
    raise TypeError("op registry: two ops share a label")
