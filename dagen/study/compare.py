"""Plans side by side: ``dagen compare A.yaml B.yaml …`` and ``--vary pp=2,4``.

Each plan is analysed in full (:func:`dagen.api.analyse`: rules, graph checks, estimate);
a row holds its figures (:class:`dagen.cost.metrics.Figures`), its verdict counts, and
the plan fields that differ from the first plan's (the diff a pull request shows). The
``--vary`` form writes every combination of the given values over one plan file; each
value that fails to load is reported at its flag.

Example:
    >>> rows = compare([("a", plan_a), ("b", plan_b)])  # doctest: +SKIP
    >>> [r.label for r in rows.rows]  # doctest: +SKIP
    ['a', 'b']
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagen.api import Analysis, analyse
from dagen.cost import CostModel, Figures, figures
from dagen.findings import Severity
from dagen.plan.loader import load_plan
from dagen.plan.model import Plan
from dagen.plan.summary import plan_summary
from dagen.plan.variant import Override, parse_vary

__all__ = ["COLUMNS", "Comparison", "Row", "compare", "vary_plans"]

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One plan of a comparison."""

    label: str
    plan: Plan
    analysis: Analysis
    figures: Figures | None
    """None when the plan did not build or simulate."""
    changed: tuple[tuple[str, Any, Any], ...]
    """(dotted path, the first plan's value, this plan's) for every field that differs."""

    @property
    def errors(self) -> int:
        return sum(f.severity is Severity.ERROR for f in self.analysis.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity is Severity.WARNING for f in self.analysis.findings)

    @property
    def verdict(self) -> str:
        """``ok``, ``N warnings``, ``N errors (CODE, …)``, or ``not built (CODE)``."""
        codes = sorted(
            {f.code for f in self.analysis.findings if f.severity is Severity.ERROR},
            key=lambda c: (not c.startswith("PLAN-"), c),  # the rule that blocks comes first
        )
        if self.analysis.graph is None:
            return f"not built ({', '.join(codes[:2])})"
        if self.errors:
            return f"{self.errors} error(s): {', '.join(codes[:3])}"
        return f"{self.warnings} warning(s)" if self.warnings else "ok"


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """The rows, in the order given."""

    rows: tuple[Row, ...]


COLUMNS: tuple[tuple[str, str, Callable[[Row], str]], ...]
"""(key, header, cell) of the side-by-side table; JSON uses the keys."""


def _num(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def _fig(key: str, spec: str, scale: float = 1.0) -> Callable[[Row], str]:
    def cell(r: Row) -> str:
        v = getattr(r.figures, key) if r.figures is not None else None
        return _num(None if v is None else v * scale, spec)

    return cell


def _size(r: Row) -> str:
    g = r.analysis.graph
    return "—" if g is None else f"{g.n_nodes:,} / {g.n_edges:,}"


COLUMNS = (
    ("gpus", "GPUs", lambda r: f"{r.plan.parallel.world():,}"),
    ("graph", "nodes / edges", _size),
    ("memory_gib", "memory GiB", _fig("memory_gib", ".3g")),
    ("memory_fraction", "memory %", _fig("memory_fraction", ".1f", 100)),
    ("ttft_s", "TTFT s", _fig("ttft_s", ".4g")),
    ("tpot_ms", "TPOT ms", _fig("tpot_ms", ".4g")),
    ("tokens_per_s", "tokens/s", _fig("tokens_per_s", ",.0f")),
    ("tokens_per_s_per_gpu", "tokens/s/GPU", _fig("tokens_per_s_per_gpu", ",.0f")),
    ("gpu_utilization", "util %", _fig("gpu_utilization", ".1f", 100)),
    ("mfu", "MFU %", _fig("mfu", ".1f", 100)),
    ("comm_share", "comm %", _fig("comm_share", ".1f", 100)),
    ("bubble_fraction", "bubble %", _fig("bubble_fraction", ".1f", 100)),
    ("verdict", "verdicts", lambda r: r.verdict),
)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if prefix == "claims" and isinstance(data, list):
        return {prefix: f"{len(data)} claim(s)"}
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def _diff(base: Plan, plan: Plan) -> tuple[tuple[str, Any, Any], ...]:
    a, b = _flat(plan_summary(base)), _flat(plan_summary(plan))
    keys = sorted((set(a) | set(b)) - {"name"})
    return tuple((k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k))


def compare(
    plans: Sequence[tuple[str, Plan]],
    *,
    cost_model: CostModel | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Analyse each ``(label, plan)`` and set them side by side."""
    rows = []
    for label, plan in plans:
        if progress is not None:
            progress(f"analysing {label}")
        result = analyse(plan, cost_model=cost_model)
        fig = figures(plan, result.estimate) if result.estimate is not None else None
        rows.append(
            Row(label=label, plan=plan, analysis=result, figures=fig,
                changed=_diff(plans[0][1], plan))
        )  # fmt: skip
    return Comparison(rows=tuple(rows))


def vary_plans(path: str | os.PathLike[str], varies: Sequence[str]) -> list[tuple[str, Plan]]:
    """Every combination of ``--vary`` values written over the plan at ``path``, labelled
    by its values (``pp=2 tp=4``); with no ``--vary``, the plan itself.

    Raises:
        PlanError: a key is not a plan field, or a value does not load (named by its flag).
    """
    axes: list[list[Override]] = [parse_vary(v) for v in varies]
    if not axes:
        return [(Path(path).stem, load_plan(path))]
    out = []
    for combo in itertools.product(*axes):
        label = " ".join(o.flag.removeprefix("--vary ") for o in combo)
        out.append((label, load_plan(path, overrides=list(combo))))
    return out
