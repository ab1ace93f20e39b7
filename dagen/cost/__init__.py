"""Cost: memory per GPU, a simulated schedule, and verdicts on the plan's claims.

- :func:`estimate` prices a built graph with a cost model (:class:`CostModel`; the
  roofline and alpha-beta model by default, :func:`default_cost_model`), simulates its
  two-stream schedule and reports memory per rank, latency and throughput;
  :func:`judge_estimate` weighs a plan's targets and claims against it, and
  :func:`judge_comparison` a comparative claim against its alternative's figures.
- :func:`judge_plan_bounds` judges a plan's claims against first-principles bounds
  alone, without a graph (for plans that cannot be built).
- :func:`verdict_findings` turns verdicts into findings (``COST-*`` codes).

Every formula and constant: docs/cost-model.md.

Example:
    >>> from dagen.cost import estimate, verdict_findings
    >>> est = estimate(graph)  # doctest: +SKIP
    >>> [f.code for f in verdict_findings(plan, judge_estimate(plan, est))]  # doctest: +SKIP
    ['COST-TTFT', 'COST-THROUGHPUT-GPU', 'COST-MEMORY', 'COST-OOM']
"""

from __future__ import annotations

from dagen.cost.claims import verdict_findings
from dagen.cost.engine import Meter
from dagen.cost.estimator import Estimate, PoolFigures, estimate
from dagen.cost.judge import judge_comparison, judge_estimate, judge_plan_bounds
from dagen.cost.memory import MemoryReport, memory_report
from dagen.cost.metrics import Figures, figures
from dagen.cost.model import (
    CostModel,
    CostModelError,
    Scaled,
    TableModel,
    default_cost_model,
    model_for,
)
from dagen.cost.roofline import Roofline
from dagen.cost.simulate import Schedule
from dagen.cost.verdicts import (
    EstimateParts,
    Verdict,
    VerdictKind,
    judge_targets,
)

__all__ = [
    "CostModel",
    "CostModelError",
    "Estimate",
    "EstimateParts",
    "Figures",
    "MemoryReport",
    "Meter",
    "PoolFigures",
    "Roofline",
    "Scaled",
    "Schedule",
    "TableModel",
    "Verdict",
    "VerdictKind",
    "default_cost_model",
    "estimate",
    "figures",
    "judge_comparison",
    "judge_estimate",
    "judge_plan_bounds",
    "judge_targets",
    "memory_report",
    "model_for",
    "verdict_findings",
]
