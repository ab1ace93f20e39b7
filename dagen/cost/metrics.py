"""The figures a claim, ``dagen compare`` and ``dagen search`` name, read off an estimate.

One home for each metric of :class:`dagen.plan.claims.Metric` (formulas in
docs/cost-model.md, "Metrics"):

* ``gpu_utilization``: compute-stream busy time over the makespan, the mean over GPUs
  (what ``nvidia-smi`` "GPU-Util" approximates: some kernel is running);
* ``mfu``: model FLOPs per second over the datasheet peak of every GPU,
  ``tokens/s × FLOP/token ÷ (GPUs × peak)``, with the FLOPs per token of
  :func:`dagen.cost.bounds.token_flops` (PaLM's definition, arXiv 2204.02311 App. B,
  for inference: no backward pass);
* ``comm_s`` / ``comm_share``: the time the critical path spends in communication nodes
  (communication no compute hides), and that over the makespan;
* ``memory_gib`` / ``memory_fraction``: the fullest GPU's peak.

Example:
    >>> f = figures(plan, estimate)  # doctest: +SKIP
    >>> f.value(Metric.MFU)  # doctest: +SKIP
    0.41
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dagen.cost.bounds import peak_flops, token_flops
from dagen.cost.memory import GIB
from dagen.plan.claims import Metric
from dagen.plan.model import Plan

if TYPE_CHECKING:
    from dagen.cost.estimator import Estimate

__all__ = ["Figures", "figures"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    """Every metric of one estimate; None where the phase gives none."""

    world: int
    makespan_s: float
    ttft_s: float | None
    tpot_ms: float | None
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    memory_gib: float
    memory_fraction: float
    gpu_utilization: float
    mfu: float
    comm_s: float
    comm_share: float
    bubble_fraction: float
    flop_per_token: float
    """The FLOPs per token the MFU counts."""
    peak_flops: float
    """One GPU's peak FLOP/s the MFU divides by."""

    def value(self, metric: Metric) -> float | None:
        """The figure ``metric`` names."""
        out: float | None = getattr(self, metric.value)
        return out


def figures(plan: Plan, est: Estimate) -> Figures:
    """The metrics of ``est``, the estimate of ``plan``."""
    world = int(est.memory.total_bytes.shape[0])
    cp = est.critical_path
    comm = float(est.duration_s[cp][est.stream[cp] == 1].sum()) if cp.size else 0.0
    span = est.makespan_s
    tf = token_flops(plan).per_token
    peak = peak_flops(plan)[0]
    mfu = est.tokens_per_s * tf / (world * peak) if peak > 0 else 0.0
    tpot = est.tpot_s * 1e3 if est.tpot_s is not None else None
    return Figures(
        world=world, makespan_s=span, ttft_s=est.ttft_s, tpot_ms=tpot,
        tokens_per_s=est.tokens_per_s, tokens_per_s_per_gpu=est.tokens_per_s_per_gpu,
        memory_gib=float(est.memory.total_bytes.max()) / GIB,
        memory_fraction=float(est.memory.peak_fraction),
        gpu_utilization=float(np.mean(est.busy_fraction)) if world else 0.0,
        mfu=mfu, comm_s=comm, comm_share=comm / span if span > 0 else 0.0,
        bubble_fraction=est.bubble_fraction, flop_per_token=tf, peak_flops=peak,
    )  # fmt: skip
