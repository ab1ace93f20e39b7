"""The counted op table of the completeness check: one cell per expected (rank, step,
micro-batch, row, column), counted with one ``bincount``.

Rows are the outer row (ops outside layers) and the layers of the rank's stage; columns
are the ops of the row's class (see :mod:`dagen.checks.expect`). A node's cell id is
computed with small lookup tables and integer arithmetic only (int32 when the table has
fewer than 2³¹ cells); nodes the table has no cell for go to one trash bin at the end,
and so do nodes whose kind is not their op's (a collective op emitted as a compute node
moves nothing: its cell stays empty).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.checks.expect import OUTER_OPS, Expected
from dagen.checks.shared import Shared
from dagen.graph.ir import OP_LABELS, Graph
from dagen.graph.ops import OP_KIND, Op

__all__ = ["CellTable", "Verdict"]

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
Int = npt.NDArray[np.signedinteger]


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """Where the counts differ from the expected table (cell ids ascending)."""

    lost: I64
    """Expected cells with no node, outside micro-batches that skip a whole stage."""
    dup: I64
    """Expected cells with more than one node."""
    foreign: Bool
    """Per cell: holds nodes but is not expected."""
    skips: list[tuple[int, int, int, int]]
    """(replica, stage, step, micro-batch) with no node on any rank of the stage."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CellTable:
    """``cell[i]``: node ``i``'s cell (``total`` for none); ``seen``: whether each cell
    holds a node, shaped ``[pool ranks, steps, mbs, rows, width]`` (the graph is one pool,
    or one pool's view: a rank's row is its index in the pool); ``trash``: nodes without a
    cell. Exact counts (:meth:`counts`) are only needed when ``seen`` differs from the
    expected table, so the common case costs one boolean scatter instead of a bincount."""

    exp: Expected
    cell: Int
    seen: Bool
    trash: int

    @property
    def total(self) -> int:
        return int(self.seen.size)

    @staticmethod
    def of(graph: Graph, exp: Expected, shared: Shared | None = None) -> CellTable:
        """Place the graph's nodes in the table of ``exp``."""
        sh = shared or Shared(graph)
        pool = graph.pools[0]
        shape = (pool.world, exp.steps, exp.mbs, exp.rows, exp.width)
        total = int(np.prod(shape))
        dt = np.dtype(np.int32 if total < (1 << 31) - 1 else np.int64)
        # In-place arithmetic on two buffers: fresh temporaries of n elements each cost
        # page faults that dominate this pass at millions of nodes.
        cell = _row_col(graph, exp, sh, dt)  # slot · width + col, negative for none
        bad = cell < 0
        per_rank = np.zeros(graph.world, dtype=dt)  # by global rank, for per_node
        per_rank[pool.ranks.start : pool.ranks.stop] = np.arange(shape[0], dtype=dt) * np.asarray(
            total // max(shape[0], 1), dt
        )
        base: Int = sh.per_node(per_rank)
        cell += base
        for term, factor in (
            (graph.step, shape[2] * shape[3] * shape[4]),
            (graph.mb, shape[3] * shape[4]),
        ):
            np.multiply(term, np.asarray(factor, dt), out=base)
            cell += base
        del base
        bad |= OP_KIND[graph.op] != graph.kind  # e.g. an all-reduce emitted as compute
        if _out_of_range(graph.mb, exp.mbs) or _out_of_range(graph.step, exp.steps):
            bad |= (graph.mb < 0) | (graph.mb >= exp.mbs) | (graph.step < 0)
            bad |= graph.step >= exp.steps
        np.copyto(cell, np.asarray(total, dt), where=bad)
        seen = np.zeros(total + 1, dtype=np.bool_)
        seen[cell] = True
        trash = int(np.count_nonzero(bad))
        return CellTable(exp=exp, cell=cell, seen=seen[:-1].reshape(shape), trash=trash)

    def counts(self) -> I64:
        """Nodes per cell, shaped like ``seen`` (one bincount)."""
        c = np.bincount(self.cell, minlength=self.total + 1)[:-1]
        return c.reshape(self.seen.shape)

    def want(self, graph: Graph) -> Bool:
        """bool, shaped like ``counts``: the expected cells."""
        blocks = np.stack([self.exp.stage_block(s) for s in range(self.exp.pp)])
        want: Bool = blocks[graph.pools[0].mesh.stage]
        return want

    def exact(self, graph: Graph, want: Bool, n_expert: int | None = None) -> bool:
        """Whether every expected cell holds exactly one node and no node is stray
        (routed experts aside, which the table does not hold; ``n_expert`` counts them)."""
        if n_expert is None:
            n_expert = int(np.count_nonzero(graph.op == Op.MOE_EXPERT))
        placed = self.cell.shape[0] - self.trash
        return (
            self.trash == n_expert and placed == int(want.sum()) and np.array_equal(self.seen, want)
        )

    def compare(self, graph: Graph, want: Bool) -> Verdict:
        """Every difference between the counts and ``want``."""
        c, mesh = self.counts(), graph.pools[0].mesh
        present = c.any(axis=(3, 4))  # [world, steps, mbs]
        n_rep = int(mesh.replica.max()) + 1
        by_stage = np.zeros((n_rep, self.exp.pp, *present.shape[1:]), dtype=np.int64)
        np.add.at(by_stage, (mesh.replica, mesh.stage), present.astype(np.int64))
        skips = [tuple(int(x) for x in row) for row in np.argwhere(by_stage == 0)]
        live = (by_stage[mesh.replica, mesh.stage] > 0)[..., None, None]
        return Verdict(
            lost=np.flatnonzero(want & (c == 0) & live),
            dup=np.flatnonzero(want & (c > 1)),
            foreign=(~want & (c > 0)).ravel(),
            skips=[(a, b, t, m) for a, b, t, m in skips],
        )

    def describe(self, graph: Graph, cell: int) -> tuple[int, str, str]:
        """(rank, readable place, op label) of a cell."""
        local, step, mb, row, col = (int(x) for x in np.unravel_index(cell, self.seen.shape))
        pool = graph.pools[0]
        r, s = pool.rank0 + local, int(pool.mesh.stage[local])
        if row == 0:
            return r, f"r{r}/s{s}/t{step}/mb{mb}", OUTER_OPS[col].label
        layer = int(self.exp.first[s]) + row - 1
        op = int(np.flatnonzero(self.exp.col[int(self.exp.layer_class[layer])] == col)[0])
        return r, f"r{r}/s{s}/t{step}/L{layer}/mb{mb}", OP_LABELS[op]

    def rank_of(self, graph: Graph, cells: I64) -> I64:
        """(Global) rank of each cell."""
        per_rank = self.total // max(self.seen.shape[0], 1)
        ranks: I64 = cells // per_rank + graph.pools[0].rank0
        return ranks


def _row_col(graph: Graph, exp: Expected, sh: Shared, dt: np.dtype[Any]) -> Int:
    """``row · width + col`` of every node in its rank's (step, micro-batch) block, or a
    negative number where the node has no cell; one lookup in a [stage, layer, op] table
    (two lookups, by stage and layer then by layer and op, if that table would be large)."""
    n_layers, n_ops = exp.layer_class.size, len(Op)
    slot_t = exp.slot_table()  # [pp, layers + 2]
    col_t = exp.col_table()  # [layers + 2, ops]
    key: Int = np.clip(graph.layer, -1, n_layers, out=np.empty(graph.n_nodes, dt))
    key += 1
    if slot_t.size * n_ops <= 1 << 22:
        table = slot_t[:, :, None] * exp.width + col_t[None, :, :]
        table[(slot_t[:, :, None] < 0) | (col_t[None, :, :] < 0)] = -1
        key *= n_ops
        key += graph.op
        key += sh.per_node(_stage_of_rank(graph, dt) * (slot_t.shape[1] * n_ops))
        out: Int = table.astype(dt).ravel()[key]
        return out
    slot: Int = sh.per_node(_stage_of_rank(graph, dt) * np.asarray(slot_t.shape[1], dt))
    slot += key
    slot = slot_t.astype(dt).ravel()[slot]
    key *= n_ops
    key += graph.op
    col = col_t.astype(dt).ravel()[key]
    bad = (slot < 0) | (col < 0)
    slot *= exp.width
    slot += col
    np.copyto(slot, np.asarray(-1, dt), where=bad)
    return slot


def _stage_of_rank(graph: Graph, dt: np.dtype[Any]) -> Int:
    """Each rank's stage, by global rank (0 for ranks of other pools: a pool's view has
    no node there)."""
    stage: Int = graph.ranks.stage.astype(dt)
    if graph.ranks.world != graph.pools[0].world:
        stage[graph.ranks.pool != graph.pools[0].index] = 0
    return stage


def _out_of_range(values: npt.NDArray[np.int16], upper: int) -> bool:
    return bool(values.size) and (int(values.min()) < 0 or int(values.max()) >= upper)
