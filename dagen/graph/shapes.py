"""Sizes of one micro-batch on one rank, and the shape, bytes and FLOPs of every op.

:func:`derive_dims` turns a plan and its mesh into :class:`Dims` (tokens, local heads,
shards, expected expert load); :class:`CostTable` prices each op once and hands out the
template ids the graph's ``tmpl`` column points at. Every formula is written out in
``docs/graph.md``; the docstrings here only name the conventions.

Conventions:
    * A matmul ``[m, k] @ [k, n]`` costs ``2·m·n·k`` FLOPs.
    * Compute bytes are the bytes of the op's output activation.
    * Collective bytes are the nccl-tests "size" of the call on one rank: the buffer of an
      all-reduce, the gathered output of an all-gather, the input of a reduce-scatter,
      the send buffer of an all-to-all. Send/recv bytes are the message.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from dagen.errors import PlanInfeasible
from dagen.graph.ir import Op
from dagen.mesh import Mesh
from dagen.plan.model import Mla, Phase, Plan

__all__ = ["Cost", "CostTable", "Dims", "derive_dims", "infeasible"]

INT16_MAX = 32767
"""Largest layer, micro-batch, step or expert id the IR's int16 columns hold."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Dims:
    """Per-rank sizes of one micro-batch (one decode step in decode)."""

    prefill: bool
    e: int
    """Bytes per element of the model dtype."""
    h: int
    tp: int
    cp: int
    seqs: int
    """Sequences per micro-batch per attention replica: batch / (attn_dp · micro_batches)."""
    tokens: int
    """T: tokens per micro-batch per rank: seqs · prompt_len / cp (prefill) or seqs (decode)."""
    stream: int
    """Rows of the residual stream on a rank: ceil(T / tp) under sequence parallelism, else T."""
    pairs: float
    """Query-key pairs the attention core scores on a rank: seqs·s²/(2·cp) or seqs·kv_len/cp."""
    prompt: int
    heads: int
    """Query heads per rank: heads / tp."""
    kv_heads: int
    """KV heads per rank: kv_heads / tp when tp divides them, else 1 (replicated)."""
    head_dim: int
    ffn: int
    """Dense FFN columns per rank: ceil(ffn_size / tp)."""
    vocab: int
    """Vocabulary rows per rank: ceil(vocab_size / tp)."""
    gated: bool
    mla: Mla | None
    experts: int = 0
    top_k: int = 0
    slots: int = 0
    """Physical expert slots per EP rank: (experts + redundant) / ep."""
    dispatch_tokens: float = 0.0
    """Tokens a rank sends into the EP all-to-all: distinct stage tokens / (ep · edp)."""
    slot_tokens: float = 0.0
    """Expected tokens per physical expert slot: (stage tokens / edp) · top_k / slots_total."""
    expert_ffn: int = 0
    """Routed-expert FFN columns per rank: ceil(expert_ffn_size / etp)."""
    shared_ffn: int = 0
    """Shared-expert FFN columns per rank: ceil(shared_experts · shared_ffn / tp)."""


@dataclass(frozen=True, slots=True)
class Cost:
    """Shape of the op's output (or message), its bytes and FLOPs."""

    shape: tuple[int, ...]
    nbytes: int
    flops: float


def infeasible(plan: Plan, path: str, found: str, expected: str, fix: str) -> PlanInfeasible:
    """A :class:`PlanInfeasible` naming the YAML path and its line, if known."""
    loc = plan.where(path)
    where = plan.source or "plan"
    if loc is not None:
        where = f"{where}:{loc.line}:{loc.column}"
    return PlanInfeasible(f"{where}: {path}: found {found}; expected {expected}. Fix: {fix}")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _problems(plan: Plan, mesh: Mesh) -> list[tuple[bool, str, str, str, str]]:
    """(broken?, path, found, expected, fix) for every condition the build needs."""
    m, w = plan.model, plan.workload
    tp, cp, dp = mesh.sizes["tp"], mesh.sizes["cp"], mesh.sizes["dp"]
    mbs, experts = w.micro_batches, (m.moe.experts if m.moe else 0)
    experts += plan.parallel.redundant_experts if m.moe else 0
    big = "at most 32767 (the IR's int16 columns)"
    return [
        (m.heads % tp != 0, "model.heads", f"{m.heads} heads", f"a multiple of tp = {tp}",
         "choose tp dividing the attention heads"),
        (m.kv_heads % tp != 0 and tp % m.kv_heads != 0, "model.kv_heads",
         f"{m.kv_heads} KV heads with tp = {tp}",
         "tp to divide the KV heads or the KV heads to divide tp (replication)",
         "choose tp so that one of tp and kv_heads divides the other"),
        (w.batch % (dp * mbs) != 0, "workload.batch", f"batch {w.batch}",
         f"a multiple of attention dp · micro_batches = {dp}·{mbs}",
         "make the global batch split evenly over replicas and micro-batches"),
        (w.phase is Phase.PREFILL and w.prompt_len % cp != 0, "workload.prompt_len",
         f"{w.prompt_len} tokens", f"a multiple of cp = {cp}", "pad the prompt or lower cp"),
        (m.layers > INT16_MAX, "model.layers", str(m.layers), big, "model fewer layers"),
        (mbs > INT16_MAX, "workload.micro_batches", str(mbs), big, "use fewer micro-batches"),
        (w.decode_steps > INT16_MAX, "workload.decode_steps", str(w.decode_steps), big,
         "unroll fewer steps"),
        (experts > INT16_MAX, "model.moe.experts", f"{experts} physical experts", big,
         "model fewer experts"),
    ]  # fmt: skip


def _check(plan: Plan, mesh: Mesh) -> None:
    for broken, path, found, expected, fix in _problems(plan, mesh):
        if broken:
            raise infeasible(plan, path, found, expected, fix)


def derive_dims(plan: Plan, mesh: Mesh) -> Dims:
    """Sizes of one micro-batch on one rank (see docs/graph.md, "Sizes").

    Raises:
        PlanInfeasible: heads, KV heads, batch or prompt do not split over the mesh, or a
            count overflows the IR's int16 columns.
    """
    _check(plan, mesh)
    m, w = plan.model, plan.workload
    tp, cp = mesh.sizes["tp"], mesh.sizes["cp"]
    prefill = w.phase is Phase.PREFILL
    seqs = w.batch // (mesh.sizes["dp"] * w.micro_batches)
    tokens = seqs * (w.prompt_len // cp if prefill else 1)
    sp = plan.parallel.sequence_parallel and tp > 1
    kv_len = w.prompt_len + w.gen_len
    pairs = seqs * w.prompt_len**2 / (2 * cp) if prefill else seqs * kv_len / cp
    base = Dims(
        prefill=prefill, e=m.dtype.nbytes, h=m.hidden_size, tp=tp, cp=cp, seqs=seqs,
        tokens=tokens, stream=_cdiv(tokens, tp) if sp else tokens, pairs=pairs,
        prompt=w.prompt_len, heads=m.heads // tp,
        kv_heads=m.kv_heads // tp if m.kv_heads % tp == 0 else 1, head_dim=m.head_dim,
        ffn=_cdiv(m.ffn_size, tp), vocab=_cdiv(m.vocab_size, tp), gated=m.gated_ffn, mla=m.mla,
    )  # fmt: skip
    return _with_moe(plan, mesh, base)


def _with_moe(plan: Plan, mesh: Mesh, d: Dims) -> Dims:
    moe = plan.model.moe
    if moe is None:
        return d
    ep, etp, edp = mesh.sizes["ep"], mesh.sizes["etp"], mesh.sizes["edp"]
    total = moe.experts + plan.parallel.redundant_experts
    # Distinct tokens of one stage and micro-batch: every replica's share, and in prefill
    # every CP rank's chunk (decode CP ranks hold the same new tokens).
    stage_tokens = mesh.sizes["dp"] * d.tokens * (d.cp if d.prefill else 1)
    return replace(
        d, experts=moe.experts, top_k=moe.top_k, slots=total // ep,
        dispatch_tokens=stage_tokens / (ep * edp),
        slot_tokens=stage_tokens / edp * moe.top_k / total,
        expert_ffn=_cdiv(moe.expert_ffn_size, etp),
        shared_ffn=_cdiv(moe.shared_experts * moe.shared_ffn, d.tp),
    )  # fmt: skip


# --- per-op costs --------------------------------------------------------------------


def _act(rows: float, cols: int, d: Dims, flops: float = 0.0, elem: int = 0) -> Cost:
    r = math.ceil(rows)
    return Cost((r, cols), r * cols * (elem or d.e), flops)


def _norm(d: Dims) -> Cost:
    return _act(d.stream, d.h, d, 4.0 * d.stream * d.h)


def _residual(d: Dims) -> Cost:
    return _act(d.stream, d.h, d, 1.0 * d.stream * d.h)


def _hidden(d: Dims) -> Cost:
    return _act(d.tokens, d.h, d)


def _q_flops(d: Dims, mla: Mla) -> float:
    dqk = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    if mla.q_lora_rank:
        return 2.0 * d.tokens * (d.h * mla.q_lora_rank + mla.q_lora_rank * d.heads * dqk)
    return 2.0 * d.tokens * d.h * d.heads * dqk


def _qkv(d: Dims) -> Cost:
    if d.mla is None:
        cols = (d.heads + 2 * d.kv_heads) * d.head_dim
        return _act(d.tokens, cols, d, 2.0 * d.tokens * d.h * cols)
    a = d.mla
    latent = a.kv_lora_rank + a.qk_rope_head_dim
    flops = _q_flops(d, a) + 2.0 * d.tokens * d.h * latent
    if d.prefill:  # naive: up-project K and V per head
        flops += 2.0 * d.tokens * a.kv_lora_rank * d.heads * (a.qk_nope_head_dim + a.v_head_dim)
        dqk = a.qk_nope_head_dim + a.qk_rope_head_dim
        return _act(d.tokens, d.heads * (2 * dqk + a.v_head_dim), d, flops)
    # absorbed: fold W_UK into the query, attend in the latent space
    flops += 2.0 * d.tokens * d.heads * a.qk_nope_head_dim * a.kv_lora_rank
    return _act(d.tokens, d.heads * latent + latent, d, flops)


def _core_dims(d: Dims) -> tuple[int, int]:
    """Per-head (query-key, value) widths the core multiplies."""
    if d.mla is None:
        return d.head_dim, d.head_dim
    a = d.mla
    if d.prefill:
        return a.qk_nope_head_dim + a.qk_rope_head_dim, a.v_head_dim
    return a.kv_lora_rank + a.qk_rope_head_dim, a.kv_lora_rank


def _core(d: Dims) -> Cost:
    dqk, dv = _core_dims(d)
    return _act(d.tokens, d.heads * dv, d, 2.0 * d.pairs * d.heads * (dqk + dv))


def _cp_gather(d: Dims) -> Cost:
    if not d.prefill:  # partial outputs and log-sum-exp of each CP shard, fp32
        _, dv = _core_dims(d)
        return _act(d.cp * d.tokens, d.heads * (dv + 1), d, elem=4)
    if d.mla is None:
        return _act(d.seqs * d.prompt, 2 * d.kv_heads * d.head_dim, d)
    # Naive prefill: attn.qkv has up-projected only the local chunk's K/V, so the gather
    # carries per-head K (nope + rope) and V, as Megatron-Core's MLA under CP does.
    dqk, dv = _core_dims(d)
    return _act(d.seqs * d.prompt, d.heads * (dqk + dv), d)


def _out(d: Dims) -> Cost:
    dv = d.head_dim if d.mla is None else d.mla.v_head_dim
    flops = 2.0 * d.tokens * d.heads * dv * d.h
    if d.mla is not None and not d.prefill:  # W_UV: latent back to per-head values
        flops += 2.0 * d.tokens * d.heads * d.mla.kv_lora_rank * dv
    return _act(d.tokens, d.h, d, flops)


def _ffn_up(d: Dims) -> Cost:
    mats = 2 if d.gated else 1
    return _act(d.tokens, d.ffn, d, 2.0 * d.tokens * d.h * d.ffn * mats)


def _ffn_down(d: Dims) -> Cost:
    return _act(d.tokens, d.h, d, 2.0 * d.tokens * d.ffn * d.h)


def _mats(d: Dims) -> int:
    return 3 if d.gated else 2


def _router(d: Dims) -> Cost:
    return _act(d.stream, d.experts, d, 2.0 * d.stream * d.h * d.experts, elem=4)


def _topk(d: Dims) -> Cost:
    return _act(d.stream, d.top_k, d, 1.0 * d.stream * d.experts, elem=8)


def _dispatch(d: Dims) -> Cost:
    return _act(d.dispatch_tokens * d.top_k, d.h, d)


def _expert(d: Dims) -> Cost:
    flops = 2.0 * d.slot_tokens * d.h * d.expert_ffn * _mats(d)
    return _act(d.slot_tokens, d.h, d, flops)


def _etp_reduce(d: Dims) -> Cost:
    return _act(d.slots * d.slot_tokens, d.h, d)


def _combine(d: Dims) -> Cost:
    # The mirror of the dispatch: each rank gets back exactly the expert outputs of the
    # token copies it sent (docs/graph.md, "MoE token model").
    return _act(d.dispatch_tokens * d.top_k, d.h, d)


def _shared(d: Dims) -> Cost:
    return _act(d.tokens, d.h, d, 2.0 * d.tokens * d.h * d.shared_ffn * _mats(d))


def _embed(d: Dims) -> Cost:
    return _act(d.tokens, d.h, d)


def _lm_head(d: Dims) -> Cost:
    return _act(d.seqs, d.vocab, d, 2.0 * d.seqs * d.h * d.vocab)


def _last_rows(d: Dims) -> Cost:
    # Under SP the last position of each sequence sits on one TP rank: gather those b rows.
    return _act(d.seqs, d.h, d)


def _logits(d: Dims) -> Cost:
    return _act(d.seqs, d.vocab * d.tp, d)


def _sample(d: Dims) -> Cost:
    return Cost((d.seqs,), d.seqs * 4, 1.0 * d.seqs * d.vocab * d.tp)


def _final_norm(d: Dims) -> Cost:
    return _norm(d)


def _p2p(d: Dims) -> Cost:
    return _act(d.stream, d.h, d)


COSTS: dict[Op, Callable[[Dims], Cost]] = {
    Op.EMBED: _embed,
    Op.EMBED_ALLREDUCE: _hidden,
    Op.ATTN_NORM: _norm,
    Op.ATTN_ALLGATHER: _hidden,
    Op.ATTN_QKV: _qkv,
    Op.ATTN_CP_ALLGATHER: _cp_gather,
    Op.ATTN_CORE: _core,
    Op.ATTN_OUT: _out,
    Op.ATTN_ALLREDUCE: _hidden,
    Op.ATTN_REDUCESCATTER: _hidden,
    Op.ATTN_RESIDUAL: _residual,
    Op.MOE_NORM: _norm,
    Op.MOE_ROUTER: _router,
    Op.MOE_TOPK: _topk,
    Op.MOE_DISPATCH: _dispatch,
    Op.MOE_EXPERT: _expert,
    Op.MOE_ETP_REDUCE: _etp_reduce,
    Op.MOE_COMBINE: _combine,
    Op.MOE_SHARED: _shared,
    Op.MOE_SHARED_ALLREDUCE: _hidden,
    Op.MOE_RESIDUAL: _residual,
    Op.FFN_NORM: _norm,
    Op.FFN_ALLGATHER: _hidden,
    Op.FFN_UP: _ffn_up,
    Op.FFN_DOWN: _ffn_down,
    Op.FFN_ALLREDUCE: _hidden,
    Op.FFN_REDUCESCATTER: _hidden,
    Op.FFN_RESIDUAL: _residual,
    Op.FINAL_NORM: _final_norm,
    Op.LM_HEAD: _lm_head,
    Op.LOGITS_ALLGATHER: _logits,
    Op.SAMPLE: _sample,
    Op.PP_SEND: _p2p,
    Op.PP_RECV: _p2p,
    Op.MOE_SHARED_ALLGATHER: _hidden,
    Op.MOE_SHARED_REDUCESCATTER: _hidden,
    Op.EMBED_REDUCESCATTER: _hidden,
    Op.LM_ALLGATHER: _last_rows,
}
"""Every op's cost on one rank for one micro-batch; see docs/graph.md for the formulas."""


class CostTable:
    """Prices each (op, variant) once; its row number is the node's ``tmpl``."""

    def __init__(self, dims: Dims) -> None:
        self.dims = dims
        self._ids: dict[tuple[Op, bool], int] = {}
        self._costs: list[Cost] = []

    def id(self, op: Op, *, tokens: bool = False) -> int:
        """Template id of ``op``; ``tokens`` prices a send/recv of sampled token ids."""
        key = (op, tokens)
        if key not in self._ids:
            d = self.dims
            cost = Cost((d.seqs,), d.seqs * 4, 0.0) if tokens else COSTS[op](d)
            self._ids[key] = len(self._costs)
            self._costs.append(cost)
        return self._ids[key]

    def tables(
        self,
    ) -> tuple[list[tuple[int, ...]], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """``tmpl_shape``, ``tmpl_bytes``, ``tmpl_flops`` in id order."""
        shapes = [c.shape for c in self._costs]
        nbytes = np.array([c.nbytes for c in self._costs], dtype=np.int64)
        flops = np.array([c.flops for c in self._costs], dtype=np.float64)
        return shapes, nbytes, flops
