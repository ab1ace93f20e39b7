"""The plan rule of two-batch overlap (``schedule.overlap``): where it has no meaning.

Two-batch overlap hides one micro-batch's MoE dispatch and combine behind the other's
compute (:mod:`dagen.graph.overlap`). A plan with no expert-parallel all-to-all has
nothing to hide, and a replica with fewer than two micro-batches has nothing to
interleave.

Example:
    >>> [f.code for f in overlap_findings(plan)]  # doctest: +SKIP
    []
"""

from __future__ import annotations

from dagen.findings import Code, Finding, Severity
from dagen.plan.model import Overlap, Plan
from dagen.plan.world import finding

__all__ = ["overlap_findings"]

_PATH = "schedule.overlap"


def overlap_findings(plan: Plan) -> list[Finding]:
    """PLAN-OVERLAP when ``two_batch`` has no all-to-all to hide or no second micro-batch."""
    if plan.schedule.overlap is not Overlap.TWO_BATCH:
        return []
    par, wl = plan.parallel, plan.workload
    if plan.model.moe is None or par.ep == 1:
        why = "the model has no MoE layers" if plan.model.moe is None else "parallel.ep is 1"
        msg = (
            f"two_batch overlaps one micro-batch's MoE dispatch/combine with the other's "
            f"compute, but {why}: there is no expert-parallel all-to-all to hide"
        )
        fix = "set schedule.overlap: none" + ("" if plan.model.moe is None else ", or ep > 1")
        return [finding(plan, Code.PLAN_OVERLAP, Severity.ERROR, _PATH, msg, fix)]
    if wl.micro_batches >= 2:
        return []
    per = wl.batch // max(par.attn_dp(), 1)
    seqs = f"{per} sequence{'s' if per != 1 else ''}"
    msg = (
        f"two_batch interleaves two micro-batches per replica, but workload.micro_batches is "
        f"{wl.micro_batches} (a replica's batch of {seqs})"
    )
    fix = (
        "set workload.micro_batches: 2"
        if per >= 2 and per % 2 == 0
        else f"set schedule.overlap: none (a replica has fewer than two micro-batches' "
        f"worth: {seqs}), or raise workload.batch"
    )
    return [finding(plan, Code.PLAN_OVERLAP, Severity.ERROR, _PATH, msg, fix)]
