"""Studies of many plans at once: ``dagen compare`` and ``dagen search``.

The layer after :mod:`dagen.api`: it builds, checks and estimates plan variants and
weighs them against each other.
"""

from __future__ import annotations

from dagen.study.compare import Comparison, Row, compare, vary_plans
from dagen.study.disagg import DeploymentAnalysis, analyse_deployment, write_deployment

__all__ = [
    "Comparison",
    "DeploymentAnalysis",
    "Row",
    "analyse_deployment",
    "compare",
    "vary_plans",
    "write_deployment",
]
