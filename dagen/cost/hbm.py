"""The HBM floor of a decode step: bytes every step must read, at the achievable rate.

Each step reads, at least once, every weight a token always uses (all but the routed
experts, which a step may skip when no token picks them) and the KV cache of the
prompt (the least context a generated token attends to). With the memory report this
is per rank (the fullest rank sets the floor); without it, the model's bytes spread
evenly over every GPU.

Example:
    >>> from dagen.cost.hbm import step_bytes_bound
    >>> seconds, why = step_bytes_bound(plan, None, 8)  # doctest: +SKIP
"""

from __future__ import annotations

from dagen.cost.bounds import fmt, total_weight_bytes
from dagen.cost.memory import MemoryReport
from dagen.plan.model import Model, Plan

__all__ = ["kv_bytes_per_token", "routed_weight_bytes", "step_bytes_bound"]


def kv_bytes_per_token(m: Model) -> int:
    """KV-cache bytes one token adds over all layers (MLA: the shared latent)."""
    if m.mla is not None:
        per_layer = m.mla.kv_lora_rank + m.mla.qk_rope_head_dim
    else:
        per_layer = 2 * m.kv_heads * m.head_dim
    return m.layers * per_layer * m.dtype.nbytes


def routed_weight_bytes(m: Model) -> int:
    """Bytes of every routed expert of every MoE layer."""
    if m.moe is None:
        return 0
    moe = m.moe
    layers = sum(1 for layer in range(m.layers) if moe.is_moe_layer(layer))
    mats = 3 if m.gated_ffn else 2
    return layers * moe.experts * mats * m.hidden_size * moe.expert_ffn_size * m.dtype.nbytes


def _rate(plan: Plan) -> tuple[float, str]:
    hw = plan.hardware
    rate = hw.hbm_tbps * 1e12 * hw.hbm_efficiency
    return rate, f"{fmt(hw.hbm_tbps)} TB/s × {hw.hbm_efficiency:g}"


def step_bytes_bound(plan: Plan, memory: MemoryReport | None, world: int) -> tuple[float, str]:
    """Seconds a decode step needs at least to read its bytes, and the arithmetic."""
    w = plan.workload
    rate, rate_text = _rate(plan)
    prompt_share = w.prompt_len / (w.prompt_len + w.gen_len)
    if memory is not None:
        must = (memory.weights_bytes - memory.routed_bytes) + memory.kv_bytes * prompt_share
        rank = int(must.argmax())
        seconds = float(must[rank]) / rate
        return seconds, (
            f"rank {rank} reads its {fmt(float(must[rank]) / 1e9)} GB of non-routed weights "
            f"and prompt KV cache at {rate_text} = {fmt(seconds)} s"
        )
    weights = total_weight_bytes(plan) - routed_weight_bytes(plan.model)
    kv = w.batch * w.prompt_len * kv_bytes_per_token(plan.model)
    seconds = (weights + kv) / (world * rate)
    return seconds, (
        f"{fmt(weights / 1e9)} GB of non-routed weights + {fmt(kv / 1e9)} GB of prompt KV "
        f"cache over {world} GPUs at {rate_text} = {fmt(seconds)} s"
    )
