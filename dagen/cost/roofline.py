"""Roofline time of every compute node: max(FLOPs / achievable FLOP/s, bytes / achievable HBM).

FLOPs come from the graph's template table (``tmpl_flops``; formulas in docs/graph.md).
Bytes are the HBM traffic of the op on one rank for one micro-batch, which the graph
does not hold (its ``tmpl_bytes`` is the output activation only): the weights of the
op's shard, the activations it reads and writes, and the KV cache it reads or writes.
:func:`op_bytes` prices each op once from :class:`~dagen.graph.shapes.Dims`; the result
is a small table indexed by :class:`~dagen.graph.ir.Op`, gathered per node. Every
formula is written out in docs/cost-model.md ("Compute nodes").

Example:
    >>> from dagen.cost.roofline import compute_durations
    >>> seconds = compute_durations(graph)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.cost.bounds import achievable_flops, achievable_hbm
from dagen.graph.ir import Graph, Kind, Op
from dagen.graph.shapes import COSTS, Dims, derive_dims
from dagen.mesh import Mesh
from dagen.plan.model import Plan
from dagen.plan.params import ffn_matrices, kv_entry

__all__ = ["OpBytes", "achievable", "compute_durations", "op_bytes", "op_bytes_table"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class OpBytes:
    """HBM traffic of one op on one rank for one micro-batch, in bytes."""

    weights: float
    """Weights of the op's shard read once."""
    act_in: float
    """Activations read (inputs and re-read intermediates)."""
    act_out: float
    """Activations written (the output and written intermediates)."""
    kv: float = 0.0
    """KV cache read (decode: the whole context) and written (the new keys/values)."""

    @property
    def total(self) -> float:
        return self.weights + self.act_in + self.act_out + self.kv


def achievable(plan: Plan) -> tuple[float, float]:
    """``(FLOP/s, bytes/s)`` one GPU achieves: peak × efficiency for the model's dtype."""
    return achievable_flops(plan)[0], achievable_hbm(plan)[0]


def _out(op: Op, d: Dims) -> float:
    return float(COSTS[op](d).nbytes)


def kv_token_bytes(d: Dims) -> float:
    """KV-cache bytes one token adds to one layer on one rank (MLA: the shared latent)."""
    return float(kv_entry(d.kv_heads, d.head_dim, d.mla) * d.e)


def _qkv_weights(d: Dims) -> float:
    if d.mla is None:
        return float(d.h * (d.heads + 2 * d.kv_heads) * d.head_dim * d.e)
    a = d.mla
    dqk = a.qk_nope_head_dim + a.qk_rope_head_dim
    q = (
        d.h * a.q_lora_rank + a.q_lora_rank * d.heads * dqk
        if a.q_lora_rank
        else d.h * d.heads * dqk
    )
    kv_down = d.h * (a.kv_lora_rank + a.qk_rope_head_dim)
    # prefill up-projects K and V per head; decode absorbs W_UK into the query
    up = a.qk_nope_head_dim + a.v_head_dim if d.prefill else a.qk_nope_head_dim
    return float((q + kv_down + a.kv_lora_rank * d.heads * up) * d.e)


def _value_dim(d: Dims) -> int:
    return d.head_dim if d.mla is None else d.mla.v_head_dim


def _core(d: Dims) -> OpBytes:
    read = _out(Op.ATTN_QKV, d)
    if d.prefill:
        if d.cp > 1:  # the other shards' keys and values, gathered
            read += _out(Op.ATTN_CP_ALLGATHER, d) * (d.cp - 1) / d.cp
        kv = d.tokens * kv_token_bytes(d)  # write the prompt's cache
    else:  # read the whole context, write the new token's entry
        kv = (d.pairs + d.seqs / d.cp) * kv_token_bytes(d)
    return OpBytes(0.0, read, _out(Op.ATTN_CORE, d), kv)


def _out_proj(d: Dims) -> OpBytes:
    dv = _value_dim(d)
    w = d.heads * dv * d.h
    if d.mla is not None and not d.prefill:  # W_UV: latent back to per-head values
        w += d.heads * d.mla.kv_lora_rank * dv
    return OpBytes(float(w * d.e), float(d.tokens * d.heads * dv * d.e), _out(Op.ATTN_OUT, d))


def _expert(d: Dims) -> OpBytes:
    # A slot's weights are read only if at least one token reaches it: with Poisson
    # arrivals of mean slot_tokens, that happens with probability 1 − e^(−slot_tokens).
    p_used = -math.expm1(-d.slot_tokens) if d.slot_tokens > 0 else 0.0
    w = ffn_matrices(d.gated) * d.h * d.expert_ffn * d.e * p_used
    inter = d.slot_tokens * d.expert_ffn * d.e  # the activated intermediate, written then read
    return OpBytes(w, d.slot_tokens * d.h * d.e + inter, _out(Op.MOE_EXPERT, d) + inter)


def _shared(d: Dims) -> OpBytes:
    w = ffn_matrices(d.gated) * d.h * d.shared_ffn * d.e
    inter = d.tokens * d.shared_ffn * d.e
    return OpBytes(float(w), d.tokens * d.h * d.e + inter, _out(Op.MOE_SHARED, d) + inter)


def _norm(op: Op) -> Callable[[Dims], OpBytes]:
    return lambda d: OpBytes(float(d.h * d.e), float(d.stream * d.h * d.e), _out(op, d))


def _residual(op: Op) -> Callable[[Dims], OpBytes]:
    return lambda d: OpBytes(0.0, float(2 * d.stream * d.h * d.e), _out(op, d))


_TABLE: dict[Op, Callable[[Dims], OpBytes]] = {
    # vocab-parallel lookup: each TP rank gathers the rows of its shard
    Op.EMBED: lambda d: OpBytes(d.tokens * d.h * d.e / d.tp, 4.0 * d.tokens, _out(Op.EMBED, d)),
    Op.ATTN_NORM: _norm(Op.ATTN_NORM),
    Op.ATTN_QKV: lambda d: OpBytes(
        _qkv_weights(d), float(d.tokens * d.h * d.e), _out(Op.ATTN_QKV, d)
    ),
    Op.ATTN_CORE: _core,
    Op.ATTN_OUT: _out_proj,
    Op.ATTN_RESIDUAL: _residual(Op.ATTN_RESIDUAL),
    Op.MOE_NORM: _norm(Op.MOE_NORM),
    Op.MOE_ROUTER: lambda d: OpBytes(
        float(d.h * d.experts * d.e), float(d.stream * d.h * d.e), _out(Op.MOE_ROUTER, d)
    ),
    Op.MOE_TOPK: lambda d: OpBytes(0.0, float(d.stream * d.experts * 4), _out(Op.MOE_TOPK, d)),
    Op.MOE_EXPERT: _expert,
    Op.MOE_SHARED: _shared,
    Op.MOE_RESIDUAL: _residual(Op.MOE_RESIDUAL),
    Op.FFN_NORM: _norm(Op.FFN_NORM),
    Op.FFN_UP: lambda d: OpBytes(
        float((ffn_matrices(d.gated) - 1) * d.h * d.ffn * d.e),
        float(d.tokens * d.h * d.e),
        _out(Op.FFN_UP, d),
    ),
    Op.FFN_DOWN: lambda d: OpBytes(
        float(d.ffn * d.h * d.e), float(d.tokens * d.ffn * d.e), _out(Op.FFN_DOWN, d)
    ),
    Op.FFN_RESIDUAL: _residual(Op.FFN_RESIDUAL),
    Op.FINAL_NORM: _norm(Op.FINAL_NORM),
    Op.LM_HEAD: lambda d: OpBytes(
        float(d.vocab * d.h * d.e), float(d.seqs * d.h * d.e), _out(Op.LM_HEAD, d)
    ),
    Op.SAMPLE: lambda d: OpBytes(0.0, float(d.seqs * d.vocab * d.tp * d.e), _out(Op.SAMPLE, d)),
}
"""HBM traffic of every compute op (communication ops move no HBM bytes in this model)."""


def op_bytes(d: Dims) -> dict[Op, OpBytes]:
    """Traffic of every compute op for one micro-batch on one rank with sizes ``d``."""
    return {op: fn(d) for op, fn in _TABLE.items()}


def op_bytes_table(d: Dims) -> F64:
    """float64 ``[len(Op)]``: total bytes per op, 0 for communication ops."""
    table = np.zeros(len(Op), dtype=np.float64)
    for op, b in op_bytes(d).items():
        table[int(op)] = b.total
    return table


def compute_durations(graph: Graph, mesh: Mesh | None = None) -> F64:
    """Seconds of every node on the compute stream; 0 for communication nodes.

    ``max(FLOPs / (peak · flops_efficiency), bytes / (HBM · hbm_efficiency))`` with the
    FLOPs of the node's template and the bytes of its op (:func:`op_bytes`).
    """
    plan = graph.plan
    flop_rate, byte_rate = achievable(plan)
    table = op_bytes_table(derive_dims(plan, mesh or graph.mesh))
    flops = graph.tmpl_flops[graph.tmpl]
    traffic = table[graph.op]
    seconds = np.maximum(flops / flop_rate, traffic / byte_rate)
    seconds[graph.kind != Kind.COMPUTE] = 0.0
    return seconds
