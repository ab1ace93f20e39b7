"""The library API: load a plan, check it, build its graph, estimate it, export it.

Each call does one layer's work; :func:`analyse` strings them together the way
``dagen check`` and ``dagen build`` do.

Example:
    >>> import dagen
    >>> plan = dagen.load_plan("samples/seed-moe-10b-fixed.yaml")  # doctest: +SKIP
    >>> result = dagen.analyse(plan)  # doctest: +SKIP
    >>> result.graph.n_nodes > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dagen.checks import check_graph
from dagen.codes import Code
from dagen.cost import (
    CostModel,
    Estimate,
    Verdict,
    estimate,
    figures,
    judge_comparison,
    judge_estimate,
    judge_plan_bounds,
    model_for,
    verdict_findings,
)
from dagen.cost.routing import pool_load_peak
from dagen.errors import DagenError, FlagError, LayoutFault, MeshError, PlanInfeasible
from dagen.export import ExportContext, Phases, write_outputs
from dagen.findings import Finding, Severity, finding, has_errors
from dagen.graph.budget import Peak
from dagen.graph.build import build_graph
from dagen.graph.ir import OP_LABELS, Graph
from dagen.mesh import mesh_of
from dagen.plan.importers import Imported, import_plan
from dagen.plan.loader import load_plan
from dagen.plan.model import Plan
from dagen.plan.rules import blocking, plan_findings

__all__ = ["Analysis", "analyse", "build", "explain", "import_flags", "load_plan", "write"]

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
"""Told each stage of the work as it starts, e.g. ``"building the graph"``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Analysis:
    """Everything ``dagen check`` knows about a plan."""

    plan: Plan
    findings: tuple[Finding, ...]
    """Plan rules, then graph checks, then cost verdicts, in that order."""
    graph: Graph | None = None
    """The graph, unless plan errors made it impossible to build."""
    estimate: Estimate | None = None

    @property
    def ok(self) -> bool:
        """No error-level finding."""
        return not has_errors(list(self.findings))

    def summary(self) -> list[str]:
        """A few lines for people: graph size, peak memory, latency, throughput, bubble.

        Formulas: docs/graph.md (the graph) and docs/cost-model.md (the estimate).
        """
        if self.graph is None:
            return ["graph: not built (the plan has errors); claims judged by bounds alone"]
        g = self.graph
        lines = [f"graph: {g.n_nodes:,} nodes, {g.n_edges:,} edges on {g.mesh.world:,} GPUs"]
        e = self.estimate
        if e is None:
            return [*lines, "estimate: not simulated (the graph has errors)"]
        total = e.memory.total_bytes
        worst = int(total.argmax())
        cap = float(e.memory.capacity_bytes)
        lines.append(  # GiB, as the report, the pictures and nvidia-smi count memory
            f"memory: fullest rank {worst} holds {total[worst] / 2**30:.3g} GiB of "
            f"{cap / 2**30:.3g} GiB ({total[worst] / cap:.1%})"
        )
        if e.ttft_s is not None:
            lines.append(f"TTFT (prefill makespan): {e.ttft_s:.4g} s")
        if e.tpot_s is not None:
            lines.append(f"TPOT (decode step): {e.tpot_s * 1e3:.4g} ms")
        lines.append(
            f"throughput: {e.tokens_per_s:,.0f} tokens/s, {e.tokens_per_s_per_gpu:,.0f} "
            f"tokens/s per GPU; pipeline bubble {e.bubble_fraction:.1%}"
        )
        return [*lines, *_routing_lines(g), _critical_path_line(g, e), *_priced_lines(e)]


def _routing_lines(g: Graph) -> list[str]:
    """Each expert-parallel pool priced at its busiest rank: by how much, and why."""
    out = []
    for pool in g.pools:
        peak = pool_load_peak(pool)
        if peak <= 1.0005:
            continue
        ep, d = pool.mesh.sizes["ep"], pool.dims
        why = (
            f"workload.expert_balance {pool.workload.expert_balance:g}"
            if pool.workload.expert_balance is not None
            else f"balanced routing, {d.slots * d.slot_tokens:,.0f} (token, expert) pairs per "
            "rank and micro-batch"
        )
        name = f"{pool.name} " if len(g.pools) > 1 else ""
        out.append(
            f"experts: {name}MoE layers wait for the busiest of {ep:,} EP ranks, "
            f"{peak:.3g}× the mean load ({why})"
        )
    return out


def _priced_lines(e: Estimate) -> list[str]:
    """Under a measured cost model: the share of nodes the tables priced, and each
    fallback (docs/cost-model.md, "Measured and auto")."""
    if not e.priced_by:
        return []
    share = e.priced_by.get("measured", 0.0)
    head = f"cost model {e.cost_model}: {share:.0%} of compute and collective nodes measured"
    return [head, *(f"  fell back: {n}" for n in e.cost_notes)]


def _critical_path_line(g: Graph, e: Estimate) -> str:
    """The chain that sets the makespan: its ends and where its time goes, by op."""
    path = np.asarray(e.critical_path, dtype=np.int64)
    if path.size == 0:
        return "critical path: empty"
    spent = np.bincount(g.op[path], weights=e.duration_s[path], minlength=len(OP_LABELS))
    total = float(spent.sum()) or 1.0
    top = np.argsort(-spent, kind="stable")[:3]
    shares = ", ".join(f"{OP_LABELS[i]} {spent[i] / total:.0%}" for i in top if spent[i] > 0)
    first, last = g.node_ids([path[0], path[-1]])
    return f"critical path: {path.size:,} nodes from {first} to {last}; time in {shares}"


def build(plan: Plan) -> Graph:
    """Build the per-GPU graph of a plan whose rules pass.

    Raises:
        PlanInfeasible: the plan has error-level findings; they are in the message.
    """
    errors = blocking(plan_findings(plan))
    if errors:
        raise PlanInfeasible("\n".join(f.render(plan.source) for f in errors))
    try:
        return build_graph(plan)
    except LayoutFault as fault:
        raise PlanInfeasible(_layout_finding(plan, fault).render(plan.source)) from None


def _layout_finding(plan: Plan, fault: LayoutFault) -> Finding:
    """A layout the mesh cannot lay out, as the finding of its plan field."""
    text = str(fault)
    message, _, fix = text.partition(" Fix: ")
    return finding(
        fault.code, message.rstrip(". "), fix=fix.rstrip("."), path=fault.path,
        origin=plan.where(fault.path),
    )  # fmt: skip


def _noop(_: str) -> None:
    return None


def analyse(
    plan: Plan,
    *,
    cost_model: CostModel | None = None,
    progress: Progress | None = None,
    meter: Phases | None = None,
    simulate: bool = True,
    exporting: bool = False,
) -> Analysis:
    """Run every check on ``plan``: rules, then (if they pass) graph checks and cost.

    When the rules fail the graph cannot be built; the plan's claims are then judged
    against first-principles bounds alone, which need no graph. ``cost_model`` prices the
    nodes (default :func:`dagen.cost.default_cost_model`). ``progress`` is told each
    stage; ``meter(phase, done, total)`` follows the schedule simulation. ``exporting``
    says the graph will be exported too, which raises the memory the guard reserves.

    Raises:
        MemoryLimit: the run would not fit in memory (refused before allocating).
    """
    say = progress or _noop
    findings = list(plan_findings(plan))
    graph = None
    if not blocking(findings):
        say("building the graph")
        try:
            peak = Peak.EXPORT if exporting else Peak.SIMULATE if simulate else Peak.BUILD
            graph = build_graph(plan, peak=peak)
        except LayoutFault as fault:
            findings.append(_layout_finding(plan, fault))
    if graph is None:
        say("judging claims against first-principles bounds")
        bounds = judge_plan_bounds(plan) + _comparisons(plan, None, cost_model, say)
        findings += verdict_findings(plan, bounds)
        return Analysis(plan=plan, findings=tuple(findings))
    say(f"checking {graph.n_nodes:,} nodes and {graph.n_edges:,} edges")
    findings += check_graph(graph)
    est = None
    graph_broken = any(
        f.code.startswith("GRAPH-") and f.severity is Severity.ERROR for f in findings
    )
    if simulate and not graph_broken:
        say("estimating memory and simulating the schedule")
        model = cost_model or model_for(plan)
        est = estimate(graph, cost_model=model, meter=_phase(meter, "simulating"))
        verdicts = judge_estimate(plan, est) + _comparisons(plan, est, cost_model, say)
        est = dataclasses.replace(est, verdicts=verdicts)
        findings += verdict_findings(plan, est.verdicts)
    return Analysis(plan=plan, findings=tuple(findings), graph=graph, estimate=est)


def _comparisons(
    plan: Plan, est: Estimate | None, model: CostModel | None, say: Progress
) -> tuple[Verdict, ...]:
    """Each comparative claim judged: the alternative analysed like any plan (its own
    rules, graph checks and estimate), then both plans' figures compared."""
    out = []
    this = figures(plan, est) if est is not None else None
    for i, alt in enumerate(plan.alternatives):
        if alt is None:
            continue
        why = "" if est is not None else "this plan does not build, so it has no figures"
        other = None
        if est is not None:
            say(f"analysing the alternative of claims.{i}")
            result = analyse(alt, cost_model=model)
            if result.estimate is None:
                errors = [f for f in result.findings if f.severity is Severity.ERROR]
                first = errors[0] if errors else None
                why = "the alternative does not build" + (
                    f": {first.code} {first.path}: {first.message}" if first else ""
                )
            else:
                other = figures(alt, result.estimate)
        out.append(judge_comparison(plan, i, this, other, why))
    return tuple(out)


def _phase(meter: Phases | None, phase: str) -> Callable[[int, int], None] | None:
    if meter is None:
        return None
    return lambda done, total: meter(phase, done, total)


def write(
    analysis: Analysis,
    outputs: Sequence[tuple[Path, str]],
    *,
    meter: Phases | None = None,
    force: bool = False,
    **view: Any,
) -> None:
    """Write each ``(path, format)`` of ``outputs`` atomically (a directory format, such as
    ``per-rank``, writes a directory; ``force`` replaces one dagen did not write).

    Keyword arguments are :class:`dagen.export.ExportContext` view fields (``view``,
    ``ranks``, ``layers``, ``microbatches``, ``max_detail_nodes``);
    ``meter(phase, done, total)`` follows each streamed output.
    """
    if analysis.graph is None:
        raise PlanInfeasible("the plan has errors, so there is no graph to export")
    ctx = ExportContext(
        graph=analysis.graph,
        findings=analysis.findings,
        estimate=analysis.estimate,
        **view,
    )
    write_outputs(ctx, outputs, meter, force=force)


def import_flags(
    framework: str, argv: Sequence[str], *, model_config: Path, output: Path
) -> Imported:
    """A plan from a framework's flags (:func:`dagen.plan.importers.import_plan`), its
    mesh laid out to prove dagen can write the layout.

    Raises:
        FlagError: the flags cannot be imported, or their layout cannot be laid out.
    """
    imported = import_plan(framework, argv, model_config=model_config, output=output)
    try:
        mesh_of(imported.plan)
    except MeshError as err:
        raise FlagError(f"{framework}: dagen cannot lay these flags out: {err}") from None
    return imported


DOCS = Path(__file__).resolve().parent.parent / "docs"
"""The docs/ of a checkout (an installed dagen may have none; then only the registry speaks)."""


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def _doc_row(code: Code, docs: Path) -> list[tuple[str, str]]:
    """The (column, text) cells of ``code``'s row in its docs table, after the code cell;
    ``as above`` is read from the row above. Empty when the page is absent."""
    try:
        lines = (docs / code.page).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    anchor = f'<a id="{code.value.lower()}"></a>'
    at = next((i for i, x in enumerate(lines) if anchor in x), None)
    if at is None:
        return []
    top = at
    while top > 0 and lines[top - 1].startswith("|"):
        top -= 1
    header, rows = _cells(lines[top]), [_cells(x) for x in lines[top + 2 : at + 1]]
    out = []
    for col in range(1, min(len(header), len(rows[-1]))):
        text = next((r[col] for r in reversed(rows) if r[col] != "as above"), rows[-1][col])
        out.append((header[col], re.sub(r"`([^`]*)`", r"\1", text)))
    return out


def explain(code_text: str, docs: Path = DOCS) -> str:
    """What a finding code means: its severity, summary, docs anchor and docs text.

    Raises:
        DagenError: ``code_text`` is not a registered code (the message names the nearest).

    Example:
        >>> print(explain("GRAPH-CYCLE").splitlines()[0])
        GRAPH-CYCLE (error by default)
    """
    try:
        code = Code.of(code_text.strip())
    except KeyError:
        near = difflib.get_close_matches(code_text.strip().upper(), [c.value for c in Code], 3)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise DagenError(
            f"{code_text!r} is not a finding code; {hint}Fix: run `dagen explain` to list "
            "every code."
        ) from None
    lines = [f"{code.value} ({code.severity.value} by default)", f"  {code.summary}"]
    lines.append(f"  docs: {code.doc}")
    for column, text in _doc_row(code, docs):
        lines.append(f"  {column.lower()}: {text}")
    return "\n".join(lines)


def codes() -> list[tuple[str, str, str]]:
    """Every registered code as (code, default severity, summary), in registry order."""
    return [(c.value, c.severity.value, c.summary) for c in Code]
