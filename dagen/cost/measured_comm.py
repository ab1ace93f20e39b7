"""Collectives priced from aiconfigurator-core's measured NCCL, custom all-reduce and DeepEP.

The tables cover one host of 2–8 GPUs (:mod:`dagen.cost.kernels`): nccl-tests' time per
collective, the backend's one-shot custom all-reduce and DeepEP's intranode
dispatch/combine. A collective node whose group stays on one host takes:

* **all-reduce**: the lesser of NCCL's and the custom all-reduce's time for its buffer
  (the frameworks switch to the custom kernel where it wins, small and medium messages);
* **all-gather, reduce-scatter**: NCCL's time for the nccl-tests size the graph stores;
* **MoE dispatch / combine** (all-to-all over 8 GPUs): DeepEP's time for the rank's
  tokens in the pool's kernel family (``runtime.all_to_all``; ``auto``: normal in
  prefill, low-latency in decode, :func:`dagen.cost.deepep.mode_of`); other
  all-to-alls NCCL's.

Groups that span hosts, and groups of more than 8 GPUs, keep the roofline's alpha-beta
time, and a note counts them. ``measured`` takes only points inside the grid; ``auto``
also the extrapolation (e.g. a message larger than the largest measured one).

Example:
    >>> from dagen.cost.measured_comm import DEEPEP_GPUS
    >>> DEEPEP_GPUS
    8
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.cost.comm import group_crosses_hosts, group_sizes
from dagen.cost.deepep import mode_of
from dagen.cost.kernels import DeepEPMode, DeepEPPhase, KernelDataError, KernelTables
from dagen.cost.kernels_grid import Coverage
from dagen.graph.ir import Coll, Graph, Kind
from dagen.graph.ops import Op
from dagen.plan.model import AllToAll

__all__ = ["DEEPEP_GPUS", "MAX_GPUS", "collective_seconds"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

MAX_GPUS = 8
"""Largest group the NCCL tables measured (one host)."""
DEEPEP_GPUS = 8
"""GPUs of DeepEP's intranode benchmark (``node_num`` 1)."""


def _query(fn: object, *args: object, auto: bool) -> F64:
    shape = np.broadcast(*[np.asarray(a) for a in args if not isinstance(a, str)]).shape
    cov = np.zeros(shape, dtype=np.int8)
    try:
        sec = np.asarray(fn(*args, coverage=cov), dtype=np.float64)  # type: ignore[operator]
    except KernelDataError:  # the backend ships no such table
        return np.full(shape, np.nan)
    worst = Coverage.EXTRAPOLATED if auto else Coverage.MEASURED
    return np.where(cov <= worst, sec, np.nan)


def _moe_exchange(graph: Graph, p: int, tables: KernelTables, op: I64, auto: bool) -> F64:
    """DeepEP seconds of dispatch/combine templates (NaN for other ops)."""
    pool = graph.pools[p]
    d = pool.dims
    out = np.full(op.shape, np.nan)
    if not d.top_k:
        return out
    normal = mode_of(pool) is AllToAll.NORMAL  # runtime.all_to_all (auto: by phase)
    mode = DeepEPMode.NORMAL if normal else DeepEPMode.LOW_LATENCY
    for code, phase in ((Op.MOE_DISPATCH, DeepEPPhase.DISPATCH),
                        (Op.MOE_COMBINE, DeepEPPhase.COMBINE)):  # fmt: skip
        at = op == code
        if at.any():
            sec = _query(tables.deepep, mode, phase, max(d.dispatch_tokens, 1.0), d.h,
                         d.top_k, d.experts, auto=auto)  # fmt: skip
            out[at] = float(sec)
    return out


def _price(graph: Graph, p: int, tables: KernelTables, rows: I64, auto: bool) -> F64:
    """Seconds of unique (template, group size, collective, op) rows, NaN if uncovered."""
    tmpl, n, coll, op = rows.T
    nbytes = graph.tmpl_bytes[tmpl].astype(np.float64)
    out = np.full(len(rows), np.nan)
    for c in (Coll.ALL_REDUCE, Coll.ALL_GATHER, Coll.REDUCE_SCATTER, Coll.ALL_TO_ALL):
        at = coll == c
        if at.any():
            out[at] = _query(tables.nccl, c, n[at], nbytes[at], auto=auto)
    ar = coll == Coll.ALL_REDUCE
    if ar.any():
        custom = _query(tables.custom_all_reduce, n[ar], nbytes[ar], auto=auto)
        out[ar] = np.fmin(out[ar], custom)
    ep = (coll == Coll.ALL_TO_ALL) & (n == DEEPEP_GPUS)
    if ep.any():
        deepep = _moe_exchange(graph, p, tables, op[ep], auto)
        out[ep] = np.where(np.isfinite(deepep), deepep, out[ep])
    return out


def collective_seconds(
    graph: Graph, p: int, tables: KernelTables, *, auto: bool, notes: list[str]
) -> F64:
    """Seconds of every node of pool ``p``: measured for covered collectives, else NaN.

    Appends to ``notes`` how many collective nodes fell back to the roofline and why.
    """
    at = graph.node_slice(p)
    first = at.start or 0
    kind = graph.kind[at]
    out = np.full(len(kind), np.nan)
    local = np.flatnonzero(kind == Kind.COLLECTIVE)
    if not local.size:
        return out
    idx = local + first
    group = graph.aux[idx].astype(np.int64)
    n = group_sizes(graph)[group]
    inter = group_crosses_hosts(graph)[group]
    coll = graph.inst_coll[graph.inst[idx]].astype(np.int64)
    eligible = ~inter & (n >= 2) & (n <= MAX_GPUS)
    sec = np.full(len(idx), np.nan)
    if eligible.any():
        # A template is one op (so one collective kind): (template, group size) is the
        # whole key, packed into one int64 so the unique pass is a 1-d sort.
        hit = idx[eligible]
        key = graph.tmpl[hit].astype(np.int64) * (MAX_GPUS + 1) + n[eligible]
        uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
        reps = hit[first]
        rows = np.stack([graph.tmpl[reps].astype(np.int64), uniq % (MAX_GPUS + 1),
                         coll[eligible][first], graph.op[reps].astype(np.int64)], 1)  # fmt: skip
        sec[eligible] = _price(graph, p, tables, rows, auto)[inv.ravel()]
    _fallback_notes(notes, tables, inter & (n >= 2), eligible & ~np.isfinite(sec), n > MAX_GPUS)
    out[local] = sec
    return out


def _fallback_notes(notes: list[str], tables: KernelTables, inter: npt.NDArray[np.bool_],
                    missed: npt.NDArray[np.bool_], wide: npt.NDArray[np.bool_]) -> None:  # fmt: skip
    src = tables.source
    if inter.any():
        notes.append(f"{int(inter.sum()):,} inter-node collective nodes: {src} measures "
                     "one host only; priced by the roofline")  # fmt: skip
    if (wide & ~inter).any():
        notes.append(f"{int((wide & ~inter).sum()):,} collective nodes of more than "
                     f"{MAX_GPUS} GPUs on one host: not in {src}; priced by the roofline")  # fmt: skip
    if missed.any():
        notes.append(f"{int(missed.sum()):,} intra-node collective nodes outside {src}'s "
                     "measured sizes; priced by the roofline")  # fmt: skip
