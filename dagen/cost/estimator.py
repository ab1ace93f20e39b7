"""The cost estimate of a built graph: memory, the simulated schedule, latency, throughput.

Any cost model of the protocol (:mod:`dagen.cost.model`) prices the nodes; the roofline is
the default. The plan's claims are judged against an estimate by :func:`judge_estimate`.

Example:
    >>> from dagen.cost import estimate
    >>> est = estimate(graph)  # doctest: +SKIP
    >>> est.ttft_s, est.tokens_per_s_per_gpu  # doctest: +SKIP
    (0.31, 6720.5)
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dagen.cost.deepep import contended
from dagen.cost.engine import Meter
from dagen.cost.memory import MemoryReport, memory_report
from dagen.cost.model import CostModel, default_cost_model, node_seconds
from dagen.cost.simulate import Schedule, simulate
from dagen.cost.usage import utilisation
from dagen.cost.verdicts import Verdict
from dagen.graph.dims import Dims, steady
from dagen.graph.ir import Graph, Kind
from dagen.graph.pool import Pool
from dagen.graph.transfer import TRANSFER_OPS
from dagen.plan.model import Hardware

__all__ = ["Estimate", "PoolFigures", "durations", "estimate"]

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
    """Time to first token: the prefill makespan (None for decode; the longest prefill
    pool's with several pools)."""
    tpot_s: float | None
    """Time per output token: makespan / decode steps (None for prefill)."""
    tokens_per_s: float
    """Prefill: batch · prompt_len / makespan; decode: batch · steps / makespan (the sum
    over pools)."""
    tokens_per_s_per_gpu: float
    bubble_fraction: float
    """Rank-time with nothing running or moving, over world × makespan."""
    busy_fraction: F64
    """float64 ``[world]``: compute-stream busy time over the makespan."""
    critical_path: I64
    """Node indices, earliest first, of the chain of tight dependencies that sets the
    makespan."""
    pools: tuple[PoolFigures, ...] = ()
    """Each pool's figures (one for a single-pool graph, equal to the fields above)."""
    cost_model: str = "roofline"
    """The name of the cost model that priced the nodes."""
    priced_by: dict[str, float] = field(default_factory=dict)
    """Share of compute and collective nodes each source priced (a model with ``node_sources``: e.g.
    ``{"measured": 0.83, "roofline": 0.17}``); empty for a single-source model."""
    cost_notes: tuple[str, ...] = ()
    """What the cost model fell back on (a GPU or op its data lack)."""
    verdicts: tuple[Verdict, ...] = ()
    """The plan's claims weighed against this estimate (:func:`judge_estimate`; set by
    :func:`dagen.analyse`)."""
    sim: dict[str, Any] = field(default_factory=dict)
    """How the simulation went: ``levels`` (vectorised rounds), ``wall_s``,
    ``nodes_per_s``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolFigures:
    """One pool's latency and throughput in the simulated schedule."""

    name: str
    world: int
    makespan_s: float
    """When the pool's last node ends."""
    ttft_s: float | None
    """Time to first token: the prefill makespan (None for decode; serving: the
    iterations a prompt's chunks take)."""
    tpot_s: float | None
    """Time per output token: makespan / (decode steps · tokens per step) (None for
    prefill; serving: one iteration / tokens per step)."""
    tokens_per_s: float
    """Prefill: batch · prompt_len / makespan; decode: batch · steps · tokens per step /
    makespan; serving: output tokens of the steady state per second."""
    tokens_per_s_per_gpu: float


def _figures(pool: Pool, makespan: float) -> PoolFigures:
    w = pool.workload
    if makespan <= 0.0:
        return PoolFigures(name=pool.name, world=pool.world, makespan_s=makespan, ttft_s=None,
                           tpot_s=None, tokens_per_s=0.0, tokens_per_s_per_gpu=0.0)  # fmt: skip
    if w.serving:
        return _serving_figures(pool, makespan)
    prefill = not w.decoding
    tokens = w.batch * (w.prompt_len if prefill else w.decode_steps * w.tokens_per_step)
    rate = tokens / makespan
    if not prefill:
        makespan /= w.tokens_per_step  # TPOT below: each step yields tokens_per_step tokens
    return PoolFigures(
        name=pool.name, world=pool.world, makespan_s=makespan,
        ttft_s=makespan if prefill else None, tpot_s=None if prefill else makespan / w.decode_steps,
        tokens_per_s=rate, tokens_per_s_per_gpu=rate / pool.world,
    )  # fmt: skip


def _serving_figures(pool: Pool, makespan: float) -> PoolFigures:
    """A serving pool's steady state (docs/cost-model.md, "Serving"): the graph is
    ``decode_steps`` iterations; each yields ``D · a`` output tokens per replica, a
    request's first token comes ``k`` iterations after it starts."""
    w = pool.workload
    ss = steady(w, pool.mesh.sizes["dp"])
    step = makespan / w.decode_steps
    rate = pool.mesh.sizes["dp"] * ss.decode_seqs * ss.step_tokens / step
    return PoolFigures(
        name=pool.name, world=pool.world, makespan_s=makespan, ttft_s=ss.chunks * step,
        tpot_s=step / ss.step_tokens, tokens_per_s=rate, tokens_per_s_per_gpu=rate / pool.world,
    )  # fmt: skip


def _pool_figures(graph: Graph, sched: Schedule) -> tuple[PoolFigures, ...]:
    if len(graph.pools) == 1:
        return (_figures(graph.pools[0], sched.makespan_s),)
    kv = np.isin(graph.op, TRANSFER_OPS)  # a pool's figures leave its KV transfers out:
    out = []  # prefill ends with its last op, decode starts when its last cache is in
    for p, pool in enumerate(graph.pools):
        at = graph.node_slice(p)
        end = sched.end_s[at][~kv[at]]
        arrived = sched.end_s[at][kv[at] & (graph.kind[at] == Kind.RECV)]
        start = float(arrived.max()) if arrived.size else 0.0
        out.append(_figures(pool, float(end.max()) - start if end.size else 0.0))
    return tuple(out)


def _latest(values: list[float | None]) -> float | None:
    given = [v for v in values if v is not None]
    return max(given) if given else None


def _with_hardware(graph: Graph, hardware: Hardware | None) -> Graph:
    if hardware is None:
        return graph
    return dataclasses.replace(
        graph, pools=tuple(dataclasses.replace(p, hardware=hardware) for p in graph.pools)
    )


def durations(graph: Graph, model: CostModel) -> F64:
    """The time the schedule gives each node: the cost model's, each serving pool's nodes
    the mean over its kinds of iteration (:attr:`dagen.graph.pool.Pool.mix`), with the
    compute of a two-batch-overlap MoE layer slowed by the SMs its all-to-all kernels take
    (:func:`dagen.cost.deepep.contended`)."""
    seconds = node_seconds(model, graph)
    mixed = [p for p, pool in enumerate(graph.pools) if pool.mix and pool.prices is not None]
    if mixed:
        seconds = seconds.copy()  # the model may hand out its cached array
    for p in mixed:
        at = graph.node_slice(p)
        seconds[at] = sum(
            share * node_seconds(model, _priced_at(graph, p, dims))[at]
            for share, dims in graph.pools[p].mix
        )
    return contended(graph, seconds)


def _priced_at(graph: Graph, p: int, dims: Dims) -> Graph:
    """``graph`` with pool ``p`` and its templates priced at ``dims`` (same nodes)."""
    pool = graph.pools[p]
    assert pool.prices is not None
    table = pool.prices.repriced(dims)
    first = int(graph.tmpl[graph.node_slice(p)].min())
    span = slice(first, first + len(table.shape))
    cols = {}
    for name, new in (("tmpl_bytes", table.nbytes), ("tmpl_flops", table.flops),
                      ("tmpl_hbm", table.hbm)):  # fmt: skip
        col = getattr(graph, name).copy()
        col[span] = new
        cols[name] = col
    shapes = list(graph.tmpl_shape)
    shapes[span] = table.shape
    pools = list(graph.pools)
    pools[p] = dataclasses.replace(pool, dims=dims, mix=())
    return dataclasses.replace(graph, tmpl_shape=shapes, pools=tuple(pools), **cols)


def estimate(
    graph: Graph,
    hardware: Hardware | None = None,
    cost_model: CostModel | None = None,
    *,
    meter: Meter | None = None,
    schedule: Schedule | None = None,
    rank_of: I64 | None = None,
) -> Estimate:
    """Price every node of ``graph`` with ``cost_model``, simulate its schedule, and
    report memory, latency, throughput and utilisation.

    Args:
        graph: The graph; each pool is priced on its own hardware.
        hardware: Price every pool on this hardware instead.
        cost_model: Default :func:`dagen.cost.default_cost_model` (the roofline).
        meter: ``meter(done, total)`` follows the schedule simulation, the long part.
        schedule: A schedule of ``graph`` already simulated (``dagen.study.symmetry``
            simulates many quotient graphs at once); ``cost_model`` then only names it.
        rank_of: int64 ``[world]``: the rank whose times each rank shares, when ``graph``
            holds one rank per symmetric group (:func:`dagen.cost.usage.utilisation`).

    The verdicts on a plan's claims are the plan's business: :func:`judge_estimate`.

    Raises:
        dagen.graph.algo.HasACycle: the graph deadlocks (run the checks first).
        CostModelError: the cost model priced a node with no finite, non-negative time.

    Example:
        >>> est = estimate(graph)  # doctest: +SKIP
        >>> est.makespan_s > 0  # doctest: +SKIP
        True
    """
    graph = _with_hardware(graph, hardware)
    model = cost_model or default_cost_model()
    sched = simulate(graph, durations(graph, model), meter) if schedule is None else schedule
    memory = memory_report(graph)
    busy, bubble = utilisation(graph, sched, rank_of)
    pools = _pool_figures(graph, sched)
    rate = graph.n_nodes / sched.wall_s if sched.wall_s > 0 else float("inf")
    log.info(
        "simulated %s nodes in %.3f s (%.0f nodes/s)", f"{graph.n_nodes:,}", sched.wall_s, rate
    )
    total = sum(p.tokens_per_s for p in pools)
    priced_by, notes = _sources(model, graph)
    return Estimate(
        priced_by=priced_by,
        cost_notes=notes,
        memory=memory,
        start_s=sched.start_s,
        duration_s=sched.end_s - sched.start_s,
        stream=sched.stream,
        makespan_s=sched.makespan_s,
        ttft_s=_latest([p.ttft_s for p in pools]),
        tpot_s=_latest([p.tpot_s for p in pools]),
        tokens_per_s=total,
        tokens_per_s_per_gpu=pools[0].tokens_per_s_per_gpu
        if len(pools) == 1
        else total / graph.world,
        bubble_fraction=bubble,
        busy_fraction=busy,
        critical_path=sched.critical_path,
        pools=pools,
        cost_model=model.name,
        sim={"levels": sched.levels, "wall_s": sched.wall_s, "nodes_per_s": rate},
    )


def _sources(model: CostModel, graph: Graph) -> tuple[dict[str, float], tuple[str, ...]]:
    """Share of priced nodes (compute and collectives) per source, and the model's
    fallback notes."""
    fn = getattr(model, "node_sources", None)
    notes = tuple(dict.fromkeys(getattr(model, "notes", ())))
    if fn is None:
        return {}, notes
    from dagen.cost.measured import SOURCES

    priced = (graph.kind == Kind.COMPUTE) | (graph.kind == Kind.COLLECTIVE)
    codes = np.asarray(fn(graph))[priced]
    total = max(int(priced.sum()), 1)
    shares = {SOURCES[i]: round(int((codes == i).sum()) / total, 4) for i in range(len(SOURCES))}
    return shares, notes
