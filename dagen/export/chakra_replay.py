"""Replay a directory of Chakra traces: when every node ends, in whole microseconds.

The machine (docs/chakra.md, "Replay"), ASTRA-sim's replay mode as probed (issue 12) and
dagen's own schedule (docs/cost-model.md, "Schedule"):

* each rank runs its compute nodes one at a time in node-id order, and its collectives
  and sends one at a time in node-id order, each once its ``data_deps`` have ended
  (``ctrl_deps`` are not waited for: ASTRA-sim's feeder does not read them);
* a node takes its ``duration_micros``;
* the ``k``-th collective of a group on each member is one collective: it starts when
  every member has reached it, and each member ends ``duration_micros`` later;
* a recv starts once its ``data_deps`` have ended and ends when the send with the same
  (src, dst, tag, size) has ended, or at its start if that is later.

:func:`replay` also returns a bound on how far its makespan may lie from the exact one of
the durations before rounding (``bound_us``): the exporter rounds each stream's running
total, so a chain of nodes that stays on one stream is off by less than 1 µs, and the
error of a path is below one µs per stream it enters. ``bound_us`` is the largest such
count over the paths to the last node (a longest-path count in the replay's own order).

Example:
    >>> result = replay(read_traces(Path("traces")))  # doctest: +SKIP
    >>> result.makespan_us, result.bound_us  # doctest: +SKIP
    (4613648, 1893)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from dagen.export import chakra_schema as et
from dagen.export.chakra_read import Problem, RankTrace, Rule, TraceNode, Traces, p2p_key

__all__ = ["Replay", "replay"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Replay:
    """The replayed times."""

    makespan_us: int
    """When the last node ends."""
    end_us: dict[tuple[int, int], int]
    """(rank, node id) → end."""
    bound_us: int
    """|makespan − exact makespan| is below this (see the module docstring)."""
    problems: list[Problem]
    """A deadlock: the ranks that cannot finish and what each waits for."""

    @property
    def finished(self) -> bool:
        """Every rank ran every node (ASTRA-sim's "finished" on every rank)."""
        return not self.problems


@dataclass(slots=True)
class _Rank:
    trace: RankTrace
    queues: tuple[list[TraceNode], list[TraceNode]]
    """(compute, collectives and sends), each in id order."""
    recvs: list[TraceNode]
    heads: list[int] = field(default_factory=lambda: [0, 0])
    free: list[int] = field(default_factory=lambda: [0, 0])
    coll_seen: dict[str, int] = field(default_factory=dict)
    waiting: bool = False
    """Its collective head has arrived and waits for the other members."""


class _Run:
    def __init__(self, traces: Traces, rendezvous: bool) -> None:
        self.traces = traces
        self.rendezvous = rendezvous
        self.posted: dict[tuple[Any, ...], int] = {}
        """(src, dst, tag, size) → when the recv was posted."""
        self.ranks = [self._rank(t) for t in traces.ranks]
        self.end: dict[tuple[int, int], int] = {}
        self.runs: dict[tuple[int, int], int] = {}
        self.sent: dict[tuple[Any, ...], tuple[int, int]] = {}
        """(src, dst, tag, size) → (end, runs) of the send."""
        self.arrived: dict[tuple[str, int], list[tuple[int, int, int, TraceNode]]] = {}
        self.todo: deque[int] = deque(range(len(self.ranks)))

    @staticmethod
    def _rank(t: RankTrace) -> _Rank:
        nodes = sorted(t.nodes, key=lambda n: n.id)
        comm = (et.COMM_COLL_NODE, et.COMM_SEND_NODE)
        return _Rank(
            trace=t,
            queues=([n for n in nodes if n.type == et.COMP_NODE], [n for n in nodes if n.type in comm]),
            recvs=[n for n in nodes if n.type == et.COMM_RECV_NODE],
        )  # fmt: skip

    def _ready(self, r: int, n: TraceNode, pred: int | None) -> tuple[int, int] | None:
        """(time, runs) when ``n``'s dependencies have all ended, or None."""
        t, runs = 0, 1
        for d in n.deps:
            end = self.end.get((r, d))
            if end is None:
                return None
            t = max(t, end)
            runs = max(runs, self.runs[(r, d)] + (d != pred))
        return t, runs

    def _finish(self, r: int, n: TraceNode, end: int, runs: int) -> None:
        self.end[(r, n.id)] = end
        self.runs[(r, n.id)] = runs

    def _pred(self, rank: _Rank, q: int) -> int | None:
        h = rank.heads[q]
        return rank.queues[q][h - 1].id if h else None

    def _step(self, r: int, q: int) -> bool:
        rank = self.ranks[r]
        queue = rank.queues[q]
        if rank.heads[q] >= len(queue) or (q == 1 and rank.waiting):
            return False
        n = queue[rank.heads[q]]
        pred = self._pred(rank, q)
        ready = self._ready(r, n, pred)
        if ready is None:
            return False
        start = max(ready[0], rank.free[q])
        if n.type == et.COMM_SEND_NODE and self.rendezvous:
            posted = self.posted.get(p2p_key(n))
            if posted is None:
                return False  # a blocking send waits for its recv to be posted
            start = max(start, posted)
        runs = ready[1] if pred is None else max(ready[1], self.runs[(r, pred)])
        if n.type == et.COMM_COLL_NODE:
            return self._arrive(r, n, start, runs)
        self._finish(r, n, start + n.duration_us, runs)
        rank.free[q] = start + n.duration_us
        rank.heads[q] += 1
        if n.type == et.COMM_SEND_NODE:
            self.sent[p2p_key(n)] = (start + n.duration_us, runs)
            self._wake(n.attr("comm_dst"))
        return True

    def _wake(self, rank: Any) -> None:
        if isinstance(rank, int) and 0 <= rank < len(self.ranks):
            self.todo.append(rank)

    def _arrive(self, r: int, n: TraceNode, start: int, runs: int) -> bool:
        rank = self.ranks[r]
        pg = str(n.attr("pg_name"))
        k = rank.coll_seen.get(pg, 0)
        rank.coll_seen[pg] = k + 1
        rank.waiting = True
        here = self.arrived.setdefault((pg, k), [])
        here.append((r, start, runs, n))
        if len(here) == len(self.traces.groups.get(pg, ())):
            self._collective(here)
        return True

    def _collective(self, members: list[tuple[int, int, int, TraceNode]]) -> None:
        start = max(s for _, s, _, _ in members)
        runs = max(h for _, _, h, _ in members) + 1
        for r, _, _, n in members:
            rank = self.ranks[r]
            self._finish(r, n, start + n.duration_us, runs)
            rank.free[1] = start + n.duration_us
            rank.heads[1] += 1
            rank.waiting = False
            self.todo.append(r)

    def _recvs(self, r: int) -> bool:
        rank = self.ranks[r]
        left = []
        for n in rank.recvs:
            ready = self._ready(r, n, None)
            if ready is not None and p2p_key(n) not in self.posted:
                self.posted[p2p_key(n)] = ready[0]
                self._wake(n.attr("comm_src"))
            sent = self.sent.get(p2p_key(n))
            if ready is None or sent is None:
                left.append(n)
            else:
                self._finish(r, n, max(ready[0], sent[0]), max(ready[1], sent[1] + 1))
        done = len(left) < len(rank.recvs)
        rank.recvs = left
        return done

    def run(self) -> None:
        while self.todo:
            r = self.todo.popleft()
            # The recvs are scanned only when both queues are stuck: they are few.
            while self._step(r, 0) | self._step(r, 1) or self._recvs(r):
                pass


def _stuck(run: _Run) -> list[Problem]:
    problems = []
    for rank in run.ranks:
        left = len(rank.trace.nodes) - sum(
            1 for n in rank.trace.nodes if (rank.trace.rank, n.id) in run.end
        )
        if left == 0:
            continue
        heads = [q[h] for q, h in zip(rank.queues, rank.heads, strict=True) if h < len(q)]
        at = ", ".join(
            f"{n.id} ({n.name or et.NODE_TYPE_NAMES.get(n.type)})" for n in heads + rank.recvs[:1]
        )
        problems.append(Problem(rule=Rule.DEADLOCK, file=rank.trace.file, node=None,
                                message=f"{left} node(s) never run; stuck at {at}"))  # fmt: skip
    return problems


def replay(traces: Traces, *, rendezvous: bool = False) -> Replay:
    """Run every rank's trace (see the module docstring).

    ``rendezvous`` makes every send blocking: it starts only once its recv has been
    posted (an eager send, the default and dagen's model, starts when its own
    dependencies allow). Traces that finish both ways do not depend on the simulator's
    send protocol.

    A run that cannot finish is reported in :attr:`Replay.problems` (rule ``deadlock``),
    with what each stuck rank waits for; its makespan covers the nodes that ran.
    """
    run = _Run(traces, rendezvous)
    run.run()
    last = max(run.end, key=lambda k: (run.end[k], k), default=None)
    return Replay(
        makespan_us=0 if last is None else run.end[last],
        end_us=run.end,
        bound_us=max(run.runs.values(), default=0),
        problems=_stuck(run),
    )
