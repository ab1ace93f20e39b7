"""KV-cache transfers of a disaggregated graph: every request's cache reaches exactly one
decode replica, whole, in messages of the model's bytes, at the right place in the
programs.

The oracle is the decode pool itself (its ranks' replicas, stage layers and TP head
sets, :func:`dagen.graph.reshard.head_sets`) and the model (the bytes of a head unit);
the transfer table is what is judged. Send/recv pairing, peers and equal bytes on both
sides are :func:`dagen.checks.comms.check_p2p`'s (a ``kv.send``'s peer by the table), and
deadlock freedom across pools :func:`dagen.checks.acyclic.check_acyclic`'s: transfers are
sends like any other. Codes: docs/graph-checks.md.

- ``GRAPH-KV-REPLICA``: the request runs the messages give each decode replica must tile
  ``[0, Q)`` without overlap.
- ``GRAPH-KV-INCOMPLETE``: for every decode rank, every (layer of its stage, head unit of
  its TP rank), the requests received must tile its replica's requests exactly once.
- ``GRAPH-KV-BYTES``: a message's bytes = requests × prompt tokens × layers × head units ×
  unit bytes; every ``kv.send``/``kv.recv`` node moves its message's bytes.
- ``GRAPH-KV-NODES``: one ``kv.send`` and one ``kv.recv`` per message, no other.
- ``GRAPH-KV-ORDER``: a decode rank's ``kv.recv`` nodes come before its first other op,
  a prefill rank's ``kv.send`` nodes after its last.

Example:
    >>> check_transfers(graph)  # doctest: +SKIP
    []
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.checks.common import Code, make
from dagen.findings import Finding, count, rank_list
from dagen.graph.ir import Graph, Op
from dagen.graph.lookup import transfer_rows
from dagen.graph.reshard import Transfers, head_sets, kv_units

__all__ = ["check_transfers"]

I64 = npt.NDArray[np.int64]


def check_transfers(graph: Graph) -> list[Finding]:
    """Every check of the module docstring; [] for a graph without transfers."""
    tr = graph.transfers
    if tr is None:
        return []
    return _replicas(graph, tr) + _complete(graph, tr) + _bytes(graph, tr) + _nodes(graph, tr)


def _tiles(lo: I64, hi: I64, start: int, stop: int) -> bool:
    """Whether intervals [lo, hi) (any order) tile [start, stop) exactly once."""
    order = np.lexsort((hi, lo))
    lo, hi = lo[order], hi[order]
    if lo.size == 0:
        return start >= stop
    return bool(lo[0] == start and hi[-1] == stop and np.all(lo[1:] == hi[:-1]) and np.all(hi > lo))


def _replicas(graph: Graph, tr: Transfers) -> list[Finding]:
    rep = graph.ranks.replica[tr.dst].astype(np.int64)
    runs = np.unique(np.stack([tr.req0, tr.req1, rep]).astype(np.int64), axis=1)
    # a run given to two replicas appears twice; a gap or overlap breaks the tiling
    if _tiles(runs[0], runs[1], 0, tr.requests):
        return []
    covered = np.zeros(tr.requests + 1, dtype=np.int64)
    np.add.at(covered, runs[0].clip(0, tr.requests), 1)
    np.add.at(covered, runs[1].clip(0, tr.requests), -1)
    per_request = np.cumsum(covered)[: tr.requests]
    none, many = int((per_request == 0).sum()), int((per_request > 1).sum())
    first = int(np.flatnonzero(per_request != 1)[0]) if (none or many) else 0
    return [make(
        graph, Code.GRAPH_KV_REPLICA,
        f"of {tr.requests:,} requests, {none:,} reach no decode replica and {many:,} more than "
        f"one (first: request {first}); each request's cache must go to exactly one",
        "deal the prefill batch's requests to the decode replicas once each "
        "(dagen.graph.reshard: replica ⌊q · dp_d / Q⌋)",
        data={"none": none, "many": many},
    )]  # fmt: skip


def _wanted(graph: Graph, tr: Transfers) -> tuple[I64, I64, I64]:
    """(decode rank, layer, head unit) of every cell a decode rank must hold, on the
    ranks of every replica that is sent requests (a batch smaller than the decode pool's
    replicas leaves some without)."""
    pool = graph.pools[tr.decode]
    units, _ = kv_units(graph.model, 1.0)
    sets = head_sets(units, pool.mesh.sizes["tp"])
    served = np.unique(graph.ranks.replica[tr.dst])
    ranks, layers, heads = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for r in pool.ranks:
        if graph.ranks.replica[r] not in served:
            continue
        lay = pool.stage_layers[int(graph.ranks.stage[r])]
        hs = sets[int(graph.ranks.coords["tp"][r])]
        grid = np.array(np.meshgrid(np.arange(lay.start, lay.stop), np.arange(hs.start, hs.stop),
                                    indexing="ij")).reshape(2, -1)  # fmt: skip
        ranks.append(np.full(grid.shape[1], r))
        layers.append(grid[0])
        heads.append(grid[1])
    return np.concatenate(ranks), np.concatenate(layers), np.concatenate(heads)


def _complete(graph: Graph, tr: Transfers) -> list[Finding]:
    nl = (tr.layer1 - tr.layer0).astype(np.int64).clip(0)
    nh = (tr.head1 - tr.head0).astype(np.int64).clip(0)
    row = np.repeat(np.arange(tr.size), nl * nh)  # one piece per (message, layer, head unit)
    k = np.arange(row.shape[0]) - np.repeat(np.r_[0, np.cumsum(nl * nh)][:-1], nl * nh)
    layer = tr.layer0[row] + k // np.maximum(nh[row], 1)
    head = tr.head0[row] + k % np.maximum(nh[row], 1)
    span_l, span_h = graph.model.layers + 1, int(max(tr.heads, int(tr.head1.max(initial=0)))) + 1
    key = (tr.dst[row].astype(np.int64) * span_l + layer) * span_h + head
    wr, wl, wh = _wanted(graph, tr)
    wkey = (wr * span_l + wl) * span_h + wh
    lo_of, hi_of = _replica_blocks(graph, tr)
    rep = graph.ranks.replica.astype(np.int64)
    order = np.lexsort((tr.req0[row], key))
    ks, lo, hi = (
        key[order],
        tr.req0[row][order].astype(np.int64),
        tr.req1[row][order].astype(np.int64),
    )
    pr = rep[tr.dst[row][order]]
    new = np.r_[True, ks[1:] != ks[:-1]]
    last = np.r_[new[1:], True]
    gap = ~new & (lo != np.r_[0, hi[:-1]])
    bad_keys = np.unique(np.r_[ks[gap], ks[new & (lo != lo_of[pr])], ks[last & (hi != hi_of[pr])]])
    bad_keys = np.union1d(bad_keys, wkey[~np.isin(wkey, ks)])
    missing = np.isin(wkey, bad_keys)
    extra = ~np.isin(key, wkey)
    if not missing.any() and not extra.any():
        return []
    ranks = np.unique(np.r_[wr[missing], tr.dst[row[extra]]])
    i = int(np.flatnonzero(missing)[0]) if missing.any() else -1
    first = (f"rank {int(wr[i])}, layer {int(wl[i])}, head unit {int(wh[i])}" if i >= 0
             else f"rank {int(tr.dst[row[extra][0]])} gets a shard it does not hold")  # fmt: skip
    return [make(
        graph, Code.GRAPH_KV_INCOMPLETE,
        f"{count(int(missing.sum()), '(decode rank, layer, head unit) cell')} of "
        f"{wkey.shape[0]:,} do not receive every request of the rank's replica exactly once, "
        f"and {int(extra.sum()):,} pieces go to a rank that does not hold them; first: {first}; "
        f"ranks {rank_list(ranks)}",
        "send every layer and head shard of each request's cache to every decode rank of its "
        "replica that holds it, once",
        ranks=ranks, data={"cells": int(missing.sum()), "foreign": int(extra.sum())},
    )]  # fmt: skip


def _replica_blocks(graph: Graph, tr: Transfers) -> tuple[I64, I64]:
    """Each decode replica's request block by the messages: (first, one past last)."""
    rep = graph.ranks.replica[tr.dst].astype(np.int64)
    n = int(graph.ranks.replica.max(initial=0)) + 1
    lo = np.full(n, np.iinfo(np.int64).max)
    hi = np.full(n, -1, dtype=np.int64)
    np.minimum.at(lo, rep, tr.req0.astype(np.int64))
    np.maximum.at(hi, rep, tr.req1.astype(np.int64))
    return lo, hi


def _bytes(graph: Graph, tr: Transfers) -> list[Finding]:
    _, unit = kv_units(graph.model, graph.pools[tr.prefill].dims.ekv)
    want = np.rint((tr.req1 - tr.req0).astype(np.float64) * tr.tokens * (tr.layer1 - tr.layer0)
                   * (tr.head1 - tr.head0) * unit).astype(np.int64)  # fmt: skip
    off = np.flatnonzero(want != tr.nbytes)
    kv = np.flatnonzero(np.isin(graph.op, (int(Op.KV_SEND), int(Op.KV_RECV))))
    sending = graph.op[kv] == Op.KV_SEND
    node_off: list[int] = []
    for side in (True, False):
        nodes = kv[sending == side]
        row = transfer_rows(graph, nodes, side)
        got = graph.tmpl_bytes[graph.tmpl[nodes]]
        node_off += nodes[(row >= 0) & (got != tr.nbytes[row.clip(0)])].tolist()
    if off.size == 0 and not node_off:
        return []
    i = int(off[0]) if off.size else -1
    first = (f"message {i} (rank {int(tr.src[i])} → {int(tr.dst[i])}): {int(tr.nbytes[i]):,} B, "
             f"expected {int(tr.req1[i] - tr.req0[i])} requests × {tr.tokens} tokens × "
             f"{int(tr.layer1[i] - tr.layer0[i])} layers × {int(tr.head1[i] - tr.head0[i])} head "
             f"units × {unit:g} B = {int(want[i]):,} B" if off.size
             else f"node {graph.node_id(node_off[0])}")  # fmt: skip
    return [make(
        graph, Code.GRAPH_KV_BYTES,
        f"{count(int(off.size), 'message')} of {tr.size:,} with other bytes than the model's and "
        f"{count(len(node_off), 'kv node')} with other bytes than their message; first: {first}",
        "size each message from the model's KV bytes per token and layer in the KV-cache format",
        nodes=node_off, ranks=np.unique(np.r_[tr.src[off], graph.rank[node_off]]),
    )]  # fmt: skip


def _nodes(graph: Graph, tr: Transfers) -> list[Finding]:
    out: list[Finding] = []
    for op, side, who in ((Op.KV_SEND, True, tr.src), (Op.KV_RECV, False, tr.dst)):
        nodes = np.flatnonzero(graph.op == op)
        row = transfer_rows(graph, nodes, side)
        have = np.bincount(row[row >= 0], minlength=tr.size)
        lost, stray = np.flatnonzero(have == 0), nodes[row < 0]
        if lost.size or stray.size:
            out.append(make(
                graph, Code.GRAPH_KV_NODES,
                f"{count(int(lost.size), 'message')} of {tr.size:,} without a {op.label} node and "
                f"{count(int(stray.size), op.label + ' node')} without a message; ranks "
                f"{rank_list(np.unique(np.r_[who[lost], graph.rank[stray]]))}",
                f"emit one {op.label} per message of the transfer table on its rank",
                nodes=stray, ranks=np.unique(np.r_[who[lost], graph.rank[stray]]),
            ))  # fmt: skip
        out += _order(graph, nodes, side, op)
    return out


def _order(graph: Graph, nodes: I64, sending: bool, op: Op) -> list[Finding]:
    """kv.recv before every other node of its rank; kv.send after every other one."""
    other = np.flatnonzero(~np.isin(graph.op, (int(Op.KV_SEND), int(Op.KV_RECV))))
    ranks = graph.rank[other]
    world = graph.world
    lo = np.full(world, np.iinfo(np.int64).max)
    hi = np.full(world, -1)
    np.minimum.at(lo, ranks, other)
    np.maximum.at(hi, ranks, other)
    r = graph.rank[nodes]
    bad = nodes[(nodes < hi[r]) if sending else (nodes > lo[r])]
    if bad.size == 0:
        return []
    where = "after the last prefill op" if sending else "before the first decode op"
    return [make(
        graph, Code.GRAPH_KV_ORDER,
        f"{count(int(bad.size), op.label + ' node')} not {where} of its rank; first: "
        f"{graph.node_id(int(bad[0]))}",
        "decode posts its receives (reserving the cache) first, prefill sends once its cache "
        "is complete, decode starts after the last receive",
        nodes=bad,
    )]  # fmt: skip
