"""Cost: memory per GPU, a simulated schedule, and verdicts on the plan's claims.

- :func:`estimate` prices a built graph: roofline compute times, alpha-beta
  communication times, a two-stream schedule simulation, memory per rank, and the
  verdict on every target of the plan.
- :func:`judge_plan_bounds` judges a plan's claims against first-principles bounds
  alone, without a graph (for plans that cannot be built).
- :func:`verdict_findings` turns verdicts into findings (``COST-*`` codes).

Every formula and constant: docs/cost-model.md.

Example:
    >>> from dagen.cost import estimate, verdict_findings
    >>> est = estimate(graph)  # doctest: +SKIP
    >>> [f.code for f in verdict_findings(graph.plan, est.verdicts)]  # doctest: +SKIP
    ['COST-TTFT', 'COST-THROUGHPUT-GPU', 'COST-MEMORY', 'COST-OOM']
"""

from __future__ import annotations

from dagen.cost.engine import Meter
from dagen.cost.estimator import Estimate, durations, estimate
from dagen.cost.memory import MemoryReport, memory_report
from dagen.cost.simulate import Schedule
from dagen.cost.verdicts import (
    EstimateParts,
    Verdict,
    VerdictKind,
    judge,
    judge_plan_bounds,
    verdict_findings,
)

__all__ = [
    "Estimate",
    "EstimateParts",
    "MemoryReport",
    "Meter",
    "Schedule",
    "Verdict",
    "VerdictKind",
    "durations",
    "estimate",
    "judge",
    "judge_plan_bounds",
    "memory_report",
    "verdict_findings",
]
