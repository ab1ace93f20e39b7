"""The cost estimate as exporters show it: a plain summary and per-node times.

The estimate is read by attribute (see :class:`dagen.cost.Estimate`); the exporters
only summarise it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.export.summary import human_bytes, plain
from dagen.graph.ir import Graph

__all__ = [
    "MEMORY_PARTS",
    "SCALARS",
    "estimate_summary",
    "key_figures",
    "memory_table",
    "node_times",
]

F64 = npt.NDArray[np.float64]

SCALARS = (
    "makespan_s",
    "ttft_s",
    "tpot_s",
    "tokens_per_s",
    "tokens_per_s_per_gpu",
    "bubble_fraction",
)
"""Scalar fields of the estimate copied into every summary, in this order."""

MEMORY_PARTS = ("weights", "routed", "kv", "activation", "buffer", "total")
"""Per-rank memory parts, each bytes per rank (``routed``: the routed experts' share of
``weights``)."""

CRITICAL_PATH_LIMIT = 10_000
"""Node ids of the critical path listed in the JSON summary at most (the rest counted)."""


def _number(value: Any) -> float | None:
    if value is None:
        return None
    x = float(value)
    return x if np.isfinite(x) else None


def node_times(estimate: Any | None, n_nodes: int) -> tuple[F64, F64] | None:
    """``(start_s, duration_s)`` per node, or ``None`` without an estimate."""
    if estimate is None:
        return None
    start = np.asarray(estimate.start_s, dtype=np.float64)
    duration = np.asarray(estimate.duration_s, dtype=np.float64)
    if start.shape != (n_nodes,) or duration.shape != (n_nodes,):
        return None
    return start, duration


def memory_table(estimate: Any) -> dict[str, Any]:
    """Memory per rank: each part's bytes per rank, the capacity, and the fullest rank."""
    memory = estimate.memory
    parts = {p: np.asarray(getattr(memory, f"{p}_bytes"), dtype=np.int64) for p in MEMORY_PARTS}
    out: dict[str, Any] = {"capacity_bytes": int(memory.capacity_bytes)}
    total = parts["total"]
    if total.size:
        worst = int(np.argmax(total))
        out["max_rank"] = worst
        out["max"] = {p: int(a[worst]) for p, a in parts.items()}
    out["per_rank"] = {p: a.tolist() for p, a in parts.items()}
    return out


def estimate_summary(estimate: Any | None, graph: Graph) -> dict[str, Any] | None:
    """The estimate as plain JSON data, or ``None`` when there is none."""
    if estimate is None:
        return None
    out: dict[str, Any] = {k: _number(getattr(estimate, k, None)) for k in SCALARS}
    out["memory"] = memory_table(estimate)
    busy = getattr(estimate, "busy_fraction", None)
    out["busy_fraction"] = None if busy is None else np.asarray(busy, dtype=np.float64).tolist()
    path = np.asarray(getattr(estimate, "critical_path", ()), dtype=np.int64)
    out["critical_path"] = {
        "length": int(path.size),
        "nodes": graph.node_ids(path[:CRITICAL_PATH_LIMIT]),
    }
    out["verdicts"] = [plain(v) for v in getattr(estimate, "verdicts", ())]
    if priced := getattr(estimate, "priced_by", None):  # measured/auto: who priced the nodes
        out["priced_by"] = dict(priced)
        out["cost_notes"] = list(getattr(estimate, "cost_notes", ()))
    return out


def key_figures(estimate: Any | None) -> list[str]:
    """The estimate in a few words each: peak memory, TTFT and/or TPOT, throughput.

    Memory is the fullest rank's total against the capacity (binary units, as
    ``nvidia-smi`` counts); TTFT is the prefill makespan, TPOT one decode step
    (docs/cost-model.md, "Schedule").

    Example:
        >>> key_figures(est)  # doctest: +SKIP
        ['memory 41.3 GiB of 79.6 GiB (51.9 %)', 'TPOT 60.18 ms', '127,611 tokens/s (399/GPU)']
    """
    if estimate is None:
        return []
    total = np.asarray(estimate.memory.total_bytes, dtype=np.float64)
    cap = float(estimate.memory.capacity_bytes)
    out = []
    if total.size and cap > 0:
        worst = float(total.max())
        out.append(f"memory {human_bytes(worst)} of {human_bytes(cap)} ({100 * worst / cap:.1f} %)")
    if (ttft := _number(getattr(estimate, "ttft_s", None))) is not None:
        out.append(f"TTFT {_time(ttft)}")
    if (tpot := _number(getattr(estimate, "tpot_s", None))) is not None:
        out.append(f"TPOT {_time(tpot)}")
    rate = _number(getattr(estimate, "tokens_per_s", None))
    per_gpu = _number(getattr(estimate, "tokens_per_s_per_gpu", None))
    if rate is not None and per_gpu is not None:
        out.append(f"{rate:,.0f} tokens/s ({per_gpu:,.0f}/GPU)")
    if share := (getattr(estimate, "priced_by", None) or {}).get("measured"):
        out.append(f"{100 * share:.0f} % of nodes measured")
    return out


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms" if abs(seconds) < 1 else f"{seconds:.4g} s"
