"""Alpha-beta time of every communication node.

A collective of ``n`` ranks moving ``S`` bytes (the nccl-tests "size" the graph stores in
``tmpl_bytes``: the all-reduce buffer, the gathered all-gather output, the
reduce-scatter input, the all-to-all send buffer) takes

    α · ⌈log₂ n⌉ + f(n) · S / (B · net_efficiency)

with the bus-bandwidth factor ``f`` of nccl-tests (doc/PERFORMANCE.md of NVIDIA/nccl-tests):
ring all-reduce ``2(n−1)/n``, all-gather and reduce-scatter ``(n−1)/n``, all-to-all
``(n−1)/n`` of the routed bytes. ``B`` and ``α`` are the intra-node link's when every
member sits on one host, else the inter-node link's (the NIC bounds a ring that leaves
the host). A send takes ``α + S / (B · net_efficiency)`` on the link between the two
hosts; its recv completes when the send does (see :mod:`dagen.cost.simulate`). MoE
dispatch and combine are priced as DeepEP's kernels instead (:mod:`dagen.cost.deepep`).
docs/cost-model.md ("Communication nodes") justifies the ``⌈log₂ n⌉`` latency term.

Example:
    >>> from dagen.cost.comm import bus_factor
    >>> from dagen.graph.ir import Coll
    >>> bus_factor(Coll.ALL_REDUCE, 8)
    1.75
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.cost.deepep import deepep_seconds, group_hosts, is_all_to_all
from dagen.graph.ir import Coll, Graph, Kind
from dagen.mesh import spans_hosts
from dagen.plan.model import Hardware

__all__ = [
    "ONESHOT_LATENCY_S",
    "bus_factor",
    "bus_factors",
    "comm_durations",
    "group_crosses_hosts",
    "group_sizes",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


ONESHOT_LATENCY_S = 3.0e-6
"""Fixed time of a one-shot custom all-reduce (aiconfigurator-core's measured TensorRT-LLM
custom all-reduce on H100: 2.8–3.6 µs at 16 KB on 2–8 GPUs; docs/cost-model.md)."""


def bus_factor(coll: Coll, n: int) -> float:
    """Bytes each rank moves per byte of ``size`` (nccl-tests' bus-bandwidth factor).

    >>> bus_factor(Coll.ALL_GATHER, 4), bus_factor(Coll.ALL_REDUCE, 1)
    (0.75, 0.0)
    """
    return float(bus_factors(np.array([int(coll)]), np.array([n]))[0])


def bus_factors(coll: npt.NDArray[np.integer], n: npt.NDArray[np.integer]) -> F64:
    """Vectorised :func:`bus_factor`."""
    nf = np.asarray(n, dtype=np.float64)
    base = np.where(nf > 0, (nf - 1) / np.maximum(nf, 1), 0.0)
    result: F64 = np.where(np.asarray(coll) == Coll.ALL_REDUCE, 2 * base, base)
    return result


def group_sizes(graph: Graph) -> I64:
    """int64 ``[groups]``: members of each process group."""
    return np.diff(graph.group_offsets).astype(np.int64)


def group_crosses_hosts(graph: Graph) -> Bool:
    """bool ``[groups]``: whether a group's members sit on more than one host."""
    return spans_hosts(graph.ranks.host, graph.group_offsets, graph.group_members)


def _steps(n: I64) -> F64:
    """⌈log₂ n⌉ latency steps of a collective of ``n`` ranks (0 for one rank)."""
    return np.ceil(np.log2(np.maximum(n, 1).astype(np.float64)))


def _link(hw: Hardware, inter: Bool) -> tuple[F64, F64]:
    """(bytes/s, seconds of latency) of the intra- or inter-node link, per element."""
    bw = np.where(inter, hw.inter_node_gbps, hw.intra_node_gbps) * 1e9 * hw.net_efficiency
    alpha = np.where(inter, hw.inter_node_latency_us, hw.intra_node_latency_us) * 1e-6
    return bw, alpha


def _collectives(graph: Graph, hw: Hardware, idx: I64, nbytes: F64, crosses: Bool) -> F64:
    group = graph.aux[idx].astype(np.int64)
    n = group_sizes(graph)[group]
    coll = graph.inst_coll[graph.inst[idx]]
    inter = crosses[group]
    bw, alpha = _link(hw, inter)
    seconds: F64 = alpha * _steps(n) + bus_factors(coll, n) * nbytes / bw
    # Inside one host the frameworks' one-shot all-reduce (TensorRT-LLM, vLLM and SGLang
    # custom all-reduce) reads every peer's buffer over NVLink in one step: it wins for
    # small messages, where NCCL pays its ⌈log₂ n⌉ latency steps.
    oneshot = ONESHOT_LATENCY_S + (n - 1) * nbytes / bw
    small = (coll == Coll.ALL_REDUCE) & ~inter
    seconds = np.where(small, np.minimum(seconds, oneshot), seconds)
    seconds[n <= 1] = 0.0
    return seconds


def _sends(graph: Graph, hw: Hardware, idx: I64, nbytes: F64) -> F64:
    host = graph.ranks.host
    inter = host[graph.rank[idx]] != host[graph.aux[idx]]
    bw, alpha = _link(hw, inter)
    seconds: F64 = alpha + nbytes / bw
    return seconds


def comm_durations(graph: Graph) -> F64:
    """Seconds of every collective and send node; 0 for compute nodes and recvs, each on
    its pool's links.

    A recv has no time of its own: it ends when the data of its send has arrived.
    """
    out = np.zeros(graph.n_nodes, dtype=np.float64)
    crosses = group_crosses_hosts(graph)
    hosts: I64 | None = None
    for p, pool in enumerate(graph.pools):
        at = graph.node_slice(p)
        first = at.start or 0
        kind = graph.kind[at]
        nbytes = graph.tmpl_bytes[graph.tmpl[at]].astype(np.float64)
        coll = np.flatnonzero(kind == Kind.COLLECTIVE)
        out[coll + first] = _collectives(graph, pool.hardware, coll + first, nbytes[coll], crosses)
        a2a = coll[is_all_to_all(graph, coll + first)]
        if a2a.size:  # MoE dispatch/combine run on DeepEP's kernels (dagen.cost.deepep)
            hosts = group_hosts(graph) if hosts is None else hosts
            out[a2a + first] = deepep_seconds(graph, pool, a2a + first, nbytes[a2a], hosts)
        send = np.flatnonzero(kind == Kind.SEND)
        out[send + first] = _sends(graph, pool.hardware, send + first, nbytes[send])
    return out
