"""Communication consistency: sends meet recvs, collectives meet their groups.

Point-to-point: the IR pairs a send with its recv by a ``p2p`` edge. Every send must
have exactly one such edge to a recv, every recv exactly one from a send; each pair
must name each other as peers (``aux``), move the same bytes and carry the same
micro-batch and step.

Collectives: the nodes sharing an instance id must be exactly the members of the
instance's group (no rank missing, none twice, none from outside), move the same bytes
and run the same op of the same (step, layer, micro-batch), over the group kind and with the collective that op calls for
(:mod:`dagen.checks.agree`). All vectorised: O(n) plus a binary search per collective node.

Example:
    >>> check_comms(graph)  # doctest: +SKIP
    []
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.checks.agree import check_collective_dims, disagree, expected_targets, inst_label, place
from dagen.checks.common import Code, make
from dagen.checks.shared import Shared
from dagen.findings import Finding, count, rank_list
from dagen.graph.ir import EdgeKind, Graph, Kind

__all__ = ["check_collectives", "check_comms", "check_p2p"]

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


def check_comms(graph: Graph, shared: Shared | None = None) -> list[Finding]:
    """Point-to-point then collective consistency (see the module docstring)."""
    return check_p2p(graph) + check_collectives(graph, shared)


def _index_in(sorted_nodes: I64, query: I64) -> tuple[I64, Bool]:
    """Position of each ``query`` in ``sorted_nodes`` and whether it is there."""
    if sorted_nodes.shape[0] == 0:
        return np.zeros(query.shape, np.int64), np.zeros(query.shape, np.bool_)
    pos = np.searchsorted(sorted_nodes, query).clip(0, sorted_nodes.shape[0] - 1)
    return pos, sorted_nodes[pos] == query


def check_p2p(graph: Graph) -> list[Finding]:
    """``GRAPH-UNMATCHED-SEND/RECV``, ``GRAPH-P2P-PEER``, ``GRAPH-P2P-BYTES``, ``GRAPH-P2P-MB``."""
    sends = np.flatnonzero(graph.kind == int(Kind.SEND))
    recvs = np.flatnonzero(graph.kind == int(Kind.RECV))
    p2p = np.flatnonzero(graph.ekind == int(EdgeKind.P2P))
    es, ed = graph.src[p2p].astype(np.int64), graph.dst[p2p].astype(np.int64)
    spos, s_ok = _index_in(sends, es)
    rpos, r_ok = _index_in(recvs, ed)
    good = s_ok & r_ok
    out_n = np.bincount(spos[good], minlength=sends.shape[0])
    in_n = np.bincount(rpos[good], minlength=recvs.shape[0])
    findings = _unmatched(graph, sends, out_n, recvs, in_n)
    pair = good & (out_n[spos] == 1) & (in_n[rpos] == 1)
    findings += _pair_mismatches(graph, es[pair], ed[pair], p2p[~good])
    return findings


def _p2p_key(graph: Graph, nodes: I64, sending: bool) -> I64:
    """(source rank, destination rank, the recv's step and micro-batch) of sends or recvs
    as one int64, so that a send and the recv the schedule pairs it with share a key
    (a send the schedule does not pair gets a key no recv has)."""
    world = graph.world
    me, peer = graph.rank[nodes].astype(np.int64), graph.aux[nodes].astype(np.int64)
    src, dst = (me, peer) if sending else (peer, me)
    step, mb = graph.step[nodes].astype(np.int64), graph.mb[nodes].astype(np.int64)
    found = np.ones(nodes.shape[0], dtype=np.bool_)
    if sending:
        ends = expected_targets(graph, nodes)
        found, step, mb = ends.found, ends.step, ends.mb
    mbs = int(graph.mb.max(initial=0)) + 1
    key: I64 = ((src * world + dst) * (1 << 20) + step) * mbs + mb
    return np.where(found, key, -1 - np.arange(nodes.shape[0]))


def _unpaired_hint(graph: Graph, lone_sends: I64, lone_recvs: I64) -> tuple[int, int]:
    """How many unmatched sends and recvs have an unmatched partner with the same key:
    the two nodes exist, only the p2p edge between them is missing (none unless both
    sides have one: a sound graph skips the keys)."""
    if lone_sends.size == 0 or lone_recvs.size == 0:
        return 0, 0
    ks, kr = _p2p_key(graph, lone_sends, True), _p2p_key(graph, lone_recvs, False)
    return int(np.isin(ks, kr).sum()), int(np.isin(kr, ks).sum())


def _unmatched(graph: Graph, sends: I64, out_n: I64, recvs: I64, in_n: I64) -> list[Finding]:
    found: list[Finding] = []
    hint = _unpaired_hint(graph, sends[out_n == 0], recvs[in_n == 0])
    sides = (
        (Code.GRAPH_UNMATCHED_SEND, sends, out_n, "send", "recv"),
        (Code.GRAPH_UNMATCHED_RECV, recvs, in_n, "recv", "send"),
    )
    for (code, nodes, deg, what, other), edgeless in zip(sides, hint, strict=True):
        none, many = nodes[deg == 0], nodes[deg > 1]
        if none.size == 0 and many.size == 0:
            continue
        bad = np.concatenate([none, many])
        bad.sort()
        first = int(bad[0])
        found.append(
            make(
                graph,
                code,
                _unmatched_text(none.size, many.size, what, other)
                + f" (of {nodes.size:,} {what}s); first: {graph.node_id(first)} (peer rank "
                f"{int(graph.aux[first])}); ranks {rank_list(graph.rank[bad])}"
                + (
                    f"; {edgeless:,} of them {'has' if edgeless == 1 else 'have'} an unmatched "
                    f"{other} with the same ranks, "
                    "step and micro-batch: only the p2p edge is missing"
                    if edgeless
                    else ""
                ),
                f"emit exactly one {other} on the peer rank for every {what}, joined to it "
                f"by one p2p edge",
                nodes=bad,
                data={
                    "none": int(none.size),
                    "many": int(many.size),
                    "total": int(nodes.size),
                    "edge_missing": edgeless,
                },
            )
        )
    return found


def _unmatched_text(none: int, many: int, what: str, other: str) -> str:
    parts = [f"{count(none, what)} without a matching {other}"] if none else []
    parts += [f"{count(many, what)} with more than one {other}"] if many else []
    return " and ".join(parts)


def _pair_checks(graph: Graph, s: I64, r: I64) -> list[tuple[Code, Bool, str, str]]:
    """(code, bad pairs, what is wrong, fix) for each check of paired sends and recvs."""
    bs, br = graph.tmpl_bytes[graph.tmpl[s]], graph.tmpl_bytes[graph.tmpl[r]]
    want = expected_targets(graph, s)
    return [
        (
            Code.GRAPH_P2P_PEER,
            graph.rank[r] != want.rank,
            "join ranks the schedule does not pair (a send must reach the rank of the same "
            "replica and tp/cp shard in the stage the schedule names)",
            "send each stage's activations to the rank of the next stage in its pipeline-"
            "parallel group (the last stage's decode tokens to the first stage's)",
        ),
        (
            Code.GRAPH_P2P_PEER,
            (graph.aux[s] != graph.rank[r]) | (graph.aux[r] != graph.rank[s]),
            "name the wrong peer rank",
            "set each send's aux to its recv's rank and each recv's aux to its send's rank",
        ),
        (
            Code.GRAPH_P2P_BYTES,
            bs != br,
            "move different bytes on the two sides",
            "give a send and its recv the same tensor shape and dtype",
        ),
        (
            Code.GRAPH_P2P_MB,
            want.found & ((graph.mb[r] != want.mb) | (graph.step[r] != want.step)),
            "join different micro-batches or steps",
            "pair the send of micro-batch m at step t with the recv of micro-batch m at step t "
            "on the next stage (t + 1 on the first stage, for the decode chain from the last)",
        ),
    ]


def _side(graph: Graph, i: int) -> str:
    nbytes = int(graph.tmpl_bytes[graph.tmpl[i]])
    return (
        f"{graph.node_id(i)} ({nbytes:,} B, mb {int(graph.mb[i])}, step {int(graph.step[i])}, "
        f"peer {int(graph.aux[i])})"
    )


def _pair_mismatches(graph: Graph, s: I64, r: I64, odd_edges: I64) -> list[Finding]:
    found: list[Finding] = []
    for code, bad, what, fix in _pair_checks(graph, s, r):
        idx = np.flatnonzero(bad)
        if idx.size:
            i = int(idx[0])
            found.append(
                make(
                    graph,
                    code,
                    f"{count(idx.size, 'send/recv pair')} {what}; first: "
                    f"{_side(graph, int(s[i]))} → {_side(graph, int(r[i]))}",
                    fix,
                    nodes=np.stack([s[idx], r[idx]], axis=1).ravel(),
                    data={"pairs": int(idx.size)},
                )
            )
    if odd_edges.size:
        a, b = int(graph.src[odd_edges[0]]), int(graph.dst[odd_edges[0]])
        found.append(
            make(
                graph,
                Code.GRAPH_P2P_PEER,
                f"{count(odd_edges.size, 'p2p edge')} not from a send to a recv; first: "
                f"{graph.node_id(a)} ({Kind(int(graph.kind[a])).label}) → {graph.node_id(b)} "
                f"({Kind(int(graph.kind[b])).label})",
                "use p2p edges only from a send node to its recv node",
                nodes=np.stack([graph.src[odd_edges], graph.dst[odd_edges]], axis=1).ravel(),
            )
        )
    return found


def check_collectives(graph: Graph, shared: Shared | None = None) -> list[Finding]:
    """``GRAPH-COLL-MEMBERS``, ``GRAPH-COLL-SIZE``, ``GRAPH-COLL-OP``."""
    sh = shared or Shared(graph)
    nodes = sh.coll_nodes
    if nodes.size == 0:
        return []
    inst = sh.coll_inst
    findings = _members(graph, nodes, inst)
    sh.members_exact = not findings
    nbytes = graph.tmpl_bytes[graph.tmpl[nodes]]
    for code, values, what, fix in (
        (
            Code.GRAPH_COLL_SIZE,
            nbytes,
            "bytes",
            "give every member of a collective the same tensor shape and dtype",
        ),
        (
            Code.GRAPH_COLL_OP,
            graph.op[nodes].astype(np.int64),
            "ops",
            "make every member of an instance run the same collective op",
        ),
        (
            Code.GRAPH_COLL_OP,
            place(graph, nodes),
            "(step, layer, micro-batch)",
            "join each collective instance from the same step, layer and micro-batch on "
            "every member (one all-reduce per layer and micro-batch, not one rank's mb0 "
            "with another's mb1)",
        ),
    ):
        f = disagree(graph, nodes, inst, values, code, what, fix)
        if f is not None:
            findings.append(f)
    dims = check_collective_dims(graph, nodes, inst)
    return findings if dims is None else [*findings, dims]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Membership:
    """Instances whose nodes are not exactly their group's members, by problem."""

    missing_slot: I64
    """Flat (instance, group position) slots no node fills."""
    slot_base: I64
    """First flat slot of each instance."""
    missing: I64
    twice: I64
    outside: I64
    wrong_group: I64
    """Instances (one entry per offending slot or node)."""

    @property
    def bad(self) -> I64:
        parts = [self.missing, self.twice, self.outside, self.wrong_group]
        return np.unique(np.concatenate(parts))


def _member_index(graph: Graph, ginst: I64, ranks: npt.NDArray[np.int32]) -> tuple[I64, Bool]:
    """Index into ``group_members`` of each ``ranks[i]`` in group ``ginst[i]``, and
    whether it is a member at all.

    When no rank sits in two groups of one kind (the mesh's rule), a table over (group
    kind, rank) answers by lookup; otherwise a binary search over (group, member) keys.
    """
    world = graph.world
    sizes = np.diff(graph.group_offsets)
    owner = np.repeat(np.arange(sizes.shape[0], dtype=np.int64), sizes)
    kinds = graph.group_kind.astype(np.int64)
    n_kinds = int(kinds.max(initial=0)) + 1
    slot = kinds[owner] * world + graph.group_members
    if slot.size == 0 or int(np.bincount(slot, minlength=1).max()) <= 1:
        gid = np.full(n_kinds * world, -1, dtype=np.int64)
        gid[slot] = owner
        where = np.zeros(n_kinds * world, dtype=np.int64)
        where[slot] = np.arange(slot.shape[0], dtype=np.int64)
        key = kinds[ginst] * world + ranks
        found: Bool = gid[key] == ginst
        return where[key], found
    return _index_in(owner * world + graph.group_members, ginst * world + ranks)


def _hits(slots: I64, n_slots: int) -> npt.NDArray[np.integer]:
    """Nodes per slot. When there are exactly as many nodes as slots and every slot is
    hit (the sound case), each is hit once: a boolean scatter proves it without counting."""
    if slots.shape[0] == n_slots:
        seen = np.zeros(n_slots, dtype=np.bool_)
        seen[slots] = True
        if seen.all():
            return seen.view(np.uint8)
    return np.bincount(slots, minlength=n_slots)


def _membership(graph: Graph, nodes: I64, inst: I64) -> _Membership:
    """Place each collective node at its rank's position in its instance's group."""
    sizes = np.diff(graph.group_offsets)
    ginst = graph.inst_group[inst].astype(np.int64)
    pos, inside = _member_index(graph, ginst, graph.rank[nodes])
    base = np.zeros(graph.n_inst + 1, dtype=np.int64)
    np.cumsum(sizes[graph.inst_group], out=base[1:])
    flat = base[inst] + pos - graph.group_offsets[ginst]
    hits = _hits(flat[inside], int(base[-1]))
    missing_slot = np.flatnonzero(hits == 0)
    return _Membership(
        missing_slot=missing_slot,
        slot_base=base,
        missing=np.searchsorted(base, missing_slot, side="right") - 1,
        twice=np.searchsorted(base, np.flatnonzero(hits > 1), side="right") - 1,
        outside=inst[~inside],
        wrong_group=inst[graph.aux[nodes] != ginst],
    )


def _members(graph: Graph, nodes: I64, inst: I64) -> list[Finding]:
    """``GRAPH-COLL-MEMBERS``: each instance's member ranks against its group."""
    mem = _membership(graph, nodes, inst)
    bad = mem.bad
    if bad.size == 0:
        return []
    first = int(bad[0])
    g = int(graph.inst_group[first])
    slot = mem.missing_slot[mem.missing == first] - mem.slot_base[first]
    absent = graph.group_members[graph.group_offsets[g] + slot]
    present = nodes[inst == first]
    tallies = (
        (np.unique(mem.missing).size, "instance", "misses a member", "miss a member"),
        (np.unique(mem.twice).size, "instance", "has a rank twice", "have a rank twice"),
        (np.unique(mem.outside).size, "instance", "includes an outsider", "include outsiders"),
        (mem.wrong_group.size, "node", "names another group", "name another group"),
    )
    parts = [f"{count(k, noun)} {one if k == 1 else many}" for k, noun, one, many in tallies if k]
    message = (
        f"{count(bad.size, 'collective instance')} not joined by exactly the members of "
        f"{'its' if bad.size == 1 else 'their'} group ({'; '.join(parts)}); first: "
        f"{inst_label(graph, first)} is joined by ranks [{rank_list(graph.rank[present])}], "
        f"missing [{rank_list(absent)}]"
    )
    fix = (
        "emit one node of every collective instance on each rank of its group, on no other "
        "rank, with aux set to the instance's group"
    )
    data = {"instances": int(bad.size), "missing_members": int(mem.missing_slot.size)}
    return [
        make(
            graph,
            Code.GRAPH_COLL_MEMBERS,
            message,
            fix,
            nodes=nodes[np.isin(inst, bad[:4])],
            ranks=np.concatenate([graph.rank[present], absent]),
            data=data | {"first_missing_ranks": absent.tolist()[:16]},
        )
    ]
