"""MoE dispatch and combine on DeepEP's two kernel families, and the SMs they take.

DeepEP (github.com/deepseek-ai/DeepEP, ``docs/legacy.md`` "Performance", the V1 tables
measured on H800 with ~160 GB/s NVLink and a CX7 400 Gb/s NIC, ~50 GB/s, per GPU) has

* **normal** kernels (training, prefill): a token crosses the network once per
  destination *node* and NVLink forwards it to that node's experts. Measured
  "bottleneck bandwidth" (logical bytes, each token counted once per node it reaches):
  153/158 GB/s NVLink intranode at EP8 (dispatch/combine), 43/43, 58/57 and 51/50 GB/s
  RDMA internode at EP16/32/64 — the median 50.5 GB/s is the NIC's ~50 GB/s, so
  ``η = 1.0`` of ``inter_node_gbps`` on deduplicated bytes, ``η = 0.97`` of
  ``intra_node_gbps`` inside a node (155.5 of 160 GB/s);
* **low-latency** kernels (decode): every token copy goes straight to its expert's
  rank over RDMA (NVLink for peers on the same node). At EP128 and EP256, where 94–97 %
  of copies leave the node, dispatch and combine reach 39–40 GB/s of the NIC's 50:
  ``η = 0.78``; at EP8 (one node) 98/127 GB/s of 160: ``η = 0.70`` of NVLink.

A dispatch or combine of ``S`` bytes (every top-k copy, ``tmpl_bytes``) over ``n``
ranks on ``H`` hosts then takes

    normal, H > 1:      α·⌈log₂ n⌉ + S · H(1 − (1 − 1/H)^k)/k / (η_N · B_inter)
    normal, H = 1:      α·⌈log₂ n⌉ + S · (n − 1)/n / (η_N' · B_intra)
    low-latency, H > 1: α + S · (1 − 1/H) / (η_L · B_inter)
    low-latency, H = 1: α + S · (n − 1)/n / (η_L' · B_intra)

where ``H(1 − (1 − 1/H)^k)`` is the expected number of nodes ``k`` uniformly routed
copies reach. ``runtime.all_to_all: auto`` is low-latency in a decode pool and normal in
a prefill pool, as DeepEP advises.

**SM contention.** Normal kernels run on SMs (DeepSeek-V3 technical report, arXiv
2412.19437 §3.2.2: "only 20 SMs are sufficient to fully utilize the bandwidths of IB
and NVLink", of the H800's 132); the low-latency ones overlap through a receive hook
"without costing any GPU SMs" (DeepEP ``docs/legacy.md``). When communication overlaps
compute (``schedule.overlap: two_batch``) with normal kernels, every compute node of a
MoE layer is slowed by the share the communication kernels hold: ``t / (1 − 20/132)``.

Example:
    >>> round(expected_nodes(4, 8), 3)
    3.6
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.cost.routing import pool_load_peak
from dagen.graph.codes import Phase
from dagen.graph.ir import Graph, Kind, Op
from dagen.graph.overlap import NAME as OVERLAP_SCHEDULE
from dagen.graph.pool import Pool
from dagen.plan.model import AllToAll

__all__ = [
    "COMM_SMS",
    "GPU_SMS",
    "contended",
    "deepep_seconds",
    "expected_nodes",
    "group_hosts",
    "is_all_to_all",
    "mode_of",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

ETA_NORMAL_INTER = 1.0
"""Normal kernels, deduplicated bytes per NIC byte/s (DeepEP V1 table: 43–58 GB/s, median
50.5, on a ~50 GB/s CX7)."""
ETA_NORMAL_INTRA = 0.97
"""Normal kernels inside a node (153/158 GB/s of ~160 GB/s H800 NVLink)."""
ETA_LL_INTER = 0.78
"""Low-latency kernels across nodes (39 GB/s of ~50 GB/s at EP128/EP256)."""
ETA_LL_INTRA = 0.70
"""Low-latency kernels inside a node (EP8: 98 and 127 GB/s of ~160 GB/s)."""
COMM_SMS = 20
"""SMs DeepEP's normal kernels take (DeepSeek-V3 report, arXiv 2412.19437 §3.2.2)."""
GPU_SMS = 132
"""SMs of the H800/H100 SXM the figure is a share of (NVIDIA H100 datasheet)."""


def mode_of(pool: Pool) -> AllToAll:
    """The kernels a pool's dispatch and combine run on (``auto`` resolved by phase)."""
    mode = pool.runtime.all_to_all
    if mode is AllToAll.AUTO:
        return AllToAll.LOW_LATENCY if pool.phase is Phase.DECODE else AllToAll.NORMAL
    return mode


def expected_nodes(hosts: npt.ArrayLike, k: npt.ArrayLike) -> F64:
    """Expected number of the ``hosts`` nodes that ``k`` uniformly routed copies reach.

    >>> expected_nodes(1, 8).item(), expected_nodes(2, 1).item()
    (1.0, 1.0)
    """
    h = np.maximum(np.asarray(hosts, dtype=np.float64), 1.0)
    out: F64 = h * (1.0 - (1.0 - 1.0 / h) ** np.asarray(k, dtype=np.float64))
    return out


def group_hosts(graph: Graph) -> I64:
    """int64 ``[groups]``: distinct hosts among each group's members."""
    sizes = np.diff(graph.group_offsets).astype(np.int64)
    gid = np.repeat(np.arange(sizes.shape[0], dtype=np.int64), sizes)
    host = graph.ranks.host[graph.group_members].astype(np.int64)
    pairs = np.unique(gid * (int(host.max(initial=0)) + 1) + host)
    span = int(host.max(initial=0)) + 1
    out: I64 = np.bincount(pairs // span, minlength=sizes.shape[0]).astype(np.int64)
    return out


def deepep_seconds(graph: Graph, pool: Pool, idx: I64, nbytes: F64, hosts: I64) -> F64:
    """Seconds of dispatch/combine nodes ``idx`` (moving ``nbytes``) in ``pool``'s mode,
    at the busiest rank's share (:mod:`dagen.cost.routing`)."""
    hw = pool.hardware
    nbytes = nbytes * pool_load_peak(pool)
    group = graph.aux[idx].astype(np.int64)
    n = np.diff(graph.group_offsets).astype(np.int64)[group].astype(np.float64)
    h = hosts[group].astype(np.float64)
    inter = h > 1
    b_inter, b_intra = hw.inter_node_gbps * 1e9, hw.intra_node_gbps * 1e9
    a_inter, a_intra = hw.inter_node_latency_us * 1e-6, hw.intra_node_latency_us * 1e-6
    local = (n - 1) / np.maximum(n, 1)
    if mode_of(pool) is AllToAll.NORMAL:
        steps = np.ceil(np.log2(np.maximum(n, 1)))
        k = max(pool.dims.top_k, 1)
        across = nbytes * expected_nodes(h, k) / k / (ETA_NORMAL_INTER * b_inter)
        within = nbytes * local / (ETA_NORMAL_INTRA * b_intra)
        seconds: F64 = np.where(inter, a_inter * steps + across, a_intra * steps + within)
    else:
        across = nbytes * (1 - 1 / np.maximum(h, 1)) / (ETA_LL_INTER * b_inter)
        within = nbytes * local / (ETA_LL_INTRA * b_intra)
        seconds = np.where(inter, a_inter + across, a_intra + within)
    seconds[n <= 1] = 0.0
    return seconds


def is_all_to_all(graph: Graph, idx: I64) -> npt.NDArray[np.bool_]:
    """Which nodes ``idx`` are MoE dispatch or combine."""
    return np.isin(graph.op[idx], np.array([int(Op.MOE_DISPATCH), int(Op.MOE_COMBINE)]))


def contended(graph: Graph, seconds: F64) -> F64:
    """``seconds`` with the compute nodes of every MoE layer (a layer with a dispatch) of
    a two-batch-overlap pool on normal kernels slowed by the SMs those kernels take:
    ``t / (1 − COMM_SMS / GPU_SMS)``. Dense layers, the embedding and the head run while
    no all-to-all is in flight and keep their time."""
    out = seconds
    for p, pool in enumerate(graph.pools):
        if pool.schedule.name != OVERLAP_SCHEDULE or mode_of(pool) is not AllToAll.NORMAL:
            continue
        if out is seconds:
            out = seconds.copy()
        at = graph.node_slice(p)
        layer = graph.layer[at]
        moe = np.unique(layer[graph.op[at] == Op.MOE_DISPATCH])
        slowed = (graph.kind[at] == Kind.COMPUTE) & np.isin(layer, moe)
        out[at][slowed] /= 1.0 - COMM_SMS / GPU_SMS
    return out
