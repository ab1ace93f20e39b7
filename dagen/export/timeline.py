"""The simulated schedule as a Chrome trace-event file (opens in Perfetto and chrome://tracing).

One process per rank (``pid`` = rank, named ``rank 5 · host 0 · stage 1``), two threads
per process (``tid`` 0 compute, 1 communication), one complete event (``"ph": "X"``) per
node with ``ts``/``dur`` in microseconds and the node's attributes in ``args``. Metadata
events (``"ph": "M"``) name and order the tracks. Events of a track are written in
time order. Format: the Trace Event Format document ("JSON Object Format", complete
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
from dagen.export.base import select_nodes
from dagen.graph.ir import OP_LABELS, Graph, Kind

__all__ = ["CHUNK", "STREAM_NAMES", "emit"]

CHUNK = 20_000
"""Events serialised per write."""

STREAM_NAMES = ("compute", "comm")
"""Thread names of the two streams (``tid`` 0 and 1)."""

_KINDS = tuple(k.label for k in Kind)

I64 = npt.NDArray[np.int64]


def _metadata(graph: Graph, ranks: I64) -> list[dict[str, Any]]:
    mesh = graph.mesh
    events: list[dict[str, Any]] = []
    for r in ranks.tolist():
        name = f"rank {r} · host {int(mesh.host[r])} · stage {int(mesh.stage[r])}"
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


_COLUMNS = ("rank", "layer", "mb", "step", "op", "kind", "expert", "inst", "aux", "tmpl")


def _node_id(g: dict[str, int], label: str, stage: int, with_step: bool) -> str:
    """:meth:`Graph.node_id` from plain ints (the same text, without numpy scalars)."""
    parts = [f"r{g['rank']}", f"s{stage}"]
    if with_step:
        parts.append(f"t{g['step']}")
    if g["layer"] >= 0:
        parts.append(f"L{g['layer']}")
    parts.append(f"mb{g['mb']}")
    parts.append(f"{label}.e{g['expert']}" if g["expert"] >= 0 else label)
    return "/".join(parts)


def _args(g: dict[str, int], node_id: str, nbytes: int, flops: float, hot: bool) -> dict[str, Any]:
    args: dict[str, Any] = {
        "id": node_id, "layer": g["layer"], "mb": g["mb"], "step": g["step"],
        "bytes": nbytes, "flops": flops,
    }  # fmt: skip
    if g["inst"] >= 0:
        args["inst"] = g["inst"]
    elif g["aux"] >= 0:
        args["peer"] = g["aux"]
    if hot:
        args["critical"] = True
    return args


def _batch(
    graph: Graph, est: Any, idx: I64, critical: npt.NDArray[np.bool_]
) -> list[dict[str, Any]]:
    """Events of the nodes ``idx`` (plain Python values, one list per column)."""
    cols = {c: getattr(graph, c)[idx].tolist() for c in _COLUMNS}
    start = (np.asarray(est.start_s)[idx] * 1e6).round(3).tolist()
    dur = (np.asarray(est.duration_s)[idx] * 1e6).round(3).tolist()
    tid = np.asarray(est.stream)[idx].tolist()
    hot = critical[idx].tolist()
    stage = graph.mesh.stage.tolist()
    nbytes, flops = graph.tmpl_bytes.tolist(), graph.tmpl_flops.tolist()
    with_step = graph.plan.workload.decode_steps > 1
    out = []
    for j in range(len(start)):
        g = {c: cols[c][j] for c in _COLUMNS}
        label = OP_LABELS[g["op"]]
        node_id = _node_id(g, label, stage[g["rank"]], with_step)
        out.append({
            "name": f"{label}.e{g['expert']}" if g["expert"] >= 0 else label,
            "cat": _KINDS[g["kind"]], "ph": "X", "pid": g["rank"], "tid": tid[j],
            "ts": start[j], "dur": dur[j],
            "args": _args(g, node_id, nbytes[g["tmpl"]], flops[g["tmpl"]], hot[j]),
        })  # fmt: skip
    return out


def _order(graph: Graph, est: Any, nodes: I64) -> I64:
    """Nodes by rank, stream, start time (ties in node order)."""
    stream = np.asarray(est.stream)[nodes]
    start = np.asarray(est.start_s, dtype=np.float64)[nodes]
    result: I64 = nodes[np.lexsort((nodes, start, stream, graph.rank[nodes]))]
    return result


def _chunks(graph: Graph, est: Any, nodes: I64, first: list[dict[str, Any]]) -> Iterator[bytes]:
    if first:
        yield orjson.dumps(first)[1:-1]
    critical = np.zeros(graph.n_nodes, dtype=np.bool_)
    critical[np.asarray(est.critical_path, dtype=np.int64)] = True
    order = _order(graph, est, nodes)
    for lo in range(0, order.shape[0], CHUNK):
        yield orjson.dumps(_batch(graph, est, order[lo : lo + CHUNK], critical))[1:-1]


def _check(ctx: Any) -> Any:
    est = getattr(ctx, "estimate", None)
    if est is None:
        raise ExportError(
            "timeline: the context has no simulated schedule (estimate); expected one from "
            "dagen.cost.estimate. Fix: export after estimating (do not pass --no-simulate), "
            "and make sure the plan has no errors."
        )
    n = ctx.graph.n_nodes
    if np.shape(est.start_s) != (n,) or np.shape(est.duration_s) != (n,):
        raise ExportError(
            f"timeline: the estimate times {np.shape(est.start_s)} do not match the graph's "
            f"{n} nodes; expected one start and duration per node. Fix: estimate this graph."
        )
    return est


def emit(ctx: Any, out: BinaryIO) -> None:
    """Write ``ctx.estimate``'s schedule of ``ctx.graph`` as Chrome trace-event JSON.

    Raises:
        ExportError: the context holds no estimate, or one for another graph.
    """
    est = _check(ctx)
    graph: Graph = ctx.graph
    nodes = select_nodes(
        graph,
        getattr(ctx, "ranks", None),
        getattr(ctx, "layers", None),
        getattr(ctx, "microbatches", None),
    ).astype(np.int64)
    ranks = np.unique(graph.rank[nodes]).astype(np.int64)
    out.write(b'{"displayTimeUnit":"ms","traceEvents":[')
    sep = b""
    for chunk in _chunks(graph, est, nodes, _metadata(graph, ranks)):
        out.write(sep + chunk)
        sep = b","
    out.write(b"]}\n")
