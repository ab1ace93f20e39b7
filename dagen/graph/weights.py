"""Weight bytes one node of an op holds resident on its rank, from :class:`Dims`.

The op registry (:mod:`dagen.graph.ops`) names one of these per op that holds weights;
a stage's resident weights are the sum over one block of its template
(:mod:`dagen.graph.residency`). Shards follow the layout the builder emits: TP-split
attention heads (KV heads replicated when tp > kv_heads, MLA's down-projections and norms
replicated, vLLM's MLA layout), TP-split FFN columns, the rank's expert slots, and the
vocabulary-parallel embedding and head. Formulas: docs/cost-model.md ("Memory").

Example:
    >>> norm(dims) == dims.h * dims.e  # doctest: +SKIP
    True
"""

from __future__ import annotations

from dagen.graph.dims import Dims
from dagen.plan.params import attention_params, ffn_matrices

__all__ = [
    "attn_out",
    "attn_qkv",
    "embed",
    "ffn_down",
    "ffn_up",
    "lm_head",
    "moe_expert",
    "moe_router",
    "moe_shared",
    "norm",
]


def _value_dim(d: Dims) -> int:
    return d.head_dim if d.mla is None else d.mla.v_head_dim


def norm(d: Dims) -> int:
    """An RMSNorm weight vector."""
    return round(d.h * d.e)


def attn_out(d: Dims) -> int:
    """The output projection of the rank's heads."""
    return round(d.heads * _value_dim(d) * d.h * d.ewa)


def attn_qkv(d: Dims) -> int:
    """The rest of the rank's attention: Q, K, V (or MLA's projections and their norms)."""
    whole = attention_params(d.h, d.heads, d.kv_heads, d.head_dim, d.mla)
    return round(whole * d.ewa) - attn_out(d)


def ffn_up(d: Dims) -> int:
    """The dense FFN's up (and gate) columns of the rank."""
    return round((ffn_matrices(d.gated) - 1) * d.h * d.ffn * d.ew)


def ffn_down(d: Dims) -> int:
    """The dense FFN's down rows of the rank."""
    return round(d.ffn * d.h * d.ew)


def moe_router(d: Dims) -> int:
    """The router (replicated on every rank)."""
    return round(d.h * d.experts * d.e)


def moe_expert(d: Dims) -> int:
    """One expert slot: the rank's 1/etp shard of one routed expert."""
    return round(ffn_matrices(d.gated) * d.h * d.expert_ffn * d.ew)


def moe_shared(d: Dims) -> int:
    """The rank's TP shard of the shared experts."""
    return round(ffn_matrices(d.gated) * d.h * d.shared_ffn * d.ew)


def embed(d: Dims) -> int:
    """The rank's vocabulary shard of the input embedding."""
    return round(d.vocab * d.h * d.e)


def lm_head(d: Dims) -> int:
    """The rank's vocabulary shard of the LM head (a tied head shares the embedding's)."""
    return round(d.vocab * d.h * d.e)
