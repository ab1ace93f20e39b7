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

from dagen.cost.bounds import fmt, peak_hbm, total_weight_bytes
from dagen.cost.memory import MemoryReport
from dagen.plan.model import Plan
from dagen.plan.params import kv_entry, routed_params

__all__ = ["kv_bytes_per_token", "routed_weight_bytes", "step_bytes_bound"]


def kv_bytes_per_token(plan: Plan) -> int:
    """KV-cache bytes one token adds over all layers (MLA: the shared latent)."""
    m = plan.model
    return round(m.layers * kv_entry(m.kv_heads, m.head_dim, m.mla) * plan.dtypes.kv_cache.nbytes)


def routed_weight_bytes(plan: Plan) -> int:
    """Bytes of every routed expert of every MoE layer."""
    return round(routed_params(plan.model) * plan.dtypes.weights.nbytes)


def step_bytes_bound(plan: Plan, memory: MemoryReport | None, world: int) -> tuple[float, str]:
    """Seconds a decode step needs at least to read its bytes at the datasheet HBM rate,
    and the arithmetic."""
    w = plan.workload
    rate, rate_text = peak_hbm(plan)
    prompt_share = w.prompt_len / (w.prompt_len + w.gen_len)
    if memory is not None:
        must = (memory.weights_bytes - memory.routed_bytes) + memory.kv_bytes * prompt_share
        rank = int(must.argmax())
        seconds = float(must[rank]) / rate
        return seconds, (
            f"rank {rank} reads its {fmt(float(must[rank]) / 1e9)} GB of non-routed weights "
            f"and prompt KV cache at {rate_text} = {fmt(seconds)} s"
        )
    weights = total_weight_bytes(plan) - routed_weight_bytes(plan)
    kv = w.batch * w.prompt_len * kv_bytes_per_token(plan)
    seconds = (weights + kv) / (world * rate)
    return seconds, (
        f"{fmt(weights / 1e9)} GB of non-routed weights + {fmt(kv / 1e9)} GB of prompt KV "
        f"cache over {world} GPUs at {rate_text} = {fmt(seconds)} s"
    )
