"""The DAG as GraphML: every node and edge, scalar attributes only.

``networkx.read_graphml("dag.graphml")`` loads it as a directed multigraph keyed by the
readable node ids (``r17/s1/L5/mb2/attn.qkv``). Every attribute is declared with its
GraphML type (:data:`NODE_KEYS`); lists are not GraphML values, so ``shape`` is the
string ``"[16,64]"``. A collective's ``coll``/``inst``/``group`` and a send's or recv's
``peer`` appear on those nodes only; ``start_s``/``duration_s`` only with an estimate.
The attributes mean what the DAG JSON's do (docs/json-format.md). Format:
http://graphml.graphdrawing.org/specification.html

Rows are built column by column (:mod:`dagen.graph.text`) and streamed in chunks, so no
Python object exists per node.

Example:
    >>> import io, networkx as nx
    >>> buf = io.BytesIO()
    >>> emit(ExportContext(graph=graph), buf)  # doctest: +SKIP
    >>> nx.read_graphml(io.BytesIO(buf.getvalue())).number_of_nodes() == graph.n_nodes  # doctest: +SKIP
    True
"""

from __future__ import annotations

from typing import BinaryIO
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt

from dagen.export.base import ExportContext
from dagen.export.estimate import node_times
from dagen.export.json_ import CHUNK_ROWS
from dagen.export.nodetext import KIND_TEXT, OP_TEXT, NodeText
from dagen.graph.ir import Coll, EdgeKind, Graph, Kind, Phase
from dagen.graph.text import Bytes, Field, bytes_table, cat, fixed, istr, on_rows, strip

__all__ = ["EDGE_KEYS", "NODE_KEYS", "emit"]

NODE_KEYS = (
    ("rank", "int"), ("pool", "int"), ("host", "int"), ("replica", "int"), ("stage", "int"),
    ("layer", "int"), ("mb", "int"), ("step", "int"), ("op", "string"), ("kind", "string"),
    ("expert", "int"), ("coll", "string"), ("inst", "int"), ("group", "int"), ("peer", "int"),
    ("phase", "string"), ("shape", "string"), ("bytes", "long"), ("flops", "double"),
    ("hbm_bytes", "double"), ("start_s", "double"), ("duration_s", "double"),
)  # fmt: skip
"""Every node attribute and its GraphML type, in the order each node writes them."""

EDGE_KEYS = (("kind", "string"),)
"""Every edge attribute (key id ``e_<name>``, so it never clashes with a node key)."""

I64 = npt.NDArray[np.int64]

_COLL = bytes_table([c.label.encode() for c in Coll])
_EDGE = bytes_table([k.label.encode() for k in EdgeKind])
_PHASE = bytes_table([p.label.encode() for p in Phase])


def _data(key: str, text: Field, n: int) -> Bytes:
    return cat(f'<data key="{key}">'.encode(), text, b"</data>", n=n)


def _head(g: Graph) -> bytes:
    keys = [f'  <key id="{k}" for="node" attr.name="{k}" attr.type="{t}"/>' for k, t in NODE_KEYS]
    keys += [
        f'  <key id="e_{k}" for="edge" attr.name="{k}" attr.type="{t}"/>' for k, t in EDGE_KEYS
    ]
    keys += [
        f'  <key id="g_{k}" for="graph" attr.name="{k}" attr.type="{t}"/>'
        for k, t in (("name", "string"), ("model", "string"), ("world", "int"))
    ]
    graph = [
        '  <graph id="G" edgedefault="directed">',
        f'    <data key="g_name">{escape(g.name)}</data>',
        f'    <data key="g_model">{escape(g.model.name)}</data>',
        f'    <data key="g_world">{g.world}</data>',
    ]
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
    return "\n".join([xml, *keys, *graph, ""]).encode()


def _shape_table(g: Graph) -> Bytes:
    text = [("[" + ",".join(str(d) for d in s) + "]").encode() for s in g.tmpl_shape]
    return bytes_table([b'<data key="shape">' + t + b"</data>" for t in text])


class _Rows:
    """GraphML text of node and edge rows."""

    def __init__(self, ctx: ExportContext) -> None:
        g = self.g = ctx.graph
        self.text, self.shapes = NodeText(g), _shape_table(g)
        self.times = node_times(ctx.estimate, g.n_nodes)

    def _comm(self, idx: I64) -> list[Field]:
        g, n = self.g, idx.size
        kind, inst, aux = g.kind[idx], g.inst[idx], g.aux[idx]
        coll = np.flatnonzero(kind == Kind.COLLECTIVE)
        p2p = np.flatnonzero((kind == Kind.SEND) | (kind == Kind.RECV))
        fields: list[Field] = []
        if coll.size:
            i = inst[coll]
            fields.append(on_rows(n, coll, _data("coll", _COLL[g.inst_coll[i]], coll.size)))
            fields.append(on_rows(n, coll, _data("inst", istr(i), coll.size)))
            fields.append(on_rows(n, coll, _data("group", istr(aux[coll]), coll.size)))
        if p2p.size:
            fields.append(on_rows(n, p2p, _data("peer", istr(aux[p2p]), p2p.size)))
        return fields

    def nodes(self, idx: I64) -> bytes:
        g, n, t = self.g, idx.size, self.g.ranks
        rank, tmpl = g.rank[idx], g.tmpl[idx]
        fields: list[Field] = [b'    <node id="', *self.text.id_fields(idx), b'">']
        ints: list[tuple[str, npt.NDArray[np.integer]]] = [
            ("rank", rank), ("pool", t.pool[rank]), ("host", t.host[rank]),
            ("replica", t.replica[rank]), ("stage", t.stage[rank]), ("layer", g.layer[idx]),
            ("mb", g.mb[idx]), ("step", g.step[idx]),
        ]  # fmt: skip
        fields += [_data(k, istr(v), n) for k, v in ints]
        fields += [_data("op", OP_TEXT[g.op[idx]], n), _data("kind", KIND_TEXT[g.kind[idx]], n)]
        fields += [_data("expert", istr(g.expert[idx]), n), *self._comm(idx)]
        fields += [_data("phase", _PHASE[g.tmpl_phase[tmpl]], n), self.shapes[tmpl]]
        fields += [_data("bytes", istr(g.tmpl_bytes[tmpl]), n)]
        fields += [_data("flops", fixed(g.tmpl_flops[tmpl]), n)]
        fields += [_data("hbm_bytes", fixed(g.tmpl_hbm[tmpl]), n)]
        if self.times is not None:
            start, duration = self.times
            fields += [_data("start_s", fixed(start[idx]), n)]
            fields += [_data("duration_s", fixed(duration[idx]), n)]
        return strip(cat(*fields, b"</node>\n", n=n))

    def edges(self, idx: I64) -> bytes:
        g = self.g
        rows = cat(
            b'    <edge source="', *self.text.id_fields(g.src[idx].astype(np.int64)),
            b'" target="', *self.text.id_fields(g.dst[idx].astype(np.int64)),
            b'"><data key="e_kind">', _EDGE[g.ekind[idx]], b"</data></edge>\n",
            n=idx.size,
        )  # fmt: skip
        return strip(rows)


def emit(ctx: ExportContext, out: BinaryIO) -> None:
    """Write ``ctx.graph`` as a GraphML document to ``out``."""
    g = ctx.graph
    out.write(_head(g))
    rows = _Rows(ctx)
    total = g.n_nodes + g.n_edges
    for lo in range(0, g.n_nodes, CHUNK_ROWS):
        out.write(rows.nodes(np.arange(lo, min(g.n_nodes, lo + CHUNK_ROWS), dtype=np.int64)))
        ctx.tick(min(g.n_nodes, lo + CHUNK_ROWS), total)
    for lo in range(0, g.n_edges, CHUNK_ROWS):
        out.write(rows.edges(np.arange(lo, min(g.n_edges, lo + CHUNK_ROWS), dtype=np.int64)))
        ctx.tick(g.n_nodes + min(g.n_edges, lo + CHUNK_ROWS), total)
    out.write(b"  </graph>\n</graphml>\n")
