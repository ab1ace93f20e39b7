"""The DAG as Parquet tables (docs/parquet-format.md): nodes, edges, collectives, groups.

``-o dag.parquet`` writes the node table alone, each node carrying ``deps``, the ids of
the nodes whose edges enter it; ``-o dir/ --to parquet`` writes ``nodes.parquet`` (the
same table), ``edges.parquet``, ``collectives.parquet``, ``groups.parquet`` and
``index.json`` (the DAG JSON's header). Ids are integers: a node's ``id`` is its row,
and an edge's ``src``/``dst``, a node's ``inst`` and ``group`` point at rows of the other
tables.

Every table has an explicit schema (:data:`NODE_SCHEMA` …), so every column is present
in every row whatever the first rows hold: a value that does not apply is null (``coll``,
``inst``, ``group``, ``peer`` and, without an estimate, ``start_s``/``duration_s``) or
the IR's sentinel ``-1`` (``layer`` outside layers, ``expert`` of a non-routed op).
Labels (``op``, ``kind``, ``coll``, …) are dictionary-encoded strings.

The node table is written straight from the IR's columns, :data:`BATCH_ROWS` rows per
record batch and :data:`GROUP_BATCHES` batches per row group, with no Python object per node: readable ids are built column by column
(:mod:`dagen.graph.text`), list columns from offsets.

Example:
    >>> import io, pyarrow.parquet as pq
    >>> buf = io.BytesIO()
    >>> emit(ExportContext(graph=graph), buf)  # doctest: +SKIP
    >>> pq.read_table(buf).num_rows == graph.n_nodes  # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from dagen.export.base import ExportContext
from dagen.export.estimate import node_times
from dagen.export.json_ import header
from dagen.export.nodetext import NodeText
from dagen.export.outputs import OutDir
from dagen.export.summary import plain
from dagen.graph.ir import OP_LABELS, Coll, EdgeKind, Graph, GroupKind, Kind, Phase
from dagen.graph.text import cat, strip

__all__ = [
    "BATCH_ROWS",
    "COLLECTIVE_SCHEMA",
    "EDGE_SCHEMA",
    "FORMAT",
    "GROUP_SCHEMA",
    "NODE_SCHEMA",
    "VERSION",
    "emit",
    "emit_dir",
]

log = logging.getLogger(__name__)

FORMAT = "dagen.parquet"
"""Value of the ``format`` key of every table's ``dagen`` metadata."""
VERSION = 1
"""Layout version; bumped when a column changes meaning or disappears."""

BATCH_ROWS = 1 << 16
"""Rows per record batch (the text of readable ids is built fastest in chunks this size)."""
GROUP_BATCHES = 4
"""Record batches per row group (262,144 rows): the writer holds one row group, about
50 MB, before it is encoded."""

COMPRESSION = "zstd"
"""Column compression, at level 1. Measured on a 1 M-row node table (2 shared cores):
zstd 5.1 MB in about the time snappy takes for 16.9 MB; the write is CPU-bound either
way (docs/BENCHMARKS.md, "Parquet export")."""

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_LABEL = pa.dictionary(pa.int32(), pa.string())

_DICTIONARY = frozenset(
    {"op", "kind", "coll", "phase", "pool", "stage", "layer", "mb", "step", "expert", "shape",
     "bytes", "flops", "hbm_bytes", "group_kind"}
)  # fmt: skip
"""Columns Parquet dictionary-encodes: labels and the few-valued template figures (a
dictionary of unique values, the ids, would only cost time)."""

_NO_STATISTICS = frozenset(
    {"name", "shape", "deps", "flops", "hbm_bytes", "start_s", "duration_s", "members"}
)
"""Columns written without min/max statistics: no reader filters on them, and they are
the costly ones (about a third of the write). The others keep them, so a reader that
filters on ``rank`` or ``layer`` skips row groups."""

_DELTA = frozenset({"id", "src", "dst"})
"""Ascending or nearly ascending integer columns: delta-encoded (a quarter of the bytes)."""


def _labels(values: Sequence[str]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


_OPS = _labels(OP_LABELS)
_KINDS = _labels([k.label for k in Kind])
_COLLS = _labels([c.label for c in Coll])
_EDGES = _labels([k.label for k in EdgeKind])
_GROUPS = _labels([k.label for k in GroupKind])
_PHASES = _labels([p.label for p in Phase])

NODE_SCHEMA = pa.schema(
    [
        ("id", pa.int64()), ("name", pa.string()), ("rank", pa.int32()), ("pool", pa.int16()),
        ("host", pa.int32()), ("replica", pa.int32()), ("stage", pa.int32()),
        ("layer", pa.int16()), ("mb", pa.int16()), ("step", pa.int16()), ("op", _LABEL),
        ("kind", _LABEL), ("expert", pa.int16()), ("coll", _LABEL), ("inst", pa.int32()),
        ("group", pa.int32()), ("peer", pa.int32()), ("phase", _LABEL),
        ("shape", pa.list_(pa.int64())), ("bytes", pa.int64()), ("flops", pa.float64()),
        ("hbm_bytes", pa.float64()), ("start_s", pa.float64()), ("duration_s", pa.float64()),
        ("deps", pa.list_(pa.int64())),
    ]
)  # fmt: skip
"""One row per node, ``id`` = row (program order: rank-major, then issue order)."""

EDGE_SCHEMA = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("kind", _LABEL)])
"""One row per edge: node ids and the edge kind (``data``, ``order``, ``p2p``)."""

COLLECTIVE_SCHEMA = pa.schema(
    [("id", pa.int32()), ("coll", _LABEL), ("group", pa.int32()), ("group_kind", _LABEL),
     ("size", pa.int32())]
)  # fmt: skip
"""One row per collective instance: its collective, group, the group's kind and size."""

GROUP_SCHEMA = pa.schema(
    [("id", pa.int32()), ("kind", _LABEL), ("size", pa.int32()), ("members", pa.list_(pa.int32()))]
)
"""One row per process group: the dimension it spans and its member ranks, ascending."""


def _coded(
    codes: npt.NDArray[Any], labels: pa.Array, valid: npt.NDArray[np.bool_] | None = None
) -> pa.Array:
    indices = pa.array(codes.astype(np.int32), mask=None if valid is None else ~valid)
    return pa.DictionaryArray.from_arrays(indices, labels)


def _nullable(values: npt.NDArray[Any], valid: npt.NDArray[np.bool_], typ: pa.DataType) -> pa.Array:
    return pa.array(values, type=typ, mask=~valid)


def _names(text: NodeText, idx: I64) -> pa.Array:
    """The readable ids of nodes ``idx`` as an Arrow string array, built from buffers.

    Each id is three parts, each gathered from a small table of distinct texts
    (:meth:`dagen.graph.ids.IdText.id_tables`); a row's length is the sum of its parts'
    lengths, and the NUL padding is dropped from the whole buffer in one pass.
    """
    parts = text.id_tables(idx)
    lengths = np.zeros(idx.size, dtype=np.int64)
    for table, inverse in parts:
        widths = [len(t.replace(b"\0", b"")) for t in table.tolist()]  # per distinct text
        lengths += np.array(widths, dtype=np.int64)[inverse]
    data = strip(cat(*(table[inverse] for table, inverse in parts), n=idx.size))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.StringArray.from_buffers(idx.size, pa.py_buffer(offsets), pa.py_buffer(data))


def _lists(offsets: I64, values: npt.NDArray[Any], typ: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, type=typ))


class _Shapes:
    """The template shapes as CSR, gathered per node into a list column."""

    def __init__(self, g: Graph) -> None:
        lens = np.array([len(s) for s in g.tmpl_shape], dtype=np.int64)
        self.off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        flat = [d for s in g.tmpl_shape for d in s]
        self.values = np.array(flat, dtype=np.int64)
        self.lens = lens

    def column(self, tmpl: npt.NDArray[np.int32]) -> pa.Array:
        lens = self.lens[tmpl]
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        within = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1], lens)
        return _lists(offsets, self.values[np.repeat(self.off[tmpl], lens) + within], pa.int64())


class _Deps:
    """Every node's entering edges' sources, ascending: the edges sorted by (dst, src)."""

    def __init__(self, g: Graph) -> None:
        # One int64 key per edge, (dst, src), sorted in place: 12 bytes per edge at the
        # peak, against 24 for an argsort and a gather.
        key = g.dst.astype(np.int64)
        key <<= np.int64(32)
        key |= g.src.astype(np.int64)
        key.sort()
        key &= np.int64(0xFFFFFFFF)
        self.src = key.astype(np.int32)  # int32 until a batch is cut
        del key
        wide = np.int64 if g.n_edges >= 2**31 else np.int32
        self.off = np.zeros(g.n_nodes + 1, dtype=wide)
        np.cumsum(np.bincount(g.dst, minlength=g.n_nodes), out=self.off[1:])

    def column(self, lo: int, hi: int) -> pa.Array:
        a, b = int(self.off[lo]), int(self.off[hi])
        offsets = self.off[lo : hi + 1].astype(np.int64) - a
        return _lists(offsets, self.src[a:b].astype(np.int64), pa.int64())


class _NodeBatches:
    """The node table, one record batch at a time."""

    def __init__(self, ctx: ExportContext) -> None:
        g = self.g = ctx.graph
        self.text, self.shapes, self.deps = NodeText(g), _Shapes(g), _Deps(g)
        self.times = node_times(ctx.estimate, g.n_nodes)

    def _rank_columns(self, rank: npt.NDArray[np.int32]) -> list[pa.Array]:
        t = self.g.ranks
        cols = (t.pool[rank], t.host[rank], t.replica[rank], t.stage[rank])
        return [pa.array(c) for c in cols]

    def _comm_columns(self, lo: int, hi: int) -> list[pa.Array]:
        g = self.g
        kind, inst, aux = g.kind[lo:hi], g.inst[lo:hi], g.aux[lo:hi]
        coll = kind == Kind.COLLECTIVE
        p2p = (kind == Kind.SEND) | (kind == Kind.RECV)
        # A node without an instance reads code 0 under a null: the mask hides it.
        codes = g.inst_coll[np.where(coll, inst, 0)] if g.n_inst else np.zeros_like(inst)
        return [
            _coded(codes, _COLLS, coll),
            _nullable(inst, coll, pa.int32()),
            _nullable(aux, coll, pa.int32()),
            _nullable(aux, p2p, pa.int32()),
        ]

    def _time_columns(self, lo: int, hi: int) -> list[pa.Array]:
        if self.times is None:
            return [pa.nulls(hi - lo, pa.float64()), pa.nulls(hi - lo, pa.float64())]
        start, duration = self.times
        return [pa.array(start[lo:hi]), pa.array(duration[lo:hi])]

    def batch(self, lo: int, hi: int) -> pa.RecordBatch:
        g, idx = self.g, np.arange(lo, hi, dtype=np.int64)
        tmpl = g.tmpl[lo:hi]
        name = _names(self.text, idx)
        cols = [pa.array(idx), name, pa.array(g.rank[lo:hi]), *self._rank_columns(g.rank[lo:hi])]
        cols += [pa.array(g.layer[lo:hi]), pa.array(g.mb[lo:hi]), pa.array(g.step[lo:hi])]
        cols += [_coded(g.op[lo:hi], _OPS), _coded(g.kind[lo:hi], _KINDS)]
        cols += [pa.array(g.expert[lo:hi]), *self._comm_columns(lo, hi)]
        cols += [_coded(g.tmpl_phase[tmpl], _PHASES), self.shapes.column(tmpl)]
        cols += [pa.array(g.tmpl_bytes[tmpl]), pa.array(g.tmpl_flops[tmpl])]
        cols += [pa.array(g.tmpl_hbm[tmpl]), *self._time_columns(lo, hi), self.deps.column(lo, hi)]
        return pa.RecordBatch.from_arrays(cols, schema=NODE_SCHEMA)


def _metadata(ctx: ExportContext, table: str) -> dict[bytes, bytes]:
    """The ``dagen`` key of a table's schema metadata: layout, table name, graph counts."""
    head = header(ctx)
    doc = {"format": FORMAT, "version": VERSION, "table": table, "graph": head["graph"]}
    return {b"dagen": orjson.dumps(plain(doc))}


def _writer(ctx: ExportContext, out: BinaryIO, schema: pa.Schema, table: str) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        out,
        schema.with_metadata(_metadata(ctx, table)),
        compression=COMPRESSION,
        compression_level=1,
        use_dictionary=[f.name for f in schema if f.name in _DICTIONARY],
        write_statistics=[f.name for f in schema if f.name not in _NO_STATISTICS],
        column_encoding={f.name: "DELTA_BINARY_PACKED" for f in schema if f.name in _DELTA},
    )


def _write_nodes(ctx: ExportContext, out: BinaryIO) -> None:
    g = ctx.graph
    batches = _NodeBatches(ctx)
    rows = BATCH_ROWS * GROUP_BATCHES
    with _writer(ctx, out, NODE_SCHEMA, "nodes") as w:
        if g.n_nodes == 0:
            w.write_table(NODE_SCHEMA.empty_table())
        for lo in range(0, g.n_nodes, rows):
            hi = min(g.n_nodes, lo + rows)
            group = [batches.batch(a, min(hi, a + BATCH_ROWS)) for a in range(lo, hi, BATCH_ROWS)]
            w.write_table(pa.Table.from_batches(group, NODE_SCHEMA), row_group_size=rows)
            ctx.tick(hi, g.n_nodes)
    log.debug("parquet: %d nodes", g.n_nodes)


def _edge_table(g: Graph) -> pa.Table:
    cols = [pa.array(g.src.astype(np.int64)), pa.array(g.dst.astype(np.int64))]
    return pa.Table.from_arrays([*cols, _coded(g.ekind, _EDGES)], schema=EDGE_SCHEMA)


def _collective_table(g: Graph) -> pa.Table:
    group = g.inst_group
    sizes = np.diff(g.group_offsets).astype(np.int32)
    cols = [
        pa.array(np.arange(g.n_inst, dtype=np.int32)),
        _coded(g.inst_coll, _COLLS),
        pa.array(group),
        _coded(g.group_kind[group], _GROUPS),
        pa.array(sizes[group]),
    ]
    return pa.Table.from_arrays(cols, schema=COLLECTIVE_SCHEMA)


def _group_table(g: Graph) -> pa.Table:
    n = int(g.group_kind.shape[0])
    sizes = np.diff(g.group_offsets).astype(np.int32)
    cols = [
        pa.array(np.arange(n, dtype=np.int32)),
        _coded(g.group_kind, _GROUPS),
        pa.array(sizes),
        _lists(g.group_offsets, g.group_members, pa.int32()),
    ]
    return pa.Table.from_arrays(cols, schema=GROUP_SCHEMA)


def _write_table(ctx: ExportContext, out: BinaryIO, table: pa.Table, name: str) -> None:
    with _writer(ctx, out, table.schema, name) as w:
        w.write_table(table, row_group_size=BATCH_ROWS * GROUP_BATCHES)


def emit(ctx: ExportContext, out: BinaryIO) -> None:
    """Write the node table (with ``deps``) of ``ctx.graph`` as one Parquet file."""
    _write_nodes(ctx, out)


def emit_dir(ctx: ExportContext, out: OutDir) -> None:
    """Write the four tables and ``index.json`` into a directory."""
    g = ctx.graph
    with out.open("nodes.parquet") as fh:
        _write_nodes(ctx, fh)
    tables = {
        "edges": _edge_table(g),
        "collectives": _collective_table(g),
        "groups": _group_table(g),
    }
    for name, table in tables.items():
        with out.open(f"{name}.parquet") as fh:
            _write_table(ctx, fh, table, name)
    files = [f"{t}.parquet" for t in ("nodes", *tables)]
    index = header(ctx) | {"format": FORMAT, "version": VERSION, "files": files}
    with out.open("index.json") as fh:
        fh.write(orjson.dumps(plain(index), option=orjson.OPT_INDENT_2) + b"\n")
