"""Parameter counts of a :class:`~dagen.plan.model.Model`, from its dimensions alone.

:func:`count_params` is what the weights hold; :func:`active_params` is what one
token touches (top-k routed experts instead of all of them). Both count:

* the input embedding, and the LM head unless ``tied_embeddings``;
* per layer, two RMSNorm weight vectors, attention and an FFN; one final norm;
* attention: Q/K/V/O projections with GQA/MQA (``kv_heads``), or MLA's low-rank
  projections and their norms (DeepSeek-V2/V3 layout);
* FFN: dense on dense layers (``3·h·f`` gated, ``2·h·f`` not); on MoE layers the
  routed experts, the shared experts and the router (``h·experts``).

Biases, QK-norm weights, rotary tables and multi-token-prediction heads are left
out; they change totals by far less than 0.1%.

Example:
    >>> from dagen.plan.model import Model
    >>> m = Model(name="t", layers=2, hidden_size=8, heads=2, kv_heads=2, head_dim=4,
    ...           ffn_size=16, vocab_size=10)
    >>> count_params(m)  # embeddings 2·10·8 + 2 layers·(4·8·8 + 3·8·16 + 2·8) + final norm 8
    1480
"""

from __future__ import annotations

import re

from dagen.plan.model import Mla, Model, Moe

__all__ = [
    "active_params",
    "attention_params",
    "count_params",
    "ffn_matrices",
    "format_count",
    "kv_entry",
    "moe_layers",
    "parse_count",
    "routed_params",
]

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_COUNT = re.compile(r"([0-9][0-9_]*(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtT]?)")


def parse_count(text: str) -> float | None:
    """A count written as text: ``10B``, ``46.7B``, ``671e9``, ``1.5T``, ``7M``, ``1_000``.

    Suffixes are decimal (K = 1e3, M = 1e6, B or G = 1e9, T = 1e12), any case.
    Returns None when the text is not such a count.

    >>> parse_count("235B"), parse_count("671e9"), parse_count("ten")
    (235000000000.0, 671000000000.0, None)
    """
    match = _COUNT.fullmatch(text.strip())
    if match is None:
        return None
    return float(match.group(1).replace("_", "")) * _SUFFIX[match.group(2).lower()]


def format_count(n: float) -> str:
    """A count for messages: ``46.70B``, ``671.03B``, ``7.24M``.

    >>> format_count(46_702_792_704)
    '46.70B'
    """
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return f"{n:g}"


def attention_params(h: int, heads: int, kv_heads: int, head_dim: int, mla: Mla | None) -> int:
    """Weights of one attention layer with ``heads`` query and ``kv_heads`` KV heads
    (the whole model's, or one tensor-parallel rank's share).

    >>> attention_params(8, 2, 2, 4, None)  # Q, O: 2·8·2·4; K, V: 2·8·2·4
    256
    """
    if mla is not None:
        return _mla(h, heads, mla)
    return 2 * h * heads * head_dim + 2 * h * kv_heads * head_dim


def kv_entry(kv_heads: int, head_dim: int, mla: Mla | None) -> int:
    """Elements one token adds to one layer's KV cache (MLA: the shared latent and rope key)."""
    if mla is not None:
        return mla.kv_lora_rank + mla.qk_rope_head_dim
    return 2 * kv_heads * head_dim


def ffn_matrices(gated: bool) -> int:
    """Weight matrices of an FFN: 3 gated (gate, up, down), else 2."""
    return 3 if gated else 2


def _mla(h: int, n: int, a: Mla) -> int:
    """MLA's weights: down-projections and their norms, per-head up-projections, output."""
    qk_dim = a.qk_nope_head_dim + a.qk_rope_head_dim
    if a.q_lora_rank > 0:  # down-projection, its norm, up-projection
        q = h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * n * qk_dim
    else:
        q = h * n * qk_dim
    kv_down = h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank
    kv_up = a.kv_lora_rank * n * (a.qk_nope_head_dim + a.v_head_dim)
    out = n * a.v_head_dim * h
    return q + kv_down + kv_up + out


def _ffn(m: Model, width: int) -> int:
    return ffn_matrices(m.gated_ffn) * m.hidden_size * width


def moe_layers(m: Model) -> int:
    """How many of the model's layers are MoE layers."""
    if m.moe is None:
        return 0
    return sum(1 for layer in range(m.layers) if m.moe.is_moe_layer(layer))


def _moe_ffn(m: Model, moe: Moe, routed: int) -> int:
    """FFN weights of one MoE layer with ``routed`` routed experts counted."""
    shared = moe.shared_experts * _ffn(m, moe.shared_ffn)
    router = m.hidden_size * moe.experts
    return routed * _ffn(m, moe.expert_ffn_size) + shared + router


def _total(m: Model, routed: int) -> int:
    embed = m.vocab_size * m.hidden_size * (1 if m.tied_embeddings else 2)
    per_layer = attention_params(m.hidden_size, m.heads, m.kv_heads, m.head_dim, m.mla)
    per_layer += 2 * m.hidden_size
    n_moe = moe_layers(m)
    ffn = (m.layers - n_moe) * _ffn(m, m.ffn_size)
    if m.moe is not None:
        ffn += n_moe * _moe_ffn(m, m.moe, routed)
    return embed + m.layers * per_layer + ffn + m.hidden_size


def count_params(model: Model) -> int:
    """Total parameters of ``model`` (all experts).

    Example:
        >>> from dagen.plan.model import Model, Moe
        >>> moe = Moe(experts=4, top_k=1, expert_ffn_size=16)
        >>> m = Model(name="t", layers=1, hidden_size=8, heads=2, kv_heads=2, head_dim=4,
        ...           ffn_size=16, vocab_size=10, moe=moe)
        >>> count_params(m)  # 160 + attention 256 + norms 16 + experts 4·384 + router 32 + 8
        2008
    """
    routed = model.moe.experts if model.moe is not None else 0
    return _total(model, routed)


def active_params(model: Model) -> int:
    """Parameters one token uses: all but the routed experts it is not sent to.

    The input embedding counts in full, as in the published "active" figures.
    """
    routed = model.moe.top_k if model.moe is not None else 0
    return _total(model, routed)


def routed_params(model: Model) -> int:
    """Parameters of every routed expert of every MoE layer (0 without MoE)."""
    return count_params(model) - _total(model, 0)
