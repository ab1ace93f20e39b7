"""Deadlock freedom: the contracted graph has no cycle, and program order runs.

The graph checked is the IR's *contracted* graph (see
:mod:`dagen.graph.algo.contract`): every collective instance is one synchronisation
vertex of all its members, every send has an edge to its recv. A cycle there is a
deadlock: each rank on it waits for another. The engines (certificate, rank sweep,
exact Kahn) are the graph layer's; this module turns their verdict into findings.

Example:
    >>> check_acyclic(graph)  # doctest: +SKIP
    []
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from dagen.checks.common import Code, make
from dagen.checks.shared import Shared
from dagen.findings import Finding, Severity, count, rank_list
from dagen.graph.algo.certify import certify
from dagen.graph.algo.cycles import cycle_text, key_nodes
from dagen.graph.algo.sweep import SweepResult, sweep
from dagen.graph.algo.topo import Exact
from dagen.graph.ir import Graph

__all__ = ["check_acyclic"]

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

log = logging.getLogger(__name__)


def check_acyclic(graph: Graph, shared: Shared | None = None) -> list[Finding]:
    """``GRAPH-CYCLE`` if the contracted graph has a cycle (printed as a path of ranks and
    ops); ``GRAPH-SERIAL-DEADLOCK`` (warning) if it is acyclic but running every rank's
    ops one after another in program order deadlocks.

    Example:
        >>> check_acyclic(graph)  # doctest: +SKIP
        []
    """
    sh = shared or Shared(graph)
    if not sh.rank_major:
        return _exact_check(graph, None)
    if certify(graph, sh):  # a verified schedule key proves what the sweep would
        sh.certified = True
        return []
    sw = sweep(graph, sh)
    if sw.complete:
        return []
    return _exact_check(graph, sw)


def _exact_check(graph: Graph, sw: SweepResult | None) -> list[Finding]:
    ex = Exact.run(graph, sw)
    con, stuck = ex.con, ex.stuck
    if stuck.any():
        message, nodes = cycle_text(graph, con, stuck)
        ranks = graph.rank[nodes]
        data = {
            "cycle_nodes": int(nodes.size),
            "cycle_ranks": np.unique(ranks).tolist()[:64],
            "stuck_vertices": int(np.count_nonzero(stuck)),
        }
        return [
            make(
                graph,
                Code.GRAPH_CYCLE,
                message,
                "make every rank issue its collectives and sends/recvs in one global order "
                "(the same order on every member of a group), and check that no edge runs "
                "from a later op back to an earlier one",
                nodes=key_nodes(graph, nodes),
                ranks=ranks,
                data=data,
            )
        ]
    return [] if sw is None else [_serial_deadlock(graph, sw)]


def _serial_deadlock(graph: Graph, sw: SweepResult) -> Finding:
    waiting = sw.threshold[sw.threshold < sw.rank_start[1:]]
    ranks = graph.rank[waiting]
    ops = "; ".join(graph.node_ids(waiting[:4]))
    return make(
        graph,
        Code.GRAPH_SERIAL_DEADLOCK,
        f"the dependency graph is acyclic, but running each rank's ops in program order "
        f"deadlocks: {count(waiting.size, 'rank')} ({rank_list(ranks)}) wait at ports "
        f"whose peers are blocked, e.g. {ops}",
        "lay out each rank's ops so that every recv or collective comes after the ops its "
        "peers need first (the builder's issue order)",
        nodes=waiting,
        severity=Severity.WARNING,
        data={"waiting_ranks": int(waiting.size)},
    )
