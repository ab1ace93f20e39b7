"""Lay a deployment's KV-cache transfers into its graph: ``kv.recv`` nodes first on every
decode rank, ``kv.send`` nodes last on every prefill rank, one p2p edge per message.

The order the systems use (Mooncake, SGLang and vLLM disaggregation; DeepSeek's Day 6
overview) is: the decode instance reserves the cache blocks and posts the receive, the
prefill runs, the cache moves, and decode starts. In the graph:

- a decode rank's program starts with its ``kv.recv`` nodes (the reservation: posted
  before anything else, its bytes held from then on), chained by order edges, the last
  one ordered before the rank's first decode op;
- a prefill rank's program ends with its ``kv.send`` nodes, the first one ordered after
  the rank's last prefill op (its cache is complete only then);
- each send has a p2p edge to its recv, like a pipeline send.

Nodes stay rank-major and in issue order, so every check, the certificate's fallback
(the rank sweep), the simulator and every exporter read the transfers as they read any
send. One pass of numpy: O(nodes + messages).

Example:
    >>> graph = with_transfers(build_pools(pools), tr)  # doctest: +SKIP
    >>> int((graph.op == Op.KV_SEND).sum()) == tr.size  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.errors import GraphError
from dagen.graph.codes import EdgeKind, Kind, Phase
from dagen.graph.ir import COLUMN_DTYPES, Graph
from dagen.graph.ops import Op
from dagen.graph.reshard import Transfers

__all__ = ["TRANSFER_OPS", "transfer_nodes", "with_transfers"]

I64 = npt.NDArray[np.int64]

TRANSFER_OPS = (int(Op.KV_SEND), int(Op.KV_RECV))


def transfer_nodes(graph: Graph) -> I64:
    """Indices of every ``kv.send`` and ``kv.recv`` node."""
    return np.flatnonzero(np.isin(graph.op, TRANSFER_OPS)).astype(np.int64)


def _occurrence(keys: I64, n: int) -> I64:
    """Position of each row among the rows of its key (rows sorted by key)."""
    counts = np.bincount(keys, minlength=n)
    out: I64 = np.arange(keys.shape[0]) - np.r_[0, np.cumsum(counts)][:-1][keys]
    return out


def _positions(graph: Graph, tr: Transfers) -> tuple[I64, I64, I64, I64]:
    """(new index of every old node, of every send row, of every recv row, first new
    index of every rank)."""
    world, n = graph.world, graph.n_nodes
    at = np.arange(world)
    first = np.searchsorted(graph.rank, at, "left")
    last = np.searchsorted(graph.rank, at, "right")
    if np.any(last <= first):
        raise GraphError("with_transfers: a rank has no node; transfers need every rank's program")
    src, dst = tr.src.astype(np.int64), tr.dst.astype(np.int64)
    n_send, n_recv = np.bincount(src, minlength=world), np.bincount(dst, minlength=world)
    before = np.r_[0, np.cumsum(n_send + n_recv)][:-1]
    start = first + before
    old = np.arange(n) + (before + n_recv)[graph.rank]
    send = last[src] + before[src] + n_recv[src] + _occurrence(src, world)
    rorder = np.lexsort((tr.head0, tr.layer0, tr.src, tr.mb, tr.dst))
    recv = np.empty(tr.size, dtype=np.int64)
    recv[rorder] = start[dst[rorder]] + _occurrence(dst[rorder], world)
    return old, send, recv, start


def _templates(graph: Graph, tr: Transfers) -> tuple[dict[str, Any], I64]:
    """The template table with one row per (message shape, side) added, and each row's
    send template (its recv's is the next one)."""
    ntok = (tr.req1 - tr.req0).astype(np.int64) * tr.tokens
    width = (tr.layer1 - tr.layer0).astype(np.int64) * (tr.head1 - tr.head0)
    shapes, inverse = np.unique(np.stack([ntok, width, tr.nbytes]), axis=1, return_inverse=True)
    base = len(graph.tmpl_shape)
    k = shapes.shape[1]
    shape = [(int(a), int(b)) for a, b in zip(shapes[0], shapes[1], strict=True)]
    cols = {
        "tmpl_shape": graph.tmpl_shape + [s for s in shape for _ in (0, 1)],
        "tmpl_bytes": np.r_[graph.tmpl_bytes, np.repeat(shapes[2], 2)].astype(np.int64),
        "tmpl_flops": np.r_[graph.tmpl_flops, np.zeros(2 * k)],
        "tmpl_hbm": np.r_[graph.tmpl_hbm, np.zeros(2 * k)],
        "tmpl_phase": np.r_[graph.tmpl_phase, np.tile([Phase.PREFILL, Phase.DECODE], k)].astype(np.uint8),
    }  # fmt: skip
    return cols, base + 2 * inverse.reshape(-1).astype(np.int64)


def _node_columns(
    graph: Graph, tr: Transfers, old: I64, send: I64, recv: I64, tmpl: I64
) -> dict[str, Any]:
    total = graph.n_nodes + 2 * tr.size
    out: dict[str, Any] = {}
    new = {
        "rank": (tr.src, tr.dst), "layer": (-1, -1), "mb": (tr.mb, tr.mb), "step": (0, 0),
        "op": (int(Op.KV_SEND), int(Op.KV_RECV)), "kind": (int(Kind.SEND), int(Kind.RECV)),
        "expert": (-1, -1), "inst": (-1, -1), "aux": (tr.dst, tr.src), "tmpl": (tmpl, tmpl + 1),
    }  # fmt: skip
    for c in Graph.NODE_COLUMNS:
        col = np.empty(total, dtype=COLUMN_DTYPES[c])
        col[old] = getattr(graph, c)
        col[send], col[recv] = new[c]
        out[c] = col
    return out


def _edge_columns(graph: Graph, old: I64, send: I64, recv: I64) -> dict[str, Any]:
    chains = np.r_[send - 1, recv], np.r_[send, recv + 1]
    src = np.r_[old[graph.src], chains[0], send]
    dst = np.r_[old[graph.dst], chains[1], recv]
    kinds = np.r_[graph.ekind, np.full(chains[0].shape[0], EdgeKind.ORDER, np.uint8),
                  np.full(send.shape[0], EdgeKind.P2P, np.uint8)]  # fmt: skip
    return {"src": src.astype(np.int32), "dst": dst.astype(np.int32),
            "ekind": kinds.astype(np.uint8)}  # fmt: skip


def with_transfers(graph: Graph, tr: Transfers) -> Graph:
    """``graph`` with the messages of ``tr`` laid in (see the module docstring).

    Raises:
        GraphError: a rank of the graph has no node.
    """
    old, send, recv, start = _positions(graph, tr)
    tmpl_cols, tmpl = _templates(graph, tr)
    cols = _node_columns(graph, tr, old, send, recv, tmpl)
    cols |= _edge_columns(graph, old, send, recv)
    total = graph.n_nodes + 2 * tr.size
    bounds = [int(start[p.rank0]) for p in graph.pools] + [total]
    pools = tuple(dataclasses.replace(p, node0=bounds[i], node1=bounds[i + 1])
                  for i, p in enumerate(graph.pools))  # fmt: skip
    meta = dict(graph.meta)
    meta["transfers"] = {"messages": tr.size, "requests": tr.requests,
                         "bytes": int(tr.nbytes.sum())}  # fmt: skip
    return dataclasses.replace(graph, pools=pools, transfers=tr, meta=meta, **cols, **tmpl_cols)
