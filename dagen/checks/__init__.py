"""Graph checks: prove a built graph sound, or say exactly where it is not.

Every check is a free function taking the graph first and returning a list of
:class:`~dagen.findings.Finding` (data, never an exception); :func:`check_graph` runs
them all. Codes, meanings and algorithms: docs/graph-checks.md.

- :func:`check_acyclic`: no deadlock (``GRAPH-CYCLE``, ``GRAPH-SERIAL-DEADLOCK``).
- :func:`check_completeness`: every op of every layer, micro-batch and step exactly once
  per rank; every expert once per expert-parallel group; no idle rank; every
  micro-batch through every stage (each pool of a multi-pool graph on its own view).
- :func:`check_comms`: every send has one recv with the same bytes and micro-batch;
  every collective instance joined by exactly its group with equal sizes and one op.
- :func:`check_collective_order`: the members of a group issue its collectives in the
  same order.
- :func:`check_transfers`: a disaggregated graph's KV-cache transfers: every request's
  cache to exactly one decode replica, whole, in the model's bytes, in order.

The engines these checks run on (contraction, the rank sweep, the schedule
certificate, exact Kahn) and the graph edits the fault-injection tests use are graph
algorithms, in :mod:`dagen.graph.algo`.

Example:
    >>> from dagen.checks import check_graph  # doctest: +SKIP
    >>> check_graph(graph)  # doctest: +SKIP
    []
"""

from __future__ import annotations

import logging
import time

from dagen.checks.acyclic import check_acyclic
from dagen.checks.common import Code
from dagen.checks.comms import check_comms
from dagen.checks.completeness import check_completeness
from dagen.checks.order import check_collective_order
from dagen.checks.shared import Shared
from dagen.checks.transfers import check_transfers
from dagen.errors import GraphError
from dagen.findings import Finding, finding
from dagen.graph.algo import drop_nodes, guard
from dagen.graph.ir import Graph
from dagen.graph.transfer import transfer_nodes

__all__ = [
    "Code",
    "check_acyclic",
    "check_collective_order",
    "check_comms",
    "check_completeness",
    "check_graph",
    "check_transfers",
]

log = logging.getLogger(__name__)


def check_graph(graph: Graph, *, lint: bool = False) -> list[Finding]:
    """Run every graph check; findings in check order (acyclic, completeness, comms, order).

    The checks need only that the columns index what they claim (shapes, codes, ranks,
    templates, instances and groups in range); that cheap guard always runs, and a graph
    failing it gets a single ``GRAPH-IR`` finding and nothing else. They do *not* rely on
    the edge-direction invariants of :meth:`Graph.lint` (a backward or cross-rank data
    edge is just an edge to the acyclicity check); ``lint=True`` runs the full IR lint
    first as well.

    Example:
        >>> findings = check_graph(graph)  # doctest: +SKIP
        >>> [f.code for f in findings]  # doctest: +SKIP
        []
    """
    shared = Shared(graph)
    try:
        graph.lint() if lint else guard(graph, shared)
    except GraphError as exc:
        return [
            finding(
                Code.GRAPH_IR,
                str(exc),
                fix="this is a bug in the graph builder (or in code that edited the graph); "
                "report it with the plan",
            )
        ]
    findings: list[Finding] = []
    for check in (check_acyclic, check_completeness, check_comms, check_collective_order):
        start = time.perf_counter()
        if check is check_completeness and len(graph.pools) > 1:
            for p in range(len(graph.pools)):  # each pool against its own plan
                findings += check_completeness(_without_transfers(graph.pool_view(p)))
        else:
            findings += check(graph, shared)
        log.debug("%s: %.3f s", check.__name__, time.perf_counter() - start)
    return findings + check_transfers(graph)


def _without_transfers(view: Graph) -> Graph:
    """A pool's view without its ``kv.send``/``kv.recv`` nodes: the pool's plan calls for
    its own ops; the transfers are :func:`check_transfers`' to judge."""
    kv = transfer_nodes(view)
    return drop_nodes(view, kv) if kv.size else view
