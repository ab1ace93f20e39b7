"""The DAG as JSON: a documented, versioned node-link document (docs/json-format.md).

The document is networkx's node-link layout (``directed``, ``multigraph``, ``graph``,
``nodes``, ``edges``), so ``networkx.node_link_graph(doc)`` loads it, plus dagen's own
keys: the plan, the mesh, findings, the estimate, groups and collective instances.
``format`` and ``version`` name the layout; a reader checks them first.

Nodes and edges are streamed in chunks whose text is built column by column
(:mod:`dagen.graph.text`), so memory stays flat and no loop runs per node.

Example:
    >>> import io, json
    >>> buf = io.BytesIO()
    >>> emit(ExportContext(graph=graph), buf)  # doctest: +SKIP
    >>> json.loads(buf.getvalue())["format"]  # doctest: +SKIP
    'dagen.dag'
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import orjson

from dagen.export.base import ExportContext
from dagen.export.estimate import estimate_summary, node_times
from dagen.export.nodetext import NodeText, template_table
from dagen.export.schema import FORMAT, VERSION, dag_schema
from dagen.export.summary import graph_totals, mesh_summary, plain
from dagen.graph.ir import Coll, EdgeKind, Graph, GroupKind, Kind
from dagen.graph.text import Bytes, Field, bytes_table, cat, fixed, istr, keyed, on_rows, strip

__all__ = ["CHUNK_ROWS", "FORMAT", "VERSION", "Rows", "dag_schema", "emit", "emit_gz", "header"]

log = logging.getLogger(__name__)

CHUNK_ROWS = 1 << 14
"""Nodes or edges turned into text at a time: bounds the exporter's extra memory."""

GZIP_LEVEL = 3
"""zlib level of ``.json.gz``. Measured on a 46 MB document: level 3 gives 2.6 MB at
~200 MB/s; level 9 gives 1.9 MB but ten times slower."""

_COLL = bytes_table([c.label.encode() for c in Coll])
_EDGE = bytes_table([k.label.encode() for k in EdgeKind])
_SEP = b",\n"

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def emit(ctx: ExportContext, out: BinaryIO) -> None:
    """Write the graph of ``ctx`` as a ``dagen.dag`` JSON document to ``out``."""
    g = ctx.graph
    out.write(b"{\n")
    for key, value in header(ctx).items():
        out.write(orjson.dumps(key) + b": " + _dumps(value) + _SEP)
    times = node_times(ctx.estimate, g.n_nodes)
    spans = _Spans(ctx, int(g.group_kind.shape[0]) + g.n_inst + g.n_nodes + g.n_edges)
    _array(out, "groups", _group_chunks(g, spans))
    out.write(_SEP)
    _array(out, "collectives", _inst_chunks(g, spans))
    out.write(_SEP)
    _array(out, "nodes", _node_chunks(g, times, spans))
    out.write(_SEP)
    _array(out, "edges", _edge_chunks(g, spans))
    out.write(b"\n}\n")
    log.debug("json: %d nodes, %d edges", g.n_nodes, g.n_edges)


def emit_gz(ctx: ExportContext, out: BinaryIO) -> None:
    """Write the JSON document gzip-compressed (``.json.gz``), byte-deterministic.

    The gzip header carries no file name and a zero timestamp, so equal graphs give
    equal bytes.
    """
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0, filename="") as z:
        emit(ctx, z)  # type: ignore[arg-type]  # GzipFile is a binary stream


def header(ctx: ExportContext) -> dict[str, Any]:
    """Every key of the document before the streamed arrays, in document order.

    A multi-pool graph's ``mesh`` is its first pool's; ``pools`` then lists every pool
    (name, phase, first rank, mesh).
    """
    g = ctx.graph
    out: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "directed": True,
        "multigraph": True,
        "graph": {"name": g.name, "model": g.model.name, "world": g.world} | graph_totals(g),
        "plan": dict(g.source),  # as built: plain data in the plan's own field order
        "mesh": mesh_summary(g.pools[0].mesh),
    }
    if len(g.pools) > 1:
        out["pools"] = [
            {"name": p.name, "phase": p.phase.label, "rank0": p.rank0, "mesh": mesh_summary(p.mesh)}
            for p in g.pools
        ]
    return out | {
        "meta": plain(g.meta),
        "findings": [plain(f.to_dict()) for f in ctx.findings],
        "estimate": estimate_summary(ctx.estimate, g),
    }


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_fallback, option=orjson.OPT_SERIALIZE_NUMPY)


def _fallback(value: Any) -> Any:
    converted = plain(value)
    if converted is value:
        return str(value)
    return converted


def _array(out: BinaryIO, key: str, chunks: Iterator[bytes]) -> None:
    """Write ``"key": [rows]``; every chunk's rows start with ``,\\n``."""
    out.write(orjson.dumps(key) + b": [\n")
    first = True
    for blob in chunks:
        if not blob:
            continue
        out.write(memoryview(blob)[len(_SEP) :] if first else blob)
        first = False
    out.write(b"\n]")


class _Spans:
    """Row ranges of :data:`CHUNK_ROWS`, counting every row written for ``ctx.tick``."""

    def __init__(self, ctx: ExportContext, total: int) -> None:
        self.ctx, self.total, self.done = ctx, total, 0

    def __call__(self, n: int) -> Iterator[I64]:
        for start in range(0, n, CHUNK_ROWS):
            idx = np.arange(start, min(n, start + CHUNK_ROWS), dtype=np.int64)
            yield idx  # resumed once the chunk is written
            self.done += idx.size
            self.ctx.tick(self.done, self.total)


def _group_chunks(g: Graph, spans: _Spans) -> Iterator[bytes]:
    # Loops per group, not per node: groups are few (at most a few per rank).
    for idx in spans(int(g.group_kind.shape[0])):
        yield b"".join(
            _SEP
            + _dumps(
                {"id": i, "kind": GroupKind(int(g.group_kind[i])).label, "members": g.group(i)}
            )
            for i in idx.tolist()
        )


def _inst_chunks(g: Graph, spans: _Spans) -> Iterator[bytes]:
    for idx in spans(g.n_inst):
        rows = cat(
            b',\n{"id":',
            istr(idx),
            b',"coll":"',
            _COLL[g.inst_coll[idx]],
            b'","group":',
            istr(g.inst_group[idx]),
            b"}",
            n=idx.size,
        )
        yield strip(rows)


def _comm_fields(g: Graph, idx: I64) -> list[Field]:
    """``,"coll":…,"inst":…,"group":…`` on collectives and ``,"peer":…`` on send/recv.

    Rendered on those rows only, each distinct (instance, group) once.
    """
    n = idx.size
    kind = g.kind[idx]
    fields: list[Field] = []
    coll = np.flatnonzero(kind == Kind.COLLECTIVE)
    if coll.size:
        n_groups = max(1, int(g.group_kind.shape[0]))
        key = g.inst[idx[coll]].astype(np.int64) * n_groups + g.aux[idx[coll]]

        def render(u: I64) -> Bytes:
            inst, group = np.divmod(u, n_groups)
            parts = (b',"coll":"', _COLL[g.inst_coll[inst]], b'","inst":', istr(inst))
            return cat(*parts, b',"group":', istr(group), n=u.size)

        fields.append(on_rows(n, coll, keyed(key, render)))
    p2p = np.flatnonzero((kind == Kind.SEND) | (kind == Kind.RECV))
    if p2p.size:
        peer = g.aux[idx[p2p]]
        fields.append(on_rows(n, p2p, cat(b',"peer":', istr(peer), n=p2p.size)))
    return fields


class Rows:
    """JSON text of node and edge rows, each row ``sep`` + object + ``end`` (``,\\n`` + object
    inside the document's arrays, object + ``\\n`` for JSON lines); the template text is
    rendered once."""

    def __init__(
        self, g: Graph, times: tuple[F64, F64] | None, sep: bytes = _SEP, end: bytes = b""
    ) -> None:
        self.g, self.times, self.sep, self.end = g, times, sep, end
        self.templates = template_table(g, _dumps)
        self.text = NodeText(g)

    def nodes(self, idx: I64) -> bytes:
        """The node objects of nodes ``idx``."""
        g, keys = self.g, self.text
        k = keys.keys(idx)
        fields: list[Field] = [self.sep + b'{"id":"', *keys.id_fields(idx, k), b'"']
        fields += keys.attr_fields(k)
        fields += _comm_fields(g, idx)
        fields.append(self.templates[g.tmpl[idx]])
        if self.times is not None:
            start, duration = self.times
            fields += [b',"start_s":', fixed(start[idx]), b',"duration_s":', fixed(duration[idx])]
        fields.append(b"}" + self.end)
        return strip(cat(*fields, n=idx.size))

    def edges(self, idx: I64) -> bytes:
        """The edge objects of edges ``idx``."""
        g, keys = self.g, self.text
        rows = cat(
            self.sep + b'{"source":"',
            *keys.id_fields(g.src[idx].astype(np.int64)),
            b'","target":"',
            *keys.id_fields(g.dst[idx].astype(np.int64)),
            b'","kind":"',
            _EDGE[g.ekind[idx]],
            b'"}' + self.end,
            n=idx.size,
        )
        return strip(rows)


def _node_chunks(g: Graph, times: tuple[F64, F64] | None, spans: _Spans) -> Iterator[bytes]:
    rows = Rows(g, times)
    for idx in spans(g.n_nodes):
        yield rows.nodes(idx)


def _edge_chunks(g: Graph, spans: _Spans) -> Iterator[bytes]:
    rows = Rows(g, None)
    for idx in spans(g.n_edges):
        yield rows.edges(idx)
