"""What every graph check shares: how a finding names nodes (codes: :mod:`dagen.codes`).

A check reports one :class:`~dagen.findings.Finding` per kind of problem and place,
never one per node: the message carries the counts and the arithmetic, ``nodes`` the
readable ids of the first few nodes involved, ``ranks`` the ranks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.findings import Code, Finding, Severity, finding
from dagen.graph.ir import Graph

__all__ = ["MAX_NODES", "Code", "make"]

MAX_NODES = 20
"""Most node ids a finding lists."""

MAX_RANKS = 64
"""Most ranks a finding lists."""


def make(
    graph: Graph,
    code: Code,
    message: str,
    fix: str,
    *,
    nodes: npt.ArrayLike = (),
    ranks: npt.ArrayLike | None = None,
    severity: Severity | None = None,
    data: dict[str, Any] | None = None,
) -> Finding:
    """A finding naming at most :data:`MAX_NODES` nodes (in the order given).

    ``ranks`` defaults to the ranks of ``nodes``.
    """
    idx = np.asarray(nodes, dtype=np.int64).ravel()[:MAX_NODES]
    if ranks is None:
        ranks = graph.rank[idx] if idx.size else np.zeros(0, dtype=np.int64)
    rank_tuple = tuple(np.unique(np.asarray(ranks, dtype=np.int64)).tolist()[:MAX_RANKS])
    return finding(
        code, message, fix=fix, nodes=tuple(graph.node_ids(idx)), ranks=rank_tuple,
        severity=severity, data=data,
    )  # fmt: skip
