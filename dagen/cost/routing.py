"""The busiest expert-parallel rank under balanced routing.

Every rank of an expert-parallel group waits for the slowest at each combine, so a MoE
layer takes the time of the rank that received the most (token, expert) pairs. Even a
perfect load balancer only equalises the *expected* load: each of a micro-batch's
``T · top_k`` pairs still lands on one of the ``R`` ranks at random (SGLang's "simulated
perfect EPLB", random expert selection, is this case: lm-sys blog 2025-05-05
"Large-scale EP"). A rank's pairs are then binomial with mean ``μ`` (its expected share)
and variance ``μ (1 − 1/R)``, and the expected largest of ``R`` such loads is

    peak = 1 + z_R · √((1 − 1/R) / μ),   z_R = Φ⁻¹((R − 0.375) / (R + 0.25))

(``z_R`` Blom's 1958 approximation of the expected maximum of ``R`` standard normals).
Skew beyond this (experts more popular than the balancer corrects) is the traffic's:
a plan that measured it gives ``workload.expert_balance`` (mean over max pairs per rank,
SGLang's "balancedness"), and ``peak = 1 / expert_balance``. The roofline scales the
expert GEMMs' FLOPs and the dispatch and combine bytes by ``peak``; the measured MoE
tables already carry their own (skewed) routing.

Example:
    >>> round(load_peak(1024, 72), 3)   # SGLang's EP72 decode: 128 tokens x 8 per rank
    1.074
    >>> load_peak(131072, 1)
    1.0
"""

from __future__ import annotations

import math
from statistics import NormalDist

from dagen.graph.pool import Pool

__all__ = ["load_peak", "pool_load_peak"]


def load_peak(pairs_per_rank: float, ranks: int) -> float:
    """Expected busiest rank's pairs over the mean, ``ranks`` ranks of ``pairs_per_rank``
    expected (token, expert) pairs each (the module docstring's formula)."""
    if ranks <= 1 or pairs_per_rank <= 0:
        return 1.0
    z = NormalDist().inv_cdf((ranks - 0.375) / (ranks + 0.25))
    return 1.0 + z * math.sqrt((1.0 - 1.0 / ranks) / pairs_per_rank)


def pool_load_peak(pool: Pool) -> float:
    """The busiest rank's load over the mean in ``pool``'s expert-parallel group: the
    plan's measured ``workload.expert_balance`` (mean over max) when given, else
    :func:`load_peak` of one micro-batch and layer under balanced routing."""
    d, ep = pool.dims, pool.mesh.sizes.get("ep", 1)
    if ep <= 1 or not d.slots:
        return 1.0
    balance = pool.workload.expert_balance
    if balance is not None:
        return 1.0 / balance
    return load_peak(d.slots * d.slot_tokens, ep)
