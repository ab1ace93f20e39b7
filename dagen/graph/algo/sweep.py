"""The rank sweep: a linear-time acyclicity test and topological order for rank-major graphs.

Data and order edges stay on one rank and go forward in node index (program order), so
a rank's nodes in index order are already a topological order of its own edges. Only
*ports* can wait on another rank: nodes with an edge from another rank or backwards in
index (a recv, in a valid graph) and collective nodes. Each rank keeps a pointer to its
first unpassed port. In every round, each rank whose port is ready moves past it,
passing the plain nodes up to its next port for free. A port is ready when its
cross-rank predecessors are passed and, for a collective, when every member node of the
instance is at its rank's pointer and ready (arrivals are counted as ranks reach them).

Lockstep chains: when every member of instance A has, as its very next port, a member
of instance B with the same members (and B waits on nothing else), B is ready the moment
A fires. Such runs (a TP group's all-reduces layer after layer) fire in one round, so
rounds count the synchronisations that can really wait (recvs, collectives joining
different groups), not every collective.

If every rank reaches its end, the pass order is a topological order of the contracted
graph and the graph is acyclic. If the sweep stalls, the graph may still be acyclic (a
rank's program order puts a recv before a send its peer needs first, with no edge
forcing it); :func:`dagen.graph.algo.contract.layered_kahn` settles it on the nodes left.

Cost: O(n + m) to set up, then per round O(ranks still running + ports passed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.graph.algo.arrays import ranges
from dagen.graph.algo.derived import Derived
from dagen.graph.ir import Graph

__all__ = ["SweepResult", "sweep"]

log = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepResult:
    """Outcome of :func:`sweep`.

    ``ports``: ascending node indices of the ports; ``fire_key[i]``: when port ``i`` was
    passed (round · ``span`` + position in its lockstep chain; -1 if never);
    ``threshold[r]``: nodes of rank ``r`` below it were passed.
    """

    complete: bool
    rounds: int
    ports: I64
    fire_key: I64
    threshold: I64
    rank_start: I64

    def passed(self, rank: I32) -> Bool:
        """bool ``[n]``: nodes the sweep passed (given the graph's rank column)."""
        idx = np.arange(rank.shape[0], dtype=np.int64)
        result: Bool = idx < self.threshold[rank]
        return result

    def node_key(self, rank: I32) -> I64:
        """Pass key of each node: 0 before its rank's first port, else the fire key of
        the latest port at or before it, plus one.

        Sorting nodes by (key, index) gives a topological order of the contracted graph
        in which every predecessor of every member of an instance precedes the
        instance's first member.
        """
        n = rank.shape[0]
        is_port = np.zeros(n, dtype=np.bool_)
        is_port[self.ports] = True
        last = np.cumsum(is_port, dtype=np.int64) - 1  # latest port at or before each node
        last_port = self.ports[np.maximum(last, 0)] if self.ports.shape[0] else last
        # A latest port on an earlier rank does not count: the node precedes its rank's ports.
        own = (last >= 0) & (last_port >= self.rank_start[rank])
        key = np.zeros(n, dtype=np.int64)
        key[own] = self.fire_key[last[own]] + 1
        return key


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ports:
    """The ports of a rank-major graph and what each waits on."""

    nodes: I64
    inst: I64
    """Instance of each port (-1: not a collective)."""
    pred: I64
    """Cross-rank predecessors, grouped by port (CSR with ``pred_off``)."""
    pred_off: I64
    members: I64
    """Member nodes of every instance."""


def _ports(graph: Graph, sh: Derived) -> _Ports:
    src, dst = graph.src, graph.dst
    eid = sh.cross_edges
    csrc = src[eid].astype(np.int64)
    cdst = dst[eid].astype(np.int64)
    extra = np.sort(cdst)
    keep = ~sh.coll[extra]
    keep[1:] &= extra[1:] != extra[:-1]
    extra = extra[keep]
    coll, at = sh.coll_nodes, np.searchsorted(sh.coll_nodes, extra)
    nodes = np.insert(coll, at, extra)  # ascending: extra is sorted and not collective
    inst = np.insert(sh.coll_inst, at, -1)
    pos = np.searchsorted(nodes, cdst)
    pred_off = np.zeros(nodes.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(pos, minlength=nodes.shape[0]), out=pred_off[1:])
    return _Ports(
        nodes=nodes,
        inst=inst,
        pred=csrc[np.argsort(pos, kind="stable")],
        pred_off=pred_off,
        members=np.bincount(sh.coll_inst, minlength=graph.n_inst).astype(np.int64),
    )


def _lockstep_jump(p: _Ports, prank: I32) -> I64:
    """Ports each chain head passes at once (1 outside chains; see the module docstring).

    Instance B follows A in lockstep when every member port of A is followed, on its
    rank, by a port of B, B has as many members as A and no cross-rank predecessor.
    """
    n_ports = p.nodes.shape[0]
    if n_ports < 2:
        return np.ones(n_ports, dtype=np.int64)
    no_pred = p.pred_off[2:] == p.pred_off[1:-1]  # port i + 1 has no cross-rank predecessor
    inst = p.inst.astype(np.int32)
    follows = prank[1:] == prank[:-1]
    follows &= inst[1:] >= 0
    follows &= no_pred
    nxt_inst = np.full(n_ports, -1, dtype=np.int32)
    np.copyto(nxt_inst[:-1], inst[1:], where=follows)
    coll = np.flatnonzero(inst >= 0)
    a = inst[coll]
    after = nxt_inst[coll]
    succ = np.full(p.members.shape[0], -1, dtype=np.int32)
    succ[a] = after  # any member's; all must agree
    succ[a[after != succ[a]]] = -1
    ok = (succ >= 0) & (succ != np.arange(succ.shape[0], dtype=np.int32))
    ok &= p.members[np.maximum(succ, 0)] == p.members
    link = np.zeros(n_ports, dtype=np.bool_)
    link[coll] = ok[a]
    # Each port passes up to the end of its run of links: the first unlinked port at or after it.
    idx = np.arange(n_ports, dtype=np.int32)
    stop = np.where(link, np.int32(n_ports), idx)
    end = np.minimum.accumulate(stop[::-1])[::-1]
    end -= idx
    jump: I64 = end.astype(np.int64)
    jump += 1
    return jump


def sweep(graph: Graph, shared: Derived | None = None) -> SweepResult:
    """Run every rank through its program order (see the module docstring).

    Requires a rank-major layout (:attr:`dagen.graph.algo.derived.Derived.rank_major`).

    >>> sweep(graph).complete  # doctest: +SKIP
    True
    """
    sh = shared or Derived(graph)
    rank = graph.rank
    rank_start = sh.rank_start
    ports = _ports(graph, sh)
    jump = _lockstep_jump(ports, rank[ports.nodes])
    state = _State(ports, jump, rank, rank_start)
    rounds = state.run()
    log.debug(
        "sweep: %d ports, %d rounds, complete=%s", ports.nodes.shape[0], rounds, state.complete
    )
    return SweepResult(
        complete=state.complete,
        rounds=rounds,
        ports=ports.nodes,
        fire_key=state.fire,
        threshold=state.thr,
        rank_start=rank_start,
    )


class _State:
    """Mutable state of one sweep: per-rank port pointer and pass threshold.

    Arrivals are counted incrementally: a rank registers at its current port once (when
    the port's cross-rank predecessors are passed); an instance fires when its
    ``remaining`` arrivals reach zero. Non-collective ports use a dummy instance that
    needs none.
    """

    def __init__(self, p: _Ports, jump: I64, rank: I32, rank_start: I64) -> None:
        n_ports = p.nodes.shape[0]
        dummy = p.members.shape[0]
        self.ports_ext = np.append(p.nodes, 0)  # a sentinel past the last port
        self.pinst = np.where(p.inst >= 0, p.inst, dummy)
        self.remaining = np.append(p.members, 0)
        self.reg = np.zeros(n_ports, dtype=np.bool_)
        self.pred, self.pred_off, self.rank, self.jump = p.pred, p.pred_off, rank, jump
        self.span = int(jump.max(initial=1)) + 1
        npred = np.diff(p.pred_off)
        # Most ports have at most one cross-rank predecessor (a recv's send): a fast path.
        self.pred1 = np.full(n_ports, -1, dtype=np.int64)
        if p.pred.shape[0]:
            first = p.pred[np.minimum(p.pred_off[:-1], p.pred.shape[0] - 1)]
            self.pred1 = np.where(npred == 1, first, -1)
        self.pred1_rank = rank[np.maximum(self.pred1, 0)] if rank.shape[0] else self.pred1
        self.multi = npred > 1
        self.any_multi = bool(self.multi.any())
        self.rank_end = rank_start[1:]
        self.cur = np.searchsorted(p.nodes, rank_start[:-1]).astype(np.int64)
        self.end = np.searchsorted(p.nodes, rank_start[1:]).astype(np.int64)
        self.thr = self.rank_end.copy()
        self.fire = np.full(n_ports, -1, dtype=np.int64)
        self.log: list[I64] = []
        self.active = np.flatnonzero(self.cur < self.end)
        self.thr[self.active] = p.nodes[self.cur[self.active]]
        self.complete = False

    def _multi_ready(self, p: I64) -> Bool:
        """Whether every cross-rank predecessor of ports ``p`` has been passed."""
        lo = self.pred_off[p]
        cnt = self.pred_off[p + 1] - lo
        u = self.pred[ranges(lo, cnt)]
        late = u >= self.thr[self.rank[u]]
        owner = np.repeat(np.arange(p.shape[0]), cnt)
        ok: Bool = np.bincount(owner[late], minlength=p.shape[0]) == 0
        return ok

    def _ready(self, p: I64) -> Bool:
        ok: Bool = self.thr[self.pred1_rank[p]] > self.pred1[p]
        if self.any_multi:
            m = self.multi[p]
            if m.any():
                ok[m] = self._multi_ready(p[m])
        pi = self.pinst[p]
        newly = ok & ~self.reg[p]
        np.subtract.at(self.remaining, pi[newly], 1)
        self.reg[p[newly]] = True
        ok &= self.remaining[pi] <= 0
        return ok

    def _fire(self, pr: I64) -> I64:
        """Log ports ``pr`` (and their lockstep chains) as fired this round; next ports.
        Fire keys are written once, after the sweep (:meth:`_keys`)."""
        self.log.append(pr)
        nxt: I64 = pr + self.jump[pr]
        return nxt

    def _keys(self) -> None:
        """``fire`` of every passed port: round · span + position in its chain."""
        if not self.log:
            return
        heads = np.concatenate(self.log)
        rounds = np.repeat(np.arange(len(self.log), dtype=np.int64), [x.size for x in self.log])
        jp = self.jump[heads]
        idx = ranges(heads, jp)
        self.fire[idx] = np.repeat(rounds * self.span - heads, jp) + idx

    def run(self) -> int:
        """Sweep until every rank is done (complete) or no rank can move (stall)."""
        k = 0
        active = self.active
        while active.shape[0]:
            p = self.cur[active]
            ok = self._ready(p)
            if not ok.any():
                break
            adv = active[ok]
            nxt = self._fire(p[ok])
            self.cur[adv] = nxt
            done = nxt >= self.end[adv]
            self.thr[adv] = np.where(done, self.rank_end[adv], self.ports_ext[nxt])
            if done.any():
                keep = np.ones(active.shape[0], dtype=np.bool_)
                keep[np.flatnonzero(ok)[done]] = False
                active = active[keep]
            k += 1
        self.active = active
        self.complete = active.shape[0] == 0
        self._keys()
        return k
