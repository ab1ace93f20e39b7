"""Routed experts: each hosted once per expert-parallel group, copies only as planned.

An expert-parallel (EP) group instance is one (edp, pp, etp) coordinate: the ``ep``
ranks that together host all ``E`` routed experts of the stage's MoE layers (Megatron
parallel folding; :mod:`dagen.mesh`). For every such group, MoE layer of its stage,
decode step and micro-batch, every expert ``0 … E-1`` must run on some member
(``GRAPH-EXPERT-MISSING``), and the copies beyond the first must add up to at most
``parallel.redundant_experts`` (``GRAPH-EXPERT-DUPLICATE``; EPLB-style replicas of hot
experts are the only reason to run an expert twice, and a replica never sits on a rank
that already runs the expert, so a second copy on one rank is a duplicate too).

One ``bincount`` over a dense (group, layer, step, micro-batch, expert) table: O(expert
nodes + table).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.checks.common import Code, make
from dagen.checks.expect import MOE, Expected
from dagen.checks.shared import Shared
from dagen.findings import Finding, count, rank_list
from dagen.graph.ir import Graph

__all__ = ["check_experts"]

I64 = npt.NDArray[np.int64]
Int = npt.NDArray[np.signedinteger]
Bool = npt.NDArray[np.bool_]


def _moe_local(exp: Expected) -> tuple[I64, I64]:
    """Index of each layer among the MoE layers of its stage (-1: dense), and the number
    of MoE layers per stage."""
    local = np.full(exp.layer_class.size, -1, dtype=np.int64)
    per_stage = np.zeros(exp.pp, dtype=np.int64)
    for s in range(exp.pp):
        layers = np.arange(exp.first[s], exp.first[s] + exp.count[s])
        moe = layers[exp.layer_class[layers] == MOE]
        local[moe] = np.arange(moe.size)
        per_stage[s] = moe.size
    return local, per_stage


def check_experts(
    graph: Graph, exp: Expected | None = None, shared: Shared | None = None
) -> list[Finding]:
    """``GRAPH-EXPERT-MISSING`` / ``GRAPH-EXPERT-DUPLICATE`` (and ``GRAPH-UNEXPECTED``
    for expert nodes outside any MoE layer of their stage).

    Example:
        >>> check_experts(graph)  # doctest: +SKIP
        []
    """
    sh = shared or Shared(graph)
    exp = exp or sh.expected
    nodes = sh.expert_nodes
    local, per_stage = _moe_local(exp)
    if per_stage.sum() == 0 and not nodes.size:
        return []
    mesh = graph.pools[0].mesh  # the graph is one pool, or one pool's view
    n_groups = mesh.groups("ep").shape[0]
    width = max(int(per_stage.max()), 1)
    shape = (n_groups, width, exp.steps, exp.mbs, max(exp.experts, 1))
    cell, ok = _cells(graph, exp, nodes, local, shape)
    total = int(np.prod(shape))
    counts = np.bincount(cell, minlength=total + 1)[:-1].reshape(shape)
    group_stage = mesh.stage[mesh.groups("ep")[:, 0]]
    row_ok = np.arange(width)[None, :] < per_stage[group_stage][:, None]
    row_ok = row_ok[:, :, None, None] & (exp.experts > 0)
    findings = _missing(graph, exp, counts, row_ok, nodes, cell, shape)
    over = _duplicated(graph, exp, counts, row_ok, nodes, cell, shape)
    if not over and exp.redundant > 0:  # without replicas any copy is over the budget
        over = _same_rank(graph, nodes, cell, ok)
    findings += over
    if not ok.all():
        bad = nodes[~ok]
        findings.append(
            make(
                graph,
                Code.GRAPH_UNEXPECTED,
                f"{count(bad.size, 'expert node')} outside any MoE layer of their stage (or "
                f"with an expert id outside 0…{exp.experts - 1}, or a micro-batch/step out of "
                f"range); first: {graph.node_id(int(bad[0]))}",
                "emit routed-expert nodes only in MoE layers, for experts the plan has",
                nodes=bad,
            )
        )
    return findings


def _same_rank(graph: Graph, nodes: I64, cell: Int, ok: Bool) -> list[Finding]:
    """``GRAPH-EXPERT-DUPLICATE`` for an expert run twice on one rank for one (layer, step,
    micro-batch): never a redundant replica, which goes to a rank not already hosting the
    expert (:func:`dagen.mesh.expert_placement`; DeepSeek-V3 / vLLM EPLB). One sort of the
    (cell, position in the EP group) keys of the expert nodes; an index sort only when two
    keys are equal."""
    ep = graph.pools[0].mesh.sizes["ep"]
    idx = np.flatnonzero(ok)
    key = cell[idx].astype(np.int64) * ep + graph.ranks.coords["ep"][graph.rank[nodes[idx]]]
    ordered = np.sort(key)
    if not np.any(ordered[1:] == ordered[:-1]):  # the sound case: no index sort needed
        return []
    order = np.argsort(key, kind="stable")
    key = key[order]
    again = np.flatnonzero(key[1:] == key[:-1]) + 1
    twice = nodes[idx[order[again]]]
    first = int(twice[0])
    copies = nodes[idx[order[np.isin(key, key[again[:8]])]]]
    return [
        make(
            graph,
            Code.GRAPH_EXPERT_DUPLICATE,
            f"{count(twice.size, 'routed expert computation')} repeated on a rank that already "
            f"runs that expert for the same layer, step and micro-batch (a redundant replica "
            f"must sit on another EP rank); first: {graph.node_id(first)} (expert "
            f"{int(graph.expert[first])})",
            "place each redundant replica on an EP rank that does not host the expert "
            "(expert_placement), never a second copy on the same rank",
            nodes=np.sort(copies),
            data={"repeated": int(twice.size)},
        )
    ]


def _mloc_table(exp: Expected, local: I64) -> I64:
    """int ``[pp, layers + 2]``: at ``[s, l + 1]`` the index of layer ``l`` among stage
    ``s``'s MoE layers, -1 if it is not an MoE layer of that stage (or not a layer)."""
    table = np.full((exp.pp, local.size + 2), -1, dtype=np.int64)
    for s in range(exp.pp):
        f, c = int(exp.first[s]), int(exp.count[s])
        table[s, f + 1 : f + c + 1] = local[f : f + c]
    return table


def _cells(
    graph: Graph, exp: Expected, nodes: I64, local: I64, shape: tuple[int, ...]
) -> tuple[Int, Bool]:
    """Cell of every expert node (``total`` when it has none) and whether it has one."""
    pool = graph.pools[0]
    _, width, steps, mbs, n_exp = shape
    total = int(np.prod(shape))
    dt = np.dtype(np.int32 if total < (1 << 31) - 1 else np.int64)
    r = graph.rank[nodes]
    key: Int = graph.ranks.stage.astype(dt)[r]
    key *= local.size + 2
    key += np.clip(graph.layer[nodes], -1, local.size).astype(dt) + 1
    mloc = _mloc_table(exp, local).astype(dt).ravel()[key]
    e = graph.expert[nodes].astype(dt)
    mb, step = graph.mb[nodes], graph.step[nodes]
    ok: Bool = (mloc >= 0) & (e >= 0) & (e < exp.experts)
    ok &= (mb >= 0) & (mb < mbs) & (step >= 0) & (step < steps)
    local_rank = r - np.int32(pool.rank0) if pool.rank0 else r
    cell: Int = (pool.mesh.group_of("ep").astype(dt) * np.asarray(width, dt))[local_rank]
    cell += mloc
    for factor, term in ((steps, step), (mbs, mb), (n_exp, e)):
        cell *= factor
        cell += term
    cell[~ok] = total
    return cell, ok


def _row_text(
    graph: Graph, exp: Expected, exp_row: tuple[int, ...]
) -> tuple[str, npt.NDArray[np.int32]]:
    g, m, t, mb = exp_row
    pool = graph.pools[0]
    s = int(pool.mesh.stage[pool.mesh.groups("ep")[g][0]])
    members = pool.mesh.groups("ep")[g] + np.int32(pool.rank0)
    local, _ = _moe_local(exp)
    layer = int(np.flatnonzero((local == m) & (np.arange(local.size) >= exp.first[s]))[0])
    return (
        f"EP group {g} (ranks {rank_list(members)}, stage {s}), layer {layer}, step {t}, "
        f"micro-batch {mb}",
        members,
    )


def _missing(
    graph: Graph,
    exp: Expected,
    counts: I64,
    row_ok: Bool,
    nodes: I64,
    cell: I64,
    shape: tuple[int, ...],
) -> list[Finding]:
    lost = (counts == 0) & row_ok[..., None]
    if not lost.any():
        return []
    first = tuple(int(x) for x in np.argwhere(lost)[0])
    row = first[:4]
    absent = np.flatnonzero(lost[row])
    where, members = _row_text(graph, exp, row)
    row_cells = np.ravel_multi_index((*row, 0), shape) + np.arange(shape[4])
    present = nodes[np.isin(cell, row_cells)]
    rows = int(lost.any(axis=-1).sum())
    return [
        make(
            graph,
            Code.GRAPH_EXPERT_MISSING,
            f"{count(int(lost.sum()), 'routed expert computation')} missing in "
            f"{count(rows, '(EP group, layer, step, micro-batch)')}; first: {where} runs "
            f"no node for experts {absent.tolist()[:16]}" + (" …" if absent.size > 16 else ""),
            "host every routed expert on some rank of each expert-parallel group "
            "(expert_placement), for every MoE layer, micro-batch and step",
            nodes=present,
            ranks=members,
            data={"missing": int(lost.sum()), "rows": rows},
        )
    ]


def _duplicated(
    graph: Graph,
    exp: Expected,
    counts: I64,
    row_ok: Bool,
    nodes: I64,
    cell: I64,
    shape: tuple[int, ...],
) -> list[Finding]:
    extra = np.clip(counts - 1, 0, None).sum(axis=-1)
    over = (extra > exp.redundant) & row_ok
    if not over.any():
        return []
    row = tuple(int(x) for x in np.argwhere(over)[0])
    twice = np.flatnonzero(counts[row] > 1)
    where, members = _row_text(graph, exp, row)
    dup_cells = np.ravel_multi_index((*row, 0), shape) + twice
    copies = nodes[np.isin(cell, dup_cells)]
    return [
        make(
            graph,
            Code.GRAPH_EXPERT_DUPLICATE,
            f"{count(int(over.sum()), '(EP group, layer, step, micro-batch)')} run experts "
            f"more often than planned; first: {where} runs {int(counts[row].sum())} expert "
            f"nodes for {exp.experts} experts + {exp.redundant} redundant replicas "
            f"({int(extra[row])} extra copies; doubled: {twice.tolist()[:16]})",
            "host each routed expert once per expert-parallel group, plus at most "
            "parallel.redundant_experts replicas in all",
            nodes=copies,
            ranks=members,
            data={"rows": int(over.sum()), "extra": int(extra[row])},
        )
    ]
