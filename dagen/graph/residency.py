"""What every rank holds in memory, by pipeline stage: weights, KV cache, activations.

Every rank of a stage holds the same shard sizes (only which experts, heads and
vocabulary rows differ), so each part is priced once per stage from the per-rank sizes
(:class:`~dagen.graph.dims.Dims`) and the op registry. The graph carries the result
(:attr:`dagen.graph.pool.Pool.residency`); the cost model adds the runtime's own
allowance and weighs it against capacity (:mod:`dagen.cost.memory`). Formulas and
assumptions: docs/cost-model.md ("Memory").

Example:
    >>> res = residency(plan, mesh, dims)  # doctest: +SKIP
    >>> res.weights_bytes.shape == (mesh.sizes["pp"],)  # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.graph.codes import Block
from dagen.graph.dims import Dims
from dagen.graph.ops import COLLECTIVE_OPS, Op
from dagen.graph.traffic import Traffic, kv_token_bytes
from dagen.mesh import Mesh
from dagen.plan.model import Plan
from dagen.plan.params import attention_params, ffn_matrices
from dagen.plan.split import stage_layers

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
    """The residual stream plus the largest op's inputs and outputs, one micro-batch."""
    message_bytes: I64
    """The largest message the rank sends or receives (its staging buffers hold two)."""


def _attention_weights(d: Dims) -> int:
    """One layer's attention weights on a rank: the rank's heads (KV heads replicated when
    tp > kv_heads; MLA's down-projections and norms replicated, vLLM's MLA layout)."""
    return attention_params(d.h, d.heads, d.kv_heads, d.head_dim, d.mla)


@dataclass(frozen=True, slots=True)
class _Stage:
    layers: int
    moe_layers: int
    first: bool
    last: bool


def _stages(plan: Plan) -> list[_Stage]:
    moe = plan.model.moe
    ranges = stage_layers(plan)
    out = []
    for s, r in enumerate(ranges):
        n_moe = sum(1 for layer in r if moe is not None and moe.is_moe_layer(layer))
        out.append(_Stage(len(r), n_moe, s == 0, s == len(ranges) - 1))
    return out


def _stage_weights(plan: Plan, d: Dims, st: _Stage) -> tuple[int, int]:
    """(all, routed-expert) weight bytes on one rank of a stage."""
    m, moe = plan.model, plan.model.moe
    per_layer = _attention_weights(d) + 2 * d.h
    dense = (st.layers - st.moe_layers) * ffn_matrices(m.gated_ffn) * d.h * d.ffn
    routed = 0
    shared = 0
    if moe is not None and st.moe_layers:
        routed = st.moe_layers * d.slots * ffn_matrices(m.gated_ffn) * d.h * d.expert_ffn
        shared = st.moe_layers * (d.h * d.experts + ffn_matrices(m.gated_ffn) * d.h * d.shared_ffn)
    edges = d.vocab * d.h * int(st.first)  # input embedding, vocabulary-parallel
    if st.last:  # final norm and LM head (a tied head shares the first stage's copy)
        edges += d.h + d.vocab * d.h * int(not (m.tied_embeddings and st.first))
    params = st.layers * per_layer + dense + routed + shared + edges
    return params * d.e, routed * d.e


def _stage_ops(plan: Plan, st: _Stage) -> list[Op]:
    ops = [Op.ATTN_NORM, Op.ATTN_QKV, Op.ATTN_CORE, Op.ATTN_OUT, Op.ATTN_RESIDUAL]
    if st.moe_layers:
        ops += [Op.MOE_NORM, Op.MOE_ROUTER, Op.MOE_TOPK, Op.MOE_EXPERT, Op.MOE_RESIDUAL]
        if plan.model.moe is not None and plan.model.moe.shared_experts:
            ops.append(Op.MOE_SHARED)
    if st.layers > st.moe_layers:
        ops += [Op.FFN_NORM, Op.FFN_UP, Op.FFN_DOWN, Op.FFN_RESIDUAL]
    if st.first:
        ops.append(Op.EMBED)
    if st.last:
        ops += [Op.FINAL_NORM, Op.LM_HEAD, Op.SAMPLE]
    return ops


def _activations(plan: Plan, d: Dims, st: _Stage, traffic: dict[Op, Traffic]) -> int:
    """The residual stream plus the largest op's inputs and outputs (one micro-batch)."""
    live = max(traffic[op].act_in + traffic[op].act_out for op in _stage_ops(plan, st))
    return int(d.stream * d.h * d.e + live)


def _comm_ops(plan: Plan, st: _Stage, sizes: dict[str, int]) -> list[Op]:
    """The collectives a rank of the stage takes part in (groups of more than one)."""
    ops = [op for op, (dim, _) in COLLECTIVE_OPS.items() if sizes[dim.label] > 1]
    if not st.moe_layers:
        ops = [op for op in ops if op.spec.block is not Block.MOE]
    if not st.first:
        ops = [op for op in ops if op not in (Op.EMBED_ALLREDUCE, Op.EMBED_REDUCESCATTER)]
    if not st.last:
        ops = [op for op in ops if op not in (Op.LOGITS_ALLGATHER, Op.LM_ALLGATHER)]
    return ops


def _largest_message(plan: Plan, d: Dims, st: _Stage, sizes: dict[str, int]) -> int:
    """The largest message a rank of the stage sends or receives (its staging buffers)."""
    messages = [op.spec.cost(d).nbytes for op in _comm_ops(plan, st, sizes)]
    if plan.parallel.pp > 1:
        messages.append(Op.PP_SEND.spec.cost(d).nbytes)
    return max(messages, default=0)


def _kv(plan: Plan, d: Dims, st: _Stage, replicas: int) -> int:
    """The cache of every sequence of the rank's replica, for the layers of its stage."""
    w = plan.workload
    seqs = w.batch // replicas
    tokens = (w.prompt_len + w.gen_len) / d.cp
    return int(seqs * tokens * st.layers * kv_token_bytes(d))


def residency(plan: Plan, mesh: Mesh, d: Dims) -> Residency:
    """What one rank of each stage of ``plan`` on ``mesh`` holds (see the module docstring)."""
    traffic = {op: op.spec.traffic(d) for op in Op if op.spec.traffic is not None}
    rows = []
    for st in _stages(plan):
        weights, routed = _stage_weights(plan, d, st)
        kv = _kv(plan, d, st, mesh.sizes["dp"])
        act = _activations(plan, d, st, traffic)
        rows.append((weights, routed, kv, act, _largest_message(plan, d, st, dict(mesh.sizes))))
    table: I64 = np.asarray(rows, dtype=np.int64).reshape(-1, 5)
    cols = [np.ascontiguousarray(table[:, i]) for i in range(5)]
    return Residency(
        weights_bytes=cols[0],
        routed_bytes=cols[1],
        kv_bytes=cols[2],
        activation_bytes=cols[3],
        message_bytes=cols[4],
    )
