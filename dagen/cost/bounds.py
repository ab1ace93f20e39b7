"""First-principles bounds: what no schedule can beat, from the plan alone.

A token's forward pass multiplies it by every weight it uses, 2 FLOPs per weight
(multiply and add), and attends over its context; no implementation does less work.
Dividing by the achievable FLOP/s (``peak_tflops · flops_efficiency``) caps throughput
and floors latency whatever the kernels, overlap or schedule. A decode step must also
read, at least once, every weight a token always uses and the whole KV cache, which
floors the step time at the HBM rate. These bounds need no graph and no mesh, so they
judge plans that cannot even be built (docs/cost-model.md, "Bounds").

Example:
    >>> from dagen.cost.bounds import token_flops
    >>> token_flops(plan).per_token  # doctest: +SKIP
    3088143360.0
"""

from __future__ import annotations

from dataclasses import dataclass

from dagen.plan.model import Convention, DType, Hardware, Model, Phase, Plan
from dagen.plan.params import active_params, count_params, format_count

__all__ = [
    "TokenFlops",
    "achievable_flops",
    "achievable_hbm",
    "bound_world",
    "flop_rate",
    "fmt",
    "hbm_rate",
    "peak_flops",
    "peak_hbm",
    "token_flops",
    "total_weight_bytes",
]


def fmt(x: float, digits: int = 4) -> str:
    """A number for arithmetic text: ``3.088e+09``, ``77,720``, ``0.5``.

    >>> fmt(3088143360.0), fmt(77720.4), fmt(0.5)
    ('3.088e+09', '77,720', '0.5')
    """
    if x != 0 and (abs(x) >= 1e7 or abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenFlops:
    """FLOPs one token costs at least, in one phase."""

    phase: Phase
    active: int
    """Active parameters (``dagen.plan.params.active_params``)."""
    matmul: int
    """Weights a token is multiplied by in the layers: active − embeddings − norms."""
    attention: float
    """Attention FLOPs per token (scores and weighted values over its context)."""
    head: float
    """LM-head FLOPs per token (prefill: one token per sequence, spread over the prompt)."""
    per_token: float
    text: str
    """The arithmetic, written out."""


def _head_dims(m: Model) -> tuple[int, int]:
    if m.mla is not None:
        return m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim, m.mla.v_head_dim
    return m.head_dim, m.head_dim


def _context(plan: Plan, phase: Phase) -> float:
    """Mean keys a token attends to: (s + 1) / 2 causal in prefill, the prompt in decode."""
    s = plan.workload.prompt_len
    return (s + 1) / 2 if phase is Phase.PREFILL else float(s)


def token_flops(plan: Plan, phase: Phase | None = None) -> TokenFlops:
    """The fewest FLOPs one token of ``phase`` (default: the plan's) costs.

    ``2·matmul + layers·2·heads·(d_qk + d_v)·context + head``; decode counts the prompt
    as the context (the smallest a generated token sees); MLA counts its per-head
    dimensions (the cheaper, non-absorbed form).
    """
    m, w = plan.model, plan.workload
    phase = phase or w.phase
    embeddings = m.vocab_size * m.hidden_size * (1 if m.tied_embeddings else 2)
    norms = (2 * m.layers + 1) * m.hidden_size
    active = active_params(m)
    matmul = active - embeddings - norms
    dqk, dv = _head_dims(m)
    ctx = _context(plan, phase)
    attention = m.layers * 2.0 * m.heads * (dqk + dv) * ctx
    head = 2.0 * m.vocab_size * m.hidden_size
    if phase is Phase.PREFILL:
        head /= w.prompt_len
    per_token = 2.0 * matmul + attention + head
    text = (
        f"{fmt(per_token)} FLOP/token = 2 × {format_count(matmul)} matmul weights "
        f"(active {format_count(active)} − embeddings {format_count(embeddings)} − norms "
        f"{format_count(norms)}) + attention {m.layers} layers × 2·{m.heads} heads·"
        f"({dqk}+{dv})·{fmt(ctx)} keys = {fmt(attention)} + LM head 2·{m.vocab_size}·"
        f"{m.hidden_size}{f' / {w.prompt_len} prompt tokens' if phase is Phase.PREFILL else ''}"
        f" = {fmt(head)}"
    )
    return TokenFlops(
        phase=phase, active=active, matmul=matmul, attention=attention, head=head,
        per_token=per_token, text=text,
    )  # fmt: skip


def flop_rate(hw: Hardware, dtype: DType) -> tuple[float, str]:
    """FLOP/s one GPU of ``hw`` achieves at best in ``dtype``, and how it was found."""
    peak = hw.tflops(dtype)
    rate = peak * 1e12 * hw.flops_efficiency
    return rate, f"{fmt(peak)} TFLOP/s × {hw.flops_efficiency:g} = {fmt(rate)} FLOP/s"


def hbm_rate(hw: Hardware) -> tuple[float, str]:
    """HBM bytes/s one GPU of ``hw`` achieves at best, and how it was found."""
    rate = hw.hbm_tbps * 1e12 * hw.hbm_efficiency
    return rate, f"{fmt(hw.hbm_tbps)} TB/s × {hw.hbm_efficiency:g}"


def _fastest_math(plan: Plan) -> DType:
    """The plan's matmul format with the highest datasheet rate (the FFN's or, when
    ``precision.attention`` differs, the attention's): the safe side for a bound."""
    f, hw = plan.dtypes, plan.hardware
    return max((f.math, f.attention_math), key=hw.tflops)


def achievable_flops(plan: Plan) -> tuple[float, str]:
    """FLOP/s one GPU of the plan achieves with its ``flops_efficiency``, and how."""
    return flop_rate(plan.hardware, _fastest_math(plan))


def achievable_hbm(plan: Plan) -> tuple[float, str]:
    """HBM bytes/s one GPU of the plan achieves with its ``hbm_efficiency``, and how."""
    return hbm_rate(plan.hardware)


def peak_flops(plan: Plan) -> tuple[float, str]:
    """The datasheet's dense FLOP/s of one GPU in the plan's matmul format: the physical
    limit the bounds use (no efficiency factor)."""
    fmt_ = _fastest_math(plan)
    peak = plan.hardware.tflops(fmt_) * 1e12
    return peak, f"{fmt(peak / 1e12)} TFLOP/s ({fmt_.value} datasheet peak)"


def peak_hbm(plan: Plan) -> tuple[float, str]:
    """The datasheet's HBM bytes/s of one GPU (no efficiency factor)."""
    peak = plan.hardware.hbm_tbps * 1e12
    return peak, f"{fmt(plan.hardware.hbm_tbps)} TB/s (datasheet peak)"


def bound_world(plan: Plan) -> tuple[int, str]:
    """The most GPUs any reading of the plan gives it (the safe side for a lower bound
    on time): the declared ``world_size`` and the degrees' product under either
    convention."""
    p = plan.parallel
    folded = p.tp * p.cp * p.dp * p.pp
    orthogonal = p.tp * p.cp * p.ep * p.dp * p.pp
    candidates = {"tp·cp·dp·pp": folded, "tp·cp·ep·dp·pp": orthogonal}
    if p.world_size is not None:
        candidates["world_size"] = p.world_size
    if p.convention is Convention.ORTHOGONAL:
        candidates.pop("tp·cp·dp·pp")
    name, world = max(candidates.items(), key=lambda kv: kv[1])
    return world, f"{world} GPUs ({name}, the largest reading)"


def total_weight_bytes(plan: Plan) -> int:
    """Bytes of every weight of the model, once, in the weights' format (embeddings,
    norms and head counted in it too: a lower bound never overstates)."""
    f = plan.dtypes
    return round(
        count_params(plan.model) * min(f.weights.nbytes, f.attention.nbytes, f.activations.nbytes)
    )
