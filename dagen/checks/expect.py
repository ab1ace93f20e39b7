"""What a plan says every rank must compute: the expected op table of the completeness check.

Derived from the pool's plan-level facts alone, never from the graph or the builder's
templates: the layers of each pipeline stage (the plan's split rule), which layers are
MoE, and the degrees and flags that add communication (tp, cp, sequence parallelism, ep,
etp, shared experts, pp, decode steps).

The oracle is the table :data:`ORACLE`: one row per op, naming the row it belongs to
(the ops outside layers, an attention block, a dense FFN, an MoE FFN) and when it is
expected. Per rank, per (step, micro-batch), the expected ops sit in a small dense table:
one row ("slot") for the ops outside layers (embedding, head, pipeline send/recv) and
one per layer of the rank's stage; the columns of a row are the ops its class (outer,
dense layer, MoE layer) must run, each exactly once. Routed experts are counted apart,
per expert-parallel group (see :mod:`dagen.checks.completeness`).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.graph.ir import Op
from dagen.graph.pool import Pool
from dagen.plan.model import Model
from dagen.plan.split import layer_ranges

__all__ = ["DENSE", "MOE", "ORACLE", "OUTER", "OUTER_OPS", "Expected", "Facts", "Part", "expected"]

OUTER, DENSE, MOE = 0, 1, 2
"""Row classes: ops outside layers, a dense layer, an MoE layer."""

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


class Part(enum.Enum):
    """Where an op of the oracle belongs."""

    OUTER = "outside the layers"
    ATTENTION = "every layer's attention"
    DENSE = "a dense layer's FFN"
    MOE = "an MoE layer's FFN"


@dataclass(frozen=True, slots=True)
class Facts:
    """What decides whether an op is expected: the pool's degrees and flags, and for ops
    outside the layers the stage and step (first and last of each)."""

    tp: bool
    """tp > 1."""
    cp: bool
    sp: bool
    """Sequence parallelism in effect."""
    ep: bool
    etp: bool
    shared: bool
    """The model has shared experts."""
    chain: bool
    """Decode steps chained through the pipeline (pp > 1 and more than one step)."""
    first: bool = False
    last: bool = False
    step0: bool = False
    step_last: bool = False


When = Callable[[Facts], bool]


def _always(_: Facts) -> bool:
    return True


ORACLE: tuple[tuple[Part, Op, When], ...] = (
    (Part.OUTER, Op.EMBED, lambda f: f.first),
    (Part.OUTER, Op.EMBED_ALLREDUCE, lambda f: f.first and f.tp and not f.sp),
    (Part.OUTER, Op.EMBED_REDUCESCATTER, lambda f: f.first and f.sp),  # Megatron SP scatters
    (Part.OUTER, Op.FINAL_NORM, lambda f: f.last),
    (Part.OUTER, Op.LM_ALLGATHER, lambda f: f.last and f.sp),  # the last rows, split over TP
    (Part.OUTER, Op.LM_HEAD, lambda f: f.last),
    (Part.OUTER, Op.LOGITS_ALLGATHER, lambda f: f.last and f.tp),
    (Part.OUTER, Op.SAMPLE, lambda f: f.last),
    # every stage but the first receives activations; the first, on the decode chain,
    # receives step t - 1's tokens from the last from step 1 on
    (Part.OUTER, Op.PP_RECV, lambda f: not f.first or (f.chain and not f.step0)),
    (Part.OUTER, Op.PP_SEND, lambda f: not f.last or (f.chain and not f.step_last)),
    (Part.ATTENTION, Op.ATTN_NORM, _always),
    (Part.ATTENTION, Op.ATTN_QKV, _always),
    (Part.ATTENTION, Op.ATTN_CORE, _always),
    (Part.ATTENTION, Op.ATTN_OUT, _always),
    (Part.ATTENTION, Op.ATTN_RESIDUAL, _always),
    # Megatron TP: the row-parallel output reduced (reduce-scatter + all-gather under SP)
    (Part.ATTENTION, Op.ATTN_REDUCESCATTER, lambda f: f.tp and f.sp),
    (Part.ATTENTION, Op.ATTN_ALLGATHER, lambda f: f.tp and f.sp),
    (Part.ATTENTION, Op.ATTN_ALLREDUCE, lambda f: f.tp and not f.sp),
    # context parallel: K/V (prefill) or partial results (decode) gathered
    (Part.ATTENTION, Op.ATTN_CP_ALLGATHER, lambda f: f.cp),
    (Part.DENSE, Op.FFN_NORM, _always),
    (Part.DENSE, Op.FFN_UP, _always),
    (Part.DENSE, Op.FFN_DOWN, _always),
    (Part.DENSE, Op.FFN_RESIDUAL, _always),
    (Part.DENSE, Op.FFN_REDUCESCATTER, lambda f: f.tp and f.sp),
    (Part.DENSE, Op.FFN_ALLGATHER, lambda f: f.tp and f.sp),
    (Part.DENSE, Op.FFN_ALLREDUCE, lambda f: f.tp and not f.sp),
    (Part.MOE, Op.MOE_NORM, _always),
    (Part.MOE, Op.MOE_ROUTER, _always),
    (Part.MOE, Op.MOE_TOPK, _always),
    (Part.MOE, Op.MOE_RESIDUAL, _always),
    # tokens travel to their experts' EP ranks and back
    (Part.MOE, Op.MOE_DISPATCH, lambda f: f.ep),
    (Part.MOE, Op.MOE_COMBINE, lambda f: f.ep),
    (Part.MOE, Op.MOE_ETP_REDUCE, lambda f: f.etp),
    (Part.MOE, Op.MOE_SHARED, lambda f: f.shared),
    # Megatron SP: gather the T/tp stream rows in, reduce-scatter back out
    (Part.MOE, Op.MOE_SHARED_ALLGATHER, lambda f: f.shared and f.sp),
    (Part.MOE, Op.MOE_SHARED_REDUCESCATTER, lambda f: f.shared and f.sp),
    (Part.MOE, Op.MOE_SHARED_ALLREDUCE, lambda f: f.shared and f.tp and not f.sp),
)
"""The oracle: every op the plan can call for, where it belongs and when. Routed experts
(``moe.expert``) are counted apart, per expert-parallel group."""

OUTER_OPS = tuple(op for part, op, _ in ORACLE if part is Part.OUTER)
"""The ops outside the layers, in their column order."""


def _ops(part: Part, facts: Facts) -> list[Op]:
    return [op for p, op, when in ORACLE if p is part and when(facts)]


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


def _facts(pool: Pool, model: Model) -> Facts:
    size, steps = pool.mesh.sizes, pool.workload.unrolled_steps
    moe = model.moe
    return Facts(
        tp=size["tp"] > 1, cp=size["cp"] > 1, sp=pool.parallel.sp_active, ep=size["ep"] > 1,
        etp=size["etp"] > 1, shared=moe is not None and moe.shared_experts > 0,
        chain=size["pp"] > 1 and steps > 1,
    )  # fmt: skip


@functools.lru_cache(maxsize=64)
def _outer_cases(facts: Facts) -> Bool:
    """bool ``[2, 2, 2, 2, len(OUTER_OPS)]``: the oracle's outer ops for each (first stage,
    last stage, first step, last step) case of ``facts`` (read-only; the oracle is a
    constant table, so each set of facts is asked once per process)."""
    cases = np.zeros((2, 2, 2, 2, len(OUTER_OPS)), dtype=np.bool_)
    for first, last, step0, step_last in np.ndindex(2, 2, 2, 2):
        at = Facts(**{**_asdict(facts), "first": bool(first), "last": bool(last),
                      "step0": bool(step0), "step_last": bool(step_last)})  # fmt: skip
        wanted = set(_ops(Part.OUTER, at))
        cases[first, last, step0, step_last] = [op in wanted for op in OUTER_OPS]
    cases.setflags(write=False)
    return cases


def _outer_table(facts: Facts, pp: int, steps: int) -> Bool:
    """bool ``[pp, steps, len(OUTER_OPS)]``: which outer ops each stage runs at each step.

    Only whether a stage is first or last and a step first or last matters, so the oracle
    is asked those 16 cases (:func:`_outer_cases`) and the answers are spread over every
    stage and step.
    """
    cases = _outer_cases(facts)
    s, t = np.arange(pp)[:, None], np.arange(steps)[None, :]
    out: Bool = cases[(s == 0) * 1, (s == pp - 1) * 1, (t == 0) * 1, (t == steps - 1) * 1]
    return out


def _asdict(f: Facts) -> dict[str, bool]:
    return {name: getattr(f, name) for name in Facts.__slots__}


def expected(pool: Pool, model: Model) -> Expected:
    """The expected op table of ``pool`` serving ``model``.

    >>> exp = expected(graph.pools[0], graph.model)  # doctest: +SKIP
    >>> exp.stage_block(0).sum()  # expected ops of one stage-0 rank  # doctest: +SKIP
    """
    facts = _facts(pool, model)
    steps, pp = pool.workload.unrolled_steps, pool.mesh.sizes["pp"]
    attention = _ops(Part.ATTENTION, facts)
    rows = [list(OUTER_OPS), attention + _ops(Part.DENSE, facts), attention + _ops(Part.MOE, facts)]
    width = max(len(r) for r in rows)
    col = np.full((3, len(Op)), -1, dtype=np.int64)
    for cls, ops in enumerate(rows):
        col[cls, [int(o) for o in ops]] = np.arange(len(ops))
    moe = model.moe
    is_moe = [moe is not None and moe.is_moe_layer(i) for i in range(model.layers)]
    split = layer_ranges(pool.parallel, model.layers)  # the plan's rule, not the builder's
    return Expected(
        steps=steps,
        mbs=pool.workload.micro_batches,
        pp=pp,
        width=width,
        col=col,
        n_cols=np.array([len(r) for r in rows], dtype=np.int64),
        layer_class=np.where(is_moe, MOE, DENSE).astype(np.int64),
        first=np.array([r.start for r in split], dtype=np.int64),
        count=np.array([len(r) for r in split], dtype=np.int64),
        outer=_outer_table(facts, pp, steps),
        experts=moe.experts if moe is not None else 0,
        redundant=pool.parallel.redundant_experts,
    )
