"""What each query of :mod:`dagen.cost.kernels` reads: table, keys, axes, latency columns.

A :class:`Spec` names one aiconfigurator-core table, the categorical columns that select
a slice, the numeric axes interpolated within it (with the power the latency grows by
above the grid, see :mod:`dagen.cost.kernels_grid`) and the columns summed into the
latency. :func:`load_table` reads it into a :class:`SlicedTable`.

Example:
    >>> [a.column for a in GEMM.axes], GEMM.unit
    (['m', 'n', 'k'], 0.001)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dagen.cost.kernels_data import read_columns
from dagen.cost.kernels_grid import Axis, SlicedTable, factorize
from dagen.graph.codes import Coll

__all__ = [
    "CONTEXT_ATTENTION",
    "CUSTOM_ALL_REDUCE",
    "DEEPEP",
    "GEMM",
    "GENERATION_ATTENTION",
    "MLA_CONTEXT",
    "MLA_GENERATION",
    "MOE",
    "NCCL_DTYPES",
    "NCCL_OPS",
    "NCCL_TABLE",
    "DeepEPMode",
    "DeepEPPhase",
    "Spec",
    "gqa_group",
    "load_table",
]

F64 = npt.NDArray[np.float64]
Arr = npt.NDArray[np.generic]
Like = npt.ArrayLike


class DeepEPMode(enum.StrEnum):
    """DeepEP kernel family."""

    NORMAL = "normal"
    LOW_LATENCY = "low_latency"


class DeepEPPhase(enum.StrEnum):
    """Half of an expert-parallel exchange."""

    DISPATCH = "dispatch"
    COMBINE = "combine"


@dataclass(frozen=True, slots=True, eq=False)
class Spec:
    """How one query reads one table."""

    table: str
    keys: tuple[str, ...]
    axes: tuple[Axis, ...]
    latency: tuple[str, ...] = ("latency",)
    """Columns summed into the latency."""
    unit: float = 1e-3
    """Seconds per table unit (ms unless said)."""
    keep: Mapping[str, object] = field(default_factory=dict)
    """Rows kept when the column exists: column == value."""
    donor: str | None = None
    """Backend whose directory holds the table when the requested one has none."""


def _axes(*spec: tuple[str, float | None]) -> tuple[Axis, ...]:
    return tuple(Axis(c, p) for c, p in spec)


_ATTN_KEYS = ("attn_dtype", "kv_cache_dtype", "head_dim", "window_size", "group")
GEMM = Spec("gemm_perf", ("gemm_dtype",), _axes(("m", 1), ("n", 1), ("k", 1)))
CONTEXT_ATTENTION = Spec(
    "context_attention_perf",
    _ATTN_KEYS,
    _axes(("batch_size", 1), ("isl", 2), ("num_key_value_heads", 1)),
    keep={"beam_width": 1},
)
GENERATION_ATTENTION = Spec(
    "generation_attention_perf",
    _ATTN_KEYS,
    _axes(("batch_size", 1), ("step", 1), ("num_key_value_heads", 1)),
    keep={"beam_width": 1},
)
_MLA_KEYS = ("mla_dtype", "kv_cache_dtype")
MLA_CONTEXT = Spec(
    "context_mla_perf", _MLA_KEYS, _axes(("batch_size", 1), ("isl", 2), ("num_heads", 1))
)
MLA_GENERATION = Spec(
    "generation_mla_perf", _MLA_KEYS, _axes(("batch_size", 1), ("step", 1), ("num_heads", 1))
)
_MOE_KEYS = ("moe_dtype", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size")
MOE = Spec(
    "moe_perf",
    (*_MOE_KEYS, "moe_ep_size", "distribution"),
    _axes(("num_tokens", 1)),
)
NCCL_TABLE = Spec(
    "nccl_perf", ("op_name", "nccl_dtype"), _axes(("num_gpus", None), ("message_size", 1))
)
CUSTOM_ALL_REDUCE = Spec(
    "custom_allreduce_perf", ("allreduce_dtype",), _axes(("num_gpus", None), ("message_size", 1))
)
_EP_KEYS = ("node_num", "hidden_size", "num_topk", "num_experts")
DEEPEP = {
    (mode, phase): Spec(
        f"wideep_deepep_{'ll' if mode is DeepEPMode.LOW_LATENCY else 'normal'}_perf",
        _EP_KEYS,
        _axes(("num_token", 1))
        if mode is DeepEPMode.LOW_LATENCY
        else _axes((f"{phase}_sms", None), ("num_token", 1)),
        latency=(f"{phase}_avg_t_us",)
        if mode is DeepEPMode.LOW_LATENCY
        else (f"{phase}_transmit_us", f"{phase}_notify_us"),
        unit=1e-6,
        donor="sglang",
    )
    for mode in DeepEPMode
    for phase in DeepEPPhase
}
NCCL_OPS = {
    Coll.ALL_REDUCE: "all_reduce",
    Coll.ALL_GATHER: "all_gather",
    Coll.REDUCE_SCATTER: "reduce_scatter",
    Coll.ALL_TO_ALL: "alltoall",
}
NCCL_DTYPES = {"half": ("half", 2), "int8": ("int8", 1)}
NCCL_DTYPES |= {a: NCCL_DTYPES["half"] for a in ("bfloat16", "float16", "bf16", "fp16")}
NCCL_DTYPES |= {"fp8": NCCL_DTYPES["int8"]}


def load_table(path: Path, spec: Spec, *, monotone: bool = False) -> SlicedTable:
    """Read a table, keep one latency per distinct key + axis point, and slice it.

    Where several kernel sources measured a point (vLLM's and SGLang's attention lanes,
    graph vs eager custom all-reduce) the source with the most rows wins, CUDA-graph
    before eager; repeated rows of one source are averaged.
    """
    names = list(spec.keys) + [a.column for a in spec.axes]
    extra = ["kernel_source", "num_heads", "num_key_value_heads", *spec.keep]
    cols = read_columns(path, list(dict.fromkeys(names + list(spec.latency) + extra)))
    n = len(next(iter(cols.values())))
    keep = np.ones(n, dtype=np.bool_)
    for col, value in spec.keep.items():
        if col in cols:
            keep &= cols[col] == value
    cols.setdefault("window_size", np.zeros(n, dtype=np.int64))
    if "group" in spec.keys:
        cols["group"] = gqa_group(cols["num_heads"], cols["num_key_value_heads"])
    seconds = np.stack([cols[c] for c in spec.latency]).astype(np.float64).sum(0) * spec.unit
    source = cols.get("kernel_source", np.zeros(n, dtype=np.int64))
    rows, seconds = _distinct([cols[c][keep] for c in names], source[keep], seconds[keep])
    picked = {c: cols[c][keep][rows] for c in names}
    return SlicedTable(
        keys=spec.keys, axes=spec.axes, columns=picked, seconds=seconds, monotone=monotone
    )


def gqa_group(heads: Like, kv_heads: Like) -> F64:
    """GQA group size, the attention tables' slice key standing for (heads, kv_heads)."""
    ratio: F64 = np.asarray(heads, dtype=np.float64) / np.asarray(kv_heads, dtype=np.float64)
    return ratio


def _distinct(columns: list[Arr], source: Arr, seconds: F64) -> tuple[npt.NDArray[np.intp], F64]:
    """One row per distinct point: (representative rows, mean seconds of the best source)."""
    point = factorize(columns)[0]
    names, inv, counts = np.unique(source, return_inverse=True, return_counts=True)
    order = sorted(range(len(names)), key=lambda i: (-counts[i], "eager" in str(names[i]).lower()))
    rank = np.argsort(order)[inv.ravel()]
    best = np.full(point.max() + 1, len(names))
    np.minimum.at(best, point, rank)
    mine = np.flatnonzero(rank == best[point])
    total = np.bincount(point[mine], seconds[mine])
    count = np.bincount(point[mine])
    _, first = np.unique(point[mine], return_index=True)
    return mine[first], total / count
