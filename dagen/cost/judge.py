"""Every claim of a plan weighed: its ``targets``, its ``claims`` list, and the
comparative claims against an alternative plan.

:mod:`dagen.cost.verdicts` judges the time, throughput and memory targets against the
estimate and the first-principles bounds; this module adds utilisation, MFU,
communication share and a stated memory figure (:mod:`dagen.cost.metrics` computes
them), then each ``claims`` entry: an absolute one through the same judges where its
metric has one, a comparative one (:func:`judge_comparison`) from this plan's figures
and the alternative's. Arithmetic: docs/cost-model.md ("Verdicts", "Metrics").

Example:
    >>> [v.verdict.value for v in judge_plan_bounds(plan)]  # doctest: +SKIP
    ['unverified', 'impossible', 'unverified']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from dagen.codes import Code
from dagen.cost.bounds import fmt
from dagen.cost.concurrency import concurrency_verdict
from dagen.cost.estimator import Estimate
from dagen.cost.memory import GIB
from dagen.cost.metrics import Figures, figures
from dagen.cost.verdicts import (
    EstimateParts,
    Verdict,
    VerdictKind,
    decide,
    judge_targets,
    target_functions,
)
from dagen.plan.claims import Claim, Metric
from dagen.plan.model import Plan

__all__ = ["judge_comparison", "judge_estimate", "judge_plan_bounds", "override_text"]

Judge = Callable[[Plan, EstimateParts | None, Figures | None, float], Verdict]


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _signed(x: float) -> str:
    return f"{x:+.1%}".replace("-", "−")


@dataclasses.dataclass(frozen=True)
class _Fraction:
    """A claimed bound on a fraction of the estimate (utilisation, MFU, comm share)."""

    claim: str
    """The claim, with ``{}`` for the claimed fraction."""
    path: str
    code: Code
    at_most: bool
    value: Callable[[Figures], float]
    how: Callable[[Figures], str]
    """The arithmetic behind the estimated fraction."""

    def __call__(
        self, plan: Plan, parts: EstimateParts | None, fig: Figures | None, t: float
    ) -> Verdict:
        est = self.value(fig) if fig is not None else None
        bound = 0.0 if self.at_most else 1.0
        kind = decide(self.at_most, t, est, bound)
        how = self.how(fig) if fig is not None else "not simulated"
        sign = "≤" if self.at_most else "≥"
        return Verdict(
            claim=self.claim.format(_pct(t)), path=self.path, unit="fraction", target=t,
            estimate=est, bound=bound, verdict=kind, code=self.code, at_least=not self.at_most,
            arithmetic=f"{how}; claimed {sign} {_pct(t)} → {kind.value}.",
        )  # fmt: skip


_UTILISATION = _Fraction(
    "GPU utilisation ≥ {}", "targets.gpu_utilization", Code.COST_UTILIZATION, False,
    lambda f: f.gpu_utilization,
    lambda f: (
        f"GPU utilisation: compute-stream busy time ÷ makespan, mean over {f.world} GPUs = "
        f"{_pct(f.gpu_utilization)} (pipeline bubble {_pct(f.bubble_fraction)}, "
        f"communication on the critical path {_pct(f.comm_share)})"
    ),
)  # fmt: skip
_MFU = _Fraction(
    "MFU ≥ {}", "targets.mfu", Code.COST_MFU, False, lambda f: f.mfu,
    lambda f: (
        f"MFU = tokens/s × FLOP/token ÷ (GPUs × peak) = {fmt(f.tokens_per_s)} × "
        f"{fmt(f.flop_per_token)} ÷ ({f.world} × {fmt(f.peak_flops / 1e12)} TFLOP/s) "
        f"= {_pct(f.mfu)}"
    ),
)  # fmt: skip
_COMM = _Fraction(
    "communication ≤ {} of the step", "targets.max_comm_share", Code.COST_COMM, True,
    lambda f: f.comm_share,
    lambda f: (
        f"the critical path spends {fmt(f.comm_s)} s of the {fmt(f.makespan_s)} s "
        f"makespan in communication = {_pct(f.comm_share)}"
    ),
)  # fmt: skip


def _stated_memory(plan: Plan, parts: EstimateParts | None, fig: Figures | None) -> Verdict | None:
    """A stated per-GPU memory figure agrees with the estimate within the tolerance."""
    t = plan.targets
    if t.memory_per_gpu_gb is None and t.memory_per_gpu_gib is None:
        return None
    if t.memory_per_gpu_gib is not None:
        gib, path, said = (
            t.memory_per_gpu_gib,
            "targets.memory_per_gpu_gib",
            f"{fmt(t.memory_per_gpu_gib)} GiB",
        )
    else:
        gb = t.memory_per_gpu_gb or 0.0
        gib, path, said = (
            gb * 1e9 / GIB,
            "targets.memory_per_gpu_gb",
            f"{fmt(gb)} GB = {fmt(gb * 1e9 / GIB)} GiB",
        )
    est = fig.memory_gib if fig is not None else None
    weights = float(parts.memory.weights_bytes.max()) / GIB if parts and parts.memory else None
    tol = t.memory_tolerance
    if weights is not None and gib < weights * (1 - tol):
        kind = VerdictKind.IMPOSSIBLE
    elif est is None:
        kind = VerdictKind.UNVERIFIED
    else:
        kind = VerdictKind.HOLDS if abs(gib - est) <= tol * est else VerdictKind.FAILS
    how = "not simulated"
    if est is not None:
        off = gib / est - 1 if est > 0 else 0.0
        how = (
            f"the fullest GPU holds {fmt(est)} GiB (weights {fmt(weights or 0)} GiB); the stated "
            f"figure is {_signed(off)} off, against a tolerance of ±{_pct(tol)}"
        )
    return Verdict(
        claim=f"memory per GPU = {said}", path=path, unit="GiB", target=gib, estimate=est,
        bound=weights, verdict=kind, code=Code.COST_MEMORY_FIGURE,
        arithmetic=f"stated {said}; {how} → {'agrees' if kind is VerdictKind.HOLDS else kind.value}.",
    )  # fmt: skip


_MORE: Mapping[str, Judge] = {
    "gpu_utilization": _UTILISATION,
    "mfu": _MFU,
    "max_comm_share": _COMM,
}

_BY_METRIC: Mapping[tuple[Metric, bool], str] = {
    (Metric.TTFT_S, True): "ttft_s",
    (Metric.TPOT_MS, True): "tpot_ms",
    (Metric.TOKENS_PER_S_PER_GPU, False): "tokens_per_s_per_gpu",
    (Metric.TOKENS_PER_S, False): "tokens_per_s",
    (Metric.MEMORY_FRACTION, True): "max_memory_fraction",
    (Metric.GPU_UTILIZATION, False): "gpu_utilization",
    (Metric.MFU, False): "mfu",
    (Metric.COMM_SHARE, True): "max_comm_share",
}
"""(metric, at most?) → the targets field whose judge (and bound) an absolute claim uses."""


def _generic(claim: Claim, fig: Figures | None, at_most: bool, target: float) -> Verdict:
    est = fig.value(claim.metric) if fig is not None else None
    kind = decide(at_most, target, est, None)
    sign = "≤" if at_most else "≥"
    unit = claim.metric.unit
    closing = f"estimate {fmt(est)} {unit}".rstrip() if est is not None else "not simulated"
    return Verdict(
        claim=f"{claim.metric.value} {sign} {fmt(target)} {unit}".rstrip(), path="", unit=unit,
        target=target, estimate=est, bound=None, verdict=kind, at_least=not at_most,
        arithmetic=f"{closing}; claimed {sign} {fmt(target)} → {kind.value}.",
    )  # fmt: skip


def _absolute(
    plan: Plan, i: int, claim: Claim, parts: EstimateParts | None, fig: Figures | None
) -> Verdict:
    at_most = claim.at_most is not None
    value = claim.at_most if at_most else claim.at_least
    assert value is not None
    target = value * (1 + claim.tolerance) if at_most else value * (1 - claim.tolerance)
    field_ = _BY_METRIC.get((claim.metric, at_most), "")
    core = target_functions()
    if field_ in core:
        v = core[field_](plan, parts, target)
    elif field_ in _MORE:
        v = _MORE[field_](plan, parts, fig, target)
    else:
        v = _generic(claim, fig, at_most, target)
    said = f"{claim.says!r}: " if claim.says else ""
    return dataclasses.replace(v, claim=said + v.claim, path=f"claims.{i}", code=Code.COST_CLAIM)


def _judge(plan: Plan, parts: EstimateParts | None, fig: Figures | None) -> tuple[Verdict, ...]:
    out = list(judge_targets(plan, parts))
    fit = concurrency_verdict(plan, parts.memory if parts is not None else None)
    if fit is not None:
        out.append(fit)
    for name, fn in _MORE.items():
        value = getattr(plan.targets, name)
        if value is not None:
            out.append(fn(plan, parts, fig, value))
    stated = _stated_memory(plan, parts, fig)
    if stated is not None:
        out.append(stated)
    for i, claim in enumerate(plan.claims):
        if claim.vs is None:
            out.append(_absolute(plan, i, claim, parts, fig))
    return tuple(out)


def parts_of(est: Estimate) -> EstimateParts:
    """The figures :mod:`dagen.cost.verdicts` weighs, from an estimate."""
    return EstimateParts(
        world=est.memory.total_bytes.shape[0], memory=est.memory, ttft_s=est.ttft_s,
        tpot_s=est.tpot_s, tokens_per_s=est.tokens_per_s,
        tokens_per_s_per_gpu=est.tokens_per_s_per_gpu,
    )  # fmt: skip


def judge_estimate(plan: Plan, est: Estimate) -> tuple[Verdict, ...]:
    """The verdicts on ``plan``'s targets and absolute claims against ``est`` and the
    first-principles bounds (comparative claims: :func:`judge_comparison`)."""
    return _judge(plan, parts_of(est), figures(plan, est))


def judge_plan_bounds(plan: Plan) -> tuple[Verdict, ...]:
    """Weigh the plan's claims against the first-principles bounds alone (no graph)."""
    return _judge(plan, None, None)


def override_text(vs: Mapping[str, Any], prefix: str = "") -> str:
    """``{parallel: {pp: 2, dp: 32}}`` → ``parallel.pp 2, parallel.dp 32``."""
    items = []
    for key, value in vs.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        items.append(
            override_text(value, path) if isinstance(value, Mapping) else f"{path} {value}"
        )
    return ", ".join(items)


def judge_comparison(
    plan: Plan, i: int, this: Figures | None, other: Figures | None, why_not: str = ""
) -> Verdict:
    """Comparative claim ``i`` of ``plan``: this plan's figures against the alternative's.

    ``why_not`` says why the alternative has no figures (its rules fail, say).
    """
    claim = plan.claims[i]
    assert claim.vs is not None and claim.change is not None
    m, claimed = claim.metric, claim.change
    alt = f"the alternative ({override_text(claim.vs)})"
    said = f"{claim.says!r}: " if claim.says else ""
    better = "lower" if m.lower_is_better else "higher"
    words = f"{m.value} {_signed(claimed)} against {alt}"
    a = this.value(m) if this is not None else None
    b = other.value(m) if other is not None else None
    if a is None or b is None or b == 0:
        reason = why_not or f"{m.value} is not defined for {'this plan' if a is None else alt}"
        return Verdict(
            claim=said + words, path=f"claims.{i}", unit="change", target=claimed, estimate=None,
            bound=None, verdict=VerdictKind.UNVERIFIED, code=Code.COST_COMPARE,
            arithmetic=f"cannot compare: {reason}.",
        )  # fmt: skip
    actual = a / b - 1
    slack = claim.tolerance
    ok = actual <= claimed + slack if m.lower_is_better else actual >= claimed - slack
    kind = VerdictKind.HOLDS if ok else VerdictKind.FAILS
    unit = m.unit
    text = (
        f"{m.value}: this plan {fmt(a)} {unit}, {alt} {fmt(b)} {unit}: change {fmt(a)} ÷ "
        f"{fmt(b)} − 1 = {_signed(actual)}; claimed {_signed(claimed)} ({better} is better"
        f"{f', ±{slack:.0%} slack' if slack else ''}) → {kind.value}."
    )
    return Verdict(
        claim=said + words, path=f"claims.{i}", unit="change", target=claimed, estimate=actual,
        bound=None, verdict=kind, code=Code.COST_COMPARE, arithmetic=text.replace("  ", " "),
    )  # fmt: skip
