"""Chakra execution traces for ASTRA-sim: ``<name>.<rank>.et`` per rank and ``comm_group.json``.

Each rank's file is a length-prefixed protobuf stream (:mod:`dagen.export.chakra_schema`):
one ``GlobalMetadata``, then one ``Node`` per dagen node of that rank, in program order,
with ids ``0 … k-1``. docs/chakra.md gives the mapping and the units; in short:

* compute ops are ``COMP_NODE`` with ``duration_micros`` (the estimate's time, rounded so
  that each stream's running total stays within ½ µs of the exact one), ``num_ops``
  (FLOPs, at least 1) and ``tensor_size`` (HBM bytes read and written);
* collectives are ``COMM_COLL_NODE`` with ``comm_type``, ``comm_size`` (nccl-tests'
  size, but an all-gather's is its per-rank input) and ``pg_name``, the key of its group
  in ``comm_group.json`` (dagen's group id + 1; key 0 would mean every rank);
* sends and recvs are ``COMM_SEND_NODE`` / ``COMM_RECV_NODE`` with ``comm_src``,
  ``comm_dst``, ``comm_tag`` (the message's number between its two ranks) and
  ``comm_size``, equal on both ends. A recv's ``start_time_micros`` is when it is posted
  and its ``duration_micros`` the transfer (its send's), never the wait;
* every data edge, order edge and each stream's previous node (the compute stream, or
  the communication stream) is a ``data_deps`` entry (ASTRA-sim's feeder reads no
  ``ctrl_deps``), so a simulator that issues ready nodes in any order still runs each
  stream one node at a time in program order, as dagen's schedule does
  (docs/cost-model.md, "Schedule").

Example:
    >>> write_outputs(ctx, [("traces", "chakra")])  # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from dagen.codes import Code
from dagen.cost import estimate
from dagen.errors import DagenError, ExportError
from dagen.export import chakra_schema as et
from dagen.export import wire
from dagen.export.base import ExportContext
from dagen.export.chakra_nodes import Columns, encode_nodes
from dagen.export.outputs import OutDir
from dagen.graph.ir import Coll, EdgeKind, Graph, Kind

__all__ = [
    "COMM_TYPES",
    "NODE_TYPES",
    "comm_groups",
    "emit",
    "trace_file",
    "trace_name",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

COMM_TYPES: dict[Coll, int] = {
    Coll.ALL_REDUCE: et.ALL_REDUCE,
    Coll.ALL_GATHER: et.ALL_GATHER,
    Coll.REDUCE_SCATTER: et.REDUCE_SCATTER,
    Coll.ALL_TO_ALL: et.ALL_TO_ALL,
}
"""Chakra's ``CollectiveCommType`` of each dagen collective: the four ASTRA-sim simulates
on its network. A collective outside this table is refused, not written."""

NODE_TYPES: dict[Kind, int] = {
    Kind.COMPUTE: et.COMP_NODE,
    Kind.COLLECTIVE: et.COMM_COLL_NODE,
    Kind.SEND: et.COMM_SEND_NODE,
    Kind.RECV: et.COMM_RECV_NODE,
}
"""Chakra's ``NodeType`` of each dagen node kind."""
_NODE_TYPES = np.array([NODE_TYPES[Kind(k)] for k in range(len(Kind))], dtype=np.int64)


def trace_name(name: str) -> str:
    """The files' prefix: the deployment's name, with anything but letters, digits, ``_``
    and ``-`` replaced by ``-`` (``dagen`` when nothing is left).

    >>> trace_name("llama3 405b/tp8"), trace_name("...")
    ('llama3-405b-tp8', 'dagen')
    """
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "dagen"


def trace_file(name: str, rank: int) -> str:
    """Rank ``rank``'s file: ``<name>.<rank>.et``, the names ASTRA-sim opens."""
    return f"{name}.{rank}.et"


def _refuse(ctx: ExportContext) -> None:
    if ctx.ranks is not None:
        raise ExportError(
            "--ranks: a Chakra trace covers every rank (ASTRA-sim runs them all together). "
            "Fix: drop --ranks for the chakra output."
        )
    serial = [f for f in ctx.findings if f.code == Code.GRAPH_SERIAL_DEADLOCK]
    if serial:
        raise ExportError(
            f"{Code.GRAPH_SERIAL_DEADLOCK}: running each rank's ops in program order "
            "deadlocks, and ASTRA-sim issues them in node-id order, so the trace would hang. "
            "Fix: reorder the schedule (docs/graph-checks.md) before exporting to chakra."
        )


def _estimate(ctx: ExportContext) -> F64:
    if ctx.estimate is not None:
        return np.stack([ctx.estimate.start_s, ctx.estimate.duration_s])
    try:
        est = estimate(ctx.graph)
    except DagenError as exc:
        raise ExportError(f"chakra: the graph cannot be simulated, so nodes have no "
                          f"durations: {exc}. Fix: resolve the graph's findings.") from exc  # fmt: skip
    return np.stack([est.start_s, est.duration_s])


def _stream_rounded(g: Graph, order: I64, own_us: F64) -> I64:
    """Whole µs per node such that each (rank, stream)'s running total is the exact
    running total rounded: no stream gains or loses more than ½ µs (docs/chakra.md)."""
    stream = (g.kind[order] != Kind.COMPUTE).astype(np.int64)
    key = g.rank[order].astype(np.int64) * 2 + stream
    seq = order[np.argsort(key, kind="stable")]
    k = np.sort(key, kind="stable")
    first = np.r_[True, k[1:] != k[:-1]]
    total = np.cumsum(own_us[seq])
    base = np.maximum.accumulate(np.where(first, total - own_us[seq], 0.0))
    rounded = np.rint(total - base).astype(np.int64)
    step = np.diff(rounded, prepend=0)
    step[first] = rounded[first]
    out = np.zeros(g.n_nodes, dtype=np.int64)
    out[seq] = step
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class _P2P:
    """Each send's and recv's message number between its two ranks."""

    tag: I64
    send_of: I64
    """The send of each recv (-1 elsewhere)."""


def _p2p(g: Graph) -> _P2P:
    p2p = np.flatnonzero(g.ekind == EdgeKind.P2P)
    src, dst = g.src[p2p].astype(np.int64), g.dst[p2p].astype(np.int64)
    for kind, ends in ((Kind.SEND, src), (Kind.RECV, dst)):
        count = np.bincount(ends, minlength=g.n_nodes)[g.kind == kind]
        if count.size and (count.min() != 1 or count.max() != 1):
            raise ExportError(f"chakra: every {kind.label} needs exactly one p2p edge; "
                              "the graph breaks this (run dagen check).")  # fmt: skip
    size = g.tmpl_bytes[g.tmpl]
    if bool(np.any(size[src] != size[dst])):
        raise ExportError("chakra: a send and its recv differ in bytes; ASTRA-sim would stall "
                          "on the recv. Fix: run dagen check and fix the graph.")  # fmt: skip
    a, b = g.rank[src].astype(np.int64), g.rank[dst].astype(np.int64)
    by = np.lexsort((src, b, a))
    pair = (a * g.world + b)[by]
    start = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    number = np.arange(by.size) - np.repeat(start, np.diff(np.r_[start, by.size]))
    tag = np.full(g.n_nodes, -1, dtype=np.int64)
    tag[src[by]] = number
    tag[dst[by]] = number
    send_of = np.full(g.n_nodes, -1, dtype=np.int64)
    send_of[dst] = src
    return _P2P(tag=tag, send_of=send_of)


def _comm_types(g: Graph) -> I64:
    """Chakra's ``comm_type`` of each collective node (-1 elsewhere).

    Raises:
        ExportError: a collective ASTRA-sim does not simulate on its network.
    """
    coll = g.kind == Kind.COLLECTIVE
    kinds = g.inst_coll[g.inst[coll]]
    unknown = sorted({Coll(int(c)).label for c in np.unique(kinds)} - {c.label for c in COMM_TYPES})
    if unknown:
        raise ExportError(f"chakra: collective(s) {', '.join(unknown)} have no ASTRA-sim "
                          "network model; lower them first (docs/chakra.md).")  # fmt: skip
    table = np.array([COMM_TYPES.get(Coll(c), -1) for c in range(len(Coll))], dtype=np.int64)
    out = np.full(g.n_nodes, -1, dtype=np.int64)
    out[coll] = table[kinds]
    return out


def _comm_size(g: Graph) -> I64:
    """``comm_size`` of every node: nccl-tests' size, an all-gather's per-rank input."""
    size = g.tmpl_bytes[g.tmpl].astype(np.int64)
    coll = g.kind == Kind.COLLECTIVE
    kinds = g.inst_coll[g.inst[coll]]
    members = np.diff(g.group_offsets)[g.aux[coll]].astype(np.int64)
    gather = kinds == Coll.ALL_GATHER
    per_rank = -(-size[coll] // np.maximum(members, 1))  # all-gather: per-rank input
    size[coll] = np.where(gather, per_rank, size[coll])
    return size


def _columns(ctx: ExportContext) -> Columns:
    g = ctx.graph
    order = np.argsort(g.rank, kind="stable").astype(np.int64)
    start_s, dur_s = _estimate(ctx)
    p2p = _p2p(g)
    recv = p2p.send_of >= 0
    own_us = np.where(g.kind == Kind.RECV, 0.0, dur_s * 1e6)
    dur = _stream_rounded(g, order, own_us)
    dur[recv] = dur[p2p.send_of[recv]]
    flops = g.tmpl_flops[g.tmpl]
    return Columns.of(
        g,
        order=order,
        node_type=_NODE_TYPES[g.kind],
        start_us=np.rint(start_s * 1e6).astype(np.int64),
        duration_us=dur,
        num_ops=np.maximum(1, np.ceil(flops)).astype(np.int64),
        tensor_size=np.rint(g.tmpl_hbm[g.tmpl]).astype(np.int64),
        comm_type=_comm_types(g),
        comm_size=_comm_size(g),
        tag=p2p.tag,
    )


def _metadata(g: Graph, rank: int) -> bytes:
    attrs = [
        et.AttributeProto(name="producer", string_val="dagen"),
        et.AttributeProto(name="deployment", string_val=g.name),
        et.AttributeProto(name="rank", int64_val=rank),
        et.AttributeProto(name="world", int64_val=g.world),
        et.AttributeProto(name="time_unit", string_val="us"),
    ]
    body = et.GlobalMetadata(version=et.VERSION, attr=attrs).SerializeToString()
    return bytes(et.varint(len(body)) + body)


def comm_groups(g: Graph) -> dict[str, list[int]]:
    """``comm_group.json``: every dagen group ``i`` under key ``str(i + 1)``."""
    return {str(i + 1): g.group(i).tolist() for i in range(len(g.group_kind))}


def emit(ctx: ExportContext, out: OutDir) -> None:
    """Write every rank's ``.et`` file and ``comm_group.json``."""
    _refuse(ctx)
    g = ctx.graph
    cols = _columns(ctx)
    name = trace_name(g.name)
    ends = np.searchsorted(g.rank[cols.order], np.arange(g.world + 1))
    for r in range(g.world):
        with out.open(trace_file(name, r)) as fh:
            fh.write(_metadata(g, r))
            fh.write(wire.frame(encode_nodes(g, slice(int(ends[r]), int(ends[r + 1])), cols)))
        ctx.tick(r + 1, g.world)
    with out.open(et.COMM_GROUP_FILE) as fh:
        fh.write(orjson.dumps(comm_groups(g)) + b"\n")
