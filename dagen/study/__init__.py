"""Studies over several plans: side-by-side comparison (and search), built on the api."""

from __future__ import annotations

from dagen.study.compare import Comparison, Row, compare, vary_plans

__all__ = ["Comparison", "Row", "compare", "vary_plans"]
