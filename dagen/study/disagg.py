"""Analyse a disaggregated deployment: its pool rules, its graph (both pools and the KV
transfers), the checks, the estimate, the deployment's figures, and its claims judged
against the same GPUs co-located (the alternative built and analysed like any plan).

Example:
    >>> result = analyse_deployment(load_deployment("samples/deepseek-v3-disagg.yaml"))  # doctest: +SKIP
    >>> result.disagg.units_ratio  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dagen.api import analyse
from dagen.checks import check_graph
from dagen.cost import Estimate, Verdict, estimate, figures, judge_comparison, model_for
from dagen.cost.disagg import Disagg, disagg_figures
from dagen.cost.metrics import Figures
from dagen.errors import PlanInfeasible
from dagen.export import ExportContext, write_outputs
from dagen.findings import Code, Finding, Severity, finding, has_errors
from dagen.graph.deployment import build_deployment
from dagen.graph.ir import Graph
from dagen.plan.claims import Metric
from dagen.plan.deploy import Deployment
from dagen.plan.deploy_rules import deployment_findings
from dagen.plan.rules import blocking

__all__ = ["DeploymentAnalysis", "analyse_deployment", "write_deployment"]

_JUDGED = frozenset(
    {Metric.TTFT_S, Metric.TPOT_MS, Metric.TOKENS_PER_S, Metric.TOKENS_PER_S_PER_GPU}
)
"""The metrics a deployment's figures define (per GPU: of every GPU of both pools)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentAnalysis:
    """Everything ``dagen check`` knows about a deployment."""

    deployment: Deployment
    findings: tuple[Finding, ...]
    graph: Graph | None = None
    estimate: Estimate | None = None
    disagg: Disagg | None = None
    colocated: tuple[Figures | None, ...] = ()
    """Per claim, the co-located alternative's figures (None: absolute, or it did not build)."""

    @property
    def ok(self) -> bool:
        return not has_errors(list(self.findings))

    def summary(self) -> list[str]:
        """A few lines for people: the graph, each pool, the transfer, the rate match."""
        if self.graph is None:
            return ["graph: not built (the deployment has errors)"]
        g = self.graph
        tr = g.transfers
        assert tr is not None
        lines = [f"graph: {g.n_nodes:,} nodes, {g.n_edges:,} edges on {g.world:,} GPUs "
                 f"(one unit of each pool); {tr.size:,} KV-cache messages, "
                 f"{int(tr.nbytes.sum()):,} B for {tr.requests:,} requests"]  # fmt: skip
        d = self.disagg
        if d is None:
            return [*lines, "estimate: not simulated (the graph has errors)"]
        for p in (d.prefill, d.decode):
            what = "TTFT" if p.phase == "prefill" else "TPOT"
            kind = "input" if p.phase == "prefill" else "output"
            lines.append(f"{p.name}: {p.units} × {p.gpus_per_unit} GPUs; {what} "
                         f"{p.latency_s * (1 if p.phase == 'prefill' else 1e3):.4g} "
                         f"{'s' if p.phase == 'prefill' else 'ms'}; {p.tokens_per_s:,.0f} {kind} "
                         f"tokens/s per unit ({p.tokens_per_s_per_node:,.0f} per node)")  # fmt: skip
        lines.append(f"transfer: {d.transfer_bytes_per_request:,.0f} B per request in "
                     f"{d.transfer_s * 1e3:.4g} ms (max {d.transfer_max_s * 1e3:.4g} ms)")  # fmt: skip
        lines.append(f"rate match: {d.units_ratio:.3g} prefill units per decode unit balance them; "
                     f"{d.prefill.units}:{d.decode.units} runs {d.requests_per_s:,.1f} requests/s "
                     f"({d.bottleneck}-bound), {d.tokens_per_s_per_gpu:,.0f} output tokens/s per "
                     f"GPU; goodput {d.goodput_requests_per_s:,.1f} requests/s ({d.slo_note})")  # fmt: skip
        return lines


def _memory(dep: Deployment, graph: Graph, est: Estimate) -> list[Finding]:
    """COST-POOL-MEMORY: each pool's fullest rank against its capacity (decode's KV cache
    holds the transferred prompts and the generated tokens of its whole concurrency)."""
    out = []
    m, g = est.memory, 2.0**30
    for pool in graph.pools:
        r = pool.rank0 + int(np.argmax(m.total_bytes[pool.ranks.start : pool.ranks.stop]))
        total, cap = int(m.total_bytes[r]), int(m.capacity_per_rank[r])
        if total <= cap:
            continue
        w = pool.workload
        tokens = (f"({w.prompt_len:,} transferred + {w.gen_len:,} generated)" if w.decoding
                  else f"{w.prompt_len:,} prompt")  # fmt: skip
        path = f"pools.{pool.name}.hardware.memory_gib"
        out.append(finding(
            Code.COST_POOL_MEMORY,
            f"pool {pool.name!r}: rank {r} needs weights {m.weights_bytes[r] / g:.3g} GiB + KV "
            f"cache {m.kv_bytes[r] / g:.3g} GiB (its share of {w.batch:,} sequences × {tokens} "
            f"tokens) + activations {m.activation_bytes[r] / g:.3g} GiB + buffers "
            f"{m.buffer_bytes[r] / g:.3g} GiB = {total / g:.3g} GiB > {cap / g:.3g} GiB on the GPU",
            fix=f"lower pools.{pool.name}.workload.batch, shard the pool wider (tp, ep) or give "
            "it GPUs with more memory",
            path=path, origin=dep.where(path) or dep.where(f"pools.{pool.name}"), ranks=(r,),
        ))  # fmt: skip
    return out


def _slo(dep: Deployment, d: Disagg) -> list[Finding]:
    if d.goodput_requests_per_s > 0 or (dep.slo.ttft_s is None and dep.slo.tpot_ms is None):
        return []
    return [finding(Code.COST_POOL_SLO, f"goodput 0 requests/s: {d.slo_note} (the estimate is "
                    "one schedule, so every request meets an SLO or none does)",
                    fix="add prefill units or shorten the prefill batch (TTFT); shrink the decode "
                    "batch (TPOT)", path="slo",
                    origin=dep.where("slo.ttft_s") or dep.where("slo.tpot_ms"))]  # fmt: skip


def _this(d: Disagg, metric: Metric) -> Figures | None:
    if metric not in _JUDGED:
        return None
    nan = float("nan")
    return Figures(
        world=d.gpus, makespan_s=nan, ttft_s=d.ttft_s, tpot_ms=d.tpot_s * 1e3,
        tokens_per_s=d.output_tokens_per_s, tokens_per_s_per_gpu=d.tokens_per_s_per_gpu,
        memory_gib=nan, memory_fraction=nan, gpu_utilization=nan, mfu=nan, comm_s=nan,
        comm_share=nan, bubble_fraction=nan, flop_per_token=nan, peak_flops=nan,
    )  # fmt: skip


def _claims(
    dep: Deployment, d: Disagg | None, say: Callable[[str], None]
) -> tuple[list[Verdict], list[Figures | None]]:
    verdicts: list[Verdict] = []
    others: list[Figures | None] = []
    decode = dep.pool("decode").plan
    proxy = dataclasses.replace(decode, claims=dep.claims)
    for i, (claim, alt) in enumerate(zip(dep.claims, dep.alternatives, strict=True)):
        other, why = None, ""
        if alt is None:
            others.append(None)
            continue
        say(f"analysing the co-located alternative of claims.{i}")
        result = analyse(alt)
        if result.estimate is None:
            why = "the co-located alternative does not build"
        else:
            other = figures(alt, result.estimate)
        others.append(other)
        this = _this(d, claim.metric) if d is not None else None
        verdicts.append(judge_comparison(proxy, i, this, other, why or (
            "" if d is not None else "the deployment does not build")))  # fmt: skip
    return verdicts, others


def _verdict_findings(dep: Deployment, verdicts: list[Verdict]) -> list[Finding]:
    sev = {"holds": Severity.INFO, "unverified": Severity.INFO, "fails": Severity.WARNING,
           "impossible": Severity.ERROR}  # fmt: skip
    return [finding(Code.COST_COMPARE, f"{v.claim}: {v.verdict.value}. {v.arithmetic} (this: the "
                    "deployment's output tokens/s over all its GPUs; the alternative: the decode "
                    "layout serving prefill and decode co-located, on as many GPUs)",
                    path=v.path, origin=dep.where(v.path), severity=sev[v.verdict.value])
            for v in verdicts]  # fmt: skip


def analyse_deployment(
    dep: Deployment, *, progress: Callable[[str], None] | None = None
) -> DeploymentAnalysis:
    """Run every check on ``dep`` and estimate it (see the module docstring)."""
    say = progress or (lambda _: None)
    found = deployment_findings(dep)
    if blocking(found):
        verdicts, others = _claims(dep, None, say)
        found += _verdict_findings(dep, verdicts)
        return DeploymentAnalysis(deployment=dep, findings=tuple(found), colocated=tuple(others))
    say("building both pools and the KV transfers")
    graph = build_deployment(dep)
    say(f"checking {graph.n_nodes:,} nodes and {graph.n_edges:,} edges")
    found += check_graph(graph)
    if any(f.code.startswith("GRAPH-") and f.severity is Severity.ERROR for f in found):
        return DeploymentAnalysis(deployment=dep, findings=tuple(found), graph=graph)
    say("simulating the schedule")
    est = estimate(graph, cost_model=model_for(dep.pools[0].plan))
    d = disagg_figures(graph, est, ttft_slo_s=dep.slo.ttft_s, tpot_slo_ms=dep.slo.tpot_ms)
    found += _memory(dep, graph, est) + _slo(dep, d)
    verdicts, others = _claims(dep, d, say)
    est = dataclasses.replace(est, verdicts=tuple(verdicts))
    found += _verdict_findings(dep, verdicts)
    return DeploymentAnalysis(deployment=dep, findings=tuple(found), graph=graph, estimate=est,
                              disagg=d, colocated=tuple(others))  # fmt: skip


def write_deployment(
    result: DeploymentAnalysis,
    outputs: Sequence[tuple[Path, str]],
    *,
    force: bool = False,
    **view: Any,
) -> None:
    """Write each ``(path, format)`` of ``outputs`` for a deployment (as :func:`dagen.api.write`,
    the report with its per-pool tables and rate match)."""
    if result.graph is None:
        raise PlanInfeasible("the deployment has errors, so there is no graph to export")
    ctx = ExportContext(graph=result.graph, findings=result.findings, estimate=result.estimate,
                        disagg=result.disagg, **view)  # fmt: skip
    write_outputs(ctx, outputs, force=force)
