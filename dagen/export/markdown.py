"""The Markdown review report (``templates/report.md.j2``), fit for a GitHub comment.

Plan, mesh, pipeline stages, a Mermaid overview, findings and the estimate with its
verdicts. Every value written in the plan file is Markdown-escaped (:func:`md`); the
report stays under GitHub's comment limit (:data:`MAX_CHARS`) by listing fewer rows
and saying so.

Example:
    >>> text = render_markdown(ExportContext(graph=graph))  # doctest: +SKIP
    >>> text.startswith("# dagen report: ")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any, BinaryIO, Protocol

import jinja2
import numpy as np

from dagen.errors import DagenError
from dagen.export.base import ExportContext, single_pool
from dagen.export.mdhead import facts, finding_message, headline
from dagen.export.mdparts import estimate_part, mermaid, stage_rows
from dagen.export.overview import overview
from dagen.export.summary import graph_totals, rank_ranges
from dagen.findings import Finding, Severity
from dagen.graph.ir import Graph
from dagen.mesh import GROUP_DIMS, Mesh, mesh_for
from dagen.plan.model import Hardware, Model, Parallel, Plan, Workload

__all__ = ["MAX_CHARS", "emit", "md", "render_markdown"]

MAX_CHARS = 65_536
"""GitHub's limit on a comment body; the report never exceeds it."""

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]#|~!])")


class AnalysisLike(Protocol):
    """What :func:`render_markdown` reads from a :class:`dagen.api.Analysis`."""

    @property
    def plan(self) -> Plan | None: ...
    @property
    def findings(self) -> tuple[Finding, ...]: ...
    @property
    def graph(self) -> Graph | None: ...
    @property
    def estimate(self) -> Any | None: ...


def md(value: object) -> str:
    """Text made literal in Markdown (tables included): ``&``, ``<``, ``>`` as entities
    (no HTML gets through), other specials backslash-escaped, line breaks as spaces.

    Example:
        >>> print(md("a|b <i>*x*</i>"))
        a\\|b &lt;i&gt;\\*x\\*&lt;/i&gt;
    """
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dagen.templates", ""),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Markdown, not HTML: user text goes through |md instead
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md
    env.filters["code"] = _code
    return env


@dataclass(frozen=True, slots=True)
class _Caps:
    """How many rows of each long list the report shows."""

    findings: int = 200
    stages: int = 128
    verdicts: int = 100
    mermaid: bool = True

    def smaller(self) -> _Caps:
        return _Caps(
            findings=max(5, self.findings // 2),
            stages=max(8, self.stages // 2),
            verdicts=max(5, self.verdicts // 2),
            mermaid=self.findings > 5,
        )


@dataclass(frozen=True, slots=True)
class _Deployment:
    """What the report describes: the graph's single pool, or the plan when no graph
    was built (the same records either way)."""

    name: str
    model: Model
    parallel: Parallel
    workload: Workload
    hardware: Hardware

    @staticmethod
    def of(source: AnalysisLike) -> _Deployment:
        g = source.graph
        if g is not None:
            pool = g.pools[0]
            return _Deployment(g.name, g.model, pool.parallel, pool.workload, pool.hardware)
        plan = source.plan
        assert plan is not None  # an analysis without a graph has its plan
        return _Deployment(plan.name, plan.model, plan.parallel, plan.workload, plan.hardware)


def _parallel_rows(plan: _Deployment) -> list[tuple[str, object]]:
    p = plan.parallel
    experts: list[tuple[str, object]] = [
        ("ep · etp · edp", f"{p.ep} · {p.etp} · {p.edp()}"),
        ("redundant experts", p.redundant_experts),
    ]
    return [
        ("convention", p.convention.value),
        ("tp · cp · dp · pp", f"{p.tp} · {p.cp} · {p.dp} · {p.pp}"),
        *(experts if plan.model.moe is not None else []),
        ("sequence parallel", "yes" if p.sequence_parallel else "no"),
        ("rank order", p.order),
        ("declared world size", "—" if p.world_size is None else p.world_size),
    ]


def _hardware_rows(plan: _Deployment) -> list[tuple[str, object]]:
    h = plan.hardware
    peak = ", ".join(f"{k} {v:g}" for k, v in sorted(h.peak_tflops.items()))
    return [
        ("preset", h.preset or "—"),
        ("memory per GPU", f"{h.capacity_bytes / 2**30:.4g} GiB"),
        ("peak TFLOP/s", peak),
        ("HBM", f"{h.hbm_tbps:g} TB/s"),
        ("GPUs per host", h.gpus_per_node),
        (
            "links per GPU",
            f"{h.intra_node_gbps:g} GB/s intra-host, {h.inter_node_gbps:g} GB/s inter-host",
        ),
    ]


def _code(value: object) -> str:
    """An inline code span (backslashes are literal there, so backticks are replaced)."""
    return "`" + " ".join(str(value).replace("`", "'").split()) + "`"


_EXPERT_DIMS = frozenset({"ep", "etp", "edp"})


def _mesh_rows(mesh: Mesh, moe: bool) -> dict[str, Any]:
    """The mesh table; a dense model has no expert decomposition to show."""
    rows = []
    for dim in GROUP_DIMS:
        if not moe and dim in _EXPERT_DIMS:
            continue
        groups = mesh.groups(dim)
        rows.append(
            {
                "dim": dim.upper(),
                "size": int(mesh.sizes[dim]),
                "groups": int(groups.shape[0]),
                "crosses": "yes" if bool(np.any(mesh.crosses_hosts(dim))) else "no",
                "example": rank_ranges(groups[mesh.group_of(dim)[0]].tolist()),
            }
        )
    return {
        "world": mesh.world,
        "hosts": mesh.hosts,
        "gpus_per_node": mesh.gpus_per_node,
        "order": "-".join(mesh.order),
        "convention": mesh.convention.value,
        "rows": rows,
    }


def _finding_rows(findings: tuple[Finding, ...], cap: int) -> list[dict[str, str]]:
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    ranked = sorted(findings, key=lambda f: order[f.severity])
    rows = []
    for f in ranked[:cap]:
        where = f.path + (f" (line {f.line})" if f.line is not None else "")
        if f.nodes:
            where += (
                (" " if where else "") + ", ".join(f.nodes[:3]) + (" …" if len(f.nodes) > 3 else "")
            )
        rows.append(
            {
                "severity": f.severity.value,
                "code": f.code,
                "where": where,
                "message": finding_message(f),
                "fix": f.fix,
            }
        )
    return rows


def _context(source: AnalysisLike, caps: _Caps) -> dict[str, Any]:
    plan, graph = _Deployment.of(source), source.graph
    if graph is not None:
        single_pool(ExportContext(graph=graph), "Markdown report")
    mesh = graph.mesh if graph is not None else _mesh_or_none(plan)
    ov = overview(graph) if graph is not None else None
    rows = stage_rows(ov, graph) if ov is not None and graph is not None else []
    counts = {s.value: sum(f.severity is s for f in source.findings) for s in Severity}
    head = headline(source.findings, graph is not None, source.estimate)
    return {
        "plan": {"name": plan.name, "model": plan.model.name},
        "verdict_line": head["line"],
        "claims": head["claims"][: caps.verdicts],
        "claims_more": max(0, len(head["claims"]) - caps.verdicts),
        "facts": facts(plan.model, plan.parallel, plan.workload, source.estimate),
        "parallel": _parallel_rows(plan),
        "hardware": _hardware_rows(plan),
        "mesh": _mesh_rows(mesh, plan.model.moe is not None)
        if mesh is not None
        else _no_mesh(plan),
        "stages": rows[: caps.stages],
        "stages_more": max(0, len(rows) - caps.stages),
        "mermaid": mermaid(ov) if ov is not None and caps.mermaid else "",
        "findings": _finding_rows(source.findings, caps.findings),
        "findings_more": max(0, len(source.findings) - caps.findings),
        "counts": counts,
        "estimate": estimate_part(source.estimate),
        "graph": graph_totals(graph) if graph is not None else None,
        "notes": [],
    }


def _mesh_or_none(plan: _Deployment) -> Mesh | None:
    try:
        return mesh_for(plan.parallel, plan.model, plan.hardware.gpus_per_node)
    except DagenError:  # a plan with errors may not factor; its findings say why
        return None


def _no_mesh(plan: _Deployment) -> dict[str, Any]:
    return {
        "world": plan.parallel.world(),
        "hosts": -(-plan.parallel.world() // plan.hardware.gpus_per_node),
        "gpus_per_node": plan.hardware.gpus_per_node,
        "order": plan.parallel.order,
        "convention": plan.parallel.convention.value,
        "rows": [],
    }


class _Context:
    """An :class:`ExportContext` seen as an analysis (described by its graph)."""

    def __init__(self, ctx: ExportContext) -> None:
        self.plan: Plan | None = None
        self.findings = ctx.findings
        self.graph: Graph | None = ctx.graph
        self.estimate = ctx.estimate


def render_markdown(source: ExportContext | AnalysisLike) -> str:
    """The report as Markdown text, at most :data:`MAX_CHARS` characters.

    ``source`` is an :class:`ExportContext` or a :class:`dagen.api.Analysis` (whose
    graph may be ``None`` when the plan has errors: the report then shows the plan,
    the mesh if it factors, and the findings).
    """
    src: AnalysisLike = _Context(source) if isinstance(source, ExportContext) else source
    template = _environment().get_template("report.md.j2")
    caps = _Caps()
    for _ in range(8):
        text = template.render(_context(src, caps))
        if len(text) <= MAX_CHARS:
            return text
        caps = caps.smaller()
    note = "\n\n_Report cut at GitHub's comment limit; the JSON output has everything._\n"
    return text[: MAX_CHARS - len(note)] + note


def emit(ctx: ExportContext, out: BinaryIO) -> None:
    """Write the report (UTF-8) to ``out``; a deployment's is :mod:`dagen.export.mdpools`'s."""
    if ctx.graph.transfers is not None:
        from dagen.export.mdpools import render_pools

        out.write(render_pools(ctx).encode("utf-8"))
        return
    out.write(render_markdown(ctx).encode("utf-8"))
