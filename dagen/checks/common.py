"""What every graph check shares: the finding codes and how a finding names nodes.

A check reports one :class:`~dagen.findings.Finding` per kind of problem and place,
never one per node: the message carries the counts and the arithmetic, ``nodes`` the
readable ids of the first few nodes involved, ``ranks`` the ranks.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.findings import Finding, Severity
from dagen.graph.ir import Graph

__all__ = ["MAX_NODES", "Code", "make"]

MAX_NODES = 20
"""Most node ids a finding lists."""

MAX_RANKS = 64
"""Most ranks a finding lists."""


class Code(enum.StrEnum):
    """Stable codes of the graph checks (documented in docs/graph-checks.md)."""

    IR = "GRAPH-IR"
    CYCLE = "GRAPH-CYCLE"
    SERIAL_DEADLOCK = "GRAPH-SERIAL-DEADLOCK"
    MISSING = "GRAPH-MISSING"
    DUPLICATE = "GRAPH-DUPLICATE"
    UNEXPECTED = "GRAPH-UNEXPECTED"
    EXPERT_MISSING = "GRAPH-EXPERT-MISSING"
    EXPERT_DUPLICATE = "GRAPH-EXPERT-DUPLICATE"
    IDLE_RANK = "GRAPH-IDLE-RANK"
    MB_SKIPS_STAGE = "GRAPH-MB-SKIPS-STAGE"
    UNMATCHED_SEND = "GRAPH-UNMATCHED-SEND"
    UNMATCHED_RECV = "GRAPH-UNMATCHED-RECV"
    P2P_PEER = "GRAPH-P2P-PEER"
    P2P_BYTES = "GRAPH-P2P-BYTES"
    P2P_MB = "GRAPH-P2P-MB"
    COLL_MEMBERS = "GRAPH-COLL-MEMBERS"
    COLL_SIZE = "GRAPH-COLL-SIZE"
    COLL_OP = "GRAPH-COLL-OP"
    COLL_ORDER = "GRAPH-COLL-ORDER"


def make(
    graph: Graph,
    code: Code,
    message: str,
    fix: str,
    *,
    nodes: npt.ArrayLike = (),
    ranks: npt.ArrayLike | None = None,
    severity: Severity = Severity.ERROR,
    data: dict[str, Any] | None = None,
) -> Finding:
    """A finding naming at most :data:`MAX_NODES` nodes (in the order given).

    ``ranks`` defaults to the ranks of ``nodes``.
    """
    idx = np.asarray(nodes, dtype=np.int64).ravel()[:MAX_NODES]
    if ranks is None:
        ranks = graph.rank[idx] if idx.size else np.zeros(0, dtype=np.int64)
    rank_tuple = tuple(np.unique(np.asarray(ranks, dtype=np.int64)).tolist()[:MAX_RANKS])
    return Finding(
        code=code.value,
        severity=severity,
        message=message,
        fix=fix,
        nodes=tuple(graph.node_ids(idx)),
        ranks=rank_tuple,
        data=data or {},
    )
