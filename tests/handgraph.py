"""Small graphs written by hand, node by node, for the graph-check tests.

:class:`HandGraph` collects nodes and edges in Python lists and lays them out in the
IR's program order (rank-major, then insertion order) when frozen. :func:`pipeline`
writes a small valid pipeline with TP all-reduces and PP sends/recvs; tests edit it to
inject faults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dagen.graph.build import describe_pool
from dagen.graph.ir import COLUMN_DTYPES, Coll, EdgeKind, Graph, GroupKind, Kind, Op
from dagen.graph.pool import rank_table
from dagen.plan.model import Hardware, Model, Parallel, Plan, Workload
from dagen.plan.summary import plan_summary

HW = Hardware(
    memory_gb=80.0,
    peak_tflops={"bf16": 989.0},
    hbm_tbps=3.35,
    gpus_per_node=8,
    intra_node_gbps=450.0,
    inter_node_gbps=50.0,
)


def small_plan(*, tp: int = 2, pp: int = 2, dp: int = 1, layers: int = 2, mbs: int = 2) -> Plan:
    """A dense plan with the given degrees (model sizes are irrelevant to hand graphs)."""
    return Plan(
        name="hand",
        model=Model(
            name="hand",
            layers=layers,
            hidden_size=64,
            heads=4,
            kv_heads=4,
            head_dim=16,
            ffn_size=128,
            vocab_size=128,
        ),
        parallel=Parallel(tp=tp, pp=pp, dp=dp),
        workload=Workload(batch=mbs * dp, prompt_len=8, micro_batches=mbs),
        hardware=HW,
    )


@dataclass
class HandGraph:
    """Nodes and edges added one by one; :meth:`freeze` makes the columnar Graph."""

    plan: Plan
    rows: list[tuple[int, ...]] = field(default_factory=list)
    edges: list[tuple[int, int, int]] = field(default_factory=list)
    tmpl_bytes: list[int] = field(default_factory=lambda: [0])
    inst_coll: list[int] = field(default_factory=list)
    inst_group: list[int] = field(default_factory=list)
    groups: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)

    def node(
        self,
        rank: int,
        op: Op,
        *,
        layer: int = -1,
        mb: int = 0,
        kind: Kind = Kind.COMPUTE,
        inst: int = -1,
        aux: int = -1,
        tmpl: int = 0,
        expert: int = -1,
    ) -> int:
        self.rows.append((rank, layer, mb, 0, int(op), int(kind), expert, inst, aux, tmpl))
        return len(self.rows) - 1

    def edge(self, s: int, d: int, kind: EdgeKind = EdgeKind.DATA) -> None:
        self.edges.append((s, d, int(kind)))

    def template(self, nbytes: int) -> int:
        self.tmpl_bytes.append(nbytes)
        return len(self.tmpl_bytes) - 1

    def group(self, kind: GroupKind, members: tuple[int, ...]) -> int:
        self.groups.append((int(kind), tuple(sorted(members))))
        return len(self.groups) - 1

    def instance(self, coll: Coll, group: int) -> int:
        self.inst_coll.append(int(coll))
        self.inst_group.append(group)
        return len(self.inst_coll) - 1

    def freeze(self) -> Graph:
        """The Graph, nodes stably sorted by rank (program order within a rank)."""
        rows = np.array(self.rows, dtype=np.int64).reshape(-1, 10)
        perm = np.argsort(rows[:, 0], kind="stable")
        new = np.empty_like(perm)
        new[perm] = np.arange(perm.size)
        rows = rows[perm]
        e = np.array(self.edges, dtype=np.int64).reshape(-1, 3)
        cols = {c: rows[:, i].astype(t) for i, (c, t) in enumerate(COLUMN_TYPES.items())}
        pool = describe_pool(self.plan)
        return Graph(
            name=self.plan.name,
            model=self.plan.model,
            pools=(pool,),
            ranks=rank_table([pool], [{}]),
            source=plan_summary(self.plan),
            **cols,
            src=new[e[:, 0]].astype(np.int32),
            dst=new[e[:, 1]].astype(np.int32),
            ekind=e[:, 2].astype(np.uint8),
            tmpl_shape=[(b,) for b in self.tmpl_bytes],
            tmpl_bytes=np.array(self.tmpl_bytes, dtype=np.int64),
            tmpl_flops=np.zeros(len(self.tmpl_bytes)),
            tmpl_hbm=np.zeros(len(self.tmpl_bytes)),
            tmpl_phase=np.zeros(len(self.tmpl_bytes), dtype=np.uint8),
            inst_coll=np.array(self.inst_coll, dtype=np.uint8),
            inst_group=np.array(self.inst_group, dtype=np.int32),
            **self._group_table(),
        )

    def _group_table(self) -> dict[str, np.ndarray]:
        sizes = [len(m) for _, m in self.groups]
        return {
            "group_kind": np.array([k for k, _ in self.groups], dtype=np.uint8),
            "group_offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            "group_members": np.array([r for _, m in self.groups for r in m], dtype=np.int32),
        }


COLUMN_TYPES = {c: COLUMN_DTYPES[c] for c in Graph.NODE_COLUMNS}


def pipeline(*, tp: int = 2, pp: int = 2, layers: int = 2, mbs: int = 2) -> Graph:
    """A valid hand graph: per rank and micro-batch, [recv] → per layer (qkv →
    all-reduce over the TP group → ffn.up) → [send]; micro-batches chained by order edges.
    """
    h = HandGraph(small_plan(tp=tp, pp=pp, layers=layers, mbs=mbs))
    act = h.template(1024)
    per_stage = layers // pp
    tp_groups = [h.group(GroupKind.TP, tuple(s * tp + t for t in range(tp))) for s in range(pp)]
    for s in range(pp):
        span = range(s * per_stage, (s + 1) * per_stage)
        insts = {
            (mb, layer): h.instance(Coll.ALL_REDUCE, tp_groups[s])
            for mb in range(mbs)
            for layer in span
        }
        for t in range(tp):
            r, last = s * tp + t, -1
            for mb in range(mbs):
                first = len(h.rows)
                head = _stage_block(h, r, mb, span, insts, tp_groups[s], act, tp, pp, s)
                if last >= 0:  # stream order: micro-batch m's first op after m-1's last
                    h.edge(last, first, EdgeKind.ORDER)
                last = head
    _wire_p2p(h)
    return h.freeze()


def _stage_block(
    h: HandGraph,
    r: int,
    mb: int,
    span: range,
    insts: dict[tuple[int, int], int],
    group: int,
    act: int,
    tp: int,
    pp: int,
    s: int,
) -> int:
    """One micro-batch of rank ``r`` on stage ``s``; returns its last node."""
    head = -1
    if s > 0:
        head = h.node(r, Op.PP_RECV, mb=mb, kind=Kind.RECV, aux=r - tp, tmpl=act)
    for layer in span:
        a = h.node(r, Op.ATTN_QKV, layer=layer, mb=mb)
        ar = h.node(
            r,
            Op.ATTN_ALLREDUCE,
            layer=layer,
            mb=mb,
            kind=Kind.COLLECTIVE,
            inst=insts[(mb, layer)],
            aux=group,
            tmpl=act,
        )
        b = h.node(r, Op.FFN_UP, layer=layer, mb=mb)
        if head >= 0:
            h.edge(head, a)
        h.edge(a, ar)
        h.edge(ar, b)
        head = b
    if s < pp - 1:
        snd = h.node(r, Op.PP_SEND, mb=mb, kind=Kind.SEND, aux=r + tp, tmpl=act)
        h.edge(head, snd)
        head = snd
    return head


def _wire_p2p(h: HandGraph) -> None:
    """A p2p edge from every send to the recv of the same micro-batch on its peer."""
    recvs = {(row[0], row[2]): i for i, row in enumerate(h.rows) if row[5] == int(Kind.RECV)}
    for i, row in enumerate(h.rows):
        if row[5] == int(Kind.SEND):
            h.edge(i, recvs[(row[8], row[2])], EdgeKind.P2P)


def crossed_recvs() -> Graph:
    """Two ranks that each post their recv before their send, with no edge between."""
    h = HandGraph(small_plan(tp=1, pp=2, layers=2, mbs=1))
    t = h.template(64)
    r0 = h.node(0, Op.PP_RECV, kind=Kind.RECV, aux=1, tmpl=t)
    s0 = h.node(0, Op.PP_SEND, kind=Kind.SEND, aux=1, tmpl=t)
    r1 = h.node(1, Op.PP_RECV, kind=Kind.RECV, aux=0, tmpl=t)
    s1 = h.node(1, Op.PP_SEND, kind=Kind.SEND, aux=0, tmpl=t)
    h.edge(s0, r1, EdgeKind.P2P)
    h.edge(s1, r0, EdgeKind.P2P)
    return h.freeze()
