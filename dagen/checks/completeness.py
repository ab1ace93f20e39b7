"""Completeness: the graph computes exactly what the plan says, once.

Against the expected op table of :mod:`dagen.checks.expect` (the pool's plan-level facts
only), one pool at a time:

- ``GRAPH-MISSING`` / ``GRAPH-DUPLICATE``: every (rank, step, micro-batch, layer, op) the
  plan implies exists exactly once. A rank is one (tp, cp) shard of its replica's stage,
  so this is "every (replica, layer, op, micro-batch, step) once per TP/CP shard".
- ``GRAPH-UNEXPECTED``: nodes the plan does not call for (an op foreign to its layer's
  kind, a layer on the wrong stage, a micro-batch or step out of range, a node whose kind
  is not its op's: an all-reduce emitted as a compute node with no instance).
- ``GRAPH-EXPERT-MISSING`` / ``GRAPH-EXPERT-DUPLICATE``: in every expert-parallel group
  instance (one (edp, pp, etp) coordinate), every routed expert of every MoE layer runs at
  least once per (step, micro-batch), and the copies beyond one add up to at most the
  plan's ``redundant_experts``.
- ``GRAPH-IDLE-RANK``: a rank with no compute node.
- ``GRAPH-MB-SKIPS-STAGE``: a micro-batch (at a step) with no node at all on some stage of
  its replica.

Algorithm: each node gets the id of its cell in a dense rank-major table, one
``bincount`` counts them, and the table is compared with the expected one stage by stage
by broadcasting. O(n + cells), cells ≈ n.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.checks.cells import CellTable
from dagen.checks.common import Code, make
from dagen.checks.expect import Expected
from dagen.checks.experts import check_experts
from dagen.checks.shared import Shared
from dagen.findings import Finding, Severity, count, rank_list
from dagen.graph.ir import OP_LABELS, Graph, Kind, Op
from dagen.graph.ops import OP_KIND

__all__ = ["check_completeness"]

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


def check_completeness(graph: Graph, shared: Shared | None = None) -> list[Finding]:
    """Every expected op once, every expert hosted, no idle rank, no skipped stage.

    Example:
        >>> [f.code for f in check_completeness(graph)]  # doctest: +SKIP
        []
    """
    sh = shared or Shared(graph)
    exp = sh.expected
    table = CellTable.of(graph, exp, sh)
    findings: list[Finding] = []
    want = table.want(graph)
    exact = table.exact(graph, want, int(sh.expert_nodes.size))
    if not exact:
        verdict = table.compare(graph, want)
        findings += _skips(graph, exp, verdict.skips)
        findings += _missing(graph, table, verdict.lost)
        findings += _duplicate(graph, table, verdict.dup)
        findings += _unexpected(graph, table, verdict.foreign)
    findings += check_experts(graph, exp, sh)
    findings += _idle(graph, exp, exact)
    return findings


def _skips(graph: Graph, exp: Expected, skips: list[tuple[int, int, int, int]]) -> list[Finding]:
    if not skips:
        return []
    rep, s, t, m = skips[0]
    pool = graph.pools[0]
    mesh = pool.mesh
    return [
        make(
            graph,
            Code.GRAPH_MB_SKIPS_STAGE,
            f"{count(len(skips), '(replica, stage, step, micro-batch)', '(replica, stage, step, micro-batch)s')} "
            f"with no node on any rank of the stage: the micro-batch never passes through that "
            f"pipeline stage of its replica; first: replica {rep}, micro-batch {m}, "
            f"step {t} skips stage {s} of {exp.pp}",
            "expand every micro-batch of every step over every pipeline stage of its replica",
            ranks=np.flatnonzero((mesh.replica == rep) & (mesh.stage == s)) + pool.rank0,
            data={"skips": len(skips), "first": [rep, s, t, m]},
        )
    ]


def _by_op(graph: Graph, table: CellTable, cells: I64) -> str:
    labels = [table.describe(graph, int(c))[2] for c in cells[:2000]]
    names, n = np.unique(labels, return_counts=True)
    top = sorted(zip(n.tolist(), names.tolist(), strict=True), reverse=True)[:6]
    more = " (first 2,000)" if cells.size > 2000 else ""
    return ", ".join(f"{name} ×{k:,}" for k, name in top) + more


def _missing(graph: Graph, table: CellTable, cells: I64) -> list[Finding]:
    if cells.size == 0:
        return []
    _, place, op = table.describe(graph, int(cells[0]))
    ranks = table.rank_of(graph, cells)
    width = table.exp.width
    row = int(cells[0]) - int(cells[0]) % width  # the first missing op's neighbours
    beside = np.flatnonzero((table.cell >= row) & (table.cell < row + width))
    return [
        make(
            graph,
            Code.GRAPH_MISSING,
            f"{count(cells.size, 'op')} the plan calls for {'is' if cells.size == 1 else 'are'} "
            f"missing ({_by_op(graph, table, cells)}) "
            f"on ranks {rank_list(ranks)}; first: {op} at {place}",
            "emit every op of the layer template on every rank of the stage, for every "
            "micro-batch and step",
            nodes=beside,
            ranks=ranks,
            data={"missing": int(cells.size), "first": f"{place}/{op}"},
        )
    ]


def _duplicate(graph: Graph, table: CellTable, cells: I64) -> list[Finding]:
    if cells.size == 0:
        return []
    nodes = np.flatnonzero(np.isin(table.cell, cells[:8]))
    _, place, op = table.describe(graph, int(cells[0]))
    flat = table.counts().ravel()
    extra = int((flat[cells] - 1).sum())
    return [
        make(
            graph,
            Code.GRAPH_DUPLICATE,
            f"{count(cells.size, 'op')} computed more than once ({count(extra, 'extra node')}; "
            f"{_by_op(graph, table, cells)}); first: {op} at {place} runs "
            f"{int(flat[cells[0]])} times",
            "emit each op once per rank, layer, micro-batch and step",
            nodes=nodes,
            data={"duplicated": int(cells.size), "extra_nodes": extra},
        )
    ]


def _unexpected(graph: Graph, table: CellTable, foreign: Bool) -> list[Finding]:
    ok = table.cell < table.total
    stray = ~ok & (graph.op != Op.MOE_EXPERT)
    stray[ok] = foreign[table.cell[ok]]
    bad = np.flatnonzero(stray)
    if bad.size == 0:
        return []
    ops, n = np.unique(graph.op[bad], return_counts=True)
    kinds = ", ".join(f"{OP_LABELS[int(o)]} ×{int(k):,}" for o, k in zip(ops, n, strict=True))
    return [
        make(
            graph,
            Code.GRAPH_UNEXPECTED,
            f"{count(bad.size, 'node')} the plan does not call for ({kinds}): an op foreign "
            f"to its layer or stage, a node of another kind than its op's (a collective op "
            f"emitted as compute), or a micro-batch/step out of range; first: "
            f"{graph.node_id(int(bad[0]))}",
            "emit only the ops of each stage's template, for layers of that stage, "
            f"micro-batches 0…{table.exp.mbs - 1} and steps 0…{table.exp.steps - 1}",
            nodes=bad,
            data={"unexpected": int(bad.size)},
        )
    ]


def _stage_work(exp: Expected) -> Bool:
    """Whether the plan gives each stage any compute op."""
    work = np.zeros(exp.pp, dtype=np.bool_)
    for s in range(exp.pp):
        grid = exp.op_grid(s)
        wanted = exp.stage_block(s).any(axis=(0, 1))
        compute = OP_KIND[np.maximum(grid, 0)] == int(Kind.COMPUTE)
        work[s] = bool(np.any(wanted & (grid >= 0) & compute))
    return work


def _idle(graph: Graph, exp: Expected, exact: bool) -> list[Finding]:
    """Ranks without compute nodes: an error where the plan gives their stage compute, a
    warning where it does not (a stage with no layer only forwards activations)."""
    pool = graph.pools[0]
    planned = _stage_work(exp)[pool.mesh.stage]
    if exact:
        idle = ~planned
    else:
        busy = graph.rank[graph.kind == int(Kind.COMPUTE)] - pool.rank0
        work = np.bincount(busy[(busy >= 0) & (busy < pool.world)], minlength=pool.world)
        idle = work == 0
    found: list[Finding] = []
    for mask, severity, why, fix in (
        (
            idle & planned,
            Severity.ERROR,
            "although the plan gives their stage layers or the embedding/head",
            "emit the stage's template on every one of its ranks",
        ),
        (
            idle & ~planned,
            Severity.WARNING,
            "because the plan gives their stage no layer (they only forward activations)",
            "give every pipeline stage at least one layer, or lower pp",
        ),
    ):
        ranks = np.flatnonzero(mask) + pool.rank0
        if ranks.size:
            found.append(
                make(
                    graph,
                    Code.GRAPH_IDLE_RANK,
                    f"{count(ranks.size, 'rank')} of {pool.world:,} run no compute op "
                    f"{why}: {rank_list(ranks)}",
                    fix,
                    ranks=ranks,
                    severity=severity,
                    data={"idle": ranks.tolist()[:64]},
                )
            )
    return found
