"""Sizes of one micro-batch on one rank: what every op's shape, bytes and FLOPs depend on.

:func:`derive_dims` turns a plan and its mesh into :class:`Dims` (tokens, local heads,
shards, expected expert load). The op registry (:mod:`dagen.graph.ops`) prices every op
from a :class:`Dims`; ``docs/graph.md`` ("Sizes") writes every formula out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from dagen.graph.codes import Phase
from dagen.graph.serving import SteadyState, steady_state
from dagen.mesh import Mesh
from dagen.plan.model import Mla, Plan, Workload

__all__ = ["Cost", "Dims", "derive_dims", "steady"]


def steady(w: Workload, replicas: int) -> SteadyState:
    """The serving iteration of one of ``replicas`` attention replicas, at the expected
    lengths of the workload's distributions (fixed lengths: those lengths)."""
    chunk = w.prefill_chunk
    chunks = w.prompt_mean(lambda x: np.maximum(1, np.ceil(x / chunk))) if chunk else 1.0
    return steady_state(
        concurrency=w.batch, prompt=w.prompt_mean(), gen=w.gen_mean(), chunk=chunk,
        replicas=replicas, draft=w.speculative_tokens, step_tokens=w.tokens_per_step,
        prompt_sq=w.prompt_mean(np.square), gen_sq=w.gen_mean(np.square), chunks=chunks,
    )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Dims:
    """Per-rank sizes of one micro-batch (one decode step in decode)."""

    phase: Phase
    """The phase priced: prefill (the prompt) or decode (one token per sequence)."""
    e: float
    """Bytes per element of the activations (``precision.activations``)."""
    ew: float
    """Bytes per element of the matmul weights (``precision.weights``; norms, router,
    embeddings and LM head stay in the activations' format, as quantised checkpoints
    keep them)."""
    ewa: float
    """Bytes per element of the attention projections' weights (``precision.attention``)."""
    ekv: float
    """Bytes per element of the KV cache (``precision.kv_cache``)."""
    edisp: float
    """Bytes per element of the MoE dispatch payload (``precision.dispatch``)."""
    ecomb: float
    """Bytes per element of the MoE combine payload (``precision.combine``)."""
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
    pf_tokens: float = 0.0
    """Serving: prompt tokens of the iteration's prefill chunks (part of ``tokens``)."""
    pf_pairs: float = 0.0
    """Serving: query-key pairs of those chunks (part of ``pairs``; priced in prefill form)."""
    experts: int = 0
    top_k: int = 0
    slots: int = 0
    """Physical expert slots per EP rank: (experts + redundant) / ep."""
    dispatch_tokens: float = 0.0
    """Tokens a rank sends into the EP all-to-all: distinct stage tokens / (ep · edp)."""
    slot_tokens: float = 0.0
    """Expected tokens per physical expert slot: (stage tokens / edp) · top_k / slots_total."""
    routed_tokens: float = 0.0
    """Tokens one expert replica's router sees: stage tokens / edp."""
    expert_ffn: int = 0
    """Routed-expert FFN columns per rank: ceil(expert_ffn_size / etp)."""
    shared_ffn: int = 0
    """Shared-expert FFN columns per rank: ceil(shared_experts · shared_ffn / tp)."""

    @property
    def prefill(self) -> bool:
        """Whether the phase is prefill."""
        return self.phase is Phase.PREFILL


@dataclass(frozen=True, slots=True)
class Cost:
    """Shape of the op's output (or message), its bytes and FLOPs."""

    shape: tuple[int, ...]
    nbytes: int
    flops: float


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def derive_dims(plan: Plan, mesh: Mesh, *, chunk_tokens: float | None = None) -> Dims:
    """Sizes of one micro-batch on one rank (see docs/graph.md, "Sizes").

    The plan must pass its rules (:func:`dagen.plan.rules.plan_findings`): the sizes
    assume heads, KV heads, batch and prompt split over the mesh. ``chunk_tokens`` sets a
    serving iteration's prompt tokens (default: the steady state's mean, see
    :func:`iteration_mix`).
    """
    m, w, pr = plan.model, plan.workload, plan.dtypes
    tp, cp = mesh.sizes["tp"], mesh.sizes["cp"]
    prefill = not w.decoding
    seqs = w.batch // (mesh.sizes["dp"] * w.micro_batches)
    verify = 1 + w.speculative_tokens
    tokens = seqs * (w.prompt_len // cp if prefill else verify)
    kv_len = w.kv_context
    pairs = seqs * w.prompt_len**2 / (2 * cp) if prefill else seqs * verify * kv_len / cp
    pf_tokens = pf_pairs = 0.0
    if w.serving:
        ss = steady(w, mesh.sizes["dp"])
        mb = w.micro_batches
        seqs = max(1, math.ceil(ss.decode_seqs / mb))
        pf_tokens = ss.prefill_tokens / (mb * cp) if chunk_tokens is None else chunk_tokens
        tokens = math.ceil(seqs * verify + pf_tokens)
        pf_pairs = pf_tokens * ss.chunk_context
        pairs = seqs * verify * ss.context / cp + pf_pairs
    base = Dims(
        phase=Phase.PREFILL if prefill else Phase.DECODE, e=pr.activations.nbytes,
        ew=pr.weights.nbytes, ewa=pr.attention.nbytes, ekv=pr.kv_cache.nbytes, edisp=pr.dispatch.nbytes,
        ecomb=pr.combine.nbytes, h=m.hidden_size,
        tp=tp, cp=cp, seqs=seqs, tokens=tokens,
        stream=_cdiv(tokens, tp) if plan.parallel.sp_active else tokens, pairs=pairs,
        prompt=w.prompt_len, heads=m.heads // tp,
        kv_heads=m.kv_heads // tp if m.kv_heads % tp == 0 else 1, head_dim=m.head_dim,
        ffn=_cdiv(m.ffn_size, tp), vocab=_cdiv(m.vocab_size, tp), gated=m.gated_ffn, mla=m.mla,
        pf_tokens=pf_tokens, pf_pairs=pf_pairs,
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
        slot_tokens=stage_tokens / edp * moe.top_k / total, routed_tokens=stage_tokens / edp,
        expert_ffn=_cdiv(moe.expert_ffn_size, etp),
        shared_ffn=_cdiv(moe.shared_experts * moe.shared_ffn, d.tp),
    )  # fmt: skip


def iteration_mix(plan: Plan, mesh: Mesh) -> tuple[tuple[float, float], ...]:
    """A serving steady state's two kinds of iteration, as ``(share, prompt tokens)``.

    The scheduler admits a prompt chunk whole (up to the token budget) when a request
    leaves, so a share ``f = P / C`` of the iterations carries one chunk of ``C = E[I] / k``
    tokens (``k`` chunks a prompt) and the rest none, where the steady state's mean ``P``
    would spread them over every iteration. Empty where every iteration carries at least a
    chunk (``f ≥ 1``), or with micro-batches or context parallelism (the mean stands).
    """
    w = plan.workload
    if not w.serving or w.micro_batches != 1 or mesh.sizes["cp"] != 1:
        return ()
    ss = steady(w, mesh.sizes["dp"])
    chunk = w.prompt_mean() / ss.chunks
    share = ss.prefill_tokens / chunk if chunk > 0 else 1.0
    if not 0.0 < share < 1.0:
        return ()
    return ((share, chunk), (1.0 - share, 0.0))
