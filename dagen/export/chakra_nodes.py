"""One rank's Chakra ``Node`` messages, encoded column by column (:mod:`dagen.export.wire`).

:class:`Columns` holds what every node's message needs, for the whole graph (computed once
by :mod:`dagen.export.chakra`); :func:`encode_nodes` encodes one rank's nodes from it, in
the field order protobuf itself writes (tests parse every sample's nodes with the
``protobuf`` package and serialize them back to the same bytes).

Example:
    >>> wire.frame(encode_nodes(graph, rank_nodes, columns))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.errors import ExportError
from dagen.export import chakra_schema as et
from dagen.export import wire
from dagen.graph.ids import IdText
from dagen.graph.ir import EdgeKind, Graph, Kind
from dagen.graph.text import cat, strip

__all__ = ["Columns", "encode_nodes"]

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

_NODE = {f.name: f.number for f in et.Node.DESCRIPTOR.fields}
"""``Node`` field numbers by name, from the schema."""
_ATTR = {f.name: f.number for f in et.AttributeProto.DESCRIPTOR.fields}
"""``AttributeProto`` field numbers by name (``name`` and every ``value`` member)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Columns:
    """Per node of the graph (int64, graph order unless said otherwise)."""

    order: I64
    """Node indices rank by rank, each rank's in program order."""
    local: I64
    """Each node's id in its rank's file: its place in the rank's program order."""
    edges: I64
    """The data and order edges, by their target's place in :attr:`order`."""
    edge_at: I64
    """``edge_at[p]``: the first of :attr:`edges` whose target sits at or after ``p``."""
    node_type: I64
    start_us: I64
    duration_us: I64
    num_ops: I64
    tensor_size: I64
    comm_type: I64
    comm_size: I64
    tag: I64
    attrs: wire.Ragged
    """The ``attr`` fields of each distinct node (:func:`_attr_table`)."""
    attr_row: I64
    """Each node's row of :attr:`attrs`."""

    @classmethod
    def of(cls, g: Graph, *, order: I64, **fields: I64) -> Columns:
        """The columns, with the local ids and the edge index derived from ``order``."""
        place = np.empty(g.n_nodes, dtype=np.int64)
        place[order] = np.arange(g.n_nodes)
        ends = np.searchsorted(g.rank[order], np.arange(g.world + 1))
        local = place - ends[g.rank]
        keep = np.flatnonzero(g.ekind != EdgeKind.P2P)
        if bool(np.any(g.rank[g.src[keep]] != g.rank[g.dst[keep]])):
            raise ExportError("chakra: a data or order edge joins two ranks; a Chakra file "
                              "holds one rank. Fix: run dagen check.")  # fmt: skip
        target = place[g.dst[keep]]
        by = np.argsort(target, kind="stable")
        edge_at = np.searchsorted(target[by], np.arange(g.n_nodes + 1))
        attrs, row = _attr_table(g, fields)
        return cls(order=order, local=local, edges=keep[by], edge_at=edge_at, attrs=attrs,
                   attr_row=row, **fields)  # fmt: skip


def _deps(g: Graph, at: slice, nodes: I64, cols: Columns) -> wire.Ragged:
    """The ``data_deps`` field: every data and order edge into the node and its stream's
    previous node, each once, ascending.

    All of them are data dependencies because ASTRA-sim's feeder (mlcommons/chakra
    ``src/feeder/et_feeder.cpp``) resolves ``data_deps`` only and never reads
    ``ctrl_deps``: an order kept there would be lost."""
    k = nodes.shape[0]
    e = cols.edges[cols.edge_at[at.start] : cols.edge_at[at.stop]]
    dst, src = [cols.local[g.dst[e]]], [cols.local[g.src[e]]]
    for on_comm in (False, True):
        pos = np.flatnonzero((g.kind[nodes] != Kind.COMPUTE) == on_comm)
        dst.append(pos[1:])
        src.append(pos[:-1])
    key = np.unique(np.concatenate(dst) * k + np.concatenate(src))  # by (node, dependency)
    counts = np.bincount(key // k, minlength=k)
    return wire.packed(_NODE["data_deps"], key % k, counts)


def _attr(name: str, values: I64 | wire.Ragged, mask: Bool) -> wire.Ragged:
    """The ``attr`` field holding attribute ``name`` on the rows of ``mask``."""
    member = et.ATTR_TYPES[name]
    n = int(mask.shape[0])
    label = wire.tag(_ATTR["name"], wire.LEN) + et.varint(len(name)) + name.encode()
    if isinstance(values, wire.Ragged):
        value = wire.delimited(_ATTR[member], values, np.ones(n, dtype=np.bool_))
    else:
        value = wire.scalar(_ATTR[member], np.where(mask, values, 0), np.ones(n, dtype=np.bool_))
    return wire.delimited(_NODE["attr"], wire.concat(wire.const(label, n), value), mask)


def _attr_rows(g: Graph, nodes: I64, cols: Mapping[str, I64]) -> wire.Ragged:
    """Every node's ``attr`` fields, in order."""
    kind = g.kind[nodes]
    rank, aux = g.rank[nodes].astype(np.int64), g.aux[nodes].astype(np.int64)
    compute, coll = kind == Kind.COMPUTE, kind == Kind.COLLECTIVE
    send, recv = kind == Kind.SEND, kind == Kind.RECV
    p2p = send | recv
    pg = wire.strings([b"" if a < 0 else b"%d" % (a + 1) for a in np.where(coll, aux, -1)])
    return wire.concat(
        _attr("is_cpu_op", np.zeros(nodes.shape[0], dtype=np.int64), np.ones_like(compute)),
        _attr("num_ops", cols["num_ops"][nodes], compute),
        _attr("tensor_size", cols["tensor_size"][nodes], compute),
        _attr("comm_type", cols["comm_type"][nodes], coll),
        _attr("comm_size", cols["comm_size"][nodes], coll | p2p),
        _attr("pg_name", pg, coll),
        _attr("comm_src", np.where(send, rank, aux), p2p),
        _attr("comm_dst", np.where(send, aux, rank), p2p),
        _attr("comm_tag", cols["tag"][nodes], p2p),
    )


def _attr_table(g: Graph, cols: Mapping[str, I64]) -> tuple[wire.Ragged, I64]:
    """:func:`_attr_rows` of each distinct (kind, template, group) once for the whole graph,
    and each node's row: only sends and recvs, whose tags differ, have a row each."""
    aux = g.aux.astype(np.int64) + 1
    key = (g.tmpl.astype(np.int64) * (len(g.group_kind) + 2) + aux) * 4 + g.kind
    p2p = (g.kind == Kind.SEND) | (g.kind == Kind.RECV)
    key[p2p] = -1 - np.flatnonzero(p2p)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return _attr_rows(g, first.astype(np.int64), cols), inverse.ravel().astype(np.int64)


def _placeholder() -> wire.Ragged:
    """The one node of a rank with no work (ASTRA-sim needs at least one per file)."""
    attrs = [
        et.AttributeProto(name="is_cpu_op", bool_val=False),
        et.AttributeProto(name="num_ops", int64_val=1),
        et.AttributeProto(name="tensor_size", uint64_val=0),
    ]
    node = et.Node(id=0, name="idle", type=et.COMP_NODE, attr=attrs)
    return wire.strings([node.SerializeToString()])


def encode_nodes(g: Graph, at: slice, cols: Columns) -> wire.Ragged:
    """The ``Node`` messages of the nodes at ``cols.order[at]`` (one rank's, in program
    order), one row each."""
    nodes = cols.order[at]
    if nodes.shape[0] == 0:
        return _placeholder()
    deps = _deps(g, at, nodes, cols)
    names = wire.lines(strip(cat(*IdText(g).id_fields(nodes), b"\n", n=nodes.shape[0])))
    return wire.concat(
        wire.scalar(_NODE["id"], cols.local[nodes]),
        wire.delimited(_NODE["name"], names),
        wire.scalar(_NODE["type"], cols.node_type[nodes]),
        deps,
        wire.scalar(_NODE["start_time_micros"], cols.start_us[nodes]),
        wire.scalar(_NODE["duration_micros"], cols.duration_us[nodes]),
        wire.take(cols.attrs, cols.attr_row[nodes]),
    )
