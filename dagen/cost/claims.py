"""Findings from verdicts: a claim's outcome as a finding with its code, severity and fix.

Example:
    >>> from dagen.cost.claims import verdict_findings
    >>> [f.code for f in verdict_findings(plan, verdicts)]  # doctest: +SKIP
    ['COST-THROUGHPUT-GPU']
"""

from __future__ import annotations

from dagen.cost.bounds import fmt
from dagen.cost.verdicts import Verdict, VerdictKind
from dagen.findings import Code, Finding, Severity
from dagen.plan.model import Plan
from dagen.plan.world import finding

__all__ = ["verdict_findings", "verdict_sentence"]

_CODES = {
    "targets.ttft_s": Code.COST_TTFT,
    "targets.tpot_ms": Code.COST_TPOT,
    "targets.tokens_per_s_per_gpu": Code.COST_THROUGHPUT_GPU,
    "targets.tokens_per_s": Code.COST_THROUGHPUT,
    "targets.max_memory_fraction": Code.COST_MEMORY,
    "hardware.memory_gib": Code.COST_OOM,
    "hardware.memory_gb": Code.COST_OOM,
}


_SEVERITY = {
    VerdictKind.HOLDS: Severity.INFO,
    VerdictKind.UNVERIFIED: Severity.INFO,
    VerdictKind.FAILS: Severity.WARNING,
    VerdictKind.IMPOSSIBLE: Severity.ERROR,
}

_FIX = {
    Code.COST_TTFT: "give each prompt more GPUs (tp, cp) or fewer prompt tokens per replica, or relax targets.ttft_s",
    Code.COST_TPOT: "shrink the per-step work per GPU (more tp/ep, a smaller batch per replica) or relax targets.tpot_ms",
    Code.COST_THROUGHPUT_GPU: "lower targets.tokens_per_s_per_gpu to what the FLOPs per token allow, or use faster GPUs",
    Code.COST_THROUGHPUT: "add GPUs or lower targets.tokens_per_s",
    Code.COST_MEMORY: "shard more (tp, ep, pp), shorten the context or the batch, or relax targets.max_memory_fraction",
    Code.COST_UTILIZATION: "raise the busy time: more micro-batches (smaller bubble), overlap communication, or relax targets.gpu_utilization",
    Code.COST_MFU: "the claim counts more FLOPs per second than the estimate gives; relax targets.mfu or change the layout (dagen search)",
    Code.COST_COMM: "shrink the exposed communication (less tp across nodes, fewer all-to-alls) or relax targets.max_comm_share",
    Code.COST_MEMORY_FIGURE: "state the figure the estimate gives (or the framework's measured one), or widen targets.memory_tolerance",
    Code.COST_CLAIM: "correct the claim to the estimate's figure, or change the plan until it holds",
    Code.COST_COMPARE: "correct the claimed change to the estimated one (dagen compare shows both plans side by side)",
    Code.COST_CONCURRENCY: "serve at most the concurrency shown (workload.concurrency, the benchmark's max concurrency), or free KV memory: precision.kv_cache: fp8, more tp/ep, a larger runtime.memory_fraction",
    Code.COST_OOM: "shard the weights over more GPUs (tp, ep, pp), quantise the KV cache (precision.kv_cache: fp8), or lower the batch/concurrency or context to what fits",
}


def verdict_sentence(v: Verdict) -> str:
    """The verdict in one sentence: the claim, its outcome, the estimate and the bound.

    Example:
        >>> verdict_sentence(verdict)  # doctest: +SKIP
        'time per output token ≤ 50 ms: fails (estimate 60.18 ms; floor 9.927 ms).'
    """
    parts = []
    if v.estimate is not None:
        parts.append(f"estimate {_amount(v.estimate, v.unit)}")
    if v.bound is not None:
        parts.append(f"{'ceiling' if v.at_least else 'floor'} {_amount(v.bound, v.unit)}")
    detail = f" ({'; '.join(parts)})" if parts else ""
    return f"{v.claim}: {v.verdict.value}{detail}."


def _amount(x: float, unit: str) -> str:
    text = f"{fmt(x)} {unit}" if unit != "fraction" else f"{x:.1%}"
    return text.strip()


def verdict_findings(plan: Plan, verdicts: tuple[Verdict, ...] | list[Verdict]) -> list[Finding]:
    """One finding per verdict: ``impossible`` is an error, ``fails`` a warning (it rests
    on the estimate), ``holds``/``unverified`` are information; COST-OOM that fails is an
    error. Line and column point at the target in the plan file."""
    out = []
    for v in verdicts:
        code = v.code or _CODES[v.path]
        severity = _SEVERITY[v.verdict]
        if code in (Code.COST_OOM, Code.COST_CONCURRENCY) and v.verdict is VerdictKind.FAILS:
            severity = Severity.ERROR
        quiet = v.verdict in (VerdictKind.HOLDS, VerdictKind.UNVERIFIED)
        out.append(
            finding(
                plan,
                code,
                severity,
                v.path,
                f"{verdict_sentence(v)} {v.arithmetic}",
                "" if quiet else _FIX[code],
                claim=v.claim,
                target=v.target,
                estimate=v.estimate,
                bound=v.bound,
                at_least=v.at_least,
                unit=v.unit,
                verdict=v.verdict.value,
            )
        )
    return out
