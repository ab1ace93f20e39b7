"""Memory per GPU as the serving frameworks count it.

The graph layer prices what one rank of each stage holds (weights, KV cache,
activations, its largest message: :attr:`dagen.graph.pool.Pool.residency`). This module
adds the runtime's own allowance (CUDA context, cuBLAS and NCCL workspaces; the CUDA-graph
pool when decode replays graphs; the send and receive staging of the largest message,
which is also the all-to-all buffer), and sizes the **KV pool** the framework would
allocate from what is left (docs/cost-model.md, "Memory"):

=========  ==========================================  ==============================
framework  KV pool                                      default fraction ``f``
=========  ==========================================  ==============================
none       ``C − W − A − R``                            (the whole GPU)
vllm       ``f·C − W − A − R``                          0.9 (``gpu_memory_utilization``)
sglang     ``f·C − W``, and ``A + R ≤ (1 − f)·C``       0.88 (``mem_fraction_static``)
trtllm     ``f·(C − W − A − R)``                        0.9 (``free_gpu_memory_fraction``)
=========  ==========================================  ==============================

``C`` capacity, ``W`` weights, ``A`` the activation peak of one iteration, ``R`` the
runtime allowance. The plan fits when every rank's KV cache fits its pool and the pool
is not negative; otherwise the report names what overflows.

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
from dagen.graph.pool import Pool
from dagen.plan.model import Framework

__all__ = [
    "CUDA_GRAPH_BYTES",
    "DEFAULT_FRACTION",
    "RUNTIME_RESERVE_BYTES",
    "MemoryReport",
    "memory_report",
    "pool_memory_report",
]

I64 = npt.NDArray[np.int64]

GIB = float(1 << 30)
"""Bytes in a GiB: memory is reported in GiB, as nvidia-smi and the frameworks do."""

RUNTIME_RESERVE_BYTES = 1 << 30
"""Per-GPU allowance for the CUDA context, cuBLAS workspaces and NCCL's channel buffers
(1 GiB; docs/cost-model.md, "Memory", cites the measurements)."""

CUDA_GRAPH_BYTES = 1 << 29
"""The CUDA-graph memory pool of a decode server that replays graphs (0.5 GiB; vLLM logs
"Graph capturing finished … took 0.3–0.7 GiB" for 8–70B models)."""

DEFAULT_FRACTION = {
    Framework.NONE: 1.0,
    Framework.VLLM: 0.9,
    Framework.SGLANG: 0.88,
    Framework.TRTLLM: 0.9,
}
"""Each framework's default memory fraction (sources: docs/cost-model.md, "Memory")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryReport:
    """Bytes per rank (int64 ``[world]`` arrays) against the capacity of one GPU."""

    weights_bytes: I64
    routed_bytes: I64
    """The routed experts' share of ``weights_bytes`` (read only when a token arrives)."""
    kv_bytes: I64
    """The KV cache the workload needs on the rank."""
    activation_bytes: I64
    buffer_bytes: I64
    """The runtime allowance: reserve, CUDA-graph pool, message staging."""
    total_bytes: I64
    """What the rank uses: weights + KV + activations + buffers."""
    capacity_per_rank: I64
    """Each rank's ``hardware.capacity_bytes`` (its pool's)."""
    kv_pool_bytes: I64
    """The KV pool the framework leaves on the rank (negative: the rest does not fit)."""
    kv_seq_bytes: I64
    """The KV cache one sequence holds on the rank."""
    replicas: I64
    """Attention replicas of the rank's pool (the batch splits over them)."""
    framework: tuple[str, ...] = ("none",)
    """Each pool's framework (the memory rules applied)."""

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

    @property
    def overflow_rank(self) -> int | None:
        """The rank whose KV cache overflows its pool the most (None if all fit)."""
        short = self.kv_bytes - self.kv_pool_bytes
        if not short.size or short.max() <= 0:
            return None
        return int(np.argmax(short))

    def max_sequences(self) -> int:
        """The most sequences (over all replicas) whose KV cache fits every rank's pool."""
        per = np.maximum(self.kv_seq_bytes, 1)
        fit = np.floor(np.maximum(self.kv_pool_bytes, 0) / per) * self.replicas
        return int(fit.min()) if fit.size else 0


def _pool_columns(pool: Pool) -> list[I64]:
    res, stage = pool.residency, pool.mesh.stage
    graphs = CUDA_GRAPH_BYTES if pool.runtime.cuda_graphs and pool.workload.decoding else 0
    buffers = 2 * res.message_bytes + RUNTIME_RESERVE_BYTES + graphs
    cap = pool.hardware.capacity_bytes
    fw = pool.runtime.framework
    f = pool.runtime.memory_fraction or DEFAULT_FRACTION[fw]
    w, a = res.weights_bytes, res.activation_bytes
    if fw is Framework.SGLANG:
        kv_pool = np.floor(f * cap) - w
        kv_pool = np.where(a + buffers > (1 - f) * cap, cap - w - a - buffers, kv_pool)
    elif fw is Framework.TRTLLM:
        kv_pool = np.floor(f * np.maximum(cap - w - a - buffers, 0))
        kv_pool = np.where(cap - w - a - buffers < 0, cap - w - a - buffers, kv_pool)
    else:
        kv_pool = np.floor(f * cap) - w - a - buffers
    cols = [w, res.routed_bytes, res.kv_bytes, a, buffers, kv_pool.astype(np.int64),
            res.kv_seq_bytes]  # fmt: skip
    out = [np.asarray(c, dtype=np.int64)[stage] for c in cols]
    out.append(np.full(pool.world, cap, np.int64))
    out.append(np.full(pool.world, pool.mesh.sizes["dp"], np.int64))
    return out


def memory_report(graph: Graph) -> MemoryReport:
    """Memory of every rank of ``graph`` (see the module docstring).

    Example:
        >>> memory_report(graph).total_bytes.shape == (graph.world,)  # doctest: +SKIP
        True
    """
    return _report(graph.pools)


def pool_memory_report(pool: Pool) -> MemoryReport:
    """Memory of every rank of one pool (e.g. :func:`dagen.graph.build.describe_pool`'s,
    without expanding the graph)."""
    return _report((pool,))


def _report(pools: tuple[Pool, ...]) -> MemoryReport:
    per_pool = [_pool_columns(p) for p in pools]
    cols = [np.ascontiguousarray(np.concatenate([pc[i] for pc in per_pool])) for i in range(9)]
    w, routed, kv, act, buf, kv_pool, kv_seq, cap, replicas = cols
    return MemoryReport(
        weights_bytes=w, routed_bytes=routed, kv_bytes=kv, activation_bytes=act,
        buffer_bytes=buf, total_bytes=w + kv + act + buf, capacity_per_rank=cap,
        kv_pool_bytes=kv_pool, kv_seq_bytes=kv_seq, replicas=replicas,
        framework=tuple(p.runtime.framework.value for p in pools),
    )  # fmt: skip
