"""HBM traffic of every compute op on one rank for one micro-batch, from :class:`Dims`.

The graph's ``tmpl_bytes`` is an op's output only; a roofline also needs what the op
reads: the weights of its shard, the activations it reads and writes, and the KV cache
it reads or writes. The op registry (:mod:`dagen.graph.ops`) names one function here per
compute op; every formula is written out in docs/cost-model.md ("Compute nodes").

Example:
    >>> from dagen.graph.traffic import Traffic
    >>> Traffic(weights=8.0, act_in=2.0, act_out=2.0).total
    12.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from dagen.graph import opcost
from dagen.graph.dims import Cost, Dims
from dagen.plan.params import ffn_matrices, kv_entry

__all__ = [
    "Traffic",
    "attn_core",
    "attn_out",
    "attn_qkv",
    "embed",
    "expert_hit",
    "ffn_down",
    "ffn_up",
    "kv_token_bytes",
    "lm_head",
    "moe_expert",
    "moe_router",
    "moe_shared",
    "moe_topk",
    "norm",
    "residual",
    "sample",
]


@dataclass(frozen=True, slots=True)
class Traffic:
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


def _nbytes(cost: Callable[[Dims], Cost], d: Dims) -> float:
    return float(cost(d).nbytes)


def kv_token_bytes(d: Dims) -> float:
    """KV-cache bytes one token adds to one layer on one rank (MLA: the shared latent)."""
    return float(kv_entry(d.kv_heads, d.head_dim, d.mla) * d.ekv)


def _qkv_weights(d: Dims) -> float:
    if d.mla is None:
        return float(d.h * (d.heads + 2 * d.kv_heads) * d.head_dim * d.ewa)
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
    return float((q + kv_down + a.kv_lora_rank * d.heads * up) * d.ewa)


def _value_dim(d: Dims) -> int:
    return d.head_dim if d.mla is None else d.mla.v_head_dim


def embed(d: Dims) -> Traffic:
    """Vocab-parallel lookup: each TP rank gathers the rows of its shard."""
    return Traffic(d.tokens * d.h * d.e / d.tp, 4.0 * d.tokens, _nbytes(opcost.embed, d))


def norm(d: Dims) -> Traffic:
    """RMSNorm: its weight vector, the stream in and out."""
    return Traffic(float(d.h * d.e), float(d.stream * d.h * d.e), _nbytes(opcost.norm, d))


def residual(d: Dims) -> Traffic:
    """Residual add: two stream tensors in, one out."""
    return Traffic(0.0, float(2 * d.stream * d.h * d.e), _nbytes(opcost.residual, d))


def attn_qkv(d: Dims) -> Traffic:
    return Traffic(_qkv_weights(d), float(d.tokens * d.h * d.e), _nbytes(opcost.qkv, d))


def attn_core(d: Dims) -> Traffic:
    read = _nbytes(opcost.qkv, d)
    if d.prefill:
        if d.cp > 1:  # the other shards' keys and values, gathered
            read += _nbytes(opcost.cp_gather, d) * (d.cp - 1) / d.cp
        kv = d.tokens * kv_token_bytes(d)  # write the prompt's cache
    else:  # read the whole context, write the new tokens' entries
        # (serving: a prefill chunk reads its prompt's earlier chunks and writes its own)
        kv = (d.pairs - d.pf_pairs + d.tokens / d.cp) * kv_token_bytes(d)
        kv += 2 * d.pf_pairs / max(d.prompt, 1) * kv_token_bytes(d)
    return Traffic(0.0, read, _nbytes(opcost.core, d), kv)


def attn_out(d: Dims) -> Traffic:
    dv = _value_dim(d)
    w = d.heads * dv * d.h
    if d.mla is not None and not d.prefill:  # W_UV: latent back to per-head values
        w += d.heads * d.mla.kv_lora_rank * dv
    return Traffic(float(w * d.ewa), float(d.tokens * d.heads * dv * d.e), _nbytes(opcost.out, d))


def moe_router(d: Dims) -> Traffic:
    return Traffic(
        float(d.h * d.experts * d.e), float(d.stream * d.h * d.e), _nbytes(opcost.router, d)
    )


def moe_topk(d: Dims) -> Traffic:
    return Traffic(0.0, float(d.stream * d.experts * 4), _nbytes(opcost.topk, d))


def _p_used(slot_tokens: float, routed: float) -> float:
    if slot_tokens <= 0:
        return 0.0
    if routed <= slot_tokens:  # every token reaches the slot (q = 1)
        return 1.0
    return -math.expm1(routed * math.log1p(-slot_tokens / routed))


def expert_hit(d: Dims) -> float:
    """The probability that an expert slot is used in one micro-batch: its weights are
    read only if at least one of the T routed tokens picks it; each does with probability
    q = slot_tokens / T (top_k of the slots, uniform), so 1 − (1 − q)^T
    (→ 1 − e^(−slot_tokens) for many slots)."""
    return _p_used(d.slot_tokens, d.routed_tokens)


def moe_expert(d: Dims) -> Traffic:
    p_used = expert_hit(d)
    w = ffn_matrices(d.gated) * d.h * d.expert_ffn * d.ew * p_used
    inter = d.slot_tokens * d.expert_ffn * d.e  # the activated intermediate, written then read
    return Traffic(w, d.slot_tokens * d.h * d.e + inter, _nbytes(opcost.expert, d) + inter)


def moe_shared(d: Dims) -> Traffic:
    w = ffn_matrices(d.gated) * d.h * d.shared_ffn * d.ew
    inter = d.tokens * d.shared_ffn * d.e
    return Traffic(float(w), d.tokens * d.h * d.e + inter, _nbytes(opcost.shared, d) + inter)


def ffn_up(d: Dims) -> Traffic:
    return Traffic(
        float((ffn_matrices(d.gated) - 1) * d.h * d.ffn * d.ew),
        float(d.tokens * d.h * d.e),
        _nbytes(opcost.ffn_up, d),
    )


def ffn_down(d: Dims) -> Traffic:
    return Traffic(
        float(d.ffn * d.h * d.ew), float(d.tokens * d.ffn * d.e), _nbytes(opcost.ffn_down, d)
    )


def lm_head(d: Dims) -> Traffic:
    return Traffic(
        float(d.vocab * d.h * d.e), float(d.seqs * d.h * d.e), _nbytes(opcost.lm_head, d)
    )


def sample(d: Dims) -> Traffic:
    return Traffic(0.0, float(d.seqs * d.vocab * d.tp * d.e), _nbytes(opcost.sample, d))
