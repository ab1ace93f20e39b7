"""The default cost model: roofline compute times and alpha-beta communication times.

Compute nodes take ``max(FLOPs / achievable FLOP/s, HBM bytes / achievable HBM)`` with the
FLOPs and HBM bytes of the node's template (``tmpl_flops``, ``tmpl_hbm``), which the op
registry priced when the graph was built (:mod:`dagen.graph.ops`; formulas in
docs/graph.md and docs/cost-model.md, "Compute nodes"); communication nodes take the
alpha-beta time of :mod:`dagen.cost.comm`. Each pool is priced on its own hardware.

Example:
    >>> from dagen.cost.roofline import Roofline
    >>> seconds = Roofline().node_seconds(graph)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dagen.cost.bounds import flop_rate, hbm_rate
from dagen.cost.comm import comm_durations
from dagen.graph.ir import Graph, Kind

__all__ = ["Roofline", "compute_durations"]

F64 = npt.NDArray[np.float64]


def compute_durations(graph: Graph) -> F64:
    """Seconds of every node on the compute stream; 0 for communication nodes.

    ``max(FLOPs / (peak · flops_efficiency), bytes / (HBM · hbm_efficiency))`` with the
    FLOPs and HBM bytes of the node's template, on its pool's hardware.
    """
    out = np.zeros(graph.n_nodes, dtype=np.float64)
    for p, pool in enumerate(graph.pools):
        at = graph.node_slice(p)
        tmpl = graph.tmpl[at]
        flops = graph.tmpl_flops[tmpl] / flop_rate(pool.hardware, graph.model.dtype)[0]
        traffic = graph.tmpl_hbm[tmpl] / hbm_rate(pool.hardware)[0]
        out[at] = np.maximum(flops, traffic)
    out[graph.kind != Kind.COMPUTE] = 0.0
    return out


class Roofline:
    """Roofline compute and alpha-beta communication (the module docstring)."""

    name = "roofline"

    def node_seconds(self, graph: Graph) -> F64:
        """Each node's own time: roofline for compute nodes, alpha-beta for communication."""
        result: F64 = compute_durations(graph) + comm_durations(graph)
        return result
