"""Build a disaggregated deployment: one unit of each pool, expanded on its own, and the
KV-cache transfers from the prefill pool to the decode pool (:mod:`dagen.graph.reshard`,
:mod:`dagen.graph.transfer`).

Example:
    >>> graph = build_deployment(load_deployment("samples/deepseek-v3-disagg.yaml"))  # doctest: +SKIP
    >>> [p.name for p in graph.pools]  # doctest: +SKIP
    ['prefill', 'decode']
"""

from __future__ import annotations

import dataclasses

from dagen.errors import PlanInfeasible
from dagen.graph.build import MAX_NODES, build_pools
from dagen.graph.ir import Graph
from dagen.graph.reshard import transfers
from dagen.graph.transfer import with_transfers
from dagen.plan.deploy import Deployment

__all__ = ["build_deployment"]


def build_deployment(dep: Deployment, *, max_nodes: int = MAX_NODES) -> Graph:
    """The graph of one unit of every pool of ``dep`` and the transfers between them.

    Raises:
        PlanInfeasible: a pool cannot be expanded, the pools disagree on the model, there
            is not exactly one prefill and one decode pool, or a layout cannot transfer.
    """
    phases = [p.plan.workload.phase.value for p in dep.pools]
    if sorted(phases) != ["decode", "prefill"]:
        raise PlanInfeasible(f"{dep.source}: pools: phases {phases}; a disaggregated deployment "
                             "has one prefill and one decode pool. Fix: set workload.phase of each")  # fmt: skip
    graph = build_pools([(p.name, p.plan) for p in dep.pools], max_nodes=max_nodes)
    pools = tuple(
        dataclasses.replace(g, units=p.units) for g, p in zip(graph.pools, dep.pools, strict=True)
    )
    graph = dataclasses.replace(graph, pools=pools, name=dep.name)
    src = next(p for p in graph.pools if not p.workload.decoding)
    dst = next(p for p in graph.pools if p.workload.decoding)
    return with_transfers(graph, transfers(src, dst, graph.model))
