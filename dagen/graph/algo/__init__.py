"""Graph algorithms on the columnar IR: contraction, Kahn by levels, the rank sweep, the
schedule certificate, topological order, critical path, cycles, and graph edits.

Every algorithm is a free function taking the graph first. The checks (:mod:`dagen.checks`)
and the cost model (:mod:`dagen.cost`) both call them; none of them judges anything.
"""

from dagen.graph.algo.edit import add_edges, drop_nodes, duplicate_nodes, guard
from dagen.graph.algo.topo import HasACycle, critical_path, topological_order

__all__ = [
    "HasACycle",
    "add_edges",
    "critical_path",
    "drop_nodes",
    "duplicate_nodes",
    "guard",
    "topological_order",
]
