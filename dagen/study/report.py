"""What ``dagen search`` shows: the text summary, the Markdown frontier and the plot.

Every figure is one of :mod:`dagen.cost.metrics` (formulas in docs/cost-model.md,
"Metrics"); the steps that produce them are in docs/search.md.

Example:
    >>> print("\\n".join(summary_lines(result)))  # doctest: +SKIP
    search: seed-moe-10b-fixed on 128 GPUs, …
"""

from __future__ import annotations

from collections import Counter

from dagen.plan.model import Metric
from dagen.study.candidates import Candidate, Status
from dagen.study.search import SearchResult, rank_key, within

__all__ = ["failure_lines", "frontier_markdown", "summary_lines"]

_LATENCY = {Metric.TTFT_S: ("TTFT", "s"), Metric.TPOT_MS: ("TPOT", "ms")}


def _lat(result: SearchResult) -> tuple[str, str]:
    return _LATENCY[result.latency]


def _fig(c: Candidate, metric: Metric) -> str:
    v = c.figures.value(metric) if c.figures is not None else None
    if v is None:
        return "–"
    if metric is Metric.MFU:
        return f"{v * 100:.3g}%"
    return f"{v:,.0f}" if metric is Metric.TOKENS_PER_S_PER_GPU else f"{v:.4g}"


def space_line(r: SearchResult) -> str:
    """How many layouts there were and what became of them."""
    by = Counter(c.status for c in r.candidates)
    rules = Counter(c.reason.split(":", 1)[0] for c in r.candidates if c.status is Status.RULES)
    top = ", ".join(
        f"{code} {n:,}" for code, n in sorted(rules.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    )
    parts = [f"{r.size:,} layouts"]
    parts.append(f"{by[Status.RULES]:,} pruned by the plan rules" + (f" ({top})" if top else ""))
    for status in (Status.WEIGHTS, Status.BUILD, Status.MEMORY, Status.CHECKS):
        if by[status]:
            parts.append(f"{by[status]:,} {status.value.removeprefix('pruned: ')}")
    parts.append(f"{by[Status.ESTIMATED]:,} estimated, {len(r.valid()):,} within the SLO")
    return "space: " + "; ".join(parts)


def _row(c: Candidate, r: SearchResult) -> list[str]:
    return [
        c.layout.label(),
        _fig(c, Metric.TOKENS_PER_S_PER_GPU),
        _fig(c, r.latency),
        _fig(c, Metric.MEMORY_GIB),
        _fig(c, Metric.MFU),
        "yes" if c.checked else "no",
    ]


def _header(r: SearchResult) -> list[str]:
    name, unit = _lat(r)
    return ["layout", "tokens/s/GPU", f"{name} ({unit})", "memory (GiB)", "MFU", "graph-checked"]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in
                             enumerate(zip(row, widths, strict=True))) for row in rows]  # fmt: skip


def _slo_text(r: SearchResult) -> str:
    if not r.slo:
        return "none"
    return ", ".join(f"{m.value} ≤ {v:g} {m.unit}" for m, v in r.slo.items())


def summary_lines(r: SearchResult) -> list[str]:
    """The text ``dagen search`` prints."""
    name, _ = _lat(r)
    lines = [
        f"search: {r.plan.name} on {r.gpus:,} GPUs; objective {r.objective.value}; "
        f"frontier of tokens/s per GPU against {name}; SLO {_slo_text(r)}",
        space_line(r),
        f"frontier ({len(r.frontier)} point(s), {name} ascending):",
        *_table([_header(r), *(_row(c, r) for c in r.frontier)]),
        f"given plan: {r.given.layout.label()}: "
        + (
            f"{_fig(r.given, Metric.TOKENS_PER_S_PER_GPU)} tokens/s/GPU, {name} "
            f"{_fig(r.given, r.latency)} {_lat(r)[1]}"
            if r.given.ok
            else f"{r.given.status.value}: {r.given.reason}"
        ),
        f"verdict: {r.verdict.text}",
    ]
    return lines


def failure_lines(r: SearchResult) -> list[str]:
    """Why no layout is valid: the candidates that got furthest, and their reasons."""
    lines = [f"error: no valid layout on {r.gpus:,} GPUs ({space_line(r)})"]
    lines.append("the closest candidates failed because:")
    for c in r.closest_failures():
        why = c.reason
        if c.status is Status.ESTIMATED and not within(c.figures, r.slo):
            why = f"outside the SLO ({_lat(r)[0]} {_fig(c, r.latency)} {_lat(r)[1]})"
        lines.append(f"  {c.layout.label()}: {c.status.value}: {why}")
    return lines


def _md_table(rows: list[list[str]]) -> list[str]:
    head, *body = rows
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return out + ["| " + " | ".join([f"`{row[0]}`", *row[1:]]) + " |" for row in body]


def frontier_markdown(r: SearchResult, best: int = 10) -> str:
    """The frontier, the best ``best`` by the objective and the given plan, as Markdown."""
    name, unit = _lat(r)
    ranked = sorted(r.valid(), key=lambda c: rank_key(c, r.ranked))[:best]
    lines = [
        f"# Layout search: {r.plan.name} on {r.gpus:,} GPUs",
        "",
        f"- objective: {r.objective.value}; frontier: tokens/s per GPU against {name} ({unit})",
        f"- SLO: {_slo_text(r)}",
        f"- {space_line(r)}",
        f"- given plan: `{r.given.layout.label()}`",
        f"- **verdict: {r.verdict.text}**",
        "",
        f"## Pareto frontier ({len(r.frontier)} point(s))",
        "",
        *_md_table([_header(r), *(_row(c, r) for c in r.frontier)]),
        "",
        f"## Best {len(ranked)} by {r.objective.value}",
        "",
        *_md_table([_header(r), *(_row(c, r) for c in ranked)]),
        "",
        'Figures: docs/cost-model.md ("Metrics"); the search: docs/search.md.',
    ]
    return "\n".join(lines) + "\n"
