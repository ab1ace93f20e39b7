"""What a communication must agree on beyond its membership: the mesh dimension it runs
over, and, for a collective, one value per instance (bytes, op, place).

- Collectives: each instance runs over the group kind and with the collective its op
  calls for (:data:`dagen.graph.ir.COLLECTIVE_OPS`). Membership alone cannot see an
  ``ffn.allreduce`` reduced over a CP group instead of its TP group, or an all-reduce
  labelled all-gather: every member is present and agrees. One gather per instance.
- Members of an instance: :func:`disagree` finds instances whose members differ on a
  per-node value (bytes, op, or :func:`place`: (step, micro-batch, layer)).
- Point-to-point: :func:`expected_targets` and :func:`expected_sources`, the only rank,
  step and micro-batch a send may reach or a recv come from: the schedule's pairing
  (:class:`dagen.graph.lookup.BlockIndex`) on the graph's pipeline groups (checked by
  :func:`dagen.checks.comms.check_p2p`).

Example:
    >>> check_collective_dims(graph, nodes, inst)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.checks.common import Code, make
from dagen.findings import Finding, count, rank_list
from dagen.graph.ir import OP_LABELS, Coll, Graph, GroupKind
from dagen.graph.lookup import message_ends
from dagen.graph.ops import OP_COLL, OP_DIM

__all__ = [
    "check_collective_dims",
    "disagree",
    "expected_sources",
    "expected_targets",
    "inst_label",
    "place",
]

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

_KIND = OP_DIM.astype(np.int64)  # the group kind each op's collective runs over (-1: none)
_COLL = OP_COLL.astype(np.int64)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ends:
    """Where each of some sends must go (or recvs come from), by the schedule."""

    found: Bool
    """The schedule pairs it (else the other fields are 0)."""
    rank: I64
    """The peer: the rank at the same (tp, cp, dp) coordinates in the paired stage."""
    step: I64
    mb: I64


def _ends(graph: Graph, nodes: I64, sending: bool) -> Ends:
    found, peer, step, mb = message_ends(graph, nodes, sending)
    return Ends(found=found, rank=peer, step=step, mb=mb)


def expected_targets(graph: Graph, sends: I64) -> Ends:
    """Where each send of ``sends`` must go: the ``k``-th send a rank issues for (step,
    micro-batch) is the schedule's ``k``-th pair from that block of its stage.

    >>> expected_targets(graph, np.flatnonzero(graph.kind == Kind.SEND)).found.all()  # doctest: +SKIP
    True
    """
    return _ends(graph, sends, True)


def expected_sources(graph: Graph, recvs: I64) -> Ends:
    """Where each recv of ``recvs`` must come from (see :func:`expected_targets`)."""
    return _ends(graph, recvs, False)


def check_collective_dims(graph: Graph, nodes: I64, inst: I64) -> Finding | None:
    """``GRAPH-COLL-OP`` for instances whose group kind or collective is not the one
    their op calls for (the op of any member; disagreeing members are reported apart).

    Args:
        graph: the graph.
        nodes: the collective nodes.
        inst: the instance of each of ``nodes``.
    """
    op = np.zeros(graph.n_inst, dtype=np.int64)
    op[inst] = graph.op[nodes]
    used = np.zeros(graph.n_inst, dtype=np.bool_)
    used[inst] = True
    kind = graph.group_kind[graph.inst_group].astype(np.int64)
    coll = graph.inst_coll.astype(np.int64)
    bad = np.flatnonzero(used & ((kind != _KIND[op]) | (coll != _COLL[op])))
    if bad.size == 0:
        return None
    i = int(bad[0])
    g = int(graph.inst_group[i])
    o = int(op[i])
    want = (
        f"{Coll(int(_COLL[o])).label} over a {GroupKind(int(_KIND[o])).label} group"
        if _KIND[o] >= 0
        else "no collective (not a collective op)"
    )
    return make(
        graph,
        Code.GRAPH_COLL_OP,
        f"{count(bad.size, 'collective instance')} not over the group kind or with the "
        f"collective {'its' if bad.size == 1 else 'their'} op calls for; first: instance {i} "
        f"({OP_LABELS[o]}) runs {Coll(int(coll[i])).label} over "
        f"{GroupKind(int(kind[i])).label} group {g} (ranks {rank_list(graph.group(g))}), "
        f"expected {want}",
        "run each collective op over its own dimension's group with its own collective "
        "(tp all-reduce for ffn.allreduce, ep all-to-all for moe.dispatch, …)",
        nodes=nodes[np.isin(inst, bad[:4])],
        data={"instances": int(bad.size)},
    )


def inst_label(graph: Graph, i: int) -> str:
    """Readable label of instance ``i``: its collective, group kind, group and ranks."""
    g = int(graph.inst_group[i])
    kind = GroupKind(int(graph.group_kind[g])).label
    return (
        f"instance {i} ({Coll(int(graph.inst_coll[i])).label} over {kind} group {g}, ranks "
        f"{rank_list(graph.group(g))})"
    )


def place(graph: Graph, nodes: I64) -> I64:
    """(step, micro-batch, layer + 1) of each node packed in 16 bits each: equal on all
    members of a collective instance (one call per step, micro-batch and layer).

    >>> place(graph, np.array([0]))  # doctest: +SKIP
    """
    key: I64 = (graph.step[nodes].astype(np.int64) & 0xFFFF) << 32
    key |= (graph.mb[nodes].astype(np.int64) & 0xFFFF) << 16
    key |= (graph.layer[nodes].astype(np.int64) + 1) & 0xFFFF
    return key


def _show(what: str, value: int) -> str:
    if what == "bytes":
        return f"{value:,} B"
    if what == "ops":
        return OP_LABELS[value]
    step, mb, layer = value >> 32, (value >> 16) & 0xFFFF, (value & 0xFFFF) - 1
    return f"t{step}/L{layer}/mb{mb}"


def disagree(
    graph: Graph,
    nodes: I64,
    inst: I64,
    values: I64,
    code: Code,
    what: str,
    fix: str,
) -> Finding | None:
    """A finding of ``code`` for instances whose members' ``values`` differ (one per
    collective node of ``nodes``; ``what`` is ``bytes``, ``ops`` or a place), else None.

    >>> disagree(graph, nodes, inst, place(graph, nodes), Code.GRAPH_COLL_OP, "place", "…")  # doctest: +SKIP
    """
    ref = np.zeros(graph.n_inst, dtype=np.int64)
    ref[inst] = values  # any member's value; the others must agree with it
    bad = values != ref[inst]
    if not bad.any():
        return None
    bad_inst = np.unique(inst[bad])
    first = int(bad_inst[0])
    members = nodes[inst == first]
    vals = ", ".join(
        f"r{int(graph.rank[m])}: {_show(what, int(v))}"
        for m, v in zip(members[:8], values[inst == first][:8], strict=True)
    )
    show = nodes[np.isin(inst, bad_inst[:4])]
    return make(
        graph,
        code,
        f"{count(bad_inst.size, 'collective instance')} whose members disagree on {what}; "
        f"first: {inst_label(graph, first)} has {vals}",
        fix,
        nodes=show,
        data={"instances": int(bad_inst.size)},
    )
