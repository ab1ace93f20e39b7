"""What a plan says every rank must compute: the expected op table of the completeness check.

Derived from the plan and mesh alone, never from the graph: the layers of each pipeline
stage (:func:`dagen.graph.templates.stage_layers`, the plan's split rule), which layers
are MoE, and the degrees and flags that add communication (tp, cp, sequence
parallelism, ep, etp, shared experts, pp, decode steps).

Per rank, per (step, micro-batch), the expected ops sit in a small dense table: one row
("slot") for the ops outside layers (embedding, head, pipeline send/recv) and one per
layer of the rank's stage; the columns of a row are the ops its class (outer, dense
layer, MoE layer) must run, each exactly once. Routed experts are counted apart, per
expert-parallel group (see :mod:`dagen.checks.completeness`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.graph.ir import Op
from dagen.mesh import Mesh
from dagen.plan.model import Phase, Plan
from dagen.plan.split import stage_layers

__all__ = ["DENSE", "MOE", "OUTER", "Expected", "expected"]

OUTER, DENSE, MOE = 0, 1, 2
"""Row classes: ops outside layers, a dense layer, an MoE layer."""

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


def _attention_ops(tp: int, cp: int, sp: bool) -> list[Op]:
    ops = [Op.ATTN_NORM, Op.ATTN_QKV, Op.ATTN_CORE, Op.ATTN_OUT, Op.ATTN_RESIDUAL]
    if tp > 1:  # Megatron TP: row-parallel output reduced (RS + AG under SP)
        ops += [Op.ATTN_REDUCESCATTER, Op.ATTN_ALLGATHER] if sp else [Op.ATTN_ALLREDUCE]
    if cp > 1:  # context parallel: K/V (prefill) or partial results (decode) gathered
        ops.append(Op.ATTN_CP_ALLGATHER)
    return ops


def _dense_ops(tp: int, sp: bool) -> list[Op]:
    ops = [Op.FFN_NORM, Op.FFN_UP, Op.FFN_DOWN, Op.FFN_RESIDUAL]
    if tp > 1:
        ops += [Op.FFN_REDUCESCATTER, Op.FFN_ALLGATHER] if sp else [Op.FFN_ALLREDUCE]
    return ops


def _moe_ops(plan: Plan, mesh: Mesh, sp: bool) -> list[Op]:
    moe = plan.model.moe
    ops = [Op.MOE_NORM, Op.MOE_ROUTER, Op.MOE_TOPK, Op.MOE_RESIDUAL]
    if mesh.sizes["ep"] > 1:  # tokens travel to their experts' EP ranks and back
        ops += [Op.MOE_DISPATCH, Op.MOE_COMBINE]
    if mesh.sizes["etp"] > 1:
        ops.append(Op.MOE_ETP_REDUCE)
    if moe is not None and moe.shared_experts > 0:
        ops.append(Op.MOE_SHARED)
        if sp:  # Megatron SP: gather the T/tp stream rows in, reduce-scatter back out
            ops += [Op.MOE_SHARED_ALLGATHER, Op.MOE_SHARED_REDUCESCATTER]
        elif mesh.sizes["tp"] > 1:
            ops.append(Op.MOE_SHARED_ALLREDUCE)
    return ops


OUTER_OPS = (
    Op.EMBED,
    Op.EMBED_ALLREDUCE,
    Op.EMBED_REDUCESCATTER,
    Op.FINAL_NORM,
    Op.LM_ALLGATHER,
    Op.LM_HEAD,
    Op.LOGITS_ALLGATHER,
    Op.SAMPLE,
    Op.PP_RECV,
    Op.PP_SEND,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """The expected op table of a plan (see the module docstring).

    ``col[class, op]`` is the op's column in rows of that class (-1: not expected there);
    ``width`` the number of columns; ``layer_class[layer]`` DENSE or MOE;
    ``first[s]``/``count[s]`` the layers of stage ``s``; ``outer[s, step, col]`` whether
    the outer row of stage ``s`` at ``step`` expects column ``col``; ``n_cols[class]``
    the columns a layer row of that class expects.
    """

    steps: int
    mbs: int
    pp: int
    width: int
    col: I64
    n_cols: I64
    layer_class: I64
    first: I64
    count: I64
    outer: Bool
    experts: int
    redundant: int

    @property
    def rows(self) -> int:
        """Rows per (rank, step, micro-batch): the outer row and the most layers a stage has."""
        return int(self.count.max(initial=0)) + 1

    def stage_block(self, s: int) -> Bool:
        """bool ``[steps, mbs, rows, width]``: the expected cells of a stage-``s`` rank."""
        block = np.zeros((self.steps, self.mbs, self.rows, self.width), np.bool_)
        block[:, :, 0, : self.outer.shape[2]] = self.outer[s][:, None, :]
        cls = self.layer_class[self.first[s] : self.first[s] + self.count[s]]
        block[:, :, 1 : 1 + cls.size, :] = (
            np.arange(self.width)[None, :] < self.n_cols[cls][:, None]
        )
        return block

    def op_grid(self, s: int) -> I64:
        """int ``[rows, width]``: the op expected in each cell of a stage-``s`` rank (-1: none)."""
        grid = np.full((self.rows, self.width), -1, dtype=np.int64)
        classes = [OUTER, *self.layer_class[self.first[s] : self.first[s] + self.count[s]]]
        for row, cls in enumerate(classes):
            ops = np.flatnonzero(self.col[cls] >= 0)
            grid[row, self.col[cls, ops]] = ops
        return grid

    def slot_table(self) -> I64:
        """int ``[pp, layers + 2]``: row of layer ``l`` on stage ``s`` at ``[s, l + 1]`` (0 for
        ops outside layers, -1 if the layer is not on the stage or not in the model)."""
        n = self.layer_class.size
        table = np.full((self.pp, n + 2), -1, dtype=np.int64)
        table[:, 0] = 0
        for s in range(self.pp):
            f, c = int(self.first[s]), int(self.count[s])
            table[s, f + 1 : f + c + 1] = np.arange(1, c + 1)
        return table

    def col_table(self) -> I64:
        """int ``[layers + 2, ops]``: column of op ``o`` in layer ``l``'s row at ``[l + 1, o]``
        (-1: the op is not expected in that row; routed experts are always -1)."""
        classes = np.concatenate([[OUTER], self.layer_class, [OUTER]])
        table: I64 = self.col[classes]
        table[-1] = -1  # layers past the model
        return table


def _outer_table(plan: Plan, mesh: Mesh, steps: int) -> Bool:
    """bool ``[pp, steps, len(OUTER_OPS)]``: which outer ops each stage runs at each step."""
    pp, tp = mesh.sizes["pp"], mesh.sizes["tp"]
    table = np.zeros((pp, steps, len(OUTER_OPS)), dtype=np.bool_)
    at = {op: i for i, op in enumerate(OUTER_OPS)}
    table[0, :, at[Op.EMBED]] = True
    sp = plan.parallel.sequence_parallel and tp > 1
    table[0, :, at[Op.EMBED_ALLREDUCE]] = tp > 1 and not sp
    table[0, :, at[Op.EMBED_REDUCESCATTER]] = sp  # Megatron SP scatters the embedding
    for op in (Op.FINAL_NORM, Op.LM_HEAD, Op.SAMPLE):
        table[pp - 1, :, at[op]] = True
    table[pp - 1, :, at[Op.LOGITS_ALLGATHER]] = tp > 1
    table[pp - 1, :, at[Op.LM_ALLGATHER]] = sp  # the last rows, split over TP under SP
    table[1:, :, at[Op.PP_RECV]] = True
    table[:-1, :, at[Op.PP_SEND]] = True
    if pp > 1 and steps > 1:  # decode: the last stage feeds step t's tokens to step t+1
        table[0, 1:, at[Op.PP_RECV]] = True
        table[pp - 1, :-1, at[Op.PP_SEND]] = True
    return table


def expected(plan: Plan, mesh: Mesh) -> Expected:
    """The expected op table of ``plan`` on ``mesh``.

    >>> exp = expected(plan, mesh)  # doctest: +SKIP
    >>> exp.stage_block(0).sum()  # expected ops of one stage-0 rank  # doctest: +SKIP
    """
    tp, cp = mesh.sizes["tp"], mesh.sizes["cp"]
    sp = plan.parallel.sequence_parallel and tp > 1
    steps = plan.workload.decode_steps if plan.workload.phase is Phase.DECODE else 1
    rows = [list(OUTER_OPS), _attention_ops(tp, cp, sp) + _dense_ops(tp, sp)]
    rows.append(_attention_ops(tp, cp, sp) + _moe_ops(plan, mesh, sp))
    width = max(len(r) for r in rows)
    col = np.full((3, len(Op)), -1, dtype=np.int64)
    for cls, ops in enumerate(rows):
        col[cls, [int(o) for o in ops]] = np.arange(len(ops))
    moe = plan.model.moe
    n_layers = plan.model.layers
    is_moe = [moe is not None and moe.is_moe_layer(i) for i in range(n_layers)]
    split = stage_layers(plan)
    return Expected(
        steps=steps,
        mbs=plan.workload.micro_batches,
        pp=mesh.sizes["pp"],
        width=width,
        col=col,
        n_cols=np.array([len(r) for r in rows], dtype=np.int64),
        layer_class=np.where(is_moe, MOE, DENSE).astype(np.int64),
        first=np.array([r.start for r in split], dtype=np.int64),
        count=np.array([len(r) for r in split], dtype=np.int64),
        outer=_outer_table(plan, mesh, steps),
        experts=moe.experts if moe is not None else 0,
        redundant=plan.parallel.redundant_experts,
    )
