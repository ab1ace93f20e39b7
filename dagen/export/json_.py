"""The DAG as JSON: a documented, versioned node-link document (docs/json-format.md).

The document is networkx's node-link layout (``directed``, ``multigraph``, ``graph``,
``nodes``, ``edges``), so ``networkx.node_link_graph(doc)`` loads it, plus dagen's own
keys: the plan, the mesh, findings, the estimate, groups and collective instances.
``format`` and ``version`` name the layout; a reader checks them first.

Nodes and edges are streamed in chunks whose text is built column by column
(:mod:`dagen.export.rows`), so memory stays flat and no loop runs per node.

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
from dagen.export.rows import Bytes, Field, bytes_table, cat, fixed, istr, keyed, strip
from dagen.export.schema import FORMAT, VERSION, dag_schema
from dagen.export.summary import graph_totals, mesh_summary, plain, plan_summary
from dagen.graph.ir import OP_LABELS, Coll, EdgeKind, Graph, GroupKind, Kind

__all__ = ["FORMAT", "VERSION", "dag_schema", "emit", "emit_gz", "header"]

log = logging.getLogger(__name__)

CHUNK_ROWS = 1 << 14
"""Nodes or edges turned into text at a time: bounds the exporter's extra memory."""

GZIP_LEVEL = 3
"""zlib level of ``.json.gz``. Measured on a 46 MB document: level 3 gives 2.6 MB at
~200 MB/s; level 9 gives 1.9 MB but ten times slower."""

_OP = bytes_table([label.encode() for label in OP_LABELS])
_KIND = bytes_table([k.label.encode() for k in Kind])
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
    _array(out, "groups", _group_chunks(g))
    out.write(_SEP)
    _array(out, "collectives", _inst_chunks(g))
    out.write(_SEP)
    _array(out, "nodes", _node_chunks(g, times))
    out.write(_SEP)
    _array(out, "edges", _edge_chunks(g))
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
    """Every key of the document before the streamed arrays, in document order."""
    g = ctx.graph
    plan = g.plan
    return {
        "format": FORMAT,
        "version": VERSION,
        "directed": True,
        "multigraph": True,
        "graph": {"name": plan.name, "model": plan.model.name, "world": g.mesh.world}
        | graph_totals(g),
        "plan": plan_summary(plan),
        "mesh": mesh_summary(g.mesh),
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


def _spans(n: int) -> Iterator[I64]:
    for start in range(0, n, CHUNK_ROWS):
        yield np.arange(start, min(n, start + CHUNK_ROWS), dtype=np.int64)


def _group_chunks(g: Graph) -> Iterator[bytes]:
    # Loops per group, not per node: groups are few (at most a few per rank).
    n = int(g.group_kind.shape[0])
    for idx in _spans(n):
        yield b"".join(
            _SEP
            + _dumps(
                {"id": i, "kind": GroupKind(int(g.group_kind[i])).label, "members": g.group(i)}
            )
            for i in idx.tolist()
        )


def _inst_chunks(g: Graph) -> Iterator[bytes]:
    for idx in _spans(g.n_inst):
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


class _Keys:
    """Small-integer keys that several node columns share, and their text.

    A chunk of nodes covers few ranks, few (layer, micro-batch, step) triples and few
    (op, kind, expert) triples; each distinct key is rendered once (:func:`keyed`).
    """

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.n_mb = int(g.mb.max()) + 1 if g.n_nodes else 1
        self.n_step = int(g.step.max()) + 1 if g.n_nodes else 1
        self.n_expert = int(g.expert.max()) + 2 if g.n_nodes else 1
        self.decode = g.plan.workload.decode_steps > 1

    def _lms(self, idx: I64) -> I64:
        g = self.g
        layer = g.layer[idx].astype(np.int64) + 1
        return (layer * self.n_mb + g.mb[idx]) * self.n_step + g.step[idx]

    def _split_lms(self, key: I64) -> tuple[I64, I64, I64]:
        rest, step = np.divmod(key, self.n_step)
        layer, mb = np.divmod(rest, self.n_mb)
        return layer - 1, mb, step

    def _oke(self, idx: I64) -> I64:
        g = self.g
        op_kind = g.op[idx].astype(np.int64) * len(Kind) + g.kind[idx]
        return op_kind * self.n_expert + g.expert[idx] + 1

    def _split_oke(self, key: I64) -> tuple[I64, I64, I64]:
        op_kind, expert = np.divmod(key, self.n_expert)
        op, kind = np.divmod(op_kind, len(Kind))
        return op, kind, expert - 1

    def _rank_id(self, rank: I64) -> Bytes:
        return cat(b"r", istr(rank), b"/s", istr(self.g.mesh.stage[rank]), b"/", n=rank.size)

    def _lms_id(self, key: I64) -> Bytes:
        layer, mb, step = self._split_lms(key)
        n = key.size
        in_layer = cat(b"L", istr(layer), b"/", n=n)
        in_layer[layer < 0] = b""
        parts: list[Field] = [b"t", istr(step), b"/"] if self.decode else []
        return cat(*parts, in_layer, b"mb", istr(mb), b"/", n=n)

    def _oke_id(self, key: I64) -> Bytes:
        op, _, expert = self._split_oke(key)
        routed = cat(b".e", istr(expert), n=key.size)
        routed[expert < 0] = b""
        return cat(_OP[op], routed, n=key.size)

    def id_fields(self, idx: I64) -> list[Field]:
        """Fields spelling :meth:`Graph.node_id` of nodes ``idx`` (``r17/s1/L5/mb2/attn.qkv``)."""
        return [
            keyed(self.g.rank[idx], self._rank_id),
            keyed(self._lms(idx), self._lms_id),
            keyed(self._oke(idx), self._oke_id),
        ]

    def _rank_attrs(self, rank: I64) -> Bytes:
        mesh = self.g.mesh
        return cat(
            b',"rank":',
            istr(rank),
            b',"host":',
            istr(mesh.host[rank]),
            b',"replica":',
            istr(mesh.replica[rank]),
            b',"stage":',
            istr(mesh.stage[rank]),
            n=rank.size,
        )

    def _lms_attrs(self, key: I64) -> Bytes:
        layer, mb, step = self._split_lms(key)
        return cat(
            b',"layer":', istr(layer), b',"mb":', istr(mb), b',"step":', istr(step), n=key.size
        )

    def _oke_attrs(self, key: I64) -> Bytes:
        op, kind, expert = self._split_oke(key)
        return cat(
            b',"op":"',
            _OP[op],
            b'","kind":"',
            _KIND[kind],
            b'","expert":',
            istr(expert),
            n=key.size,
        )

    def attr_fields(self, idx: I64) -> list[Field]:
        """Fields ``,"rank":…`` through ``,"expert":…`` of nodes ``idx``."""
        return [
            keyed(self.g.rank[idx], self._rank_attrs),
            keyed(self._lms(idx), self._lms_attrs),
            keyed(self._oke(idx), self._oke_attrs),
        ]


def _template_table(g: Graph) -> Bytes:
    """Per template: ``,"shape":[…],"bytes":…,"flops":…`` (a small side table)."""
    rows = [
        b',"shape":'
        + _dumps(list(shape))
        + b',"bytes":'
        + _dumps(int(nbytes))
        + b',"flops":'
        + _dumps(float(flops))
        for shape, nbytes, flops in zip(
            g.tmpl_shape, g.tmpl_bytes.tolist(), g.tmpl_flops.tolist(), strict=True
        )
    ]
    return bytes_table(rows)


def _on_rows(n: int, rows: I64, text: Bytes) -> Bytes:
    """``text`` on ``rows`` of an ``n``-row column, nothing elsewhere."""
    out: Bytes = np.zeros(n, dtype=text.dtype)
    out[rows] = text
    return out


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

        fields.append(_on_rows(n, coll, keyed(key, render)))
    p2p = np.flatnonzero((kind == Kind.SEND) | (kind == Kind.RECV))
    if p2p.size:
        peer = g.aux[idx[p2p]]
        fields.append(_on_rows(n, p2p, cat(b',"peer":', istr(peer), n=p2p.size)))
    return fields


def _node_chunks(g: Graph, times: tuple[F64, F64] | None) -> Iterator[bytes]:
    templates = _template_table(g)
    keys = _Keys(g)
    for idx in _spans(g.n_nodes):
        fields: list[Field] = [b',\n{"id":"', *keys.id_fields(idx), b'"', *keys.attr_fields(idx)]
        fields += _comm_fields(g, idx)
        fields.append(templates[g.tmpl[idx]])
        if times is not None:
            start, duration = times
            fields += [b',"start_s":', fixed(start[idx]), b',"duration_s":', fixed(duration[idx])]
        fields.append(b"}")
        yield strip(cat(*fields, n=idx.size))


def _edge_chunks(g: Graph) -> Iterator[bytes]:
    keys = _Keys(g)
    for idx in _spans(g.n_edges):
        rows = cat(
            b',\n{"source":"',
            *keys.id_fields(g.src[idx].astype(np.int64)),
            b'","target":"',
            *keys.id_fields(g.dst[idx].astype(np.int64)),
            b'","kind":"',
            _EDGE[g.ekind[idx]],
            b'"}',
            n=idx.size,
        )
        yield strip(rows)
