"""Find a schedule's blocks and messages from what graph nodes carry.

A node says its rank (hence its stage), its step and its micro-batch; a stage may run
several blocks of one (step, micro-batch) (interleaved chunks, a forward and a backward
block), so the *occurrence*, the index among a rank's items of the same (step,
micro-batch) in program order, completes the key. :class:`BlockIndex` answers, for
such keys, a block's certificate slot, where a send must go and where a recv must come
from. Nothing here trusts the graph: a key the schedule does not have is reported as
not found.

Example:
    >>> ix = BlockIndex(schedule)  # doctest: +SKIP
    >>> found, dst_stage, dst_step, dst_mb = ix.send(stage, step, mb, occ)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from dagen.graph.ir import Graph
    from dagen.graph.schedule import Schedule

__all__ = ["BlockIndex", "message_ends", "occurrence", "slots_of", "transfer_ends", "transfer_rows"]

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
Int = npt.NDArray[np.integer]


def occurrence(*keys: Int) -> I64:
    """Index of each item among the earlier items with the same key (keys are columns of
    equal length, non-negative where it matters, items in order).

    >>> occurrence(np.array([0, 0, 1, 0]), np.array([5, 5, 5, 5])).tolist()
    [0, 1, 0, 2]
    """
    n = keys[0].shape[0] if keys else 0
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    packed = np.zeros(n, dtype=np.int64)
    for k in keys:  # one int64 key: each column shifted to start at 0, times the span so far
        k64 = np.asarray(k, dtype=np.int64)
        lo = int(k64.min())
        packed *= int(k64.max()) - lo + 1
        packed += k64 - lo
    order = np.argsort(packed, kind="stable")
    ranked = packed[order]
    new = np.ones(n, dtype=np.bool_)
    new[1:] = ranked[1:] != ranked[:-1]
    start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) - start
    return out


class BlockIndex:
    """Sorted keys of a schedule's blocks, sends and recvs (see the module docstring)."""

    def __init__(self, schedule: Schedule) -> None:
        self.sched = schedule
        stages = schedule.stages
        stage = np.concatenate([np.full(st.size, s, np.int64) for s, st in enumerate(stages)])
        step = np.concatenate([st.step for st in stages]).astype(np.int64)
        mb = np.concatenate([st.mb for st in stages]).astype(np.int64)
        self._dims = (
            schedule.pp,
            int(step.max()) + 1 if step.size else 1,
            int(mb.max()) + 1 if mb.size else 1,
        )
        self._first = np.concatenate([[0], np.cumsum([st.size for st in stages])]).astype(np.int64)
        self._step, self._mb = step, mb
        occ = occurrence(stage, step, mb)
        self.occ_bound = int(occ.max(initial=0)) + 1
        self._bounds = np.array([*self._dims, self.occ_bound], dtype=np.int64)[:, None]
        self._blocks = self._table(stage, step, mb, np.arange(stage.shape[0]), occ)
        self._messages: dict[str, tuple[I64, I64]] = {}
        """The sends' (``src``) and recvs' (``dst``) tables, each built on first use (the
        checks ask only where sends go)."""

    def _global(self, stage: Int, block: Int) -> I64:
        out: I64 = self._first[np.asarray(stage, dtype=np.int64)] + block
        return out

    def _message_table(self, side: str) -> tuple[I64, I64]:
        """Pair rows keyed by their ``side`` end's (stage, step, mb, occurrence)."""
        if side in self._messages:
            return self._messages[side]
        p = self.sched.pairs
        stage, block = getattr(p, f"{side}_stage"), getattr(p, f"{side}_block")
        row, values = getattr(p, f"{side}_row"), np.arange(p.size)
        g = self._global(stage, block)
        order = np.lexsort((row, g))  # the block's messages in row (program) order
        st = np.asarray(stage, dtype=np.int64)[order]
        table = self._table(st, self._step[g[order]], self._mb[g[order]], values[order])
        self._messages[side] = table
        return table

    def _pack(self, stage: Int, step: Int, mb: Int, occ: Int) -> tuple[I64, Bool]:
        _, steps, mbs = self._dims
        cols = np.array([stage, step, mb, occ], dtype=np.int64)  # [4, n]: 1-D keys of one length
        ok: Bool = np.all((cols >= 0) & (cols < self._bounds), axis=0)
        key = ((cols[0] * steps + cols[1]) * mbs + cols[2]) * self.occ_bound + cols[3]
        return np.where(ok, key, -1), ok

    def _table(
        self, stage: Int, step: Int, mb: Int, values: I64, occ: Int | None = None
    ) -> tuple[I64, I64]:
        """Keys sorted, with their values; ``occ`` when the caller has it already."""
        key, _ = self._pack(stage, step, mb, occurrence(stage, step, mb) if occ is None else occ)
        order = np.argsort(key, kind="stable")
        return key[order], np.asarray(values, dtype=np.int64)[order]

    @staticmethod
    def _find(table: tuple[I64, I64], key: I64, ok: Bool) -> tuple[Bool, I64]:
        keys, values = table
        if keys.shape[0] == 0:
            return np.zeros(key.shape[0], np.bool_), np.zeros(key.shape[0], np.int64)
        at = np.searchsorted(keys, key).clip(0, keys.shape[0] - 1)
        found = ok & (keys[at] == key)
        return found, np.where(found, values[at], 0)

    def block(self, stage: Int, step: Int, mb: Int, occ: Int) -> tuple[Bool, I64]:
        """(found, global block index) of each key."""
        return self._find(self._blocks, *self._pack(stage, step, mb, occ))

    def slot(self, stage: Int, step: Int, mb: Int, occ: Int) -> tuple[Bool, I64]:
        """(found, certificate slot) of each block key."""
        found, g = self.block(stage, step, mb, occ)
        slots = np.concatenate([st.slot for st in self.sched.stages]).astype(np.int64)
        return found, np.where(found, slots[g] if slots.size else 0, 0)

    def _other_end(
        self, table: tuple[I64, I64], side: str, *key: Int
    ) -> tuple[Bool, I64, I64, I64]:
        found, row = self._find(table, *self._pack(*key))
        p = self.sched.pairs
        if p.size == 0:
            return found, row, row, row
        stage = getattr(p, f"{side}_stage")[row].astype(np.int64)
        g = self._global(stage, getattr(p, f"{side}_block")[row])
        return found, stage, self._step[g], self._mb[g]

    def send(self, stage: Int, step: Int, mb: Int, occ: Int) -> tuple[Bool, I64, I64, I64]:
        """For the ``occ``-th send of each (stage, step, mb): (found, stage, step, mb) of
        the block it must reach."""
        return self._other_end(self._message_table("src"), "dst", stage, step, mb, occ)

    def recv(self, stage: Int, step: Int, mb: Int, occ: Int) -> tuple[Bool, I64, I64, I64]:
        """For the ``occ``-th recv of each (stage, step, mb): (found, stage, step, mb) of
        the block it must come from."""
        return self._other_end(self._message_table("dst"), "src", stage, step, mb, occ)


def _by_pool(
    graph: Graph, ranks: npt.NDArray[np.integer]
) -> list[tuple[int, npt.NDArray[np.int64] | slice]]:
    """(pool, the positions of ``ranks`` in it) for every pool (one slice when single)."""
    if len(graph.pools) == 1:
        return [(0, slice(None))]
    pool = graph.ranks.pool[ranks]
    return [(p, np.flatnonzero(pool == p)) for p in range(len(graph.pools))]


def slots_of(graph: Graph, ranks: Int, step: Int, mb: Int, occ: Int) -> tuple[Bool, I64]:
    """(found, certificate slot) of the blocks ``(rank, step, mb, occ)``, each in its pool's
    schedule."""
    found = np.zeros(ranks.shape[0], dtype=np.bool_)
    slot = np.zeros(ranks.shape[0], dtype=np.int64)
    for p, at in _by_pool(graph, ranks):
        r = ranks[at]
        index = graph.pools[p].schedule.index()
        found[at], slot[at] = index.slot(graph.ranks.stage[r], step[at], mb[at], occ[at])
    return found, slot


_KV = (38, 39)
"""Op codes of ``kv.send`` and ``kv.recv`` (:class:`dagen.graph.ops.Op`; a test holds it)."""


def transfer_rows(graph: Graph, nodes: I64, sending: bool) -> I64:
    """The row of the graph's transfer table each KV-cache send (or recv) of ``nodes``
    stands for, -1 for none: the ``k``-th ``kv.send`` a rank issues for a prefill
    micro-batch is the ``k``-th row of that (src, mb) in table order; the ``k``-th
    ``kv.recv`` the ``k``-th row of that (dst, mb) ordered by (src, layer, head)."""
    tr = graph.transfers
    n = nodes.shape[0]
    if tr is None or n == 0 or tr.size == 0:
        return np.full(n, -1, dtype=np.int64)
    rows = (np.arange(tr.size) if sending
            else np.lexsort((tr.head0, tr.layer0, tr.src, tr.mb, tr.dst)))  # fmt: skip
    own = (tr.src if sending else tr.dst)[rows].astype(np.int64)
    rmb = tr.mb[rows].astype(np.int64)
    me, mb = graph.rank[nodes].astype(np.int64), graph.mb[nodes].astype(np.int64)
    mbs = max(int(rmb.max()), int(mb.max())) + 1
    width = tr.size + n + 1
    key_rows = (own * mbs + rmb) * width + occurrence(own, rmb)
    key_nodes = (me * mbs + mb) * width + occurrence(me, mb)
    order = np.argsort(key_rows, kind="stable")
    keys = key_rows[order]
    pos = np.searchsorted(keys, key_nodes).clip(0, tr.size - 1)
    return np.where(keys[pos] == key_nodes, rows[order][pos], -1)


def transfer_ends(graph: Graph, nodes: I64, sending: bool) -> tuple[Bool, I64, I64, I64]:
    """Where KV-cache sends ``nodes`` must go (or recvs come from): (found, peer, step 0,
    micro-batch), by :func:`transfer_rows`."""
    row = transfer_rows(graph, nodes, sending)
    hit = row >= 0
    tr = graph.transfers
    peer = np.full(nodes.shape[0], -1, dtype=np.int64)
    if tr is not None and hit.any():
        peer[hit] = (tr.dst if sending else tr.src)[row[hit]]
    mb = graph.mb[nodes].astype(np.int64)
    return hit, peer, np.zeros(nodes.shape[0], dtype=np.int64), mb


def message_ends(graph: Graph, nodes: I64, sending: bool) -> tuple[Bool, I64, I64, I64]:
    """Where sends ``nodes`` must go (``sending``) or recvs come from: (found, peer rank,
    step, micro-batch), by the pool's schedule and its pipeline groups. The ``k``-th send
    a rank issues for a (step, micro-batch) is the schedule's ``k``-th pair from that
    block of its stage; the peer is the rank at the same (tp, cp, dp) coordinates in the
    paired stage. KV-cache messages are answered by :func:`transfer_ends`."""
    op = graph.op[nodes]
    kv = (op == _KV[0]) | (op == _KV[1])
    if kv.any():
        n = nodes.shape[0]
        found = np.zeros(n, dtype=np.bool_)
        peer, step, mb = (np.zeros(n, dtype=np.int64) for _ in range(3))
        for part, ends in ((kv, transfer_ends(graph, nodes[kv], sending)),
                           (~kv, _schedule_ends(graph, nodes[~kv], sending))):  # fmt: skip
            found[part], peer[part], step[part], mb[part] = ends
        return found, peer, step, mb
    return _schedule_ends(graph, nodes, sending)


def _schedule_ends(graph: Graph, nodes: I64, sending: bool) -> tuple[Bool, I64, I64, I64]:
    n = nodes.shape[0]
    ranks = graph.rank[nodes]
    step, mb = graph.step[nodes], graph.mb[nodes]
    occ = occurrence(ranks, step, mb)
    found = np.zeros(n, dtype=np.bool_)
    peer, estep, emb = (np.zeros(n, dtype=np.int64) for _ in range(3))
    for p, at in _by_pool(graph, ranks):
        pool, r = graph.pools[p], ranks[at]
        index = pool.schedule.index()
        key = (graph.ranks.stage[r], step[at], mb[at], occ[at])
        f, stage, estep[at], emb[at] = index.send(*key) if sending else index.recv(*key)
        table = pool.mesh.groups("pp").astype(np.int64)
        stage = np.where(f, np.minimum(stage, table.shape[1] - 1), 0)
        local = pool.mesh.group_of("pp")[r - pool.rank0]
        found[at], peer[at] = f, np.where(f, table[local, stage] + pool.rank0, -1)
    return found, peer, estep, emb
