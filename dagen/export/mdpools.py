"""The Markdown report of a disaggregated deployment: the verdict, a table per pool, the
KV transfer, the rate match, goodput, and the findings (docs/disaggregation.md has
every formula).

Example:
    >>> text = render_pools(ctx)  # doctest: +SKIP
    >>> text.splitlines()[0].startswith("# ")  # doctest: +SKIP
    True
"""

from __future__ import annotations

from dagen.export.base import ExportContext
from dagen.export.markdown import md
from dagen.export.mdhead import verdict
from dagen.export.summary import human_bytes

__all__ = ["render_pools"]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _pool_rows(ctx: ExportContext) -> list[str]:
    g, d = ctx.graph, ctx.disagg
    lines: list[str] = []
    for p, pool in enumerate(g.pools):
        s, w = pool.mesh.sizes, pool.workload
        rows = [
            ["units × GPUs", f"{pool.units} × {pool.world} ({pool.units * pool.world:,} GPUs)"],
            ["layout", f"TP{s['tp']} · DP{s['dp']} · PP{s['pp']} (attention); EP{s['ep']} · "
                       f"EDP{s['edp']} (experts)"],
            ["global ranks", f"{pool.rank0}–{pool.rank0 + pool.world - 1}"],
            ["hardware", f"{md(pool.hardware.preset or 'custom')}, {pool.hardware.gpus_per_node} "
                         f"GPUs per node, inter-node {pool.hardware.inter_node_gbps:g} GB/s"],
            ["workload", f"{w.phase.value}: batch {w.batch:,}, prompt {w.prompt_len:,}, "
                         f"{w.micro_batches} micro-batch(es)"],
        ]  # fmt: skip
        if d is not None:
            r = d.prefill if p == g.transfers.prefill else d.decode  # type: ignore[union-attr]
            if r.phase == "prefill":
                rows += [["TTFT (prefill makespan)", f"{r.latency_s:.4g} s"],
                         ["input tokens/s", f"{r.tokens_per_s:,.0f} per unit, "
                          f"{r.tokens_per_s_per_node:,.0f} per node"]]  # fmt: skip
            else:
                rows += [["TPOT", f"{r.latency_s * 1e3:.4g} ms"],
                         ["output tokens/s", f"{r.tokens_per_s:,.0f} per unit, "
                          f"{r.tokens_per_s_per_node:,.0f} per node"]]  # fmt: skip
            rows.append(["requests/s per unit", f"{r.requests_per_s:,.2f}"])
        lines += ["", f"### Pool `{md(pool.name)}`", "", *_table(["", ""], rows)]
    return lines


def _rate_rows(ctx: ExportContext) -> list[str]:
    d, tr = ctx.disagg, ctx.graph.transfers
    assert tr is not None
    lines = ["", "## KV-cache transfer", "", *_table(["", ""], [
        ["messages", f"{tr.size:,} kv.send → kv.recv for {tr.requests:,} requests"],
        ["bytes per request", human_bytes(int(tr.nbytes.sum()) / max(tr.requests, 1))],
        ["head units × bytes", f"{tr.heads} × {tr.unit_bytes:g} B per token and layer"],
        *([["time per request", f"{d.transfer_s * 1e3:.4g} ms (max {d.transfer_max_s * 1e3:.4g} "
            "ms), inter-node link with its latency"]] if d is not None else []),
    ])]  # fmt: skip
    if d is None:
        return lines
    p, q = d.prefill, d.decode
    w = ctx.graph.pools[tr.decode].workload
    return [*lines, "", "## Rate match", "", *_table(["", ""], [
        ["prefill admits", f"λp = {p.tokens_per_s:,.0f} ÷ {w.prompt_len:,} prompt tokens = {p.requests_per_s:,.2f} "
                           "requests/s per unit"],
        ["decode retires", f"λd = {q.tokens_per_s:,.0f} ÷ {w.gen_len:,} output tokens = {q.requests_per_s:,.2f} "
                           "requests/s per unit"],
        ["balancing ratio", f"λd ÷ λp = {d.units_ratio:.3g} prefill units per decode unit"],
        ["deployment", f"min({p.units} × {p.requests_per_s:,.2f}, {q.units} × "
                       f"{q.requests_per_s:,.2f}) = {d.requests_per_s:,.2f} requests/s "
                       f"({d.bottleneck}-bound)"],
        ["throughput", f"{d.input_tokens_per_s:,.0f} input and {d.output_tokens_per_s:,.0f} output "
                       f"tokens/s; {d.tokens_per_s_per_gpu:,.0f} output tokens/s per GPU of "
                       f"{d.gpus:,}"],
        ["goodput", f"{d.goodput_requests_per_s:,.2f} requests/s: {md(d.slo_note)}"],
    ])]  # fmt: skip


def _findings(ctx: ExportContext) -> list[str]:
    if not ctx.findings:
        return ["", "## Findings", "", "None."]
    rows = [[f.severity.value, f"`{f.code}`", md(f.path or "—"), md(f.message)]
            for f in ctx.findings]  # fmt: skip
    return ["", "## Findings", "", *_table(["severity", "code", "where", "what"], rows)]


def render_pools(ctx: ExportContext) -> str:
    """The report of a deployment graph (one with transfers), as Markdown."""
    g = ctx.graph
    mark, said = verdict(ctx.findings, True, ctx.estimate)
    lines = [f"# {md(g.name)}: {mark} {md(said)}", "",
             f"{md(g.model.name)}, {g.model.layers} layers, disaggregated into "
             f"{len(g.pools)} pools; graph {g.n_nodes:,} nodes, {g.n_edges:,} edges on "
             f"{g.world:,} GPUs (one unit of each pool).", "", "## Pools"]  # fmt: skip
    lines += _pool_rows(ctx) + _rate_rows(ctx) + _findings(ctx)
    return "\n".join(lines) + "\n"
