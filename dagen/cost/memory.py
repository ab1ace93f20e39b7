"""Memory per GPU: what the graph says each rank holds, plus the runtime's allowance.

The graph layer prices what one rank of each stage holds (weights, KV cache,
activations, its largest message: :attr:`dagen.graph.pool.Pool.residency`); this module
spreads it over every rank by stage, adds the send and receive staging of that largest
message and a fixed runtime reserve, and weighs the total against the pool's capacity.
Formulas and assumptions: docs/cost-model.md ("Memory").

Example:
    >>> from dagen.cost.memory import memory_report
    >>> report = memory_report(graph)  # doctest: +SKIP
    >>> report.peak_fraction  # doctest: +SKIP
    0.034
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.graph.ir import Graph

__all__ = ["RUNTIME_RESERVE_BYTES", "MemoryReport", "memory_report"]

I64 = npt.NDArray[np.int64]

RUNTIME_RESERVE_BYTES = 1 << 30
"""Fixed per-GPU allowance for the CUDA context, cuBLAS workspaces and NCCL's channel
buffers (an assumption: 1 GiB; see docs/cost-model.md)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryReport:
    """Bytes per rank (int64 ``[world]`` arrays) against the capacity of one GPU."""

    weights_bytes: I64
    routed_bytes: I64
    """The routed experts' share of ``weights_bytes`` (read only when a token arrives)."""
    kv_bytes: I64
    activation_bytes: I64
    buffer_bytes: I64
    total_bytes: I64
    capacity_per_rank: I64
    """Each rank's ``hardware.memory_gb`` · 1e9 (its pool's)."""

    @property
    def capacity_bytes(self) -> int:
        """The capacity of the fullest rank's GPU (every GPU's, in a single pool)."""
        if not self.capacity_per_rank.size:
            return 0
        return int(self.capacity_per_rank[self.peak_rank])

    @property
    def peak_rank(self) -> int:
        """The fullest rank relative to its capacity (the lowest of ties)."""
        if not self.total_bytes.size:
            return 0
        return int(np.argmax(self.total_bytes / self.capacity_per_rank))

    @property
    def peak_fraction(self) -> float:
        """Fullest rank's total over its capacity."""
        if not self.total_bytes.size:
            return 0.0
        return float(np.max(self.total_bytes / self.capacity_per_rank))


def memory_report(graph: Graph) -> MemoryReport:
    """Memory of every rank of ``graph`` (see the module docstring).

    Example:
        >>> memory_report(graph).total_bytes.shape == (graph.world,)  # doctest: +SKIP
        True
    """
    parts: list[list[I64]] = [[], [], [], [], [], []]
    for pool in graph.pools:
        res, stage = pool.residency, pool.mesh.stage
        buffers = 2 * res.message_bytes + RUNTIME_RESERVE_BYTES
        for out, per_stage in zip(
            parts,
            (res.weights_bytes, res.routed_bytes, res.kv_bytes, res.activation_bytes, buffers),
            strict=False,
        ):
            out.append(per_stage[stage])
        parts[5].append(np.full(pool.world, round(pool.hardware.memory_gb * 1e9), np.int64))
    cols = [np.ascontiguousarray(np.concatenate(p)) for p in parts]
    return MemoryReport(
        weights_bytes=cols[0],
        routed_bytes=cols[1],
        kv_bytes=cols[2],
        activation_bytes=cols[3],
        buffer_bytes=cols[4],
        total_bytes=cols[0] + cols[2] + cols[3] + cols[4],
        capacity_per_rank=cols[5],
    )
