"""Price a layout on fewer GPUs where its replicas are identical.

Data-parallel replicas of an inference plan share no data: each runs the same program on
its own share of the batch. A plan with ``dp`` replicas can therefore be simulated with
``dp / k`` of them and ``batch / k`` sequences, and every per-GPU figure (TTFT, TPOT,
tokens/s per GPU, memory per GPU, utilisation) comes out the same; totals scale by k.
:func:`representative` picks the largest such ``k`` for which this is exact, and
``tests/test_search.py`` proves the figures equal the full graph's on every sample.

NOTE: three things could change when replicas are dropped, and each is held fixed:

* the expert layers: they re-slice a stage as etp·ep·edp, so the EP groups span
  replicas. Dropping ``k`` replicas keeps every EP and ETP group as it was when ``k``
  divides edp (the expert data-parallel degree), which is the slowest-varying factor
  of a stage in both rank orders dagen accepts (the ``ep`` slot sits before ``dp``);
* the links: a message crosses hosts or not by where its ranks sit. A stage of
  ``S`` GPUs starts at rank ``s·S``; when both ``S`` and ``S / k`` are multiples of
  ``gpus_per_node`` every stage keeps whole hosts, so every TP, EP and pipeline message
  stays on the kind of link it had;
* the rank order: ``dp`` after ``ep`` (and before ``pp``) keeps groups intact, and so
  does ``dp`` last (``tp-cp-ep-pp-dp``, with expert DP = DP as ``PLAN-ORDER-EDP``
  requires): each replica is then one block of ``world / dp`` ranks, the ``k``-th part
  of the world kept keeps its ranks where they were, and ``world / k`` a multiple of
  ``gpus_per_node`` keeps the dropped replicas off the kept ones' hosts; for any other
  order ``k = 1``.

Example: seed-moe-10b-fixed (tp 2, dp 16, pp 4, ep 16, etp 1: stages of 32 GPUs,
edp 2, 8 GPUs a host) gives k = 2: 64 GPUs, stages of 16, batch 128.
"""

from __future__ import annotations

import dataclasses
import math

from dagen.plan.model import Convention, Plan

__all__ = ["replica_factor", "representative"]


def _order_ok(order: str, pp: int) -> bool:
    """Replicas are the slowest factor of a stage: ``dp`` after tp, cp and ep in the
    order (fastest first) and, with stages, before ``pp``."""
    names = order.lower().split("-")
    if "dp" not in names:
        return False
    at = names.index("dp")
    inner = all(names.index(n) < at for n in ("tp", "cp", "ep") if n in names)
    return inner and (pp == 1 or ("pp" in names and names.index("pp") > at))


def _dp_last(plan: Plan) -> bool:
    """Replicas are the slowest factor of the world: ``dp`` last in the order (pp before
    it), the Megatron reading, and the experts' DP equal to the attention's, so every
    group of a replica lies in its own block of ``world / dp`` ranks."""
    par = plan.parallel
    names = par.order.lower().split("-")
    same_edp = plan.model.moe is None or par.edp() == par.dp
    return names[-1:] == ["dp"] and par.convention is Convention.MEGATRON and same_edp


def replica_factor(plan: Plan) -> int:
    """The largest ``k`` by which the replicas of ``plan`` can be thinned exactly (see the
    module NOTE); 1 when none can."""
    par, wl, hw = plan.parallel, plan.workload, plan.hardware
    inside = _order_ok(par.order, par.pp)
    if not (inside or _dp_last(plan)) or par.dp <= 1:
        return 1
    stage = par.world() // par.pp
    edp = par.edp() if plan.model.moe is not None else par.dp
    limit = math.gcd(par.dp, edp)
    if par.convention is Convention.ORTHOGONAL:
        limit = math.gcd(par.dp, (par.tp * par.cp * par.dp) // par.etp)
    per = wl.concurrency if wl.serving and wl.concurrency is not None else wl.batch
    best = 1
    for k in range(2, limit + 1):
        if limit % k or per % k or (wl.batch // k) % max(par.attn_dp() // k, 1):
            continue
        if inside and (stage % hw.gpus_per_node or (stage // k) % hw.gpus_per_node):
            continue
        if not inside and (par.world() // k) % hw.gpus_per_node:
            continue
        best = k
    return best


def representative(plan: Plan) -> tuple[Plan, int]:
    """``plan`` with ``k`` times fewer replicas and sequences, and ``k``
    (:func:`replica_factor`); ``(plan, 1)`` when no thinning is exact."""
    k = replica_factor(plan)
    if k == 1:
        return plan, 1
    par, wl = plan.parallel, plan.workload
    parallel = dataclasses.replace(par, dp=par.dp // k, world_size=par.world() // k)
    work = dataclasses.replace(wl, batch=wl.batch // k)
    if wl.concurrency is not None:
        work = dataclasses.replace(work, concurrency=wl.concurrency // k)
    return dataclasses.replace(plan, parallel=parallel, workload=work), k
