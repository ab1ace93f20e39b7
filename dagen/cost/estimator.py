"""The cost estimate of a built graph: memory, the simulated schedule, and the verdicts.

Example:
    >>> from dagen.cost import estimate
    >>> est = estimate(graph)  # doctest: +SKIP
    >>> est.ttft_s, est.tokens_per_s_per_gpu  # doctest: +SKIP
    (0.31, 6720.5)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.cost.comm import comm_durations
from dagen.cost.engine import Meter
from dagen.cost.memory import MemoryReport, memory_report
from dagen.cost.roofline import compute_durations
from dagen.cost.simulate import Schedule, simulate
from dagen.cost.usage import utilisation
from dagen.cost.verdicts import EstimateParts, Verdict, judge
from dagen.graph.ir import Graph
from dagen.plan.model import Phase, Plan

__all__ = ["Estimate", "estimate"]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    """Memory, simulated times and verdicts of one graph (docs/cost-model.md)."""

    memory: MemoryReport
    start_s: F64
    """float64 ``[n_nodes]``: when each node starts."""
    duration_s: F64
    """float64 ``[n_nodes]``: how long each node holds its stream (a recv: until its data
    has arrived)."""
    stream: U8
    """uint8 ``[n_nodes]``: 0 compute, 1 communication."""
    makespan_s: float
    ttft_s: float | None
    """Time to first token: the prefill makespan (None for decode)."""
    tpot_s: float | None
    """Time per output token: makespan / decode steps (None for prefill)."""
    tokens_per_s: float
    """Prefill: batch · prompt_len / makespan; decode: batch · steps / makespan."""
    tokens_per_s_per_gpu: float
    bubble_fraction: float
    """Rank-time with nothing running or moving, over world × makespan."""
    busy_fraction: F64
    """float64 ``[world]``: compute-stream busy time over the makespan."""
    critical_path: I64
    """Node indices, earliest first, of the chain of tight dependencies that sets the
    makespan."""
    verdicts: tuple[Verdict, ...]
    sim: dict[str, Any] = field(default_factory=dict)
    """How the simulation went: ``levels`` (vectorised rounds), ``wall_s``,
    ``nodes_per_s``."""


def _figures(plan: Plan, world: int, makespan: float) -> dict[str, float | None]:
    w = plan.workload
    if makespan <= 0.0:
        return {"ttft_s": None, "tpot_s": None, "tokens_per_s": 0.0, "tokens_per_s_per_gpu": 0.0}
    prefill = w.phase is Phase.PREFILL
    tokens = w.batch * (w.prompt_len if prefill else w.decode_steps)
    rate = tokens / makespan
    return {
        "ttft_s": makespan if prefill else None,
        "tpot_s": None if prefill else makespan / w.decode_steps,
        "tokens_per_s": rate,
        "tokens_per_s_per_gpu": rate / world,
    }


def durations(graph: Graph) -> F64:
    """Each node's own time: roofline for compute nodes, alpha-beta for communication."""
    result: F64 = compute_durations(graph) + comm_durations(graph)
    return result


def estimate(graph: Graph, *, meter: Meter | None = None) -> Estimate:
    """Estimate memory and time of ``graph`` and judge its plan's claims.

    ``meter(done, total)`` follows the schedule simulation, the long part.

    Raises:
        dagen.graph.algo.HasACycle: the graph deadlocks (run the checks first).

    Example:
        >>> est = estimate(graph)  # doctest: +SKIP
        >>> [v.verdict.value for v in est.verdicts]  # doctest: +SKIP
        ['holds', 'impossible', 'holds']
    """
    plan, mesh = graph.plan, graph.mesh
    sched: Schedule = simulate(graph, durations(graph), meter)
    memory = memory_report(plan, mesh)
    busy, bubble = utilisation(graph, sched)
    figures = _figures(plan, mesh.world, sched.makespan_s)
    parts = EstimateParts(world=mesh.world, memory=memory, **figures)
    rate = graph.n_nodes / sched.wall_s if sched.wall_s > 0 else float("inf")
    log.info(
        "simulated %s nodes in %.3f s (%.0f nodes/s)", f"{graph.n_nodes:,}", sched.wall_s, rate
    )
    return Estimate(
        memory=memory,
        start_s=sched.start_s,
        duration_s=sched.end_s - sched.start_s,
        stream=sched.stream,
        makespan_s=sched.makespan_s,
        ttft_s=figures["ttft_s"],
        tpot_s=figures["tpot_s"],
        tokens_per_s=float(figures["tokens_per_s"] or 0.0),
        tokens_per_s_per_gpu=float(figures["tokens_per_s_per_gpu"] or 0.0),
        bubble_fraction=bubble,
        busy_fraction=busy,
        critical_path=sched.critical_path,
        verdicts=judge(plan, parts),
        sim={"levels": sched.levels, "wall_s": sched.wall_s, "nodes_per_s": rate},
    )
