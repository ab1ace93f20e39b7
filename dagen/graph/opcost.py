"""Shape, bytes and FLOPs of every op on one rank for one micro-batch, from :class:`Dims`.

The op registry (:mod:`dagen.graph.ops`) names one of these per op. Every formula is
written out in ``docs/graph.md``; the docstrings here only name the conventions.

Conventions:
    * A matmul ``[m, k] @ [k, n]`` costs ``2·m·n·k`` FLOPs.
    * Compute bytes are the bytes of the op's output activation.
    * Collective bytes are the nccl-tests "size" of the call on one rank: the buffer of an
      all-reduce, the gathered output of an all-gather, the input of a reduce-scatter,
      the send buffer of an all-to-all. Send/recv bytes are the message.
"""

from __future__ import annotations

import math
from dataclasses import replace

from dagen.graph.codes import Phase
from dagen.graph.dims import Cost, Dims
from dagen.plan.model import Mla

__all__ = [
    "combine",
    "core",
    "core_dims",
    "cp_gather",
    "dispatch",
    "embed",
    "etp_reduce",
    "expert",
    "ffn_down",
    "ffn_up",
    "final_norm",
    "hidden",
    "kv_cache",
    "kv_token_bytes",
    "last_rows",
    "lm_head",
    "logits",
    "norm",
    "out",
    "p2p",
    "qkv",
    "residual",
    "router",
    "sample",
    "shared",
    "token_ids",
    "topk",
]


def _act(rows: float, cols: int, d: Dims, flops: float = 0.0, elem: float = 0.0) -> Cost:
    r = math.ceil(rows)
    return Cost((r, cols), math.ceil(r * cols * (elem or d.e)), flops)


def norm(d: Dims) -> Cost:
    return _act(d.stream, d.h, d, 4.0 * d.stream * d.h)


def residual(d: Dims) -> Cost:
    return _act(d.stream, d.h, d, 1.0 * d.stream * d.h)


def hidden(d: Dims) -> Cost:
    return _act(d.tokens, d.h, d)


def _q_flops(d: Dims, mla: Mla) -> float:
    dqk = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    if mla.q_lora_rank:
        return 2.0 * d.tokens * (d.h * mla.q_lora_rank + mla.q_lora_rank * d.heads * dqk)
    return 2.0 * d.tokens * d.h * d.heads * dqk


def qkv(d: Dims) -> Cost:
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


def core_dims(d: Dims) -> tuple[int, int]:
    """Per-head (query-key, value) widths the core multiplies."""
    if d.mla is None:
        return d.head_dim, d.head_dim
    a = d.mla
    if d.prefill:
        return a.qk_nope_head_dim + a.qk_rope_head_dim, a.v_head_dim
    return a.kv_lora_rank + a.qk_rope_head_dim, a.kv_lora_rank


def core_flops(d: Dims) -> tuple[float, float]:
    """The attention core's FLOPs: (the decode or prompt pairs in the phase's own form, a
    serving iteration's prefill chunks in prefill form, MLA not absorbed)."""
    dqk, dv = core_dims(d)
    own = 2.0 * (d.pairs - d.pf_pairs) * d.heads * (dqk + dv)
    if not d.pf_pairs:
        return own, 0.0
    pqk, pv = core_dims(replace(d, phase=Phase.PREFILL))
    return own, 2.0 * d.pf_pairs * d.heads * (pqk + pv)


def core(d: Dims) -> Cost:
    _, dv = core_dims(d)
    return _act(d.tokens, d.heads * dv, d, sum(core_flops(d)))


def cp_gather(d: Dims) -> Cost:
    if not d.prefill:  # partial outputs and log-sum-exp of each CP shard, fp32
        _, dv = core_dims(d)
        return _act(d.cp * d.tokens, d.heads * (dv + 1), d, elem=4)
    if d.mla is None:
        return _act(d.seqs * d.prompt, 2 * d.kv_heads * d.head_dim, d)
    # Naive prefill: attn.qkv has up-projected only the local chunk's K/V, so the gather
    # carries per-head K (nope + rope) and V, as Megatron-Core's MLA under CP does.
    dqk, dv = core_dims(d)
    return _act(d.seqs * d.prompt, d.heads * (dqk + dv), d)


def out(d: Dims) -> Cost:
    dv = d.head_dim if d.mla is None else d.mla.v_head_dim
    flops = 2.0 * d.tokens * d.heads * dv * d.h
    if d.mla is not None and not d.prefill:  # W_UV: latent back to per-head values
        flops += 2.0 * d.tokens * d.heads * d.mla.kv_lora_rank * dv
    return _act(d.tokens, d.h, d, flops)


def ffn_up(d: Dims) -> Cost:
    mats = 2 if d.gated else 1
    return _act(d.tokens, d.ffn, d, 2.0 * d.tokens * d.h * d.ffn * mats)


def ffn_down(d: Dims) -> Cost:
    return _act(d.tokens, d.h, d, 2.0 * d.tokens * d.ffn * d.h)


def _mats(d: Dims) -> int:
    return 3 if d.gated else 2


def router(d: Dims) -> Cost:
    return _act(d.stream, d.experts, d, 2.0 * d.stream * d.h * d.experts, elem=4)


def topk(d: Dims) -> Cost:
    return _act(d.stream, d.top_k, d, 1.0 * d.stream * d.experts, elem=8)


def dispatch(d: Dims) -> Cost:
    return _act(d.dispatch_tokens * d.top_k, d.h, d, elem=d.edisp)


def expert(d: Dims) -> Cost:
    flops = 2.0 * d.slot_tokens * d.h * d.expert_ffn * _mats(d)
    return _act(d.slot_tokens, d.h, d, flops)


def etp_reduce(d: Dims) -> Cost:
    return _act(d.slots * d.slot_tokens, d.h, d)


def combine(d: Dims) -> Cost:
    # The mirror of the dispatch: each rank gets back exactly the expert outputs of the
    # token copies it sent (docs/graph.md, "MoE token model").
    return _act(d.dispatch_tokens * d.top_k, d.h, d, elem=d.ecomb)


def shared(d: Dims) -> Cost:
    return _act(d.tokens, d.h, d, 2.0 * d.tokens * d.h * d.shared_ffn * _mats(d))


def embed(d: Dims) -> Cost:
    return _act(d.tokens, d.h, d)


def lm_head(d: Dims) -> Cost:
    return _act(d.seqs, d.vocab, d, 2.0 * d.seqs * d.h * d.vocab)


def last_rows(d: Dims) -> Cost:
    # Under SP the last position of each sequence sits on one TP rank: gather those b rows.
    return _act(d.seqs, d.h, d)


def logits(d: Dims) -> Cost:
    return _act(d.seqs, d.vocab * d.tp, d)


def sample(d: Dims) -> Cost:
    return Cost((d.seqs,), d.seqs * 4, 1.0 * d.seqs * d.vocab * d.tp)


def final_norm(d: Dims) -> Cost:
    return norm(d)


def p2p(d: Dims) -> Cost:
    return _act(d.stream, d.h, d)


def kv_token_bytes(d: Dims) -> float:
    """KV-cache bytes of one token of one layer on a rank: K and V of its KV heads
    (2 · kv_heads · head_dim) or the MLA latent (kv_lora_rank + qk_rope_head_dim), in the
    KV-cache format."""
    width = (
        2 * d.kv_heads * d.head_dim
        if d.mla is None
        else d.mla.kv_lora_rank + d.mla.qk_rope_head_dim
    )
    return width * d.ekv


def kv_cache(d: Dims) -> Cost:
    """One layer of a micro-batch's KV cache on a rank (a transfer's messages are sized by
    :mod:`dagen.graph.reshard`, which splits this over requests, layers and heads)."""
    return Cost((d.seqs, d.prompt), round(d.seqs * d.prompt * kv_token_bytes(d)), 0.0)


def token_ids(d: Dims) -> Cost:
    """A send or recv of the sampled token ids (int32, one per sequence): the decode chain."""
    return Cost((d.seqs,), d.seqs * 4, 0.0)
