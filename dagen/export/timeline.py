"""The simulated schedule as a Chrome trace-event file (opens in Perfetto and chrome://tracing).

One process per rank (``pid`` = rank, named ``rank 5 · host 0 · stage 1``), two threads
per process (``tid`` 0 compute, 1 communication), one complete event (``"ph": "X"``) per
node with ``ts``/``dur`` in microseconds and the node's attributes in ``args`` (a
collective's ``coll`` and ``group`` too, a send's or recv's ``peer``). Metadata events
(``"ph": "M"``) name and order the tracks. Events of a track are written in time order;
flow events (:mod:`dagen.export.flows`) follow them, joining each send to its recv and
the members of each collective.

Times are whole nanoseconds (:func:`slice_ns`): a slice's start and end are each the
simulated time rounded to the nanosecond, and its ``dur`` is their difference, written
exactly as microseconds with three decimals. Rounding keeps order, so a slice that starts
when the previous one on its track ends starts at that slice's ``ts + dur`` exactly, never
1 ns before it. Format: the Trace Event Format document ("JSON Object Format", complete
events ``X``, metadata events ``M``), https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU

The file is written in chunks of :data:`CHUNK` events, so memory stays flat however
large the graph; the view filters of the context (ranks, layers, micro-batches) apply.

Example:
    >>> import io
    >>> buf = io.BytesIO()
    >>> emit(ExportContext(graph=graph, estimate=est), buf)  # doctest: +SKIP
    >>> json.loads(buf.getvalue())["traceEvents"][0]["ph"]  # doctest: +SKIP
    'M'
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import orjson

from dagen.errors import ExportError
from dagen.export.base import ExportContext, select_nodes
from dagen.export.flows import flow_chunks
from dagen.export.nodetext import KIND_TEXT, NodeText, template_table
from dagen.graph.ir import Coll, Graph, Kind
from dagen.graph.text import Bytes, bytes_table, cat, istr, on_rows, scaled, strip

__all__ = ["CHUNK", "STREAM_NAMES", "emit", "slice_ns"]

CHUNK = 20_000
"""Events serialised per write."""

STREAM_NAMES = ("compute", "comm")
"""Thread names of the two streams (``tid`` 0 and 1)."""

I64 = npt.NDArray[np.int64]

_COLL = bytes_table([c.label.encode() for c in Coll])


def slice_ns(est: Any) -> tuple[I64, I64]:
    """(start, duration) of every node in whole nanoseconds.

    Start and end are rounded each on its own and the duration is their difference, so
    ``start + duration`` is the rounded end exactly and slices that touch in the
    simulation touch in the trace.

    Example:
        >>> class E: start_s, duration_s = np.array([1.6e-9, 3.2e-9]), np.array([1.6e-9, 1e-9])
        >>> [a.tolist() for a in slice_ns(E)]  # rounding ts and dur each would end at 4
        [[2, 3], [1, 1]]
    """
    start_s = np.asarray(est.start_s, dtype=np.float64)
    end_s = start_s + np.asarray(est.duration_s, dtype=np.float64)
    start = np.rint(start_s * 1e9).astype(np.int64)
    end = np.maximum(np.rint(end_s * 1e9).astype(np.int64), start)
    return start, end - start


def _metadata(graph: Graph, ranks: I64) -> list[dict[str, Any]]:
    table = graph.ranks
    events: list[dict[str, Any]] = []
    for r in ranks.tolist():
        name = f"rank {r} · host {int(table.host[r])} · stage {int(table.stage[r])}"
        events.append(
            {"name": "process_name", "ph": "M", "pid": r, "tid": 0, "args": {"name": name}}
        )
        events.append(
            {"name": "process_sort_index", "ph": "M", "pid": r, "tid": 0, "args": {"sort_index": r}}
        )
        for tid, label in enumerate(STREAM_NAMES):
            events.append(
                {"name": "thread_name", "ph": "M", "pid": r, "tid": tid, "args": {"name": label}}
            )
            events.append(
                {
                    "name": "thread_sort_index",
                    "ph": "M",
                    "pid": r,
                    "tid": tid,
                    "args": {"sort_index": tid},
                }
            )
    return events


class _Times:
    """The simulated streams and integer-nanosecond times (:func:`slice_ns`)."""

    def __init__(self, est: Any) -> None:
        self.stream = np.asarray(est.stream)
        self.start, self.dur = slice_ns(est)


def _comm_args(graph: Graph, idx: I64) -> Bytes:
    """``,"coll":…,"inst":…,"group":…`` of collectives, ``,"peer":…`` of sends and recvs."""
    n = idx.size
    kind, inst, aux = graph.kind[idx], graph.inst[idx], graph.aux[idx]
    ref = np.flatnonzero(kind == Kind.COLLECTIVE)
    peer = np.flatnonzero((kind == Kind.SEND) | (kind == Kind.RECV))
    coll = cat(
        b',"coll":"', _COLL[graph.inst_coll[inst[ref]]], b'","inst":', istr(inst[ref]),
        b',"group":', istr(aux[ref]), n=ref.size,
    )  # fmt: skip
    p2p = cat(b',"peer":', istr(aux[peer]), n=peer.size)
    return cat(on_rows(n, ref, coll), on_rows(n, peer, p2p), n=n)


def _batch(
    graph: Graph,
    times: _Times,
    idx: I64,
    critical: npt.NDArray[np.bool_],
    text: NodeText,
    tmpl: Bytes,
) -> bytes:
    """Events of the nodes ``idx``, each preceded by a comma, built column by column."""
    n = idx.size
    hot = np.flatnonzero(critical[idx])
    k = text.keys(idx)
    rows = cat(
        b',{"name":"', text.name_field(k),
        b'","cat":"', KIND_TEXT[graph.kind[idx]],
        b'","ph":"X","pid":', istr(graph.rank[idx]),
        b',"tid":', istr(times.stream[idx]),
        b',"ts":', scaled(times.start[idx], digits=3),
        b',"dur":', scaled(times.dur[idx], digits=3),
        b',"args":{"id":"', *text.id_fields(idx, k),
        b'","layer":', istr(graph.layer[idx]),
        b',"mb":', istr(graph.mb[idx]),
        b',"step":', istr(graph.step[idx]),
        tmpl[graph.tmpl[idx]],
        _comm_args(graph, idx),
        on_rows(n, hot, cat(b',"critical":true', n=hot.size)),
        b"}}",
        n=n,
    )  # fmt: skip
    return strip(rows)


def _order(graph: Graph, times: _Times, nodes: I64) -> I64:
    """Nodes by rank, stream, start time (ties in node order)."""
    stream, start = times.stream[nodes], times.start[nodes]
    result: I64 = nodes[np.lexsort((nodes, start, stream, graph.rank[nodes]))]
    return result


def _chunks(ctx: ExportContext, est: Any, nodes: I64) -> Iterator[bytes]:
    """The node events, :data:`CHUNK` at a time, in track and time order; then the flows."""
    graph, times = ctx.graph, _Times(est)
    critical = np.zeros(graph.n_nodes, dtype=np.bool_)
    critical[np.asarray(est.critical_path, dtype=np.int64)] = True
    text, tmpl = NodeText(graph), template_table(graph, orjson.dumps, shape=False)
    order = _order(graph, times, nodes)
    for lo in range(0, order.shape[0], CHUNK):
        yield _batch(graph, times, order[lo : lo + CHUNK], critical, text, tmpl)
        ctx.tick(min(lo + CHUNK, order.shape[0]), order.shape[0])
    yield from flow_chunks(graph, nodes, times.stream, (times.start, times.dur), CHUNK)


def _check(ctx: ExportContext) -> Any:
    est = ctx.estimate
    if est is None:
        raise ExportError(
            "timeline: the context has no simulated schedule (estimate); expected one from "
            "dagen.cost.estimate. Fix: export after estimating (dagen.analyse with simulate=True), "
            "and make sure the plan has no errors."
        )
    n = ctx.graph.n_nodes
    if np.shape(est.start_s) != (n,) or np.shape(est.duration_s) != (n,):
        raise ExportError(
            f"timeline: the estimate times {np.shape(est.start_s)} do not match the graph's "
            f"{n} nodes; expected one start and duration per node. Fix: estimate this graph."
        )
    return est


def emit(ctx: ExportContext, out: BinaryIO) -> None:
    """Write ``ctx.estimate``'s schedule of ``ctx.graph`` as Chrome trace-event JSON.

    Raises:
        ExportError: the context holds no estimate, or one for another graph.
    """
    est = _check(ctx)
    graph: Graph = ctx.graph
    nodes = select_nodes(graph, ctx.ranks, ctx.layers, ctx.microbatches).astype(np.int64)
    ranks = np.unique(graph.rank[nodes]).astype(np.int64)
    out.write(b'{"displayTimeUnit":"ms","traceEvents":[')
    out.write(orjson.dumps(_metadata(graph, ranks))[1:-1])  # empty only when no node is
    for chunk in _chunks(ctx, est, nodes):
        out.write(chunk)
    out.write(b"]}\n")
