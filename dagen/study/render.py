"""A comparison as text, Markdown (for a pull request) or JSON.

Plans are columns and figures rows, so a comparison of a few plans reads at ~900 px;
below the table, each plan's changed fields against the first as a diff.

Example:
    >>> print(as_text(comparison))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from dagen.study.compare import COLUMNS, Comparison, Row

__all__ = ["as_json", "as_markdown", "as_text"]


def _grid(cmp: Comparison) -> list[list[str]]:
    """Header row, then one row per figure: ``[header, cell of plan 1, …]``."""
    rows = [["", *(r.label for r in cmp.rows)]]
    for _key, header, cell in COLUMNS:
        rows.append([header, *(cell(r) for r in cmp.rows)])
    return rows


def _value(v: Any) -> str:
    return "—" if v is None else json.dumps(v, ensure_ascii=False)


def _diff_lines(row: Row) -> list[str]:
    lines = []
    for path, old, new in row.changed:
        lines += [f"- {path}: {_value(old)}", f"+ {path}: {_value(new)}"]
    return lines


def as_text(cmp: Comparison) -> str:
    """Aligned columns, then the diffs."""
    grid = _grid(cmp)
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    out = []
    for row in grid:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    base = cmp.rows[0].label
    for r in cmp.rows[1:]:
        out += ["", f"{r.label} against {base}:"]
        out += [f"  {line}" for line in _diff_lines(r)] or ["  (no field differs)"]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def as_markdown(cmp: Comparison) -> str:
    """A GitHub table, then a ``diff`` block per plan."""
    grid = _grid(cmp)
    head = "| " + " | ".join(_md(c) or "figure" for c in grid[0]) + " |"
    rule = "|---" + "|---:" * (len(grid[0]) - 1) + "|"
    lines = ["## Plans compared", "", head, rule]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in grid[1:]]
    base = cmp.rows[0].label
    for r in cmp.rows[1:]:
        diff = _diff_lines(r)
        lines += ["", f"**{_md(r.label)}** against **{_md(base)}**:", ""]
        lines += ["```diff", *diff, "```"] if diff else ["(no field differs)"]
    lines += ["", 'Figures: docs/cost-model.md ("Metrics"); verdicts: `dagen check` on each plan.']
    return "\n".join(lines) + "\n"


def _figures(row: Row) -> dict[str, Any] | None:
    if row.figures is None:
        return None
    return dataclasses.asdict(row.figures)


def as_json(cmp: Comparison) -> str:
    """Every figure, verdict count, finding code and changed field of every plan."""
    plans = [
        {
            "label": r.label,
            "source": r.plan.source,
            "gpus": r.plan.parallel.world(),
            "nodes": r.analysis.graph.n_nodes if r.analysis.graph is not None else None,
            "edges": r.analysis.graph.n_edges if r.analysis.graph is not None else None,
            "figures": _figures(r),
            "verdict": r.verdict,
            "errors": r.errors,
            "warnings": r.warnings,
            "findings": [f.code for f in r.analysis.findings],
            "changed": [{"path": p, "from": a, "to": b} for p, a, b in r.changed],
        }
        for r in cmp.rows
    ]
    return json.dumps({"plans": plans}, indent=2, ensure_ascii=False) + "\n"
