"""Collective issue order: every member of a group calls its collectives in one order.

NCCL matches the calls on a communicator by their position: if rank 0 of a TP group
issues all-reduce A then B while rank 1 issues B then A, both block forever (the
classic mismatched-order deadlock), even when each rank's own dependencies are fine.

Algorithm (vectorised): take the collective nodes in program order (the IR's node
order within a rank), number each node's position ``p`` in the sequence of its
(group, rank) by one stable sort, and compare every member's instance at ``(group, p)``
with the group's first member's. Groups whose members issue different *numbers* of
collectives are left to ``GRAPH-COLL-MEMBERS``. O(c) on rank-major graphs (a 16-bit
radix sort by group), O(c log c) otherwise.

Under :func:`dagen.checks.check_graph` the pass is skipped when the schedule certificate
verified (:mod:`dagen.graph.algo.certify`) and every instance is joined by exactly its group:
each member then joins the same instances, in increasing schedule key.

Example:
    >>> check_collective_order(graph)  # doctest: +SKIP
    []
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.checks.common import Code, make
from dagen.checks.shared import Shared
from dagen.findings import Finding, count, rank_list
from dagen.graph.ir import Graph, GroupKind

__all__ = ["check_collective_order"]

I64 = npt.NDArray[np.int64]


def _sort_by_group(group: I64, n_groups: int) -> I64:
    """Stable order of ``group`` values. The group ids in use are renumbered densely so
    that, below 2¹⁶ of them (always, short of ~100 k GPUs), numpy sorts 16-bit keys by
    radix in linear time instead of a comparison sort of 64-bit keys."""
    used = np.zeros(n_groups, dtype=np.bool_)
    used[group] = True
    n_used = int(np.count_nonzero(used))
    if n_used <= 1 << 16:
        dense = (np.cumsum(used, dtype=np.int32) - 1).astype(np.uint16)
        order: I64 = np.argsort(dense[group], kind="stable")
        return order
    order = np.argsort(group, kind="stable")
    return order


def _positions(graph: Graph, nodes: I64, rank_major: bool) -> tuple[I64, I64, I64, I64]:
    """Order of ``nodes`` by (group, rank, program order), with each one's group, position
    in its (group, rank) sequence and the length of that sequence (in that order).

    On a rank-major graph, nodes in index order are already sorted by (rank, program
    order), so a stable sort by group alone gives the (group, rank, program order) order.
    """
    world = graph.world
    group = graph.aux[nodes].astype(np.int64)
    if rank_major:
        order = _sort_by_group(group, int(graph.group_kind.shape[0]))
    else:
        order = np.argsort(group * world + graph.rank[nodes], kind="stable")
    group = group[order]
    ks = group * world
    ks += graph.rank[nodes[order]]
    change = np.empty(ks.shape[0], dtype=np.bool_)
    change[:1] = True
    np.not_equal(ks[1:], ks[:-1], out=change[1:])
    start = np.flatnonzero(change)
    lengths = np.diff(np.append(start, ks.shape[0]))
    seg = np.repeat(np.arange(start.shape[0]), lengths)
    pos = np.arange(ks.shape[0]) - start[seg]
    return order, group, pos, lengths[seg]


def check_collective_order(graph: Graph, shared: Shared | None = None) -> list[Finding]:
    """``GRAPH-COLL-ORDER``: groups whose members issue their collectives in different
    orders, one finding per group kind (tp, ep, …), naming the first diverging call.

    Example:
        >>> [f.code for f in check_collective_order(graph)]  # doctest: +SKIP
        []
    """
    sh = shared or Shared(graph)
    if sh.certified and sh.members_exact:
        # Every member of a group then joins the same instances, and each rank issues
        # them in increasing schedule key: the same order on all members.
        return []
    coll = sh.coll_nodes
    if coll.size == 0:
        return []
    order, group, pos, length = _positions(graph, coll, sh.rank_major)
    nodes = coll[order]
    inst = sh.coll_inst[order]
    head = graph.group_members[graph.group_offsets[:-1][group]]  # first member of the group
    is_ref = graph.rank[nodes] == head
    n_groups = graph.group_offsets.shape[0] - 1
    ref_len = np.full(n_groups, -1, dtype=np.int64)
    ref_len[group[is_ref]] = length[is_ref]
    base = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.maximum(ref_len, 0), out=base[1:])
    ref = np.full(int(base[-1]), -1, dtype=np.int64)
    ref[base[group[is_ref]] + pos[is_ref]] = inst[is_ref]
    comparable = ref_len[group] == length
    same_len_groups = np.ones(n_groups, dtype=np.bool_)
    same_len_groups[group[~comparable]] = False
    check = comparable & same_len_groups[group]
    if ref.size == 0:
        return []
    bad = np.flatnonzero(check & (inst != ref[np.where(check, base[group] + pos, 0)]))
    if bad.size == 0:
        return []
    return _report(graph, nodes, group, pos, inst, ref, base, bad)


def _report(
    graph: Graph,
    nodes: I64,
    group: I64,
    pos: I64,
    inst: I64,
    ref: I64,
    base: I64,
    bad: I64,
) -> list[Finding]:
    findings: list[Finding] = []
    kinds = graph.group_kind[group[bad]]
    for kind in np.unique(kinds).tolist():
        mine = bad[kinds == kind]
        i = int(mine[0])
        g, p = int(group[i]), int(pos[i])
        ref_inst = int(ref[base[g] + p])
        ref_node = nodes[(group == g) & (inst == ref_inst) & (pos == p)]
        findings.append(
            make(
                graph,
                Code.GRAPH_COLL_ORDER,
                _message(graph, GroupKind(kind).label, nodes, group, mine, ref_inst, ref_node, p),
                "issue every group's collectives in the same order on all its members (the "
                "order of (step, micro-batch, layer, op))",
                nodes=np.concatenate([ref_node[:1], nodes[mine]]),
                data={"groups": int(np.unique(group[mine]).size), "calls": int(mine.size)},
            )
        )
    return findings


def _message(
    graph: Graph,
    label: str,
    nodes: I64,
    group: I64,
    mine: I64,
    ref_inst: int,
    ref_node: I64,
    p: int,
) -> str:
    i = int(mine[0])
    g = int(group[i])
    n_groups = np.unique(group[mine]).size
    there = f" ({graph.node_id(int(ref_node[0]))})" if ref_node.size else ""
    return (
        f"{count(n_groups, f'{label} group')} whose members issue collectives in different "
        f"orders ({count(np.unique(nodes[mine]).size, 'call')} out of place); first: {label} "
        f"group {g} (ranks {rank_list(graph.group(g))}), call #{p + 1}: rank "
        f"{int(graph.rank[nodes[i]])} issues instance {int(graph.inst[nodes[i]])} "
        f"({graph.node_id(int(nodes[i]))}) where rank {int(graph.group(g)[0])} issues "
        f"instance {ref_inst}{there} — NCCL matches calls by position, so both ranks wait "
        "forever"
    )
