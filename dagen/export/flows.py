"""Flow events of the timeline: arrows from a send to its recv and through a collective.

The Trace Event Format's flow events (``"ph": "s"`` start, ``"t"`` step, ``"f"``
finish; the same ``cat``, ``name`` and ``id`` join one flow) bind to the slice that
encloses their timestamp on their track (``"bp": "e"``). Two kinds are written:

- ``p2p``: one flow per send → recv edge, ``id`` the send's node index, from the middle
  of the send's slice to the middle of the recv's transfer window ``[max(recv start,
  send start), recv end]`` (a recv is posted early; its data arrives at its end).
- ``collective``: one flow per instance with two or more traced members, ``id`` the
  instance, named by its collective (``all-reduce`` …), through the members in rank
  order, each at the middle of its slice.

A flow event sits mid-slice, not at its start, because a slice that starts where the
previous one on its track ends shares that instant with it, and a viewer could bind the
flow to either.

Times are integer nanoseconds (:func:`dagen.export.timeline.slice_ns`), written as
microseconds with three decimals, the same numbers as the slices'.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from dagen.graph.ir import Coll, EdgeKind, Graph
from dagen.graph.text import Bytes, bytes_table, cat, istr, scaled, strip

__all__ = ["flow_chunks"]

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

_COLL = bytes_table([c.label.encode() for c in Coll])
_PHASE = bytes_table([b"s", b"t", b"f"])


def _events(
    name: Bytes | bytes, cat_: bytes, flow: I64, phase: I64, node: I64, ctx: _Track
) -> bytes:
    rows = cat(
        b',{"name":"', name, b'","cat":"', cat_, b'","ph":"', _PHASE[phase],
        b'","bp":"e","id":', istr(flow), b',"pid":', istr(ctx.rank[node]),
        b',"tid":', istr(ctx.stream[node]), b',"ts":', scaled(ctx.at[node], digits=3), b"}",
        n=flow.size,
    )  # fmt: skip
    return strip(rows)


class _Track:
    """Rank, stream and flow timestamp (ns) of every node."""

    def __init__(self, graph: Graph, stream: U8, at: I64) -> None:
        self.rank, self.stream, self.at = graph.rank, stream, at


def _p2p(graph: Graph, keep: npt.NDArray[np.bool_]) -> tuple[I64, I64]:
    """(send, recv) node pairs of the p2p edges with both ends traced, by send."""
    p2p = graph.ekind == EdgeKind.P2P
    src, dst = graph.src[p2p].astype(np.int64), graph.dst[p2p].astype(np.int64)
    both = keep[src] & keep[dst]
    src, dst = src[both], dst[both]
    order = np.argsort(src, kind="stable")
    return src[order], dst[order]


def _members(graph: Graph, nodes: I64) -> tuple[I64, I64, I64]:
    """(instance, node, phase) of traced collective members, by instance then rank."""
    members = nodes[graph.inst[nodes] >= 0]
    inst = graph.inst[members].astype(np.int64)
    order = np.lexsort((members, graph.rank[members], inst))
    inst, members = inst[order], members[order]
    first = np.ones(inst.size, dtype=np.bool_)
    first[1:] = inst[1:] != inst[:-1]
    last = np.ones(inst.size, dtype=np.bool_)
    last[:-1] = inst[1:] != inst[:-1]
    many = ~(first & last)  # an instance with one traced member draws no flow
    phase = np.where(first, 0, np.where(last, 2, 1)).astype(np.int64)
    return inst[many], members[many], phase[many]


def flow_chunks(
    graph: Graph, nodes: I64, stream: U8, times: tuple[I64, I64], chunk: int
) -> Iterator[bytes]:
    """The flow events of the traced ``nodes``, ``chunk`` events at a time; ``times`` are
    every node's (start, duration) in nanoseconds."""
    start_ns, dur_ns = times
    keep = np.zeros(graph.n_nodes, dtype=np.bool_)
    keep[nodes] = True
    send, recv = _p2p(graph, keep)
    at = start_ns + dur_ns // 2
    arrive = np.maximum(start_ns[recv], start_ns[send])
    at[recv] = arrive + (start_ns[recv] + dur_ns[recv] - arrive) // 2
    track = _Track(graph, stream, at)
    for lo in range(0, send.size, chunk):
        s, r = send[lo : lo + chunk], recv[lo : lo + chunk]
        flow = np.repeat(s, 2)
        node = np.column_stack([s, r]).ravel()
        phase = np.tile(np.array([0, 2], dtype=np.int64), s.size)
        yield _events(b"p2p", b"p2p", flow, phase, node, track)
    inst, members, phase = _members(graph, nodes)
    for lo in range(0, inst.size, chunk):
        i = inst[lo : lo + chunk]
        name = _COLL[graph.inst_coll[i]]
        yield _events(
            name, b"collective", i, phase[lo : lo + chunk], members[lo : lo + chunk], track
        )
