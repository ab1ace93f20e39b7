"""The graph IR: columnar node and edge tables, no Python object per node.

A :class:`Graph` is a set of equal-length numpy columns, one row per node, plus edge
columns and a few small side tables. Everything a node "has" is either a column, an
index into a side table, or derived from its rank through the rank table (pool, stage,
replica, host, coordinates). Node ids such as ``r17/s1/L5/mb2/attn.qkv`` are generated
on demand (:mod:`dagen.graph.ids`).

The graph describes itself: it carries the model, its *pools* (:mod:`dagen.graph.pool`:
each pool's layout, phase, workload, hardware, mesh, sizes, layer split, schedule and
resident bytes) and the rank table. Nothing after the graph layer reads the plan.

Node kinds (:class:`Kind`):

- ``compute``: an operator on one rank (``op`` says which; ``expert`` names the routed
  expert of an expert FFN, else -1).
- ``collective``: one rank's part in a collective. All members of one collective call
  share ``inst`` (instance id); ``aux`` is the group id (row of the group table), and
  ``coll`` of the instance says all-reduce, all-to-all, ….
- ``send`` / ``recv``: point-to-point; ``aux`` is the peer rank. Each send has an edge
  of kind ``p2p`` to its recv.

Edge kinds (:class:`EdgeKind`): ``data`` (producer → consumer on one rank), ``order``
(stream order on one rank, e.g. micro-batch m → m+1), ``p2p`` (send → recv across
ranks). Collectives need no edges between members: an instance is one synchronisation
of all its members, which the checks contract into a single vertex.

Program order: the builder lays nodes out rank-major, and within a rank in issue order
(step, micro-batch, then the layer template). Every data or order edge joins two nodes of
one rank and goes from a lower to a higher index; p2p edges join different ranks. Checks
may rely on this (and ``lint`` verifies it).

Shapes, bytes and FLOPs repeat across many nodes, so each node points (``tmpl``) into
a small template table that holds them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from dagen.errors import GraphError
from dagen.graph.codes import Block, Coll, EdgeKind, GroupKind, Kind, Phase
from dagen.graph.ids import IdText
from dagen.graph.ops import COLLECTIVE_OPS, OP_LABELS, P2P_OPS, Op

if TYPE_CHECKING:
    import networkx as nx

    from dagen.graph.pool import Pool, RankTable
    from dagen.graph.reshard import Transfers
    from dagen.graph.schedule import Schedule
    from dagen.mesh import Mesh
    from dagen.plan.model import Model

__all__ = [
    "COLLECTIVE_OPS",
    "COLUMN_DTYPES",
    "INT16_MAX",
    "OP_LABELS",
    "P2P_OPS",
    "Block",
    "Coll",
    "EdgeKind",
    "Graph",
    "GroupKind",
    "Kind",
    "Op",
    "Phase",
]

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
I16 = npt.NDArray[np.int16]
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]


INT16_MAX = 32767
"""Largest layer, micro-batch, step or expert id the IR's int16 columns hold."""

COLUMN_DTYPES: Mapping[str, type[np.generic]] = MappingProxyType(
    {
        "rank": np.int32,
        "layer": np.int16,
        "mb": np.int16,
        "step": np.int16,
        "op": np.uint8,
        "kind": np.uint8,
        "expert": np.int16,
        "inst": np.int32,
        "aux": np.int32,
        "tmpl": np.int32,
        "src": np.int32,
        "dst": np.int32,
        "ekind": np.uint8,
    }
)
"""The dtype of every node and edge column."""


@dataclass(slots=True, kw_only=True)
class Graph:
    """A per-GPU operator and communication DAG in columnar form.

    Node columns (all of length ``n``):
        rank (int32), layer (int16, -1 outside layers), mb (int16, micro-batch),
        step (int16, decode step, 0 for prefill), op (uint8, :class:`Op`),
        kind (uint8, :class:`Kind`), expert (int16, routed expert id or -1),
        inst (int32, collective instance or -1), aux (int32, group id of a collective,
        peer rank of a send/recv, else -1), tmpl (int32, row of the template table).

    Edge columns (length ``m``): src, dst (int32 node indices), ekind (uint8).

    Side tables:
        tmpl_shape[t] (tuple of ints), tmpl_bytes[t] (int64, bytes the op moves or
        produces), tmpl_flops[t] (float64), tmpl_hbm[t] (float64, HBM bytes a compute op
        reads and writes; 0 for communication), tmpl_phase[t] (uint8 :class:`Phase`);
        inst_coll[i] (uint8 :class:`Coll`), inst_group[i] (int32 group id);
        group_kind[g] (uint8 :class:`GroupKind`), group_offsets[g] / group_members
        (CSR of member ranks, ascending).
    """

    name: str
    """The deployment's name (the plan's)."""
    model: Model
    """The model every pool serves."""
    pools: tuple[Pool, ...]
    """The pools, in rank order (one for a single-pool plan)."""
    ranks: RankTable
    """Every rank's pool, host, stage, replica, coordinates and group ids."""
    source: Mapping[str, Any]
    """The plan as declared, as plain data (:func:`dagen.plan.summary.plan_summary`; with
    several pools, ``{"pools": {name: summary}}``): provenance the outputs print, never an
    input to a computation."""
    rank: I32
    layer: I16
    mb: I16
    step: I16
    op: U8
    kind: U8
    expert: I16
    inst: I32
    aux: I32
    tmpl: I32
    src: I32
    dst: I32
    ekind: U8
    tmpl_shape: list[tuple[int, ...]]
    tmpl_bytes: I64
    tmpl_flops: F64
    tmpl_hbm: F64
    tmpl_phase: U8
    inst_coll: U8
    inst_group: I32
    group_kind: U8
    group_offsets: I64
    group_members: I32
    meta: dict[str, Any] = field(default_factory=dict)
    """Free-form notes of the builder (e.g. replicas folded for scale)."""
    transfers: Transfers | None = None
    """The KV-cache messages between a prefill and a decode pool (:mod:`dagen.graph.reshard`),
    one row per ``kv.send``/``kv.recv`` pair; None without a disaggregated deployment."""

    NODE_COLUMNS = ("rank", "layer", "mb", "step", "op", "kind", "expert", "inst", "aux", "tmpl")
    EDGE_COLUMNS = ("src", "dst", "ekind")

    @property
    def n_nodes(self) -> int:
        return int(self.rank.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.src.shape[0])

    @property
    def n_inst(self) -> int:
        return int(self.inst_coll.shape[0])

    def group(self, g: int) -> I32:
        """Member ranks of group ``g``, ascending."""
        return self.group_members[self.group_offsets[g] : self.group_offsets[g + 1]]

    def nbytes(self) -> int:
        """Bytes held by the node and edge columns (the per-node cost of the IR)."""
        cols = self.NODE_COLUMNS + self.EDGE_COLUMNS
        return sum(int(getattr(self, c).nbytes) for c in cols)

    @property
    def world(self) -> int:
        """Ranks of the whole deployment."""
        return self.ranks.world

    @property
    def mesh(self) -> Mesh:
        """The mesh of a single-pool graph (a multi-pool graph has one per pool)."""
        return self._single().mesh

    @property
    def schedule(self) -> Schedule:
        """The schedule of a single-pool graph (a multi-pool graph has one per pool)."""
        return self._single().schedule

    def _single(self) -> Pool:
        if len(self.pools) != 1:
            names = ", ".join(p.name for p in self.pools)
            raise GraphError(
                f"the graph has {len(self.pools)} pools ({names}); read each pool's own "
                "mesh and schedule from graph.pools"
            )
        return self.pools[0]

    def node_slice(self, p: int) -> slice:
        """Pool ``p``'s nodes (all of them in a single-pool graph, whatever its edits)."""
        if len(self.pools) == 1:
            return slice(None)
        return slice(self.pools[p].node0, self.pools[p].node1)

    def pool_view(self, p: int) -> Graph:
        """Pool ``p``'s nodes and the edges among them, ranks still global (a single-pool
        graph is its own view). Its only pool is ``p``; its rank table is the whole one."""
        if len(self.pools) == 1:
            return self
        pool = self.pools[p]
        lo, hi = pool.node0, pool.node1
        keep = (self.src >= lo) & (self.src < hi) & (self.dst >= lo) & (self.dst < hi)
        cols = {c: getattr(self, c)[lo:hi] for c in self.NODE_COLUMNS}
        return dataclasses.replace(
            self, pools=(pool,), **cols, src=self.src[keep] - np.int32(lo),
            dst=self.dst[keep] - np.int32(lo), ekind=self.ekind[keep],
        )  # fmt: skip

    def node_id(self, i: int) -> str:
        """Readable id of node ``i``, e.g. ``r17/s1/L5/mb2/attn.qkv``."""
        return self.node_ids([i])[0]

    def node_ids(self, idx: npt.ArrayLike) -> list[str]:
        """Readable ids of several nodes (:mod:`dagen.graph.ids`)."""
        return IdText(self).ids(idx)

    def lint(self) -> None:
        """Check the IR's own invariants; raise :class:`GraphError` naming the first broken one.

        Columns have equal lengths and their dtypes; codes are in range; edges point at
        existing nodes; collective nodes have an instance and a group, p2p nodes a peer;
        templates and groups are referenced in range.
        """
        self._lint_columns()
        self._lint_codes()
        self._lint_edges()

    def _lint_columns(self) -> None:
        for names, n, what in (
            (self.NODE_COLUMNS, self.n_nodes, "node"),
            (self.EDGE_COLUMNS, self.n_edges, "edge"),
        ):
            for name in names:
                col = getattr(self, name)
                if col.shape != (n,):
                    raise GraphError(
                        f"IR lint: {what} column {name!r} has shape {col.shape}, expected ({n},)"
                    )
                if col.dtype != COLUMN_DTYPES[name]:
                    raise GraphError(
                        f"IR lint: {what} column {name!r} has dtype {col.dtype}, "
                        f"expected {np.dtype(COLUMN_DTYPES[name])}"
                    )

    def _lint_codes(self) -> None:
        _in_range("op", self.op, len(Op))
        _in_range("kind", self.kind, len(Kind))
        _in_range("ekind", self.ekind, len(EdgeKind))
        _in_range("rank", self.rank, self.world)
        _in_range("src", self.src, self.n_nodes)
        _in_range("dst", self.dst, self.n_nodes)
        _in_range("tmpl", self.tmpl, len(self.tmpl_shape))
        coll = self.kind == Kind.COLLECTIVE
        if np.any(self.inst[coll] < 0) or np.any(self.inst[~coll] >= 0):
            raise GraphError("IR lint: inst must be set exactly on collective nodes")
        _in_range("inst", self.inst[coll], self.n_inst)
        _in_range("group (aux of collectives)", self.aux[coll], int(self.group_kind.shape[0]))
        p2p = (self.kind == Kind.SEND) | (self.kind == Kind.RECV)
        _in_range("peer (aux of send/recv)", self.aux[p2p], self.world)

    def _lint_edges(self) -> None:
        if np.any(self.src == self.dst):
            raise GraphError("IR lint: self-loop edge")
        local = self.ekind != EdgeKind.P2P
        if np.any(self.rank[self.src[local]] != self.rank[self.dst[local]]):
            raise GraphError("IR lint: a data/order edge joins two ranks (only p2p edges may)")
        if np.any(self.src[local] >= self.dst[local]):
            raise GraphError(
                "IR lint: a data/order edge goes against program order (src index >= dst)"
            )
        if np.any(self.rank[self.src[~local]] == self.rank[self.dst[~local]]):
            raise GraphError("IR lint: a p2p edge stays on one rank")

    def to_networkx(self, max_nodes: int = 200_000) -> nx.MultiDiGraph:
        """The graph as a networkx ``MultiDiGraph`` keyed by node id (small graphs only).

        Node attributes: rank, stage, layer, mb, step, op, kind, expert, inst, aux, bytes,
        flops. Edge attribute: kind.
        """
        import networkx as nx

        if self.n_nodes > max_nodes:
            raise GraphError(
                f"to_networkx: {self.n_nodes} nodes is over the limit of {max_nodes}; "
                "filter the graph first or raise max_nodes"
            )
        g: nx.MultiDiGraph = nx.MultiDiGraph()
        ids = self.node_ids(np.arange(self.n_nodes))
        for i, nid in enumerate(ids):
            t = int(self.tmpl[i])
            g.add_node(
                nid,
                rank=int(self.rank[i]),
                stage=int(self.ranks.stage[int(self.rank[i])]),
                layer=int(self.layer[i]),
                mb=int(self.mb[i]),
                step=int(self.step[i]),
                op=OP_LABELS[int(self.op[i])],
                kind=Kind(int(self.kind[i])).label,
                expert=int(self.expert[i]),
                inst=int(self.inst[i]),
                aux=int(self.aux[i]),
                bytes=int(self.tmpl_bytes[t]),
                flops=float(self.tmpl_flops[t]),
            )
        for s, d, k in zip(self.src.tolist(), self.dst.tolist(), self.ekind.tolist(), strict=True):
            g.add_edge(ids[s], ids[d], kind=EdgeKind(k).label)
        return g


def _in_range(name: str, values: npt.NDArray[Any], upper: int) -> None:
    if values.size and (int(values.min()) < 0 or int(values.max()) >= upper):
        raise GraphError(
            f"IR lint: column {name!r} has values in [{int(values.min())}, {int(values.max())}], "
            f"expected [0, {upper})"
        )
